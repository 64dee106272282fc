"""Quantised (QDQ) ONNX models, as onnxruntime's quantisation tools and quantisation-aware training export them.

Such a model computes in float with its quantisation marked around the values: a weight is stored
as integers that a DequantizeLinear turns back into floats, and an activation passes through a
QuantizeLinear and a DequantizeLinear, which round it to its grid and clip it to the integer type's
range. lego2c computes in float too and keeps exactly those semantics:
- a QuantizeLinear or DequantizeLinear of constants is evaluated once, by onnx's reference
  implementation, into the constant it stands for: a weight then compresses like any other;
- a QuantizeLinear of an activation that only DequantizeLinears of the same per-tensor scale and
  zero point read becomes one IR node (`ir.FAKE_QUANTIZE`), which the C kernel computes as
  `clip(rint(x / scale), qmin - zp, qmax - zp) * scale`: the same value as onnxruntime's pair.
Anything else (activations quantised per channel, integer inputs or outputs, QLinearConv and other
integer-only ops) stays as it is, and the frontend names it as unsupported.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .constfold import folded, opsets
from .ir import FAKE_QUANTIZE, Graph, Node

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
GRID_TYPES = (np.int8, np.uint8, np.int16, np.uint16)  # integer types an activation's grid may have


def fold_constant_quantization(model: onnx.ModelProto) -> None:
    """Replace every QuantizeLinear and DequantizeLinear whose inputs are all constants by its value, in
    graph order (quantisation-aware training exports a float weight's QuantizeLinear then its DequantizeLinear)."""
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts |= {n.output[0]: numpy_helper.to_array(a.t) for n in g.node if n.op_type == "Constant"
               for a in n.attribute if a.name == "value"}  # fmt: skip
    outputs, model_opsets = {o.name for o in g.output}, opsets(model)
    for node in list(g.node):
        if node.op_type == "Identity" and node.input[0] in consts:  # an exporter's alias of a tied weight
            consts[node.output[0]] = consts[node.input[0]]
        if node.op_type not in QDQ_OPS or node.output[0] in outputs or not all(i in consts for i in node.input if i):
            continue
        value = folded(node, model_opsets, {i: consts[i] for i in node.input if i})[node.output[0]]
        consts[node.output[0]] = value
        g.initializer.append(numpy_helper.from_array(value, node.output[0]))
        g.node.remove(node)


def read_only_by_quantisation(model: onnx.ModelProto) -> set[str]:
    """Initializers that only quantisation nodes read (zero points, integers), or that nothing reads any more (the
    integer weights `fold_constant_quantization` replaced)."""
    readers: dict[str, set[str]] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, set()).add(n.op_type)
    return {i.name for i in model.graph.initializer if readers.get(i.name, set()) <= set(QDQ_OPS)}


def fuse_fake_quantization(g: Graph) -> None:
    """Each activation's QuantizeLinear and the DequantizeLinears after it (of the same grid) become one node."""
    for q in [n for n in g.nodes if n.op == "QuantizeLinear"]:
        grid = _grid(g, q)
        readers = g.consumers(q.outputs[0])
        if (grid is None or g.const(q.inputs[0]) is not None or q.outputs[0] in g.outputs or not readers
                or any(r.op != "DequantizeLinear" or _grid(g, r, grid[2]) != grid for r in readers)):  # fmt: skip
            continue
        kept = next((r for r in readers if r.outputs[0] in g.outputs), readers[0]).outputs[0]
        for r in readers:
            g.nodes.remove(r)
            g.rename_uses(r.outputs[0], kept)
        for gone in {q.outputs[0], *(r.outputs[0] for r in readers)} - {kept}:
            del g.tensors[gone]
        scale, zero_point, elem_type = grid
        q.op, q.inputs, q.outputs = FAKE_QUANTIZE, q.inputs[:1], [kept]
        q.attrs = dict(scale=scale, zero_point=zero_point, elem_type=elem_type)
    g.prune_unused()


def _grid(g: Graph, n: Node, elem_type: int | None = None) -> tuple[float, int, int] | None:
    """(scale, zero point, ONNX integer type) of a per-tensor QuantizeLinear, or of a DequantizeLinear reading a
    value of `elem_type`; None for anything else (per-channel scales, computed scales, float8 and int4 grids)."""
    scale = g.const(n.inputs[1]) if len(n.inputs) > 1 else None
    zp = g.const(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
    if scale is None or scale.size != 1 or scale.dtype != np.float32 or (len(n.inputs) > 2 and n.inputs[2] and zp is None):
        return None
    if zp is not None:
        dtype = zp.dtype
    elif elem_type is not None:
        dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    else:  # QuantizeLinear without a zero point: uint8 unless opset 21's output_dtype says otherwise
        dtype = helper.tensor_dtype_to_np_dtype(int(n.attrs.get("output_dtype", 0)) or onnx.TensorProto.UINT8)
    if dtype not in GRID_TYPES or (zp is not None and zp.size != 1):
        return None
    return float(scale.reshape(-1)[0]), 0 if zp is None else int(zp.reshape(-1)[0]), helper.np_dtype_to_tensor_dtype(dtype)
