"""The whole pipeline, stage by stage: frontend -> compress -> codegen -> project -> toolchain.

The CLI calls these functions; tests and benchmarks call them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import json
import shutil
import tempfile

import numpy as np
import onnx

from .boards import Board, boards_dir, list_boards, load_board
from .codegen import GeneratedModel, c_floats, generate, templates
from .compress import CompressedModel, CompressOptions, compress, reconstructed_weights
from .frontend import load_model
from .ir import Graph
from .project import staged_output, write_file
from .resources import runtime_sources
from .errors import DoesNotFitError, EmulatorError, LegoError, UsageError
from .report import sizes
from .toolchain import FIT_HINT, MemoryUse, elf_memory, make, require, run_host
from .verify import ProgramOutput, max_error, parse_program_output, rounding_slack, run_onnx, test_input


@dataclass
class Compiled:
    """A model through the compiler's front half: IR, compressed weights, generated C."""

    path: Path
    graph: Graph
    compressed: CompressedModel
    code: GeneratedModel

    def lego_onnx(self) -> onnx.ModelProto:
        """The IR with every clustered weight replaced by its tiles: what the C computes."""
        return self.graph.to_onnx(reconstructed_weights(self.graph, self.compressed))


def compile_model(path: Path, opts: CompressOptions, input_shape: list[int] | None = None,
                  progress: bool = True) -> Compiled:  # fmt: skip
    return compile_graph(load_model(path, input_shape), path, opts, progress)


def compile_graph(graph: Graph, path: Path, opts: CompressOptions, progress: bool = True) -> Compiled:
    """`compile_model` for a graph already loaded from `path`: compression leaves the graph as it was."""
    cm = compress(graph, opts, progress=progress)
    return Compiled(Path(path), graph, cm, generate(graph, cm))


def reference_output(c: Compiled, x: np.ndarray) -> tuple[np.ndarray, float]:
    """onnxruntime's answer for what the C code should compute, and its `rounding_slack`: from the original
    file where the C computes exactly it (and takes the same inputs), else from the IR with the stored weights."""
    changed = (bool(reconstructed_weights(c.graph, c.compressed)) or c.graph.chosen_output is not None
               or bool(c.graph.dropped_inputs))  # fmt: skip
    model = c.lego_onnx() if changed else c.path
    ref = run_onnx(model, x)
    return ref, rounding_slack(c.graph, model, x, ref)


@dataclass
class HostRun:
    out_dir: Path
    output: ProgramOutput
    reference: np.ndarray
    max_error: float
    allowed: float
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.max_error <= self.allowed


def write_sources(c: Compiled, src: Path, x: np.ndarray, source: str, bench_runs: int = 1) -> None:
    """model.c/.h, the runtime, main.c and the baked test input into `src`."""
    env = templates()
    for name, text in c.code.files.items():
        write_file(src / name, text)
    for f in runtime_sources():
        write_file(src / f.name, f.read_text())
    write_file(src / "main.c", env.get_template("main.c.j2").render(bench_runs=bench_runs))
    write_file(src / "test_input.h", env.get_template("test_input.h.j2").render(values=c_floats(x), source=source))


def build_host(c: Compiled, out: Path, force: bool = False, input_npy: Path | None = None,
               bench_runs: int = 1, extra_cflags: str = "") -> HostRun:  # fmt: skip
    """Generate a host project, compile it with gcc, run it and compare with onnxruntime."""
    require("gcc")
    x = test_input(c.graph.shape(c.graph.inputs[0]), input_npy)
    ref, slack = reference_output(c, x)
    with staged_output(out, force) as tmp:
        write_sources(c, tmp / "src", x, str(input_npy) if input_npy else "deterministic, seed 0", bench_runs)
        write_file(tmp / "Makefile", templates().get_template("Makefile.host.j2").render())
        onnx.save(c.lego_onnx(), str(tmp / "model.lego.onnx"))
        make(tmp, variables={"EXTRA_CFLAGS": extra_cflags} if extra_cflags else None)
        result = parse_program_output(run_host(tmp / "model"))
    err, allowed = max_error(result.values, ref, slack)
    return HostRun(out.resolve(), result, ref, err, allowed)


