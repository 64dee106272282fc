"""Fuzz the frontend and the compiler with mutated zoo models.

The contract: `load_model` returns a Graph or raises a `LegoError`; for every model it
accepts, `compile_model` does the same. Anything else is a crash. Each case takes a valid
zoo model, applies one to three mutators (structural edits of the ModelProto, then maybe a
byte-level edit of the serialized file) and runs both stages on the result.

The mutators live here and `tests/test_fuzz.py` imports them, so the CI test (a few hundred
hypothesis examples) and this long run (`python -m benchmarks.fuzz --cases 10000`) fuzz
exactly the same way. Case N of a run is reproducible on its own: `--case N` replays it and
prints the full traceback.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from lego2c.build import compile_model
from lego2c.compress import CompressOptions
from lego2c.errors import LegoError
from lego2c.frontend import load_model

BASE_MODELS = ("mlp", "cnn", "dscnn", "ops_mix", "dynamo_cnn")
# Dense, and two clusterings cheap enough to run thousands of times.
COMPRESS_OPTIONS = (
    CompressOptions(enabled=False),
    CompressOptions(k=2, tile=(8, 8)),
    CompressOptions(k=16, tile=(1, 4)),
)

# Values at the edges of what each attribute type can hold.
INTS = [-(2**63), -(2**31), -7, -1, 0, 1, 2, 3, 5, 2**31 - 1, 2**31, 2**62, 2**63 - 1]
FLOATS = [float("nan"), float("inf"), float("-inf"), -1.0, 0.0, 1e-45, 0.5, 1.0, 3.4e38]
STRINGS = [b"", b"NOTSET", b"SAME_UPPER", b"SAME_LOWER", b"VALID", b"reflect", b"constant", b"bogus", b"\xff\xfe"]

# Attributes the supported ops (and the ones the frontend folds) read, by name.
KNOWN_ATTRS = [
    "kernel_shape", "pads", "strides", "dilations", "group", "auto_pad", "alpha", "beta", "transA", "transB",
    "ceil_mode", "count_include_pad", "storage_order", "axis", "axes", "keepdims", "noop_with_empty_axes",
    "mode", "value", "min", "max", "epsilon", "momentum", "training_mode", "allowzero", "ratio", "seed",
]  # fmt: skip
OP_TYPES = [
    "Conv", "Gemm", "MatMul", "Relu", "Clip", "Add", "Mul", "PRelu", "MaxPool", "AveragePool",
    "GlobalAveragePool", "ReduceMean", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Pad",
    "Softmax", "BatchNormalization", "Identity", "Dropout", "Constant", "Shape", "Gather", "Cast",
    "ConstantOfShape", "Expand", "QuantizeLinear", "LSTM", "If", "NoSuchOp", "",
]  # fmt: skip
ELEM_TYPES = [TensorProto.UNDEFINED, TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT8, TensorProto.DOUBLE,
              TensorProto.FLOAT16, TensorProto.BOOL, TensorProto.STRING, TensorProto.COMPLEX64, 99]  # fmt: skip
DIMS = [0, 1, 2, 3, -1, -(2**31), 2**31, 2**40]

Mutator = Callable[[onnx.ModelProto, random.Random], str]


# --------------------------------------------------------------------------------------------
# Helpers


def _node(m: onnx.ModelProto, rng: random.Random) -> onnx.NodeProto | None:
    return rng.choice(m.graph.node) if m.graph.node else None


def _attr_value(rng: random.Random, kind: int) -> object:
    """A value of attribute type `kind`, chosen from the edge values above."""
    if kind == AttributeProto.INT:
        return rng.choice(INTS)
    if kind == AttributeProto.FLOAT:
        return rng.choice(FLOATS)
    if kind == AttributeProto.STRING:
        return rng.choice(STRINGS)
    if kind == AttributeProto.INTS:
        return [rng.choice(INTS + [1, 2, 3] * 4) for _ in range(rng.randint(0, 6))]
    if kind == AttributeProto.FLOATS:
        return [rng.choice(FLOATS) for _ in range(rng.randint(0, 4))]
    if kind == AttributeProto.STRINGS:
        return [rng.choice(STRINGS) for _ in range(rng.randint(0, 3))]
    return _tensor(rng)


def _tensor(rng: random.Random) -> TensorProto:
    dims = [rng.choice([0, 1, 2, 3]) for _ in range(rng.randint(0, 3))]
    n = 1
    for d in dims:
        n *= d
    dtype = rng.choice([TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32, TensorProto.DOUBLE])
    vals = [rng.choice(INTS[3:10]) for _ in range(n)]
    return helper.make_tensor("t", dtype, dims, vals)


ATTR_KINDS = [AttributeProto.INT, AttributeProto.FLOAT, AttributeProto.STRING, AttributeProto.INTS,
              AttributeProto.FLOATS, AttributeProto.STRINGS, AttributeProto.TENSOR]  # fmt: skip


def _make_attr(name: str, rng: random.Random, kind: int | None = None) -> AttributeProto:
    kind = kind if kind is not None else rng.choice(ATTR_KINDS)
    return helper.make_attribute(name, _attr_value(rng, kind), attr_type=kind)


def _schema(m: onnx.ModelProto, op: str) -> onnx.defs.OpSchema | None:
    """The default-domain schema of `op` at the model's opset, if there is one."""
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), onnx.defs.onnx_opset_version())
    try:
        return onnx.defs.get_schema(op, max(1, min(opset, onnx.defs.onnx_opset_version())))
    except onnx.defs.SchemaError:
        return None


