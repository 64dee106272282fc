"""A ResNet-50-shaped ONNX model with seeded random weights, for timing the compiler at scale.

The network is torchvision's ResNet-50 v1.5 shape (bottleneck blocks 3-4-6-3, stride on the 3x3
conv, 1x1x3x224x224 input, 1000 classes, 25.6M parameters), written out here so nothing is
downloaded. Exported with the legacy exporter, opset 17, BatchNormalization kept for the
compiler to fold, as `models/` does.

`python -m benchmarks.resnet50 OUT.onnx` writes it.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

OPSET = 17
SEED = 0
INPUT_SHAPE = (1, 3, 224, 224)


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, plus a projection shortcut when the shape changes."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            *conv_bn(cin, width, 1), nn.ReLU(), *conv_bn(width, width, 3, stride), nn.ReLU(), *conv_bn(width, cout, 1)
        )
        self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet50(nn.Sequential):
    STAGES = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]  # (width, blocks, first stride)

    def __init__(self, num_classes: int = 1000) -> None:
        layers: list[nn.Module] = [*conv_bn(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for width, blocks, stride in self.STAGES:
            for i in range(blocks):
                layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * 4
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
        super().__init__(*layers)


def export(path: Path) -> int:
    """Write the model to `path`; returns its parameter count."""
    torch.manual_seed(SEED)
    model = ResNet50().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy exporter deprecation chatter
        torch.onnx.export(
            model, (torch.randn(INPUT_SHAPE),), str(path), dynamo=False, opset_version=OPSET,
            training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True,
            input_names=["input"], output_names=["output"],
        )  # fmt: skip
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.resnet50", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the .onnx file to write")
    args = parser.parse_args(argv)
    print(f"{args.out}: {export(args.out):,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