BUILD_INFO = "lego2c.json"


@dataclass
class TargetBuild:
    out_dir: Path
    board: Board
    twin: Board | None
    memory: MemoryUse
    builder: str
    notes: list[str] = field(default_factory=list)

    @property
    def emulator_elf(self) -> Path | None:
        if self.board.qemu_machine:
            return self.out_dir / "firmware.elf"
        return self.out_dir / "emulator" / "firmware.elf" if self.twin else None


def _board_context(b: Board, out: str) -> dict[str, object]:
    assert b.linker_script is not None
    return dict(
        name=b.name, title=b.title, var=b.name.upper().replace("-", "_"), out=out,
        cflags=list(b.cflags), ldflags=list(b.ldflags), defines=b.define_flags(),
        sources=[f"board/{b.name}/{s}" for s in b.sources],
        linker_script=b.linker_script, linker_dir=str(Path(b.linker_script).parent),
    )  # fmt: skip


def _copy_board_files(b: Board, dest: Path) -> None:
    """The board's startup, console, header and linker scripts, so the project stands alone."""
    root = boards_dir()
    assert b.linker_script is not None
    files = [*b.sources, "common/lego_board.h", b.linker_script]
    files += [str(p.relative_to(root)) for p in (root / b.linker_script).parent.glob("*.ld")]
    for rel in sorted(set(files)):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, target)


def build_target(c: Compiled, board: Board, out: Path, force: bool = False, input_npy: Path | None = None,
                 bench_runs: int = 1, builder: str = "make") -> TargetBuild:  # fmt: skip
    """Write a firmware project for `board` (and its emulator twin), build it, and measure it."""
    from .platformio import pio_build, write_platformio_ini

    assert board.flash is not None and board.ram is not None
    require("arm-none-eabi-gcc")
    twin = load_board(board.emulator_twin) if board.emulator_twin else None
    x = test_input(c.graph.shape(c.graph.inputs[0]), input_npy)
    ref, slack = reference_output(c, x)
    notes: list[str] = []
    with staged_output(out, force) as tmp:
        write_sources(c, tmp / "src", x, str(input_npy) if input_npy else "deterministic, seed 0", bench_runs)
        boards = [board] + ([twin] if twin else [])
        for b in boards:
            _copy_board_files(b, tmp / "board" / b.name)
        ctx = [_board_context(board, "")] + ([_board_context(twin, "emulator/")] if twin else [])
        write_file(tmp / "Makefile", templates().get_template("Makefile.target.j2").render(boards=ctx))
        onnx.save(c.lego_onnx(), str(tmp / "model.lego.onnx"))
        np.save(tmp / "input.npy", x)
        np.save(tmp / "reference.npy", ref)
        try:
            write_platformio_ini(tmp, board)
        except LegoError as e:
            notes.append(f"no platformio.ini: {e.message}")
        try:
            if builder == "platformio":
                elf = pio_build(tmp)
                for suffix in (".elf", ".bin", ".hex"):
                    shutil.copyfile(elf.with_suffix(suffix), tmp / f"firmware{suffix}")
                shutil.rmtree(tmp / ".pio", ignore_errors=True)
            else:
                make(tmp, "all")
        except DoesNotFitError as e:
            raise DoesNotFitError(e.message, fit_hint(c, board, e.short), e.short) from None
        if twin:
            make(tmp, "emulator")
        memory = elf_memory(tmp / "firmware.elf", (board.flash.origin, board.flash.size), (board.ram.origin, board.ram.size))
        info = dict(board=board.name, twin=twin.name if twin else None, builder=builder, bench_runs=bench_runs,
                    model=str(c.path.resolve()), dataset=c.graph.metadata.get("dataset"), rounding_slack=slack)  # fmt: skip
        write_file(tmp / BUILD_INFO, json.dumps(info, indent=2, sort_keys=True) + "\n")
    return TargetBuild(out.resolve(), board, twin, memory, builder, notes)


