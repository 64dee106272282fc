"""`lego2c sweep`: top-1 against honest ratio over tile shapes and K, beside uniform quantisation.

Three families of points, all on the same data: block clustering with the data-free
options (a codebook per layer, per-channel scales, first and last layer int8, int8 side data)
over tile shapes and K; the paper's literal setting (one global codebook, no scales); and
uniform per-channel int8/int4/int3, what TFLite Micro and STM32Cube.AI users get. Uniform
quantisation is simulated here for the comparison only: lego2c does not emit it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .build import compile_graph
from .compress import (RECIPES, CompressOptions, as_stored, bias_of, from_matrix, integer_weights, stored_bytes,
                       weight_matrix, weighted_nodes)
from .evaluate import Runner, batched, check_inputs
from .ir import Graph
from .search import dense_baseline
from .report import sizes

TILES_K: tuple[tuple[tuple[int, int], int], ...] = (
    ((1, 1), 4), ((1, 1), 8), ((1, 1), 16), ((1, 1), 32), ((2, 1), 16), ((2, 1), 64), ((2, 1), 256),
    ((2, 2), 16), ((2, 2), 64), ((2, 2), 256), ((4, 4), 16), ((4, 4), 32), ((4, 4), 256),
)  # fmt: skip
UNIFORM_BITS = (8, 4, 3)
# LegoNet's claims for ResNet-18 on CIFAR-10 (DESIGN.md section 1): top-1 lost at its own (index-bits) ratio.
PAPER_CLAIMS = ((64.0, 83.70 - 83.44), (128.0, 83.70 - 81.61))


@dataclass
class Point:
    family: str  # "lego2c (data-free)", "LegoNet literal", "uniform per-channel"
    label: str
    top1: float
    drop: float
    honest_ratio: float
    paper_ratio: float | None
    model_bytes: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def uniform_weights(g: Graph, bits: int, protect_first_last: bool,
                    fixed_bytes: int) -> tuple[dict[str, np.ndarray], int]:  # fmt: skip
    """Symmetric per-output-channel integer weights (and fp16 biases), and the bytes they take with
    the model's `fixed_bytes` of other constants.

    The first and last layers stay int8 when `protect_first_last`, as lego2c's recipes keep them.
    """
    nodes = weighted_nodes(g)
    weights: dict[str, np.ndarray] = {}
    nbytes = 0
    for i, node in enumerate(nodes):
        b = 8 if protect_first_last and i in (0, len(nodes) - 1) else bits
        m = weight_matrix(node, g)
        codes, scale = integer_weights(m, b, "f16")
        weights[node.inputs[1]] = from_matrix(node, codes * scale[:, None], g.shape(node.inputs[1]))
        bias = bias_of(node, g)
        nbytes += -(-m.size * b // 8) + stored_bytes(m.shape[0], "f16")  # packed integers + fp16 scales
        if bias is not None:
            weights[node.inputs[2]] = as_stored(bias, "f16").reshape(g.shape(node.inputs[2]))
            nbytes += stored_bytes(bias.size, "f16")
    return weights, nbytes + fixed_bytes


def run_sweep(g: Graph, model: Path, x: np.ndarray, y: np.ndarray, plot: Path | None, seed: int = 0,
              progress: bool = True) -> list[Point]:  # fmt: skip
    """The sweep over `g`, loaded from `model`."""
    x = check_inputs(g, x)
    base = replace(RECIPES["safe"], seed=seed)
    configs: list[tuple[str, str, CompressOptions]] = [
        ("lego2c (data-free)", f"{t[0]}x{t[1]} K={k}", replace(base, tile=t, k=k)) for t, k in TILES_K
    ]
    configs += [("LegoNet literal", f"4x4 K={o.k} global, no scales", replace(o, seed=seed))
                for o in (RECIPES["legonet16"], RECIPES["legonet"])]  # fmt: skip
    columns = [TextColumn("sweep {task.fields[what]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    points: list[Point] = []
    with Progress(*columns, transient=True, disable=not progress) as bar:
        task = bar.add_task("", total=len(configs) + len(UNIFORM_BITS) + 1, what="original")
        base_top1 = _top1(Runner(batched(g.to_onnx())), x, y)
        bar.advance(task)
        dense = dense_baseline(g)
        for family, label, opts in configs:
            bar.update(task, what=label)
            c = compile_graph(g, model, opts, progress=False)
            s = sizes(c.compressed, c.code)
            top1 = _top1(Runner(batched(c.lego_onnx())), x, y)
            points.append(Point(family, label, top1, base_top1 - top1, s.honest_ratio, s.paper_ratio, s.model_bytes))
            bar.advance(task)
        for bits in UNIFORM_BITS:
            bar.update(task, what=f"int{bits}")
            weights, nbytes = uniform_weights(g, bits, bits < 8, dense.fixed_bytes)
            top1 = _top1(Runner(batched(g.to_onnx(weights))), x, y)
            label = f"int{bits}" + (" (first/last int8)" if bits < 8 else "")
            points.append(Point("uniform per-channel", label, top1, base_top1 - top1, 4 * dense.params / nbytes, None, nbytes))
            bar.advance(task)
    if plot is not None:
        plot_points(points, base_top1, plot, model.name, len(x))
    return points


def _top1(run: Runner, x: np.ndarray, y: np.ndarray) -> float:
    return 100.0 * float((run(x).argmax(1) == y).mean())


def plot_points(points: list[Point], baseline: float, path: Path, title: str, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    low = max(0.0, baseline - 12)  # the interesting band; points below it sit on the bottom edge, marked
    ax.axhline(baseline, color="grey", lw=0.8, ls="--", label=f"uncompressed ({baseline:.2f}%)")
    for family, marker in (("lego2c (data-free)", "o"), ("LegoNet literal", "s"), ("uniform per-channel", "^"),
                           ("lego2c (calibrated)", "D"), ("lego2c (searched plan)", "P"),
                           ("lego2c (synthetic calibration)", "X")):  # fmt: skip
        ps = [p for p in points if p.family == family]
        if not ps:
            continue
        ys = [max(p.top1, low + 0.3) for p in ps]
        ax.scatter([p.honest_ratio for p in ps], ys, marker=marker, label=family, zorder=3)
        for p, y in zip(ps, ys):
            if p.top1 != y and family != "LegoNet literal":
                continue  # many collapsed points on the edge would be unreadable: the tables name them
            text = p.label if p.top1 == y else f"{p.top1:.1f}%"
            ax.annotate(text, (p.honest_ratio, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.scatter([r for r, _ in PAPER_CLAIMS], [baseline - d for _, d in PAPER_CLAIMS], marker="*", s=120,
               color="black", label="paper's claim (ResNet-18 CIFAR-10 drop, at its index-bits ratio)", zorder=3)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("honest compression ratio (every stored byte; log scale)")
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(low, baseline + 1.5)
    ax.set_title(f"{title}: top-1 against honest ratio ({n:,} test images)", fontsize=10)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7, loc="center right")
    ax.text(0.01, 0.01, "points on the bottom edge are below the chart", transform=ax.transAxes, fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def sweep_table(points: list[Point], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("family", "setting", "top-1", "drop", "honest ratio", "paper ratio", "bytes"):
        t.add_column(col, justify="left" if col in ("family", "setting") else "right")
    for p in sorted(points, key=lambda p: p.honest_ratio):
        paper = f"{p.paper_ratio:.1f}x" if p.paper_ratio else "-"
        t.add_row(p.family, p.label, f"{p.top1:.2f}", f"{p.drop:.2f}", f"{p.honest_ratio:.2f}x", paper, f"{p.model_bytes:,}")
    return t
