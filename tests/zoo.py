"""The test model zoo: small PyTorch models exported to ONNX with seeded random weights.

The shapes follow the MLPerf Tiny reference models (DESIGN.md section 2) plus a few models that
exist only to cover ops and the dynamo exporter. Weights are random but seeded, so every export is
reproducible.

Run `python -m tests.zoo OUT_DIR [NAME ...]` to export, verify and tabulate them.
"""

from __future__ import annotations

import argparse
import logging
import sys
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

LEGACY_OPSET = 17
DYNAMO_OPSET = 18
ATOL = 1e-5
SEED = 0


# --------------------------------------------------------------------------------------------
# Models. Each returns logits; the zoo entries append Softmax where the reference model has one.


class MLP(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(28 * 28, 128), nn.ReLU(),
            nn.Linear(128, 64), nn.ReLU(),
            nn.Linear(64, 10),
        )


class SmallCNN(nn.Sequential):
    """Strided, dilated and padded convs and both pool kinds, on 28x28."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),  # 7x7
            nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(),  # 7x7
            nn.AvgPool2d(2),  # 3x3 (floor)
            nn.Flatten(),
            nn.Linear(16 * 3 * 3, 10),
        )


class ResidualStack(nn.Module):
    """MLPerf Tiny ResNet-8 stack: conv-BN-ReLU-conv-BN, plus a 1x1 conv shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = (
            nn.Conv2d(cin, cout, 1, stride=stride) if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNet8(nn.Sequential):
    """MLPerf Tiny image classification ResNet-8 (16/32/64 channels). Convs keep their bias as in
    the Keras reference, so 3x32x32 gives 77,706 conv/dense weights plus BN."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            ResidualStack(16, 16, 1),
            ResidualStack(16, 32, 2),
            ResidualStack(32, 64, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, num_classes),
        )


def conv_bn_act(
    cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
    padding: int | tuple[int, int] = 0, groups: int = 1, act: type[nn.Module] = nn.ReLU,
    bias: bool = True,
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=bias),
        nn.BatchNorm2d(cout),
        act(),
    )


class DSCNN(nn.Sequential):
    """MLPerf Tiny keyword spotting DS-CNN: a strided stem conv, then depthwise-separable blocks.

    The defaults are the reference (49x10 MFCC input, 10x4 stem with stride 2). Keras' "same"
    padding would pad the 49 rows 4/5; symmetric (5, 1) gives the same 25x5 output with one op.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 12, channels: int = 64, blocks: int = 4,
        stem_kernel: tuple[int, int] = (10, 4), stem_padding: tuple[int, int] = (5, 1),
    ) -> None:
        layers: list[nn.Module] = [conv_bn_act(in_channels, channels, stem_kernel, 2, stem_padding)]
        for _ in range(blocks):
            layers.append(conv_bn_act(channels, channels, 3, padding=1, groups=channels))  # depthwise
            layers.append(conv_bn_act(channels, channels, 1))  # pointwise
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
        super().__init__(*layers)


class MobileNetV1(nn.Sequential):
    """MobileNetV1 (bias-free convs, BN, ReLU6) as in the MLPerf Tiny visual wake words model."""

    # (output channels at width 1.0, stride) of the 13 depthwise-separable blocks
    BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [
        (1024, 2), (1024, 1)
    ]

    def __init__(self, width: float = 0.25, num_classes: int = 2, in_channels: int = 3) -> None:
        c = int(32 * width)
        layers: list[nn.Module] = [conv_bn_act(in_channels, c, 3, 2, 1, act=nn.ReLU6, bias=False)]
        for out, stride in self.BLOCKS:
            out = int(out * width)
            layers.append(conv_bn_act(c, c, 3, stride, 1, groups=c, act=nn.ReLU6, bias=False))
            layers.append(conv_bn_act(c, out, 1, act=nn.ReLU6, bias=False))
            c = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
        super().__init__(*layers)


class AutoEncoder(nn.Sequential):
    """MLPerf Tiny anomaly detection: 640 -> 128x4 -> 8 -> 128x4 -> 640, Dense-BN-ReLU in between."""

    def __init__(self, features: int = 640, hidden: int = 128, bottleneck: int = 8) -> None:
        widths = [features] + [hidden] * 4 + [bottleneck] + [hidden] * 4
        layers: list[nn.Module] = []
        for cin, cout in zip(widths, widths[1:]):
            layers += [nn.Linear(cin, cout), nn.BatchNorm1d(cout), nn.ReLU()]
        layers.append(nn.Linear(hidden, features))
        super().__init__(*layers)


