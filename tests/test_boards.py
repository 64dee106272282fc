"""Boards, startup code, QEMU runner and offline PlatformIO, with the real tools."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from lego2c.boards import Board, boards_dir, list_boards, load_board
from lego2c.emulator import FAULT_EXIT_CODE, run_qemu, symbol_address
from lego2c.errors import EmulatorError, UsageError
from lego2c.platformio import pio_build, prepare_offline, write_platformio_ini

WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-g"]
TARGETS = [b.name for b in list_boards() if not b.is_host]

HELLO = r"""
#include <math.h>
#include <string.h>
#include "lego_board.h"

static char buf[32];
volatile float x = 1.5f;

int main(void)
{
    lego_board_init();
    static const char msg[] = "hello from lego2c\n";
    memcpy(buf, msg, sizeof msg);           /* newlib */
    float y = expf(x) + tanhf(x);           /* libm, FPU on M4F/M7 */
    lego_console_write(buf, (unsigned)strlen(buf));
    return y > 5.0f ? 3 : 4;                /* expf(1.5) + tanhf(1.5) = 5.39 */
}
"""

LOOP = r"""
#include "lego_board.h"

volatile unsigned sink;

__attribute__((noinline)) void work(unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        sink += i;
    }
}

__attribute__((noinline)) void done(void)
{
    sink++;
}

int main(void)
{
    lego_board_init();
    work(LOOPS);
    done();
    work(LOOPS);
    done();
    return 0;
}
"""

BAD_CALL = r"""
#include "lego_board.h"

int main(void)
{
    lego_board_init();
    /* An even target address means "switch to ARM state", which M-profile cores cannot do. */
    void (*volatile bad)(void) = (void (*)(void))0x100u;
    bad();
    return 0;
}
"""

MILLIS = r"""
#include "lego_board.h"

int main(void)
{
    lego_board_init();
    while (lego_board_millis() < 10u) {
    }
    return 7;
}
"""

SPIN = r"""
#include "lego_board.h"

