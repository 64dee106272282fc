"""Block weight clustering (LegoNet) over the IR's Conv, Gemm and MatMul weights.

Every weight is viewed as a 2-D matrix (out_channels, reduction) with the reduction axis in
ONNX's own order (in_channel, kh, kw): that is `W.reshape(out, -1)` with no transpose. A tile
is `rows x cols`: `rows` consecutive output channels by `cols` consecutive reduction
positions. Why this orientation: the C kernels decode one tile and apply it to `rows` output
planes at once, so each decoded weight is reused across a whole output plane; keeping ONNX's
reduction order means the 2-D view needs no data movement and is the view LegoNet clusters.
Edges are zero-padded to whole tiles. See docs/format.md for the stored layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from rich.progress import Progress, SpinnerColumn, TextColumn, BarColumn, TimeElapsedColumn
from sklearn.cluster import KMeans

from .errors import UsageError
from .ir import Graph, Node
from .packing import pack_indices

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
FIT_SAMPLE = 65536  # k-means is fitted on at most this many tiles, then every tile is assigned
ASSIGN_CHUNK = 65536


@dataclass(frozen=True)
class CompressOptions:
    k: int = 32
    tile: tuple[int, int] = (4, 4)
    exclude: tuple[str, ...] = ()
    enabled: bool = True
    seed: int = 0

    def validate(self) -> None:
        if not self.enabled:
            return
        if not 2 <= self.k <= 65536:
            raise UsageError(f"-K {self.k} is out of range", hint="K must be between 2 and 65536")
        r, c = self.tile
        if not (1 <= r <= 8 and 1 <= c <= 8):
            raise UsageError(f"tile {r}x{c} is out of range", hint="tile sides must be between 1 and 8")


@dataclass
class Codebook:
    name: str
    tile: tuple[int, int]
    centroids: np.ndarray  # (K, rows*cols) float32, each tile row-major

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def bits(self) -> int:
        return max(1, math.ceil(math.log2(self.k)))

    @property
    def nbytes(self) -> int:
        return self.centroids.size * 4


@dataclass
class LayerWeights:
    """How one layer's weight is stored: the per-layer record of the compressed format."""

    node: str
    tensor: str
    op: str
    shape: tuple[int, ...]  # original tensor shape
    rows: int  # 2-D view: output channels
    cols: int  # 2-D view: reduction length
    storage: str  # "tiled" (codebook + packed indices) or "dense" (float32)
    tile: tuple[int, int]
    codebook: str | None = None
    bits: int = 0  # packed index width
    indices: np.ndarray | None = None  # one per tile, tile-row-major
    packed: bytes = b""
    rel_error: float = 0.0

    @property
    def params(self) -> int:
        return self.rows * self.cols

    @property
    def n_tiles(self) -> int:
        r, c = self.tile
        return -(-self.rows // r) * -(-self.cols // c)

    @property
    def nbytes(self) -> int:
        return len(self.packed) if self.storage == "tiled" else self.params * 4


@dataclass
class CompressedModel:
    options: CompressOptions
    layers: dict[str, LayerWeights] = field(default_factory=dict)  # by weight tensor name
    codebooks: dict[str, Codebook] = field(default_factory=dict)

    def matrix(self, tensor: str) -> np.ndarray:
        """The (rows, cols) float32 matrix the C code computes with."""
        lw = self.layers[tensor]
        if lw.storage == "dense":
            raise KeyError(f"{tensor} is dense")
        assert lw.indices is not None and lw.codebook is not None
        cb = self.codebooks[lw.codebook]
        r, c = lw.tile
        tr, tc = -(-lw.rows // r), -(-lw.cols // c)
        tiles = cb.centroids[lw.indices].reshape(tr, tc, r, c)
        return tiles.transpose(0, 2, 1, 3).reshape(tr * r, tc * c)[: lw.rows, : lw.cols]


def weight_matrix(node: Node, g: Graph) -> np.ndarray:
    """A layer's weight as (out_channels, reduction), in the orientation the kernels use."""
    w = g.const(node.inputs[1])
    assert w is not None
    if node.op == "MatMul":  # stored (K, N): out features are columns
        return np.ascontiguousarray(w.T)
    return w.reshape(w.shape[0], -1)


def from_matrix(node: Node, m: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `weight_matrix`."""
    return np.ascontiguousarray(m.T if node.op == "MatMul" else m.reshape(shape), dtype=np.float32)


def weighted_nodes(g: Graph) -> list[Node]:
    return [n for n in g.nodes if n.op in WEIGHTED_OPS and g.const(n.inputs[1]) is not None]


def tiles_of(m: np.ndarray, tile: tuple[int, int]) -> np.ndarray:
    """Cut a matrix into zero-padded tiles: (n_tiles, rows*cols), tile-row-major."""
    r, c = tile
    tr, tc = -(-m.shape[0] // r), -(-m.shape[1] // c)
    padded = np.zeros((tr * r, tc * c), dtype=np.float32)
    padded[: m.shape[0], : m.shape[1]] = m
    return padded.reshape(tr, r, tc, c).transpose(0, 2, 1, 3).reshape(tr * tc, r * c)


def compress(g: Graph, opts: CompressOptions, progress: bool = True) -> CompressedModel:
    """Cluster every non-excluded weight's tiles into one global codebook."""
    opts.validate()
    result = CompressedModel(opts)
    nodes = weighted_nodes(g)
    names = {n.name for n in g.nodes}
    unknown = [e for e in opts.exclude if e not in names]
    if unknown:
        raise UsageError(
            f"--exclude names no node: {', '.join(unknown)}",
            hint="node names are listed by `lego2c inspect`",
        )
    clustered: list[tuple[LayerWeights, np.ndarray]] = []
    for node in nodes:
        m = weight_matrix(node, g)
        lw = LayerWeights(node.name, node.inputs[1], node.op, g.shape(node.inputs[1]), m.shape[0], m.shape[1],
                          storage="dense", tile=opts.tile)  # fmt: skip
        result.layers[lw.tensor] = lw
        if opts.enabled and node.name not in opts.exclude:
            lw.storage = "tiled"
            lw.codebook = "global"
            clustered.append((lw, tiles_of(m, opts.tile)))
    if not clustered:
        return result
    all_tiles = np.concatenate([t for _, t in clustered])
    centroids, labels = _cluster(all_tiles, opts.k, opts.seed, progress)
    cb = Codebook("global", opts.tile, centroids)
    result.codebooks[cb.name] = cb
    start = 0
    for lw, t in clustered:
        lw.indices = labels[start : start + len(t)]
        start += len(t)
        lw.bits = cb.bits
        lw.packed = pack_indices(lw.indices, cb.bits)
        lw.rel_error = float(np.linalg.norm(cb.centroids[lw.indices] - t)) / (float(np.linalg.norm(t)) or 1.0)
    return result


def _cluster(x: np.ndarray, k: int, seed: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """k-means with a fixed seed; exact when there are no more distinct tiles than K."""
    uniq, inverse = np.unique(x, axis=0, return_inverse=True)
    if len(uniq) <= k:
        return uniq.astype(np.float32), inverse.reshape(-1).astype(np.int64)
    rng = np.random.default_rng(seed)
    fit = x if len(x) <= FIT_SAMPLE else x[np.sort(rng.choice(len(x), FIT_SAMPLE, replace=False))]
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn()]
    with Progress(*columns, transient=True, disable=not progress) as bar:
        task = bar.add_task(f"k-means: {len(x)} tiles -> K={k}", total=len(x))
        km = KMeans(n_clusters=k, n_init=1, random_state=seed, max_iter=100).fit(fit.astype(np.float64))
        centroids = km.cluster_centers_.astype(np.float32)
        labels = np.empty(len(x), dtype=np.int64)
        for s in range(0, len(x), ASSIGN_CHUNK):
            chunk = x[s : s + ASSIGN_CHUNK]
            d = (chunk**2).sum(1)[:, None] - 2 * chunk @ centroids.T + (centroids**2).sum(1)[None, :]
            labels[s : s + len(chunk)] = d.argmin(1)
            bar.advance(task, len(chunk))
    return centroids, labels


def reconstructed_weights(g: Graph, cm: CompressedModel) -> dict[str, np.ndarray]:
    """Each tiled weight as the C code sees it, in the tensor's original shape."""
    by_tensor = {n.inputs[1]: n for n in weighted_nodes(g)}
    return {
        name: from_matrix(by_tensor[name], cm.matrix(name), lw.shape)
        for name, lw in cm.layers.items()
        if lw.storage == "tiled"
    }