class DynamoCNN(nn.Module):
    """Residual Add, HardSwish, a squeeze-excite Sigmoid gate, Concat and Reshape: the op mix that
    the dynamo exporter emits differently from the legacy one."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_act(3, 16, 3, padding=1, act=nn.Hardswish)
        self.res = nn.Sequential(conv_bn_act(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1))
        self.se = nn.Sequential(nn.Conv2d(16, 4, 1), nn.ReLU(), nn.Conv2d(4, 16, 1), nn.Sigmoid())
        self.branch = nn.Conv2d(16, 16, 1)
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.res(x)
        x = x * self.se(x.mean(dim=(2, 3), keepdim=True))
        x = torch.cat([x, self.branch(x)], dim=1)
        x = self.head(x)
        return self.fc(x.reshape(x.shape[0], -1))


class OpsMix(nn.Module):
    """Elementwise, reduction and shape ops that the MLPerf models do not use."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.prelu = nn.PReLU(8)
        # Buffers, not parameters: exported as constants that broadcast against NCHW.
        self.register_buffer("shift", torch.linspace(-0.5, 0.5, 8).reshape(1, 8, 1, 1))
        self.register_buffer("scale", torch.linspace(0.5, 2.0, 8).reshape(1, 8, 1, 1))
        self.register_buffer("weight", torch.randn(8, 10) / 8**0.5)
        self.gmp = nn.AdaptiveMaxPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(F.leaky_relu(self.conv(x), 0.1))
        x = (x - self.shift) / self.scale
        x = torch.tanh(F.pad(x, (1, 2, 1, 0), value=0.25))  # asymmetric constant Pad
        mean = x.mean(dim=(2, 3), keepdim=True)
        peak = x.amax(dim=(2, 3), keepdim=True)
        z = mean + F.hardsigmoid(peak) * self.gmp(x)  # 1x8x1x1
        z = z.squeeze(3).squeeze(2).unsqueeze(1)  # 1x1x8
        z = torch.flatten(z @ self.weight, 1)  # MatMul with a constant, then 1x10
        return torch.softmax(z, dim=1)


class ChannelsLastShuffle(nn.Module):
    """Channels-last input (as models from TensorFlow take it) and a ShuffleNetV2 unit: a channel split, a
    grouped conv branch, concatenation and a channel shuffle. Transposes and a Split move the data."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_act(3, 16, 3, padding=1)
        self.branch = conv_bn_act(8, 8, 3, padding=1, groups=2, bias=False)
        self.mix = conv_bn_act(16, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.permute(0, 3, 1, 2))
        kept, x = x.split([8, 8], dim=1)
        x = torch.cat([kept, self.branch(x)], dim=1)
        n, c, h, w = x.shape
        x = x.reshape(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.fc(self.mix(x).mean(dim=(2, 3)))


class TinyUNet(nn.Module):
    """Dense prediction: a strided encoder, nearest upsampling with a skip connection, then bilinear
    upsampling past the input size (Resize in both modes, as torch exports them)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = conv_bn_act(1, 8, 3, padding=1)
        self.enc2 = conv_bn_act(8, 16, 3, stride=2, padding=1)
        self.dec = conv_bn_act(24, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc1(x)
        x = F.interpolate(self.enc2(skip), scale_factor=2, mode="nearest")
        x = self.dec(torch.cat([x, skip], dim=1))
        return self.head(F.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False))