def _all_edges(m: onnx.ModelProto) -> list[str]:
    g = m.graph
    names = {i for n in g.node for i in list(n.input) + list(n.output)}
    names |= {v.name for v in list(g.input) + list(g.output)} | {i.name for i in g.initializer}
    return sorted(n for n in names if n)


# --------------------------------------------------------------------------------------------
# Structural mutators: edit the ModelProto in place, return a one-line description.


def drop_node(m: onnx.ModelProto, rng: random.Random) -> str:
    """Remove a node; usually bypass it (its readers read its first input) so the graph stays connected."""
    n = _node(m, rng)
    if n is None:
        return "no node to drop"
    m.graph.node.remove(n)
    if rng.random() < 0.2 or not n.input or not n.output:
        return f"dropped {n.op_type} '{n.name}'"
    for other in m.graph.node:
        for i, name in enumerate(other.input):
            if name == n.output[0]:
                other.input[i] = n.input[0]
    for out in m.graph.output:
        if out.name == n.output[0]:
            out.name = n.input[0]
    return f"bypassed {n.op_type} '{n.name}'"


def duplicate_node(m: onnx.ModelProto, rng: random.Random) -> str:
    """A second producer of the same tensors, at a random position."""
    n = _node(m, rng)
    if n is None:
        return "no node to duplicate"
    m.graph.node.insert(rng.randint(0, len(m.graph.node)), n)
    return f"duplicated {n.op_type} '{n.name}'"


def reorder_nodes(m: onnx.ModelProto, rng: random.Random) -> str:
    """Break the topological order."""
    nodes = list(m.graph.node)
    rng.shuffle(nodes)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return "shuffled the node order"


def change_op_type(m: onnx.ModelProto, rng: random.Random) -> str:
    """Usually to an op whose arity fits the node's edges, so the checker looks further."""
    n = _node(m, rng)
    if n is None:
        return "no node"

    def fits(op: str) -> bool:
        s = _schema(m, op)
        return s is not None and s.min_input <= len(n.input) <= s.max_input and s.min_output <= len(n.output) <= s.max_output

    fitting = [op for op in OP_TYPES if fits(op)]
    old = n.op_type
    n.op_type = rng.choice(fitting if fitting and rng.random() < 0.8 else OP_TYPES)
    if rng.random() < 0.7:
        del n.attribute[:]  # the old op's attributes rarely mean anything to the new one
    return f"'{n.name}': op {old} -> {n.op_type!r}"


