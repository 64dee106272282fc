"""One single-node model per op kernel, compiled with the host gcc, against onnxruntime."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from lego2c.build import build_host, compile_model
from lego2c.compress import RECIPES, CompressOptions
from tests.zoo import ZOO

RNG = np.random.default_rng(1234)


def single_node_model(op: str, in_shape: list[int], consts: dict[str, np.ndarray] | None = None,
                      extra_inputs: list[str] | None = None, opset: int = 17, **attrs: object) -> onnx.ModelProto:  # fmt: skip
    """x -> op(x, *consts) -> y, with y's shape left to shape inference."""
    consts = consts or {}
    inputs = ["x"] + (extra_inputs if extra_inputs is not None else list(consts))
    node = helper.make_node(op, inputs, ["y"], name=f"the_{op.lower()}", **attrs)
    graph = helper.make_graph(
        [node], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()],
    )  # fmt: skip
    return finish(graph, opset)


def finish(graph: onnx.GraphProto, opset: int = 17) -> onnx.ModelProto:
    """A model whose output shape comes from onnx's shape inference, as exporters write it."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


# Storage plans every weighted kernel must handle: a generic tile, LegoNet's 4x4 (the blocked
# kernels' fast path), mixed plans (per-layer codebooks, scales, float16, int8 protection), and
# int8 everywhere (codebooks, scales and biases as int8 codes of a power of two).
PLANS = {
    "dense": CompressOptions(enabled=False),
    "tiles2x3": CompressOptions(k=8, tile=(2, 3)),
    "tiles4x4": CompressOptions(k=16, tile=(4, 4)),
    "mixed": CompressOptions(k=16, tile=(1, 2), scope="layer", channel_scales=True, codebook_dtype="f16",
                             side_dtype="f16"),
    "protected_i8": CompressOptions(k=8, protect=("first",), protect_dtype="i8", side_dtype="f16"),
    "scalar16": replace(RECIPES["safe"], protect=()),  # safe's 1x1 K=16 on every layer: the FC kernel's 4-bit path
    "int8_side": CompressOptions(k=16, tile=(2, 2), scope="layer", channel_scales=True, codebook_dtype="i8",
                                 side_dtype="i8", protect=("first",), protect_dtype="i8"),
}
REFERENCE = "-DLEGO_REFERENCE_KERNELS"


def check(model: onnx.ModelProto, tmp_path: Path, plan: str = "dense", cflags: str = "") -> None:
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    c = compile_model(path, PLANS[plan], progress=False)
    run = build_host(c, tmp_path / "out", extra_cflags=cflags)
    assert run.output.rc == 0
    assert run.output.values.size == run.reference.size
    assert run.max_error <= run.allowed, f"max error {run.max_error} > {run.allowed}"


def w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


CONV_CASES = {
    "plain": dict(in_shape=[1, 3, 9, 9], w=(8, 3, 3, 3), attrs=dict()),
    "pads_strides": dict(in_shape=[1, 3, 10, 11], w=(5, 3, 3, 3), attrs=dict(pads=[1, 2, 0, 1], strides=[2, 3])),
    "dilations": dict(in_shape=[1, 2, 12, 12], w=(4, 2, 3, 3), attrs=dict(dilations=[2, 3], pads=[2, 2, 2, 2])),
    "groups": dict(in_shape=[1, 6, 8, 8], w=(9, 2, 3, 3), attrs=dict(group=3, pads=[1, 1, 1, 1])),
    "depthwise": dict(in_shape=[1, 8, 10, 10], w=(8, 1, 3, 3), attrs=dict(group=8, strides=[2, 2], pads=[1, 1, 1, 1])),
    "auto_pad_same_upper": dict(in_shape=[1, 3, 7, 8], w=(4, 3, 4, 3), attrs=dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    "auto_pad_same_lower": dict(in_shape=[1, 3, 7, 8], w=(4, 3, 4, 3), attrs=dict(auto_pad="SAME_LOWER")),
    "auto_pad_valid": dict(in_shape=[1, 3, 7, 8], w=(4, 3, 2, 2), attrs=dict(auto_pad="VALID")),
    "kernel_10x4": dict(in_shape=[1, 1, 49, 10], w=(6, 1, 10, 4), attrs=dict(strides=[2, 2], pads=[5, 1, 4, 2])),
    "pointwise": dict(in_shape=[1, 16, 5, 5], w=(12, 16, 1, 1), attrs=dict()),
    "conv1d": dict(in_shape=[1, 4, 20], w=(6, 4, 5), attrs=dict(pads=[2, 2], strides=[2])),
}


@pytest.mark.parametrize("plan, cflags", [(p, "") for p in sorted(PLANS)] + [("dense", REFERENCE), ("tiles4x4", REFERENCE)])
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv(case: str, plan: str, cflags: str, tmp_path: Path) -> None:
    c = CONV_CASES[case]
    consts = {"W": w(*c["w"]), "B": w(c["w"][0])}
    check(single_node_model("Conv", c["in_shape"], consts, **c["attrs"]), tmp_path, plan, cflags)


# Weight shapes are ONNX's (in, out/groups, *kernel).
CONV_TRANSPOSE_CASES = {
    "dcgan_k4s2p1": dict(in_shape=[1, 4, 5, 6], w=(4, 3, 4, 4), attrs=dict(strides=[2, 2], pads=[1, 1, 1, 1])),
    "output_padding": dict(in_shape=[1, 3, 5, 5], w=(3, 5, 3, 3),
                           attrs=dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])),
    "asymmetric_dilated": dict(in_shape=[1, 2, 6, 7], w=(2, 4, 3, 2),
                               attrs=dict(strides=[3, 2], dilations=[2, 1], pads=[0, 1, 2, 0])),
    "groups": dict(in_shape=[1, 6, 4, 4], w=(6, 2, 3, 3), attrs=dict(group=3, strides=[2, 2])),
    "depthwise": dict(in_shape=[1, 4, 5, 5], w=(4, 1, 3, 3),
                      attrs=dict(group=4, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])),
    "same_upper": dict(in_shape=[1, 3, 5, 6], w=(3, 2, 3, 3), attrs=dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    "same_lower": dict(in_shape=[1, 3, 5, 6], w=(3, 2, 3, 3), attrs=dict(strides=[2, 2], auto_pad="SAME_LOWER")),
    "output_shape": dict(in_shape=[1, 3, 4, 4], w=(3, 2, 3, 3), attrs=dict(strides=[2, 2], output_shape=[9, 8])),
    "stride1": dict(in_shape=[1, 8, 6, 6], w=(8, 8, 3, 3), attrs=dict(pads=[1, 1, 1, 1])),
    "one_d": dict(in_shape=[1, 4, 9], w=(4, 6, 5), attrs=dict(strides=[3], pads=[1, 2])),
}


def conv_transpose_model(case: str, bias: bool = True) -> onnx.ModelProto:
    c = CONV_TRANSPOSE_CASES[case]
    groups = int(c["attrs"].get("group", 1))
    consts = {"W": w(*c["w"])} | ({"B": w(c["w"][1] * groups)} if bias else {})
    return single_node_model("ConvTranspose", c["in_shape"], consts, **c["attrs"])


@pytest.mark.parametrize("plan", sorted(PLANS))
@pytest.mark.parametrize("case", sorted(CONV_TRANSPOSE_CASES))
def test_conv_transpose(case: str, plan: str, tmp_path: Path) -> None:
    check(conv_transpose_model(case, bias=case != "stride1"), tmp_path, plan)


@pytest.mark.parametrize("plan", sorted(PLANS))
@pytest.mark.parametrize(
    "trans_a, trans_b, alpha, beta, bias_shape",
    [(0, 0, 1.0, 1.0, (7,)), (0, 1, 0.5, 2.0, (1, 7)), (1, 1, 1.5, 1.0, (7,)), (0, 0, 1.0, 1.0, None)],
)
def test_gemm(trans_a: int, trans_b: int, alpha: float, beta: float, bias_shape: tuple[int, ...] | None,
              plan: str, tmp_path: Path) -> None:  # fmt: skip
    k, n = 13, 7
    consts = {"B": w(n, k) if trans_b else w(k, n)}
    if bias_shape:
        consts["C"] = w(*bias_shape)
    in_shape = [k, 1] if trans_a else [1, k]
    model = single_node_model("Gemm", in_shape, consts, transA=trans_a, transB=trans_b, alpha=alpha, beta=beta)
    check(model, tmp_path, plan)


@pytest.mark.parametrize("plan, cflags", [(p, "") for p in sorted(PLANS)] + [("tiles4x4", REFERENCE)])
@pytest.mark.parametrize("in_shape, k, n", [([1, 10], 10, 6), ([1, 3, 10], 10, 6), ([2, 3, 12], 12, 8)])
def test_matmul_const_weight(in_shape: list[int], k: int, n: int, plan: str, cflags: str, tmp_path: Path) -> None:
    """(1, 12) x (12, 8) hits the blocked 4x4 FC kernel; the others its fallback."""
    check(single_node_model("MatMul", in_shape, {"W": w(k, n)}), tmp_path, plan, cflags)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("other_shape", [[1, 4, 5, 6], [4, 1, 1], [6], [1], [1, 4, 1, 6]])
def test_binary_broadcast(op: str, other_shape: list[int], tmp_path: Path) -> None:
    other = w(*other_shape)
    if op == "Div":
        other = np.where(np.abs(other) < 0.2, 0.5, other).astype(np.float32)
    check(single_node_model(op, [1, 4, 5, 6], {"other": other}), tmp_path)


def test_binary_two_activations(tmp_path: Path) -> None:
    """Both operands computed at run time (x * sigmoid(x)), with broadcast of the second."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=1),
        helper.make_node("Sigmoid", ["m"], ["s"]),
        helper.make_node("Mul", ["x", "s"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])  # fmt: skip
    check(finish(graph), tmp_path)


