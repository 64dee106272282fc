"""Accuracy on real data: regenerate docs/accuracy.md and its plots in one command.

    python -m benchmarks.accuracy            # about an hour on 2 cores (calibrated rows dominate)
    python -m benchmarks.accuracy --seeds 1  # quicker, one seed per row

Every figure is measured here on the full test split (Fashion-MNIST's 10,000 images, digits'
540) with the real CLI code paths: recipes, the budget search, calibration, evaluation.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lego2c.build import Compiled, compile_model
from lego2c.calibrate import STEPS, calibrated
from lego2c.compress import AUTO, DEFAULT_RECIPE, RECIPES, CompressOptions
from lego2c.datasets import load_dataset
from lego2c.evaluate import evaluate
from lego2c.frontend import load_model
from lego2c.search import AUTO_DAMAGE, AUTO_SLACK, Sensitivity, budget_bytes, choose, default_plan, measure, plan_options
from lego2c.sweep import Point, plot_points, run_sweep
from lego2c.synthesize import bn_matched_inputs

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
DOCS = ROOT / "docs"
CALIB_IMAGES = 512
DEFAULT = RECIPES[DEFAULT_RECIPE]


@dataclass(frozen=True)
class Case:
    label: str
    opts: CompressOptions
    calib: bool = False
    target_ratio: float | None = None
    seeds: int | None = None  # runs with seeds 0..n-1; None: --seeds
    target_kb: float | None = None
    synthetic: bool = False  # calibrated on inputs made from the BatchNorm statistics (--calib synthetic)
    auto: bool = False  # the CLI's default: synthetic calibration and the plan search.default_plan picks
    calib_images: int = CALIB_IMAGES  # how many unlabeled training images `calib` means
    move_indices: bool = False  # --move-indices


AUTO_CASE = Case(f"default (`{AUTO}`): `{DEFAULT_RECIPE}`, calibrated on synthetic inputs, smallest plan of predicted "
                 f"damage <= {AUTO_DAMAGE} and <= {AUTO_SLACK} x the uniform recipe's", DEFAULT, synthetic=True, auto=True)  # fmt: skip


def row_cells(r: dict) -> list[str]:  # type: ignore[type-arg]
    """One results row (as stored in docs/accuracy.json) as markdown cells."""
    drops = [e["drop"] for e in r["evals"]]
    spread = f" ({', '.join(f'{d:.2f}' for d in drops)})" if len(drops) > 1 else ""
    honest = " / ".join(f"{v:.2f}x" for v in sorted({round(e["honest_ratio"], 2) for e in r["evals"]}))
    paper = r["evals"][0]["paper_ratio"]
    data = "synthetic (no data)" if r.get("synthetic") else "calib" if r["calib"] else "none"
    return [r["label"], data, f"{np.mean(drops):.2f}{spread}",
            f"{np.mean([e['top1_compressed'] for e in r['evals']]):.2f}", honest, f"{paper:.1f}x" if paper else "-",
            " / ".join(f"{v:,}" for v in sorted({e["model_bytes"] for e in r["evals"]})), f"{np.mean(r['seconds']):.0f}"]  # fmt: skip


HEADER = ["recipe", "data", "top-1 drop, mean (per seed)", "top-1", "honest ratio", "paper ratio", "model bytes",
          "seconds"]  # fmt: skip


def cpu() -> str:
    """The processor as far as float results go: its name, model and a digest of its instruction-set flags.

    onnxruntime and torch pick kernels by instruction set, so on another CPU sums run in another order, and the
    searched plans, which turn on small differences in measured damage, can come out a few bytes different.
    """
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""

    def field(key: str) -> str:
        found = re.search(rf"^{key}\s*:\s*(.*)$", info, re.M)
        return found[1].strip() if found else ""

    flags = hashlib.sha256(" ".join(sorted(field("flags").split())).encode()).hexdigest()[:8]
    return f"{field('model name') or platform.processor()}, family {field('cpu family')} model {field('model')}, flags {flags}"


@functools.cache
def calibration_set(n: int = CALIB_IMAGES) -> np.ndarray:
    """`n` unlabeled Fashion-MNIST training images, a fixed random draw (seed 0)."""
    x, _ = load_dataset("fashion-mnist", "train")
    return x[np.sort(np.random.default_rng(0).choice(len(x), n, replace=False))]


@functools.cache
def synthetic(model: Path, seed: int) -> tuple[np.ndarray, float]:
    """What `--calib synthetic --seed S` calibrates on, and the seconds it took to make."""
    start = time.time()
    return bn_matched_inputs(load_model(model), seed=seed, progress=False)[0], time.time() - start


@functools.cache
def sensitivity(model: Path, opts: CompressOptions, calib_images: int, synthesised: bool) -> tuple[Sensitivity, float]:
    """The budget search's measurement, once per model, options and data (every budget reuses it)."""
    data = calibration_set(calib_images) if calib_images else synthetic(model, opts.seed)[0] if synthesised else None
    start = time.time()
    return measure(load_model(model), opts, data, progress=False), time.time() - start


def compress_case(model: Path, case: Case, seed: int) -> tuple[Compiled, float]:
    """What `lego2c eval` does for these options: search, cluster, calibrate. Seconds count each stage once,
    cached or not: making synthetic inputs, the search's measurement, clustering and calibration."""
    opts = replace(case.opts, seed=seed)
    data, made = ((calibration_set(case.calib_images), 0.0) if case.calib else synthetic(model, seed) if case.synthetic
                  else (None, 0.0))  # fmt: skip
    searched = 0.0
    if case.auto:  # `data` holds the synthetic inputs, and `made` the seconds they took
        start = time.time()
        d = default_plan(load_model(model), opts, lambda: data, progress=False)
        opts, data = d.options, d.calib
        searched = time.time() - start
    elif case.target_ratio is not None or case.target_kb is not None:
        s, searched = sensitivity(model, opts, case.calib_images if case.calib else 0, case.synthetic)
        opts = plan_options(opts, choose(s, budget_bytes(s, case.target_ratio, case.target_kb)))
    start = time.time()
    c = compile_model(model, opts, progress=False)
    if data is not None:
        c, _ = calibrated(c, data, STEPS, seed, progress=False, move_indices=case.move_indices)
    return c, time.time() - start + searched + made


PARTIAL = DOCS / "accuracy.partial.json"  # rows measured so far: an interrupted run resumes from here
RESUMED: list[str] = []  # rows this run took from PARTIAL instead of measuring


