"""Budget search: the user states a size (or an accuracy floor), the tool picks each layer's plan.

Each weighted layer can take one option from `MENU` (a tile shape and K with its own codebook
and per-channel scales, or dense int8). The cost of an option is the bytes it stores; its
damage is the relative squared error it causes in the model's logits when that layer alone is
compressed that way, measured on the calibration data when given and otherwise on random
inputs in the model's input range (data-free); with data, after bias correction, as the
calibrated model will be. Damages are taken as additive, and a Lagrangian
sweep picks, for every budget, the plan of least total damage (DESIGN.md section 1: a plan
from measured sensitivity lost about half of what one setting everywhere lost).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .compress import DEFAULT_RECIPE, CompressedModel, CompressOptions, LayerPlan, compress, reconstructed_weights, weighted_nodes
from .calibrate import LayerBiasCorrection
from .codegen import generate
from .errors import UsageError
from .evaluate import check_inputs, model_outputs
from .ir import Graph
from .ops import batch_mover
from .report import sizes
from .reassign import input_hessians, reassign
from .verify import test_input

# (tile, K) of the tiled options, from 4 down to 0.25 index bits per weight, plus dense int8. Small K at
# large tiles matters for tight budgets: a per-layer codebook of 256 4x4 tiles alone takes 8 KB in fp16.
MENU: tuple[tuple[tuple[int, int], int], ...] = (
    ((1, 1), 16), ((2, 1), 256), ((1, 1), 8), ((2, 1), 64), ((1, 1), 4), ((2, 1), 16), ((2, 2), 256),
    ((1, 2), 8), ((2, 2), 64), ((1, 3), 16), ((2, 2), 32), ((2, 2), 16), ((1, 4), 16), ((4, 1), 16),
    ((4, 2), 256), ((2, 4), 64), ((2, 4), 16), ((4, 4), 256), ((4, 4), 64), ((4, 4), 16),
)  # fmt: skip
RANDOM_INPUTS = 256  # for the data-free measurement
MEASURE = 512  # at most this many calibration inputs are used to measure damage


@dataclass(frozen=True)
class Option:
    plan: LayerPlan
    nbytes: int  # indices (or dense values), scales, biases and the layer's own codebook
    damage: float  # relative squared logit error with this layer alone compressed this way

    @property
    def label(self) -> str:
        p = self.plan
        return f"dense {p.storage}" if p.storage != "tiled" else f"{p.tile[0]}x{p.tile[1]} K={p.k}"


@dataclass
class Sensitivity:
    options: dict[str, list[Option]]  # per weighted node
    fixed_bytes: int  # model data that no plan changes (other constants)
    params: int
    weights: dict[str, int]  # per weighted node
    data: str  # what the damage was measured on

    def total(self, choice: dict[str, Option]) -> int:
        return self.fixed_bytes + sum(o.nbytes for o in choice.values())

    def smallest(self) -> dict[str, Option]:
        """Every layer at its option of fewest bytes."""
        return {n: min(opts, key=lambda o: o.nbytes) for n, opts in self.options.items()}

    def least_damage(self) -> dict[str, Option]:
        """Every layer at its option of least damage (the fewer bytes on a tie): the largest plan worth having."""
        return {n: min(opts, key=lambda o: (o.damage, o.nbytes)) for n, opts in self.options.items()}


def random_inputs(g: Graph, n: int = RANDOM_INPUTS, seed: int = 0) -> np.ndarray:
    """Deterministic inputs in the model's declared input range ([0,1] from metadata, else [-1,1))."""
    x = test_input((n, *g.shape(g.inputs[0])[1:]), seed=seed)
    return (x + 1) / 2 if g.metadata.get("input_range") == "[0,1]" else x


def _layer_plan(tile: tuple[int, int], k: int, node: str) -> LayerPlan:
    return LayerPlan("tiled", tile, k, group=node, channel_scales=True)


def _stored_bytes(cm: CompressedModel, tensor: str) -> int:
    lw = cm.layers[tensor]
    return lw.nbytes + (cm.codebooks[lw.codebook].nbytes if lw.storage == "tiled" and lw.codebook else 0)


