"""Calibration inputs without data (`--calib synthetic`): inputs optimised until every BatchNorm
sees the batch statistics it recorded in training.

A BatchNorm's running mean and variance describe its input over the training set; the frontend
keeps them as its output's per-channel mean (the shift) and spread (|scale|), `Graph.bn_stats`.
Starting from noise, Adam moves a batch of inputs until each of those tensors has, per channel,
that mean and standard deviation. ZeroQ (Cai et al., "ZeroQ: A Novel Zero Shot Quantization
Framework", CVPR 2020) showed that such inputs calibrate a quantised model almost as well as real
data; docs/accuracy.md has what they do here. Like bias correction, this needs the BatchNorms in
the exported file (`training=torch.onnx.TrainingMode.PRESERVE`).
"""

from __future__ import annotations

import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .calibrate import reproducible, require_torch
from .errors import UsageError
from .ir import Graph

SAMPLES = 256  # inputs; the budget search and distillation then use them as --calib data
STEPS = 300  # Adam steps: the matching loss has flattened by then on ResNet-8 and DS-CNN
LR = 0.05


def bn_matched_inputs(g: Graph, n: int = SAMPLES, steps: int = STEPS, seed: int = 0,
                      progress: bool = True) -> tuple[np.ndarray, float]:  # fmt: skip
    """`n` inputs whose BatchNorm statistics match the stored ones, and the final matching loss.

    The loss is, summed over the BatchNorms, the squared error of the batch's per-channel means and
    standard deviations relative to the stored spreads' energy: 0 is a perfect match.
    """
    if not g.bn_stats:
        raise UsageError("--calib synthetic needs BatchNorm statistics, and this model has none",
                         hint="export with training=torch.onnx.TrainingMode.PRESERVE so that the BatchNorms "
                              "stay in the file, or give --calib DATA.npz")  # fmt: skip
    torch = require_torch()
    from .torchexec import Executor

    targets = {t: (torch.from_numpy(m).float(), torch.from_numpy(s).float(),
                   torch.from_numpy(s).float().square().sum().clamp_min(1e-12))
               for t, (m, s) in g.bn_stats.items()}  # fmt: skip
    # Only the declared [0,1] range is enforced: other models' inputs may be normalised any way.
    unit = g.metadata.get("input_range") == "[0,1]"
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *g.shape(g.inputs[0])[1:]), generator=gen) * (0.25 if unit else 1.0) + (0.5 if unit else 0.0)
    x = x.clamp(0, 1) if unit else x
    x.requires_grad_(True)
    opt = torch.optim.Adam([x], lr=LR)
    executor = Executor(g)
    columns = [TextColumn("synthesising calibration inputs"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.3g}"), TimeElapsedColumn()]  # fmt: skip
    loss = torch.zeros(())
    with reproducible(torch), Progress(*columns, transient=True, disable=not progress) as bar:
        task = bar.add_task("", total=steps, loss=float("nan"))
        for _ in range(steps):
            terms = []

            def match(name: str, y: torch.Tensor) -> None:
                if name in targets:
                    mean, std, energy = targets[name]
                    dims = [0, *range(2, y.dim())]
                    terms.append(((y.mean(dims) - mean).square().sum() + (y.std(dims) - std).square().sum()) / energy)

            opt.zero_grad()
            executor(x, on_output=match)
            if not terms:
                raise UsageError("--calib synthetic: no BatchNorm statistics lie on the path from input to output",
                                 hint="give --calib DATA.npz")  # fmt: skip
            loss = torch.stack(terms).sum()
            loss.backward()
            opt.step()
            if unit:
                with torch.no_grad():
                    x.clamp_(0, 1)
            bar.update(task, advance=1, loss=loss.item())
    return x.detach().numpy().astype(np.float32), float(loss.detach())