class DeconvSegmenter(nn.Module):
    """A fully convolutional segmenter that upsamples with learned transposed convolutions, each followed by a
    BatchNorm for the compiler to fold: DCGAN's k4 s2 p1, then k3 s2 p1 with output_padding, grouped."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.down = nn.Sequential(conv_bn_act(3, 8, 3, stride=2, padding=1), conv_bn_act(8, 16, 3, stride=2, padding=1))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(16, 12, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
            nn.ConvTranspose2d(12, 8, 3, stride=2, padding=1, output_padding=1, groups=2), nn.BatchNorm2d(8), nn.ReLU(),
        )
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.up(self.down(x)))


class ConvNeXtBlock(nn.Module):
    """A ConvNeXt block: 7x7 depthwise conv, then channels-last LayerNorm, a 4x expanding Linear, GELU and a
    Linear back (MatMuls on the last axis), added to its input; LayerNorm again before the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 2, stride=2)
        self.dw = nn.Conv2d(16, 16, 7, padding=3, groups=16)
        self.norm, self.up, self.down = nn.LayerNorm(16), nn.Linear(16, 64), nn.Linear(64, 16)
        self.head = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.down(F.gelu(self.up(self.norm(self.dw(x).permute(0, 2, 3, 1)))))
        return self.head((x + y.permute(0, 3, 1, 2)).mean(dim=(2, 3)))