def measure(g: Graph, base: CompressOptions, x: np.ndarray | None, progress: bool = True) -> Sensitivity:
    """Every layer under every menu option: bytes stored and damage to the logits."""
    nodes = weighted_nodes(g)
    corrector, hessians = None, {}
    if x is None:
        data, x = "random inputs in the input range (data-free)", random_inputs(g)
    else:  # damage as calibration will leave it: indices re-assigned, biases corrected
        x = check_inputs(g, x)[:MEASURE]
        data, corrector, hessians = f"{len(x)} calibration inputs", LayerBiasCorrection(g, x), input_hessians(g, x)
    ref = model_outputs(g, None, x)
    energy = float(np.square(ref).sum()) or 1.0
    own = () if (base.tile, base.k) in MENU else ((base.tile, base.k),)  # the base recipe's own plan is measured too
    menu = [LayerPlan(storage="i8")] + [_layer_plan(t, k, "") for t, k in (*MENU, *own)]
    options: dict[str, list[Option]] = {n.name: [] for n in nodes}
    columns = [TextColumn("measuring layer sensitivity"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, transient=True, disable=not progress) as bar:
        task = bar.add_task("", total=len(menu) * len(nodes))
        for option in menu:
            plans = tuple((n.name, replace(option, group=n.name)) for n in nodes)
            cm = compress(g, replace(base, plans=plans), progress=False)  # --exclude still wins over plans
            reassign(g, cm, hessians)
            weights = reconstructed_weights(g, cm)
            for n in nodes:
                mine = {k: v for k, v in weights.items() if k in n.inputs}
                if corrector is not None and len(n.inputs) > 2 and n.inputs[2] in mine:  # damage after bias correction
                    mine[n.inputs[2]] = corrector.bias(n, mine[n.inputs[1]], mine[n.inputs[2]])
                err = float(np.square(model_outputs(g, mine, x) - ref).sum()) / energy
                options[n.name].append(Option(dict(plans)[n.name], _stored_bytes(cm, n.inputs[1]), err))
                bar.advance(task)
    weights = {n.name: int(g.const(n.inputs[1]).size) for n in nodes}  # type: ignore[union-attr]
    dense = dense_baseline(g)
    return Sensitivity(options, dense.fixed_bytes, dense.params, weights, data)


@dataclass(frozen=True)
class DenseBaseline:
    """What the model stores and computes with no weight compressed: what budgets are measured against."""

    params: int
    fixed_bytes: int  # model data that no weight plan changes: every constant but the weights and their biases
    macs: int  # per inference


def dense_baseline(g: Graph) -> DenseBaseline:
    cm = compress(g, CompressOptions(enabled=False), progress=False)
    code = generate(g, cm)
    s = sizes(cm, code)
    weights = sum(_stored_bytes(cm, n.inputs[1]) for n in weighted_nodes(g))
    return DenseBaseline(s.params, s.model_bytes - weights, sum(layer.macs for layer in code.layers))


def choose(s: Sensitivity, budget: int) -> dict[str, Option]:
    """The least-damage choice of one option per layer within `budget` bytes of model data."""
    smallest = s.smallest()
    if s.total(smallest) > budget:
        raise UsageError(f"no plan fits {budget:,} bytes: the smallest takes {s.total(smallest):,}",
                         hint="ask for a lower ratio or more kilobytes")  # fmt: skip

    def pick(lam: float) -> dict[str, Option]:
        return {n: min(opts, key=lambda o: (o.damage + lam * o.nbytes, o.nbytes)) for n, opts in s.options.items()}

    lo, hi = 0.0, 1.0
    while s.total(pick(hi)) > budget:
        hi *= 4
    for _ in range(60):  # bisection on the price of a byte
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if s.total(pick(mid)) <= budget else (mid, hi)
    choice = pick(hi)
    while True:  # spend what is left on the upgrade that buys the most damage per byte
        left = budget - s.total(choice)
        ups = [((c.damage - o.damage) / max(o.nbytes - c.nbytes, 1), n, o)
               for n, c in choice.items() for o in s.options[n]
               if o.damage < c.damage and 0 < o.nbytes - c.nbytes <= left]  # fmt: skip
        if not ups:
            return choice
        _, n, o = max(ups, key=lambda u: u[0])
        choice[n] = o


def damage(choice: dict[str, Option]) -> float:
    return sum(o.damage for o in choice.values())


def reference_choice(s: Sensitivity, plans: dict[str, LayerPlan]) -> dict[str, Option]:
    """The menu options that store each layer as `plans` do (each plan must be on the menu), whatever its group."""
    return {n: next(o for o in opts if replace(o.plan, group="") == replace(plans[n], group=""))
            for n, opts in s.options.items()}  # fmt: skip


def smallest_within(s: Sensitivity, limit: float) -> dict[str, Option]:
    """The smallest plan whose predicted damage is at most `limit`: bisection on bytes (the least-damage plan
    when none is within it)."""
    lo = s.total(s.smallest()) - 1  # may fail
    best = s.least_damage()
    hi = s.total(best)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        choice = choose(s, mid)
        lo, hi, best = (lo, mid, choice) if damage(choice) <= limit else (mid, hi, best)
    return best


# The default (`--recipe auto`): when a model carries BatchNorm statistics, calibrate it on inputs made
# from them and take the smallest plan whose predicted damage (the logits' relative squared error, summed
# over layers, measured on those inputs) is within both limits: AUTO_DAMAGE, and AUTO_SLACK times the
# damage of the uniform `safe` recipe; distillation then removes most of it. Set on ResNet-8 and DS-CNN
# and checked on a held-out VGG-style model (docs/accuracy.md). Either limit alone lost accuracy on one of
# them: the relative one on DS-CNN, whose uniform recipe already does 0.04 to 0.05, the absolute one on
# the VGG, where 0.03 cost 0.8 points at 14.7x. The relative one also inherits the noise of one
# measurement: the uniform recipe's damage on ResNet-8 varied twofold with the k-means seed.
AUTO_DAMAGE = 0.03
AUTO_SLACK = 1.5

# Making the inputs takes synthesize.STEPS forward and backward passes over 256 inputs. A pass took (2 cores,
# AMD EPYC) 0.26 s on ResNet-8 (9.4 M MACs, 146 k activation values per input), 0.38 s on DS-CNN (3.8 M,
# 228 k), 0.30 s on the held-out VGG (11.9 M, 131 k) and 1.04 s on the held-out MobileNetV2 (5.8 M, 557 k):
# the activations' size, not the MACs, sets the pace. 3 ms per M MACs plus 1.8 ms per k values fits all four
# within 12%. On a big model it overestimates: EfficientNet-Lite0 (385 M MACs, 224x224) is predicted at 124
# minutes, and steps of 8 inputs extrapolate to about 80. Past AUTO_MAX_SECONDS the default does not make
# them (each of the four above takes at most about 5 minutes).
AUTO_MAX_SECONDS = 360


def synthesis_seconds(g: Graph) -> float:
    """Predicted seconds to make the default's synthetic inputs on 2 cores like the ones measured above."""
    from .synthesize import STEPS

    values = sum(g.tensors[name].size for n in g.nodes for name in n.outputs)
    return STEPS * (3e-9 * dense_baseline(g).macs + 1.8e-6 * values)


# The safe recipe's K=16 leaves each layer about 10% relative weight error, and the errors of many layers
# add up in the logits. ResNet-8's 10 weighted layers sum to 0.066 (squared) and lose 0.2 points;
# EfficientNet-Lite0's 50 sum to 0.42, and 43% of its predictions changed (docs/pretrained.md). So the
# default raises K until the sum is within SAFE_ERROR, and then keeps codebooks, scales and biases in fp16:
# rounded to int8, a codebook entry carries one error into every weight that uses it, and the rounded
# biases shift every output the same way: at K=64, int8 left EfficientNet-Lite0 84% agreement, fp16 94%.
SAFE_ERROR = 0.07
DEEP_KS = (32, 64, 128, 256)


def summed_error(g: Graph, cm: CompressedModel) -> float:
    """The weighted layers' squared relative weight errors, summed."""
    return float(sum(cm.layers[n.inputs[1]].rel_error ** 2 for n in weighted_nodes(g)))


def safe_for_depth(g: Graph, base: CompressOptions) -> tuple[CompressOptions, float]:
    """`base` (the safe recipe), or, for a model too deep for its K, the smallest larger K (with fp16 side
    data) whose summed error is within SAFE_ERROR. Also returns `base`'s summed error."""
    error = summed_error(g, compress(g, base, progress=False))
    if error <= SAFE_ERROR:
        return base, error
    for k in DEEP_KS:
        deeper = replace(base, k=k, codebook_dtype="f16", side_dtype="f16")
        if summed_error(g, compress(g, deeper, progress=False)) <= SAFE_ERROR:
            break
    return deeper, error


def auto_obstacle(g: Graph) -> str | None:
    """Why the default cannot calibrate this model on synthetic inputs, or None."""
    if not g.bn_stats:
        return "the model carries no BatchNorm statistics to make calibration inputs from"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install 'lego2c[calib]')"
    if (mover := batch_mover(g)) is not None:
        return f"calibration runs inputs as one batch along the leading axis, which {mover.op} '{mover.name}' moves"
    seconds = synthesis_seconds(g)
    if seconds > AUTO_MAX_SECONDS:
        return (f"making calibration inputs for this model would take about {seconds / 60:.0f} minutes on 2 cores, "
                f"over the {AUTO_MAX_SECONDS // 60} that the default spends (`--calib synthetic` does it anyway)")  # fmt: skip
    return None


