"""A small torch executor of the IR, with the stored parameters of a compressed model as tensors.

Calibration trains what the format stores (codebook entries, per-channel scales, biases) and,
through latent tiles, which entry each tile takes, so the weights are rebuilt from those tensors on
every forward pass, exactly as `CompressedModel.matrix` does in numpy. torch is imported by the caller's choice:
nothing in lego2c imports this module unless `--calib` is used.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .compress import CompressedModel, _transposed_groups, _untile, weighted_nodes
from .errors import UsageError
from .ir import FAKE_QUANTIZE, Graph, Node
from .ops import (BINARY, CONV_OPS, GELU_TANH, UNARY, WEIGHTED_OPS, _pads_2d, batch_mover, gather_indices,
                  lower_conv_transpose, lower_global_pool, lower_layernorm, lower_pad, lower_reduce, lower_resize,
                  lower_unary, overhang, quantization_grid, slice_indices, tile_repeats, transpose_perm)

Hook = Callable[[Node, torch.Tensor], torch.Tensor]
SNAP_CHUNK = 16384  # tiles measured against a codebook at once: bounds snap's memory on large layers


class StoredParams(torch.nn.Module):
    """The learnable side of a compressed model: codebooks, scales and biases, as float32 tensors."""

    def __init__(self, g: Graph, cm: CompressedModel) -> None:
        super().__init__()
        self.cm = cm
        self.codebooks = torch.nn.ParameterDict(
            {_key(n): torch.nn.Parameter(torch.from_numpy(cb.centroids.copy())) for n, cb in cm.codebooks.items()}
        )
        # Scales are learned as log-gains: their magnitudes span decades (int8 scales are max/127).
        self.gains = torch.nn.ParameterDict()
        self.scales: dict[str, torch.Tensor] = {}
        self.biases = torch.nn.ParameterDict()
        self.fixed: dict[str, torch.Tensor] = {}  # per layer: indices (tiled) or stored values (dense)
        self.gather: dict[str, torch.Tensor] = {}  # tiled: position of each weight in the decoded tiles
        self.nodes = {n.inputs[1]: n for n in weighted_nodes(g)}
        self.latent = torch.nn.ParameterDict()  # per tiled layer once free_indices() is called
        for tensor, lw in cm.layers.items():
            if lw.storage == "dense" and lw.dtype == "f32":
                continue  # stored exactly, nothing to learn
            if lw.scale is not None:
                self.scales[tensor] = torch.from_numpy(lw.scale.copy())
                self.gains[_key(tensor)] = torch.nn.Parameter(torch.zeros(len(lw.scale)))
            if lw.bias is not None:
                self.biases[_key(tensor)] = torch.nn.Parameter(torch.from_numpy(lw.bias.copy()))
            if lw.storage == "tiled":
                assert lw.indices is not None
                r, c = lw.tile
                flat = np.arange(lw.n_tiles * r * c).reshape(lw.n_tiles, r * c)
                self.gather[tensor] = torch.from_numpy(_untile(flat, lw.rows, lw.cols, lw.tile).astype(np.int64))
                self.fixed[tensor] = torch.from_numpy(lw.indices.astype(np.int64))
            else:
                assert lw.values is not None
                self.fixed[tensor] = torch.from_numpy(lw.values.astype(np.float32))

    def learned(self, tensor: str) -> bool:
        return tensor in self.fixed

    def weight(self, tensor: str) -> torch.Tensor:
        """The (rows, cols) weight the C code computes with."""
        lw = self.cm.layers[tensor]
        if lw.storage == "tiled":
            assert lw.codebook is not None
            tiles = self.codebooks[_key(lw.codebook)][self.fixed[tensor]]
            if _key(tensor) in self.latent:  # straight through: the codebook's values, gradients to both
                latent = self.latent[_key(tensor)]
                tiles = tiles + (latent - latent.detach())
            m = tiles.reshape(-1)[self.gather[tensor]]
        else:
            m = self.fixed[tensor]
        return m * self.scale(tensor)[:, None] if lw.scale is not None else m

    def free_indices(self) -> None:
        """Give every tiled layer latent tiles, starting at its decoded ones, that training moves as if they
        were the weights; `snap` then gives each tile the codebook entry nearest its latent one."""
        for tensor, lw in self.cm.layers.items():
            if lw.storage == "tiled":
                decoded = self.codebooks[_key(lw.codebook or "")][self.fixed[tensor]]
                self.latent[_key(tensor)] = torch.nn.Parameter(decoded.detach().clone())

    def snap(self) -> int:
        """Each tile takes the codebook entry nearest its latent tile; returns how many tiles changed entry."""
        moved = 0
        with torch.no_grad():
            for tensor, lw in self.cm.layers.items():
                if _key(tensor) not in self.latent:
                    continue
                codebook = self.codebooks[_key(lw.codebook or "")]
                nearest = torch.cat([(chunk[:, None, :] - codebook[None]).square().sum(-1).argmin(1)
                                     for chunk in self.latent[_key(tensor)].split(SNAP_CHUNK)])  # fmt: skip
                moved += int((nearest != self.fixed[tensor]).sum())
                self.fixed[tensor] = nearest
        return moved

    def scale(self, tensor: str) -> torch.Tensor:
        return self.scales[tensor] * torch.exp(self.gains[_key(tensor)])

    def bias(self, tensor: str) -> torch.Tensor | None:
        return self.biases[_key(tensor)] if _key(tensor) in self.biases else None

    def write_back(self) -> None:
        """Store the trained values in the compressed model, rounded to their storage types."""
        from .compress import as_stored, stored_scales

        with torch.no_grad():
            for name, cb in self.cm.codebooks.items():
                cb.centroids = as_stored(self.codebooks[_key(name)].numpy(), cb.dtype)
            for tensor, lw in self.cm.layers.items():
                if tensor in self.scales:
                    lw.scale = stored_scales(self.scale(tensor).numpy(), lw.side_dtype)
                if _key(tensor) in self.biases:
                    lw.bias = as_stored(self.biases[_key(tensor)].numpy(), lw.side_dtype)
                if _key(tensor) in self.latent:
                    lw.assign(self.fixed[tensor].numpy().copy())


def _key(name: str) -> str:
    """ParameterDict keys may not contain dots."""
    return name.replace(".", "\x1f")


class Executor:
    """Runs the IR on a batch in torch: the original constants, or a compressed model's parameters."""

    def __init__(self, g: Graph, params: StoredParams | None = None) -> None:
        if (mover := batch_mover(g)) is not None:
            raise UsageError(f"calibration cannot run this model: {mover.op} '{mover.name}' moves or cuts the leading "
                             "axis, along which it runs its inputs as one batch",
                             hint="compress without calibration (the compiled C runs the model as it is)")  # fmt: skip
        self.g, self.params = g, params
        self.consts = {name: torch.from_numpy(np.asarray(t.data, dtype=np.float32)) for name, t in g.tensors.items()
                       if t.data is not None and np.asarray(t.data).dtype.kind == "f"}  # fmt: skip
        last_use: dict[str, int] = {}
        for i, n in enumerate(g.nodes):
            for name in n.inputs:
                last_use[name] = i
        self.last_use = last_use
        self.resize_taps: dict[str, ResizeTaps] = {}
        # Logits, not probabilities: a final Softmax is left out (see evaluate.batched).
        self.nodes = g.nodes[:-1] if g.nodes and g.nodes[-1].op == "Softmax" else g.nodes

    def weight(self, node: Node) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight in its ONNX shape and the bias, as this executor computes with them."""
        w_name = node.inputs[1]
        b_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        if self.params is None or not self.params.learned(w_name):
            return self.consts[w_name], self.consts.get(b_name) if b_name else None
        m = self.params.weight(w_name)
        shape = self.g.shape(w_name)
        if node.op == "ConvTranspose":  # compress.from_matrix, in torch
            groups, cin_g, cout_g, *kernel = _transposed_groups(node, shape)
            m = m.reshape(groups, cout_g, cin_g, *kernel).flip(list(range(3, 3 + len(kernel)))).transpose(1, 2)
        w = m.T if node.op == "MatMul" else m.reshape(shape)
        return w, self.params.bias(w_name)

    def __call__(self, x: torch.Tensor, hook: Hook | None = None,
                 on_input: Callable[[Node, torch.Tensor], None] | None = None,
                 on_output: Callable[[str, torch.Tensor], None] | None = None) -> torch.Tensor:  # fmt: skip
        """The logits, one row per input (as evaluate.Runner gives them); `hook(node, output)` sees (and may
        replace) each weighted node's output.

        `on_input(node, input)`, when given, sees each weighted node's input, and
        `on_output(tensor_name, value)` every node's output.
        """
        env: dict[str, torch.Tensor] = {self.g.inputs[0]: x}
        batch = x.shape[0] // self.g.shape(self.g.inputs[0])[0]
        for i, node in enumerate(self.nodes):
            weighted = node.op in WEIGHTED_OPS and node.inputs[1] in self.consts
            if weighted and on_input is not None:
                on_input(node, env[node.inputs[0]])
            y = _run(self, node, env, batch)
            if hook is not None and weighted:
                y = hook(node, y)
            env[node.outputs[0]] = y
            if on_output is not None:
                on_output(node.outputs[0], y)
            for name in node.inputs:
                if self.last_use.get(name) == i and name not in self.consts:
                    env.pop(name, None)  # free activations as soon as nothing reads them
        return env[self.nodes[-1].outputs[0]].reshape(batch, -1)


def linear(ex: Executor, node: Node, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A weighted node's output for input `x` with weight `w` (ONNX shape) and no bias."""
    return _weighted(ex, node, x, w, None, (x.shape[0], *ex.g.shape(node.outputs[0])[1:]))


