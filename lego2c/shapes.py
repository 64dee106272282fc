"""Strict ONNX shape inference, as the frontend's passes (recurrent unrolling, loading) need it."""

from __future__ import annotations

import onnx
from onnx import shape_inference

from .errors import UnsupportedModelError, first_line


def inferred(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every shape onnx can infer, constants propagated; refused where inference fails."""
    try:
        return shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as e:  # onnx raises several unrelated types here
        raise UnsupportedModelError(f"shape inference failed: {first_line(e)}") from None


def static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Every tensor's inferred dims, -1 where a dim is not known."""
    g = inferred(model).graph
    return {vi.name: [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
            for vi in [*g.input, *g.value_info, *g.output]}  # fmt: skip
