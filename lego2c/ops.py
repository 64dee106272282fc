"""The op table: how each supported ONNX op maps to one C runtime kernel.

One entry per op. An entry reads the node's attributes and the static shapes and returns a
`KernelCall`: the C function, its parameter struct, and the tensors it reads and writes.
Adding an op means one entry here, one kernel in `runtime/` and one test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from onnx import helper

from .ir import FAKE_QUANTIZE, Graph, Node

MAX_DIMS = 6  # must match LEGO_MAX_DIMS in runtime/lego_runtime.h
MAX_CONCAT = 8  # inputs per Concat kernel call: LEGO_MAX_CONCAT (the frontend splits wider ones)
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # a constant input 1 is a weight, to cluster
CONV_OPS = ("Conv", "ConvTranspose")  # output channels on axis 1


def weight_readers(g: Graph) -> list[Node]:
    """Every node that computes with a constant weight."""
    return [n for n in g.nodes if n.op in WEIGHTED_OPS and len(n.inputs) > 1 and g.const(n.inputs[1]) is not None]


class Unsupported(Exception):
    """Raised by a lowering entry: this node cannot be compiled, and why."""


@dataclass
class KernelCall:
    func: str  # C kernel, e.g. "lego_conv2d_f32"; "" for pure views (Reshape & co)
    params_type: str  # C parameter struct type
    params: dict[str, int | float | list[int]]
    inputs: list[str]  # activations and constants read, in argument order
    outputs: list[str]
    weight: str | None = None  # the clusterable weight (Conv/Gemm/MatMul); its bias travels with it
    macs: int = 0
    view: bool = False  # output is input 0 reinterpreted: no code, no copy
    inplace: bool = False  # output may reuse the buffer of input `inplace_index` (same size, read in step)
    inplace_index: int = 0
    fused: str = ""  # ops folded into this call, for the generated comment


def _ints(v: object, n: int, default: int) -> list[int]:
    return [int(x) for x in v] if v is not None else [default] * n  # type: ignore[union-attr]


def _spatial(g: Graph, name: str) -> tuple[int, int, int]:
    """(C, H, W) of an NCHW or NCW activation with batch 1; 1-D ops get H = 1."""
    s = g.shape(name)
    if len(s) == 4 and s[0] == 1:
        return s[1], s[2], s[3]
    if len(s) == 3 and s[0] == 1:
        return s[1], 1, s[2]
    raise Unsupported(f"expects a batch-1 NCHW or NCW tensor, got shape {list(s)}")


def _text(node: Node, key: str, default: str) -> str:
    """A string attribute (the frontend decodes them), as text whatever a broken file put there."""
    return str(node.attrs.get(key, default))


def overhang(out: int, stride: int, kernel: int, dil: int, size: int) -> int:
    """How far `out` windows reach past `size` input elements (0 if they fit): the padding they need."""
    return max((out - 1) * stride + (kernel - 1) * dil + 1 - size, 0)


def _pads_2d(node: Node, g: Graph, kernel: list[int], strides: list[int], dil: list[int]) -> list[int]:
    """[top, left, bottom, right] for 1-D or 2-D, resolving auto_pad from the shapes."""
    nsp = len(kernel)
    auto = _text(node, "auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        ins = g.shape(node.inputs[0])[2:]
        outs = g.shape(node.outputs[0])[2:]
        begin, end = [], []
        for i in range(nsp):
            total = overhang(outs[i], strides[i], kernel[i], dil[i], ins[i])
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            begin.append(lo)
            end.append(total - lo)
        pads = begin + end
    elif auto == "VALID":
        pads = [0] * (2 * nsp)
    else:
        pads = _ints(node.attrs.get("pads"), 2 * nsp, 0)
    if nsp == 1:
        return [0, pads[0], 0, pads[1]]
    return [pads[0], pads[1], pads[2], pads[3]]


def _window(node: Node, g: Graph, kernel: list[int]) -> dict[str, int]:
    nsp = len(kernel)
    strides = _ints(node.attrs.get("strides"), nsp, 1)
    dil = _ints(node.attrs.get("dilations"), nsp, 1)
    top, left, bottom, right = _pads_2d(node, g, kernel, strides, dil)
    if nsp == 1:
        kernel, strides, dil = [1] + kernel, [1] + strides, [1] + dil
    return dict(
        k_h=kernel[0], k_w=kernel[1], stride_h=strides[0], stride_w=strides[1],
        dil_h=dil[0], dil_w=dil[1], pad_top=top, pad_left=left, pad_bottom=bottom, pad_right=right,
    )  # fmt: skip


def _conv_shapes(node: Node, g: Graph) -> tuple[np.ndarray, tuple[int, int, int], tuple[int, int, int], int]:
    """A (transposed) convolution's weight, (C, H, W) in and out, and groups."""
    w = g.const(node.inputs[1])
    if w is None:
        raise Unsupported("the weight must be a constant")
    if w.ndim not in (3, 4):
        raise Unsupported(f"only 1-D and 2-D convolutions are supported (weight rank {w.ndim})")
    return w, _spatial(g, node.inputs[0]), _spatial(g, node.outputs[0]), int(node.attrs.get("group", 1))