def run_case(model: Path, case: Case, seeds: int, x: np.ndarray, y: np.ndarray) -> dict:  # type: ignore[type-arg]
    done = json.loads(PARTIAL.read_text()) if PARTIAL.exists() else {}
    key = f"{model.name} | {case.label} | {case.seeds or seeds}"
    if key in done:
        RESUMED.append(key)
        return done[key]
    evals, seconds = [], []
    for seed in range(case.seeds or seeds):
        c, secs = compress_case(model, case, seed)
        evals.append(evaluate(c, x, y, progress=False))
        seconds.append(secs)
        print(f"  {model.name} {case.label} seed {seed}: drop {evals[-1].drop:.2f} at "
              f"{evals[-1].honest_ratio:.2f}x ({secs:.0f} s)", flush=True)  # fmt: skip
    done[key] = dict(label=case.label, calib=case.calib, synthetic=case.synthetic, evals=[e.as_dict() for e in evals], seconds=seconds)
    PARTIAL.write_text(json.dumps(done, indent=1) + "\n")
    return done[key]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def sweep_rows(points: list[Point]) -> list[list[str]]:
    return [[p.family, p.label, f"{p.top1:.2f}", f"{p.drop:.2f}", f"{p.honest_ratio:.2f}x",
             f"{p.paper_ratio:.1f}x" if p.paper_ratio else "-", f"{p.model_bytes:,}"]
            for p in sorted(points, key=lambda p: p.honest_ratio)]  # fmt: skip


SWEEP_HEADER = ["family", "setting", "top-1", "drop", "honest ratio", "paper ratio", "model bytes"]


def same_size_cases(sweep: list[Point]) -> list[Case]:
    """lego2c searched to the exact size of each uniform point, data-free and with --calib (one seed)."""
    cases = []
    for u in (p for p in sweep if p.family.startswith("uniform")):
        kb = u.model_bytes / 1024
        cases.append(Case(f"size of uniform {u.label}: `--target-kb {kb:.2f}`", DEFAULT, target_kb=kb))
        cases.append(Case(f"size of uniform {u.label}: `--calib --target-kb {kb:.2f}`", DEFAULT, calib=True,
                          target_kb=kb, seeds=1))  # fmt: skip
    return cases


def measure_all(seeds: int) -> dict:  # type: ignore[type-arg]
    x, y = load_dataset("fashion-mnist", "test")
    xd, yd = load_dataset("digits", "test")
    assert y is not None and yd is not None
    resnet, dscnn, digits = MODELS / "resnet8_fmnist.onnx", MODELS / "dscnn_fmnist.onnx", MODELS / "digits_cnn.onnx"
    k256 = replace(DEFAULT, tile=(4, 4), k=256)
    resnet_cases = [
        AUTO_CASE,
        Case(f"`--recipe {DEFAULT_RECIPE}`: 1x1 K=16 per layer, channel scales, data-free bias correction, "
             "first/last int8, int8 codebooks, scales and biases", DEFAULT),
        Case(f"`--recipe {DEFAULT_RECIPE} --no-bias-correction`", replace(DEFAULT, bias_correction=False)),
        Case("searched plan, `--target-ratio 9` (data-free)", DEFAULT, target_ratio=9),
        Case("searched plan, `--target-ratio 10` (data-free)", DEFAULT, target_ratio=10),
        Case("`--calib --target-ratio 20`", DEFAULT, calib=True, target_ratio=20),
        Case("`--calib --target-ratio 28`", DEFAULT, calib=True, target_ratio=28),
        Case("`--calib --target-ratio 28 --move-indices`", DEFAULT, calib=True, target_ratio=28, move_indices=True),
        Case("`--calib --target-ratio 20 --move-indices`", DEFAULT, calib=True, target_ratio=20, move_indices=True),
        Case("`--calib --target-ratio 28 --codebook-dtype f16 --side-dtype f16` (float16 side data, as before int8)",
             replace(DEFAULT, codebook_dtype="f16", side_dtype="f16"), calib=True, target_ratio=28, seeds=1),
        Case("`--calib --target-ratio 12`", DEFAULT, calib=True, target_ratio=12, seeds=1),
        Case("`--calib --target-ratio 28` with 2,048 calibration images instead of 512", DEFAULT, calib=True,
             target_ratio=28, calib_images=2048),
        Case("`--calib synthetic --target-ratio 9` (no data)", DEFAULT, target_ratio=9, synthetic=True),
        Case("`--calib synthetic --target-ratio 12` (no data)", DEFAULT, target_ratio=12, synthetic=True),
        Case("`--calib synthetic --target-ratio 16` (no data)", DEFAULT, target_ratio=16, synthetic=True, seeds=1),
        Case("paper: `--recipe legonet` (4x4 K=32, one global codebook, no scales, nothing protected)", RECIPES["legonet"]),
        Case("paper: `--recipe legonet16` (4x4 K=16, one global codebook)", RECIPES["legonet16"]),
        Case("paper's 4x4 K=32 + `--calib`", RECIPES["legonet"], calib=True, seeds=1),
        Case("best 4x4 found: 4x4 K=256 per layer, scales, first/last int8", k256),
        Case("best 4x4 found: the same + `--calib`", k256, calib=True, seeds=1),
    ]
    dscnn_cases = [
        AUTO_CASE,
        Case(f"`--recipe {DEFAULT_RECIPE}`", DEFAULT),
        Case(f"`--recipe {DEFAULT_RECIPE} --no-bias-correction`", replace(DEFAULT, bias_correction=False)),
        Case("searched plan, `--target-ratio 9` (data-free)", DEFAULT, target_ratio=9),
        Case("`--calib --target-ratio 12`", DEFAULT, calib=True, target_ratio=12, seeds=1),
        Case("`--calib synthetic --target-ratio 7` (no data)", DEFAULT, target_ratio=7, synthetic=True, seeds=1),
        Case("`--calib synthetic --target-ratio 9` (no data)", DEFAULT, target_ratio=9, synthetic=True),
    ]
    started = time.time()
    out: dict = {"seeds": seeds, "calib_images": CALIB_IMAGES, "distill_steps": STEPS}  # type: ignore[type-arg]
    print("ResNet-8", flush=True)
    out["resnet8"] = [run_case(resnet, c, seeds, x, y) for c in resnet_cases]
    print("DS-CNN", flush=True)
    out["dscnn"] = [run_case(dscnn, c, seeds, x, y) for c in dscnn_cases]
    out["digits"] = [run_case(digits, c, seeds, xd, yd) for c in (AUTO_CASE, Case(f"`--recipe {DEFAULT_RECIPE}`", DEFAULT))]
    print("sweeps, and lego2c at the size of each uniform quantisation", flush=True)
    for name, model in (("resnet8", resnet), ("dscnn", dscnn)):
        sweep = run_sweep(load_model(model), model, x, y, None, progress=False)
        out[f"{name}_sweep"] = [p.as_dict() for p in sweep]
        out[f"{name}_same_size"] = [run_case(model, c, seeds, x, y) for c in same_size_cases(sweep)]
    out["minutes"] = (time.time() - started) / 60
    out["resumed_rows"] = len(RESUMED)
    out["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    out["cpu"] = cpu()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds per seeded row (default 3)")
    ap.add_argument("--render-only", action="store_true", help="rewrite accuracy.md from accuracy.json, measure nothing")
    args = ap.parse_args(argv)
    results = DOCS / "accuracy.json"
    if not args.render_only:
        results.write_text(json.dumps(measure_all(args.seeds), indent=1) + "\n")
        PARTIAL.unlink()
    data = json.loads(results.read_text())
    for model, title in (("resnet8", "ResNet-8"), ("dscnn", "DS-CNN")):
        plot(data, model, title)
    (DOCS / "accuracy.md").write_text(render(data))
    print(f"wrote {DOCS / 'accuracy.md'}")
    return 0


