"""216 MHz clock setup for the STM32F746G-DISCO, flashing commands and Renode scripts, with the
real tools (no mocks). Nothing here touches hardware: the clock code is proven to compile, link
and be called in the right order; the flash commands are checked as dry runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lego2c.boards import Board, boards_dir, list_boards, load_board
from lego2c.emulator import run_qemu, symbol_address
from lego2c.errors import ToolchainMissingError, UsageError
from lego2c.flash import PROBES, flash, flash_command
from lego2c.renode import run_renode, write_renode_files

WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-g"]
HARDWARE = [b.name for b in list_boards() if not b.is_host and not b.qemu_machine]

HELLO = r"""
#include "lego_board.h"

int main(void)
{
    lego_board_init();
    static const char msg[] = "clock hello\n";
    lego_console_write(msg, sizeof msg - 1u);
    return 5;
}
"""


def build(board: Board, tmp_path: Path, name: str = "hello") -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(HELLO)
    elf = tmp_path / f"{name}.elf"
    proc = subprocess.run(board.gcc_command([src], elf, WARNINGS), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # warning-free, including the linker
    return elf


def calls_in(elf: Path, function: str) -> list[str]:
    """Names of the functions ``function`` calls, in code order (from the disassembly)."""
    text = subprocess.run(
        ["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    body = text.split(f"<{function}>:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"\bbl?\.?w?\s+[0-9a-f]+ <(\w+)>", body)


# --- 216 MHz on the STM32F746G-DISCO -------------------------------------------------------


def test_f746_board_file_describes_the_216_mhz_clock() -> None:
    board = load_board("stm32f746g")
    defines = dict(board.defines)
    assert board.clock_hz == board.max_clock_hz == 216_000_000
    assert "common/clock_stm32f7.c" in board.sources
    assert defines["LEGO_USART_CLOCK_HZ"] == "108000000u"  # APB2 = 216 / 2 feeds USART1
    assert defines["LEGO_CONSOLE_BAUD"] == "115200u"
    assert "-DLEGO_CLOCK_HZ=216000000u" in board.define_flags()  # SysTick reload follows it
    assert "216 MHz" in board.clock_note


def test_f746_firmware_with_clock_setup_builds_and_runs_it_first(tmp_path: Path) -> None:
    elf = build(load_board("stm32f746g"), tmp_path)
    # --gc-sections keeps lego_clock_init only because lego_board_init calls it, and it must
    # run before the console computes its baud rate from the 108 MHz APB2 clock.
    assert symbol_address(elf, "lego_clock_init") > 0
    calls = calls_in(elf, "lego_board_init")
    assert calls[:2] == ["lego_clock_init", "lego_console_init"], calls


def test_clock_file_rejects_a_board_clock_it_does_not_produce(tmp_path: Path) -> None:
    board = load_board("stm32f746g")
    source = boards_dir() / "common" / "clock_stm32f7.c"
    for bad in (["-DLEGO_CLOCK_HZ=16000000u"], ["-DLEGO_CLOCK_HZ=216000000u", "-DLEGO_USART_CLOCK_HZ=16000000u"]):
        proc = subprocess.run(
            [board.gcc, *board.cflags, *WARNINGS, f"-I{source.parent}", *bad, "-c", str(source),
             "-o", str(tmp_path / "clock.o")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode != 0 and "#error" in proc.stderr, proc.stderr


def test_qemu_twin_has_no_clock_setup_and_still_runs(tmp_path: Path) -> None:
    board = load_board("qemu-m7")
    assert not any("clock_" in source for source in board.sources)
    assert board.clock_hz == 25_000_000
    result = run_qemu(build(board, tmp_path), machine=board.qemu_machine or "")
    assert (result.stdout, result.exit_code, result.fault) == ("clock hello\n", 5, None)


# --- flashing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "target"),
    [("stm32f746g", "stm32f7x"), ("nucleo-h743zi", "stm32h7x"), ("nucleo-f401re", "stm32f4x"),
     ("nucleo-g071rb", "stm32g0x")],
)  # fmt: skip
def test_flash_dry_run_commands_are_exact(name: str, target: str, tmp_path: Path) -> None:
    board = load_board(name)
    out = tmp_path / "out"
    expected = {
        "pio": ["pio", "run", "-d", str(out), "-t", "upload"],
        "stlink": ["st-flash", "--reset", "write", f"{out}/firmware.bin", "0x08000000"],
        "openocd": ["openocd", "-f", "interface/stlink.cfg", "-f", f"target/{target}.cfg",
                    "-c", f"program {{{out}/firmware.elf}} verify reset exit"],
    }  # fmt: skip
    assert set(expected) == set(PROBES)
    for probe, command in expected.items():
        assert flash_command(out, board, probe) == command
        # A dry run needs neither the firmware nor the tool.
        assert flash(out, board, probe, dry_run=True) == command


def test_every_hardware_board_can_be_flashed_with_every_probe(tmp_path: Path) -> None:
    assert {"stm32f746g", "nucleo-h743zi", "nucleo-f401re", "nucleo-g071rb"} <= set(HARDWARE)
    for name in HARDWARE:
        for probe in PROBES:
            assert flash_command(tmp_path, load_board(name), probe)


@pytest.mark.parametrize("probe", PROBES)
def test_flash_without_firmware_says_to_build_first(probe: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        flash(tmp_path, load_board("stm32f746g"), probe)
    assert "lego2c build" in (info.value.hint or "")


@pytest.mark.parametrize("name", ["host", "qemu-m7"])
def test_boards_without_hardware_cannot_be_flashed(name: str, tmp_path: Path) -> None:
    for call in (lambda: flash_command(tmp_path, load_board(name), "stlink"),
                 lambda: flash(tmp_path, load_board(name), "pio", dry_run=True)):  # fmt: skip
        with pytest.raises(UsageError) as info:
            call()
        assert name in info.value.message and "qemu" in (info.value.hint or "")


def test_unknown_probe_lists_the_probes(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        flash(tmp_path, load_board("stm32f746g"), "jlink", dry_run=True)
    assert "jlink" in info.value.message
    for probe in PROBES:
        assert probe in info.value.message


@pytest.mark.parametrize(("probe", "tool", "install"), [("stlink", "st-flash", "stlink-tools"), ("openocd", "openocd", "openocd")])
def test_missing_flash_tool_says_how_to_install_it(probe: str, tool: str, install: str, tmp_path: Path) -> None:
    if shutil.which(tool):
        pytest.skip(f"{tool} is installed here")
    for name in ("firmware.bin", "firmware.elf"):
        (tmp_path / name).write_bytes(b"\0")
    with pytest.raises(ToolchainMissingError) as info:
        flash(tmp_path, load_board("stm32f746g"), probe)
    assert tool in info.value.message
    assert f"apt-get install {install}" in (info.value.hint or "")


# --- Renode --------------------------------------------------------------------------------


def test_renode_files_load_the_elf_on_the_f746_platform(tmp_path: Path) -> None:
    board = load_board("stm32f746g")
    elf = build(board, tmp_path)
    resc, robot = write_renode_files(tmp_path / "out", board, elf)
    platform = "machine LoadPlatformDescription @platforms/boards/stm32f7_discovery-bb.repl"
    script = resc.read_text()
    assert f"sysbus LoadELF @{elf}" in script and platform in script
    assert script.splitlines()[-2:] == ["showAnalyzer sysbus.usart1", "start"]
    test = robot.read_text()
    assert f"sysbus LoadELF @{elf}" in test and platform in test
    assert "${UART}                   sysbus.usart1" in test
    assert "Create Terminal Tester    ${UART}" in test
    assert test.rstrip().endswith("Wait For Line On Uart     LEGO_RESULT rc=0")
    assert test.index("Create Terminal Tester") < test.index("Start Emulation")


def test_renode_quotes_paths_with_spaces(tmp_path: Path) -> None:
    elf = tmp_path / "my build" / "firmware.elf"
    resc, _ = write_renode_files(tmp_path, load_board("stm32f746g"), elf)
    assert f'sysbus LoadELF "{elf}"' in resc.read_text()


def test_run_renode_without_renode_points_to_qemu(tmp_path: Path) -> None:
    if shutil.which("renode") or shutil.which("renode-test"):
        pytest.skip("Renode is installed here")
    with pytest.raises(ToolchainMissingError) as info:
        run_renode(tmp_path, load_board("stm32f746g"), timeout=10)
    assert "not installed" in info.value.message and "QEMU" in info.value.message
    assert "--emulator qemu" in info.value.message
    assert "github.com/renode/renode/releases" in (info.value.hint or "")


@pytest.mark.parametrize("name", ["qemu-m7", "nucleo-h743zi", "host"])
def test_renode_only_for_boards_it_models(name: str, tmp_path: Path) -> None:
    board = load_board(name)
    with pytest.raises(UsageError):
        write_renode_files(tmp_path, board, tmp_path / "firmware.elf")
    with pytest.raises(UsageError):
        run_renode(tmp_path, board, timeout=10)