def lower_conv(node: Node, g: Graph) -> KernelCall:
    w, (c, h, wd), (oc, oh, ow), groups = _conv_shapes(node, g)
    if groups <= 0 or c % groups or oc % groups:
        raise Unsupported(f"group={groups} does not divide {c} input and {oc} output channels")
    p = dict(in_c=c, in_h=h, in_w=wd, out_c=oc, out_h=oh, out_w=ow, groups=groups)
    p |= _window(node, g, list(w.shape[2:]))
    macs = oc * oh * ow * int(np.prod(w.shape[1:]))
    return KernelCall("lego_conv2d_f32", "lego_conv2d_params_t", p, [node.inputs[0]], node.outputs,
                      weight=node.inputs[1], macs=macs)  # fmt: skip


def lower_conv_transpose(node: Node, g: Graph) -> KernelCall:
    """ConvTranspose, 1-D or 2-D. Its ONNX weight (in, out/groups, kh, kw) is clustered in a Conv's
    orientation (`compress.weight_matrix`), which the kernel reads."""
    w, (c, h, wd), (oc, oh, ow), groups = _conv_shapes(node, g)
    if groups <= 0 or c % groups or c != w.shape[0] or oc != w.shape[1] * groups:
        raise Unsupported(f"group={groups} does not fit {c} input and {oc} output channels")
    kernel = list(w.shape[2:])
    nsp = len(kernel)
    strides, dil = _ints(node.attrs.get("strides"), nsp, 1), _ints(node.attrs.get("dilations"), nsp, 1)
    adj = _ints(node.attrs.get("output_padding"), nsp, 0)
    auto = _text(node, "auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER") or "output_shape" in node.attrs:
        # As onnxruntime pads: the total the output size leaves, the odd one at the end for SAME_UPPER only.
        ins, outs = g.shape(node.inputs[0])[2:], g.shape(node.outputs[0])[2:]
        totals = [max((ins[i] - 1) * strides[i] + adj[i] + (kernel[i] - 1) * dil[i] + 1 - outs[i], 0) for i in range(nsp)]
        begin = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in totals]
    else:
        begin = [0] * nsp if auto == "VALID" else _ints(node.attrs.get("pads"), 2 * nsp, 0)[:nsp]
    if nsp == 1:
        kernel, strides, dil, begin = [1, *kernel], [1, *strides], [1, *dil], [0, *begin]
    p = dict(in_c=c, in_h=h, in_w=wd, out_c=oc, out_h=oh, out_w=ow, groups=groups, k_h=kernel[0], k_w=kernel[1],
             stride_h=strides[0], stride_w=strides[1], dil_h=dil[0], dil_w=dil[1], pad_top=begin[0],
             pad_left=begin[1])  # fmt: skip
    macs = h * wd * int(np.prod(w.shape))
    return KernelCall("lego_conv_transpose2d_f32", "lego_conv2d_params_t", p, [node.inputs[0]], node.outputs,
                      weight=node.inputs[1], macs=macs)  # fmt: skip


def conv_scratch_floats(p: dict[str, int | float | list[int]]) -> tuple[int, int]:
    """(planes, floats) of zero-padded input planes the blocked conv kernel needs as scratch.

    Mirrors lego_conv_scratch_planes() in runtime/lego_conv.c: (0, 0) when the conv has no
    padding or the blocked kernel does not handle it (the reference kernel needs none).
    """
    i = {k: int(v) for k, v in p.items() if not isinstance(v, list)}
    taps, cin_g, cout_g = i["k_h"] * i["k_w"], i["in_c"] // i["groups"], i["out_c"] // i["groups"]
    if cin_g == 1 and cout_g == 1 and i["k_h"] == 3 and i["k_w"] == 3:
        planes = 1
    elif i["groups"] == 1 and i["out_c"] % 4 == 0:
        planes = (4 - 1 + taps - 1) // taps + 1  # input channels 4 reduction positions can span
    else:
        return 0, 0
    if not (i["pad_top"] or i["pad_left"] or i["pad_bottom"] or i["pad_right"]):
        return 0, 0
    planes = min(planes, i["in_c"])
    hp = i["in_h"] + i["pad_top"] + i["pad_bottom"]
    wp = i["in_w"] + i["pad_left"] + i["pad_right"]
    return planes, planes * hp * wp


def lower_gemm(node: Node, g: Graph) -> KernelCall:
    """Gemm, canonicalised by the frontend to y = x W^T + b with W stored (out, in)."""
    w = g.const(node.inputs[1])
    if w is None:
        raise Unsupported("the weight (B) must be a constant")
    a = g.shape(node.inputs[0])
    if node.attrs.get("transA", 0) and a[1] != 1:
        raise Unsupported("transA=1 is supported only for a single row")
    if not node.attrs.get("transB", 0):
        raise Unsupported("internal: Gemm not canonicalised")  # the frontend guarantees it
    n, k = w.shape
    rows = int(np.prod(g.shape(node.outputs[0]))) // n
    p = dict(rows=rows, in_features=k, out_features=n)
    return KernelCall("lego_fc_f32", "lego_fc_params_t", p, [node.inputs[0]], node.outputs,
                      weight=node.inputs[1], macs=rows * n * k)  # fmt: skip