def change_domain(m: onnx.ModelProto, rng: random.Random) -> str:
    n = _node(m, rng)
    if n is None:
        return "no node"
    n.domain = rng.choice(["ai.onnx", "com.microsoft", "ai.onnx.ml", "local", "pkg.onnxscript.torch_lib"])
    if rng.random() < 0.8 and all(o.domain != n.domain for o in m.opset_import):
        m.opset_import.add(domain=n.domain, version=1)
    return f"'{n.name}': domain -> {n.domain!r}"


def corrupt_attribute(m: onnx.ModelProto, rng: random.Random) -> str:
    """Wrong type, edge value, empty list or missing: on an attribute the node really has."""
    with_attrs = [n for n in m.graph.node if n.attribute]
    if not with_attrs:
        return add_attribute(m, rng)
    n = rng.choice(with_attrs)
    i = rng.randrange(len(n.attribute))
    a = n.attribute[i]
    action = rng.choice(["wrong_type", "edge_value", "edge_value", "edge_value", "empty", "remove"])
    if action == "remove":
        del n.attribute[i]
    elif action == "empty":
        a.ClearField("ints")
        a.ClearField("floats")
        a.ClearField("strings")
        a.ClearField("t")
        a.ClearField("i")
        a.ClearField("f")
        a.ClearField("s")
    else:
        kind = a.type if action == "edge_value" else rng.choice([k for k in ATTR_KINDS if k != a.type])
        n.attribute[i].CopyFrom(_make_attr(a.name, rng, kind))
    return f"{n.op_type} '{n.name}': attribute {a.name} {action}"


def add_attribute(m: onnx.ModelProto, rng: random.Random) -> str:
    """Usually one of the op's own attributes with its own type (replacing any copy); else anything."""
    n = _node(m, rng)
    if n is None:
        return "no node"
    schema = _schema(m, n.op_type)
    if schema is not None and schema.attributes and rng.random() < 0.8:
        name = rng.choice(sorted(schema.attributes))
        kind = int(schema.attributes[name].type)
        kind = kind if kind in ATTR_KINDS and rng.random() < 0.8 else None  # no GRAPH/SPARSE_TENSOR values
        for i in reversed(range(len(n.attribute))):
            if n.attribute[i].name == name:
                del n.attribute[i]
        a = _make_attr(name, rng, kind)
    else:
        name = rng.choice(KNOWN_ATTRS + ["", "no_such_attribute"])
        a = _make_attr(name, rng)
    n.attribute.append(a)
    return f"{n.op_type} '{n.name}': added {name}={helper.get_attribute_value(a)!r:.60}"


def rename_edge(m: onnx.ModelProto, rng: random.Random) -> str:
    """Point one end of an edge elsewhere: dangling, empty, or another tensor's name."""
    n = _node(m, rng)
    if n is None:
        return "no node"
    field = n.input if n.input and rng.random() < 0.6 else n.output
    if not field:
        return "node without edges"
    i = rng.randrange(len(field))
    old = field[i]
    field[i] = rng.choice(["dangling", "", rng.choice(_all_edges(m))])
    return f"{n.op_type} '{n.name}': edge {old!r} -> {field[i]!r}"


def change_arity(m: onnx.ModelProto, rng: random.Random) -> str:
    """Drop or add inputs/outputs: usually optional ones (within the schema's range), else any."""
    n = _node(m, rng)
    if n is None:
        return "no node"
    schema = _schema(m, n.op_type)
    outputs = rng.random() < 0.3
    field = n.output if outputs else n.input
    lo, hi = (0, len(field) + 3) if schema is None or rng.random() < 0.3 else (
        (schema.min_output, schema.max_output) if outputs else (schema.min_input, schema.max_input))  # fmt: skip
    size = rng.randint(lo, min(hi, len(field) + 3))
    if size <= len(field):
        del field[size:]
    else:
        field.extend(rng.choice(["", "", "extra", *_all_edges(m)]) for _ in range(size - len(field)))
    return f"{n.op_type} '{n.name}': {'outputs' if outputs else 'inputs'} -> {list(field)}"


