"""Shared fixtures: the PyTorch-exported model zoo, exported once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.zoo import export_zoo


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return export_zoo(tmp_path_factory.mktemp("zoo"))