int main(void)
{
    lego_board_init();
    for (;;) {
    }
}
"""


def build(board: Board, code: str, tmp_path: Path, name: str, *flags: str) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(code)
    elf = tmp_path / f"{name}.elf"
    proc = subprocess.run(
        board.gcc_command([src], elf, [*WARNINGS, *flags]), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # warning-free, including the linker
    return elf


def test_every_board_file_loads() -> None:
    files = sorted(p.stem for p in boards_dir().glob("*.json"))
    assert [b.name for b in list_boards()] == files
    assert {"stm32f746g", "nucleo-h743zi", "nucleo-f401re", "nucleo-g071rb", "qemu-m7", "host"} <= set(files)
    for name in files:
        board = load_board(name)
        assert board.name == name
        if board.is_host:
            assert board.linker_script is None and board.sources == ()
            continue
        assert board.toolchain == "arm-none-eabi"
        assert board.clock_hz and board.flash and board.ram
        for path in [board.linker_script_path(), *board.source_paths()]:
            assert path is not None and path.is_file()
        assert ("-mfloat-abi=hard" in board.cflags) == board.fpu


def test_linker_scripts_and_platformio_manifests_match_board_files() -> None:
    for board in list_boards():
        if board.is_host:
            continue
        assert board.flash is not None and board.ram is not None
        script = board.linker_script_path()
        assert script is not None
        regions = {
            name: (int(origin, 16), int(size) * 1024)
            for name, origin, size in re.findall(
                r"(\w+)\s*\(\w+\)\s*:\s*ORIGIN\s*=\s*(0x[0-9A-Fa-f]+),\s*LENGTH\s*=\s*(\d+)K",
                script.read_text(),
            )
        }
        assert regions == {
            "FLASH": (board.flash.origin, board.flash.size),
            "RAM": (board.ram.origin, board.ram.size),
        }
        manifest = json.loads((boards_dir() / "platformio" / "boards" / f"{board.name}.json").read_text())
        assert manifest["build"]["lego2c_board"] == board.name
        assert manifest["upload"] == {"maximum_size": board.flash.size, "maximum_ram_size": board.ram.size}


def test_qemu_twin_has_the_real_boards_limits() -> None:
    twin, real = load_board("qemu-m7"), load_board("stm32f746g")
    assert real.emulator_twin == "qemu-m7" and twin.qemu_machine == "mps2-an500"
    assert twin.cflags == real.cflags
    assert twin.flash is not None and real.flash is not None and twin.ram is not None and real.ram is not None
    assert (twin.flash.size, twin.ram.size) == (real.flash.size, real.ram.size)


def test_unknown_board_lists_known_boards() -> None:
    with pytest.raises(UsageError) as info:
        load_board("arduino-uno")
    assert "arduino-uno" in info.value.message
    for name in TARGETS:
        assert name in info.value.message


@pytest.mark.parametrize("name", TARGETS)
def test_hello_builds_for_every_target_board(name: str, tmp_path: Path) -> None:
    elf = build(load_board(name), HELLO, tmp_path, "hello")
    assert symbol_address(elf, "Reset_Handler") > 0


def test_hello_runs_in_qemu_with_exit_code(tmp_path: Path) -> None:
    board = load_board("qemu-m7")
    result = run_qemu(build(board, HELLO, tmp_path, "hello"), machine=board.qemu_machine or "")
    assert result.stdout == "hello from lego2c\n"
    assert result.exit_code == 3
    assert result.fault is None
    assert result.total_instructions > 0


def test_window_count_is_exact_and_scales(tmp_path: Path) -> None:
    board = load_board("qemu-m7")
    counts = []
    for loops in (100, 200, 300):
        elf = build(board, LOOP, tmp_path, f"loop{loops}", f"-DLOOPS={loops}u")
        window = (symbol_address(elf, "work"), symbol_address(elf, "done"))
        first, second = (run_qemu(elf, count_window=window) for _ in range(2))
        assert first == second  # deterministic, down to the last instruction
        assert first.exit_code == 0 and first.windows == 2
        counts.append(first.window_instructions)
    assert counts[1] - counts[0] == counts[2] - counts[1] > 0
    per_iteration = (counts[1] - counts[0]) / (2 * 100)
    assert 2 <= per_iteration <= 10


def test_millis_follows_the_instruction_clock(tmp_path: Path) -> None:
    # SysTick interrupts every millisecond; under -icount shift=2 a virtual millisecond is
    # 250,000 instructions, so 10 ms of busy-waiting costs about 2.5 M instructions.
    result = run_qemu(build(load_board("qemu-m7"), MILLIS, tmp_path, "millis"))
    assert result.exit_code == 7
    assert 2_400_000 < result.total_instructions < 2_600_000


def test_hardfault_is_reported_and_exits_nonzero(tmp_path: Path) -> None:
    result = run_qemu(build(load_board("qemu-m7"), BAD_CALL, tmp_path, "fault"), timeout=20)
    assert result.exit_code == FAULT_EXIT_CODE
    assert result.fault is not None and "pc=" in result.fault and "cfsr=" in result.fault


def test_spinning_firmware_times_out(tmp_path: Path) -> None:
    elf = build(load_board("qemu-m7"), SPIN, tmp_path, "spin")
    with pytest.raises(EmulatorError, match="did not finish within 2 s"):
        run_qemu(elf, timeout=2)


def test_platformio_builds_offline_and_runs_in_qemu(tmp_path: Path) -> None:
    board = load_board("qemu-m7")
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.c").write_text(HELLO)
    offline = prepare_offline(tmp_path / "pio-core")
    write_platformio_ini(project, board, offline, build_flags=("-Wall", "-Wextra", "-Werror"))
    elf = pio_build(project)
    assert elf.name == "firmware.elf"
    assert elf.with_suffix(".bin").is_file() and elf.with_suffix(".hex").is_file()
    result = run_qemu(elf)
    assert (result.stdout, result.exit_code) == ("hello from lego2c\n", 3)