@dataclass
class DefaultPlan:
    """What the default (`--recipe auto`) does with a model, and why."""

    options: CompressOptions
    calib: np.ndarray | None  # the synthetic inputs to calibrate on; None when `obstacle` says why not
    obstacle: str | None
    summed_error: float  # the safe recipe's (summed_error), which decided K
    table: Table | None  # the searched per-layer plan


def default_plan(g: Graph, safe: CompressOptions, make_inputs: Callable[[], np.ndarray], progress: bool = True,
                 say: Callable[[str], None] = lambda _: None) -> DefaultPlan:  # fmt: skip
    """The default: `safe` with K raised for the model's depth, then, where the model allows, calibrated on
    `make_inputs()` (synthetic inputs) with the smallest plan predicted to keep the logits' relative squared
    error within AUTO_DAMAGE and within AUTO_SLACK times the uniform recipe's. `say` hears, before the slow
    part, what will be done and why."""
    opts, error = safe_for_depth(g, safe)
    deeper = "" if opts == safe else (
        f", with K={opts.k} and fp16 codebooks, scales and biases for this model's depth (at K={safe.k} its weighted "
        f"layers' squared relative weight errors would sum to {error:.2f}, over the {SAFE_ERROR} that keeps accuracy)")
    why = auto_obstacle(g)
    if why is not None:
        say(f"default recipe: {why}, so the uniform {DEFAULT_RECIPE} recipe is used{deeper}")
        return DefaultPlan(opts, None, why, error, None)
    say(f"default recipe: the {DEFAULT_RECIPE} recipe's options{deeper}, calibrated on synthetic inputs, with the "
        f"smallest per-layer plan predicted to keep the logits' relative squared error within {AUTO_DAMAGE} and "
        f"within {AUTO_SLACK} times the uniform recipe's (--recipe {DEFAULT_RECIPE} skips this)")  # fmt: skip
    x = make_inputs()
    s = measure(g, opts, x, progress)
    uniform = reference_choice(s, opts.layer_plans(weighted_nodes(g)))
    choice = smallest_within(s, min(AUTO_DAMAGE, AUTO_SLACK * damage(uniform)))
    table = choice_table(s, choice)
    table.caption = (f"this plan stores {s.total(choice):,} bytes at predicted damage {damage(choice):.3g}; the uniform "
                     f"recipe ({opts.tile[0]}x{opts.tile[1]} K={opts.k}) would store {s.total(uniform):,} at {damage(uniform):.3g}")  # fmt: skip
    return DefaultPlan(plan_options(opts, choice), x, None, error, table)


