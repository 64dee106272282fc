"""ONNX LSTM, GRU and RNN nodes, and Loops of a constant trip count, unrolled into ops the rest of lego2c compiles.

A recurrent layer is a loop of small matrix products and gate arithmetic, and its sequence length is fixed
once the input shape is. Unrolled, it needs no kernel, storage format or calibration code of its own: the
input projection of all time steps is one MatMul, each step's recurrent product is a MatMul that reads the
same weight (stored once: `compress.weighted_nodes`), and the gates are Slice, Sigmoid, Tanh, Mul and Add.

Time steps run along axis 1, batch first, as the calibration executor needs (`ops.moves_batch`). The ONNX
outputs, time-major by default, are rebuilt as views (Transpose, Unsqueeze), which `_collapse_views` then
merges with the exporter's own views back to batch first (PyTorch's `batch_first=True`, tf2onnx's Keras layers).

tf2onnx writes the Keras layers it does not match to those ops (Keras 3's GRU and SimpleRNN, say) as a Loop
whose body is one step of the cell. Such a Loop is unrolled by copying its body once per iteration; what the
body computes from constants alone (the step counter, the time index it reads its input at, the condition,
slices of its weights) is evaluated as it is copied, so that every step reads the same weights and the
condition is checked to hold until the last iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper, version_converter

from .constfold import default_opset, folded, opsets
from .errors import UnsupportedModelError, first_line
from .shapes import static_shapes

RECURRENT_OPS = {"LSTM": 4, "GRU": 3, "RNN": 1}  # op -> gates per hidden unit
DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
UNROLLED_OPS = (*RECURRENT_OPS, "Loop")
BUILDER_OPSET = 13  # the unrolled nodes take Unsqueeze's axes, Slice's bounds and Clip's limits as inputs
MAX_LOOP_STEPS = 4096  # each unrolled step is code: far past a microcontroller's flash before this


@dataclass
class _Builder:
    """New nodes and initializers for one recurrent node, named after it."""

    prefix: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)
    count: int = 0

    def name(self, what: str) -> str:
        self.count += 1
        return f"{self.prefix}/{what}_{self.count}"

    def const(self, value: np.ndarray, what: str = "const") -> str:
        name = self.name(what)
        self.inits.append(numpy_helper.from_array(np.asarray(value, order="C"), name))  # 0-d stays 0-d
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: object) -> str:
        out = output or self.name(op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(op_type), **attrs))
        return out

    def slice(self, x: str, axis: int, start: int, end: int) -> str:
        i64 = np.int64
        return self.op("Slice", [x, self.const(np.array([start], i64)), self.const(np.array([end], i64)),
                                 self.const(np.array([axis], i64))])  # fmt: skip


def unroll_recurrences(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, list[str]]]:
    """The model with every LSTM, GRU and RNN node replaced by its unrolled equivalent, and those that cannot
    be, left in place and named with the reasons ('op' -> ['node (reasons)', ...], for the unsupported-op report)."""
    if not any(n.op_type in UNROLLED_OPS and n.domain in ("", "ai.onnx") for n in model.graph.node):
        return model, {}
    model = _at_least_opset(model, BUILDER_OPSET)
    shapes = static_shapes(model)
    consts = _constants(model.graph)
    refused: dict[str, list[str]] = {}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    steps_of: dict[str, list[str]] = {}  # each direction's (batch, steps, hidden) output -> its steps
    for i, n in enumerate(model.graph.node):
        b = _Builder(n.name or f"{n.op_type}_{i}")
        if n.op_type == "ReverseSequence" and _full_reversal(n, b, consts, shapes):
            out.graph.node.extend(b.nodes)
            out.graph.initializer.extend(b.inits)
            continue
        if n.op_type not in UNROLLED_OPS or n.domain not in ("", "ai.onnx"):
            out.graph.node.append(n)
            continue
        if n.op_type == "Loop":
            reasons = _loop_problems(n, consts)
            unrolled = _unroll_loop(n, b, consts, opsets(model)) if not reasons else reasons[0]
        else:
            reasons = _problems(n, consts, shapes)
            unrolled = _unroll(n, b, consts, shapes[n.input[0]]) if not reasons else "; ".join(reasons)
        if isinstance(unrolled, str):
            refused.setdefault(n.op_type, []).append(f"{n.name or n.output[0]} ({unrolled})")
            out.graph.node.append(n)
            continue
        steps_of.update(unrolled)
        out.graph.node.extend(b.nodes)
        out.graph.initializer.extend(b.inits)
    shapes = static_shapes(out)
    ours = {n.name for n in out.graph.node} - {n.name for n in model.graph.node}
    _collapse_views(out.graph, shapes, ours)
    _pick_steps(out.graph, steps_of, shapes, ours)
    _collapse_views(out.graph, shapes, ours)
    _drop_dead_nodes(out.graph)
    return out, refused


def _constants(g: onnx.GraphProto) -> dict[str, np.ndarray]:
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return consts


def _attrs(n: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


def _problems(n: onnx.NodeProto, consts: dict[str, np.ndarray], shapes: dict[str, list[int]]) -> list[str]:
    """Why `n` cannot be unrolled, if it cannot."""
    a = _attrs(n)
    found = []
    acts = [s.decode() if isinstance(s, bytes) else s for s in a.get("activations", [])]  # type: ignore[union-attr]
    if acts and [x.lower() for x in acts] != [x.lower() for x in DEFAULT_ACTIVATIONS[n.op_type]] * (len(acts) // len(DEFAULT_ACTIVATIONS[n.op_type])):
        found.append(f"activations {acts}, not the defaults {DEFAULT_ACTIVATIONS[n.op_type]}")
    if a.get("input_forget", 0):
        found.append("input_forget=1")
    if a.get("layout", 0):  # nothing to check the unrolled layer against
        found.append("layout=1 (batch first), which onnxruntime cannot run either: export it time-major")
    for i, what in [(1, "W"), (2, "R"), (3, "B")]:
        if len(n.input) > i and n.input[i] and n.input[i] not in consts:
            found.append(f"its {what} is computed, not a constant")
    if len(n.input) > 4 and n.input[4]:
        lens = consts.get(n.input[4])
        seq = shapes.get(n.input[0], [-1])[0]
        if lens is None or (lens != seq).any():
            found.append("sequence_lens other than every sequence's full length")
    for i, what in [(5, "initial_h"), (6, "initial_c")]:
        if len(n.input) > i and n.input[i] and n.input[i] not in consts:
            found.append(f"its {what} is computed at run time, not a constant")
    if n.op_type == "LSTM" and len(n.input) > 7 and n.input[7] and (n.input[7] not in consts or consts[n.input[7]].any()):
        found.append("peephole weights (P)")
    shape = shapes.get(n.input[0], [])
    if len(shape) != 3 or min(shape) < 1:
        found.append(f"input shape {shape} is not static (batch, sequence and features)")
    return found


def _full_reversal(n: onnx.NodeProto, b: _Builder, consts: dict[str, np.ndarray], shapes: dict[str, list[int]]) -> bool:
    """A ReverseSequence of every sequence's full length (what a Keras backward layer reads) as a Slice with
    step -1 into `b`; False for any other."""
    time = int(_attrs(n).get("time_axis", 0))  # type: ignore[call-overload]
    lengths, shape = consts.get(n.input[1]), shapes.get(n.input[0], [])
    if lengths is None or len(shape) < 2 or min(shape) < 1 or (lengths != shape[time]).any():
        return False
    i64 = np.int64
    bounds = [np.array([-1], i64), np.array([np.iinfo(i64).min], i64), np.array([time], i64), np.array([-1], i64)]
    b.op("Slice", [n.input[0], *(b.const(v, "reverse") for v in bounds)], n.output[0])
    return True


def _loop_problems(n: onnx.NodeProto, consts: dict[str, np.ndarray]) -> list[str]:
    """Why a Loop cannot be unrolled, before trying (its condition is checked while unrolling)."""
    found = []
    trips = consts.get(n.input[0]) if n.input[0] else None
    if trips is None or trips.size != 1:
        found.append("its trip count M is not a constant")
    elif not 0 < int(trips.reshape(-1)[0]) <= MAX_LOOP_STEPS:
        found.append(f"its trip count {int(trips.reshape(-1)[0])} is not between 1 and {MAX_LOOP_STEPS}")
    if len(n.input) > 1 and n.input[1] and (n.input[1] not in consts or not bool(consts[n.input[1]].reshape(-1)[0])):
        found.append("its initial condition is not a constant true")
    body: onnx.GraphProto = _attrs(n)["body"]  # type: ignore[assignment]
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for m in body.node for a in m.attribute):
        found.append("its body holds a subgraph of its own")
    if any(not o.type.tensor_type.HasField("shape") for o in body.output[1 + len(n.input) - 2 :]):
        found.append("a scan output of unknown rank")
    return found


def _at_least_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The model converted up to `opset` (onnx's version converter) when it imports an older one."""
    if (default_opset(model) or opset) >= opset:  # without one the frontend has refused the model already
        return model
    try:
        return version_converter.convert_version(model, opset)
    except Exception as e:  # the converter raises several unrelated types
        raise UnsupportedModelError(f"unrolling its recurrent layers needs ONNX opset {opset}, and converting the "
                                    f"model to it failed: {first_line(e)}",
                                    hint=f"re-export the model with opset {opset} or newer") from None