CALIB_FILE = ("python -c \"import numpy as np; from benchmarks.accuracy import calibration_set; "
              "np.savez('calib512.npz', x=calibration_set())\"")  # fmt: skip
EVAL = "lego2c eval models/resnet8_fmnist.onnx --dataset fashion-mnist"


def plot(r: dict, model: str, title: str) -> None:  # type: ignore[type-arg]
    """The sweep's plot, with this run's searched and calibrated plans (seed means) drawn in."""
    rows = r[model]
    extra = [Point("lego2c (synthetic calibration)" if x.get("synthetic") else "lego2c (calibrated)" if x["calib"]
                   else "lego2c (searched plan)", _short(x["label"]),
                   _mean(x, "top1_compressed"), _mean(x, "drop"), _mean(x, "honest_ratio"), None,
                   x["evals"][0]["model_bytes"]) for x in rows
             if x["calib"] or x.get("synthetic") or "target-ratio" in x["label"]]  # fmt: skip
    baseline = rows[0]["evals"][0]["top1_original"]
    points = [Point(**p) for p in r[f"{model}_sweep"]] + extra
    plot_points(points, baseline, DOCS / f"accuracy_{model}.png", title, rows[0]["evals"][0]["n"])


def _resumed(r: dict) -> str:  # type: ignore[type-arg]
    n = r.get("resumed_rows", 0)
    return f", after taking {n} rows from an earlier run (accuracy.partial.json)" if n else ""


def _short(label: str) -> str:
    return label.replace("`", "").replace("--calib ", "").replace("--target-ratio ", "").split(" (")[0]


def _row(rows: list[dict], prefix: str) -> dict:  # type: ignore[type-arg]
    return next(x for x in rows if x["label"].startswith(prefix))


def _mean(row: dict, key: str) -> float:  # type: ignore[type-arg]
    return float(np.mean([e[key] for e in row["evals"]]))


def _target(label: str, row: dict, max_drop: float, min_ratio: float, command: str) -> list[str]:  # type: ignore[type-arg]
    drop, ratio = _mean(row, "drop"), _mean(row, "honest_ratio")
    ratios = [e["honest_ratio"] for e in row["evals"]]
    spread = f"{min(ratios):.2f}x to {max(ratios):.2f}x; " if max(ratios) - min(ratios) > 0.1 else ""
    met = "**met**" if drop <= max_drop and ratio >= min_ratio else "missed"
    return [label, f"{drop:.2f} at {ratio:.2f}x ({spread}{len(row['evals'])} seed(s))", met, f"`{command}`"]


def _versus_uniform(sweep: list[dict], same_size: list[dict]) -> list[list[str]]:  # type: ignore[type-arg]
    """Each uniform point beside lego2c searched to the same bytes, data-free and with calibration."""
    out = []
    for u in (p for p in sweep if p["family"].startswith("uniform")):
        cells = [u["label"], f"{u['model_bytes']:,}", f"{u['drop']:.2f}"]
        for calib in (False, True):
            r = next(r for r in same_size if r["label"].startswith(f"size of uniform {u['label']}:") and r["calib"] == calib)
            cells.append(f"{_mean(r, 'drop'):.2f} ({_mean(r, 'model_bytes'):,.0f} B)")
        out.append(cells)
    return out


VERSUS_HEADER = ["uniform per-channel", "bytes", "uniform drop", "lego2c data-free, same budget", "lego2c --calib, same budget"]


