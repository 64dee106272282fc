"""Shared fixtures: the PyTorch-exported model zoo, exported once per test session."""

from __future__ import annotations

from pathlib import Path

import importlib

import pytest

importlib.import_module("lego2c")  # before torch (tests.zoo): lego2c sets MKL_CBWR, which MKL reads once
from tests.zoo import export_zoo  # noqa: E402


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return export_zoo(tmp_path_factory.mktemp("zoo"))