def _unroll_loop(n: onnx.NodeProto, b: _Builder, consts: dict[str, np.ndarray],
                 model_opsets: dict[str, int]) -> dict[str, list[str]] | str:  # fmt: skip
    """A Loop's body copied once per iteration into `b`; each scan output's steps by its batch-first stack (as
    `_unroll` gives them), or why it cannot be unrolled after all. A body node whose inputs are all constants
    is evaluated instead of copied (`constfold`), once per distinct input: the counters
    and the condition fold, and a slice of a weight is the same constant at every step."""
    body: onnx.GraphProto = _attrs(n)["body"]  # type: ignore[assignment]
    trips, carried = int(consts[n.input[0]].reshape(-1)[0]), list(n.input[2:])
    ins, outs, k = [i.name for i in body.input], [o.name for o in body.output], len(n.input) - 2
    local = {i.name: b.const(numpy_helper.to_array(i), "body_const") for i in body.initializer}
    consts.update({local[i.name]: numpy_helper.to_array(i) for i in body.initializer})
    memo: dict[tuple[int, tuple[str, ...]], dict[str, str]] = {}  # a folded node's outputs per distinct input
    ranks = [len(o.type.tensor_type.shape.dim) if o.type.tensor_type.HasField("shape") else
             consts[c].ndim if c in consts else None for o, c in zip(body.output[1 : 1 + k], carried)]  # fmt: skip
    scans: list[list[str]] = [[] for _ in outs[1 + k :]]

    def constant(value: np.ndarray, what: str) -> str:
        name = b.const(np.asarray(value), what)
        consts[name] = np.asarray(value)
        return name

    for t in range(trips):
        env = {**local, ins[0]: constant(np.array(t, np.int64), "iteration"), ins[1]: constant(np.array(True), "cond")}
        env.update(zip(ins[2:], carried))
        for i, node in enumerate(body.node):
            inputs = [env.get(x, x) if x else "" for x in node.input]
            if all(not x or x in consts for x in inputs):
                key = (i, tuple(inputs))
                if key not in memo:
                    values = folded(node, model_opsets, {o: consts[x] for o, x in zip(node.input, inputs) if o})
                    memo[key] = {o: constant(v, "folded") for o, v in values.items()}
                env.update(memo[key])
                continue
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = b.name(node.op_type)
            copy.input[:] = inputs
            copy.output[:] = [b.name(node.op_type) if o else "" for o in node.output]
            env.update(zip(node.output, copy.output))
            b.nodes.append(copy)
        cond = env.get(outs[0], outs[0])
        if t < trips - 1 and (cond not in consts or not bool(consts[cond].reshape(-1)[0])):
            return "its condition depends on the data" if cond not in consts else f"it stops after {t + 1} of {trips} iterations"
        carried = [_with_rank(env.get(o, o), r, constant, consts) for o, r in zip(outs[1 : 1 + k], ranks)]
        for steps, o in zip(scans, outs[1 + k :]):
            steps.append(env.get(o, o))
    sequences: dict[str, list[str]] = {}
    for j, out in enumerate(n.output):
        if out and j < k:
            b.op("Identity", [carried[j]], out)
        elif out:  # the steps stacked along a new axis 0: stacked along axis 1 (batch first), then a view
            rank = len(body.output[1 + j].type.tensor_type.shape.dim)
            axis = 1 if rank else 0
            y = b.op("Concat", [b.op("Unsqueeze", [s, b.const(np.array([axis], np.int64), "axes")]) for s in scans[j - k]],
                     axis=axis)  # fmt: skip
            if rank:
                sequences[y] = scans[j - k]
                b.op("Transpose", [y], out, perm=[1, 0, *range(2, rank + 1)])
            else:
                b.op("Identity", [y], out)
    return sequences