def plan_for_budget(g: Graph, base: CompressOptions, x: np.ndarray | None, target_ratio: float | None,
                    target_kb: float | None, progress: bool = True) -> tuple[CompressOptions, Table]:  # fmt: skip
    """`base` with the least-damage per-layer plan within a size budget, and a table of what was chosen."""
    s = measure(g, base, x, progress)
    choice = choose(s, budget_bytes(s, target_ratio, target_kb))
    return plan_options(base, choice), choice_table(s, choice)


def plan_options(base: CompressOptions, choice: dict[str, Option]) -> CompressOptions:
    """`base` with one explicit plan per layer (the model-wide tile, K and protection no longer apply)."""
    return replace(base, plans=tuple((n, o.plan) for n, o in choice.items()))


def choice_table(s: Sensitivity, choice: dict[str, Option]) -> Table:
    t = Table(title=f"chosen plan (damage measured on {s.data})", title_justify="left")
    for col in ("layer", "storage", "bits/weight (all stored)", "bytes", "damage"):
        t.add_column(col, justify="left" if col in ("layer", "storage") else "right")
    for n, o in choice.items():
        t.add_row(n, o.label, f"{8 * o.nbytes / s.weights[n]:.2f}", f"{o.nbytes:,}", f"{o.damage:.2e}")
    return t


