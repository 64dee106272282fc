"""The default on models nothing in lego2c was tuned on: held-out architectures, and another exporter.

    python -m benchmarks.heldout --markdown docs/heldout.md   # time: see docs/heldout.md

The reference models (ResNet-8, DS-CNN, the digits CNN) set the default's rule. This trains four
more on Fashion-MNIST from seed 0 (`scripts/train.py vgg-fmnist`, `mbv2-fmnist`, `mlp-fmnist` and
`conv1d-fmnist`, 3 epochs each), exports them with the legacy exporter (BatchNorm kept) and the
MobileNetV2 also with the dynamo exporter (BatchNorm folded), and runs what a user runs:
`lego2c eval MODEL --dataset fashion-mnist` with no compression options, on each seed, and
`--recipe safe` beside it. The trained files are kept in `--dir` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.mcu import markdown_table, provenance, write_section

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    label: str
    recipe: str  # scripts/train.py's
    dynamo: bool

    def path(self, folder: Path) -> Path:
        return export_path(folder, self.recipe, self.dynamo)


def export_path(folder: Path, recipe: str, dynamo: bool) -> Path:
    return folder / f"{recipe}{'-dynamo' if dynamo else ''}.onnx"


CASES = (
    Case("VGG-style (5 conv, max-pooling, 2 dense)", "vgg-fmnist", False),
    Case("MobileNetV2-style (inverted residuals, ReLU6)", "mbv2-fmnist", False),
    Case("the same MobileNetV2, dynamo export (BatchNorm folded)", "mbv2-fmnist", True),
    Case("MLP (3 dense layers with BatchNorm)", "mlp-fmnist", False),
    Case("1-D convs (rows as channels, columns as steps)", "conv1d-fmnist", False),
)


def trained(case: Case, folder: Path) -> Path:
    """The case's model, trained and exported by both exporters unless `folder` already holds it."""
    from scripts.train import run

    if not case.path(folder).exists():
        run(case.recipe, export_path(folder, case.recipe, False), dynamo_out=export_path(folder, case.recipe, True))
    return case.path(folder)


def evaluate(model: Path, args: list[str]) -> tuple[dict[str, float], str]:
    """`lego2c eval` as a user runs it: its --json figures and what it said the default did."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval.json"
        proc = subprocess.run([sys.executable, "-m", "lego2c", "eval", str(model), "--dataset", "fashion-mnist",
                               *args, "--json", str(out)], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "COLUMNS": "1000"})  # fmt: skip  # one line per message
        if proc.returncode != 0:
            raise SystemExit(f"lego2c eval {model.name} {' '.join(args)} failed:\n{proc.stderr}")
        said = " ".join(" ".join(l.split()) for l in proc.stdout.splitlines() if l.startswith("default recipe"))
        return json.loads(out.read_text()), said


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.heldout", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the default (default 0 1)")
    p.add_argument("--dir", type=Path, default=ROOT / "build" / "heldout", help="where the trained models are kept")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="also write the table into FILE (docs/heldout.md)")
    a = p.parse_args(argv)
    a.dir.mkdir(parents=True, exist_ok=True)
    table = Table("model", "recipe", "top-1 original", "drop (points)", "agreement", "honest ratio", "model bytes",
                  "seconds", title="held-out models on Fashion-MNIST (10,000 test images)")  # fmt: skip
    rows: list[list[str]] = []
    said: dict[str, str] = {}
    for case in CASES:
        model = trained(case, a.dir)
        runs = [(f"default, seed {s}", ["--seed", str(s)]) for s in a.seeds] + [("`--recipe safe`", ["--recipe", "safe"])]
        for name, args in runs:
            start = time.time()
            r, says = evaluate(model, args)
            said.setdefault(case.label, says)
            cells = [case.label, name, f"{r['top1_original']:.2f}", f"{r['top1_original'] - r['top1_compressed']:.2f}",
                     f"{r['agreement']:.2f}", f"{r['honest_ratio']:.2f}x", f"{r['model_bytes']:,}", f"{time.time() - start:.0f}"]  # fmt: skip
            table.add_row(*cells)
            rows.append(cells)
    Console().print(table)
    for label, says in said.items():
        print(f"{label}: {says}")
    if a.markdown:
        header = [str(c.header) for c in table.columns]
        write_section(a.markdown, "heldout", markdown_table(header, rows, [False, False] + [True] * 6) + "\n"
                      + provenance("benchmarks.heldout", argv or sys.argv[1:]))  # fmt: skip
        print(f"wrote {a.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