def lower_matmul(node: Node, g: Graph) -> KernelCall:
    """MatMul with a constant (K, N) right operand: the frontend stores it transposed."""
    w = g.const(node.inputs[1])
    if w is None and g.const(node.inputs[0]) is None:
        return _matmul_activations(node, g)
    if w is None or w.ndim != 2:
        raise Unsupported("only MatMul with a constant 2-D right operand (a weight), or of two activations")
    k, n = w.shape
    rows = int(np.prod(g.shape(node.outputs[0]))) // n
    p = dict(rows=rows, in_features=k, out_features=n)
    return KernelCall("lego_fc_f32", "lego_fc_params_t", p, [node.inputs[0]], node.outputs,
                      weight=node.inputs[1], macs=rows * n * k)  # fmt: skip


def _matmul_activations(node: Node, g: Graph) -> KernelCall:
    """(..., M, K) @ (..., K, N), both computed at run time (attention); the right one's leading dims are
    the left one's, or all 1 (one matrix for every left one)."""
    a, b = g.shape(node.inputs[0]), g.shape(node.inputs[1])
    if len(a) < 2 or len(b) < 2:
        raise Unsupported("1-D operands")
    batch, b_batch = int(np.prod(a[:-2])), int(np.prod(b[:-2]))
    if b_batch not in (1, batch) or (b_batch == batch and len(a) != len(b)) or a[-1] != b[-2]:
        raise Unsupported(f"shapes {list(a)} @ {list(b)} (the right operand must match or be one matrix)")
    m, k, n = a[-2], a[-1], b[-1]
    p = dict(batch=batch, m=m, k=k, n=n, b_batch_stride=k * n if b_batch > 1 else 0)
    return KernelCall("lego_matmul_f32", "lego_matmul_params_t", p, list(node.inputs[:2]), node.outputs,
                      macs=batch * m * k * n)  # fmt: skip


# Enumerations shared with runtime/lego_runtime.h.
UNARY = {"Relu": 0, "Clip": 1, "LeakyRelu": 2, "Sigmoid": 3, "Tanh": 4, "HardSigmoid": 5, "HardSwish": 6,
         "Exp": 7, "Log": 8, "Sqrt": 9, "Neg": 10, "Abs": 11, "Reciprocal": 12, "Erf": 13, "Elu": 14, "Selu": 15,
         "Softplus": 16, "Softsign": 17, "Gelu": 18, "Mish": 20}  # fmt: skip
GELU_TANH = 19
BINARY = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3, "PRelu": 4, "Max": 5, "Min": 6, "Pow": 7}
# Ops that call the maths library have a kernel each (see lego_runtime.h): a firmware links only what it uses.
MATH_KERNELS = {"Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Erf", "Elu", "Selu", "Softplus", "Gelu", "Mish", "Pow"}


def lower_unary(node: Node, g: Graph) -> KernelCall:
    op = node.op
    alpha, beta = 0.0, 0.0
    if op == "Clip":
        lo = node.attrs.get("min", -np.inf)
        hi = node.attrs.get("max", np.inf)
        ins = node.inputs
        for idx, default in ((1, lo), (2, hi)):
            if len(ins) > idx and ins[idx]:
                v = g.const(ins[idx])
                if v is None or v.size != 1:
                    raise Unsupported("Clip bounds must be constant scalars")
                default = float(v.reshape(-1)[0])
            if idx == 1:
                lo = default
            else:
                hi = default
        alpha, beta = float(max(lo, -3.0e38)), float(min(hi, 3.0e38))
    elif op == "LeakyRelu":
        alpha = float(node.attrs.get("alpha", 0.01))
    elif op == "HardSigmoid":
        alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    elif op == "Elu":
        alpha = float(node.attrs.get("alpha", 1.0))
    elif op == "Selu":
        alpha = float(node.attrs.get("alpha", 1.67326319217681884765625))
        beta = float(node.attrs.get("gamma", 1.05070102214813232421875))
    code = UNARY[op]
    if op == "Gelu":
        approx = _text(node, "approximate", "none")
        if approx not in ("none", "tanh"):
            raise Unsupported(f"approximate='{approx}'")
        code = GELU_TANH if approx == "tanh" else code
    p = dict(op=code, size=g.tensors[node.outputs[0]].size, alpha=alpha, beta=beta)
    func = "lego_unary_f32" if op not in MATH_KERNELS else f"lego_{op.lower()}{'_tanh' * (code == GELU_TANH)}_f32"
    return KernelCall(func, "lego_unary_params_t", p, [node.inputs[0]], node.outputs, inplace=True)


