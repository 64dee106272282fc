"""Block weight clustering (LegoNet) over the IR's Conv, Gemm and MatMul weights.

Every weight is viewed as a 2-D matrix (out_channels, reduction) with the reduction axis in
ONNX's own order (in_channel, kh, kw): that is `W.reshape(out, -1)` with no transpose. A tile
is `rows x cols`: `rows` consecutive output channels by `cols` consecutive reduction
positions. Why this orientation: the C kernels decode one tile and apply it to `rows` output
planes at once, so each decoded weight is reused across a whole output plane; keeping ONNX's
reduction order means the 2-D view needs no data movement and is the view LegoNet clusters.
Edges are zero-padded to whole tiles. See docs/format.md for the stored layout.

A plan is per layer (a `LayerWeights` record): tile shape, codebook, index width, optional
per-output-channel scales, and the storage type of values, scales and biases. LegoNet's
setting (4x4 tiles, one global codebook, no scales) is one plan among many.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from .errors import UsageError
from .ir import Graph, Node
from .moments import activation_moments, mean_response
from .ops import WEIGHTED_OPS, weight_readers
from .packing import pack_indices

FIT_SAMPLE = 65536  # k-means is fitted on at most this many tiles, then every tile is assigned
ASSIGN_CHUNK = 65536
DTYPES = {"f32": np.float32, "f16": np.float16, "i8": np.int8}
F16_MAX = float(np.finfo(np.float16).max)
DTYPE_BYTES = {"f32": 4, "f16": 2, "i8": 1}
STORED = ("f32", "f16", "i8")  # storage types of codebooks, scales and biases
MIN_SCALE_CODE = 16  # int8 scales: a layer whose smallest scale would take fewer codes keeps fp16 (`_side_dtype`)
UNIT_BYTES = 4  # an int8 array's power of two, counted as a float although the C code keeps its exponent


@dataclass(frozen=True)
class LayerPlan:
    """How one layer is stored: a per-layer override of the model-wide options."""

    storage: str = "tiled"  # "tiled", or dense: "f32" | "f16" | "i8" (int8 with per-channel scales)
    tile: tuple[int, int] = (4, 4)
    k: int = 32
    group: str = "global"  # layers in the same group share one codebook (same tile and K)
    channel_scales: bool = False

    def validate(self, node: str) -> None:
        if self.storage not in ("tiled", "f32", "f16", "i8"):
            raise UsageError(f"plan for '{node}': storage '{self.storage}' is not tiled, f32, f16 or i8")
        r, c = self.tile
        if not (2 <= self.k <= 65536 and 1 <= r <= 8 and 1 <= c <= 8):
            raise UsageError(f"plan for '{node}': K={self.k}, tile {r}x{c} out of range (K 2..65536, sides 1..8)")


@dataclass(frozen=True)
class CompressOptions:
    k: int = 32
    tile: tuple[int, int] = (4, 4)
    scope: str = "global"  # one codebook for the model ("global") or one per layer ("layer")
    channel_scales: bool = False  # normalise each output channel before clustering
    codebook_dtype: str = "f32"  # f32 | f16 | i8 (int8 codes times a power of two; needs channel scales)
    side_dtype: str = "f32"  # scales and biases: f32 | f16 | i8 (int8 codes times a power of two per array)
    protect: tuple[str, ...] = ()  # node names, "first" or "last": kept dense at protect_dtype
    protect_dtype: str = "i8"  # i8 (per-channel scales) | f16 | f32
    exclude: tuple[str, ...] = ()  # kept dense float32
    bias_correction: bool = False  # data-free: from BatchNorm statistics (lego2c.moments)
    enabled: bool = True
    seed: int = 0
    plans: tuple[tuple[str, LayerPlan], ...] = ()  # per-node overrides, e.g. from a budget search

    def validate(self) -> None:
        if not self.enabled:
            return
        if not 2 <= self.k <= 65536:
            raise UsageError(f"-K {self.k} is out of range", hint="K must be between 2 and 65536")
        r, c = self.tile
        if not (1 <= r <= 8 and 1 <= c <= 8):
            raise UsageError(f"tile {r}x{c} is out of range", hint="tile sides must be between 1 and 8")
        checks = [("--scope", self.scope, ("global", "layer")), ("--codebook-dtype", self.codebook_dtype, STORED),
                  ("--side-dtype", self.side_dtype, STORED), ("--protect-dtype", self.protect_dtype, ("i8", "f16", "f32"))]  # fmt: skip
        for flag, value, allowed in checks:
            if value not in allowed:
                raise UsageError(f"{flag} {value} is not one of {', '.join(allowed)}")
        for node, plan in self.plans:
            plan.validate(node)

    def layer_plans(self, nodes: list[Node]) -> dict[str, LayerPlan]:
        """The plan of every weighted node: --exclude, then explicit plans, then --protect, then the defaults."""
        names = {n.name for n in nodes}
        excluded = _resolve(self.exclude, nodes, names, "--exclude")
        protected = _resolve(self.protect, nodes, names, "--protect")
        explicit = dict(self.plans)
        unknown = sorted(set(explicit) - names)
        if unknown:
            raise UsageError(f"plans name no weighted node: {', '.join(unknown)}")
        plans = {}
        for n in nodes:
            if not self.enabled or n.name in excluded:
                plans[n.name] = LayerPlan(storage="f32")
            elif n.name in explicit:
                plans[n.name] = explicit[n.name]
            elif n.name in protected:
                plans[n.name] = LayerPlan(storage=self.protect_dtype)
            else:
                group = "global" if self.scope == "global" else n.name
                plans[n.name] = LayerPlan("tiled", self.tile, self.k, group, self.channel_scales)
        return plans


# Named plans. "legonet" is the paper's literal setting, kept for comparison.
# "safe" is the measured data-free default (docs/accuracy.md): scalar codebooks of 16 per layer on
# per-channel-scaled weights, the first and last layer in int8, codebooks, scales and biases in int8
# (measured against fp16 in docs/accuracy.md: the same accuracy, and about 1 KB of 11 more for indices at 28x).
RECIPES: dict[str, CompressOptions] = {
    "safe": CompressOptions(k=16, tile=(1, 1), scope="layer", channel_scales=True, codebook_dtype="i8",
                            side_dtype="i8", protect=("first", "last"), protect_dtype="i8",
                            bias_correction=True),  # fmt: skip
    "legonet": CompressOptions(k=32, tile=(4, 4), scope="global"),
    "legonet16": CompressOptions(k=16, tile=(4, 4), scope="global"),
}
DEFAULT_RECIPE = "safe"  # the options the CLI's default starts from, and all of it without BatchNorm statistics
AUTO = "auto"  # the CLI's default: DEFAULT_RECIPE, then synthetic calibration and a searched plan (search.default_plan)


@dataclass
class Codebook:
    name: str
    tile: tuple[int, int]
    centroids: np.ndarray  # (K, rows*cols), each tile row-major, exactly as stored (float32 view)
    dtype: str = "f32"

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def bits(self) -> int:
        return max(1, math.ceil(math.log2(self.k)))

    @property
    def nbytes(self) -> int:
        return stored_bytes(self.centroids.size, self.dtype)


@dataclass
class LayerWeights:
    """How one layer's weight is stored: the per-layer record of the compressed format."""

    node: str
    tensor: str
    op: str
    shape: tuple[int, ...]  # original tensor shape
    rows: int  # 2-D view: output channels
    cols: int  # 2-D view: reduction length
    storage: str  # "tiled" (codebook + packed indices) or "dense"
    tile: tuple[int, int]
    dtype: str = "f32"  # of dense values, or of the codebook
    codebook: str | None = None
    bits: int = 0  # packed index width
    indices: np.ndarray | None = None  # one per tile, tile-row-major
    packed: bytes = b""
    values: np.ndarray | None = None  # dense storage: (rows, cols) as stored (f32, f16 or i8)
    scale: np.ndarray | None = None  # per output channel, as stored (float32 view)
    bias: np.ndarray | None = None  # per output channel, as stored (float32 view)
    side_dtype: str = "f32"
    rel_error: float = 0.0

    @property
    def params(self) -> int:
        return self.rows * self.cols

    def assign(self, indices: np.ndarray) -> None:
        """Store one codebook entry per tile, packed at the layer's index width."""
        self.indices = indices
        self.packed = pack_indices(indices, self.bits)

    @property
    def n_tiles(self) -> int:
        r, c = self.tile
        return -(-self.rows // r) * -(-self.cols // c)

    @property
    def nbytes(self) -> int:
        """Bytes this layer stores itself (its codebook is counted once, separately)."""
        side = sum(stored_bytes(a.size, self.side_dtype) for a in (self.scale, self.bias) if a is not None)
        main = len(self.packed) if self.storage == "tiled" else self.params * DTYPE_BYTES[self.dtype]
        return main + side


@dataclass
class CompressedModel:
    options: CompressOptions
    layers: dict[str, LayerWeights] = field(default_factory=dict)  # by weight tensor name
    codebooks: dict[str, Codebook] = field(default_factory=dict)
    bias_corrected: int = 0  # layers whose bias took back their mean output shift (data-free)
    bn_stats: bool = False  # the model kept BatchNorm statistics to correct from

    def matrix(self, tensor: str) -> np.ndarray:
        """The effective (rows, cols) float32 weight the C code computes with."""
        lw = self.layers[tensor]
        if lw.storage == "dense":
            assert lw.values is not None
            m = lw.values.astype(np.float32)
        else:
            assert lw.indices is not None and lw.codebook is not None
            m = _untile(self.codebooks[lw.codebook].centroids[lw.indices], lw.rows, lw.cols, lw.tile)
        return m * lw.scale[:, None] if lw.scale is not None else m


def weight_matrix(node: Node, g: Graph) -> np.ndarray:
    """A layer's weight as (out_channels, reduction), in the orientation the kernels use."""
    w = g.const(node.inputs[1])
    assert w is not None
    if node.op == "MatMul":  # stored (K, N): out features are columns
        return np.ascontiguousarray(w.T)
    if node.op == "ConvTranspose":  # (in, out/groups, *kernel): rows are out channels, as for a Conv
        groups, cin_g, cout_g, *kernel = _transposed_groups(node, w.shape)
        flipped = np.flip(w.reshape(groups, cin_g, cout_g, *kernel).swapaxes(1, 2), tuple(range(3, 3 + len(kernel))))
        return np.ascontiguousarray(flipped).reshape(groups * cout_g, -1)
    return w.reshape(w.shape[0], -1)


def from_matrix(node: Node, m: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `weight_matrix`."""
    if node.op == "ConvTranspose":
        groups, cin_g, cout_g, *kernel = _transposed_groups(node, shape)
        m = np.flip(m.reshape(groups, cout_g, cin_g, *kernel), tuple(range(3, 3 + len(kernel)))).swapaxes(1, 2)
    return np.ascontiguousarray(m.T if node.op == "MatMul" else m.reshape(shape), dtype=np.float32)


def _transposed_groups(node: Node, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A ConvTranspose weight's shape by group: (groups, in/groups, out/groups, *kernel). Its matrix holds the
    kernel flipped, so that a column is what the equivalent Conv over the zero-inserted input multiplies."""
    groups = int(node.attrs.get("group", 1))
    return (groups, shape[0] // groups, *shape[1:])


def bias_of(node: Node, g: Graph) -> np.ndarray | None:
    if node.op in WEIGHTED_OPS and len(node.inputs) > 2 and node.inputs[2]:
        b = g.const(node.inputs[2])
        return None if b is None else b.reshape(-1).astype(np.float32)
    return None


def weighted_nodes(g: Graph) -> list[Node]:
    """One node per layer: the first that reads each weight. Nodes that read the same weight (tied weights, the
    steps of an unrolled recurrence) share one stored layer; the frontend unties those that read it differently."""
    first: dict[str, Node] = {}
    for n in weight_readers(g):
        first.setdefault(n.inputs[1], n)
    return list(first.values())


def tiles_of(m: np.ndarray, tile: tuple[int, int]) -> np.ndarray:
    """Cut a matrix into zero-padded tiles: (n_tiles, rows*cols), tile-row-major."""
    r, c = tile
    tr, tc = -(-m.shape[0] // r), -(-m.shape[1] // c)
    padded = np.zeros((tr * r, tc * c), dtype=np.float32)
    padded[: m.shape[0], : m.shape[1]] = m
    return padded.reshape(tr, r, tc, c).transpose(0, 2, 1, 3).reshape(tr * tc, r * c)


def _untile(tiles: np.ndarray, rows: int, cols: int, tile: tuple[int, int]) -> np.ndarray:
    r, c = tile
    tr, tc = -(-rows // r), -(-cols // c)
    return tiles.reshape(tr, tc, r, c).transpose(0, 2, 1, 3).reshape(tr * r, tc * c)[:rows, :cols]


def as_stored(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round float values to a storage type and back: exactly what the C code will read.

    "i8" stores int8 codes and one power of two for the whole array (`pow2_exponent`): a power of
    two keeps code times unit exact in float32, and can be read back from the stored values alone.
    """
    x = np.asarray(x, dtype=np.float32)
    if dtype != "i8":
        return x.astype(DTYPES[dtype]).astype(np.float32)
    unit = _unit(x)
    return (np.clip(np.round(x / unit), -127, 127) * unit).astype(np.float32)


def stored_scales(x: np.ndarray, dtype: str) -> np.ndarray:
    """Positive per-channel scales as stored, never rounded to zero (an all-zero channel would divide by it)."""
    x = np.asarray(x, dtype=np.float32)
    if dtype != "i8":
        tiny = np.float32(np.finfo(DTYPES[dtype]).tiny)
        return as_stored(np.maximum(x, tiny), dtype)
    unit = _unit(x)
    return (np.clip(np.ceil(x / unit), 1, 127) * unit).astype(np.float32)  # up: int8 values never clip


def _side_dtype(channel_max: np.ndarray | None, bias: np.ndarray | None, requested: str) -> str:
    """The storage of one layer's scales (`channel_max`, None for a layer without) and biases: the requested
    one, widened where the values need it. int8 only where every channel's scale keeps MIN_SCALE_CODE codes:
    scales only normalise before clustering, so they round up; but a channel whose scale rounds from 0.3
    codes to 1 is no longer normalised, and its weights see a fraction of the codebook (DS-CNN's first
    depthwise layer spans 100x across channels: int8 there cost 0.3 points, docs/accuracy.md). float16
    only where every value is within its range.
    """
    dtype = requested
    if requested == "i8" and channel_max is not None and np.any(channel_max > 0):
        codes = stored_scales(channel_max, "i8") / _unit(channel_max)
        dtype = "i8" if codes.min() >= MIN_SCALE_CODE else "f16"
    values = [a for a in (channel_max, bias) if a is not None and a.size]
    if dtype == "f16" and values and max(float(np.abs(a).max()) for a in values) > F16_MAX:
        return "f32"
    return dtype


def stored_bytes(n: int, dtype: str) -> int:
    """Bytes of an array of `n` values stored as `dtype`; an int8 array also stores its unit."""
    return n * DTYPE_BYTES[dtype] + (UNIT_BYTES if dtype == "i8" else 0)


def _unit(x: np.ndarray) -> np.float32:
    return np.float32(2.0 ** _unit_exponent(x))


def _unit_exponent(x: np.ndarray) -> int:
    """The smallest power of two that puts every value within 127 codes, and a normal float32 (as C's lego_pow2 needs)."""
    top = float(np.abs(x).max()) if x.size else 0.0
    return max(int(np.ceil(np.log2(top / 127))), -126) if top > 0 else 0


def pow2_exponent(stored: np.ndarray) -> int:
    """The exponent of an "i8" array's unit, read back from its stored values (its largest code is 64..127)."""
    return _unit_exponent(np.asarray(stored, dtype=np.float64))


def _resolve(names: tuple[str, ...], nodes: list[Node], all_names: set[str], flag: str) -> set[str]:
    out = set()
    for name in names:
        if name in ("first", "last"):  # a model without weighted layers has neither
            out.update([nodes[0 if name == "first" else -1].name] if nodes else [])
        elif name in all_names:
            out.add(name)
        else:
            raise UsageError(f"{flag} names no weighted node: {name}", hint="node names are listed by `lego2c inspect`")
    return out


def integer_weights(m: np.ndarray, bits: int, side_dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel integers of `bits` bits (as floats), and their scales as `side_dtype` stores them."""
    qmax = 2 ** (bits - 1) - 1
    scale = stored_scales(np.abs(m).max(axis=1) / qmax, side_dtype)
    return np.clip(np.round(m / scale[:, None]), -qmax, qmax), scale


def _dense(lw: LayerWeights, m: np.ndarray, dtype: str, side_dtype: str) -> None:
    """Keep a weight dense: float32, float16, or int8 with a scale per output channel."""
    lw.storage, lw.dtype, lw.side_dtype = "dense", dtype, side_dtype
    if dtype == "i8":
        codes, lw.scale = integer_weights(m, 8, side_dtype)
        lw.values = codes.astype(np.int8)
    else:
        _refuse_f16_overflow(m, dtype, f"layer '{lw.node}'", "--protect-dtype i8 or f32")
        lw.values = m.astype(DTYPES[dtype])


def _refuse_f16_overflow(values: np.ndarray, dtype: str, what: str, instead: str) -> None:
    """float16 turns values past its range into Inf: say so rather than store them."""
    top = float(np.abs(values).max()) if values.size else 0.0
    if dtype == "f16" and top > F16_MAX:
        raise UsageError(f"{what} holds values up to {top:.3g}, beyond float16's range ({F16_MAX:,.0f})",
                         hint=f"store it with {instead}")


def compress(g: Graph, opts: CompressOptions, progress: bool = True) -> CompressedModel:
    """Store every weight by its layer plan; cluster the tiled ones, codebook group by group."""
    opts.validate()
    result = CompressedModel(opts)
    nodes = weighted_nodes(g)
    plans = opts.layer_plans(nodes)
    groups: dict[str, list[tuple[LayerWeights, np.ndarray]]] = {}
    for node in nodes:
        plan = plans[node.name]
        m = weight_matrix(node, g).astype(np.float32)
        lw = LayerWeights(node.name, node.inputs[1], node.op, g.shape(node.inputs[1]), m.shape[0], m.shape[1],
                          storage="dense", tile=plan.tile)  # fmt: skip
        result.layers[lw.tensor] = lw
        bias = bias_of(node, g)
        if plan.storage == "f32" and not plan.channel_scales:
            _dense(lw, m, "f32", "f32")  # exactly the original, biases included
            lw.bias = bias
            continue
        scaled = plan.storage == "i8" or (plan.storage == "tiled" and plan.channel_scales)
        channel_max = np.abs(m).max(axis=1)
        side = _side_dtype(channel_max if scaled else None, bias, opts.side_dtype)
        lw.bias = None if bias is None else as_stored(bias, side)
        if plan.storage != "tiled":
            _dense(lw, m, plan.storage, side)
            lw.rel_error = relative_error(result.matrix(lw.tensor), m)
            continue
        lw.storage, lw.side_dtype, lw.dtype, lw.codebook = "tiled", side, opts.codebook_dtype, plan.group
        if plan.channel_scales:
            lw.scale = stored_scales(channel_max, side)
            m = m / lw.scale[:, None]
        elif opts.codebook_dtype == "i8":
            raise UsageError(f"layer '{node.name}': int8 codebooks need channel scales (they carry the codebook's unit)",
                             hint="add --channel-scales, or use --codebook-dtype f16")  # fmt: skip
        members = groups.setdefault(plan.group, [])
        if members and (members[0][0].tile != plan.tile or plans[members[0][0].node].k != plan.k):
            raise UsageError(f"codebook group '{plan.group}' mixes tile shapes or K values",
                             hint="layers that share a codebook need the same tile and K")  # fmt: skip
        members.append((lw, tiles_of(m, plan.tile)))
    for i, (name, members) in enumerate(groups.items()):
        k, tile = plans[members[0][0].node].k, members[0][0].tile
        all_tiles = np.concatenate([t for _, t in members])
        centroids, labels = _cluster(all_tiles, k, opts.seed, progress, f"[{i + 1}/{len(groups)}] {name}")
        _refuse_f16_overflow(centroids, opts.codebook_dtype, f"codebook '{name}'",
                             "--channel-scales (which normalise it) or --codebook-dtype f32")
        cb = Codebook(name, tile, as_stored(centroids, opts.codebook_dtype), opts.codebook_dtype)
        result.codebooks[name] = cb
        start = 0
        for lw, t in members:
            lw.bits = cb.bits
            lw.assign(labels[start : start + len(t)])
            start += len(t)
    moments = activation_moments(g) if opts.bias_correction else {}
    result.bn_stats = bool(g.bn_stats)
    for node in nodes:
        lw = result.layers[node.inputs[1]]
        approx, exact = result.matrix(lw.tensor), weight_matrix(node, g)
        if lw.storage == "tiled":
            lw.rel_error = relative_error(approx, exact)
        if lw.bias is not None and node.inputs[0] in moments and lw.rel_error > 0:
            # The mean output shift the approximation causes, taken back by the bias.
            shift = mean_response(g, node, from_matrix(node, approx - exact, lw.shape), moments[node.inputs[0]][0])
            lw.bias = as_stored(lw.bias - shift, lw.side_dtype)
            result.bias_corrected += 1
    return result


def relative_error(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(approx - exact)) / (float(np.linalg.norm(exact)) or 1.0)


def _cluster(x: np.ndarray, k: int, seed: int, progress: bool, label: str) -> tuple[np.ndarray, np.ndarray]:
    """k-means with a fixed seed; exact when there are no more distinct tiles than K."""
    rng = np.random.default_rng(seed)
    fit = x if len(x) <= FIT_SAMPLE else x[np.sort(rng.choice(len(x), FIT_SAMPLE, replace=False))]
    # The exact check sorts every tile; a sample with more than K distinct tiles already rules it out.
    if len(np.unique(fit, axis=0)) <= k:
        uniq, inverse = np.unique(x, axis=0, return_inverse=True)
        if len(uniq) <= k:
            return uniq.astype(np.float32), inverse.reshape(-1).astype(np.int64)
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn()]
    with Progress(*columns, transient=True, disable=not progress) as bar:
        task = bar.add_task(f"k-means {label}: {len(x)} tiles -> K={k}", total=len(x))
        # scikit-learn adds its threads' partial centroid sums in the order the threads finish: two sums
        # commute, three or more change their last bits from run to run (sklearn/cluster/_k_means_lloyd.pyx).
        with threadpool_limits(limits=2, user_api="openmp"):
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
    """Each stored weight and bias as the C code sees it, in the tensors' original shapes."""
    out: dict[str, np.ndarray] = {}
    for node in weighted_nodes(g):
        lw = cm.layers[node.inputs[1]]
        if lw.storage == "dense" and lw.dtype == "f32":
            continue  # stored exactly
        out[lw.tensor] = from_matrix(node, cm.matrix(lw.tensor), lw.shape)
        if lw.bias is not None:
            out[node.inputs[2]] = lw.bias.reshape(g.shape(node.inputs[2]))
    return out