def columns(ex: Executor, node: Node, x: torch.Tensor) -> torch.Tensor:
    """A weighted node's input as the rows its weight matrix multiplies: (positions, reduction).

    For a Conv this is im2col in the (ci, kh, kw) order of `compress.weight_matrix` (one group); for a
    ConvTranspose, the same of the Conv it equals: over the input with zeros inserted, the kernel flipped.
    """
    if node.op not in CONV_OPS:
        return x.reshape(-1, x.shape[-1])
    kernel = list(ex.g.shape(node.inputs[1])[2:])
    if node.op == "ConvTranspose":
        x, strides, pads = _zero_inserted(ex, node, x), [1] * len(kernel), [0] * 2 * len(kernel)
    else:
        strides, pads = _pads(node, ex, kernel)
    dil = _ints(node, "dilations", len(kernel), 1)
    x = F.pad(x, pads)
    if len(kernel) == 1:
        x, kernel, strides, dil = x[:, :, None, :], [1, *kernel], [1, *strides], [1, *dil]
    cols = F.unfold(x, kernel, dilation=dil, stride=strides)  # (N, ci*kh*kw, positions)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _weighted(ex: Executor, node: Node, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
              out_shape: tuple[int, ...]) -> torch.Tensor:  # fmt: skip
    if node.op == "Conv":
        kernel = list(w.shape[2:])
        strides, pads = _pads(node, ex, kernel)
        dil = _ints(node, "dilations", len(kernel), 1)
        conv = F.conv1d if len(kernel) == 1 else F.conv2d
        group = int(node.attrs.get("group", 1))
        if pads[0::2] == pads[1::2]:  # symmetric: the conv pads inside, without copying its input
            return conv(x, w, b, strides, pads[-2::-2], dil, group)
        return conv(F.pad(x, pads), w, b, strides, 0, dil, group)
    if node.op == "ConvTranspose":
        p = lower_conv_transpose(node, ex.g).params
        one_d = w.ndim == 3
        conv = F.conv_transpose1d if one_d else F.conv_transpose2d
        strides, dil = _window_axes(p, "stride", one_d), _window_axes(p, "dil", one_d)
        y = conv(x, w, None, strides, 0, 0, int(node.attrs.get("group", 1)), dil)
        # torch pads both sides alike and ONNX need not: crop the begin pads, then cut or extend to the size
        begin = [int(p["pad_left"])] + ([] if one_d else [int(p["pad_top"])])
        y = F.pad(y, [v for d, lo in zip(range(y.ndim - 1, 1, -1), begin) for v in (-lo, out_shape[d] - y.shape[d] + lo)])
        return y if b is None else y + b.reshape(-1, *[1] * (y.ndim - 2))
    if node.op == "Gemm":
        y = x.reshape(out_shape[0], -1, w.shape[1]) @ w.T
        return (y if b is None else y + b).reshape(out_shape)
    return x @ w if b is None else x @ w + b  # MatMul, with the bias the frontend gave it