def _with_rank(name: str, rank: int | None, constant: Callable[[np.ndarray, str], str],
               consts: dict[str, np.ndarray]) -> str:  # fmt: skip
    """A folded one-element value carried to the next step with the rank it started with (onnxslim makes a
    body's scalar constants 1-D, and a time index of shape [1] would add an axis to what it gathers)."""
    value = consts.get(name)
    if rank is None or value is None or value.ndim == rank or value.size != 1:
        return name
    return constant(value.reshape((1,) * rank), "carried")


def _unroll(n: onnx.NodeProto, b: _Builder, consts: dict[str, np.ndarray], x_shape: list[int]) -> dict[str, list[str]]:
    """Append `n`'s unrolled nodes to `b`; return each direction's output sequence and its steps, in order."""
    a = _attrs(n)
    direction = a.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    gates = RECURRENT_OPS[n.op_type]
    w, r = consts[n.input[1]].astype(np.float32), consts[n.input[2]].astype(np.float32)
    dirs, hidden = w.shape[0], r.shape[-1]
    steps, batch = x_shape[0], x_shape[1]
    bias = consts[n.input[3]].astype(np.float32) if len(n.input) > 3 and n.input[3] else np.zeros((dirs, 2 * gates * hidden), np.float32)
    clip = a.get("clip")
    x = b.op("Transpose", [n.input[0]], perm=[1, 0, 2])  # (batch, steps, features)

    def state(i: int, d: int) -> str | None:
        """Direction d's initial state (batch, 1, hidden) from input i, or None when it is zero."""
        if len(n.input) <= i or not n.input[i] or not consts[n.input[i]].any():
            return None
        return b.const(consts[n.input[i]].astype(np.float32)[d].reshape(batch, 1, hidden), "initial")

    def act(op_type: str, v: str) -> str:
        if clip is not None:
            v = b.op("Clip", [v, b.const(np.array(-clip, np.float32)), b.const(np.array(clip, np.float32))])
        return b.op(op_type, [v])

    ys, hs, cs = [], [], []
    sequences: dict[str, list[str]] = {}
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        wb, rb = bias[d, : gates * hidden], bias[d, gates * hidden :]
        # GRU's linear_before_reset puts the candidate's recurrent bias inside the reset gate's product.
        lbr = n.op_type == "GRU" and bool(a.get("linear_before_reset", 0))
        # All steps' input projections at once, with every bias that adds to them outside a gate.
        folded = wb + rb if not lbr else wb + np.concatenate([rb[: 2 * hidden], np.zeros(hidden, np.float32)])
        xw = b.op("Add", [b.op("MatMul", [x, b.const(w[d].T, "W")]), b.const(folded, "B")])
        if n.op_type == "GRU" and not lbr:  # the reset gate multiplies the state before its product
            r_zr, r_h = b.const(r[d, : 2 * hidden].T, "R"), b.const(r[d, 2 * hidden :].T, "R")
        else:
            r_all = b.const(r[d].T, "R")
            rb_h = b.const(rb[2 * hidden :], "B") if lbr else ""
        h, c = state(5, d), state(6, d)
        outs: dict[int, str] = {}
        for t in reversed(range(steps)) if reverse else range(steps):
            g = b.slice(xw, 1, t, t + 1)  # (batch, 1, gates * hidden)
            if n.op_type == "LSTM":
                if h is not None:
                    g = b.op("Add", [g, b.op("MatMul", [h, r_all])])
                sig = act("Sigmoid", b.slice(g, 2, 0, 3 * hidden))  # ONNX order i, o, f, c
                cand = act("Tanh", b.slice(g, 2, 3 * hidden, 4 * hidden))
                i_g, o_g, f_g = (b.slice(sig, 2, k * hidden, (k + 1) * hidden) for k in range(3))
                new = b.op("Mul", [i_g, cand])
                c = new if c is None else b.op("Add", [b.op("Mul", [f_g, c]), new])
                h = b.op("Mul", [o_g, b.op("Tanh", [c])])
            elif n.op_type == "GRU":
                zr = b.slice(g, 2, 0, 2 * hidden)  # ONNX order z, r, h
                g_h = b.slice(g, 2, 2 * hidden, 3 * hidden)
                if h is not None and lbr:
                    rh = b.op("MatMul", [h, r_all])
                    zr = b.op("Add", [zr, b.slice(rh, 2, 0, 2 * hidden)])
                elif h is not None:
                    zr = b.op("Add", [zr, b.op("MatMul", [h, r_zr])])
                zr = act("Sigmoid", zr)
                z, r_g = b.slice(zr, 2, 0, hidden), b.slice(zr, 2, hidden, 2 * hidden)
                if lbr:  # from a zero state only the recurrent bias is left inside the gate
                    inner = rb_h if h is None else b.op("Add", [b.slice(rh, 2, 2 * hidden, 3 * hidden), rb_h])
                    g_h = b.op("Add", [g_h, b.op("Mul", [r_g, inner])])
                elif h is not None:
                    g_h = b.op("Add", [g_h, b.op("MatMul", [b.op("Mul", [r_g, h]), r_h])])
                cand = act("Tanh", g_h)
                # (1 - z) * cand + z * h  =  cand + z * (h - cand)
                h = b.op("Mul", [b.op("Sub", [b.const(np.array(1, np.float32)), z]), cand]) if h is None else \
                    b.op("Add", [cand, b.op("Mul", [z, b.op("Sub", [h, cand])])])  # fmt: skip
            else:
                if h is not None:
                    g = b.op("Add", [g, b.op("MatMul", [h, r_all])])
                h = act("Tanh", g)
            outs[t] = h
        ordered = [outs[t] for t in range(steps)]
        ys.append(b.op("Concat", ordered, axis=1))
        sequences[ys[-1]] = ordered
        hs.append(h)
        cs.append(c)
    _outputs(n, b, ys, hs, cs)
    return sequences


