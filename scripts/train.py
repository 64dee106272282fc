"""Train the seeded reference models that lego2c's accuracy tests and benchmarks use.

    python scripts/train.py resnet8-fmnist   # -> models/resnet8_fmnist.onnx
    python scripts/train.py dscnn-fmnist     # -> models/dscnn_fmnist.onnx
    python scripts/train.py digits-cnn       # -> models/digits_cnn.onnx (a few seconds)

Two more recipes, `vgg-fmnist` and `mbv2-fmnist`, are held out: nothing in lego2c was chosen on them
and their files are not committed. `python -m benchmarks.heldout` trains them and checks the default.

Each exported model takes raw [0, 1] pixels, normalises them itself (Sub, Div at its start) and
ends in Softmax. BatchNormalization nodes stay in the graph for the compiler to fold. The test
top-1 measured with onnxruntime on the exported file goes into its metadata_props.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make lego2c and tests importable
    sys.path.insert(0, str(REPO))

from lego2c.datasets import load_dataset  # noqa: E402
from tests.zoo import DSCNN, ResNet8, conv_bn_act  # noqa: E402

MODELS_DIR = REPO / "models"
OPSET = 17


class Normalize(nn.Module):
    """(x - mean) / std with dataset constants, so the deployed model takes raw [0, 1] pixels."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([mean], dtype=torch.float32))
        self.register_buffer("std", torch.tensor([std], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class DigitsCNN(nn.Sequential):
    """8x8 -> 4x4 in two convs and one Dense: trains to >95% on digits in seconds."""

    def __init__(self) -> None:
        super().__init__(
            conv_bn_act(1, 16, 3, padding=1),
            conv_bn_act(16, 32, 3, stride=2, padding=1),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 10),
        )


class VGGStyle(nn.Sequential):
    """Plain 3x3 conv stacks with max-pooling and a two-layer classifier: no residuals, no global pooling."""

    def __init__(self) -> None:
        super().__init__(
            conv_bn_act(1, 16, 3, padding=1), conv_bn_act(16, 32, 3, padding=1), nn.MaxPool2d(2),
            conv_bn_act(32, 48, 3, padding=1), conv_bn_act(48, 48, 3, padding=1), nn.MaxPool2d(2),
            conv_bn_act(48, 64, 3, padding=1), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 3 * 3, 32), nn.ReLU(), nn.Linear(32, 10),
        )  # fmt: skip


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, 3x3 depthwise, linear 1x1 projection, a skip when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4) -> None:
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(
            conv_bn_act(cin, mid, 1, act=nn.ReLU6), conv_bn_act(mid, mid, 3, stride, 1, groups=mid, act=nn.ReLU6),
            nn.Conv2d(mid, cout, 1), nn.BatchNorm2d(cout),
        )  # fmt: skip
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.skip else self.body(x)


class MobileNetV2Style(nn.Sequential):
    """A small MobileNetV2: inverted residuals with ReLU6, a 1x1 head conv, global average pooling."""

    def __init__(self) -> None:
        super().__init__(
            conv_bn_act(1, 16, 3, padding=1, act=nn.ReLU6),
            InvertedResidual(16, 16, 1), InvertedResidual(16, 24, 2), InvertedResidual(24, 24, 1),
            InvertedResidual(24, 32, 2), InvertedResidual(32, 32, 1),
            conv_bn_act(32, 128, 1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10),
        )  # fmt: skip


class MLPStyle(nn.Sequential):
    """Dense layers only, each but the last followed by BatchNorm: the layers STM32Cube.AI's codebooks compress."""

    def __init__(self) -> None:
        super().__init__(
            nn.Flatten(), nn.Linear(28 * 28, 256), nn.BatchNorm1d(256), nn.ReLU(),
            nn.Linear(256, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10),
        )  # fmt: skip


def conv1d_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm1d(cout), nn.ReLU())