def change_graph_input(m: onnx.ModelProto, rng: random.Random) -> str:
    """The input's dtype, rank or dims; or no input at all; or a second one."""
    g = m.graph
    if not g.input:
        return "no graph input"
    vi = rng.choice(g.input)
    tt = vi.type.tensor_type
    action = rng.choice(["dtype", "dim", "dim", "dim_param", "rank_up", "rank_down", "no_shape", "remove", "add"])
    if action == "dtype":
        tt.elem_type = rng.choice(ELEM_TYPES)
    elif action in ("dim", "dim_param") and tt.shape.dim:
        d = rng.choice(tt.shape.dim)
        if action == "dim":
            d.dim_value = rng.choice(DIMS)
        else:
            d.dim_param = rng.choice(["N", "", "h"])
    elif action == "rank_up":
        tt.shape.dim.add().dim_value = rng.choice(DIMS)
    elif action == "rank_down" and tt.shape.dim:
        del tt.shape.dim[rng.randrange(len(tt.shape.dim))]
    elif action == "no_shape":
        tt.ClearField("shape")
    elif action == "remove":
        g.input.remove(vi)
    elif action == "add":
        g.input.append(helper.make_tensor_value_info(rng.choice(["x2", vi.name]), TensorProto.FLOAT, [1, 3]))
    return f"graph input '{vi.name}': {action}"


def change_initializer(m: onnx.ModelProto, rng: random.Random) -> str:
    """An initializer's dims or dtype (its bytes unchanged), or drop/duplicate it."""
    g = m.graph
    if not g.initializer:
        return "no initializer"
    init = rng.choice(g.initializer)
    action = rng.choice(["dims", "dims", "rank", "dtype", "drop", "duplicate"])
    if action == "dims" and init.dims:
        init.dims[rng.randrange(len(init.dims))] = rng.choice(DIMS)
    elif action == "rank":
        dims = list(init.dims)
        rng.shuffle(dims)
        del init.dims[:]
        init.dims.extend(dims[: rng.randint(0, len(dims) + 1)] + ([1] if rng.random() < 0.3 else []))
    elif action == "dtype":
        init.data_type = rng.choice(ELEM_TYPES + [TensorProto.INT32, TensorProto.UINT64])
    elif action == "drop":
        g.initializer.remove(init)
    elif action == "duplicate":
        g.initializer.append(init)
    return f"initializer '{init.name}': {action}"