def render(r: dict) -> str:  # type: ignore[type-arg]
    res, ds = r["resnet8"], r["dscnn"]
    default, free9 = _row(res, "default"), _row(res, "searched plan, `--target-ratio 9`")
    c20, c28 = _row(res, "`--calib --target-ratio 20`"), _row(res, "`--calib --target-ratio 28`")
    c28_moved = _row(res, "`--calib --target-ratio 28 --move-indices`")
    c28_2048 = _row(res, "`--calib --target-ratio 28` with 2,048")
    syn9, syn12 = _row(res, "`--calib synthetic --target-ratio 9`"), _row(res, "`--calib synthetic --target-ratio 12`")
    p32, p16 = _row(res, "paper: `--recipe legonet`"), _row(res, "paper: `--recipe legonet16`")
    best4 = min((x for x in res if "4x4" in x["label"]), key=lambda x: _mean(x, "drop"))
    calib = "--calib calib512.npz"
    lines = [
        "# Accuracy on real data",
        "",
        "What compression costs a trained model, measured: ResNet-8 and DS-CNN on the 10,000 Fashion-MNIST test",
        "images, the digits CNN on its 540 held-out digits (models/README.md). Regenerate this page, its plots and",
        "`accuracy.json` (which the tests read) with one command: `python -m benchmarks.accuracy` "
        f"(this run: {r['minutes']:.0f} minutes{_resumed(r)}, {r['machine']}, {r.get('cpu', 'CPU not recorded')}).",
        "",
        "- **Honest ratio** = 32 x parameters / every bit of model data in flash (indices, codebooks, scales, biases,",
        "  protected layers, other constants). **Paper ratio** = LegoNet's, index bits only. Both are always given.",
        f"- **Calib** = {r['calib_images']} unlabeled Fashion-MNIST training images (a fixed draw, seed 0; make the file with",
        f"  `{CALIB_FILE}`): activation-weighted index assignment, bias correction from the layers' real inputs,",
        f"  then {r['distill_steps']} steps of distillation of codebooks, scales and biases from the original",
        "  model's logits, indices fixed unless the row says `--move-indices` (then latent tiles move them: below).",
        "- **Synthetic (no data)** = `--calib synthetic`: the same calibration on 256 inputs that lego2c makes from the",
        "  model's own BatchNorm statistics (ZeroQ; `lego2c/synthesize.py`), so no image is used. Its seconds include",
        "  making them.",
        f"- Seeded rows ran with seeds 0..{r['seeds'] - 1} (k-means, search and distillation); the mean is shown, then each",
        "  seed. Rows with one seed say so. Differences under about 0.3 points are within seed noise.",
        "- *seconds*: compression only (search, k-means, calibration) on this machine's 2 cores.",
        "",
        "## Targets (ResNet-8, Fashion-MNIST, 10,000 test images)",
        "",
        *table(["target", "reached (top-1 drop, points)", "", "command that prints it"], [
            _target("the default, no data (`auto`): drop <= 0.5 at >= 9x", default, 0.5, 9, EVAL),
            _target("data-free, searched plan: drop <= 0.5 at >= 9x", free9, 0.5, 9, f"{EVAL} --target-ratio 9"),
            _target("no data, `--calib synthetic`: drop <= 0.5 at >= 9x", syn9, 0.5, 9,
                    f"{EVAL} --calib synthetic --target-ratio 9"),
            _target("no data, `--calib synthetic`: drop <= 0.5 at >= 12x", syn12, 0.5, 12,
                    f"{EVAL} --calib synthetic --target-ratio 12"),
            _target("calib: drop <= 0.5 at >= 20x", c20, 0.5, 20, f"{EVAL} {calib} --target-ratio 20"),
            _target("calib: drop <= 1.0 at >= 28x", c28_moved, 1.0, 28, f"{EVAL} {calib} --target-ratio 28 --move-indices"),
            _target("the same with indices fixed during distillation", c28, 1.0, 28, f"{EVAL} {calib} --target-ratio 28"),
            _target("beyond the target: the same with 2,048 calibration images", c28_2048, 1.0, 28,
                    f"{EVAL} --calib calib2048.npz --target-ratio 28"),
            ["paper's 4x4 K=32 (global, no scales)", f"{_mean(p32, 'drop'):.2f} at {_mean(p32, 'honest_ratio'):.2f}x "
             f"(paper ratio {p32['evals'][0]['paper_ratio']:.1f}x)", "reported", f"`{EVAL} --recipe legonet`"],
            ["paper's 4x4 K=16", f"{_mean(p16, 'drop'):.2f} at {_mean(p16, 'honest_ratio'):.2f}x "
             f"(paper ratio {p16['evals'][0]['paper_ratio']:.1f}x)", "reported", f"`{EVAL} --recipe legonet16`"],
            ["best with 4x4 tiles", f"{_mean(best4, 'drop'):.2f} at {_mean(best4, 'honest_ratio'):.2f}x", "reported",
             f"`{EVAL} -b 4 -K 256" + (f" {calib}`" if best4["calib"] else "`")],
        ]),
        "",
        "## ResNet-8 (92.10% uncompressed)",
        "",
        *table(HEADER, [row_cells(x) for x in res]),
        "",
        "![top-1 against honest ratio, ResNet-8](accuracy_resnet8.png)",
        "",
        "The sweep (`lego2c sweep models/resnet8_fmnist.onnx --dataset fashion-mnist`, seed 0, data-free): block",
        "clustering with the `safe` recipe's options over tile shapes and K, the paper's literal setting, and uniform",
        "per-channel int8/int4/int3 (simulated; int4/int3 keep the first and last layer in int8 like lego2c does).",
        "",
        *table(SWEEP_HEADER, sweep_rows_dicts(r["resnet8_sweep"])),
        "",
        "Against uniform quantisation of the same size: lego2c's budget search given each uniform model's bytes",
        "(`--target-kb`), data-free (mean of the seeds) and with `--calib` (seed 0). Top-1 drop in points:",
        "",
        *table(VERSUS_HEADER, _versus_uniform(r["resnet8_sweep"], r["resnet8_same_size"])),
        "",
        "## DS-CNN (depthwise-separable, 90.94% uncompressed)",
        "",
        *table(HEADER, [row_cells(x) for x in ds]),
        "",
        "![top-1 against honest ratio, DS-CNN](accuracy_dscnn.png)",
        "",
        *table(SWEEP_HEADER, sweep_rows_dicts(r["dscnn_sweep"])),
        "",
        *table(VERSUS_HEADER, _versus_uniform(r["dscnn_sweep"], r["dscnn_same_size"])),
        "",
        "## Digits CNN (98.33% uncompressed, 540 held-out digits)",
        "",
        *table(HEADER, [row_cells(x) for x in r["digits"]]),
        "",
    ]
    return "\n".join(lines + NOTES) + "\n"


def sweep_rows_dicts(points: list[dict]) -> list[list[str]]:  # type: ignore[type-arg]
    return sweep_rows([Point(**p) for p in points])