class Conv1dStyle(nn.Module):
    """The image as a sequence: 28 channels (its rows) along 28 steps (its columns), through 1-D convs with
    max-pooling and global average pooling, the shape of a small sensor or keyword-spotting model."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv1d_bn_relu(28, 64), conv1d_bn_relu(64, 64), nn.MaxPool1d(2),
            conv1d_bn_relu(64, 96), conv1d_bn_relu(96, 96), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(96, 10),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1, 2))


@dataclass(frozen=True)
class Recipe:
    build: Callable[[], nn.Module]
    dataset: str
    epochs: int
    batch_size: int
    max_lr: float
    hflip: bool  # clothes are left-right symmetric; digits are not
    filename: str


RECIPES: dict[str, Recipe] = {
    "resnet8-fmnist": Recipe(
        lambda: ResNet8(in_channels=1), "fashion-mnist", 5, 128, 0.1, True, "resnet8_fmnist.onnx"
    ),
    # DS-CNN shape (64 channels, 4 depthwise-separable blocks); a 3x3 stride-2 stem suits
    # 28x28 images better than the 10x4 one meant for 49x10 MFCC frames.
    "dscnn-fmnist": Recipe(
        lambda: DSCNN(in_channels=1, num_classes=10, stem_kernel=(3, 3), stem_padding=(1, 1)),
        "fashion-mnist", 5, 128, 0.1, True, "dscnn_fmnist.onnx",
    ),
    "digits-cnn": Recipe(DigitsCNN, "digits", 20, 64, 0.1, False, "digits_cnn.onnx"),
    # Held out (benchmarks/heldout.py): not committed, and nothing in lego2c was tuned on them.
    "vgg-fmnist": Recipe(VGGStyle, "fashion-mnist", 3, 128, 0.1, True, "vgg_fmnist.onnx"),
    "mbv2-fmnist": Recipe(MobileNetV2Style, "fashion-mnist", 3, 128, 0.1, True, "mbv2_fmnist.onnx"),
    "mlp-fmnist": Recipe(MLPStyle, "fashion-mnist", 3, 128, 0.1, True, "mlp_fmnist.onnx"),
    "conv1d-fmnist": Recipe(Conv1dStyle, "fashion-mnist", 3, 128, 0.1, True, "conv1d_fmnist.onnx"),
}


def train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, log: bool) -> None:
    """SGD with Nesterov momentum under a one-cycle schedule: reliable in few epochs with BN."""
    steps = (len(x) + recipe.batch_size - 1) // recipe.batch_size
    opt = torch.optim.SGD(net.parameters(), lr=recipe.max_lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.max_lr, total_steps=recipe.epochs * steps)
    for epoch in range(recipe.epochs):
        net.train()
        start, total = time.time(), 0.0
        for idx in torch.randperm(len(x)).split(recipe.batch_size):
            xb = x[idx]
            if recipe.hflip:
                flip = torch.rand(len(idx)) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = F.cross_entropy(net(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if log:
            print(f"epoch {epoch + 1}/{recipe.epochs}: loss {total / len(x):.4f} ({time.time() - start:.0f} s)", flush=True)


def export(model: nn.Module, input_shape: tuple[int, ...], path: Path, dynamo: bool = False) -> None:
    """The legacy exporter keeps BatchNormalization nodes; the dynamo exporter folds them into the convs."""
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)  # no torchvision: noise
            torch.onnx.export(model, (torch.zeros(input_shape),), str(path), dynamo=True, opset_version=18,
                              input_names=["input"], output_names=["output"], verbose=False)  # fmt: skip
            return
        # PRESERVE (with the model in eval mode) keeps inference BatchNormalization nodes; the
        # default EVAL mode would fold them into the convs itself.
        torch.onnx.export(
            model, (torch.zeros(input_shape),), str(path), dynamo=False, opset_version=OPSET,
            training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True,
            input_names=["input"], output_names=["output"],
        )


def set_metadata(path: Path, metadata: dict[str, str]) -> None:
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def onnx_top1(path: Path, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 in percent of an exported classifier, run by onnxruntime one batch at a time."""
    # The export has batch 1; a batched copy with a symbolic batch dim evaluates 10k images fast.
    proto = onnx.load(str(path))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    correct = 0
    for i in range(0, len(x), batch_size):
        probs = sess.run(None, {name: x[i : i + batch_size]})[0]
        correct += int((probs.argmax(1) == y[i : i + batch_size]).sum())
    return 100.0 * correct / len(x)


def run(name: str, out: Path, log: bool = True, dynamo_out: Path | None = None) -> float:
    """Train recipe `name` from seed 0, export it to `out` (and by the dynamo exporter to `dynamo_out`) and
    return its test top-1 (percent)."""
    recipe = RECIPES[name]
    torch.manual_seed(0)
    x_train, y_train = load_dataset(recipe.dataset, "train")
    x_test, y_test = load_dataset(recipe.dataset, "test")
    assert y_train is not None and y_test is not None
    mean, std = float(x_train.mean()), float(x_train.std())
    net = nn.Sequential(Normalize(mean, std), recipe.build())  # trained as deployed: on raw pixels
    start = time.time()
    train(net, torch.from_numpy(x_train), torch.from_numpy(y_train), recipe, log)
    seconds = time.time() - start
    model = nn.Sequential(*net, nn.Softmax(dim=1))
    export(model, (1,) + x_train.shape[1:], out)
    top1 = onnx_top1(out, x_test, y_test)
    metadata = {"input_range": "[0,1]", "dataset": recipe.dataset, "top1": f"{top1:.2f}"}
    set_metadata(out, metadata)
    if dynamo_out is not None:  # the same weights: the same top-1
        export(model, (1,) + x_train.shape[1:], dynamo_out, dynamo=True)
        set_metadata(dynamo_out, metadata)
    if log:
        params = sum(p.numel() for p in net.parameters())
        print(f"{name}: top-1 {top1:.2f}% on {len(x_test)} test images, {params:,} params, "
              f"trained in {seconds:.0f} s -> {out}")
    return top1


def train_digits_cnn(out: Path) -> float:
    """Train the digits CNN (seconds, deterministic), export it to `out`, return test top-1 in percent."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # thread count changes float summation order: fix it for determinism
    try:
        return run("digits-cnn", Path(out), log=False)
    finally:
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a seeded reference model and export it to ONNX.")
    parser.add_argument("model", choices=list(RECIPES))
    parser.add_argument("--out", type=Path, help="output file (default: the recipe's file in models/)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    run(args.model, args.out or MODELS_DIR / RECIPES[args.model].filename)
    return 0


if __name__ == "__main__":
    sys.exit(main())
