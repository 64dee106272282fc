"""The small typed IR every later stage works on.

It keeps ONNX's op names and attribute semantics (so it can be written back to ONNX for
onnxruntime to check us), but every shape is static and known, every constant is a numpy
array, and only ops that lego2c can lower remain. Two extensions, which `Graph.to_onnx` writes
back as the ONNX nodes they stand for: a MatMul may carry a bias as a third input (MatMul + Add),
and FAKE_QUANTIZE is an activation's QuantizeLinear + DequantizeLinear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

# An activation's QuantizeLinear and the DequantizeLinear after it, as one node (lego2c.quantized): its value is
# a float. Attributes: scale, zero_point and elem_type (the integer type, as an ONNX TensorProto code).
FAKE_QUANTIZE = "QuantizeDequantize"


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    data: np.ndarray | None = None  # set for constants (initializers)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def is_const(self) -> bool:
        return self.data is not None


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    tensors: dict[str, Tensor]
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    opset: int
    metadata: dict[str, str] = field(default_factory=dict)
    # Per-channel (mean, std) of tensors a BatchNorm produced: its shift and |scale|, which folding
    # would otherwise lose. Data-free bias correction estimates the layers' mean inputs from them.
    bn_stats: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    chosen_output: str | None = None  # `--output-name`: the file's own outputs are not what is computed
    dropped_inputs: tuple[str, ...] = ()  # the file's inputs that nothing reads, which the IR does not have

    def const(self, name: str) -> np.ndarray | None:
        t = self.tensors.get(name)
        return None if t is None else t.data

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def producer(self, name: str) -> Node | None:
        for n in self.nodes:
            if name in n.outputs:
                return n
        return None

    def rename_uses(self, old: str, new: str) -> None:
        """Every node that reads `old`, and the graph's outputs, name `new` instead."""
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def prune_unused(self) -> None:
        """Drop constants that no node reads any more (after folding)."""
        used = {i for n in self.nodes for i in n.inputs} | set(self.outputs) | set(self.inputs)
        self.tensors = {k: v for k, v in self.tensors.items() if k in used or not v.is_const}

    def to_onnx(self, weights: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
        """Write the IR back as an ONNX model, optionally with some constants replaced.

        `lego2c compress` uses this to emit `model.lego.onnx`: the same graph the C code
        runs, with each compressed weight replaced by its decoded tiles.
        """
        weights = weights or {}

        def info(name: str) -> onnx.ValueInfoProto:
            return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(self.shape(name)))

        inits = [
            numpy_helper.from_array(np.asarray(weights.get(t.name, t.data)), t.name)
            for t in self.tensors.values()
            if t.is_const
        ]
        nodes = []
        for n in self.nodes:
            if n.op == FAKE_QUANTIZE:
                grid = [numpy_helper.from_array(np.array(n.attrs["scale"], np.float32), f"{n.name}.scale"),
                        numpy_helper.from_array(np.array(n.attrs["zero_point"], helper.tensor_dtype_to_np_dtype(
                            n.attrs["elem_type"])), f"{n.name}.zero_point")]  # fmt: skip
                inits += grid
                quantized = f"{n.outputs[0]}.quantized"
                nodes += [helper.make_node("QuantizeLinear", [n.inputs[0], *(t.name for t in grid)], [quantized], name=n.name),
                          helper.make_node("DequantizeLinear", [quantized, *(t.name for t in grid)], n.outputs,
                                           name=f"{n.name}.dequantize")]  # fmt: skip
            elif n.op == "MatMul" and len(n.inputs) > 2:  # with its bias (frontend._fuse_matmul_bias)
                product = f"{n.outputs[0]}.product"
                nodes += [helper.make_node("MatMul", n.inputs[:2], [product], name=n.name),
                          helper.make_node("Add", [product, n.inputs[2]], n.outputs, name=f"{n.name}.bias")]  # fmt: skip
            else:
                nodes.append(helper.make_node(n.op, n.inputs, n.outputs, name=n.name, **n.attrs))
        produced = {o for n in self.nodes for o in n.outputs}
        value_info = [info(t) for t in sorted(produced) if t not in self.outputs]
        graph = helper.make_graph(
            nodes,
            "lego2c",
            [info(i) for i in self.inputs],
            [info(o) for o in self.outputs],
            initializer=inits,
            value_info=value_info,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="lego2c"
        )
        model.ir_version = min(model.ir_version, 8)
        helper.set_model_props(model, self.metadata)
        return model