class TinyViT(nn.Module):
    """A one-block vision transformer: 4x4 patches as tokens, pre-norm self-attention with two heads
    (MatMuls of activations, Softmax), a GELU MLP, then the mean token to the classifier."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.patch = nn.Conv2d(1, dim, 4, stride=4)
        self.norm1, self.proj = nn.LayerNorm(dim), nn.Linear(dim, dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.fc = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)  # (n, tokens, dim)
        n, tokens, dim = t.shape
        h = self.norm1(t)
        q, k, v = (f(h).reshape(n, tokens, self.heads, dim // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v))
        att = torch.softmax(q @ k.transpose(-2, -1) / (dim // self.heads) ** 0.5, dim=-1)
        t = t + self.proj((att @ v).transpose(1, 2).reshape(n, tokens, dim))
        t = t + self.mlp(self.norm2(t))
        return self.fc(t.mean(dim=1))


# --------------------------------------------------------------------------------------------
# The zoo


@dataclass(frozen=True)
class ZooEntry:
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    ops: frozenset[str]  # ONNX op types the export must contain: what the model is there to cover
    dynamo: bool = False


def _softmax(model: nn.Module) -> nn.Module:
    return nn.Sequential(model, nn.Softmax(dim=1))


ZOO: dict[str, ZooEntry] = {
    "mlp": ZooEntry(MLP, (1, 1, 28, 28), frozenset({"Flatten", "Gemm", "Relu"})),
    "cnn": ZooEntry(
        lambda: _softmax(SmallCNN()), (1, 1, 28, 28),
        frozenset({"Conv", "BatchNormalization", "MaxPool", "AveragePool", "Gemm", "Softmax"}),
    ),
    "resnet8": ZooEntry(
        lambda: _softmax(ResNet8()), (1, 3, 32, 32),
        frozenset({"Conv", "BatchNormalization", "Add", "GlobalAveragePool", "Gemm", "Softmax"}),
    ),
    "dscnn": ZooEntry(
        lambda: _softmax(DSCNN()), (1, 1, 49, 10),
        frozenset({"Conv", "BatchNormalization", "Relu", "GlobalAveragePool", "Gemm", "Softmax"}),
    ),
    "mobilenetv1": ZooEntry(
        lambda: _softmax(MobileNetV1()), (1, 3, 96, 96),
        frozenset({"Conv", "BatchNormalization", "Clip", "GlobalAveragePool", "Gemm", "Softmax"}),
    ),
    "autoencoder": ZooEntry(
        AutoEncoder, (1, 640), frozenset({"Gemm", "BatchNormalization", "Relu"})
    ),
    "dynamo_cnn": ZooEntry(
        DynamoCNN, (1, 3, 32, 32),
        frozenset({"Conv", "HardSwish", "Add", "Sigmoid", "Mul", "Concat", "Reshape"}),
        dynamo=True,
    ),
    "nhwc_shuffle": ZooEntry(
        ChannelsLastShuffle, (1, 16, 16, 3),
        frozenset({"Transpose", "Split", "Concat", "Conv", "BatchNormalization", "Reshape", "ReduceMean", "Gemm"}),
    ),
    "tiny_unet": ZooEntry(TinyUNet, (1, 1, 16, 16), frozenset({"Resize", "Concat", "Conv", "BatchNormalization"})),
    "deconv_segmenter": ZooEntry(
        DeconvSegmenter, (1, 3, 16, 16), frozenset({"ConvTranspose", "BatchNormalization", "Conv", "Relu"})
    ),
    "convnext_block": ZooEntry(
        ConvNeXtBlock, (1, 3, 32, 32), frozenset({"Conv", "Transpose", "LayerNormalization", "MatMul", "Erf", "Add"})
    ),
    "tiny_vit": ZooEntry(TinyViT, (1, 1, 16, 16), frozenset({"LayerNormalization", "MatMul", "Softmax", "Transpose"})),
    "ops_mix": ZooEntry(
        OpsMix, (1, 3, 16, 16),
        frozenset({
            "LeakyRelu", "PRelu", "Tanh", "HardSigmoid", "Sub", "Div", "Pad", "ReduceMean",
            "ReduceMax", "GlobalMaxPool", "Squeeze", "Unsqueeze", "MatMul", "Flatten", "Softmax",
        }),
    ),
}


def build(name: str) -> nn.Module:
    """Instantiate a zoo model with seeded weights and non-trivial BatchNorm state, in eval mode."""
    torch.manual_seed(SEED)
    model = ZOO[name].build()
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bns:
        # Realistic running statistics (from random data, in train mode) keep activations O(1)
        # through deep stacks, and a random affine on top makes each BN a real scale-and-shift,
        # so a compiler that folds BN wrongly disagrees with onnxruntime.
        for bn in bns:
            bn.momentum = None  # cumulative average over the calibration batches
        model.train()
        with torch.no_grad():
            for _ in range(4):
                model(torch.randn((8,) + ZOO[name].input_shape[1:]))
            for bn in bns:
                bn.momentum = 0.1
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_(0.0, 0.2)
    return model.eval()


def export(name: str, path: Path, model: nn.Module | None = None) -> nn.Module:
    """Export one zoo model (or `model`, a variant of it) to `path` and return the torch model it came from."""
    entry = ZOO[name]
    model = build(name) if model is None else model
    x = torch.randn(entry.input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (deprecations, PRESERVE + folding advice)
        if entry.dynamo:
            torch.onnx.export(
                model, (x,), str(path), dynamo=True, opset_version=DYNAMO_OPSET,
                input_names=["input"], output_names=["output"], external_data=False, verbose=False,
            )
        else:
            # PRESERVE with an eval-mode model exports inference-mode BatchNormalization nodes;
            # the default (EVAL) would fold Conv+BN itself and leave the compiler nothing to fold.
            torch.onnx.export(
                model, (x,), str(path), dynamo=False, opset_version=LEGACY_OPSET,
                training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True,
                input_names=["input"], output_names=["output"],
            )
    return model


def max_abs_diff(model: nn.Module, path: Path, seed: int = 1) -> float:
    """Check the ONNX file and return max |onnxruntime - torch| on a seeded random input."""
    onnx.checker.check_model(str(path), full_check=True)
    shape = tuple(d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    return float(np.max(np.abs(got - want)))


def export_zoo(out_dir: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Export the named zoo models (all by default) to out_dir/<name>.onnx, each verified against torch."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in names or list(ZOO):
        if name not in ZOO:
            raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(ZOO)}")
        path = out_dir / f"{name}.onnx"
        model = export(name, path)
        diff = max_abs_diff(model, path)
        if diff > ATOL:
            raise AssertionError(f"{name}: onnxruntime differs from torch by {diff:.2e} > {ATOL}")
        paths[name] = path
    return paths


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of the Conv and Linear layers (the rest is noise at these sizes)."""
    macs = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            macs += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(input_shape))
    for h in handles:
        h.remove()
    return macs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.zoo", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("names", nargs="*", help=f"models to export (default: all of {', '.join(ZOO)})")
    args = parser.parse_args(argv)
    # The dynamo exporter warns at import that torchvision's ops are missing: noise for the table.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    paths = export_zoo(args.out_dir, args.names or None)
    print(f"{'name':<12} {'input':<14} {'params':>9} {'MACs':>11} {'bytes':>10}  exporter")
    for name, path in paths.items():
        entry = ZOO[name]
        model = build(name)
        shape = "x".join(map(str, entry.input_shape))
        print(
            f"{name:<12} {shape:<14} {count_params(model):>9,} {count_macs(model, entry.input_shape):>11,} "
            f"{path.stat().st_size:>10,}  {'dynamo' if entry.dynamo else 'legacy'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