NOTES = """
## How the recipes were chosen, and what did not work

Single runs with seed 0 on the 10,000 test images while choosing; the tables above are the 3-seed figures.

- **Data-free, one setting everywhere** (codebook per layer, channel scales, first/last int8, fp16 side data,
  before data-free bias correction existed): 1x1 K=16 lost 0.38 at 7.63x; 1x2 K=128 0.52 at 7.81x; 2x1 K=64
  1.16 and 1x2 K=64 1.51 at 9.43x; 1x1 K=8 6.42 at 10.0x; 2x2 K=256 6.30 at 8.46x. One global codebook at the
  same index bits was worse (1x2 K=64 global 2.57 at 9.97x; 1x2 K=128 global 1.17 at 8.58x; 1x3 K=512 global
  2.39 at 9.13x), and a big global codebook (1x4 K=4096) kept accuracy (0.75) only by spending the bytes (4.87x).
- **Data-free bias correction** (`--bias-correction`, on by default) is what moved the data-free front. The
  frontend keeps each BatchNorm's shift and scale before folding; `lego2c/moments.py` propagates them as
  per-channel Gaussians through ReLU, residual adds, pooling and BN-less convs, and each layer's bias takes
  back the mean output shift (W_hat - W) E[x] (Nagel et al. 2019). Seed 0: 1x1 K=8 everywhere went from 6.42
  to 1.04 points at 10.0x, the uniform `safe` recipe from 0.38 to 0.23. It estimated the digits CNN's second conv input means
  within 3% of the real ones (`tests/test_accuracy.py`). It needs the BatchNorm nodes in the ONNX file, and
  torch's exporters fold them unless asked not to (`training=torch.onnx.TrainingMode.PRESERVE`, as
  `scripts/train.py` does); on a file without them `safe` is the uncorrected recipe (0.42 on ResNet-8),
  and `lego2c inspect` says so.
- **Calibration without data** (`--calib synthetic`, `lego2c/synthesize.py`) is what moved the no-data front
  past 9x. 256 inputs start as noise and Adam (300 steps, lr 0.05) moves them until every tensor that a
  BatchNorm wrote has, over the batch, the per-channel mean and standard deviation that BatchNorm recorded in
  training (ZeroQ, Cai et al. 2020); they then serve as `--calib` data: activation-weighted index assignment,
  bias correction, the budget search's damage figures and distillation. On ResNet-8 this takes about 75 s of
  the 2 to 3 minutes per run. With fp16 side data it reached 9x at 0.06 points lost and 12x at 0.11
  (3 seeds) and 16x at 0.43 (seed 0); DS-CNN 0.39 at 7x (3 seeds) and 1.53 at 9x (seed 0). The tables
  above have the int8 figures. The inputs match the statistics to a loss
  of about 1e-3 on ResNet-8 and 3e-2 on DS-CNN (0 is a perfect match; `tests/test_accuracy.py` checks that
  they match 5 times better than noise on the digits CNN and that they cut ResNet-8's error on real images).
- **The default** (`auto`) is that calibration with a size the model earns: the budget search measures
  every layer's damage on the synthetic inputs (the logits' relative squared error with that layer alone
  compressed, after index assignment and bias correction), and the default takes the smallest plan whose
  summed damage is within two limits: 0.03, and 1.5 times the damage of the uniform `safe` recipe (1x1 K=16
  everywhere) measured the same way. Distillation then recovers most of it. Each limit alone failed on one
  model (seeds 0-2 unless said; the search's sizes come from the same measurements as the rows above):
  - *1.5 times the uniform recipe's damage* (the rule until this version) lost 0.81 / 0.39 / 0.69 points on
    DS-CNN at 7.4x to 7.7x: its uniform recipe already does 0.040 to 0.053 damage (ResNet-8's: 0.013 to
    0.028), so the limit came to 0.06 to 0.08. It also rests on one noisy measurement: on ResNet-8 the uniform
    recipe's damage was 0.0278 with k-means seed 0 and 0.0135 to 0.0178 with seeds 1 to 3, so seed 0's limit
    was about twice as loose and its model reached 13.1x against 8.9x for seeds 1 and 2.
  - *0.03 alone* kept ResNet-8 (0.06 / 0.16 / 0.08 at 12.0x / 11.4x / 9.7x) and DS-CNN (0.30 / 0.42 / 0.30 at
    6.2x to 6.8x), but on a held-out model it did not: a VGG-style network (five 3x3 conv+BN+ReLU layers with
    max-pooling, then two dense layers; 72,444 parameters; 91.87% after 3 epochs on Fashion-MNIST, trained
    for this check and not used to set anything) lost 0.76 and 0.87 points (seeds 0, 1) at 14.7x and 14.9x,
    where its uniform recipe does 0.0105 damage and loses 0.18 at 7.8x. Measured on real images instead,
    the three models' chosen plans did about the same damage (0.011 to 0.013, about 40% of the synthetic
    figure for each), so the same damage simply costs this model more top-1. With both limits (1.5 times
    binds there) the VGG lost 0.32 and 0.35 points at 11.7x and 11.9x (seeds 0, 1). That VGG's script was
    not kept; `python -m benchmarks.heldout` (docs/heldout.md) now trains a new VGG-style model, a
    MobileNetV2-style one, an MLP and a 1-D conv model, which had no part in the rule, and checks the
    default on each.
  - Other limits, for the record: 0.02 alone gives ResNet-8 8.9x to 9.5x and DS-CNN 5.5x to 6.3x; 0.04 gives
    11.5x to 13.2x and 6.8x to 7.1x.
  The smaller of the two limits binds on DS-CNN (0.03), on ResNet-8 for seed 0 (0.03) and seeds 1 and 2 (1.5
  times), and on the VGG and the digits CNN (1.5 times). Measured damages are real for the codebooks the
  build then uses (the same seed gives the same codebooks), so the search rightly takes the lucky draws, but
  where the relative limit binds the size still moves with the seed. Per layer the spread is wide: over
  k-means seeds 0 to 7, one ResNet-8 layer's damage ran from 1.4e-3 to 1.5e-2, while its own output error,
  ||X(W - W_hat)||^2 relative to ||XW||^2, stayed within 7% (1.23e-3 to 1.31e-3), and so did its weight
  error: what varies is the direction of the error in the layer's output, and how much of it the layers
  after it carry to the logits. Without BatchNorm statistics, without torch, or where making the inputs
  would take over 6 minutes on 2 cores, the default is the uniform `safe` recipe and says why. That time
  follows the activations' size more than the MACs (`search.synthesis_seconds`): the held-out
  MobileNetV2-style model has fewer MACs than ResNet-8 and takes 4 times as long.
  Before any of this, per-layer plans with no data were tried with three damage estimates (relative weight
  error, BN-moment activation error, outputs on uniform noise inputs): each reached 9 to 10x on ResNet-8 but
  cost DS-CNN 1.3 to 2.4 points at 6.8 to 7x, because noise inputs and moment estimates ranked DS-CNN's
  pointwise layers as safe at K=8.
- **Deep models** start from a larger K. The uniform recipe leaves each layer about 10% relative weight error,
  and the errors of many layers add up: the weighted layers' squared relative errors sum to 0.066 on
  ResNet-8, 0.049 on DS-CNN and 0.42 on the pretrained EfficientNet-Lite0 (50 layers), where K=16 changed
  43% of the top-1 picks on photo crops (docs/pretrained.md). So where that sum exceeds 0.07 the default
  (calibrated or not) starts from the smallest K of 32, 64, 128, 256 that brings it under 0.07, with fp16
  codebooks, scales and biases (int8 ones left EfficientNet-Lite0 at 84% agreement at K=64, fp16 94%).
  This leaves the three models above at K=16, and every figure on this page, unchanged.
- **Other CPUs, and runs that differ**: the three default rows were measured on this page's CPU; the others
  come from the CPUs before it (an Intel Xeon, and one whose model was not recorded). Under the rule before,
  ResNet-8's seed 0 stored 23,426 bytes on the first CPU and on an AMD EPYC (Zen 4, AVX-512), and 23,580 on
  the Xeon, and DS-CNN lost 0.55 points on average on the first and 0.63 on the Xeon: onnxruntime and torch
  choose kernels by instruction set, and the search turns on small differences in measured damage. On the
  Xeon the default was also not byte-reproducible from run to run: ResNet-8's seed 0 stored 23,500 bytes in 2
  of about 9 runs, because its synthetic inputs came out different in their last bits, and the digits CNN's
  default gave two different files in 2 of 3 full test runs (`test_default_gives_the_same_bytes_twice`)
  and 1 of 5 later ones. The cause was MKL's vector maths, which torch's CPU kernels call for `sqrt`, `exp`,
  `tanh` and a dozen more: MKL picks each function's code on its first call, and when two of torch's
  threads made that first call together, one of them sometimes got other code. Traced in ResNet-8's
  synthesis (32 inputs, 30 steps; with `MKL_CBWR=AUTO,STRICT` set, which makes it show more often): every
  forward and backward tensor agreed, and Adam's first step did not, because `sqrt` of the same 25,088
  second moments differed from the exact root in 149 elements in 27 of 30 fresh processes and in 12,615 in
  the other 3, almost all of them in the second thread's half. One call of each such function on a tensor
  too small to split, when lego2c first loads torch (`calibrate.require_torch`), settles it: the bare `sqrt`
  then agreed in 50 of 50 processes (against about 1 in 10 differing), the synthesis in 40 of 40 (5 of 48
  differed before), with the values the usual runs gave, so the documented figures stand. oneDNN's
  convolutions were not involved, and `MKL_DYNAMIC=FALSE` (set since the session before) had not been
  enough. On the AMD EPYC, 3 of 3 full runs gave identical files before this change. On machines with more
  than two cores, scikit-learn's k-means would have been the next source: it adds its threads' partial
  centroid sums in the order the threads finish, which two threads cannot change and three or more can, so
  lego2c runs it on at most two OpenMP threads (`threadpoolctl`), as it runs torch. Both caps only hold
  the thread count; this 2-core machine cannot show the three-thread case.
  `tests/test_accuracy.py` checks the documented size within 3%.
- **Keeping the luckiest k-means seed per layer** (tried twice, not kept). First with a seed per layer plan, a
  `search.reseed` step and a `--tries` option, on a local git branch that was not merged and is gone: after the budget search, each clustered layer of the plan is clustered again
  with seeds 1 to N-1 and keeps the codebook whose measured damage is least, at no cost in bytes.
  Data-free, where the measured damage is all the model gets, DS-CNN at `--target-ratio 9` lost 8.24 / 6.76 /
  6.38 points (seeds 0-2) with one seed, 8.25 / 4.89 / 4.28 with 2, 4.34 / 2.82 / 2.85 with 4 (mean 3.34
  against 7.13), and 7.08 / 5.98 / 5.38 with 8: more tries should never be worse by the measure, so the
  measure (random inputs in the input range) ranks codebooks only loosely, and taking the least of many draws
  picks its errors. With 512 calibration images at 28x, where distillation follows, seeds 0 and 1 lost 1.05
  and 1.50 with 4 tries against 1.13 and 1.17 without. Picking each option's seed already inside the search
  (4 full measurements, past the 3-minute budget) took seed 0 at 28x to 0.84 (one run). Before it is kept,
  the damage needs a steadier measure: on synthetic BatchNorm-matched inputs rather than random ones, or
  averaged over more of them.
  Then with real data only (commit a5d4836, reverted by the next one): the search chose a plan, measured
  every option within 1.5 times (or 2 times) the bytes of each layer's choice again under k-means seeds 1 to
  3, and chose again among all of them, at no cost in bytes. On seed 0's 28x plan the summed damage fell
  from 0.34 to 0.23 (one layer's from 0.175 to 0.066). At 28x it lost 0.86 / 0.97 / 0.81 points (seeds 0-2,
  mean 0.88) against 1.10 / 1.21 / 0.99 (mean 1.10) without it on the same machine, with top-1 agreement
  96.50% against 96.14% on average, in 140 to 167 s per run against 111 to 115 s. At 20x, though, it lost
  0.39 / 0.49 / 0.66 (mean 0.51) against 0.48 / 0.16 / 0.30 (mean 0.31; the table's 20x row, from an earlier
  CPU, has 0.32 / 0.19 / 0.30), agreement 97.42% against 97.76%. And the logits' relative squared error on
  the 10,000 test images fell at neither ratio: 0.0133 against 0.0134 on average at 20x, and 0.0263 and
  0.0268 against 0.0276 and 0.0265 for seeds 1 and 2 at 28x. A lower damage on the calibration images, with
  one layer compressed alone, did not carry through distillation: the search drew other plans of about
  the same quality, and 28x's gain is a draw like 20x's loss.
- **Data-free per-layer plan** (`--target-ratio`): the search measures each layer's damage on random inputs
  in the model's input range, with `safe`'s bias correction applied, as the built model will have it.
- **Bias correction from calibration data** (the layers' real inputs) does more: with 1x1 K=8 everywhere it took 6.42 to 0.22 points
  at 10.0x (512 calibration images, no distillation), and 2x2 K=64 from 30.4 to 9.7 at 15.0x.
- **The budget search with data** first measured each option's damage without bias correction; at 20x that
  plan, distilled for 1,000 steps, lost 0.94 points. Measuring damage *after* bias correction (the layer's
  mean output shift is cancelled, as the calibrated model will have it) lets the search pick the cheap
  options whose error is mostly a shift; the rows above use that.
- **Distillation** (Adam on codebooks, scales and biases against the original logits, MSE, cosine-decayed,
  batch 32, indices fixed): 2x2 K=64 went from 9.7 (bias corrected) to 0.92 points at 15.0x after 500 steps.
  On a quiet machine 1,000 steps took under a minute; 4,000 took 28x (seed 0) from 2.01 to 1.53 points, but
  with the search one 20x run then seemed to take 188 s, near the 3-minute budget. That count took the search
  twice; counted once, a 20x run with 3,500 steps (the default) takes 114 to 117 s, search included. Tried at 28x, seed 0, and not kept: mixup between calibration
  images with the original model as the teacher on the mixed inputs (1.50); matching every layer's output as
  well as the logits (1.87 at 3,000 steps); learning rates 1e-3 / 2e-3 / 5e-3 (1.61 / 1.51 / 1.48, within
  seed noise); 7,000 steps instead of 3,500 with int8 side data (1.21 against 1.12). At 28x the largest
  layers keep 0.6 to 1.2 bits per weight.
- **int8 codebooks, scales and biases** (`--codebook-dtype i8 --side-dtype i8`, the `safe` recipe's since
  this version; docs/format.md): at 28x, fp16 scales, biases and codebooks took about 2.1 KB of the 11 KB.
  Rounding a distilled 28x model's side data after the fact (seed 0, fp16 before: 1.48 points lost) cost
  nothing measurable for int8 biases (1.47), int8 codebooks (1.46) or linear int8 scales with a power-of-two
  unit (1.42); log-coded 8-bit scales (16 steps per octave) cost 0.18 (1.66), so scales are linear. Given to
  the search, the freed kilobyte buys index bits (paper ratio 34.7x to 33.2x at 28x honest): seed 0 went
  from 1.47 to 1.12 points; the fp16 row above measures the same budget with fp16 side data. int8
  codebooks also halve what big codebooks cost: 4x4 K=256 per layer went from 5.73x to 10.36x. Where a
  layer's channel scales span more than about 8x, its smallest scale would get few int8 codes and stop
  normalising its channel: DS-CNN's first depthwise layer spans 100x, and int8 everywhere cost `safe`
  0.3 points there (0.68 against 0.43, seeds 0 and 1), so such a layer keeps fp16 side data.
- **Sequential, asymmetric index assignment** (inputs to each layer from the already-compressed layers
  before it, target the original layer's output, as GPTQ's successors do): tried at 28x, seed 0, and not
  kept. It halved the error before distillation (0.62 to 0.28 of the logits' norm after bias correction)
  but ended worse after it (2.04 points against 1.47; calibration error 0.135 against 0.125). Re-assigning
  indices once more after 2,500 distillation steps, with the distilled codebooks, tripled the calibration
  error (0.16 to 0.47) before the last 1,000 steps, so it was stopped. Six more menu options around one bit
  per weight (1x4 with K=8 to 128, 1x2 K=4, 2x4 K=32) changed two small layers' choices and nothing else
  (seeds 0 and 1 at 28x: 1.14 and 1.16, against 1.12 and 1.14 without them).
- **Moving indices during distillation** (`--move-indices`, `StoredParams.free_indices`): each tiled layer
  gets latent tiles that start at its decoded ones and that the loss's gradient moves as if they were the
  weights (straight through the codebook lookup, at the codebooks' learning rate); every 50 steps, in the first
  70% of the steps, each tile takes the codebook entry nearest its latent tile, and the last 30% fit codebooks,
  scales and biases to the final indices. Measured with a script that reports, besides the test drop, the
  logits' relative error on 1,024 training images outside the 512 (steadier than the drop: see "How far one
  run is from the mean" below). At 28x, seeds 0-5, it lost 1.10 / 0.89 / 0.79 / 1.08 / 0.81 / 0.66 points
  (mean 0.89) against 1.04 / 1.19 / 1.03 / 1.20 / 1.05 / 1.00 (mean 1.09) with indices fixed, and its held-out
  error was lower for every seed (mean 0.152 against 0.164); 2,000 to 6,000 index changes per run, no extra
  time (in that script both took 70 to 80 s a run; the table's rows with indices fixed took longer because
  they ran on an earlier, busier machine and were resumed, not re-run). At 20x (seeds 0-2) it did not help: 0.46 / 0.34 / 0.27 (mean 0.36) against 0.37 / 0.20 / 0.31 (mean
  0.29), held-out error 0.121 against 0.114 (0.124 with moves stopping at 50% of the steps). So it is an
  option, not the default. Variants at 28x (seeds 0-2): moving until 50% of the steps 0.95 (held-out 0.155),
  until 30% 1.09 (0.165); half the latent learning rate 1.00 (0.166: fewer moves), twice it 2.45 (20,000 moves,
  too many to recover from). Keeping a round of moves only when it lowered the loss over the 512 images
  rejected 47 to 49 of 49 rounds (a round of hundreds of moves always raises the loss at first; the gain comes
  after the codebooks refit), so it changed nothing. Moving only the layers at or under 1 index bit per weight
  (a rule that would let it be on by default, since it leaves `safe`'s 4 bits alone): at 28x 1.01 / 1.09 / 0.95
  (mean 1.02, held-out 0.158, 170 to 460 moves), less than moving every layer; at 20x 0.33 / 0.13 / 0.27
  (mean 0.24), but held-out 0.122 / 0.126 / 0.108 against 0.132 / 0.106 / 0.103 with indices fixed: worse on
  two seeds of three. Not kept. On DS-CNN at `--calib --target-ratio 12` (seeds 0-2, same script) moving
  every layer lost 1.42 / 1.78 / 1.77 (mean 1.66) against 1.39 / 1.69 / 1.74 (mean 1.61) with indices fixed,
  held-out error 0.147 against 0.158 (lower on two seeds of three): no gain in top-1 on the second model.
- **Still at 28x with 512 images, and not kept** (each distilled 3,500 steps; seed 0 unless said):
  - *Codebooks shared across layers*: layers that chose the same tile and K use one codebook, and the
    budget search spends the freed bytes (about 400 of 11,000) on index bits. Shared blindly: 0.95 / 1.57 /
    1.14 (seeds 0-2, mean 1.22); seed 1's plan made the first conv (36 tiles) share a 64-entry codebook with
    the last block. Shared only where the measured damage (the option with one codebook for every layer) rose
    at most 1.2 times: almost no layer qualified, 1.13 / 1.16 / 1.06 (mean 1.12, as without sharing).
  - *More inputs from the same 512 images during distillation*, the original model labelling them: random
    shifts of 1 or 2 pixels (1.23, 1.38), half of each batch mixed pairwise (1.11), matching every layer's
    output as well (1.18, 1.27). Adding 256 synthetic BatchNorm-matched inputs: 1.00 / 1.11 / 1.04 (seeds
    0-2, mean 1.05, against 1.11 / 1.20 / 1.02 in the same script), 47 s more; 512 of them: 0.96 / 1.21 /
    0.98 (mean 1.05), 100 s more, which takes a run to about 3 minutes. Within noise either way.
  - *Batch 64* (1.20) and learning rates 1e-3 / 4e-3 (1.08 / 1.11).
  - *Picking among plans by calibration error*: plans from the search with perturbed damages, each
    calibrated. Neither the error after 600 steps nor the final calibration error ranked their test drops
    (final errors 0.156 / 0.173 / 0.159 for drops 1.06 / 1.01 / 1.23). The same budget spans 0.86 to 1.57
    points across the plans tried, so a 0.1-point gap is below what one seed can show.
  - *Three ways to spend or save bytes inside a layer*, checked on layer output error before building
    anything (||X(W - W_hat)||^2 over the 512 images, k-means then activation-weighted assignment, mean of
    two k-means seeds; 1x2 K=8, 1x1 K=4 and 2x2 K=32). Scaling each input channel's columns before
    clustering (AWQ's activation-aware scales, or cross-layer equalisation), which is free in bytes on each
    block's second conv because the conv before it, through a ReLU, absorbs the inverse in its channel
    scales: for powers 0 to 1 of the inputs' and the weights' magnitudes, at best 2 to 7% less error there,
    and up to 7% more for other powers. Entropy-constrained k-means (a rate term, lambda times the code
    length, in each assignment), meant to be stored with an entropy coder: at equal entropy, the weight
    error of plain k-means at that width (for example 0.165 at 1.37 bits per weight for 1x2 K=16, as
    interpolated between 1x4 K=32 and K=64). A codebook per group of output channels: 3% less weight error
    at 2x4 K=16 with 4 groups on the largest layer, while the 384 bytes those codebooks cost, spent on
    index bits instead (2x4 K=32), buy 15%. None was built.
  - *Several codebooks per tile* (additive codes, as residual vector quantisation: each tile is the sum of
    one entry of each of two codebooks, two indices stored), checked on weight error before building a
    storage type. On the largest layer (64x576, normalised weights, squared relative error; k-means on the
    first codebook's residual, then four alternating refits), 2x4 with K=16+16 left 0.257 in 4,864 bytes
    against one 1x4 K=16 codebook's 0.259 in 4,672, and 1x4 K=4+4 0.291 against the same 0.259 in the same
    bytes: no gain at equal bytes, so nothing was built. That last figure says why: at 1.01 bits per weight
    no code of any kind leaves a Gaussian source of the same variance less than 2^-2.02 = 0.247 of its
    energy (Shannon's rate-distortion bound), and plain k-means on 1x4 tiles is within 5% of it. What is
    left to gain lies in which errors the model feels, not in the weight error.
  - *Row normalisation by the root mean square* instead of the largest magnitude before k-means: 0 to 3%
    less weight error (after each row's best rescaling, as distillation would find it) over the seven convolutions
    of 2,048 weights or more and six tile shapes and K; no row normalisation at all did about as well as the largest
    magnitude. Not built.
  - *Entropy-coded indices* were not built: on seed 0's 28x plan after index assignment, the indices' order-0
    entropy is 98.5% of their packed width (9,151 of 9,288 bytes), so coding would save about 140 bytes.
  - *Pairing similar output channels* in the same 2-row tiles (a free permutation inside a residual block):
    2 to 6% less k-means error on the 28x plan's 2-row layers (greedy pairing of normalised rows), too
    little to build.
  - *Moving indices during distillation along the gradient* (PV-tuning's discrete step): every 250 steps
    up to 70% of the run, the gradient of the loss over all 512 images with respect to each decoded tile;
    each tile moves to the codebook entry nearest its entry minus a step along that gradient, at most 5%
    of a layer's tiles, and the moves stay only if the loss over the 512 images falls, else the step
    halves. The loss is sharp in the indices: choosing each tile's entry by the gradient alone (1% of
    tiles) took the loss from 0.41 to 48 and more, and even 30 moved tiles could double it. Seed 0 kept
    8 of 9 rounds of 2 to 32 tiles, each lowering the loss by under 2%, and lost 1.02 points (against
    1.13 without); on seed 1 no round's moves lowered the loss, so nothing moved (1.17, as without).
    Not kept; the code was not merged (about 50 lines in `calibrate._distill` and a tile-gradient hook in
    `torchexec.StoredParams.weight`).
  - *Picking the plan by a short distillation* (with deterministic calibration): 200
    distillation steps ranked seed 0's and seed 1's least-damage plans as 3,500 steps did (logit error on the
    calibration images 0.173 against 0.206; after 3,500 steps, on 1,024 held-out training images, 0.124
    against 0.134), while their summed damages ranked them the other way (0.342 against 0.296). So the search
    tried 8 plans within the budget (the least-damage one and 7 under damages scaled by log-normal noise,
    sigma 0.5), distilled each 200 steps and kept the least error: 1.13 / 1.46 / 1.18 (seeds 0-2, mean
    1.26) against 1.13 / 1.17 / 0.99 (mean 1.10) for the least-damage plans, 65 to 78 s more. Seed 2's pick
    led after 200 steps and ended with more held-out error (0.127 against 0.124). Not kept.
  - *Seed 0's plan, distilled differently* (seeds 0-2 of k-means and distillation on that one plan:
    1.13 / 0.61 / 0.91, mean 0.88, held-out logit error 0.124 for each): averaging the parameters over the
    last 30% of the steps 1.09 / 0.65 / 0.88 (held-out 0.124, no change); matching the classifier's input
    features as well as the logits 1.30 / 0.79 / 0.99 (0.127); one-step adversarial inputs (the sign of the
    input gradient of the student's error, 0.03, on half of each batch, the original model labelling them)
    1.14 on seed 0 (0.133) in twice the time; Gaussian input noise (0.05) 1.22 on seed 0 (0.137). None
    helped.
  - *Other distillation losses*, on the least-damage plans (against 1.13 / 1.17 / 0.99, mean 1.10): KL
    divergence between the softmaxes at temperature 2 lost 1.26 / 1.40 / 1.19 (mean 1.28); the logits' MSE
    after subtracting each sample's mean logit (the softmax ignores it) 1.20 / 1.22 / 0.87 (mean 1.10).
  - *How far one run is from the mean*: the three runs of that one plan lost 0.61 to 1.13 points at the same
    held-out logit error (0.123 to 0.124), and runs of different plans did not follow their logit error
    either (0.127 lost 1.46, 0.134 lost 1.17). A run's drop varies by about a quarter of a point around what
    its plan and data give, so a 3-seed mean by about 0.15: the 28x target is missed by less than that.
    Before calibration was made deterministic (torch's deterministic algorithms, this version), the same
    seed-0 run lost 1.01 or 1.15 points from the same inputs, depending on how its threads summed; rows
    this page took from a run before that change differ from a fresh run by that kind of noise.
  - *More real images help a little*: with 2,048 instead of 512 (`calibration_set(2048)` in the command
    above), the same 28x run lost 0.96 points before calibration was deterministic and 1.00 (0.96 / 1.21 /
    0.82, mean 0.997) after, against 1.12 and 1.10 with 512: a tenth of a point, within the noise above.
- **Activation-weighted assignment** (`lego2c/reassign.py`, the first step of `--calib`): each tile takes the
  codebook entry of least error in the layer's output, ||X(W - W_hat)||^2 with H = X^T X from the calibration
  images, and the tiles not yet assigned absorb what it left (GPTQ-style error feedback). On ResNet-8 with
  1x2 K=8 it cut every layer's output error to 0.37 to 0.64 of k-means' nearest-entry assignment
  (`tests/test_accuracy.py`). Before distillation it is a large win (seed 0, bias correction only: 28x from
  51.1 to 4.4 points, 20x from 1.71 to 0.90); after 4,000 distillation steps it is a small one (28x: 1.53 to
  1.49, calibration error 0.141 to 0.121), because distillation recovers most of the same error. The search
  measures damage with it too. Codebooks stay plain k-means; distillation then fits them.
- **Depthwise layers** (DS-CNN): a depthwise 3x3 layer has 9 weights per output channel, so per-channel
  scales and a per-layer codebook cost as much as the indices, and every weight feeds one channel alone, so
  errors do not average out across input channels. Compare the DS-CNN rows with ResNet-8's at the same ratio.
- **Recurrent layers** (LSTM, unrolled by the frontend; one recurrent weight read by every step): the error
  of a weight that every step reads enters the state again at each step, so the default's uniform recipe
  was checked on two trained LSTMs before keeping it for them. Neither carries BatchNorm statistics, so the
  default is `safe` (1x1 K=16, the input projection and the classifier in int8). An LSTM(8, 32) over the
  8 rows of a digit (trained 30 epochs, seeds 0-3, 96.5 to 97.6%, 540 held-out digits, one digit = 0.19
  points): the default lost 1.11 / 0.19 / -0.37 / 0.00 points (mean 0.23) at 5.29x; K=32 lost 0.00 / 0.00 /
  0.37 / 0.56 (mean 0.23) at 4.70x. Since the input projection's bias joined its layer (stored as int8 beside
  it, where it had been a float32 constant of its own), the default loses 1.11 / 0.37 / -0.37 / -0.74 (mean
  0.09) at 5.81x on the same four models. An LSTM(28, 64) over the 28 rows of a Fashion-MNIST image (3 epochs,
  seed 0, 84.82%, 10,000 test images): `safe` lost 0.23 points (agreement 98.31%) at 5.56x, K=32 0.07
  (98.98%) at 4.98x, K=64 0.03 (99.65%) at 4.50x. Counting the recurrent weight's error once per step in
  the default's depth rule (`search.safe_for_depth`) would have raised this model to K=32 with fp16 side
  data: 0.18 points at 4.84x. Within 0.5 points either way, so the default stays as it is; a longer
  sequence (the 49-frame keyword spotter in `tests/data/keras/lstm.onnx` has random weights) is unmeasured.
  The models came from `/tmp` scripts, not committed; `tests/test_recurrent.py` trains the digits one.
""".strip("\n").splitlines()


if __name__ == "__main__":
    sys.exit(main())
