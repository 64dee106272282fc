"""Shared fixtures: the PyTorch-exported model zoo, exported once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.zoo import export_zoo


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return export_zoo(tmp_path_factory.mktemp("zoo"))


# Hundreds of tests build a generated project whose runtime sources are the same each time: ccache
# compiles each (source, flags) once per run and hands back the same object after. The cache starts
# empty in every checkout, so a CI run measures the real cost.
if shutil.which("ccache"):
    os.environ.setdefault("CCACHE", "ccache")
    os.environ.setdefault("CCACHE_DIR", str(Path(__file__).resolve().parent.parent / "build" / "ccache"))