def _window_axes(p: dict[str, int | float | list[int]], key: str, one_d: bool) -> list[int]:
    """A 2-D kernel parameter pair (`key`_h, `key`_w), or just _w for 1-D."""
    return [int(p[f"{key}_w"])] if one_d else [int(p[f"{key}_h"]), int(p[f"{key}_w"])]  # type: ignore[arg-type]


def _zero_inserted(ex: Executor, node: Node, x: torch.Tensor) -> torch.Tensor:
    """A ConvTranspose's input with stride - 1 zeros between pixels, padded so that the Conv of its flipped
    kernel (stride 1) gives the ConvTranspose's output."""
    p = lower_conv_transpose(node, ex.g).params
    one_d = x.ndim == 3
    strides, kernel, dil = (_window_axes(p, k, one_d) for k in ("stride", "k", "dil"))
    z = x.new_zeros(*x.shape[:2], *[(n - 1) * s + 1 for n, s in zip(x.shape[2:], strides)])
    z[(slice(None), slice(None), *(slice(None, None, s) for s in strides))] = x
    begin = [int(p["pad_top"]), int(p["pad_left"])][-len(strides) :]
    out = ex.g.shape(node.outputs[0])[2:]
    pads = []
    for d in range(len(strides) - 1, -1, -1):  # F.pad order: the last axis first
        lo = dil[d] * (kernel[d] - 1) - begin[d]
        pads += [lo, out[d] + dil[d] * (kernel[d] - 1) - z.shape[2 + d] - lo]
    return F.pad(z, pads)