UNARY_CASES: dict[str, tuple[dict[str, object], dict[str, np.ndarray]]] = {
    "Relu": ({}, {}),
    "Sigmoid": ({}, {}),
    "Tanh": ({}, {}),
    "LeakyRelu": ({"alpha": 0.2}, {}),
    "HardSigmoid": ({"alpha": 0.3, "beta": 0.4}, {}),
    "HardSwish": ({}, {}),
    "Clip": ({}, {"min": np.array(-0.5, np.float32), "max": np.array(0.7, np.float32)}),
    "Exp": ({}, {}),
    "Neg": ({}, {}),
    "Abs": ({}, {}),
    "Erf": ({}, {}),
    "Elu": ({"alpha": 0.7}, {}),
    "Selu": ({}, {}),
    "Softplus": ({}, {}),
    "Softsign": ({}, {}),
}


@pytest.mark.parametrize("op", sorted(UNARY_CASES))
def test_unary(op: str, tmp_path: Path) -> None:
    attrs, consts = UNARY_CASES[op]
    check(single_node_model(op, [1, 3, 5, 7], consts, **attrs), tmp_path)


def test_clip_opset6_attributes(tmp_path: Path) -> None:
    check(single_node_model("Clip", [1, 3, 5, 7], opset=9, min=0.0, max=6.0), tmp_path)


