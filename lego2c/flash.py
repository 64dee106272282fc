"""Flash a built firmware onto a real board through PlatformIO, st-flash or OpenOCD.

`lego2c build` leaves firmware.elf/.bin/.hex and a platformio.ini at the top of its output
directory; every probe here works from those files. Nothing in this module can be exercised
without a board on USB, so the commands are kept plain and printable (``dry_run``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from lego2c.boards import Board
from lego2c.errors import LegoError, ToolchainMissingError, UsageError
from lego2c.platformio import PIO_ENV, PIO_INSTALL_HINT

PROBES = ("pio", "stlink", "openocd")

# The tool each probe runs and how to get it.
_TOOLS = {"pio": "pio", "stlink": "st-flash", "openocd": "openocd"}
_INSTALL_HINTS = {
    "pio": PIO_INSTALL_HINT,
    "stlink": "sudo apt-get install stlink-tools",
    "openocd": "sudo apt-get install openocd",
}

# ST-LINK (V2, V2-1 and V3) is the on-board probe of every STM32 board we support.
OPENOCD_INTERFACE = "interface/stlink.cfg"


def _openocd_target(board: Board) -> str:
    """OpenOCD target script for the board's MCU family (``openocd_target`` in its JSON)."""
    target = board.openocd_target
    if not target:
        raise UsageError(
            f"board '{board.name}' has no OpenOCD target script",
            hint=f"add \"openocd_target\" (e.g. \"target/stm32f7x.cfg\") to {board.name}.json, "
            "or flash with --probe pio or stlink",
        )
    return str(target)


def _check_flashable(board: Board, probe: str) -> None:
    if probe not in PROBES:
        raise UsageError(
            f"unknown probe '{probe}'; known probes: {', '.join(PROBES)}",
            hint="pio uploads through PlatformIO, stlink runs st-flash, openocd runs OpenOCD",
        )
    if board.is_host or board.qemu_machine or board.flash is None:
        raise UsageError(
            f"board '{board.name}' is not a hardware target; there is nothing to flash",
            hint="run it in the emulator instead: lego2c run OUT --emulator qemu",
        )


def _firmware_file(project_dir: Path, probe: str) -> Path:
    """The file the probe consumes: the PlatformIO project, the raw image, or the ELF."""
    return project_dir / {"pio": "platformio.ini", "stlink": "firmware.bin", "openocd": "firmware.elf"}[probe]


def flash_command(project_dir: Path, board: Board, probe: str) -> list[str]:
    """The exact command that flashes the build in ``project_dir`` onto ``board``."""
    _check_flashable(board, probe)
    assert board.flash is not None
    firmware = str(_firmware_file(project_dir, probe))
    if probe == "pio":
        return ["pio", "run", "-d", str(project_dir), "-t", "upload"]
    if probe == "stlink":
        # A raw image has no addresses: it goes to the start of the board's flash.
        return ["st-flash", "--reset", "write", firmware, f"0x{board.flash.origin:08x}"]
    # The ELF carries its load addresses. Braces keep a path with spaces one Tcl word.
    return [
        "openocd", "-f", OPENOCD_INTERFACE, "-f", _openocd_target(board),
        "-c", f"program {{{firmware}}} verify reset exit",
    ]  # fmt: skip


def _find_tool(probe: str) -> str:
    tool = _TOOLS[probe]
    if probe == "pio":
        # PlatformIO installed in this Python's environment need not be on PATH.
        beside = Path(sys.executable).parent / tool
        if beside.is_file():
            return str(beside)
    found = shutil.which(tool)
    if found is None:
        raise ToolchainMissingError(f"'{tool}' is not installed", hint=_INSTALL_HINTS[probe])
    return found


def flash(project_dir: Path, board: Board, probe: str, dry_run: bool = False) -> list[str]:
    """Flash the build in ``project_dir``; returns the command. With ``dry_run`` nothing is
    checked or run beyond the arguments, so the command can be shown on any machine."""
    cmd = flash_command(project_dir, board, probe)
    if dry_run:
        return cmd
    firmware = _firmware_file(project_dir, probe)
    if not firmware.is_file():
        raise UsageError(
            f"no {firmware.name} in '{project_dir}'",
            hint=f"build the firmware first: lego2c build MODEL.onnx --board {board.name} -o {project_dir}",
        )
    tool = _find_tool(probe)
    env = {**os.environ, **(PIO_ENV if probe == "pio" else {})}
    # Output goes straight to the terminal: flashing takes seconds and shows progress.
    proc = subprocess.run([tool, *cmd[1:]], env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise LegoError(
            f"{cmd[0]} failed with exit code {proc.returncode}",
            hint="check that the board is plugged in over its ST-LINK USB port and powered",
        )
    return cmd