def quantization_grid(node: Node) -> tuple[float, float, float]:
    """(scale, lo, hi) of a FAKE_QUANTIZE node: its value is clip(round(x / scale), lo, hi) * scale."""
    info = np.iinfo(helper.tensor_dtype_to_np_dtype(int(node.attrs["elem_type"])))
    zero_point = int(node.attrs["zero_point"])
    return float(node.attrs["scale"]), float(info.min - zero_point), float(info.max - zero_point)


def lower_fake_quantize(node: Node, g: Graph) -> KernelCall:
    scale, lo, hi = quantization_grid(node)
    p = dict(size=g.tensors[node.outputs[0]].size, scale=scale, lo=lo, hi=hi)
    return KernelCall("lego_fake_quantize_f32", "lego_fake_quantize_params_t", p, node.inputs[:1], node.outputs,
                      inplace=True)  # fmt: skip


def broadcast_strides(shape: tuple[int, ...], out: tuple[int, ...]) -> list[int]:
    """Element strides of `shape` read as `out` under numpy broadcasting (0 where broadcast)."""
    shape = (1,) * (len(out) - len(shape)) + tuple(shape)
    strides, acc = [0] * len(out), 1
    for i in range(len(out) - 1, -1, -1):
        strides[i] = acc if shape[i] != 1 else 0
        acc *= shape[i]
    return strides


def _collapse(out: tuple[int, ...], sa: list[int], sb: list[int]) -> tuple[list[int], list[int], list[int]]:
    """Merge adjacent dims that are contiguous in output and both inputs, so any rank fits."""
    dims = [(d, a, b) for d, a, b in zip(out, sa, sb) if d != 1] or [(1, 0, 0)]
    merged = [dims[-1]]
    for d, a, b in reversed(dims[:-1]):
        md, ma, mb = merged[0]
        if a == ma * md and b == mb * md:
            merged[0] = (d * md, ma, mb)
        else:
            merged.insert(0, (d, a, b))
    return [m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged]


def lower_binary(node: Node, g: Graph) -> KernelCall:
    if len(node.inputs) != 2:
        raise Unsupported(f"{len(node.inputs)} inputs (only 2)")
    out = g.shape(node.outputs[0])
    a, b = node.inputs[0], node.inputs[1]
    shape, sa, sb = _collapse(out, broadcast_strides(g.shape(a), out), broadcast_strides(g.shape(b), out))
    if len(shape) > MAX_DIMS:
        raise Unsupported(f"broadcast over more than {MAX_DIMS} dimensions")
    p = dict(op=BINARY[node.op], ndim=len(shape), shape=shape, a_stride=sa, b_stride=sb)
    # In place is safe only when input 0 is read exactly like the output is written.
    same = g.shape(a) == out
    func = "lego_pow_f32" if node.op in MATH_KERNELS else "lego_binary_f32"
    return KernelCall(func, "lego_binary_params_t", p, [a, b], node.outputs, inplace=same)


def lower_pool(node: Node, g: Graph) -> KernelCall:
    c, h, w = _spatial(g, node.inputs[0])
    _, oh, ow = _spatial(g, node.outputs[0])
    kernel = [int(k) for k in node.attrs["kernel_shape"]]
    p = dict(channels=c, in_h=h, in_w=w, out_h=oh, out_w=ow) | _window(node, g, kernel)
    p["is_max"] = int(node.op == "MaxPool")
    p["count_include_pad"] = int(node.attrs.get("count_include_pad", 0))
    if node.op == "MaxPool" and len(node.outputs) > 1 and node.outputs[1]:
        raise Unsupported("MaxPool's Indices output is not supported")
    if node.attrs.get("storage_order", 0):
        raise Unsupported("MaxPool storage_order=1 is not supported")
    macs = c * oh * ow * kernel[0] * (kernel[1] if len(kernel) > 1 else 1)
    return KernelCall("lego_pool2d_f32", "lego_pool2d_params_t", p, [node.inputs[0]], node.outputs[:1], macs=macs)


def _reduce(g: Graph, src: str, axes: list[int], is_max: bool, dst: str) -> KernelCall:
    shape = g.shape(src)
    axes = sorted(a % len(shape) for a in axes)
    if axes != list(range(axes[0], axes[-1] + 1)):
        raise Unsupported(f"reduction axes {axes} are not contiguous")
    outer = int(np.prod(shape[: axes[0]]))
    red = int(np.prod(shape[axes[0] : axes[-1] + 1]))
    inner = int(np.prod(shape[axes[-1] + 1 :]))
    p = dict(outer=outer, reduce=red, inner=inner, is_max=int(is_max))
    return KernelCall("lego_reduce_f32", "lego_reduce_params_t", p, [src], [dst], macs=outer * red * inner)


def lower_global_pool(node: Node, g: Graph) -> KernelCall:
    rank = len(g.shape(node.inputs[0]))
    if rank < 3:
        raise Unsupported(f"needs a tensor with spatial dims, got rank {rank}")
    return _reduce(g, node.inputs[0], list(range(2, rank)), node.op == "GlobalMaxPool", node.outputs[0])


