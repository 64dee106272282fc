"""Calibration with unlabeled data (`--calib data.npz`): index assignment, bias correction, distillation.

Indices are first chosen by their error in each layer's output (`reassign`), then biases corrected.
Distillation trains what the format stores beside the indices: codebook entries, per-output-channel
scales and biases. With `move_indices` (`--move-indices`) it also trains latent tiles that start at
the decoded ones, and in its first MOVE_UNTIL of the steps each tile takes, every SNAP_EVERY steps,
the entry nearest its latent tile. That helped ResNet-8 at 28x, not at 20x (docs/accuracy.md), so it is
not the default. Re-assigning indices to the entry nearest the *original* weights made things worse
(DESIGN.md section 1). Results are written back into the
`CompressedModel` rounded to their storage types, so the C code computes exactly what was
measured. torch is imported here, inside the functions: users who never calibrate need not
install it (`pip install lego2c[calib]`).
"""

from __future__ import annotations

import functools
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .build import Compiled
from .codegen import generate
from .compress import CompressedModel, reconstructed_weights
from .errors import UsageError
from .evaluate import check_inputs, model_outputs
from .ir import Graph, Node
from .ops import CONV_OPS

STEPS = 3500  # distillation steps: with the search, under 3 minutes for ResNet-8 on 2 quiet cores
BATCH = 32
LR = 2e-3
SNAP_EVERY = 50
MOVE_UNTIL = 0.7  # fraction of the steps; the rest fit codebooks, scales and biases to the final indices
MAX_INPUTS = 2048  # beyond about this many images more data barely helped (DESIGN.md section 1), memory grows


@dataclass
class CalibResult:
    error_before: float  # relative output error (logits) on the calibration data
    error_after: float
    steps: int
    moved: int  # index changes during distillation (a tile that moves twice counts twice)


def output_error(g: Graph, cm: CompressedModel, x: np.ndarray, reference: np.ndarray | None = None) -> float:
    """||compressed logits - original logits|| / ||original logits|| over a batch of inputs."""
    ref = model_outputs(g, None, x) if reference is None else reference
    got = model_outputs(g, reconstructed_weights(g, cm), x)
    return float(np.linalg.norm(got - ref) / (np.linalg.norm(ref) or 1.0))


def calibrated(c: Compiled, x: np.ndarray, steps: int = STEPS, seed: int = 0, progress: bool = True,
               move_indices: bool = False) -> tuple[Compiled, CalibResult]:  # fmt: skip
    """A compiled model calibrated on `x`, with its C code generated again from the new values."""
    res = calibrate(c.graph, c.compressed, x, steps, seed, progress, move_indices)
    return Compiled(c.path, c.graph, c.compressed, generate(c.graph, c.compressed)), res


# torch's CPU kernels for these call MKL's vector maths (ATen/cpu/vml.h).
MKL_VECTOR_MATHS = ("acos", "asin", "atan", "cos", "erf", "erfc", "erfinv", "exp", "log", "log10", "log2", "sin",
                    "sqrt", "tan", "tanh", "trunc")  # fmt: skip


@functools.cache
def require_torch():  # type: ignore[no-untyped-def]
    # MKL may run fewer threads than asked when it sees fit, and a matrix product split over fewer threads
    # sums in another order: Intel's reproducibility conditions include a fixed thread count. Read when MKL
    # starts, so this holds where lego2c imports torch first (the CLI).
    os.environ.setdefault("MKL_DYNAMIC", "FALSE")
    try:
        import torch
    except ImportError:
        raise UsageError("--calib needs torch", hint="pip install 'lego2c[calib]' (or pip install torch)") from None
    # MKL picks each vector-maths function's code on its first call. When two of torch's threads make that
    # first call at once, one may get other code: in about 1 process in 10 on an AVX-512 Xeon, Adam's sqrt
    # came out different in its last bits on one thread's half of the inputs, and the default's file with it
    # (docs/accuracy.md). A first call on a tensor too small to split settles each before any threaded use.
    with torch.no_grad():
        one = torch.full((4,), 0.5)
        for op in MKL_VECTOR_MATHS:
            getattr(torch, op)(one)
    return torch


@contextmanager
def reproducible(torch):  # type: ignore[no-untyped-def]
    """Same inputs, same bytes: a fixed thread count keeps torch's float sums in one order, and deterministic
    algorithms keep multithreaded backward passes from summing in whatever order the threads finish.
    Without them one 28x ResNet-8 run lost 1.01 or 1.15 points from the same inputs."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory  # nothing here reads memory it did not write
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.utils.deterministic.fill_uninitialized_memory = fill


def calibrate(g: Graph, cm: CompressedModel, x: np.ndarray, steps: int = STEPS, seed: int = 0,
              progress: bool = True, move_indices: bool = False) -> CalibResult:  # fmt: skip
    """Index assignment and bias correction from the layers' real inputs, then distillation from the logits."""
    torch = require_torch()
    from .reassign import input_hessians, reassign
    from .torchexec import Executor, StoredParams

    x = check_inputs(g, x)[:MAX_INPUTS]
    reference = model_outputs(g, None, x)
    before = output_error(g, cm, x, reference)
    with reproducible(torch):
        reassign(g, cm, input_hessians(g, x))
        xt = torch.from_numpy(x)
        params = StoredParams(g, cm)
        _correct_biases(torch, Executor(g), Executor(g, params), xt)
        if move_indices:
            params.free_indices()
        moved = _distill(torch, Executor(g, params), params, xt, torch.from_numpy(reference), steps, seed,
                         progress) if steps else 0  # fmt: skip
        params.write_back()
    return CalibResult(before, output_error(g, cm, x, reference), steps, moved)