def after_exp(op: str, consts: dict[str, np.ndarray] | None = None, **attrs: object) -> onnx.ModelProto:
    """x -> Exp -> op: positive inputs, for ops defined on them alone."""
    model = single_node_model(op, [1, 3, 5, 7], consts, **attrs)
    g = model.graph
    g.node.insert(0, helper.make_node("Exp", ["x"], ["e"]))
    g.node[1].input[0] = "e"
    return model


def split_model(axis: int, sizes: list[int]) -> onnx.ModelProto:
    """x -> Split into len(sizes) -> the last and first outputs concatenated (the middle ones unused)."""
    outs = [f"s{k}" for k in range(len(sizes))]
    nodes = [helper.make_node("Split", ["x", "sizes"], outs, axis=axis),
             helper.make_node("Concat", [outs[-1], outs[0]], ["y"], axis=axis)]  # fmt: skip
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.array(sizes, np.int64), "sizes")])  # fmt: skip
    return finish(graph)


def self_matmul(shared_right: bool) -> onnx.ModelProto:
    """x (1, 4, 6, 8) @ x transposed (attention scores), or @ the heads' mean transposed (one right matrix)."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1)] if shared_right else []
    nodes += [helper.make_node("Transpose", ["m" if shared_right else "x"], ["t"], perm=[0, 1, 3, 2]),
              helper.make_node("MatMul", ["x", "t"], ["y"])]  # fmt: skip
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])  # fmt: skip
    return finish(graph)


# Models that both the C kernels and the torch executor below are checked on.
TILE_CASES = {  # Keras's UpSampling2D through tf2onnx, then repeats of axes longer than 1 (split in two)
    "tile_upsampling": single_node_model("Tile", [1, 4, 3, 1, 5], {"repeats": np.array([1, 1, 1, 2, 1], np.int64)}),
    "tile_two_axes": single_node_model("Tile", [1, 3, 4, 5], {"repeats": np.array([1, 2, 3, 1], np.int64)}),
    "tile_channels": single_node_model("Tile", [1, 2, 3], {"repeats": np.array([1, 3, 2], np.int64)}),
}

OTHER_CASES = {
    **TILE_CASES,
    "clip_min_only": single_node_model("Clip", [1, 2, 3, 3], {"min": np.array(0.1, np.float32)}),
    "prelu": single_node_model("PRelu", [1, 4, 5, 5], {"slope": w(4, 1, 1)}),
    "pad": single_node_model("Pad", [1, 2, 4, 5], {"pads": np.array([0, 1, 2, 0, 0, 2, 1, 3], np.int64),
                                                   "value": np.array(0.5, np.float32)}),
    "transpose_nhwc_in": single_node_model("Transpose", [1, 5, 6, 3], perm=[0, 3, 1, 2]),
    "transpose_5d": single_node_model("Transpose", [1, 2, 3, 4, 5], perm=[0, 2, 1, 4, 3]),
    "transpose_3d": single_node_model("Transpose", [1, 4, 7], perm=[0, 2, 1]),
    "log": after_exp("Log"),
    "sqrt": after_exp("Sqrt"),
    "reciprocal": after_exp("Reciprocal"),
    "pow": after_exp("Pow", {"p": np.array([0.5, 2, 3], np.float32).reshape(3, 1, 1)}),
    "max": single_node_model("Max", [1, 4, 5, 6], {"other": w(4, 1, 1)}),
    "min": single_node_model("Min", [1, 4, 5, 6], {"other": w(6)}),
    "mish": single_node_model("Mish", [1, 3, 5, 7], opset=18),
    "gelu": single_node_model("Gelu", [1, 3, 5, 7], opset=20),
    "gelu_tanh": single_node_model("Gelu", [1, 3, 5, 7], opset=20, approximate="tanh"),
    "slice_steps": single_node_model("Slice", [1, 4, 7, 6], {"starts": np.array([1, -1, 0]), "ends": np.array([4, -8, 99]),
                                                             "axes": np.array([1, 2, -1]), "steps": np.array([1, -2, 2])}),
    "matmul_activations": self_matmul(False),
    "matmul_one_right_matrix": self_matmul(True),
    "gather_scalar": single_node_model("Gather", [1, 3, 4, 5], {"i": np.array(-2, np.int64)}, axis=2),
    "gather_evenly_spaced": single_node_model("Gather", [1, 6, 5], {"i": np.array([4, 2, 0], np.int64)}, axis=1),
    "gather_class_token": single_node_model("Gather", [1, 7, 8], {"i": np.array(0, np.int64)}, axis=1),
    "expand_as": single_node_model("Expand", [1, 4, 1, 1], {"shape": np.array([1, 4, 3, 5], np.int64)}),
    "expand_rows": single_node_model("Expand", [1, 1, 6], {"shape": np.array([1, 3, 6], np.int64)}),
    "split_channels": split_model(1, [1, 2, 3]),
    "split_last_axis": split_model(3, [2, 3]),
    **{f"resize_{k}": single_node_model("Resize", shape, {"scales": np.array(scales, np.float32)} if scales else
                                        {"sizes": np.array(sizes, np.int64)}, ["", "", "sizes"] if sizes else ["", "scales"],
                                        **attrs)
       for k, (shape, scales, sizes, attrs) in {
           "nearest_floor_x2": ([1, 3, 5, 7], [1, 1, 2, 2], None, dict(coordinate_transformation_mode="asymmetric",
                                                                       nearest_mode="floor")),
           "nearest_default_fractional": ([1, 3, 5, 7], [1, 1, 1.5, 2.5], None, {}),
           "nearest_ceil_down": ([1, 2, 9, 8], None, [1, 2, 4, 3], dict(nearest_mode="ceil")),
           "nearest_prefer_ceil": ([1, 2, 4, 6], [1, 1, 2, 1.5], None, dict(nearest_mode="round_prefer_ceil")),
           "nearest_tf_half_pixel": ([1, 2, 4, 6], [1, 1, 3, 2], None,
                                     dict(coordinate_transformation_mode="tf_half_pixel_for_nn")),
           "linear_half_pixel": ([1, 3, 5, 7], None, [1, 3, 9, 4], dict(mode="linear")),
           "linear_align_corners": ([1, 3, 5, 7], [1, 1, 2, 2], None,
                                    dict(mode="linear", coordinate_transformation_mode="align_corners")),
           "linear_pytorch_half_pixel": ([1, 3, 5, 7], [1, 1, 2, 3], None,
                                         dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel")),
           "linear_1d": ([1, 3, 7], None, [1, 3, 12], dict(mode="linear")),
       }.items()},
    "layernorm_channels_last": single_node_model("LayerNormalization", [1, 4, 5, 6], {"scale": w(6), "bias": w(6)},
                                                 epsilon=1e-3),
    "layernorm_two_axes": single_node_model("LayerNormalization", [1, 4, 5, 6], {"scale": w(5, 6), "bias": w(5, 6)},
                                            axis=-2),
    "resize_opset10": single_node_model("Resize", [1, 2, 3, 4], {"scales": np.array([1, 1, 2, 2], np.float32)}, opset=10),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(OTHER_CASES))
def test_other_single_node(case: str, tmp_path: Path) -> None:
    check(OTHER_CASES[case], tmp_path)


POOL_CASES = {
    "max_2x2": ("MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2])),
    "max_3x3_pad": ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    "max_ceil_dil": ("MaxPool", dict(kernel_shape=[2, 3], strides=[2, 2], dilations=[1, 2], ceil_mode=1)),
    "avg_3x3": ("AveragePool", dict(kernel_shape=[3, 3], strides=[1, 1])),
    "avg_pad_exclude": ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    "avg_pad_include": ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
    "avg_ceil": ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
}


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_pool(case: str, tmp_path: Path) -> None:
    op, attrs = POOL_CASES[case]
    check(single_node_model(op, [1, 3, 11, 10], **attrs), tmp_path)


MORE_POOLS = {
    "avg_dilated_ceil": single_node_model("AveragePool", [1, 3, 11, 10], opset=19, kernel_shape=[2, 3],
                                          strides=[2, 1], dilations=[2, 2], pads=[1, 0, 0, 2], ceil_mode=1),
    "max_1d_ceil": single_node_model("MaxPool", [1, 3, 11], kernel_shape=[3], strides=[2], pads=[1, 1], ceil_mode=1),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MORE_POOLS))
def test_pool_dilated_or_1d(case: str, tmp_path: Path) -> None:
    check(MORE_POOLS[case], tmp_path)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(op: str, tmp_path: Path) -> None:
    check(single_node_model(op, [1, 5, 6, 7]), tmp_path)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceMax"])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_spatial(op: str, keepdims: int, tmp_path: Path) -> None:
    check(single_node_model(op, [1, 5, 6, 7], axes=[2, 3], keepdims=keepdims), tmp_path)


def test_reduce_mean_axes_input_opset18(tmp_path: Path) -> None:
    model = single_node_model("ReduceMean", [1, 5, 6, 7], {"axes": np.array([-2, -1], np.int64)}, opset=18)
    check(model, tmp_path)


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_softmax(axis: int, tmp_path: Path) -> None:
    check(single_node_model("Softmax", [1, 4, 6], axis=axis), tmp_path)


def test_softmax_opset11_coerces_2d(tmp_path: Path) -> None:
    check(single_node_model("Softmax", [1, 4, 6], opset=11, axis=1), tmp_path)


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_concat(axis: int, tmp_path: Path) -> None:
    shape = [1, 3, 4, 5]
    other_shape = list(shape)
    other_shape[axis] = 2
    check(single_node_model("Concat", shape, {"other": w(*other_shape)}, axis=axis), tmp_path)


class TimmAttention(torch.nn.Module):
    """Self-attention as timm writes it: one qkv Linear, reshaped and permuted so that q, k and v lead (the batch
    axis moves to second place), then picked apart by index."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads, self.qkv, self.proj = heads, torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


