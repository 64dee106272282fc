"""The `lego2c` command line. Parsing and printing only: the work is in `build`."""

from __future__ import annotations

import argparse
from dataclasses import replace
import json
import shlex
import sys
from pathlib import Path

from rich.console import Console

from . import __version__
import numpy as np
from rich.table import Table

from .boards import Board, list_boards, load_board
from .build import Compiled, build_host, build_target, compile_graph, read_build_info, run_emulated
from .calibrate import STEPS, calibrate, calibrated
from .compress import AUTO, DEFAULT_RECIPE, RECIPES, STORED, CompressOptions
from .datasets import CLASS_NAMES, DATASETS, load_dataset
from .errors import EmulatorError, LegoError, UsageError
from .evaluate import check_inputs, evaluate, evaluation_table
from .frontend import load_model
from .ir import Graph
from .search import choice_table, default_plan, load_plan, measure, plan_for_budget, save_plan, search_max_drop
from .synthesize import bn_matched_inputs
from .project import ignore_interrupts
from .report import layer_flash_table, memory_table, print_report, sizes
from .verify import max_error, parse_program_output

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

# Pipes and CI logs get a wide fixed width so per-layer tables are not truncated.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, highlight=False)


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors go through our error path (exit code 2, a hint)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"see `{self.prog} --help`")


