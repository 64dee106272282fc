"""Inference cost on an emulated Cortex-M7: instructions, flash and RAM, compressed and dense.

For every model and recipe: compile, build firmware for `qemu-m7` (the STM32F746's memory
limits), run it in QEMU, count the instructions of one inference exactly and check the output
against onnxruntime. `--markdown docs/benchmarks.md` also writes the table (and the targets of
issue 6) into that file, between marker comments.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from rich.console import Console
from rich.table import Table

from lego2c.boards import load_board
from lego2c.build import build_target, compile_model, run_emulated
from lego2c import search
from lego2c.compress import AUTO, DEFAULT_RECIPE, RECIPES, CompressOptions
from lego2c.errors import DoesNotFitError, LegoError
from lego2c.frontend import load_model
from lego2c.report import is_model_symbol, sizes
from lego2c.synthesize import bn_matched_inputs

ROOT = Path(__file__).resolve().parents[1]
BOARD = "qemu-m7"
# ONNX files in the repository: the trained model, and an exporter's recurrent model (tests/data/keras/).
FILES = {"resnet8-fmnist": ROOT / "models" / "resnet8_fmnist.onnx", "keras-lstm": ROOT / "tests" / "data" / "keras" / "lstm.onnx"}
ZOO_MODELS = ("resnet8", "dscnn", "mobilenetv1", "autoencoder")
# Board support in the firmware, not the model: left out of "model flash".
BOARD_FUNCTIONS = ("lego_board", "lego_console", "lego_clock", "lego_bench", "lego_hardfault")
TARGET_MODEL, TARGET_RECIPE, DENSE_RECIPE = "resnet8-fmnist", "K32", "no-compress"


def recipes() -> dict[str, tuple[str, CompressOptions]]:
    """Filter name -> (label, options). The default's plan depends on the model: see default_options."""
    return {
        "default": (f"default ({AUTO})", RECIPES[DEFAULT_RECIPE]),
        DEFAULT_RECIPE: (DEFAULT_RECIPE, RECIPES[DEFAULT_RECIPE]),
        **{f"K{k}": (f"4x4 K={k}", CompressOptions(k=k, tile=(4, 4))) for k in (16, 32, 64)},
        DENSE_RECIPE: (DENSE_RECIPE, CompressOptions(enabled=False)),
    }


@dataclass
class Row:
    model: str
    recipe: str  # filter name
    label: str
    macs: int
    compile_s: float
    honest: float
    paper: float | None
    arena: int
    instructions: float | None = None
    flash: int | None = None
    model_flash: int | None = None
    ram: int | None = None
    max_error: float | None = None
    ok: bool = False
    problem: str | None = None  # why there are no measurements, or why they are wrong
    fits: bool = True

    def cells(self) -> list[str]:
        def n(v: float | None) -> str:
            return "" if v is None else f"{v:,.0f}"

        ipm = "" if self.instructions is None else f"{self.instructions / self.macs:.3f}"
        paper = "n/a" if self.paper is None else f"{self.paper:.1f}x"
        if self.max_error is None:
            err = self.problem or ""
        else:
            err = f"{self.max_error:.1e}" + ("" if self.ok else f" FAIL: {self.problem}")
        return [self.model, self.label, f"{self.macs:,}", n(self.instructions), ipm, n(self.flash), n(self.model_flash),
                n(self.ram), f"{self.arena:,}", f"{self.honest:.1f}x", paper, err, f"{self.compile_s:.1f}"]  # fmt: skip


COLUMNS = ["model", "recipe", "MACs", "instr/inference", "instr/MAC", "flash B", "model flash B", "RAM B",
           "arena B", "honest", "paper", "max err vs ORT", "compile s"]  # fmt: skip


def kernel_code_bytes(elf: Path) -> int:
    """Sizes of the runtime's and the model's functions (lego_*), board support excluded."""
    with elf.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        return sum(s["st_size"] for s in symtab.iter_symbols()
                   if s["st_info"]["type"] == "STT_FUNC" and s.name.startswith("lego_")
                   and not s.name.startswith(BOARD_FUNCTIONS))  # fmt: skip


def measure(name: str, path: Path, recipe: str, label: str, opts: CompressOptions, out: Path) -> Row:
    start = time.perf_counter()
    c = compile_model(path, opts, progress=False)
    compile_s = time.perf_counter() - start
    s = sizes(c.compressed, c.code)
    row = Row(name, recipe, label, sum(l.macs for l in c.code.layers), compile_s, s.honest_ratio, s.paper_ratio,
              c.code.arena_bytes)  # fmt: skip
    try:
        tb = build_target(c, load_board(BOARD), out, force=True)
        run = run_emulated(out)
    except DoesNotFitError as e:
        row.problem, row.fits = f"does not fit: {e.message.removeprefix('the firmware does not fit the board: ')}", False
        return row
    except LegoError as e:
        row.problem = e.message
        return row
    model_data = sum(size for sym, size in tb.memory.symbols.items() if is_model_symbol(sym, c.code))
    row.instructions, row.flash, row.ram = run.instructions_per_inference, tb.memory.flash, tb.memory.ram
    row.model_flash = model_data + kernel_code_bytes(out / "firmware.elf")
    row.max_error, row.ok = run.max_error, run.ok
    if not run.ok:
        row.problem = f"allowed {run.allowed:.1e}"
    return row


def default_options(path: Path) -> tuple[str, CompressOptions]:
    """What `lego2c build` does with no options (search.default_plan). Its calibration changes stored values
    only, never sizes or instructions, so it is left out here."""
    g = load_model(path)
    d = search.default_plan(g, RECIPES[DEFAULT_RECIPE], lambda: bn_matched_inputs(g, progress=False)[0], progress=False)
    return f"default ({DEFAULT_RECIPE if d.obstacle else AUTO})", d.options