def test_timm_attention_compiles_and_only_calibration_declines_it(tmp_path: Path) -> None:
    """The permute that moves the batch axis and the Gathers that pick q, k and v run in C (at batch 1, as the
    board runs it) and match onnxruntime, dense and clustered. Calibration, which runs inputs as one batch along
    that axis, says it cannot, and the command stops cleanly."""
    import subprocess
    import sys
    import warnings

    from lego2c.errors import UsageError
    from lego2c.frontend import load_model
    from lego2c.torchexec import Executor

    torch.manual_seed(0)
    path = tmp_path / "attn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TimmAttention().eval(), (torch.randn(1, 5, 16),), str(path), dynamo=False, opset_version=17)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Transpose", "Gather", "MatMul", "Softmax"} <= ops
    for plan in ("dense", "tiles2x3"):
        (tmp_path / plan).mkdir()
        check(onnx.load(str(path)), tmp_path / plan, plan)
    with pytest.raises(UsageError, match="Transpose .* moves or cuts the leading axis"):
        Executor(load_model(path))
    np.savez(tmp_path / "calib.npz", x=RNG.standard_normal((8, 5, 16)).astype(np.float32))
    proc = subprocess.run([sys.executable, "-m", "lego2c", "compress", str(path), "--calib", str(tmp_path / "calib.npz"),
                           "-o", str(tmp_path / "out.onnx")], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "leading axis" in proc.stderr, proc.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_pad_opset2_attribute(tmp_path: Path) -> None:
    check(single_node_model("Pad", [1, 2, 4, 5], opset=10, pads=[0, 0, 1, 1, 0, 0, 2, 0], value=-1.0), tmp_path)


@pytest.mark.parametrize(
    "op, consts, attrs",
    [
        ("Flatten", {}, {"axis": 1}),
        ("Reshape", {"shape": np.array([1, -1, 5], np.int64)}, {}),
        ("Unsqueeze", {"axes": np.array([0], np.int64)}, {}),
        ("Squeeze", {"axes": np.array([0], np.int64)}, {}),
    ],
)
def test_views(op: str, consts: dict[str, np.ndarray], attrs: dict[str, object], tmp_path: Path) -> None:
    """View ops are free, so follow each with Relu to make the output a computed tensor."""
    model = single_node_model(op, [1, 3, 4, 5], consts, **attrs)
    graph = model.graph
    graph.node.append(helper.make_node("Relu", ["y"], ["z"], name="after"))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    check(finish(graph), tmp_path)


@pytest.mark.parametrize("plan", ["dense", "tiles4x4", "mixed"])
@pytest.mark.parametrize("conv_first", [True, False])
def test_conv_with_residual_add_is_fused(plan: str, conv_first: bool, tmp_path: Path) -> None:
    """x -> Relu -> Conv -> Add(., relu): the conv accumulates onto the residual, in place."""
    add_inputs = ["c", "r"] if conv_first else ["r", "c"]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Conv", ["r", "W", "B"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Add", add_inputs, ["y"]),
    ]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(w(8, 8, 3, 3), "W"),
                                           numpy_helper.from_array(w(8), "B")])  # fmt: skip
    check(finish(graph), tmp_path, plan)
    model_c = (tmp_path / "out" / "src" / "model.c").read_text()
    assert "Conv+Add conv" in model_c and "lego_binary_f32(" not in model_c