def _outputs(n: onnx.NodeProto, b: _Builder, ys: list[str], hs: list[str], cs: list[str | None]) -> None:
    """The ONNX outputs from each direction's (batch, steps, hidden) sequence and (batch, 1, hidden) last
    states. At batch 1 the transposes to time-major are views, which `_collapse_views` merges with the
    exporter's own views back to batch first."""
    wanted = [*n.output, "", "", ""][:3]
    if wanted[0]:  # Y: (steps, dirs, batch, hidden)
        per_dir = [b.op("Unsqueeze", [y, b.const(np.array([2], np.int64), "axes")]) for y in ys]
        y = per_dir[0] if len(per_dir) == 1 else b.op("Concat", per_dir, axis=2)
        b.op("Transpose", [y], wanted[0], perm=[1, 2, 0, 3])
    for out, last in [(wanted[1], hs), (wanted[2], cs)]:
        if out:  # Y_h, Y_c: (dirs, batch, hidden)
            s = last[0] if len(last) == 1 else b.op("Concat", list(last), axis=1)  # type: ignore[arg-type]
            b.op("Transpose", [s], out, perm=[1, 0, 2])  # type: ignore[list-item]


VIEW_OPS = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose"}


def _is_view(n: onnx.NodeProto, shapes: dict[str, list[int]]) -> bool:
    """Whether `n` only relabels its input's shape: a Transpose is such a view when the axes it moves past each
    other have size 1 (time-major <-> batch-first at batch 1, which exporters and onnxslim also write as Reshape)."""
    if n.op_type not in VIEW_OPS or n.output[0] not in shapes or n.input[0] not in shapes:
        return False
    if n.op_type != "Transpose":
        return True
    moved = [a for a in _attrs(n)["perm"] if shapes[n.input[0]][a] != 1]  # type: ignore[union-attr]
    return moved == sorted(moved)