def model_paths(names: Sequence[str], tmp: Path) -> dict[str, Path]:
    from tests.zoo import export_zoo  # imports torch: only when zoo models are asked for

    zoo = [n for n in names if n in ZOO_MODELS]
    exported = export_zoo(tmp / "zoo", zoo) if zoo else {}
    return {n: FILES[n] if n in FILES else exported[n] for n in names}


def run_all(models: Sequence[str], recipe_names: Sequence[str], work: Path, log: Callable[[str], None]) -> list[Row]:
    table = recipes()
    rows: list[Row] = []
    for name, path in model_paths(models, work).items():
        done: dict[CompressOptions, Row] = {}  # the default recipe may equal one of the others
        for r in recipe_names:
            label, opts = default_options(path) if r == "default" else table[r]
            if opts not in done:
                done[opts] = measure(name, path, r, label, opts, work / "builds" / f"{name}-{r}")
            rows.append(replace(done[opts], recipe=r, label=label))
            instructions, per_mac = rows[-1].cells()[3:5]
            log(f"{name:<15} {label:<20} {instructions:>12} {per_mac:>6} {rows[-1].problem or ''}")
    return rows


@dataclass
class Target:
    what: str
    goal: str
    measured: str
    met: bool


def targets(rows: Sequence[Row]) -> list[Target]:
    """Issue 6's targets that this benchmark measures, for the Fashion-MNIST ResNet-8."""
    by = {(r.model, r.recipe): r for r in rows}
    comp, dense = by.get((TARGET_MODEL, TARGET_RECIPE)), by.get((TARGET_MODEL, DENSE_RECIPE))
    out: list[Target] = []
    if comp is None:
        return out
    out.append(Target("peak activation RAM (arena)", "≤ 115 KB (117,760 B)", f"{comp.arena:,} B",
                      comp.arena <= 115 * 1024))  # fmt: skip
    if comp.instructions is None or comp.model_flash is None:
        return out
    ipm = comp.instructions / comp.macs
    out.append(Target("instructions per MAC, K=32 4x4", "≤ 2.0", f"{ipm:.3f}", ipm <= 2.0))
    out.append(Target("model flash, K=32 4x4, code included", "≤ 24 KB (24,576 B)", f"{comp.model_flash:,} B",
                      comp.model_flash <= 24 * 1024))  # fmt: skip
    if dense is not None and dense.instructions is not None:
        ratio = comp.instructions / dense.instructions
        out.append(Target("compressed / no-compress instructions", "≤ 1.1x", f"{ratio:.3f}x", ratio <= 1.1))
    return out


def machine() -> str:
    def first_line(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            return f"{cmd[0]}: not available"

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())  # fmt: skip
    return (f"{cpu}, {os.cpu_count()} CPUs; {first_line(['qemu-system-arm', '--version'])}; "
            f"{first_line(['arm-none-eabi-gcc', '--version'])}; Python {platform.python_version()}")  # fmt: skip


def provenance(prog: str, argv: Sequence[str]) -> str:
    """The command, date and machine, as Markdown lines under a generated table."""
    cmd = shlex.join(["python", "-m", prog, *argv])
    return f"Command: `{cmd}`  \nDate: {datetime.date.today().isoformat()}  \nMachine: {machine()}\n"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    rule = ["---:" if r else "---" for r in right]
    return "\n".join([line(header), "|" + "|".join(rule) + "|", *map(line, rows)]) + "\n"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the text between `<!-- BEGIN name -->` and `<!-- END name -->`, or append the section."""
    begin, end = f"<!-- BEGIN {name} (generated) -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body}{end}"
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text + ("\n" if text and not text.endswith("\n") else "") + block + "\n"
    path.write_text(text)


def markdown(rows: Sequence[Row], argv: Sequence[str]) -> str:
    right = [c not in ("model", "recipe", "max err vs ORT") for c in COLUMNS]
    body = markdown_table(COLUMNS, [r.cells() for r in rows], right)
    found = targets(rows)
    if found:
        body += f"\nIssue 6's targets, for `{TARGET_MODEL}`:\n\n"
        body += markdown_table(["target", "goal", "measured", "met"],
                               [[t.what, t.goal, t.measured, "yes" if t.met else "**no**"] for t in found],
                               [False, True, True, False])  # fmt: skip
    return body + "\n" + provenance("benchmarks.mcu", argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    all_models, all_recipes = [*FILES, *ZOO_MODELS], list(recipes())
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mcu", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=all_models, default=all_models, metavar="M",
                        help=f"models to run (default: all of {', '.join(all_models)})")
    parser.add_argument("--recipes", nargs="+", choices=all_recipes, default=all_recipes, metavar="R",
                        help=f"recipes to run (default: all of {', '.join(all_recipes)})")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the table into FILE (docs/benchmarks.md)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the exported models and firmware builds in DIR")
    args = parser.parse_args(argv)  # fmt: skip
    console = Console(stderr=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lego2c-bench-") as tmp:
        work = args.keep or Path(tmp)
        rows = run_all(args.models, args.recipes, work, console.print)
    table = Table(title=f"lego2c on {BOARD} ({time.perf_counter() - start:.0f} s)", title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("model", "recipe", "max err vs ORT") else "right")
    for r in rows:
        table.add_row(*r.cells())
    Console(width=max(Console().width, 200)).print(table)  # 13 columns: too wide to squeeze
    for t in targets(rows):
        print(f"target {t.what}: {t.measured} (goal {t.goal}): {'met' if t.met else 'NOT met'}")
    if args.markdown:
        write_section(args.markdown, "mcu", markdown(rows, argv))
    return 0 if all(r.ok or not r.fits for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
