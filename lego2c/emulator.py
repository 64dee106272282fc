"""Run firmware in QEMU and count the instructions it executes.

Counting uses our own TCG plugin (boards/qemu/insn_count.c), built with the host gcc on first
use. Counts are executed guest instructions, exact and repeatable; they are not cycles (QEMU
models no pipeline, caches or flash wait states).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from lego2c.boards import boards_dir
from lego2c.errors import EmulatorError, ToolchainMissingError
from lego2c.toolchain import require

QEMU = "qemu-system-arm"
QEMU_INSTALL_HINT = "sudo apt-get install -y --no-install-recommends qemu-system-arm"

# SysTick interrupts fire on QEMU's virtual clock; without -icount that clock follows the host's
# wall clock, so interrupts (and the instructions of their handler) land at different points
# each run. With -icount the clock advances 2**shift ns per instruction: runs are deterministic,
# and shift=2 (250 M instructions per virtual second) is close to a 216 MHz Cortex-M7.
# sleep=off keeps idle time from depending on the host too.
ICOUNT = "shift=2,sleep=off"

# Exit code of the firmware after a HardFault (LEGO_EXIT_FAULT in boards/common/lego_board.h).
FAULT_EXIT_CODE = 70


@dataclass(frozen=True)
class QemuResult:
    stdout: str
    stderr: str
    exit_code: int
    total_instructions: int
    window_instructions: int  # summed over all windows; 0 without count_window
    windows: int  # how many times the window closed

    @property
    def fault(self) -> str | None:
        """The firmware's fault report line, if it crashed."""
        for line in self.stdout.splitlines():
            if line.startswith("lego2c: HardFault") or line.startswith("lego2c: unexpected"):
                return line
        return None


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lego2c"


def build_plugin(cache_dir: Path | None = None) -> Path:
    """Build (once) and return the instruction-counting plugin. The file name carries a hash of
    the plugin's sources, so an edited plugin is rebuilt rather than served stale."""
    src_dir = boards_dir() / "qemu"
    sources = [src_dir / "insn_count.c", src_dir / "qemu_plugin_v1.h"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    out_dir = cache_dir if cache_dir is not None else _cache_root()
    plugin = out_dir / f"insn_count-{digest}.so"
    if plugin.is_file():
        return plugin
    require("gcc")  # builds the QEMU counting plugin
    out_dir.mkdir(parents=True, exist_ok=True)
    # Build next to the target and rename, so concurrent first runs never load a partial file.
    with tempfile.NamedTemporaryFile(dir=out_dir, suffix=".so", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    cmd = ["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
           "-fvisibility=hidden", "-o", str(tmp_path), str(sources[0])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp_path.unlink(missing_ok=True)
        raise EmulatorError(f"building the QEMU counting plugin failed:\n{proc.stderr.strip()}")
    tmp_path.replace(plugin)
    return plugin


def symbol_address(elf: Path, name: str) -> int:
    """Address of a symbol in an ELF file, with the Thumb bit cleared for functions."""
    with open(elf, "rb") as f:
        for section in ELFFile(f).iter_sections():
            if not isinstance(section, SymbolTableSection):
                continue
            for symbol in section.get_symbol_by_name(name) or []:
                return int(symbol["st_value"]) & ~1
    raise EmulatorError(f"symbol '{name}' not found in {elf}")


def run_qemu(
    elf: Path,
    machine: str = "mps2-an500",
    timeout: float = 60,
    count_window: tuple[int, int] | None = None,
    profile: Path | None = None,
) -> QemuResult:
    """Run ``elf`` to completion. ``count_window`` = (start, stop) instruction addresses: the
    instructions from start (inclusive) to stop (exclusive) are counted each time through.
    ``profile``: also write each executed address's instruction count there."""
    if shutil.which(QEMU) is None:
        raise ToolchainMissingError(f"'{QEMU}' is not installed", hint=QEMU_INSTALL_HINT)
    plugin = build_plugin()
    with tempfile.TemporaryDirectory(prefix="lego2c-qemu-") as tmp:
        counts_file = Path(tmp) / "counts.txt"
        plugin_args = [str(plugin), f"outfile={counts_file}"]
        if count_window is not None:
            plugin_args += [f"start={count_window[0]:#x}", f"stop={count_window[1]:#x}"]
        if profile is not None:
            plugin_args.append(f"profile={profile}")
        cmd = [
            QEMU, "-M", machine, "-nographic", "-monitor", "none",
            "-semihosting-config", "enable=on,target=native",
            "-icount", ICOUNT,
            "-plugin", ",".join(plugin_args),
            "-kernel", str(elf),
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as exc:
            raise EmulatorError(
                f"emulator did not finish within {timeout:g} s",
                hint="the firmware may be stuck in a loop; a longer timeout helps only if it is just slow",
            ) from exc
        # The plugin writes its counts at every QEMU exit, even one before the guest started;
        # zero instructions means QEMU failed rather than the firmware.
        counts = dict(
            line.split("=", 1)
            for line in (counts_file.read_text() if counts_file.is_file() else "").splitlines()
        )
    if int(counts.get("total", 0)) == 0:
        raise EmulatorError(f"QEMU failed (exit code {proc.returncode}): {proc.stderr.strip()}")
    return QemuResult(
        stdout=proc.stdout,
        stderr=proc.stderr,
        exit_code=proc.returncode,
        total_instructions=int(counts["total"]),
        window_instructions=int(counts["window"]),
        windows=int(counts["windows"]),
    )


def function_profile(elf: Path, profile: Path) -> list[tuple[str, int]]:
    """Executed instructions per function, most first, from a `profile=` file of run_qemu."""
    with elf.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        funcs = sorted(
            ((int(s["st_value"]) & ~1, int(s["st_size"]), s.name) for s in symtab.iter_symbols()
             if s["st_info"]["type"] == "STT_FUNC" and s["st_size"]),
        ) if isinstance(symtab, SymbolTableSection) else []  # fmt: skip
    starts = [start for start, _, _ in funcs]
    totals: dict[str, int] = {}
    for line in profile.read_text().splitlines():
        addr_text, count = line.split()
        addr = int(addr_text, 16)
        i = bisect.bisect_right(starts, addr) - 1
        name = funcs[i][2] if i >= 0 and addr < funcs[i][0] + funcs[i][1] else f"0x{addr:x}"
        totals[name] = totals.get(name, 0) + int(count)
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