class LayerBiasCorrection:
    """Bias correction of one layer alone, upstream unchanged: for the budget search's damage figures.

    Convolution is linear, so the mean output shift of a new weight is the new-minus-old weight
    applied to the layer's mean input: one forward pass of the original model serves every option.
    """

    def __init__(self, g: Graph, x: np.ndarray) -> None:
        torch = require_torch()
        from .torchexec import Executor

        self.g, self.torch, self.executor = g, torch, Executor(g)
        self.means: dict[str, object] = {}
        with torch.no_grad():
            self.executor(torch.from_numpy(check_inputs(g, x)),
                          on_input=lambda n, t: self.means.__setitem__(n.name, t.mean(0, keepdim=True)))

    def bias(self, node: Node, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """The bias that cancels the mean output shift of `weight` (ONNX shape) replacing the original."""
        from .torchexec import linear

        delta = self.torch.from_numpy(np.asarray(weight - self.g.const(node.inputs[1]), dtype=np.float32))
        with self.torch.no_grad():
            shift = _channel_mean(linear(self.executor, node, self.means[node.name], delta), node.op)
        return (bias - shift.numpy().reshape(bias.shape)).astype(np.float32)


def _channel_mean(y, node_op: str):  # type: ignore[no-untyped-def]
    """Mean of a layer's output per output channel: axis 1 for convolutions, the last axis otherwise."""
    if node_op in CONV_OPS:
        return y.transpose(0, 1).reshape(y.shape[1], -1).mean(1)
    return y.reshape(-1, y.shape[-1]).mean(0)


def _correct_biases(torch, original, compressed, x) -> None:  # type: ignore[no-untyped-def]
    """Shift each bias by the mean output error it leaves, layer by layer in graph order.

    One pass: when the compressed model reaches a layer, its input already carries every
    correction upstream, so each layer corrects the error that really arrives there.
    """
    means = {}

    def record(node, y):  # type: ignore[no-untyped-def]
        means[node.name] = _channel_mean(y, node.op)
        return y

    with torch.no_grad():
        original(x, hook=record)

        def correct(node, y):  # type: ignore[no-untyped-def]
            bias = compressed.params.bias(node.inputs[1]) if compressed.params.learned(node.inputs[1]) else None
            if bias is None:
                return y
            delta = means[node.name] - _channel_mean(y, node.op)
            bias += delta
            return y + (delta.reshape(1, -1, *([1] * (y.ndim - 2))) if node.op in CONV_OPS else delta)

        compressed(x, hook=correct)


def _distill(torch, model, params, x, reference, steps: int, seed: int, progress: bool) -> int:  # type: ignore[no-untyped-def]
    """Adam on codebooks, scales, biases and latent tiles against the original logits (MSE), cosine-decayed;
    returns how many index changes the latent tiles (`StoredParams.free_indices`), if any, made.

    Adam's steps are about `lr` in absolute size, so each tensor's rate is scaled to its own
    magnitude (scales are log-gains already): one rate then suits raw and normalised weights alike.
    The latent tiles' rate is the codebooks' rule too: at half of it fewer tiles moved and the 28x
    plans lost more, at twice it too many moved to recover (docs/accuracy.md).
    """
    gen = torch.Generator().manual_seed(seed)
    groups = [{"params": [p], "lr": LR * max(float(p.detach().square().mean().sqrt()), 1e-6)}
              for p in [*params.codebooks.values(), *params.biases.values(), *params.latent.values()]]  # fmt: skip
    opt = torch.optim.Adam(groups + [{"params": list(params.gains.values()), "lr": LR}])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    columns = [TextColumn("distilling"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TextColumn("loss {task.fields[loss]:.3g}"), TimeElapsedColumn()]  # fmt: skip
    if params.latent:
        columns.insert(-1, TextColumn("{task.fields[moved]} index changes"))
    moved = 0
    with Progress(*columns, transient=True, disable=not progress) as bar:
        task = bar.add_task("", total=steps, loss=float("nan"), moved=0)
        for step in range(1, steps + 1):
            idx = torch.randint(0, len(x), (min(BATCH, len(x)),), generator=gen)
            loss = torch.nn.functional.mse_loss(model(x[idx]), reference[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if params.latent and step % SNAP_EVERY == 0 and step <= MOVE_UNTIL * steps:
                moved += params.snap()
            bar.update(task, advance=1, loss=loss.item(), moved=moved)
    return moved