def lower_reduce(node: Node, g: Graph) -> KernelCall:
    rank = len(g.shape(node.inputs[0]))
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        v = g.const(node.inputs[1])
        if v is None or v.ndim > 1:
            raise Unsupported("reduction axes must be a constant 1-D tensor")
        axes = v.tolist()
    if not axes:
        if node.attrs.get("noop_with_empty_axes", 0):
            raise Unsupported("noop_with_empty_axes=1 is not supported")
        axes = list(range(rank))
    return _reduce(g, node.inputs[0], list(axes), node.op == "ReduceMax", node.outputs[0])


def lower_view(node: Node, g: Graph) -> KernelCall:
    """Reshape, Flatten, Squeeze, Unsqueeze: same bytes, new shape."""
    if g.tensors[node.inputs[0]].size != g.tensors[node.outputs[0]].size:
        raise Unsupported("input and output sizes differ")
    return KernelCall("", "", {}, [node.inputs[0]], node.outputs, view=True)


def lower_concat(node: Node, g: Graph) -> KernelCall:
    out = g.shape(node.outputs[0])
    axis = int(node.attrs["axis"]) % len(out)
    outer = int(np.prod(out[:axis]))
    inner = int(np.prod(out[axis + 1 :]))
    sizes = [g.shape(i)[axis] * inner for i in node.inputs]
    p = dict(outer=outer, out_inner=out[axis] * inner, n_inputs=len(sizes))
    p["in_inner"] = sizes
    if len(sizes) > MAX_CONCAT:
        raise Unsupported(f"more than {MAX_CONCAT} inputs")
    return KernelCall("lego_concat_f32", "lego_concat_params_t", p, list(node.inputs), node.outputs)


def lower_pad(node: Node, g: Graph) -> KernelCall:
    mode = _text(node, "mode", "constant")
    if mode != "constant":
        raise Unsupported(f"Pad mode '{mode}' (only 'constant')")
    shape = g.shape(node.inputs[0])
    pads = node.attrs.get("pads")
    value = float(node.attrs.get("value", 0.0))
    if pads is None:
        pv = g.const(node.inputs[1])
        if pv is None:
            raise Unsupported("pads must be constant")
        pads = pv.tolist()
        if len(node.inputs) > 2 and node.inputs[2]:
            cv = g.const(node.inputs[2])
            if cv is None:
                raise Unsupported("the pad value must be constant")
            value = float(cv.reshape(-1)[0]) if cv.size else 0.0
        if len(node.inputs) > 3 and node.inputs[3]:
            ax = g.const(node.inputs[3])
            if ax is None:
                raise Unsupported("pad axes must be constant")
            full = [0] * (2 * len(shape))
            for j, a in enumerate(ax.tolist()):
                a %= len(shape)
                full[a], full[a + len(shape)] = pads[j], pads[j + len(ax)]
            pads = full
    pads = [int(x) for x in pads]
    if min(pads) < 0:
        raise Unsupported("negative pads (cropping)")
    if len(shape) > MAX_DIMS:
        raise Unsupported(f"more than {MAX_DIMS} dimensions")
    p = dict(ndim=len(shape), in_shape=list(shape), out_shape=list(g.shape(node.outputs[0])),
             pad_begin=pads[: len(shape)], value=value)  # fmt: skip
    return KernelCall("lego_pad_f32", "lego_pad_params_t", p, [node.inputs[0]], node.outputs)


def transpose_perm(node: Node, g: Graph) -> list[int]:
    rank = len(g.shape(node.inputs[0]))
    perm = [int(p) for p in node.attrs.get("perm", range(rank - 1, -1, -1))]
    if sorted(perm) != list(range(rank)):
        raise Unsupported(f"perm {perm} is not a permutation of the {rank} axes")
    return perm


def moves_batch(n: Node, g: Graph) -> bool:
    """Whether `n` moves the leading (batch) axis or cuts it, as the permute of timm-style attention that puts q,
    k and v first does. The C code runs one input and does not mind; the calibration executor runs many as one
    batch along that axis, and cannot run such a node."""
    if n.op == "Transpose":
        return transpose_perm(n, g)[0] != 0
    if n.op == "Expand":
        return len(g.shape(n.outputs[0])) != len(g.shape(n.inputs[0])) or g.shape(n.outputs[0])[0] != g.shape(n.inputs[0])[0]
    if n.op == "Tile":
        return tile_repeats(n, g)[0] != 1
    if n.op in ("Slice", "Gather"):
        axis = int(n.attrs.get("axis", 0)) % len(g.shape(n.inputs[0])) if n.op == "Gather" else -1
        return axis == 0 or g.shape(n.outputs[0])[:1] != g.shape(n.inputs[0])[:1]
    return False


def batch_mover(g: Graph) -> Node | None:
    return next((n for n in g.nodes if moves_batch(n, g)), None)