def _collapse_views(g: onnx.GraphProto, shapes: dict[str, list[int]], ours: set[str]) -> None:
    """Merge chains of views that touch an unrolled layer (`ours`: the nodes it made) into one Reshape each,
    and drop those that end where they began, so that a batch-first model stays batch first around the layer:
    the exporter's move to time-major and the unrolled layer's move back cancel, as do the layer's
    time-major outputs and the exporter's return to batch first."""
    while True:
        producers = {o: n for n in g.node for o in n.output}
        readers: dict[str, int] = {}
        for n in g.node:
            for i in n.input:
                readers[i] = readers.get(i, 0) + 1
        kept = {o.name for o in g.output}
        pair = next(((first, n) for n in g.node if n.input and (first := producers.get(n.input[0])) is not None
                     and (first.name in ours or n.name in ours) and readers.get(first.output[0]) == 1
                     and first.output[0] not in kept and _is_view(first, shapes) and _is_view(n, shapes)), None)  # fmt: skip
        if pair is not None:
            first, second = pair
            target = numpy_helper.from_array(np.array(shapes[second.output[0]], np.int64), f"{second.name}/shape")
            g.initializer.append(target)
            merged = helper.make_node("Reshape", [first.input[0], target.name], list(second.output), name=second.name)
            ours.add(merged.name)
            nodes = [merged if n is second else n for n in g.node if n is not first]
            del g.node[:]
            g.node.extend(nodes)
            continue
        same = next((n for n in g.node if n.name in ours and _is_view(n, shapes)
                     and shapes[n.input[0]] == shapes[n.output[0]]), None)  # fmt: skip
        if same is None:
            return
        _rename_input(g, same.output[0], same.input[0])
        g.node.remove(same)


