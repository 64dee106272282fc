"""Accuracy on real data: the original and the compressed model side by side, in onnxruntime.

The compressed model is `Compiled.lego_onnx()`: the IR with every stored weight replaced by
what the C code computes with, so the figures here are the C code's figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .build import Compiled
from .errors import UsageError
from .ir import Graph
from .report import sizes
from .verify import ort_session

BATCH = 500


def batched(model: onnx.ModelProto, logits: bool = False) -> onnx.ModelProto:
    """A copy of an IR export that takes any batch size; with `logits`, without the final Softmax.

    The IR's value_info pins batch 1; dropping it lets onnxruntime infer the batched shapes. Exporters
    also pin it in Reshape targets (`x.view(x.size(0), -1)` traces to the constant [1, -1]), so each
    Reshape gets its batch-1 output shape as target, with the batch dimension inferred (-1). A Resize to
    given sizes gets the batch size read from its input.
    Logits rather than probabilities make output errors meaningful when the classes are confident.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*m.graph.value_info, *m.graph.output)}  # fmt: skip
    consts = {t.name: t for t in m.graph.initializer}
    for node in list(m.graph.node):
        out = shapes.get(node.output[0]) if node.op_type == "Reshape" else None
        if out and out[0] == 1 and all(out[1:]):
            target = onnx.numpy_helper.from_array(np.array([-1, *out[1:]], dtype=np.int64), f"{node.output[0]}/batched")
            m.graph.initializer.append(target)
            node.input[1] = target.name
        if node.op_type == "Resize" and len(node.input) > 3 and node.input[3] in consts:
            name = f"{node.output[0]}/batched"
            sizes = onnx.numpy_helper.to_array(consts[node.input[3]])
            m.graph.initializer.extend(onnx.numpy_helper.from_array(np.array(v, np.int64), f"{name}_{k}")
                                       for k, v in (("rest", sizes[1:]), ("zero", [0]), ("one", [1])))  # fmt: skip
            at = list(m.graph.node).index(node)
            for k, new in enumerate([
                onnx.helper.make_node("Shape", [node.input[0]], [f"{name}_shape"]),
                onnx.helper.make_node("Slice", [f"{name}_shape", f"{name}_zero", f"{name}_one"], [f"{name}_n"]),
                onnx.helper.make_node("Concat", [f"{name}_n", f"{name}_rest"], [f"{name}_sizes"], axis=0),
            ]):  # fmt: skip
                m.graph.node.insert(at + k, new)
            node.input[3] = f"{name}_sizes"
    del m.graph.value_info[:]
    last = m.graph.node[-1] if len(m.graph.node) else None
    if logits and last is not None and last.op_type == "Softmax" and last.output[0] == m.graph.output[0].name:
        m.graph.output[0].name = last.input[0]
        m.graph.node.remove(last)
    for v in (m.graph.input[0], m.graph.output[0]):
        v.type.tensor_type.shape.dim[0].dim_param = "N"
    return m


class Runner:
    """One onnxruntime session over many batches (a session per batch would cost more than the batch)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.session = ort_session(model)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray, progress: Progress | None = None, task: int | None = None) -> np.ndarray:
        outs = []
        for i in range(0, len(x), BATCH):
            outs.append(np.asarray(self.session.run(None, {self.input: x[i : i + BATCH]})[0], dtype=np.float32))
            if progress is not None and task is not None:
                progress.advance(task, len(outs[-1]))
        return np.concatenate(outs).reshape(len(x), -1)


def model_outputs(g: Graph, weights: dict[str, np.ndarray] | None, x: np.ndarray, logits: bool = True) -> np.ndarray:
    """Outputs of the IR for a batch of inputs, with some constants replaced (None: the original)."""
    return Runner(batched(g.to_onnx(weights), logits))(check_inputs(g, x))


def check_inputs(g: Graph, x: np.ndarray) -> np.ndarray:
    """The inputs as float32 with the model's per-example shape, or a UsageError that says why not."""
    per_example = g.shape(g.inputs[0])[1:]
    if x.ndim == len(per_example) + 1 and tuple(x.shape[1:]) == tuple(per_example):
        return np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim >= 1 and int(np.prod(x.shape[1:])) == int(np.prod(per_example)):
        return np.ascontiguousarray(x.reshape((len(x), *per_example)), dtype=np.float32)
    raise UsageError(f"the data's examples have shape {list(x.shape[1:])}; the model takes {list(per_example)}",
                     hint="save inputs as an array of shape (N, *model input without batch) in the .npz 'x'")  # fmt: skip


@dataclass
class Evaluation:
    n: int
    top1_original: float | None  # percent; None without labels
    top1_compressed: float | None
    agreement: float  # percent of inputs where both models pick the same class
    honest_ratio: float
    paper_ratio: float | None
    model_bytes: int

    @property
    def drop(self) -> float | None:
        if self.top1_original is None or self.top1_compressed is None:
            return None
        return self.top1_original - self.top1_compressed

    def as_dict(self) -> dict[str, float | int | None]:
        keys = ("n", "top1_original", "top1_compressed", "agreement", "honest_ratio", "paper_ratio", "model_bytes")
        return {k: getattr(self, k) for k in keys} | {"drop": self.drop}


def predictions(c: Compiled, x: np.ndarray, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Class predictions of the original and the compressed model, batch by batch."""
    x = check_inputs(c.graph, x)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, transient=True, disable=not progress) as bar:
        preds = []
        for label, model in (("original", c.graph.to_onnx()), ("compressed", c.lego_onnx())):
            task = bar.add_task(f"{label} model", total=len(x))
            preds.append(Runner(batched(model))(x, bar, task).argmax(1))
    return preds[0], preds[1]


def evaluate(c: Compiled, x: np.ndarray, y: np.ndarray | None, progress: bool = True) -> Evaluation:
    """Top-1 of both models (when labels are given), their agreement, and both compression ratios."""
    if y is not None and len(y) != len(x):
        raise UsageError(f"the data has {len(x)} inputs but {len(y)} labels")
    p_orig, p_comp = predictions(c, x, progress)
    s = sizes(c.compressed, c.code)

    def top1(p: np.ndarray) -> float | None:
        return None if y is None else 100.0 * float((p == y).mean())

    return Evaluation(len(x), top1(p_orig), top1(p_comp), 100.0 * float((p_orig == p_comp).mean()),
                      s.honest_ratio, s.paper_ratio, s.model_bytes)  # fmt: skip


def evaluation_table(e: Evaluation, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("top-1 original", "top-1 compressed", "drop (points)", "agreement", "honest ratio", "paper ratio",
                "model bytes"):  # fmt: skip
        t.add_column(col, justify="right")

    def pct(v: float | None) -> str:
        return "n/a (no labels)" if v is None else f"{v:.2f}%"

    paper = f"{e.paper_ratio:.1f}x" if e.paper_ratio else "n/a"
    drop = "n/a" if e.drop is None else f"{e.drop:.2f}"
    t.add_row(pct(e.top1_original), pct(e.top1_compressed), drop, f"{e.agreement:.2f}%", f"{e.honest_ratio:.2f}x",
              paper, f"{e.model_bytes:,}")  # fmt: skip
    return t