def budget_bytes(s: Sensitivity, target_ratio: float | None, target_kb: float | None) -> int:
    """The model-data budget in bytes: from an honest ratio, or from kilobytes (1 KB = 1024 bytes)."""
    if target_kb is not None:
        return int(target_kb * 1024)
    assert target_ratio is not None
    return int(4 * s.params / target_ratio)


def search_max_drop(s: Sensitivity, base: CompressOptions, drop_of: Callable[[CompressOptions], float],
                    max_drop: float, progress: bool = True) -> tuple[CompressOptions, dict[str, Option], float]:  # fmt: skip
    """The smallest plan whose measured drop (by `drop_of`) is at most `max_drop`: bisection on the budget.

    Returns the options, the per-layer choice and the measured drop. The largest plan (every layer at its
    least-damage option) must meet the drop, or there is no answer.
    """
    largest, smallest = s.least_damage(), s.smallest()
    best, best_drop = largest, drop_of(plan_options(base, largest))
    if best_drop > max_drop:
        raise UsageError(f"even the largest plan loses {best_drop:.2f} points (> --max-drop {max_drop})",
                         hint="allow a larger drop, or give --calib data")  # fmt: skip
    lo, hi = s.total(smallest), s.total(largest)  # bytes: lo may fail, hi passes
    columns = [TextColumn("searching the smallest plan within the drop"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]  # fmt: skip
    steps = 7
    with Progress(*columns, transient=True, disable=not progress) as bar:
        task = bar.add_task("", total=steps)
        for _ in range(steps):
            mid = int(np.sqrt(lo * hi))  # sizes span decades: bisect in log space
            choice = choose(s, mid)
            d = drop_of(plan_options(base, choice))
            if d <= max_drop:
                hi, best, best_drop = mid, choice, d
            else:
                lo = mid
            bar.advance(task)
    return plan_options(base, best), best, best_drop


def save_plan(path: Path, g: Graph, opts: CompressOptions) -> None:
    """Every layer's effective plan as JSON, to rebuild the same model later without searching again."""
    data = {n: asdict(p) for n, p in opts.layer_plans(weighted_nodes(g)).items()}
    path.write_text(json.dumps(data, indent=2) + "\n")


def load_plan(path: Path) -> tuple[tuple[str, LayerPlan], ...]:
    try:
        data = json.loads(path.read_text())
        plans = tuple((n, LayerPlan(p["storage"], tuple(p["tile"]), int(p["k"]), p["group"], bool(p["channel_scales"])))
                      for n, p in data.items())  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UsageError(f"cannot read the plan '{path}': {e}", hint="write one with --save-plan") from None
    return plans