def _value(ex: Executor, env: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return env[name] if name in env else ex.consts[name]


def _ints(node: Node, key: str, n: int, default: int) -> list[int]:
    v = node.attrs.get(key)
    return [int(i) for i in v] if v is not None else [default] * n


def _pads(node: Node, ex: Executor, kernel: list[int]) -> tuple[list[int], list[int]]:
    """(strides, F.pad order pads) of a 1-D or 2-D window op; auto_pad resolved as ops._pads_2d does."""
    nsp = len(kernel)
    strides = _ints(node, "strides", nsp, 1)
    dil = _ints(node, "dilations", nsp, 1)
    top, left, bottom, right = _pads_2d(node, ex.g, kernel, strides, dil)
    return strides, ([left, right] if nsp == 1 else [left, right, top, bottom])


def _run(ex: Executor, node: Node, env: dict[str, torch.Tensor], batch: int) -> torch.Tensor:
    op, a = node.op, node.attrs
    xs = [_value(ex, env, n) for n in node.inputs if n and (n in env or n in ex.consts)]
    # A batch-1 tensor of shape (d0, ...) runs as (batch * d0, ...): d0 is 1 but where a Reshape folds rows
    # into it (exporters run a Linear on a 4-D tensor as Reshape to (rows, features), Gemm, Reshape back).
    shape = ex.g.shape(node.outputs[0])
    out_shape = (batch * shape[0], *shape[1:])
    if op == "MatMul" and node.inputs[1] not in ex.consts:  # of two activations: lower_matmul checked the shapes
        return torch.matmul(xs[0], xs[1])
    if op in WEIGHTED_OPS:
        return _weighted(ex, node, xs[0], *ex.weight(node), out_shape)
    if op in UNARY:
        return _unary(node, xs, ex)
    if op in BINARY and op != "PRelu":
        return {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "Max": torch.maximum,
                "Min": torch.minimum, "Pow": torch.pow}[op](xs[0], xs[1])  # fmt: skip
    if op == "PRelu":
        return torch.where(xs[0] >= 0, xs[0], xs[0] * xs[1])
    if op in ("MaxPool", "AveragePool"):
        return _pool(node, xs[0], ex, out_shape).reshape(out_shape)
    if op in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"):
        return _reduce(node, xs[0], ex).reshape(out_shape)
    if op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
        return xs[0].reshape(out_shape)
    if op == "Concat":
        return torch.cat(xs, dim=int(a["axis"]) % len(out_shape))
    if op == "Pad":
        return _pad(node, xs[0], ex, out_shape)
    if op == "Transpose":
        return xs[0].permute(transpose_perm(node, ex.g))
    if op == "Expand":  # of the same rank, the batch axis kept (batch_mover)
        return xs[0].expand(out_shape)
    if op == "Tile":  # the batch axis is never repeated (batch_mover)
        return xs[0].repeat(*tile_repeats(node, ex.g))
    if op == "Gather":  # never on the batch axis (batch_mover)
        axis, idx = gather_indices(node, ex.g)
        return xs[0].index_select(axis, torch.from_numpy(idx.reshape(-1))).reshape(out_shape)
    if op == "Slice":  # the batch axis is never sliced (batch_mover)
        y = xs[0]
        for axis, kept in enumerate(slice_indices(node, ex.g), start=1):
            y = y.index_select(axis, torch.from_numpy(kept))
        return y
    if op == "LayerNormalization":  # lower_layernorm: axis >= 1, scale and bias of the normalised size
        eps = float(lower_layernorm(node, ex.g).params["epsilon"])  # type: ignore[arg-type]
        dims = out_shape[int(a.get("axis", -1)) % len(out_shape) :]
        return F.layer_norm(xs[0], dims, xs[1].reshape(dims), xs[2].reshape(dims), eps)
    if op == "Resize":
        p = lower_resize(node, ex.g).params
        if node.name not in ex.resize_taps:  # they depend on the node only: built once, not every distillation step
            ex.resize_taps[node.name] = _resize_tables(p)
        return _resize(p, ex.resize_taps[node.name], xs[0], out_shape)
    if op == "Softmax":
        return torch.softmax(xs[0], dim=int(a.get("axis", -1)))
    if op == FAKE_QUANTIZE:  # rounding passes the gradient straight through, clipping does not
        scale, lo, hi = quantization_grid(node)
        v = torch.clamp(xs[0] / scale, lo, hi)
        return (v + (torch.round(v) - v).detach()) * scale
    raise NotImplementedError(f"torch executor: {op}")  # ops.LOWERINGS and this list must stay in step


def _pool(node: Node, x: torch.Tensor, ex: Executor, out_shape: tuple[int, ...]) -> torch.Tensor:
    """MaxPool or AveragePool, 1-D as 2-D. With ceil_mode the last windows reach past the padding:
    the far side is padded further, and an average divides by the elements it counts, as onnxruntime does."""
    kernel = [int(k) for k in node.attrs["kernel_shape"]]
    strides, pads = _pads(node, ex, kernel)
    dil = _ints(node, "dilations", len(kernel), 1)
    if len(kernel) == 1:
        x, kernel, strides, dil, pads = x[:, :, None, :], [1, *kernel], [1, *strides], [1, *dil], [*pads, 0, 0]
    out = out_shape[2:] if len(out_shape) == 4 else (1, *out_shape[2:])
    left, right, top, bottom = pads
    beyond = [0, overhang(out[1], strides[1], kernel[1], dil[1], x.shape[3] + left + right),
              0, overhang(out[0], strides[0], kernel[0], dil[0], x.shape[2] + top + bottom)]
    if node.op == "MaxPool":
        return F.max_pool2d(F.pad(F.pad(x, pads, value=-torch.inf), beyond, value=-torch.inf), kernel, strides,
                            dilation=dil)  # fmt: skip
    if dil == [1, 1]:
        def mean(t: torch.Tensor) -> torch.Tensor:
            return F.avg_pool2d(t, kernel, strides)
    else:
        def mean(t: torch.Tensor) -> torch.Tensor:
            taps = t.new_full((t.shape[1], 1, *kernel), 1 / (kernel[0] * kernel[1]))
            return F.conv2d(t, taps, None, strides, 0, dil, t.shape[1])
    counted = F.pad(torch.ones_like(x[:1, :1]), pads, value=float(node.attrs.get("count_include_pad", 0)))
    return mean(F.pad(F.pad(x, pads), beyond)) / mean(F.pad(counted, beyond))


def _resize_taps(p: dict, axis: str, in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per output position along one axis: source indices and weights, in float32 as lego_resize_taps computes
    them (runtime/lego_data.c)."""
    x, scale, f32 = np.arange(out_len, dtype=np.float32), np.float32(p[f"scale_{axis}"]), np.float32
    c = {0: (x + f32(0.5)) / scale - f32(0.5), 1: x / scale,
         2: x * f32(in_len - 1) / f32(out_len - 1) if out_len > 1 else np.zeros_like(x),
         3: (x + f32(0.5)) / scale - f32(0.5) if out_len > 1 else np.zeros_like(x),
         4: (x + f32(0.5)) / scale}[int(p["coord"])]  # fmt: skip
    if not p["linear"]:
        away = np.where(c >= 0, np.floor(c + f32(0.5)), np.ceil(c - f32(0.5)))  # C's roundf: halves away from zero
        r = {0: np.where(c == np.floor(c) + f32(0.5), np.floor(c), away), 1: away, 2: np.floor(c), 3: np.ceil(c)}[
            int(p["nearest_mode"])]
        i = np.clip(r, 0, in_len - 1).astype(np.int64)
        return i, i, np.ones_like(c), np.zeros_like(c)
    c = np.clip(c, 0, in_len - 1)
    i0 = c.astype(np.int64)
    i1 = np.minimum(i0 + 1, in_len - 1)
    same = i0 == i1
    return i0, i1, np.where(same, f32(0.5), np.abs(c - i1)), np.where(same, f32(0.5), np.abs(c - i0))


ResizeTaps = list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


def _resize_tables(p: dict) -> ResizeTaps:
    """Per resized axis of the NCHW view: (dim, i0, i1, w0, w1), the weights shaped to broadcast along it."""
    tables: ResizeTaps = []
    for dim, axis in ((2, "h"), (3, "w")):
        n_in, n_out = int(p[f"in_{axis}"]), int(p[f"out_{axis}"])
        i0, i1, w0, w1 = (torch.from_numpy(np.ascontiguousarray(a)) for a in _resize_taps(p, axis, n_in, n_out))
        shape = [1, 1, 1, 1]
        shape[dim] = n_out
        tables.append((dim, i0, i1, w0.reshape(shape), w1.reshape(shape)))
    return tables


def _resize(p: dict, tables: ResizeTaps, x: torch.Tensor, out_shape: tuple[int, ...]) -> torch.Tensor:
    """lego_resize_f32 in torch: each axis gathers its two taps and weighs them (NCW runs as NCHW with H = 1)."""
    y = x.reshape(x.shape[0], int(p["channels"]), int(p["in_h"]), int(p["in_w"]))
    for dim, i0, i1, w0, w1 in tables:
        y = y.index_select(dim, i0) * w0.to(y.dtype) + y.index_select(dim, i1) * w1.to(y.dtype)
    return y.reshape(out_shape)


def _unary(node: Node, xs: list[torch.Tensor], ex: Executor) -> torch.Tensor:
    p = lower_unary(node, ex.g).params  # the kernel's own reading of Clip bounds and alphas
    x, alpha, beta = xs[0], float(p["alpha"]), float(p["beta"])  # type: ignore[arg-type]
    gelu = "tanh" if p["op"] == GELU_TANH else "none"
    return {
        "Relu": lambda: F.relu(x),
        # clamp's backward takes four passes over the tensor, hardtanh's one; min > max gives max, as in ONNX
        "Clip": lambda: F.hardtanh(x, min(alpha, beta), beta),
        "LeakyRelu": lambda: F.leaky_relu(x, alpha),
        "Sigmoid": lambda: torch.sigmoid(x),
        "Tanh": lambda: torch.tanh(x),
        "HardSigmoid": lambda: (alpha * x + beta).clamp(0, 1),
        "HardSwish": lambda: F.hardswish(x),
        "Exp": lambda: torch.exp(x),
        "Log": lambda: torch.log(x),
        "Sqrt": lambda: torch.sqrt(x),
        "Neg": lambda: torch.neg(x),
        "Abs": lambda: torch.abs(x),
        "Reciprocal": lambda: torch.reciprocal(x),
        "Erf": lambda: torch.erf(x),
        "Elu": lambda: F.elu(x, alpha),
        "Selu": lambda: beta * F.elu(x, alpha),
        "Softplus": lambda: F.softplus(x),
        "Softsign": lambda: F.softsign(x),
        "Gelu": lambda: F.gelu(x, approximate=gelu),
        "Mish": lambda: F.mish(x),
    }[node.op]()


def _reduce(node: Node, x: torch.Tensor, ex: Executor) -> torch.Tensor:
    lowering = lower_reduce if node.op.startswith("Reduce") else lower_global_pool
    p = lowering(node, ex.g).params  # (outer, reduce, inner) over the batch-1 shape
    outer, red, inner = int(p["outer"]), int(p["reduce"]), int(p["inner"])  # type: ignore[arg-type]
    y = x.reshape(-1, outer, red, inner)
    return y.amax(2) if p["is_max"] else y.mean(2)


def _pad(node: Node, x: torch.Tensor, ex: Executor, out_shape: tuple[int, ...]) -> torch.Tensor:
    p = lower_pad(node, ex.g).params
    begin = [int(v) for v in p["pad_begin"]]  # type: ignore[union-attr]
    pads: list[int] = []
    for d in reversed(range(1, x.ndim)):
        pads += [begin[d], out_shape[d] - x.shape[d] - begin[d]]
    return F.pad(x, pads, value=float(p["value"]))  # type: ignore[arg-type]
