"""Board descriptions, loaded from the JSON files in the ``boards/`` directory.

A board is data: compiler flags, memory sizes, which startup/console sources and linker
script to build with, and how to reach it (PlatformIO id, QEMU machine). Adding a board means
adding a JSON file (plus a linker script), not code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lego2c.errors import UsageError
from lego2c.resources import data_dir


@dataclass(frozen=True)
class MemoryRegion:
    origin: int
    size: int


@dataclass(frozen=True)
class Board:
    """One board file. Paths in ``linker_script`` and ``sources`` are relative to ``boards_dir()``."""

    name: str
    title: str
    toolchain: str  # "arm-none-eabi" or "host"
    core: str
    cflags: tuple[str, ...]  # CPU/ABI flags; also needed at link time to pick the newlib multilib
    ldflags: tuple[str, ...]  # go after the sources on the gcc command line
    fpu: bool
    clock_hz: int | None  # what the firmware really runs at
    max_clock_hz: int | None  # what the chip can run at
    clock_note: str
    flash: MemoryRegion | None
    ram: MemoryRegion | None
    linker_script: str | None
    sources: tuple[str, ...]
    defines: tuple[tuple[str, str], ...]
    console: str
    platformio_board: str | None
    emulator_twin: str | None
    qemu_machine: str | None
    openocd_target: str | None = None  # OpenOCD target script for `lego2c flash --probe openocd`

    @property
    def is_host(self) -> bool:
        return self.toolchain == "host"

    @property
    def gcc(self) -> str:
        return "gcc" if self.is_host else f"{self.toolchain}-gcc"

    def source_paths(self) -> list[Path]:
        return [boards_dir() / s for s in self.sources]

    def linker_script_path(self) -> Path | None:
        return boards_dir() / self.linker_script if self.linker_script else None

    def define_flags(self) -> list[str]:
        """-D flags for the board sources; LEGO_CLOCK_HZ comes from ``clock_hz``."""
        flags = [f"-D{key}={value}" for key, value in self.defines]
        if self.clock_hz is not None:
            flags.append(f"-DLEGO_CLOCK_HZ={self.clock_hz}u")
        return flags

    def gcc_command(
        self, sources: Sequence[Path], output: Path, extra_flags: Sequence[str] = ()
    ) -> list[str]:
        """Full compile-and-link command for firmware (or a host program) made of ``sources``
        plus the board's own startup/console sources."""
        common = boards_dir() / "common"
        cmd = [self.gcc, *self.cflags, *extra_flags, f"-I{common}", *self.define_flags()]
        script = self.linker_script_path()
        if script is not None:
            # -L lets the board script INCLUDE the shared cortexm_sections.ld.
            cmd += [f"-T{script}", f"-L{script.parent}", f"-Wl,-Map={output.with_suffix('.map')}"]
        cmd += [str(s) for s in (*sources, *self.source_paths())]
        cmd += ["-o", str(output), *self.ldflags]
        return cmd


def boards_dir() -> Path:
    """Board files: inside the installed package, else the source checkout's top-level boards/."""
    return data_dir("boards")


def _region(memory: dict[str, Any] | None, key: str) -> MemoryRegion | None:
    if memory is None:
        return None
    return MemoryRegion(origin=int(memory[key]["origin"]), size=int(memory[key]["size"]))


def _from_json(data: dict[str, Any]) -> Board:
    return Board(
        name=data["name"],
        title=data["title"],
        toolchain=data["toolchain"],
        core=data["core"],
        cflags=tuple(data["cflags"]),
        ldflags=tuple(data["ldflags"]),
        fpu=bool(data["fpu"]),
        clock_hz=data["clock_hz"],
        max_clock_hz=data["max_clock_hz"],
        clock_note=data["clock_note"],
        flash=_region(data["memory"], "flash"),
        ram=_region(data["memory"], "ram"),
        linker_script=data["linker_script"],
        sources=tuple(data["sources"]),
        defines=tuple((str(k), str(v)) for k, v in data["defines"].items()),
        console=data["console"],
        platformio_board=data["platformio_board"],
        emulator_twin=data["emulator_twin"],
        qemu_machine=data["qemu"]["machine"] if data.get("qemu") else None,
        openocd_target=data.get("openocd_target"),
    )


def list_boards() -> list[Board]:
    return [
        _from_json(json.loads(path.read_text())) for path in sorted(boards_dir().glob("*.json"))
    ]


def load_board(name: str) -> Board:
    boards = {board.name: board for board in list_boards()}
    if name not in boards:
        raise UsageError(
            f"unknown board '{name}'; known boards: {', '.join(boards)}",
            hint=f"a new board is a JSON file in {boards_dir()}",
        )
    return boards[name]
