"""ONNX frontend: a user's .onnx file in, a checked IR with static shapes out.

Steps, in order: load (external data included), check, inline ONNX functions, pin dynamic
dimensions, fold shape-computation subgraphs with onnxslim, infer shapes, then simplify
the graph ourselves (Constant nodes, Identity/Dropout, BatchNorm folding, canonical Gemm)
and refuse, in one message, every node that cannot be lowered.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx.inliner
from google.protobuf.message import DecodeError, Message
from onnx import helper, numpy_helper, shape_inference

from . import ops
from .constfold import default_opset
from .errors import UnsupportedModelError, UsageError, first_line
from .ir import FAKE_QUANTIZE, Graph, Node, Tensor
from .quantized import QDQ_OPS, fold_constant_quantization, fuse_fake_quantization, read_only_by_quantisation
from .recurrent import UNROLLED_OPS, unroll_recurrences
from .shapes import inferred

MIN_OPSET = 7
MAX_OPSET = onnx.defs.onnx_opset_version()
DROPPED_OPS = {"Identity", "Dropout"}
SQUARE_MAX = math.sqrt(float(np.finfo(np.float32).max))  # about 1.8e19
# Elements per tensor: far beyond any microcontroller's memory, and a bound on what constant
# folding and data propagation may materialise while simplifying the model.
MAX_ELEMENTS = 1 << 26


def load_model(path: str | Path, input_shape: list[int] | None = None, output: str | None = None) -> Graph:
    """Read, check and simplify an ONNX file into the IR; `output` names the one tensor to compute, when the
    model has several outputs or ends in post-processing that has no place on the device."""
    model = _read(Path(path))
    _check_opset(model)
    try:
        model = onnx.inliner.inline_local_functions(model)
    except onnx.checker.ValidationError as e:  # e.g. functions that call themselves
        raise UnsupportedModelError(f"the model's ONNX functions cannot be inlined: {first_line(e)}") from None
    if output is not None:
        _select_output(model, output)
    dropped = _drop_unread_inputs(model)
    fold_constant_quantization(model)
    _refuse_bad_dtypes(model)
    _pin_input_shape(model, input_shape)
    _refuse_huge_tensors(model)
    bn_stats = _batchnorm_stats(model)  # before onnxslim fuses BatchNorms into their convolutions
    folded = _fold_shape_subgraphs(model)
    model, refused = unroll_recurrences(folded)
    if any(n.op_type == "Loop" for n in folded.graph.node):  # what reads an unrolled Loop's outputs folds now
        model = _fold_shape_subgraphs(model)
    graph = _to_ir(inferred(model))
    _simplify(graph, refused)
    graph.bn_stats = {t: v for t, v in bn_stats.items() if t in graph.tensors}
    graph.chosen_output, graph.dropped_inputs = output, dropped
    _check_io(graph)
    _refuse_unusable_weights(graph)
    _refuse_unsupported(ops.unsupported_nodes(graph) | refused)
    return graph


def supported_ops() -> list[str]:
    """The ONNX ops a model may hold: those with a kernel, and those the frontend turns into such."""
    return sorted({*ops.LOWERINGS, *UNROLLED_OPS, *QDQ_OPS} - {FAKE_QUANTIZE})


def _refuse_unsupported(problems: dict[str, list[str]]) -> None:
    """Name every node that cannot be compiled at once, grouped by op ('op' -> ['node: reason', ...])."""
    if not problems:
        return
    lines = [f"{op}: {', '.join(nodes)}" for op, nodes in sorted(problems.items())]
    hint = None
    if set(QDQ_OPS) & problems.keys():
        hint = ("lego2c reads quantised (QDQ) models whose weights are constants and whose activations are quantised "
                "per tensor (a QuantizeLinear that only DequantizeLinears read); export these parts so, or in float32")
    raise UnsupportedModelError(
        f"{sum(len(v) for v in problems.values())} node(s) cannot be compiled:\n  " + "\n  ".join(lines),
        hint=hint or "supported ops: " + ", ".join(supported_ops()),
    )


def _read(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise UsageError(f"cannot read '{path}': no such file")
    try:
        model = onnx.load(str(path))
    # ValidationError: external data that is missing or outside the model's directory.
    except (DecodeError, ValueError, RuntimeError, OSError, onnx.checker.ValidationError) as e:
        raise UsageError(
            f"'{path}' is not a readable ONNX model ({first_line(e)})",
            hint="the file may be truncated or corrupted; export it again",
        ) from None
    if not model.graph.node:
        raise UsageError(f"'{path}' is not a readable ONNX model (it has no graph nodes)")
    bad_text = _non_utf8_field(model)
    if bad_text:
        raise UsageError(f"'{path}' is not a readable ONNX model (field {bad_text} is not UTF-8 text)",
                         hint="the file may be truncated or corrupted; export it again")  # fmt: skip
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise UnsupportedModelError(f"the ONNX checker rejects '{path}': {first_line(e)}") from None
    _check_tensor_data(model)
    return model


def _non_utf8_field(msg: Message) -> str | None:
    """The first string field holding invalid UTF-8, if any.

    protobuf's upb backend parses such a field without complaint and returns `bytes` instead
    of `str`, which breaks every name lookup and f-string downstream.
    """
    for fd, value in msg.ListFields():
        if fd.type not in (fd.TYPE_STRING, fd.TYPE_MESSAGE):
            continue
        for v in [value] if isinstance(value, (str, bytes, Message)) else value:
            if fd.type == fd.TYPE_STRING and isinstance(v, bytes):
                return fd.full_name
            if fd.type == fd.TYPE_MESSAGE and (inner := _non_utf8_field(v)):
                return inner
    return None


def _check_tensor_data(model: onnx.ModelProto) -> None:
    """Refuse initializers and Constant values whose bytes disagree with their dims and dtype.

    The checker does not compare raw_data's length with the dims; numpy would fail later.
    """
    tensors = list(model.graph.initializer) + [
        a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.HasField("t")
    ]
    for t in tensors:
        if t.data_type not in onnx.TensorProto.DataType.values():  # numpy_helper would raise KeyError
            raise UnsupportedModelError(f"tensor '{t.name}' has unknown data type {t.data_type}")
        try:
            numpy_helper.to_array(t)
        except (ValueError, TypeError) as e:
            raise UnsupportedModelError(
                f"tensor '{t.name}' is malformed: {first_line(e)}",
                hint="the file may be corrupted; export it again",
            ) from None


def _check_opset(model: onnx.ModelProto) -> None:
    opset = default_opset(model)
    if opset is None:
        raise UnsupportedModelError("the model imports no default-domain (ai.onnx) opset")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedModelError(
            f"ONNX opset {opset} is outside the supported range {MIN_OPSET}..{MAX_OPSET}",
            hint="re-export the model with an opset in that range (e.g. opset_version=17)",
        )


def _refuse_bad_dtypes(model: onnx.ModelProto) -> None:
    allowed_inputs = {onnx.TensorProto.FLOAT}
    for vi in model.graph.input:
        et = vi.type.tensor_type.elem_type
        if et not in allowed_inputs:
            raise UnsupportedModelError(
                f"input '{vi.name}' is {_dtype_name(et)}; lego2c compiles float32 models",
                hint="export the model with float32 inputs and weights",
            )
    quantisation = read_only_by_quantisation(model)  # integers that stay, read by an activation's quantisation
    narrow = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
              onnx.TensorProto.DOUBLE)  # fmt: skip
    for init in model.graph.initializer:
        if init.name not in quantisation and init.data_type in narrow:
            raise UnsupportedModelError(
                f"weight '{init.name}' is {onnx.TensorProto.DataType.Name(init.data_type)}; "
                "lego2c needs float32 weights",
                hint="integer weights are read through DequantizeLinear (QDQ models, as onnxruntime's quantize_static "
                     "writes them), not by integer-only ops; half-precision models are not supported: export float32",
            )


def _dtype_name(data_type: int) -> str:
    if data_type not in onnx.TensorProto.DataType.values():
        return str(data_type)  # DataType.Name raises ValueError on a number onnx does not define
    return onnx.TensorProto.DataType.Name(data_type)


def _select_output(model: onnx.ModelProto, name: str) -> None:
    """Make `name`, a graph output or any tensor a node computes, the only output; onnxslim then drops
    the nodes it does not need."""
    outputs = [o for o in model.graph.output if o.name == name]
    if not outputs and name not in {t for n in model.graph.node for t in n.output}:
        raise UsageError(f"--output-name {name}: no node computes a tensor of that name",
                         hint="the model's outputs: " + ", ".join(o.name for o in model.graph.output))  # fmt: skip
    if outputs and not _is_float_tensor(outputs[0].type):
        raise UsageError(f"--output-name {name}: it is a {_type_words(outputs[0].type)}; lego2c computes float32 tensors",
                         hint="choose a float32 tensor" + _scores_hint(model, outputs))  # fmt: skip
    del model.graph.output[:]
    model.graph.output.extend(outputs or [helper.make_empty_tensor_value_info(name)])


# Ops that turn a classifier's scores into labels or maps (as scikit-learn's exporter, skl2onnx, appends).
POSTPROCESSING = {"ArgMax", "ArgMin", "ArrayFeatureExtractor", "Cast", "Reshape", "TopK", "ZipMap"}


def _is_float_tensor(t: onnx.TypeProto) -> bool:
    return t.WhichOneof("value") == "tensor_type" and t.tensor_type.elem_type == onnx.TensorProto.FLOAT


def _type_words(t: onnx.TypeProto) -> str:
    which = t.WhichOneof("value")
    if which == "tensor_type":
        return f"{_dtype_name(t.tensor_type.elem_type).lower()} tensor"
    if which == "sequence_type":
        return f"sequence of {_type_words(t.sequence_type.elem_type).removesuffix(' tensor')}s"
    return which.removesuffix("_type") if which else "value of no declared type"


def _scores_hint(model: onnx.ModelProto, outputs: Sequence[onnx.ValueInfoProto]) -> str:
    """', e.g. --output-name T (...)' when the outputs all come down, through post-processing, to one tensor T."""
    producers = {o: n for n in model.graph.node for o in n.output}
    consts = {i.name for i in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}

    def source(name: str) -> str | None:  # the first tensor up the chain that post-processing did not make
        frontier, seen = [name], set()
        while frontier:
            t = frontier.pop(0)
            node = producers.get(t)
            if node is None or t in seen:
                continue
            seen.add(t)
            if node.op_type not in POSTPROCESSING:
                return t
            frontier += [i for i in node.input if i and i not in consts]
        return None

    sources = {source(o.name) for o in outputs}
    if len(sources) != 1 or None in sources:
        return ""
    (scores,) = sources
    return f", e.g. --output-name {scores} (the scores every output here is computed from)"


def _data_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs that are not initializers (older exporters list every weight as an input too)."""
    inits = {i.name for i in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def _drop_unread_inputs(model: onnx.ModelProto) -> tuple[str, ...]:
    """Remove graph inputs that nothing reads (tf2onnx leaves a Keras Normalization layer's mean and variance
    as such), when there is more than one input; returns their names."""
    inputs = _data_inputs(model)
    if len(inputs) < 2:
        return ()
    read = _names_read(model.graph)
    unread = [vi for vi in inputs if vi.name not in read]
    for vi in unread:
        model.graph.input.remove(vi)
    return tuple(vi.name for vi in unread)


def _names_read(graph: onnx.GraphProto) -> set[str]:
    """Every tensor a node reads, in subgraphs too (they may read the outer graph's), and the outputs."""
    names = {o.name for o in graph.output}
    for n in graph.node:
        names.update(n.input)
        for a in n.attribute:
            for sub in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                names |= _names_read(sub)
    return names


def _pin_input_shape(model: onnx.ModelProto, input_shape: list[int] | None) -> None:
    """Make the graph input static: batch -> 1, other symbolic dims from --input-shape."""
    inputs = _data_inputs(model)
    if len(inputs) != 1:
        raise UnsupportedModelError(
            f"the model has {len(inputs)} inputs ({', '.join(v.name for v in inputs)}); lego2c supports one"
        )
    outputs = model.graph.output
    if len(outputs) != 1:
        described = ", ".join(f"{v.name}: {_type_words(v.type)}" for v in outputs)
        raise UnsupportedModelError(f"the model has {len(outputs)} outputs ({described}); lego2c supports one",
                                    hint="choose the one to compute with --output-name NAME" + _scores_hint(model, outputs))  # fmt: skip
    dims = inputs[0].type.tensor_type.shape.dim
    if input_shape is not None:
        if len(input_shape) != len(dims):
            raise UsageError(
                f"--input-shape has {len(input_shape)} dims but input '{inputs[0].name}' has rank {len(dims)}"
            )
        for d, v in zip(dims, input_shape):
            if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != v:
                raise UsageError(f"--input-shape {input_shape} contradicts the model's static dim {d.dim_value}")
            d.dim_value = v
    missing = []
    for i, d in enumerate(dims):
        if d.HasField("dim_value") and d.dim_value > 0:
            continue
        if i == 0:
            d.dim_value = 1
        else:
            missing.append(f"dim {i} ('{d.dim_param or '?'}')")
    if missing:
        raise UnsupportedModelError(
            f"input '{inputs[0].name}' has dynamic dimensions: {', '.join(missing)}",
            hint="give the full static shape with --input-shape, e.g. --input-shape 1,3,32,32",
        )
    # Let shape inference recompute everything downstream from the pinned input.
    del model.graph.value_info[:]
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")


def _refuse_huge_tensors(model: onnx.ModelProto) -> None:
    """Refuse tensors with absurd static sizes before anything materialises them.

    A few-kB model whose ConstantOfShape asks for 2**31 elements otherwise makes onnxslim's
    folding and onnx's data propagation allocate tens of GB. Plain shape inference only
    computes shapes, so it is cheap and safe to run first.
    """
    try:
        g = shape_inference.infer_shapes(model).graph
    except Exception:  # onnx raises several unrelated types; the strict inference later reports them
        return
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            n = math.prod(max(d.dim_value, 0) for d in dims)
            if n > MAX_ELEMENTS:
                raise UnsupportedModelError(
                    f"tensor '{vi.name}' would have {n} elements (the limit is {MAX_ELEMENTS})"
                )


def _batchnorm_stats(model: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each inference BatchNorm's output moments per channel: (shift, |scale|), from initializers."""
    init = {t.name: t for t in model.graph.initializer}
    stats = {}
    for n in model.graph.node:
        if n.op_type == "BatchNormalization" and len(n.input) == 5 and all(i in init for i in n.input[1:3]):
            scale, shift = (numpy_helper.to_array(init[i]).astype(np.float64).reshape(-1) for i in n.input[1:3])
            if scale.shape == shift.shape and np.isfinite(scale).all() and np.isfinite(shift).all():
                stats[n.output[0]] = (shift, np.abs(scale))
    return stats


def _fold_shape_subgraphs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold exporters' Shape/Gather/Concat/... chains into constants with onnxslim."""
    import onnxslim  # slow import; only needed here

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return onnxslim.slim(model)
    except Exception as e:  # onnxslim raises whatever its passes raise
        raise UnsupportedModelError(f"constant folding failed: {first_line(e)}") from None


def _attr_dict(node: onnx.NodeProto) -> dict[str, object]:
    out: dict[str, object] = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _to_ir(model: onnx.ModelProto) -> Graph:
    g = model.graph
    opset = default_opset(model)
    assert opset is not None  # _check_opset refused models without one
    tensors: dict[str, Tensor] = {}
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        tensors[init.name] = Tensor(init.name, tuple(arr.shape), arr)

    def declare(vi: onnx.ValueInfoProto) -> None:
        if vi.name in tensors:
            return
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        tensors[vi.name] = Tensor(vi.name, tuple(dims) if tt.HasField("shape") else (-1,))
        if tt.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.UNDEFINED):
            tensors[vi.name].shape = (-2,)  # marks a non-float activation

    for vi in list(g.input) + list(g.value_info) + list(g.output):
        declare(vi)
    nodes: list[Node] = []
    for i, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{i}"
        if n.domain not in ("", "ai.onnx"):
            nodes.append(Node(f"{n.domain}.{n.op_type}", name, list(n.input), list(n.output)))
            continue
        attrs = _attr_dict(n)
        if n.op_type == "Constant":
            value = helper.get_attribute_value(n.attribute[0])
            arr = numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.array(value)
            tensors[n.output[0]] = Tensor(n.output[0], tuple(arr.shape), arr)
            continue
        nodes.append(Node(n.op_type, name, list(n.input), list(n.output), attrs))
    graph = Graph(
        tensors, nodes,
        inputs=[vi.name for vi in _data_inputs(model)],
        outputs=[vi.name for vi in g.output],
        opset=opset,
        metadata={p.key: p.value for p in model.metadata_props},
    )  # fmt: skip
    for node in graph.nodes:
        for t in node.inputs + node.outputs:
            if t and t not in graph.tensors:
                graph.tensors[t] = Tensor(t, (-1,))
    return graph


def _simplify(g: Graph, refused: dict[str, list[str]]) -> None:
    """`refused`: the nodes the recurrence unrolling left, with its reasons, for the report."""
    _drop_identities(g)
    fuse_fake_quantization(g)
    _split_to_slices(g)
    _split_wide_concats(g)
    _fuse_matmul_bias(g)
    _canonicalise_dense(g)
    _fold_batchnorm(g)
    _untie_weights(g)
    g.prune_unused()
    if any(not t.is_const and (t.shape == (-2,) or min(t.shape, default=0) < 0) for t in g.tensors.values()):
        # Ops lego2c has no lowering for (another domain's, often) leave tensors of other types or unknown
        # shapes behind them: name those ops, the cause, rather than the first such tensor.
        unknown: dict[str, list[str]] = {}
        for n in g.nodes:
            if n.op not in ops.LOWERINGS:
                unknown.setdefault(n.op, []).append(n.name)
        _refuse_unsupported(unknown | refused)
    for t in g.tensors.values():
        if t.is_const:
            continue
        if t.shape == (-2,):
            raise UnsupportedModelError(f"tensor '{t.name}' is not float32; lego2c compiles float32 models")
        if any(d < 0 for d in t.shape):
            raise UnsupportedModelError(f"the shape of tensor '{t.name}' could not be inferred statically")
    for t in g.tensors.values():
        if t.is_const and t.data.dtype.kind == "f":  # type: ignore[union-attr]
            t.data = t.data.astype(np.float32)  # type: ignore[union-attr]


def _check_io(g: Graph) -> None:
    """After folding, the output must still be computed from the one input by some node."""
    if not g.nodes or len(g.inputs) != 1 or any(g.tensors[o].is_const for o in g.outputs):
        raise UnsupportedModelError("the model's output does not depend on its input: nothing to compile")


def _refuse_unusable_weights(g: Graph) -> None:
    """NaN or Inf in a weight (often from folding a BN with a negative variance) cannot be clustered, nor can
    values whose squares overflow float32: clustering and its error measures sum squares."""
    for n in ops.weight_readers(g):
        w = g.const(n.inputs[1])
        assert w is not None  # as weight_readers chose it
        if w.dtype.kind != "f" or not w.size:
            continue
        if not np.isfinite(w).all():
            raise UnsupportedModelError(f"{n.op} '{n.name}': the weight holds NaN or Inf values")
        top = float(np.abs(w).max())
        if top > SQUARE_MAX:
            raise UnsupportedModelError(f"{n.op} '{n.name}': the weight holds values up to {top:.3g}, whose squares "
                                        "overflow float32", hint="a trained model's weights are nowhere near this: "
                                        "check the export against the framework's own outputs")  # fmt: skip


def _drop_identities(g: Graph) -> None:
    for node in [n for n in g.nodes if n.op in DROPPED_OPS]:
        src, dst = node.inputs[0], node.outputs[0]
        g.nodes.remove(node)
        if dst in g.outputs and src in g.inputs:
            raise UnsupportedModelError("the model is an identity: nothing to compile")
        if dst in g.outputs:
            # Keep the graph output's name: the producer of src writes it directly.
            producer = g.producer(src)
            assert producer is not None
            producer.outputs = [dst if o == src else o for o in producer.outputs]
            g.rename_uses(src, dst)
            g.tensors[dst].shape = g.tensors[src].shape if g.tensors[dst].shape[0] < 0 else g.tensors[dst].shape
        else:
            g.rename_uses(dst, src)


def _split_to_slices(g: Graph) -> None:
    """Split -> one Slice per output, each as long as shape inference made that output. (Before opset 10,
    Slice took attributes and onnx cannot infer its shapes: a Split stays, and is reported unsupported.)"""
    for split in [n for n in g.nodes if n.op == "Split" and g.opset >= 10]:
        rank = len(g.shape(split.inputs[0]))
        axis, start, slices = int(split.attrs.get("axis", 0)) % rank, 0, []
        for k, out in enumerate(split.outputs):
            length = g.shape(out)[axis] if out else 0
            name, bounds = f"{split.name}__slice{k}", {"starts": start, "ends": start + length, "axes": axis}
            if out:
                for key, value in bounds.items():
                    g.tensors[f"{name}_{key}"] = Tensor(f"{name}_{key}", (1,), np.array([value], np.int64))
                slices.append(Node("Slice", name, [split.inputs[0], *(f"{name}_{key}" for key in bounds)], [out]))
            start += length
        at = g.nodes.index(split)
        g.nodes[at : at + 1] = slices


def _split_wide_concats(g: Graph) -> None:
    """A Concat of more inputs than one kernel call takes -> a tree of Concats (an unrolled sequence's steps)."""
    for cat in [n for n in g.nodes if n.op == "Concat" and len(n.inputs) > ops.MAX_CONCAT]:
        axis = int(cat.attrs["axis"]) % len(g.shape(cat.outputs[0]))
        inputs, parts = list(cat.inputs), []
        while len(inputs) > ops.MAX_CONCAT:  # each level concatenates runs of neighbours, keeping their order
            level = []
            for k in range(0, len(inputs), ops.MAX_CONCAT):
                group = inputs[k : k + ops.MAX_CONCAT]
                shape = list(g.shape(group[0]))
                shape[axis] = sum(g.shape(i)[axis] for i in group)
                name = f"{cat.name}__part{len(parts)}"
                g.tensors[name] = Tensor(name, tuple(shape))
                parts.append(Node("Concat", name, group, [name], {"axis": axis}))
                level.append(name)
            inputs = level
        at = g.nodes.index(cat)
        g.nodes[at:at] = parts
        cat.inputs = inputs


def _fuse_matmul_bias(g: Graph) -> None:
    """MatMul of a constant weight, then Add of a constant bias along its last axis (a Linear as exporters write
    it for more than two axes) -> one MatMul with the bias as a third input, as Gemm and Conv carry theirs
    (`Graph.to_onnx` writes the two nodes back). The bias then belongs to its layer: stored, corrected and
    distilled with it, and added in the same pass."""
    for mm in [n for n in g.nodes if n.op == "MatMul"]:
        w, users = g.const(mm.inputs[1]), g.consumers(mm.outputs[0])
        if (w is None or w.ndim != 2 or g.const(mm.inputs[0]) is not None or mm.outputs[0] in g.outputs
                or len(users) != 1 or users[0].op != "Add"):  # fmt: skip
            continue
        add = users[0]
        bias = next((i for i in add.inputs if i != mm.outputs[0]), "")
        b = g.const(bias)
        if b is None or b.size != w.shape[1] or b.shape[-1] != w.shape[1] or g.shape(add.outputs[0]) != g.shape(mm.outputs[0]):
            continue
        g.nodes.remove(add)
        del g.tensors[mm.outputs[0]]
        mm.outputs = add.outputs
        mm.inputs.append(bias)
        if b.shape != (w.shape[1],):
            _derived_const(g, mm, 2, b.reshape(-1), "vector")


def _canonicalise_dense(g: Graph) -> None:
    """Gemm -> y = x W^T + b with alpha/beta folded; MatMul weights stored (out, in)."""
    for n in g.nodes:
        if n.op == "Gemm" and g.const(n.inputs[1]) is not None:
            w = g.const(n.inputs[1]).astype(np.float32)  # type: ignore[union-attr]
            if not n.attrs.get("transB", 0):
                w = w.T
            w = w * np.float32(n.attrs.get("alpha", 1.0))
            _derived_const(g, n, 1, np.ascontiguousarray(w), f"W{n.attrs.get('transB', 0)}x{n.attrs.get('alpha', 1.0)}")
            if len(n.inputs) > 2 and n.inputs[2]:
                c = g.const(n.inputs[2])
                out_shape = g.shape(n.outputs[0])
                if c is None or c.size not in (1, out_shape[-1]) or (c.ndim == 2 and c.shape[0] != 1):
                    raise UnsupportedModelError(f"Gemm '{n.name}': C must be a constant bias vector")
                bias = np.broadcast_to(c.reshape(-1), (out_shape[-1],)) * np.float32(n.attrs.get("beta", 1.0))
                _derived_const(g, n, 2, np.ascontiguousarray(bias, dtype=np.float32), f"bias{out_shape[-1]}x{n.attrs.get('beta', 1.0)}")
            n.attrs.update(transB=1, alpha=1.0, beta=1.0)


def _untie_weights(g: Graph) -> None:
    """A weight that several nodes read is stored once (`compress.weighted_nodes`), with one bias and one
    orientation: a reader of another op, bias or group count gets its own copy."""
    first: dict[str, tuple[object, ...]] = {}
    for n in ops.weight_readers(g):
        key = (n.op, n.inputs[2] if len(n.inputs) > 2 else "", n.attrs.get("group", 1))
        if first.setdefault(n.inputs[1], key) != key:
            _set_private_const(g, n, 1, g.const(n.inputs[1]))  # type: ignore[arg-type]


def _derived_const(g: Graph, node: Node, idx: int, value: np.ndarray, how: str) -> None:
    """Point input `idx` at `value`, derived from it as `how` says: every reader that derives it alike reads the
    same constant, so a weight that several Gemms read stays one layer (the steps of an unrolled Loop)."""
    name = f"{node.inputs[idx]}__{how}"
    g.tensors.setdefault(name, Tensor(name, tuple(value.shape), value))
    node.inputs[idx] = name


def _set_private_const(g: Graph, node: Node, idx: int, value: np.ndarray) -> None:
    """Give `node` its own copy of a constant input (others may share the original)."""
    name = f"{node.name}__{('A', 'W', 'bias')[idx]}"
    g.tensors[name] = Tensor(name, tuple(value.shape), value)
    node.inputs[idx] = name


def _fold_batchnorm(g: Graph) -> None:
    """Fold BN into the Conv/Gemm before it; a BN on its own becomes Mul + Add."""
    for bn in [n for n in g.nodes if n.op == "BatchNormalization"]:
        consts = [g.const(i) for i in bn.inputs[1:5]]
        if any(c is None for c in consts) or (len(bn.outputs) > 1 and any(bn.outputs[1:])):
            continue  # training-mode BN: left for the unsupported-op report
        scale, shift, mean, var = (c.astype(np.float32) for c in consts)  # type: ignore[union-attr]
        s = scale / np.sqrt(var + np.float32(bn.attrs.get("epsilon", 1e-5)))
        b = shift - mean * s
        prev = g.producer(bn.inputs[0])
        foldable = (
            prev is not None
            and prev.op in (*ops.CONV_OPS, "Gemm")
            and g.const(prev.inputs[1]) is not None
            and len(g.consumers(bn.inputs[0])) == 1
            and bn.inputs[0] not in g.outputs
        )
        if foldable:
            assert prev is not None
            w = g.const(prev.inputs[1])
            if prev.op == "ConvTranspose":  # (in, out/groups, ...): out channel o of group k is k * out/groups + o
                groups = int(prev.attrs.get("group", 1))
                w = (w.reshape(groups, -1, *w.shape[1:]) * s.reshape(groups, 1, -1, *[1] * (w.ndim - 2))).reshape(w.shape)
            else:
                w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))  # type: ignore[operator, union-attr]
            old_b = g.const(prev.inputs[2]) if len(prev.inputs) > 2 and prev.inputs[2] else None
            new_b = b + (old_b * s if old_b is not None else 0)
            _set_private_const(g, prev, 1, w.astype(np.float32))
            while len(prev.inputs) < 3:
                prev.inputs.append("")
            _set_private_const(g, prev, 2, np.asarray(new_b, dtype=np.float32))
            prev.outputs = [bn.outputs[0]]
            g.nodes.remove(bn)
            continue
        rank = len(g.shape(bn.inputs[0]))
        bshape = (-1,) + (1,) * (rank - 2)
        mul_c, add_c = f"{bn.name}__scale", f"{bn.name}__shift"
        g.tensors[mul_c] = Tensor(mul_c, s.reshape(bshape).shape, s.reshape(bshape))
        g.tensors[add_c] = Tensor(add_c, b.reshape(bshape).shape, b.reshape(bshape).astype(np.float32))
        mid = f"{bn.name}__scaled"
        g.tensors[mid] = Tensor(mid, g.shape(bn.inputs[0]))
        i = g.nodes.index(bn)
        g.nodes[i : i + 1] = [
            Node("Mul", f"{bn.name}_mul", [bn.inputs[0], mul_c], [mid]),
            Node("Add", f"{bn.name}_add", [mid, add_c], [bn.outputs[0]]),
        ]
