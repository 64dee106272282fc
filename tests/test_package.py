"""The wheel carries the runtime, templates and board files, and finds them when installed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_ships_runtime_templates_and_boards(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                   check=True, capture_output=True)  # fmt: skip
    wheel = next(tmp_path.glob("lego2c-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("lego2c/_data/runtime/lego_runtime.h", "lego2c/_data/runtime/lego_conv.c",
                     "lego2c/_data/runtime/lego_tile_arm.S", "lego2c/_data/templates/model.c.j2",
                     "lego2c/_data/boards/stm32f746g.json", "lego2c/_data/boards/qemu/insn_count.c",
                     "lego2c/_data/boards/platformio/platform.json", "lego2c/cli.py"):  # fmt: skip
        assert expected in names, expected
    # Unpacked on its own (no source checkout beside it), lego2c finds its data inside the package.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = "from lego2c.resources import data_dir; print(data_dir('runtime')); print(data_dir('boards'))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                         capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert out == [str(site / "lego2c/_data/runtime"), str(site / "lego2c/_data/boards")]