def _strided_copy(node: Node, g: Graph, axes: list[int], starts: list[int], steps: list[int],
                  fixed: tuple[int, int] = (0, 0)) -> KernelCall:  # fmt: skip
    """Output axis d reads input axis axes[d] from starts[d] in steps of steps[d]; `fixed` = (axis, position)
    for an input axis that no output axis reads."""
    shape = g.shape(node.inputs[0])
    if len(shape) > MAX_DIMS:
        raise Unsupported(f"more than {MAX_DIMS} dimensions")
    strides = _row_major_strides(shape)
    return _copy(node, list(g.shape(node.outputs[0])), [strides[a] * s for a, s in zip(axes, steps)],
                 strides[fixed[0]] * fixed[1] + sum(strides[a] * b for a, b in zip(axes, starts)))


def _row_major_strides(shape: tuple[int, ...]) -> list[int]:
    return [int(np.prod(shape[d + 1 :])) for d in range(len(shape))]


def _copy(node: Node, extents: list[int], in_stride: list[int], offset: int = 0) -> KernelCall:
    """The strided copy that every data move lowers to: output element (i0, i1, ...), in row-major order over
    `extents`, reads input element offset + sum(i_k * in_stride[k])."""
    p = dict(ndim=len(extents), out_shape=extents, in_stride=in_stride, offset=offset)
    return KernelCall("lego_strided_copy_f32", "lego_strided_copy_params_t", p, [node.inputs[0]], node.outputs)


def lower_expand(node: Node, g: Graph) -> KernelCall:
    """Expand (a squeeze-excitation's `expand_as`, say): a copy that reads broadcast axes with stride 0."""
    out = g.shape(node.outputs[0])
    if len(out) > MAX_DIMS:
        raise Unsupported(f"more than {MAX_DIMS} dimensions")
    return _copy(node, list(out), broadcast_strides(g.shape(node.inputs[0]), out))


def tile_repeats(node: Node, g: Graph) -> list[int]:
    repeats = g.const(node.inputs[1]) if len(node.inputs) > 1 else None
    if repeats is None:
        raise Unsupported("the repeats must be constant")
    return [int(r) for r in repeats.reshape(-1)]


def lower_tile(node: Node, g: Graph) -> KernelCall:
    """Tile (Keras's UpSampling2D, through tf2onnx): a copy whose output splits each tiled axis into
    (repeat, index), read with strides 0 and the input's."""
    shape, repeats = g.shape(node.inputs[0]), tile_repeats(node, g)
    strides = _row_major_strides(shape)
    dims = []  # (extent, input stride) in output order; axes of extent 1 add nothing
    for d, r, stride in zip(shape, repeats, strides):
        dims += [(r, 0)] if r > 1 else []
        dims += [(d, stride)] if d > 1 else []
    dims = dims or [(1, 0)]
    if len(dims) > MAX_DIMS:
        raise Unsupported(f"more than {MAX_DIMS} dimensions once each tiled axis is split in two")
    return _copy(node, [e for e, _ in dims], [t for _, t in dims])


def lower_transpose(node: Node, g: Graph) -> KernelCall:
    """A copy in the permuted order."""
    perm = transpose_perm(node, g)
    return _strided_copy(node, g, perm, [0] * len(perm), [1] * len(perm))


def slice_starts_steps(node: Node, g: Graph) -> tuple[list[int], list[int]]:
    """Each axis's first element and step (the output's shape, from shape inference, gives the count)."""
    shape, out = g.shape(node.inputs[0]), g.shape(node.outputs[0])
    if "starts" in node.attrs:
        raise Unsupported("Slice before opset 10: export with a newer opset")
    names = (list(node.inputs[1:5]) + [""] * 4)[:4]  # starts, ends, axes, steps
    given = [g.const(i) if i else None for i in names]
    if given[0] is None or any(i and v is None for i, v in zip(names, given)):
        raise Unsupported("starts, ends, axes and steps must be constant")
    starts, axes, steps = given[0].tolist(), given[2], given[3]
    axes = list(range(len(starts))) if axes is None else [int(a) % len(shape) for a in list(axes)]
    steps = [1] * len(starts) if steps is None else [int(s) for s in list(steps)]
    first, every = [0] * len(shape), [1] * len(shape)
    for a, s, step in zip(axes, starts, steps):
        if step == 0:
            raise Unsupported("a step of 0")
        s = int(s) + shape[a] if int(s) < 0 else int(s)
        first[a], every[a] = min(max(s, 0), shape[a] - (step < 0)), step
    if 0 in out:
        raise Unsupported("an empty slice")
    return first, every


def slice_indices(node: Node, g: Graph) -> list[np.ndarray]:
    """The input positions a Slice keeps, per axis after the batch axis (which `batch_mover` says it keeps)."""
    starts, steps = slice_starts_steps(node, g)
    out = g.shape(node.outputs[0])
    return [starts[d] + steps[d] * np.arange(out[d]) for d in range(1, len(starts))]


