"""Index assignment with error feedback, from calibration data (the first step of `--calib`).

k-means picks each tile's codebook entry by its own error in weight space. What the model feels
is the error in the layer's output, ||X (W - W_hat)||^2 over real inputs X, and there the error of
one tile can be partly undone by the tiles still to be assigned. So, tile column by tile column,
each tile takes the entry of least output error and the weights not yet assigned absorb what it
left (optimal brain surgeon updates with H = X^T X, as GPTQ does for scalar grids and GPTVQ for
vector codebooks: Frantar et al. 2022, van Baalen et al. 2024). The codebook and the format are
unchanged: only which entry each tile points to. Distillation then refines the codebook.
"""

from __future__ import annotations

import numpy as np

from .compress import CompressedModel, relative_error, weight_matrix, weighted_nodes
from .ops import weight_readers
from .ir import Graph, Node

DAMP = 0.01  # of H's mean diagonal, added to its diagonal: keeps the inverse stable when inputs are collinear
CHUNK = 64  # calibration inputs per forward pass while H is accumulated


def input_hessians(g: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """H = X^T X / n of every ungrouped weighted layer, by weight tensor, from the original model's inputs to it."""
    from .calibrate import require_torch

    torch = require_torch()
    from .torchexec import Executor, columns

    ex = Executor(g)
    # A weight that several nodes read errs in each of their outputs: their inputs add up.
    weight_of = {n.name: n.inputs[1] for n in weight_readers(g) if int(n.attrs.get("group", 1)) == 1}
    sums: dict[str, object] = {}
    counts: dict[str, int] = {}

    def accumulate(node: Node, t) -> None:  # type: ignore[no-untyped-def]
        w = weight_of.get(node.name)
        if w is not None:
            cols = columns(ex, node, t).double()
            sums[w] = sums.get(w, 0) + cols.T @ cols  # type: ignore[operator]
            counts[w] = counts.get(w, 0) + cols.shape[0]

    with torch.no_grad():
        for s in range(0, len(x), CHUNK):
            ex(torch.from_numpy(x[s : s + CHUNK]), on_input=accumulate)
    return {name: sums[name].numpy() / counts[name] for name in sums}  # type: ignore[attr-defined]


def reassign(g: Graph, cm: CompressedModel, hessians: dict[str, np.ndarray]) -> None:
    """Re-pick every tile's codebook entry of the tiled layers in `hessians`, in place."""
    for node in weighted_nodes(g):
        lw = cm.layers[node.inputs[1]]
        if node.inputs[1] not in hessians or lw.storage != "tiled":
            continue
        assert lw.codebook is not None
        m = weight_matrix(node, g).astype(np.float64)
        if lw.scale is not None:
            m = m / lw.scale[:, None]  # indices address the per-channel-normalised weights
        centroids = cm.codebooks[lw.codebook].centroids.astype(np.float64)
        lw.assign(_assign(m, hessians[node.inputs[1]], centroids, lw.tile))
        lw.rel_error = relative_error(cm.matrix(lw.tensor), weight_matrix(node, g))


def _assign(m: np.ndarray, h: np.ndarray, centroids: np.ndarray, tile: tuple[int, int]) -> np.ndarray:
    """Tile-row-major indices for matrix `m` (rows, cols) under input second moments `h` (cols, cols)."""
    r, c = tile
    rows, cols = m.shape
    tr, tc = -(-rows // r), -(-cols // c)
    w = np.zeros((tr * r, tc * c))
    w[:rows, :cols] = m
    full = np.eye(tc * c) * 1e-6 * float(np.mean(np.diag(h)) or 1.0)  # padded columns: no input, no coupling
    full[:cols, :cols] = h
    full[np.diag_indices(tc * c)] += DAMP * float(np.mean(np.diag(full)))
    hinv = np.linalg.inv(full)
    row_mask = (np.arange(tr * r) < rows).astype(np.float64).reshape(tr, r)
    cb = centroids.reshape(-1, r, c)
    out = np.empty((tr, tc), dtype=np.int64)
    for j in range(tc):
        b, rest = slice(j * c, (j + 1) * c), slice((j + 1) * c, tc * c)
        metric = np.linalg.inv(hinv[b, b])  # output error of a change in these columns, the rest compensating
        block = w[:, b].reshape(tr, r, c)
        cross = np.einsum("trc,cd,krd->trk", block, metric, cb)
        own = np.einsum("krc,cd,krd->kr", cb, metric, cb)
        cost = (row_mask[:, :, None] * (own.T[None] - 2 * cross)).sum(1)  # (tiles, K), up to a per-tile constant
        out[:, j] = cost.argmin(1)
        err = (block - cb[out[:, j]]).reshape(tr * r, c)
        update = metric @ hinv[b, rest]
        w[:, rest] -= err @ update
        hinv[rest, rest] -= hinv[rest, b] @ update
    return out.reshape(-1)