def fit_hint(c: Compiled, board: Board, short: dict[str, int]) -> str:
    """What to try, given how many bytes each memory lacks: a model-data budget that fits flash, and for RAM
    the reminder that weight compression does not shrink activations."""
    tips = []
    if short.get("FLASH"):
        model = sizes(c.compressed, c.code).model_bytes
        fits = model - short["FLASH"]
        tips.append(f"flash: the model data takes {model:,} bytes; `--target-kb {fits // 1024}` picks per-layer plans "
                    "that fit (with --calib DATA.npz they keep more accuracy)" if fits >= 1024 else
                    f"flash: even without the {model:,} bytes of model data the firmware would not fit")  # fmt: skip
    if short.get("RAM"):
        assert board.ram is not None  # a target board: build_target checked
        need = board.ram.size + short["RAM"]
        bigger = [b.name for b in list_boards() if b.ram and b.ram.size >= need and not b.is_host]
        tips.append(f"RAM: the activations take {c.code.arena_bytes:,} bytes at their peak, and compressing weights "
                    "does not shrink them: give the model a smaller input or fewer channels"
                    + (f", or use a board with {need:,} bytes of RAM or more ({', '.join(bigger)})" if bigger else ""))  # fmt: skip
    return "; ".join(tips) or FIT_HINT


@dataclass
class EmulatedRun:
    board: str
    output: ProgramOutput
    reference: np.ndarray
    max_error: float
    allowed: float
    instructions_per_inference: float
    total_instructions: int
    profile: list[tuple[str, int]] = field(default_factory=list)  # (function, instructions), whole run
    dataset: str | None = None  # from the model's metadata, to name its classes

    @property
    def ok(self) -> bool:
        return self.max_error <= self.allowed


def read_build_info(out: Path) -> dict[str, object]:
    path = out / BUILD_INFO
    if not path.is_file():
        raise UsageError(f"'{out}' is not a lego2c firmware build (no {BUILD_INFO})",
                         hint="build one first: lego2c build model.onnx --board stm32f746g -o DIR")  # fmt: skip
    return json.loads(path.read_text())


def run_emulated(out: Path, timeout: float = 120, profile: bool = False) -> EmulatedRun:
    """Run a build's emulator firmware in QEMU; compare with onnxruntime; count instructions."""
    from .emulator import function_profile, run_qemu, symbol_address

    info = read_build_info(out)
    board = load_board(str(info["board"]))
    emu = board if board.qemu_machine else (load_board(str(info["twin"])) if info.get("twin") else None)
    if emu is None or emu.qemu_machine is None:
        raise UsageError(f"board '{board.name}' has no QEMU twin to run on")
    elf = out / "firmware.elf" if emu is board else out / "emulator" / "firmware.elf"
    window = (symbol_address(elf, "lego_bench_begin"), symbol_address(elf, "lego_bench_end"))
    with tempfile.TemporaryDirectory(prefix="lego2c-profile-") as tmp:
        prof = Path(tmp) / "profile.txt" if profile else None
        res = run_qemu(elf, machine=emu.qemu_machine, timeout=timeout, count_window=window, profile=prof)
        by_function = function_profile(elf, prof) if prof else []
    if res.fault:
        raise EmulatorError(f"the firmware crashed in the emulator: {res.fault}")
    prog = parse_program_output(res.stdout)
    if prog.rc != 0:
        raise EmulatorError(f"lego_model_run returned {prog.rc} in the emulator")
    ref = np.load(out / "reference.npy")
    err, allowed = max_error(prog.values, ref, float(info.get("rounding_slack") or 0.0))  # type: ignore[arg-type]
    per = res.window_instructions / max(prog.bench_runs, 1)
    dataset = info.get("dataset")
    return EmulatedRun(emu.name, prog, ref, err, allowed, per, res.total_instructions, by_function,
                       str(dataset) if dataset else None)  # fmt: skip