def lower_slice(node: Node, g: Graph) -> KernelCall:
    starts, steps = slice_starts_steps(node, g)
    return _strided_copy(node, g, list(range(len(starts))), starts, steps)


def gather_indices(node: Node, g: Graph) -> tuple[int, np.ndarray]:
    """A Gather's axis and its constant indices, made non-negative."""
    shape = g.shape(node.inputs[0])
    axis = int(node.attrs.get("axis", 0)) % len(shape)
    idx = g.const(node.inputs[1])
    if idx is None:
        raise Unsupported("the indices must be constant (a lookup by computed indices, such as an embedding)")
    if idx.ndim > 1 or idx.size == 0:
        raise Unsupported(f"indices of shape {list(idx.shape)} (a scalar or a non-empty list)")
    if ((idx < -shape[axis]) | (idx >= shape[axis])).any():
        raise Unsupported(f"indices out of range for an axis of {shape[axis]}")
    return axis, np.where(idx < 0, idx + shape[axis], idx).astype(np.int64)


def lower_gather(node: Node, g: Graph) -> KernelCall:
    """Gather of constant, evenly spaced indices on an activation (picking q, k or v, a class token, every other
    row): one strided copy. A scalar index drops its axis."""
    axis, idx = gather_indices(node, g)
    flat = idx.reshape(-1)
    step = int(flat[1] - flat[0]) if flat.size > 1 else 1
    if (np.diff(flat) != step).any():
        raise Unsupported("indices that are not evenly spaced")
    if idx.ndim == 0:
        if len(g.shape(node.inputs[0])) == 1:
            raise Unsupported("a single element")
        axes = [a for a in range(len(g.shape(node.inputs[0]))) if a != axis]
        return _strided_copy(node, g, axes, [0] * len(axes), [1] * len(axes), fixed=(axis, int(flat[0])))
    axes = list(range(len(g.shape(node.inputs[0]))))
    return _strided_copy(node, g, axes, [int(flat[0]) if a == axis else 0 for a in axes],
                         [step if a == axis else 1 for a in axes])  # fmt: skip


RESIZE_COORDS = {"half_pixel": 0, "asymmetric": 1, "align_corners": 2, "pytorch_half_pixel": 3, "tf_half_pixel_for_nn": 4}
NEAREST_MODES = {"round_prefer_floor": 0, "round_prefer_ceil": 1, "floor": 2, "ceil": 3}


def lower_resize(node: Node, g: Graph) -> KernelCall:
    """Nearest or (bi)linear over the last two axes (or the last, for NCW), with onnxruntime's scales: as
    given, or output over input size."""
    shape, out = g.shape(node.inputs[0]), g.shape(node.outputs[0])
    mode, coord, nearest = (_text(node, "mode", "nearest"), _text(node, "coordinate_transformation_mode", "half_pixel"),
                            _text(node, "nearest_mode", "round_prefer_floor"))  # fmt: skip
    if mode not in ("nearest", "linear"):
        raise Unsupported(f"mode '{mode}' (nearest and linear are)")
    if coord not in RESIZE_COORDS or nearest not in NEAREST_MODES:
        raise Unsupported(f"coordinate_transformation_mode '{coord}' with nearest_mode '{nearest}'")
    if node.attrs.get("antialias", 0) and mode == "linear" and any(o < i for o, i in zip(out, shape)):
        raise Unsupported("antialiased downsampling")
    if _text(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        raise Unsupported("keep_aspect_ratio_policy other than 'stretch'")
    if len(shape) not in (3, 4) or list(out[:2]) != list(shape[:2]):
        raise Unsupported("resizing other than the spatial axes of an NCHW or NCW tensor")
    at = 1 if g.opset < 11 else 2  # Resize-10 takes (X, scales); later ones (X, roi, scales, sizes)
    named = len(node.inputs) > at and node.inputs[at]
    scales = g.const(node.inputs[at]) if named else None
    if named and scales is None:
        raise Unsupported("scales must be constant")
    if scales is None or scales.size == 0:
        scales = np.array(out, np.float32) / np.array(shape, np.float32)  # from sizes, as onnxruntime does
    elif "axes" in node.attrs:
        full = np.ones(len(shape), np.float32)
        full[[int(a) % len(shape) for a in node.attrs["axes"]]] = scales
        scales = full
    scales = scales.astype(np.float32).tolist()
    c, h, w = _spatial(g, node.inputs[0])
    _, oh, ow = _spatial(g, node.outputs[0])
    p = dict(channels=c, in_h=h, in_w=w, out_h=oh, out_w=ow, linear=int(mode == "linear"), coord=RESIZE_COORDS[coord],
             nearest_mode=NEAREST_MODES[nearest], scale_h=scales[-2] if len(shape) == 4 else 1.0, scale_w=scales[-1])  # fmt: skip
    return KernelCall("lego_resize_f32", "lego_resize_params_t", p, [node.inputs[0]], node.outputs)


def lower_softmax(node: Node, g: Graph) -> KernelCall:
    shape = g.shape(node.inputs[0])
    default = -1 if g.opset >= 13 else 1
    axis = int(node.attrs.get("axis", default)) % len(shape)
    if g.opset >= 13:
        outer, n, inner = int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1 :]))
    else:  # opset < 13 flattens to 2-D at `axis`
        outer, n, inner = int(np.prod(shape[:axis])), int(np.prod(shape[axis:])), 1
    p = dict(outer=outer, axis_len=n, inner=inner)
    return KernelCall("lego_softmax_f32", "lego_softmax_params_t", p, [node.inputs[0]], node.outputs, inplace=True)


