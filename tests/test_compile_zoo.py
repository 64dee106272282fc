"""Every zoo model, compiled by lego2c, agrees with onnxruntime: on the host and in QEMU.

Dense builds are compared with the original ONNX file; clustered builds with
model.lego.onnx (the same graph with every tile replaced by its centroid). Both do the same
arithmetic as the C code, so the tolerance is the same: 1e-4 x max |output|.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lego2c.boards import load_board
from lego2c.build import build_host, build_target, compile_graph, compile_model, run_emulated
from lego2c.compress import DEFAULT_RECIPE, RECIPES, CompressOptions
from lego2c.frontend import load_model
from lego2c.search import plan_for_budget
from lego2c.errors import DoesNotFitError
from tests.zoo import ZOO

MODES = {"dense": CompressOptions(enabled=False), "clustered": CompressOptions(k=32, tile=(4, 4))}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("name", sorted(ZOO))
def test_host_matches_onnxruntime(name: str, mode: str, zoo: dict[str, Path], tmp_path: Path) -> None:
    c = compile_model(zoo[name], MODES[mode], progress=False)
    if mode == "clustered":
        assert any(lw.storage == "tiled" for lw in c.compressed.layers.values())
    run = build_host(c, tmp_path / "out")
    assert run.output.rc == 0
    assert run.max_error <= run.allowed, f"{name}/{mode}: {run.max_error} > {run.allowed}"


# The dense autoencoder (266k float32 weights) is larger than the F746's flash: see below. The models there for
# their other ops (all but the MLPerf Tiny shapes) run in QEMU clustered only: those ops compute alike either way.
MLPERF = ("mlp", "cnn", "resnet8", "dscnn", "mobilenetv1")
QEMU_CASES = [(n, m) for n in sorted(ZOO) for m in sorted(MODES)
              if (n, m) != ("autoencoder", "dense") and (n in MLPERF or m == "clustered")]  # fmt: skip


@pytest.mark.parametrize("name, mode", QEMU_CASES)
def test_stm32f746g_fits_and_qemu_twin_matches(name: str, mode: str, zoo: dict[str, Path], tmp_path: Path) -> None:
    board = load_board("stm32f746g")
    c = compile_model(zoo[name], MODES[mode], progress=False)
    tb = build_target(c, board, tmp_path / "fw")
    assert (tb.out_dir / "firmware.bin").is_file() and (tb.out_dir / "firmware.hex").is_file()
    assert 0 < tb.memory.flash <= board.flash.size and 0 < tb.memory.ram <= board.ram.size  # type: ignore[union-attr]
    r = run_emulated(tb.out_dir)
    assert r.output.rc == 0
    assert r.max_error <= r.allowed, f"{name}/{mode}: {r.max_error} > {r.allowed}"
    assert r.instructions_per_inference > sum(lc.macs for lc in c.code.layers)  # at least one per MAC


@pytest.fixture(scope="module")
def budget_plans(zoo: dict[str, Path]) -> dict[int, CompressOptions]:
    """The plan `--target-kb N` makes for the autoencoder, by N (the same for either builder)."""
    return {}


@pytest.mark.parametrize("builder", ["make", "platformio"])
def test_oversized_model_fails_with_shortfall_and_a_budget_that_fits(zoo: dict[str, Path], tmp_path: Path, builder: str,
                                                                     budget_plans: dict[int, CompressOptions]) -> None:  # fmt: skip
    board = load_board("stm32f746g")
    c = compile_model(zoo["autoencoder"], MODES["dense"], progress=False)
    with pytest.raises(DoesNotFitError) as e:
        build_target(c, board, tmp_path / "fw", builder=builder)
    assert "FLASH" in e.value.message and "bytes" in e.value.message
    assert not (tmp_path / "fw").exists()  # nothing half-written is left behind
    found = re.search(r"--target-kb (\d+)", e.value.hint or "")
    assert found, e.value.hint
    g, kb = load_model(zoo["autoencoder"]), int(found[1])
    if kb not in budget_plans:
        budget_plans[kb] = plan_for_budget(g, RECIPES[DEFAULT_RECIPE], None, None, kb, progress=False)[0]
    opts = budget_plans[kb]
    build_target(compile_graph(g, zoo["autoencoder"], opts, progress=False), board, tmp_path / "fw", builder=builder)  # fits


def test_activations_too_big_for_ram_say_so(zoo: dict[str, Path], tmp_path: Path) -> None:
    c = compile_model(zoo["resnet8"], MODES["clustered"], progress=False)
    with pytest.raises(DoesNotFitError) as e:
        build_target(c, load_board("nucleo-g071rb"), tmp_path / "fw")
    assert "RAM" in e.value.message
    assert f"activations take {c.code.arena_bytes:,} bytes" in (e.value.hint or "")
    assert "nucleo-h743zi" in (e.value.hint or "")  # a board whose RAM is large enough


def test_instruction_count_is_identical_on_rerun(zoo: dict[str, Path], tmp_path: Path) -> None:
    c = compile_model(zoo["dscnn"], MODES["clustered"], progress=False)
    tb = build_target(c, load_board("qemu-m7"), tmp_path / "fw", bench_runs=2)
    first, second = run_emulated(tb.out_dir), run_emulated(tb.out_dir)
    assert first.output.bench_runs == 2
    assert first.instructions_per_inference == second.instructions_per_inference > 0


def test_platformio_build_offline(zoo: dict[str, Path], tmp_path: Path) -> None:
    c = compile_model(zoo["cnn"], MODES["clustered"], progress=False)
    tb = build_target(c, load_board("stm32f746g"), tmp_path / "fw", builder="platformio")
    assert tb.builder == "platformio" and (tb.out_dir / "firmware.elf").is_file()
    assert "platform = symlink://" in (tb.out_dir / "platformio.ini").read_text()
    r = run_emulated(tb.out_dir)  # the twin is built with make from the same sources
    assert r.max_error <= r.allowed
