"""Expected activations without data, from the BatchNorm statistics the frontend kept.

A BatchNorm's output has, per channel, the mean of its shift and the spread of its scale over the
training data. Propagating those Gaussian moments through ReLU (or ReLU6), residual adds and pooling gives
each layer's expected input, which is all that bias correction needs: clustering moves a layer's
mean output by (W_hat - W) @ E[x], and the bias can take that back (Nagel et al., "Data-Free
Quantization Through Weight Equalization and Bias Correction", 2019, section 4.2).
Tensors whose moments cannot be derived this way are left out: their consumers go uncorrected.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from .ir import FAKE_QUANTIZE, Graph, Node
from .ops import CONV_OPS, lower_reduce, lower_unary, moves_batch, quantization_grid, slice_indices, transpose_perm

Moments = tuple[np.ndarray, np.ndarray]  # per-channel mean and variance (or per element: see _moved)

# Ops that keep each channel's mean: averaging, resizing and tiling (the variance only shrinks, or stays;
# keeping it is an upper bound) and reshapes that leave the channel axis alone. Flattening a spatial map
# is not one: a classifier's per-position input means differ from their channel's mean.
MEAN_PRESERVING = ("GlobalAveragePool", "AveragePool", "Resize", "Tile", "Flatten", "Reshape", "Squeeze")
MOVES = ("Reshape", "Transpose", "Slice")  # ops that move elements, channels included (_moved)


def _clipped(mean: np.ndarray, var: np.ndarray, lo: float, hi: float) -> Moments:
    """Mean and variance of min(max(x, lo), hi) for x ~ N(mean, var), per channel (ReLU: 0, inf)."""
    std = np.maximum(np.sqrt(var), 1e-12)
    a, b = (lo - mean) / std, (hi - mean) / std  # +-inf bounds give +-inf, which ndtr and exp handle
    cdf_a, cdf_b = ndtr(a), ndtr(b)
    pdf_a, pdf_b = (np.exp(-0.5 * np.minimum(z * z, 1e4)) / np.sqrt(2 * np.pi) for z in (a, b))
    inside = cdf_b - cdf_a
    # An open bound holds no mass and adds nothing: zero it, so that inf * 0 never appears.
    lo, hi = (v if np.isfinite(v) else 0.0 for v in (lo, hi))
    a, b = (np.where(np.isfinite(z), z, 0.0) for z in (a, b))
    m1 = lo * cdf_a + hi * (1 - cdf_b) + mean * inside + std * (pdf_a - pdf_b)
    m2 = (lo * lo * cdf_a + hi * hi * (1 - cdf_b) + mean * mean * inside + 2 * mean * std * (pdf_a - pdf_b)
          + var * (inside + a * pdf_a - b * pdf_b))  # fmt: skip
    return m1, np.maximum(m2 - m1 * m1, 0.0)


def mean_response(g: Graph, n: Node, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Each output channel's mean when a Conv, ConvTranspose or Gemm with weight `w` (ONNX shape, no bias)
    reads inputs whose channels have means `mean`: exact, padding aside."""
    groups = int(n.attrs.get("group", 1)) if n.op in CONV_OPS else 1
    # Conv and Gemm: (group, out, in, taps); ConvTranspose: (group, in, out, taps)
    w = w.astype(np.float64).reshape(groups, w.shape[0] // groups, w.shape[1], -1)
    if n.op == "ConvTranspose":  # each input pixel reaches one output pixel per tap
        spread = np.prod(g.shape(n.inputs[0])[2:]) / np.prod(g.shape(n.outputs[0])[2:])
        return (w * mean.reshape(groups, -1, 1, 1)).sum((1, 3)).reshape(-1) * spread
    return (w * mean.reshape(groups, 1, -1, 1)).sum((2, 3)).reshape(-1)


def _linear(g: Graph, n: Node, mean: np.ndarray, var: np.ndarray) -> Moments:
    """Through a Conv, ConvTranspose or Gemm without a BatchNorm after it. The variance takes the inputs as
    independent, an approximation that only the next ReLU's mean sees."""
    w = g.const(n.inputs[1])
    assert w is not None
    b = g.const(n.inputs[2]).reshape(-1) if len(n.inputs) > 2 and n.inputs[2] else 0.0  # type: ignore[union-attr]
    return mean_response(g, n, w, mean) + b, mean_response(g, n, np.square(w.astype(np.float64)), var)


def _moved(g: Graph, n: Node, src: Moments) -> Moments | None:
    """Through a Reshape, Transpose or Slice that moves channels (a ShuffleNet channel shuffle or split, say):
    each element's moments, moved as the data moves, then per channel again where every channel's elements
    agree. An element-wise result (ndim > 1) only flows on through more such moves and ReLUs."""
    shape, out = g.shape(n.inputs[0])[1:], g.shape(n.outputs[0])[1:]
    if len(shape) < 2 or len(out) < 2:  # flattening to features is not a move (see MEAN_PRESERVING)
        return None
    if moves_batch(n, g):
        return None  # the leading axis moves: it is not a batch of the channels' statistics any more
    moved = []
    for a in src:
        full = np.broadcast_to(a.reshape(a.shape + (1,) * (len(shape) - a.ndim)), shape)
        if n.op == "Transpose":
            full = full.transpose([p - 1 for p in transpose_perm(n, g)[1:]])
        elif n.op == "Slice":
            for axis, kept in enumerate(slice_indices(n, g)):
                full = np.take(full, kept, axis=axis)
        moved.append(np.ascontiguousarray(full).reshape(out))
    first = tuple(a.reshape(a.shape[0], -1)[:, 0] for a in moved)
    if all(np.all(a == f.reshape(f.shape + (1,) * (a.ndim - 1))) for a, f in zip(moved, first)):
        return first[0], first[1]
    return moved[0], moved[1]


def _spatial_mean(g: Graph, n: Node, channels: int) -> bool:
    """A ReduceMean over axes after the channel axis only (the dynamo exporter's global average pool)."""
    p = lower_reduce(n, g).params
    return int(p["outer"]) == channels and int(p["inner"]) == 1  # type: ignore[call-overload]


def activation_moments(g: Graph) -> dict[str, Moments]:
    """Per-channel moments of every tensor they can be derived for, in graph order."""
    known: dict[str, Moments] = {t: (m.astype(np.float64), np.square(s.astype(np.float64)))
                                 for t, (m, s) in g.bn_stats.items()}  # fmt: skip
    for n in g.nodes:
        src = [known.get(i) for i in n.inputs]
        out = n.outputs[0]
        if out in known or not src or src[0] is None:
            continue
        channels = g.shape(out)[1] if len(g.shape(out)) > 1 else 0
        if src[0][0].ndim > 1 and n.op not in ("Relu", "Clip", FAKE_QUANTIZE, *MOVES):
            continue
        if n.op == "Relu":
            known[out] = _clipped(*src[0], 0.0, np.inf)
        elif n.op == FAKE_QUANTIZE:  # rounding to the grid leaves the moments, clipping to its range does not
            scale, lo, hi = quantization_grid(n)
            known[out] = _clipped(*src[0], lo * scale, hi * scale)
        elif n.op == "Clip":  # ReLU6 and friends, bounds read as the kernels read them
            p = lower_unary(n, g).params
            known[out] = _clipped(*src[0], float(p["alpha"]), float(p["beta"]))  # type: ignore[arg-type]
        elif (n.op in MEAN_PRESERVING and len(src[0][0]) == channels and src[0][0].ndim == 1
              and g.shape(out)[:2] == g.shape(n.inputs[0])[:2]):  # batch and channel axes stay: not (1, C, L) -> (C, L)
            known[out] = src[0]
        elif n.op == "ReduceMean" and _spatial_mean(g, n, len(src[0][0])):
            known[out] = src[0]
        elif n.op in MOVES and (moved := _moved(g, n, src[0])) is not None:
            known[out] = moved
        elif n.op in (*CONV_OPS, "Gemm") and g.const(n.inputs[1]) is not None:
            known[out] = _linear(g, n, *src[0])
        elif n.op == "Concat" and int(n.attrs["axis"]) % len(g.shape(out)) == 1 and all(
                s is not None and s[0].ndim == 1 for s in src):
            known[out] = tuple(np.concatenate([s[i] for s in src]) for i in (0, 1))  # type: ignore[index, assignment]
        elif n.op == "Add" and len(src) == 2 and src[1] is not None and len(src[0][0]) == len(src[1][0]) == channels:
            known[out] = (src[0][0] + src[1][0], src[0][1] + src[1][1])  # branches taken as independent
    return known