TORCH_CASES = {
    **TILE_CASES,
    **{f"conv_{k}": single_node_model("Conv", c["in_shape"], {"W": w(*c["w"]), "B": w(c["w"][0])}, **c["attrs"])
       for k, c in CONV_CASES.items()},
    **{f"conv_transpose_{k}": conv_transpose_model(k) for k in CONV_TRANSPOSE_CASES},
    **{f"unary_{op}": single_node_model(op, [1, 3, 5, 7], consts, **attrs) for op, (attrs, consts) in UNARY_CASES.items()},
    **{f"pool_{k}": single_node_model(op, [1, 3, 11, 10], **attrs) for k, (op, attrs) in POOL_CASES.items()},
    **{f"pool_{k}": model for k, model in MORE_POOLS.items()},
    **OTHER_CASES,
    "gemm": single_node_model("Gemm", [1, 13], {"B": w(7, 13), "C": w(7)}, transB=1, alpha=0.5, beta=2.0),
    "matmul": single_node_model("MatMul", [2, 3, 12], {"W": w(12, 8)}),
    "div_broadcast": single_node_model("Div", [1, 4, 5, 6], {"other": np.linspace(0.5, 2, 6, dtype=np.float32)}),
    "global_max": single_node_model("GlobalMaxPool", [1, 5, 6, 7]),
    "reduce_mean": single_node_model("ReduceMean", [1, 5, 6, 7], axes=[2, 3], keepdims=0),
    "concat": single_node_model("Concat", [1, 3, 4, 5], {"other": w(1, 2, 4, 5)}, axis=1),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_torch_executor_against_onnxruntime(case: str, tmp_path: Path) -> None:
    """Calibration's torch executor (lego2c/torchexec.py) computes each op as onnxruntime does."""
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from lego2c.frontend import load_model
    from lego2c.torchexec import Executor

    path = tmp_path / "m.onnx"
    onnx.save(TORCH_CASES[case], str(path))
    g = load_model(path)
    x = RNG.standard_normal(g.shape(g.inputs[0])).astype(np.float32) * 2
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        got = Executor(g)(torch.from_numpy(x)).numpy()
    assert got.shape == (1, want.size)  # one row per input (the graph's own leading dim is part of it)
    want = want.reshape(got.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("name", sorted(ZOO))
def test_torch_executor_on_every_zoo_model(name: str, zoo: dict[str, Path]) -> None:
    """A batch of 3 through the executor, against what calibration compares it with: onnxruntime's batched
    logits (evaluate.model_outputs)."""
    torch = pytest.importorskip("torch")

    from lego2c.evaluate import model_outputs
    from lego2c.frontend import load_model
    from lego2c.torchexec import Executor

    g = load_model(zoo[name])
    x = np.random.default_rng(0).standard_normal((3, *ZOO[name].input_shape[1:])).astype(np.float32)
    want = model_outputs(g, None, x)
    with torch.no_grad():
        got = Executor(g)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("case", [f"conv_{k}" for k, c in CONV_CASES.items() if "group" not in c["attrs"]]
                         + [f"conv_transpose_{k}" for k, c in CONV_TRANSPOSE_CASES.items() if "group" not in c["attrs"]])
def test_columns_times_the_weight_matrix_is_the_layer(case: str, tmp_path: Path) -> None:
    """The input columns the Hessian-weighted reassignment measures (`torchexec.columns`), times the clustered
    matrix (`compress.weight_matrix`), give the layer's output: for a ConvTranspose, through the Conv it equals."""
    torch = pytest.importorskip("torch")

    from lego2c.compress import weight_matrix
    from lego2c.frontend import load_model
    from lego2c.torchexec import Executor, columns

    onnx.save(TORCH_CASES[case], str(tmp_path / "m.onnx"))
    g = load_model(tmp_path / "m.onnx")
    node, ex = g.nodes[0], Executor(g)
    x = torch.from_numpy(RNG.standard_normal((2, *g.shape(g.inputs[0])[1:])).astype(np.float32))
    with torch.no_grad():
        want = ex(x).reshape(2, g.shape(node.outputs[0])[1], -1) - torch.from_numpy(g.const(node.inputs[2]))[:, None]
        got = columns(ex, node, x) @ torch.from_numpy(weight_matrix(node, g)).T
    np.testing.assert_allclose(got.numpy(), want.transpose(1, 2).reshape(got.shape).numpy(), rtol=1e-4, atol=1e-4)


class SqueezeExcite(torch.nn.Module):
    """The squeeze-excitation of older PyTorch code: the channel gates are expanded to the map before the Mul."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, c, 3, padding=1), torch.nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        gate = torch.sigmoid(self.fc(y.mean((2, 3)))).view(y.shape[0], y.shape[1], 1, 1)
        return y * gate.expand_as(y)


def test_squeeze_excite_with_expand_as(tmp_path: Path) -> None:
    """torch exports `expand_as` on an activation as Expand: the C matches onnxruntime dense and clustered, and
    the calibration executor runs it on a batch."""
    import warnings

    from lego2c.evaluate import model_outputs
    from lego2c.frontend import load_model
    from lego2c.torchexec import Executor

    torch.manual_seed(0)
    path = tmp_path / "se.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(SqueezeExcite().eval(), (torch.randn(1, 3, 6, 6),), str(path), dynamo=False, opset_version=17)
    assert "Expand" in {n.op_type for n in onnx.load(str(path)).graph.node}
    for plan in ("dense", "tiles2x3"):
        (tmp_path / plan).mkdir()
        check(onnx.load(str(path)), tmp_path / plan, plan)
    g = load_model(path)
    x = RNG.standard_normal((3, 3, 6, 6)).astype(np.float32)
    with torch.no_grad():
        got = Executor(g)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, model_outputs(g, None, x), rtol=1e-5, atol=1e-5)