def corrupt_initializer_data(m: onnx.ModelProto, rng: random.Random) -> str:
    """Raw bytes of the wrong length, typed fields that disagree, non-finite values, missing external data."""
    g = m.graph
    if not g.initializer:
        return "no initializer"
    init = rng.choice(g.initializer)
    action = rng.choice(["truncate", "extend", "empty", "typed_field", "nonfinite", "external"])
    if action == "truncate" and init.raw_data:
        init.raw_data = init.raw_data[: rng.randrange(len(init.raw_data))]
    elif action == "extend":
        init.raw_data = init.raw_data + bytes(rng.randint(1, 7))
    elif action == "empty":
        init.ClearField("raw_data")
    elif action == "typed_field":
        init.float_data.extend([1.0] * rng.randint(1, 5))
        init.int64_data.extend([1] * rng.randint(0, 2))
    elif action == "nonfinite" and init.raw_data and init.data_type == TensorProto.FLOAT:
        raw = bytearray(init.raw_data)
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(len(raw) // 4) * 4
            raw[k : k + 4] = rng.choice([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff"])
        init.raw_data = bytes(raw)
    elif action == "external":
        init.data_location = TensorProto.EXTERNAL
        loc = rng.choice(["missing.bin", "../../etc/passwd", "/etc/passwd", ""])
        del init.external_data[:]
        init.external_data.add(key="location", value=loc)
        if rng.random() < 0.5:
            init.external_data.add(key="length", value=rng.choice(["-1", "abc", "100000000000"]))
    return f"initializer '{init.name}': data {action}"


def change_constant_values(m: onnx.ModelProto, rng: random.Random) -> str:
    """Edge values in a small constant (shapes, axes, pads, bounds), keeping its dtype and size."""
    small = [t for t in m.graph.initializer if 0 < np.prod(t.dims) <= 16]
    small += [a.t for n in m.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    if not small:
        return "no small constant"
    t = rng.choice(small)
    try:
        arr = numpy_helper.to_array(t).copy()
    except ValueError:  # an earlier mutator corrupted it
        return f"constant '{t.name}' is unreadable"
    flat = arr.reshape(-1)
    if flat.size == 0:
        return f"constant '{t.name}' is empty"
    info = np.iinfo(arr.dtype) if arr.dtype.kind in "iu" else None
    for _ in range(rng.randint(1, max(1, flat.size))):
        v = rng.choice(INTS) if info is not None else rng.choice(FLOATS)
        flat[rng.randrange(flat.size)] = min(max(v, info.min), info.max) if info is not None else v
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
    return f"constant '{t.name}' -> {flat.tolist()!r:.80}"


def change_outputs(m: onnx.ModelProto, rng: random.Random) -> str:
    """Duplicated, extra, removed or renamed graph outputs."""
    g = m.graph
    action = rng.choice(["duplicate", "extra", "remove", "rename", "intermediate"])
    if action == "duplicate" and g.output:
        g.output.append(g.output[0])
    elif action == "extra":
        g.output.append(helper.make_tensor_value_info(rng.choice(_all_edges(m) + ["nowhere"]), TensorProto.FLOAT, None))
    elif action == "remove" and g.output:
        del g.output[rng.randrange(len(g.output))]
    elif action == "rename" and g.output:
        g.output[0].name = rng.choice(["", "nowhere", *_all_edges(m)])
    elif action == "intermediate" and g.output:
        # Another node's output becomes the graph output (a prefix of the model).
        outs = [o for n in g.node for o in n.output if o]
        if outs:
            g.output[0].name = rng.choice(outs)
            g.output[0].type.tensor_type.ClearField("shape")
    return f"graph outputs: {action}"


def change_opset(m: onnx.ModelProto, rng: random.Random) -> str:
    action = rng.choice(["version", "version", "remove", "duplicate", "foreign", "ir_version"])
    default = [o for o in m.opset_import if o.domain in ("", "ai.onnx")]
    if action == "version" and default:
        default[0].version = rng.choice([-1, 0, 1, 6, 7, 9, 10, 11, 12, 13, 16, 21, 22, 23, 99, 2**62])
    elif action == "remove":
        for o in default:
            m.opset_import.remove(o)
    elif action == "duplicate" and default:
        m.opset_import.add(domain=rng.choice(["", "ai.onnx"]), version=rng.choice([7, 13, 18]))
    elif action == "foreign":
        m.opset_import.add(domain=rng.choice(["com.microsoft", "local", "ai.onnx.ml"]), version=rng.choice([1, 99]))
    elif action == "ir_version":
        m.ir_version = rng.choice([0, 1, 3, 7, 8, 10, 11, 99])
    return f"opset: {action}"


def add_local_function(m: onnx.ModelProto, rng: random.Random) -> str:
    """A node calls a model-local function: well-formed, calling itself, or calling nothing."""
    n = _node(m, rng)
    if n is None:
        return "no node"
    kind = rng.choice(["wrap", "recursive", "missing", "bad_body"])
    fname = f"f_{kind}"
    if kind != "missing":
        body_op, body_domain = (fname, "local") if kind == "recursive" else (n.op_type, "")
        body = helper.make_node(body_op, ["x"], ["y"], domain=body_domain)
        if kind == "bad_body":
            body = helper.make_node(n.op_type, ["nowhere"], ["y"])
        m.functions.append(helper.make_function(
            "local", fname, ["x"], ["y"], [body], [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
        ))  # fmt: skip
    if not any(o.domain == "local" for o in m.opset_import):
        m.opset_import.add(domain="local", version=1)
    n.op_type, n.domain = fname, "local"
    del n.input[1:]
    del n.output[1:]
    del n.attribute[:]
    return f"'{n.name}' -> local function ({kind})"


def add_value_info(m: onnx.ModelProto, rng: random.Random) -> str:
    """A value_info that contradicts the tensor's real type or shape."""
    edges = _all_edges(m)
    if not edges:
        return "no edges"
    name = rng.choice(edges)
    dims = [rng.choice(DIMS[:4] + [7]) for _ in range(rng.randint(0, 5))]
    m.graph.value_info.append(helper.make_tensor_value_info(name, rng.choice(ELEM_TYPES[:7]), dims))
    return f"value_info '{name}': {dims}"


STRUCTURAL: dict[str, Mutator] = {
    f.__name__: f
    for f in (
        drop_node, duplicate_node, reorder_nodes, change_op_type, change_domain, corrupt_attribute,
        add_attribute, rename_edge, change_arity, change_graph_input, change_initializer,
        corrupt_initializer_data, change_constant_values, change_outputs, change_opset, add_local_function,
        add_value_info,
    )
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Byte-level mutators of the serialized file.


def truncate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    n = rng.randrange(len(data))
    return data[:n], f"truncated to {n} of {len(data)} bytes"


def flip_bits(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    buf = bytearray(data)
    # Flips near the start hit the graph's structure (nodes precede the weights) more often.
    hot = min(len(buf), 4096)
    k = rng.randint(1, 8)
    for _ in range(k):
        i = rng.randrange(hot) if rng.random() < 0.7 else rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf), f"flipped {k} bit(s)"


BYTE_LEVEL: dict[str, Callable[[bytes, random.Random], tuple[bytes, str]]] = {
    f.__name__: f for f in (truncate_bytes, flip_bits)
}
MUTATORS = sorted(STRUCTURAL) + sorted(BYTE_LEVEL)
# The long run picks these less often: the checker or the parser rejects nearly all of them.
RARE = {"reorder_nodes": 0.3, "duplicate_node": 0.5, "truncate_bytes": 0.5}


def odd_input_shape(rng: random.Random, rank: int) -> list[int]:
    """A --input-shape that may contradict the model: wrong rank, zero, negative or huge dims."""
    n = max(rank + rng.choice([-1, 0, 0, 0, 1]), 0)
    return [rng.choice([1, 1, 3, 28, 0, -1, 2**31, 2**62]) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# One case


@dataclass
class Mutant:
    data: bytes
    input_shape: list[int] | None
    steps: list[str]


def mutate(base: bytes, mutators: Sequence[str], rng: random.Random, odd_shape: bool = False) -> Mutant:
    """Apply the named mutators to a serialized model: structural ones first, byte-level last."""
    model = onnx.load_from_string(base)
    rank = len(model.graph.input[0].type.tensor_type.shape.dim)
    steps = [f"{name}: {STRUCTURAL[name](model, rng)}" for name in mutators if name in STRUCTURAL]
    data = model.SerializeToString()
    for name in mutators:
        if name in BYTE_LEVEL and data:
            data, what = BYTE_LEVEL[name](data, rng)
            steps.append(f"{name}: {what}")
    shape = odd_input_shape(rng, rank) if odd_shape else None
    if shape is not None:
        steps.append(f"input_shape={shape}")
    return Mutant(data, shape, steps)


@dataclass
class Outcome:
    kind: str  # "accepted", "typed" (a LegoError) or "crash"
    stage: str  # "load_model" or "compile_model"
    error: str  # exception class name, "" when accepted
    message: str
    where: str = ""  # a crash's innermost lego2c function, "module.py:function"
    traceback: str = ""


def _where(e: BaseException) -> str:
    """The innermost lego2c frame of e's traceback (comprehension frames skipped)."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f"{os.sep}lego2c{os.sep}" in f.filename]
    named = [f for f in frames if not f.name.startswith("<")]
    return f"{Path(named[-1].filename).name}:{named[-1].name}" if named else ""


class CaseTimeout(BaseException):
    """Raised by the alarm in a case that runs too long; a BaseException so no `except Exception` hides it."""


def run_case(mutant: Mutant, path: Path, opts: CompressOptions) -> Outcome:
    """Write the mutant to `path`, then hold load_model and compile_model to the contract."""
    path.write_bytes(mutant.data)
    for stage in ("load_model", "compile_model"):
        try:
            if stage == "load_model":
                load_model(path, mutant.input_shape)
            else:
                compile_model(path, opts, mutant.input_shape, progress=False)
        except LegoError as e:
            return Outcome("typed", stage, type(e).__name__, e.message)
        except Exception as e:  # the contract forbids every other type: report, do not stop
            msg = (str(e).strip().splitlines() or [""])[0][:200]
            return Outcome("crash", stage, type(e).__name__, msg, _where(e), traceback.format_exc())
    return Outcome("accepted", "compile_model", "", "")


# --------------------------------------------------------------------------------------------
# The long run


def case_plan(seed: int, index: int) -> tuple[str, list[str], bool, int, random.Random]:
    """Case `index`'s base model, mutators, odd-shape flag and options, from its own RNG."""
    rng = random.Random(seed * 1_000_003 + index)
    base = rng.choice(BASE_MODELS)
    mutators = rng.choices(MUTATORS, [RARE.get(m, 1.0) for m in MUTATORS], k=rng.choice([1, 1, 2, 3]))
    return base, mutators, rng.random() < 0.1, rng.randrange(len(COMPRESS_OPTIONS)), rng


def _on_alarm(signum: int, frame: object) -> None:
    raise CaseTimeout()


def run_index(bases: dict[str, bytes], workdir: Path, seed: int, index: int, timeout: float) -> tuple[Outcome, list[str]]:
    """Plan, mutate and run case `index`, giving up (as a crash) after `timeout` seconds."""
    base, mutators, odd, opt, rng = case_plan(seed, index)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    steps = [f"{base}, {'dense' if not COMPRESS_OPTIONS[opt].enabled else COMPRESS_OPTIONS[opt]}"]
    try:
        mutant = mutate(bases[base], mutators, rng, odd)
        steps += mutant.steps
        return run_case(mutant, workdir / "case.onnx", COMPRESS_OPTIONS[opt]), steps
    except CaseTimeout:
        return Outcome("crash", "timeout", "Timeout", f"more than {timeout:g} s"), steps
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _serve(conn: Connection, bases: dict[str, bytes], seed: int, timeout: float) -> None:
    """A worker process: run the case indices the parent sends, one at a time, until None."""
    warnings.simplefilter("ignore")  # numpy and sklearn on degenerate weights
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # onnxruntime (inside onnxslim) logs failed folds to fd 2
    with tempfile.TemporaryDirectory(prefix="lego2c-fuzz-") as tmp:
        while (index := conn.recv()) is not None:
            t0 = time.perf_counter()
            outcome, _ = run_index(bases, Path(tmp), seed, index, timeout)
            conn.send((outcome, time.perf_counter() - t0))


@dataclass
class _Worker:
    proc: multiprocessing.process.BaseProcess
    conn: Connection
    case: int = -1  # the case it is running, -1 when idle
    started: float = 0.0


def run_cases(bases: dict[str, bytes], seed: int, cases: int, jobs: int, timeout: float) -> dict[int, tuple[Outcome, float]]:
    """Run cases 0..cases-1 on `jobs` worker processes.

    One case at a time per worker over a pipe, so a case that kills its process (a segfault in
    native code) or hangs outside Python (where the alarm cannot interrupt it) is pinned down,
    reported as a crash, and its worker replaced. Spawned, not forked: torch and onnxruntime
    threads in the parent do not survive a fork.
    """
    ctx = multiprocessing.get_context("spawn")
    pending = iter(range(cases))
    results: dict[int, tuple[Outcome, float]] = {}
    t0 = time.perf_counter()

    def start() -> _Worker:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child, bases, seed, timeout), daemon=True)
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def assign(w: _Worker) -> None:
        nxt = next(pending, None)
        w.case, w.started = (-1 if nxt is None else nxt), time.monotonic()
        w.conn.send(nxt)

    def record(i: int, outcome: Outcome, secs: float) -> None:
        results[i] = (outcome, secs)
        if len(results) % 500 == 0:
            crashes = sum(o.kind == "crash" for o, _ in results.values())
            print(f"  {len(results)}/{cases} cases, {crashes} crashes, {time.perf_counter() - t0:.0f} s", flush=True)

    workers = [start() for _ in range(min(jobs, cases))]
    for w in workers:
        assign(w)
    while any(w.case >= 0 for w in workers):
        ready = wait([w.conn for w in workers if w.case >= 0], timeout=1.0)
        for k, w in enumerate(workers):
            if w.case < 0:
                continue
            lost: Outcome | None = None
            if w.conn in ready:
                try:
                    outcome, secs = w.conn.recv()
                    record(w.case, outcome, secs)
                    assign(w)
                    continue
                except EOFError:
                    w.proc.join()
                    lost = Outcome("crash", "process", "WorkerDied", f"exit code {w.proc.exitcode}")
            elif time.monotonic() - w.started > timeout + 30:
                w.proc.kill()
                lost = Outcome("crash", "timeout", "Hang", f"no answer in {timeout + 30:g} s (native code)")
            if lost is not None:
                record(w.case, lost, time.monotonic() - w.started)
                workers[k] = start()
                assign(workers[k])
    for w in workers:
        w.proc.join()
    return results


def export_bases(zoo_dir: Path) -> dict[str, bytes]:
    from tests.zoo import export_zoo  # torch: only needed to make the base models

    missing = [n for n in BASE_MODELS if not (zoo_dir / f"{n}.onnx").is_file()]
    if missing:
        export_zoo(zoo_dir, missing)
    return {n: (zoo_dir / f"{n}.onnx").read_bytes() for n in BASE_MODELS}


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def summary(outcomes: dict[int, Outcome], seconds: float) -> str:
    """The run as a markdown table: one row per (outcome, stage, exception class, crash site)."""
    kinds = Counter(o.kind for o in outcomes.values())
    rows: list[tuple[str, ...]] = [("outcome", "stage", "class", "where", "count", "sample case", "sample message")]
    rows.append(("accepted", "compile_model", "", "", str(kinds["accepted"]), "", ""))
    groups: dict[tuple[str, str, str, str], list[int]] = {}
    for i, o in sorted(outcomes.items()):
        if o.kind != "accepted":
            groups.setdefault((o.kind, o.stage, o.error, o.where), []).append(i)
    order = {"crash": 0, "typed": 1}
    for (kind, stage, error, where), idx in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], -len(kv[1]))):
        msg = outcomes[idx[0]].message.replace("|", "/")[:80]
        rows.append((kind, stage, error, where, str(len(idx)), str(idx[0]), msg))
    head = (f"{len(outcomes)} cases in {seconds:.0f} s: {kinds['accepted']} accepted, {kinds['typed']} typed errors, "
            f"{kinds['crash']} crashes")  # fmt: skip
    return head + "\n\n" + _table(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=multiprocessing.cpu_count())
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a crash")
    ap.add_argument("--zoo-dir", type=Path, default=Path(tempfile.gettempdir()) / "lego2c-fuzz-zoo")
    ap.add_argument("--case", type=int, help="replay one case and print its steps and traceback")
    args = ap.parse_args(argv)

    bases = export_bases(args.zoo_dir)
    if args.case is not None:
        with tempfile.TemporaryDirectory(prefix="lego2c-fuzz-") as tmp:
            out, steps = run_index(bases, Path(tmp), args.seed, args.case, args.timeout)
        print(f"case {args.case}:\n" + "\n".join(f"  {s}" for s in steps))
        print(f"{out.kind} at {out.stage}: {out.error} {out.message}\n{out.traceback}")
        return int(out.kind == "crash")
    t0 = time.perf_counter()
    results = run_cases(bases, args.seed, args.cases, args.jobs, args.timeout)
    print(summary({i: o for i, (o, _) in results.items()}, time.perf_counter() - t0))
    secs, slowest = max((secs, i) for i, (_, secs) in results.items())
    print(f"\nslowest case: {slowest} ({secs:.1f} s); replay one with --seed {args.seed} --case N")
    return int(any(o.kind == "crash" for o, _ in results.values()))


if __name__ == "__main__":
    sys.exit(main())