def _tile(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        r, c = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a tile shape like 4 or 2x4") from None
    return r, c


def _shape(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.replace("x", ",").split(",") if d]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 1,3,32,32") from None
    if not dims or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape of positive dims")
    return dims


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="ONNX model file")
    p.add_argument("--input-shape", type=_shape, metavar="DIMS", help="static input shape, e.g. 1,3,32,32")
    p.add_argument("--output-name", metavar="TENSOR", help="the one tensor to compute (a graph output or any node's "
                   "output): for models with several outputs, or post-processing such as ArgMax after the logits")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    _add_source_args(p)
    g = p.add_argument_group("compression (LegoNet block clustering); options override the recipe")
    g.add_argument("--recipe", choices=[AUTO, *sorted(RECIPES)], default=AUTO,
                   help=f"a named set of the options below. Default {AUTO}: the {DEFAULT_RECIPE} recipe; on a model with "
                        "BatchNorm statistics, calibrated on inputs made from them, with the smallest per-layer plan "
                        "predicted to keep the logits close (minutes, not seconds; see README)")  # fmt: skip
    g.add_argument("-K", dest="k", type=int, help="codebook size")
    g.add_argument("-b", "--tile", dest="tile", type=_tile, metavar="B|RxC",
                   help="tile shape: 4 means 4x4, or rows x cols like 2x4")  # fmt: skip
    g.add_argument("--scope", choices=["global", "layer"], help="one codebook for the model, or one per layer")
    g.add_argument("--channel-scales", action=argparse.BooleanOptionalAction, default=None,
                   help="normalise each output channel by its own scale before clustering")  # fmt: skip
    g.add_argument("--bias-correction", action=argparse.BooleanOptionalAction, default=None,
                   help="data-free: correct each layer's mean output shift, estimated from BatchNorm statistics")  # fmt: skip
    g.add_argument("--codebook-dtype", choices=STORED, help="storage of codebook entries (i8: int8 codes of a power of two)")
    g.add_argument("--side-dtype", choices=STORED, help="storage of scales and biases (i8: int8 codes of a power of two)")
    g.add_argument("--protect", nargs="+", metavar="NODE", help="keep these dense at --protect-dtype ('first', 'last' or names)")
    g.add_argument("--protect-dtype", choices=["i8", "f16", "f32"], help="storage of protected layers")
    g.add_argument("--exclude", nargs="+", default=[], metavar="NODE", help="keep these nodes' weights dense float32")
    g.add_argument("--no-compress", action="store_true", help="keep every weight dense float32")
    g.add_argument("--seed", type=int, default=0, help="k-means and distillation seed (default 0)")
    g = p.add_argument_group("data and budgets (accuracy on real data; see docs/accuracy.md)")
    g.add_argument("--calib", metavar="DATA.npz", help="unlabeled inputs ('x'): activation-weighted index assignment, "
                   "bias correction, and distillation of codebooks, scales and biases (needs torch); the budget search "
                   "measures on them too. 'synthetic': no data, inputs made to match the model's BatchNorm "
                   "statistics (ZeroQ)")  # fmt: skip
    g.add_argument("--calib-steps", type=int, default=STEPS, metavar="N",
                   help=f"distillation steps (default {STEPS}; 0: index assignment and bias correction only)")  # fmt: skip
    g.add_argument("--move-indices", action="store_true", help="let distillation change which codebook entry each "
                   "tile takes (helped ResNet-8 at 28x; not at 20x, nor DS-CNN at 12x: docs/accuracy.md)")  # fmt: skip
    budget = g.add_mutually_exclusive_group()
    budget.add_argument("--target-ratio", type=float, metavar="R", help="choose each layer's plan for this honest ratio")
    budget.add_argument("--target-kb", type=float, metavar="N", help="choose each layer's plan for N KB (1024 bytes) of model data")
    budget.add_argument("--max-drop", type=float, metavar="P", help="the smallest plan losing at most P top-1 points on --val")
    g.add_argument("--val", metavar="DATA", help="validation data for --max-drop: fashion-mnist, digits or FILE.npz "
                   "(without labels 'y', the drop is 100 - top-1 agreement with the original)")  # fmt: skip
    g.add_argument("--plan", type=Path, metavar="FILE.json", help="use the per-layer plan in FILE (written by --save-plan)")
    g.add_argument("--save-plan", type=Path, metavar="FILE.json", help="write the per-layer plan that was used")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lego2c", description="Compile ONNX models to block-clustered C for microcontrollers.")
    p.add_argument("--version", action="version", version=f"lego2c {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("inspect", help="layers, shapes, params, MACs and compressed bytes per layer")
    _add_model_args(s)

    s = sub.add_parser("compress", help="write model.lego.onnx: every block replaced by its centroid")
    _add_model_args(s)
    s.add_argument("-o", "--output", type=Path, required=True, help="output .onnx path")
    s.add_argument("--force", action="store_true", help="overwrite an existing output file")

    s = sub.add_parser("build", help="generate C and build it for a board")
    _add_model_args(s)
    s.add_argument("--board", default="host", help="target board (see `lego2c boards`); default host")
    s.add_argument("-o", "--output", type=Path, default=Path("out"), help="output folder (default out/)")
    s.add_argument("--force", action="store_true", help="replace an output folder holding other files")
    s.add_argument("--input", type=Path, metavar="FILE.npy", help="test input baked into the program")
    s.add_argument("--bench", type=int, default=1, metavar="N", help="inferences in the bench loop (default 1)")
    s.add_argument("--builder", choices=["make", "platformio"], default="make",
                   help="build firmware with the generated Makefile (default) or `pio run`")  # fmt: skip

    s = sub.add_parser("run", help="run a firmware build in an emulator and check it against onnxruntime")
    s.add_argument("build_dir", type=Path, help="folder written by `lego2c build --board ...`")
    s.add_argument("--emulator", choices=["qemu", "renode"], default="qemu")
    s.add_argument("--timeout", type=float, default=120, help="seconds before the run is abandoned (default 120)")
    s.add_argument("--profile", action="store_true", help="also print executed instructions per function")

    s = sub.add_parser("flash", help="write a firmware build to a board")
    s.add_argument("build_dir", type=Path, help="folder written by `lego2c build --board ...`")
    s.add_argument("--probe", choices=["pio", "stlink", "openocd"], default="stlink",
                   help="flash with `pio run -t upload`, st-flash (default) or OpenOCD")  # fmt: skip
    s.add_argument("--dry-run", action="store_true", help="print the exact command, do not run it")

    s = sub.add_parser("eval", help="top-1 of the original and the compressed model on real data")
    _add_model_args(s)
    s.add_argument("--dataset", required=True, metavar="NAME|FILE.npz", help="fashion-mnist, digits, or an .npz with 'x' (and 'y')")
    s.add_argument("--split", choices=["train", "test"], default="test", help="split of a named dataset (default test)")
    s.add_argument("--limit", type=int, metavar="N", help="evaluate the first N examples only")

    s = sub.add_parser("sweep", help="top-1 against honest ratio over tile shapes and K, beside int8/int4/int3")
    _add_source_args(s)
    s.add_argument("--dataset", required=True, metavar="NAME|FILE.npz", help="labeled evaluation data")
    s.add_argument("--limit", type=int, metavar="N", help="evaluate the first N examples only")
    s.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")
    s.add_argument("-o", "--output", type=Path, default=Path("sweep.png"), help="plot file (default sweep.png)")
    s.add_argument("--json", type=Path, metavar="FILE", help="also write every point as JSON")

    sub.add_parser("boards", help="the known boards and their memories")
    return p


OPTION_KEYS = ("k", "tile", "scope", "channel_scales", "bias_correction", "codebook_dtype", "side_dtype", "protect_dtype")


def _customised(a: argparse.Namespace) -> bool:
    """Whether the user set any compression option beyond the recipe."""
    return any(getattr(a, key) is not None for key in OPTION_KEYS) or bool(a.protect or a.exclude or a.no_compress)


def _options(a: argparse.Namespace) -> CompressOptions:
    """The recipe's options, with every option the user gave on top."""
    given = {key: getattr(a, key) for key in OPTION_KEYS if getattr(a, key) is not None}
    if a.protect is not None:
        given["protect"] = tuple(a.protect)
    opts = replace(RECIPES[DEFAULT_RECIPE if a.recipe == AUTO else a.recipe], **given)
    return replace(opts, exclude=tuple(a.exclude), enabled=not a.no_compress, seed=a.seed)


def _compile(a: argparse.Namespace, graph: Graph | None = None) -> Compiled:
    """The recipe, a searched or saved per-layer plan on top, then calibration when data is given.

    `graph`: the model, when the caller has loaded it already (every stage below reads the same one).
    """
    opts = _options(a)
    opts.validate()
    progress = console.is_terminal
    graph = load_model(a.model, a.input_shape, a.output_name) if graph is None else graph
    calib = _calibration_inputs(a, graph, progress) if a.calib else None
    if a.plan:
        opts = replace(opts, plans=load_plan(a.plan))
    elif a.target_ratio is not None or a.target_kb is not None or a.max_drop is not None:
        opts = _search(a, graph, opts, calib, progress)
    elif calib is None and a.recipe == AUTO and not _customised(a):
        opts, calib = _auto(graph, a.seed, opts, progress)
    if a.move_indices and calib is None:
        raise UsageError("--move-indices changes indices during calibration, and nothing calibrates this model",
                         hint="give --calib DATA.npz (or --calib synthetic)")  # fmt: skip
    c = compile_graph(graph, a.model, opts, progress=progress)
    if calib is not None:
        c, res = calibrated(c, calib, a.calib_steps, a.seed, progress, a.move_indices)
        moves = f", {res.moved} index changes" if a.move_indices else ""
        console.print(f"calibration on {len(calib)} inputs: relative output error {res.error_before:.4f} -> "
                      f"{res.error_after:.4f} (index assignment, bias correction, {res.steps} distillation steps{moves})")  # fmt: skip
    if a.save_plan:
        save_plan(a.save_plan, c.graph, c.compressed.options)
    return c


def _calibration_inputs(a: argparse.Namespace, graph: Graph, progress: bool) -> np.ndarray:
    if a.calib != "synthetic":
        return _data(a.calib, "--calib")[0]
    return _synthetic(graph, a.seed, progress)


def _synthetic(graph: Graph, seed: int, progress: bool) -> np.ndarray:
    x, loss = bn_matched_inputs(graph, seed=seed, progress=progress)
    console.print(f"synthesised {len(x)} calibration inputs from the model's BatchNorm statistics "
                  f"(matching loss {loss:.2g}; 0 is a perfect match)")  # fmt: skip
    return x


def _auto(graph: Graph, seed: int, opts: CompressOptions, progress: bool) -> tuple[CompressOptions, np.ndarray | None]:
    """The default recipe (search.default_plan), with what it does said as it goes."""
    d = default_plan(graph, opts, lambda: _synthetic(graph, seed, progress), progress, say=console.print)
    if d.table is not None:
        console.print(d.table)
    return d.options, d.calib


def _data(name: str, flag: str, split: str = "train") -> tuple[np.ndarray, np.ndarray | None]:
    if name.endswith(".npz") or name in DATASETS:
        return load_dataset(name, split)
    raise UsageError(f"{flag} {name}: not a dataset name or an .npz file", hint=f"use {', '.join(DATASETS)} or FILE.npz")


def _search(a: argparse.Namespace, graph: Graph, opts: CompressOptions, calib: np.ndarray | None,
            progress: bool) -> CompressOptions:  # fmt: skip
    """Per-layer plans for a size budget, or for an accuracy floor measured on --val."""
    if a.max_drop is None:
        found, table = plan_for_budget(graph, opts, calib, a.target_ratio, a.target_kb, progress)
        console.print(table)
        return found
    if not a.val:
        raise UsageError("--max-drop needs --val data to measure the drop on", hint="e.g. --val fashion-mnist or --val val.npz")
    xv, yv = _data(a.val, "--val", "test")
    s = measure(graph, opts, calib, progress)

    def drop_of(o: CompressOptions) -> float:
        c = compile_graph(graph, a.model, o, progress=False)
        if calib is not None:  # bias correction only while searching: distillation runs once, at the end
            calibrate(c.graph, c.compressed, calib, 0, a.seed, progress=False)
        e = evaluate(c, xv, yv, progress=False)
        return e.drop if e.drop is not None else 100.0 - e.agreement

    found, choice, drop = search_max_drop(s, opts, drop_of, a.max_drop, progress)
    console.print(choice_table(s, choice))
    console.print(f"measured on {a.val}: drop {drop:.2f} points (limit {a.max_drop})")
    return found


def _write_json(a: argparse.Namespace, c: Compiled, extra: dict[str, object] | None = None) -> None:
    if a.json:
        data = sizes(c.compressed, c.code).as_dict() | {"arena_bytes": c.code.arena_bytes} | (extra or {})
        a.json.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def cmd_eval(a: argparse.Namespace) -> int:
    x, y = _data(a.dataset, "--dataset", a.split)
    if a.limit is not None:
        x, y = x[: a.limit], None if y is None else y[: a.limit]
    graph = load_model(a.model, a.input_shape, a.output_name)
    check_inputs(graph, x)  # before compression, which may take minutes
    c = _compile(a, graph)
    e = evaluate(c, x, y, progress=console.is_terminal)
    print_report(console, c.compressed, c.code, f"{a.model.name}")
    console.print(evaluation_table(e, f"{a.model.name} on {a.dataset} ({e.n:,} examples)"))
    if a.json:
        a.json.write_text(json.dumps(e.as_dict(), indent=2, sort_keys=True) + "\n")
    return 0


def cmd_sweep(a: argparse.Namespace) -> int:
    from .sweep import run_sweep, sweep_table

    x, y = _data(a.dataset, "--dataset", "test")
    if y is None:
        raise UsageError(f"--dataset {a.dataset} has no labels ('y')", hint="a sweep plots top-1: it needs labels")
    if a.limit is not None:
        x, y = x[: a.limit], y[: a.limit]
    graph = load_model(a.model, a.input_shape, a.output_name)
    points = run_sweep(graph, a.model, x, y, a.output, a.seed, progress=console.is_terminal)
    console.print(sweep_table(points, f"{a.model.name}: top-1 against honest ratio ({len(x):,} examples)"))
    console.print(f"wrote {a.output}")
    if a.json:
        a.json.write_text(json.dumps([p.as_dict() for p in points], indent=2) + "\n")
    return 0


def cmd_inspect(a: argparse.Namespace) -> int:
    c = _compile(a)
    print_report(console, c.compressed, c.code, f"{a.model.name}")
    _write_json(a, c)
    return 0


def cmd_compress(a: argparse.Namespace) -> int:
    out: Path = a.output
    if out.exists() and not a.force:
        raise UsageError(f"'{out}' exists; refusing to overwrite it", hint="choose another -o, or pass --force")
    c = _compile(a)
    import onnx

    tmp = out.with_name(f".{out.name}.tmp")
    onnx.save(c.lego_onnx(), str(tmp))
    tmp.replace(out)
    print_report(console, c.compressed, c.code, f"{a.model.name} -> {out}")
    _write_json(a, c)
    return 0


def cmd_build(a: argparse.Namespace) -> int:
    if a.bench < 1:
        raise UsageError(f"--bench {a.bench}: the bench loop needs at least 1 inference")
    board = load_board(a.board)
    c = _compile(a)
    if not board.is_host:
        return _build_target(a, c, board)
    run = build_host(c, a.output, a.force, a.input, a.bench)
    print_report(console, c.compressed, c.code, f"{a.model.name} for host")
    console.print(f"wrote {run.out_dir} (host program: {run.out_dir / 'model'})")
    status = "[green]match[/]" if run.ok else "[red]MISMATCH[/]"
    console.print(f"host run vs onnxruntime: max abs error {run.max_error:.3g} (allowed {run.allowed:.3g}) {status}")
    _write_json(a, c, {"max_error": run.max_error})
    if not run.ok:
        raise EmulatorError(f"the compiled model disagrees with onnxruntime: max abs error {run.max_error:.3g}")
    return 0


def _build_target(a: argparse.Namespace, c: Compiled, board: Board) -> int:
    tb = build_target(c, board, a.output, a.force, a.input, a.bench, a.builder)
    print_report(console, c.compressed, c.code, f"{a.model.name} for {board.title}")
    console.print(memory_table(board, tb.memory, c.code))
    console.print(layer_flash_table(tb.memory, c.code))
    console.print(f"wrote {tb.out_dir}: firmware.elf/.bin/.hex, Makefile, platformio.ini (built with {tb.builder})")
    if tb.twin:
        console.print(f"emulator twin {tb.twin.name}: {tb.emulator_elf}; run it with `lego2c run {a.output}`")
    for note in tb.notes:
        console.print(f"note: {note}")
    _write_json(a, c, {"flash_bytes": tb.memory.flash, "ram_bytes": tb.memory.ram})
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    if a.emulator == "renode":
        return _run_renode(a)
    r = run_emulated(a.build_dir, a.timeout, profile=a.profile)
    if r.profile:
        t = Table(title="instructions per function (whole run: start-up, check run and bench loop)")
        for col in ("function", "instructions", "share"):
            t.add_column(col, justify="left" if col == "function" else "right")
        for name, n in r.profile[:20]:
            t.add_row(name, f"{n:,}", f"{100 * n / r.total_instructions:.1f}%")
        console.print(t)
    values = r.output.values
    top = np.argsort(-values)[:3]
    names = CLASS_NAMES.get(r.dataset or "", ())

    def label(i: int) -> str:
        return f"{i} '{names[i]}'" if i < len(names) else str(i)

    console.print(f"{r.board} (QEMU): outputs {values.size}, top classes "
                  + ", ".join(f"{label(int(i))} ({values[i]:.4g})" for i in top))  # fmt: skip
    console.print(f"instructions per inference: {r.instructions_per_inference:,.0f} "
                  f"(exact, QEMU TCG plugin; {r.output.bench_runs} run(s) in the window)")  # fmt: skip
    status = "[green]match[/]" if r.ok else "[red]MISMATCH[/]"
    console.print(f"emulator vs onnxruntime: max abs error {r.max_error:.3g} (allowed {r.allowed:.3g}) {status}")
    if not r.ok:
        raise EmulatorError(f"the firmware disagrees with onnxruntime: max abs error {r.max_error:.3g}")
    return 0


def _run_renode(a: argparse.Namespace) -> int:
    """Write the Renode script and Robot test; run them when Renode is installed."""
    from .renode import run_renode, write_renode_files

    info = read_build_info(a.build_dir)
    board = load_board(str(info["board"]))
    resc, robot = write_renode_files(a.build_dir, board, a.build_dir / "firmware.elf")
    console.print(f"wrote {resc} and {robot}")
    prog = parse_program_output(run_renode(a.build_dir, board, a.timeout))
    slack = float(info.get("rounding_slack") or 0.0)  # type: ignore[arg-type]
    err, allowed = max_error(prog.values, np.load(a.build_dir / "reference.npy"), slack)
    console.print(f"Renode vs onnxruntime: max abs error {err:.3g} (allowed {allowed:.3g})")
    if err > allowed or prog.rc != 0:
        raise EmulatorError(f"the firmware disagrees with onnxruntime on Renode: max abs error {err:.3g}")
    return 0


def cmd_flash(a: argparse.Namespace) -> int:
    from .flash import flash

    board = load_board(str(read_build_info(a.build_dir)["board"]))
    cmd = flash(a.build_dir.resolve(), board, a.probe, dry_run=a.dry_run)
    console.print(shlex.join(cmd), soft_wrap=True)
    return 0


def cmd_boards(a: argparse.Namespace) -> int:
    t = Table(title="boards")
    for col in ("name", "board", "core", "flash", "RAM", "clock", "emulator"):
        t.add_column(col)
    for b in list_boards():
        flash = f"{b.flash.size // 1024} KB" if b.flash else "-"
        ram = f"{b.ram.size // 1024} KB" if b.ram else "-"
        clock = f"{b.clock_hz / 1e6:g} MHz" if b.clock_hz else "-"
        emu = b.emulator_twin or ("QEMU " + b.qemu_machine if b.qemu_machine else "")
        t.add_row(b.name, b.title, b.core, flash, ram, clock, emu)
    console.print(t)
    return 0


COMMANDS = {"inspect": cmd_inspect, "compress": cmd_compress, "build": cmd_build, "run": cmd_run,
            "flash": cmd_flash, "boards": cmd_boards, "eval": cmd_eval, "sweep": cmd_sweep}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = _parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except LegoError as e:
        errors.print(f"[bold red]error:[/] {e.message}", markup=True, soft_wrap=True)
        if e.hint:
            errors.print(f"  hint: {e.hint}", soft_wrap=True)
        if debug:
            raise
        return e.exit_code
    except KeyboardInterrupt:
        ignore_interrupts()  # a second Ctrl-C must not cut this exit short
        errors.print("interrupted; no output was left half-written")
        return EXIT_INTERRUPTED
    except Exception as e:  # a bug in lego2c: say so, without a traceback unless asked
        if debug:
            raise
        errors.print(f"[bold red]internal error:[/] {type(e).__name__}: {e}", soft_wrap=True)
        errors.print("  hint: rerun with --debug for the traceback, and please report it")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