def _pick_steps(g: onnx.GraphProto, sequences: dict[str, list[str]], shapes: dict[str, list[int]], ours: set[str]) -> None:
    """A node that takes one time step of an unrolled sequence reads that step instead: a Gather along the
    steps of the batch-first sequence (PyTorch's `y[:, -1]`), or a one-step Slice along the time axis of its
    time-major view (tf2onnx's last step of a Keras LSTM). Either becomes a Reshape of the step."""
    consts, nodes = _constants(g), []
    producers = {o: n for n in g.node for o in n.output}
    for n in g.node:
        step = None
        if n.op_type == "Gather" and n.input[0] in sequences and int(_attrs(n).get("axis", 0)) in (1, -2):  # type: ignore[call-overload]
            index = consts.get(n.input[1])
            step = sequences[n.input[0]][int(index)] if index is not None and index.ndim == 0 else None
        elif n.op_type == "Slice" and (v := producers.get(n.input[0])) is not None and v.input[0] in sequences \
                and _is_view(v, shapes) and shapes[v.output[0]][:1] == [len(sequences[v.input[0]])]:  # fmt: skip
            t = _one_step(n, consts, len(sequences[v.input[0]]))
            step = None if t is None else sequences[v.input[0]][t]
        if step is not None and n.output[0] in shapes:
            target = numpy_helper.from_array(np.array(shapes[n.output[0]], np.int64), f"{n.name}/shape")
            g.initializer.append(target)
            n = helper.make_node("Reshape", [step, target.name], list(n.output), name=n.name)
            ours.add(n.name)
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)


def _one_step(n: onnx.NodeProto, consts: dict[str, np.ndarray], steps: int) -> int | None:
    """The time step a Slice along axis 0 keeps, if it keeps exactly one."""
    bounds = [consts.get(i) if i else None for i in list(n.input[1:5]) + [""] * (5 - len(n.input))]
    starts, ends, axes, step = bounds
    if starts is None or ends is None or starts.size != 1 or (axes is not None and int(axes[0]) != 0) \
            or (step is not None and int(step[0]) != 1):  # fmt: skip
        return None
    first = int(starts[0]) + steps if int(starts[0]) < 0 else int(starts[0])
    end = int(ends[0]) + steps if int(ends[0]) < 0 else min(int(ends[0]), steps)
    return first if end - first == 1 and 0 <= first < steps else None


def _drop_dead_nodes(g: onnx.GraphProto) -> None:
    """Nodes whose outputs nothing reads: the unrolled outputs, states and steps that the model does not use."""
    while True:
        read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if not any(o in read for o in n.output)]
        if not dead:
            return
        for n in dead:
            g.node.remove(n)


def _rename_input(g: onnx.GraphProto, old: str, new: str) -> None:
    """Every reader of `old` reads `new` instead (a graph output keeps its name through an Identity)."""
    for n in g.node:
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = new
    if any(o.name == old for o in g.output):
        g.node.append(helper.make_node("Identity", [new], [old], name=f"{old}/kept"))