def lower_layernorm(node: Node, g: Graph) -> KernelCall:
    """LayerNormalization over the axes from `axis` on, with a scale and a bias of their full size."""
    shape = g.shape(node.inputs[0])
    axis = int(node.attrs.get("axis", -1)) % len(shape)
    size = int(np.prod(shape[axis:]))
    if axis == 0:
        raise Unsupported("normalising over the batch axis")
    if any(node.outputs[1:]):
        raise Unsupported("the Mean and InvStdDev outputs")
    consts = [g.const(i) if i else None for i in node.inputs[1:3]]
    if len(consts) < 2 or any(c is None or c.size != size for c in consts):
        raise Unsupported(f"scale and bias must be constants of {size} values")
    p = dict(outer=int(np.prod(shape[:axis])), size=size, epsilon=float(node.attrs.get("epsilon", 1e-5)))
    return KernelCall("lego_layernorm_f32", "lego_layernorm_params_t", p, list(node.inputs[:3]), node.outputs[:1],
                      inplace=True)  # fmt: skip


LOWERINGS: dict[str, Callable[[Node, Graph], KernelCall]] = {
    "Conv": lower_conv,
    "ConvTranspose": lower_conv_transpose,
    "Gemm": lower_gemm,
    "MatMul": lower_matmul,
    **{op: lower_unary for op in UNARY},
    **{op: lower_binary for op in BINARY},
    FAKE_QUANTIZE: lower_fake_quantize,
    "MaxPool": lower_pool,
    "AveragePool": lower_pool,
    "GlobalAveragePool": lower_global_pool,
    "GlobalMaxPool": lower_global_pool,
    "ReduceMean": lower_reduce,
    "ReduceMax": lower_reduce,
    "Reshape": lower_view,
    "Flatten": lower_view,
    "Squeeze": lower_view,
    "Unsqueeze": lower_view,
    "Concat": lower_concat,
    "Pad": lower_pad,
    "Transpose": lower_transpose,
    "Slice": lower_slice,
    "Gather": lower_gather,
    "Expand": lower_expand,
    "Tile": lower_tile,
    "Resize": lower_resize,
    "LayerNormalization": lower_layernorm,
    "Softmax": lower_softmax,
}


def fuse_residual_adds(g: Graph, lowered: list[tuple[Node, KernelCall]]) -> list[tuple[Node, KernelCall]]:
    """Conv followed by Add of a same-shape activation becomes one conv that accumulates onto
    the Add's other operand (a residual connection). It saves a pass over the output and, when
    the other operand dies there, a whole activation buffer: the conv writes into it in place.
    The fused call takes the Add's place, where both operands exist."""
    fused_at: dict[int, tuple[Node, KernelCall]] = {}
    dropped: set[int] = set()
    for i, (node, call) in enumerate(lowered):
        out = call.outputs[0]
        users = [j for j, (_, c) in enumerate(lowered) if out in c.inputs]
        if call.func != "lego_conv2d_f32" or out in g.outputs or len(users) != 1:
            continue
        j = users[0]
        if j in fused_at:  # both operands of the Add are convs: fuse only the first
            continue
        add = lowered[j][0]
        other = [t for t in add.inputs if t != out]
        if add.op != "Add" or len(other) != 1 or g.tensors[other[0]].is_const:
            continue
        if not g.shape(other[0]) == g.shape(out) == g.shape(add.outputs[0]):
            continue
        fused_at[j] = (node, KernelCall(call.func, call.params_type, call.params, [call.inputs[0], other[0]],
                                        add.outputs, weight=call.weight, macs=call.macs, inplace=True,
                                        inplace_index=1, fused="Add"))  # fmt: skip
        dropped.add(i)
    return [fused_at.get(j, entry) for j, entry in enumerate(lowered) if j not in dropped]


def lower(node: Node, g: Graph) -> KernelCall:
    fn = LOWERINGS.get(node.op)
    if fn is None:
        raise Unsupported("op not supported")
    return fn(node, g)


def unsupported_nodes(g: Graph) -> dict[str, list[str]]:
    """Every node that cannot be lowered, grouped by op: 'op' -> ['node: reason', ...]."""
    problems: dict[str, list[str]] = {}
    for node in g.nodes:
        try:
            lower(node, g)
        except Unsupported as e:
            reason = "" if node.op not in LOWERINGS else f" ({e})"
            problems.setdefault(node.op, []).append(f"{node.name}{reason}")
    return problems
