"""Building generated projects and measuring what they occupy.

Host builds use the system gcc; target builds use arm-none-eabi-gcc through the generated
Makefile, so what the user runs by hand is exactly what lego2c ran.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from .errors import DoesNotFitError, EmulatorError, ToolchainMissingError, UsageError

APT_HINT = {
    "gcc": "apt-get install -y gcc make",
    "make": "apt-get install -y make",
    "arm-none-eabi-gcc": "apt-get install -y --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi",
}


FIT_HINT = (
    "try a smaller -K or a larger tile (-b 8), compress the layers you kept dense (drop --exclude or "
    "--no-compress), or pick a board with more memory (`lego2c boards`)"
)


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolchainMissingError(f"'{tool}' is not installed", hint=APT_HINT.get(tool, f"install {tool}"))
    return path


def check_fits(linker_log: str) -> None:
    """Raise DoesNotFitError, with the bytes each memory lacks, if GNU ld said a region overflowed."""
    short = {region: int(n) for region, n in re.findall(r"region [`'](\w+)' overflowed by (\d+) bytes", linker_log)}
    if short:
        raise DoesNotFitError(
            "the firmware does not fit the board: " + ", ".join(f"{r} is {n:,} bytes short" for r, n in short.items()),
            hint=FIT_HINT, short=short,
        )  # fmt: skip


def make(project: Path, target: str | None = None, variables: dict[str, str] | None = None, timeout: float = 600) -> None:
    """Run the project's Makefile; a compile error is shown with its first lines."""
    require("make")
    cmd = ["make", "-C", str(project), "--no-print-directory"]
    cmd += [f"{k}={v}" for k, v in (variables or {}).items()]
    cmd += [target] if target else []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        log = (proc.stdout + proc.stderr).strip().splitlines()
        check_fits(proc.stderr)
        raise UsageError(
            "building the generated C failed:\n  " + "\n  ".join(log[-15:]),
            hint="this is a lego2c bug if the generated code does not compile; please report it",
        )


def run_host(exe: Path, timeout: float = 120) -> str:
    try:
        proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EmulatorError(f"'{exe.name}' did not finish within {timeout:.0f} s") from None
    return proc.stdout


@dataclass
class MemoryUse:
    flash: int  # bytes stored in flash: code, constants, .data's initial image
    ram: int  # bytes of RAM: .data, .bss, stack and heap reservations
    symbols: dict[str, int]  # object symbol -> size, for the per-layer breakdown


def elf_memory(elf: Path, flash: tuple[int, int], ram: tuple[int, int]) -> MemoryUse:
    """Sum allocated sections by the region they live in, from the ELF itself."""

    def inside(addr: int, region: tuple[int, int]) -> bool:
        return region[0] <= addr < region[0] + region[1]

    used_flash = used_ram = 0
    symbols: dict[str, int] = {}
    with elf.open("rb") as f:
        ef = ELFFile(f)
        for sec in ef.iter_sections():
            if not sec["sh_flags"] & SH_FLAGS.SHF_ALLOC or sec["sh_size"] == 0:
                continue
            addr, size = sec["sh_addr"], sec["sh_size"]
            if inside(addr, ram):
                used_ram += size
                if sec["sh_type"] != "SHT_NOBITS":
                    used_flash += size  # copied from flash at reset
            elif inside(addr, flash):
                used_flash += size
        symtab = ef.get_section_by_name(".symtab")
        if isinstance(symtab, SymbolTableSection):
            for sym in symtab.iter_symbols():
                if sym["st_info"]["type"] == "STT_OBJECT" and sym["st_size"]:
                    symbols[sym.name] = sym["st_size"]
    return MemoryUse(used_flash, used_ram, symbols)
