"""The test inputs themselves: zoo exports, datasets and the committed trained models."""

from __future__ import annotations

import collections
import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

from lego2c import datasets
from lego2c.datasets import load_dataset
from lego2c.errors import UsageError
from scripts.train import onnx_top1, train_digits_cnn
from tests.zoo import ATOL, ZOO, build, count_macs, count_params, export, export_zoo, main, max_abs_diff

MODELS = Path(__file__).resolve().parents[1] / "models"
needs_fmnist = pytest.mark.skipif(
    not datasets.FASHION_MNIST_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist"
)


# ---- zoo


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_matches_torch_in_onnxruntime(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.onnx"
    model = export(name, path)
    assert max_abs_diff(model, path) <= ATOL
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ZOO[name].ops <= ops, f"{name} no longer covers {ZOO[name].ops - ops}"


# MLPerf Tiny shapes (DESIGN.md section 2): torch counts BN weight and bias as parameters too.
@pytest.mark.parametrize(
    "name, params, macs",
    [
        ("resnet8", 78_186, 12_501_632),
        ("dscnn", 23_756, 2_656_768),
        ("mobilenetv1", 213_586, 7_489_664),
        ("autoencoder", 267_928, 264_192),
    ],
)
def test_mlperf_shapes(name: str, params: int, macs: int) -> None:
    model = build(name)
    assert count_params(model) == params
    assert count_macs(model, ZOO[name].input_shape) == macs


def test_zoo_exports_are_deterministic(tmp_path: Path) -> None:
    def digest(out: Path) -> dict[str, str]:
        paths = export_zoo(out, ["resnet8", "dynamo_cnn"])
        return {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in paths.items()}

    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_zoo_bn_is_left_for_the_compiler_and_non_trivial(tmp_path: Path) -> None:
    path = export_zoo(tmp_path, ["cnn"])["cnn"]
    graph = onnx.load(str(path)).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    (bn,) = [n for n in graph.node if n.op_type == "BatchNormalization"]
    scale, bias, mean, var = (inits[i] for i in bn.input[1:])
    assert not np.allclose(scale, 1) and not np.allclose(bias, 0)
    assert not np.allclose(mean, 0) and not np.allclose(var, 1)


def test_zoo_cli_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "mlp", "ops_mix"]) == 0
    out = capsys.readouterr().out
    assert "mlp" in out and "109,386" in out and "ops_mix" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.onnx", "ops_mix.onnx"]


# ---- datasets


@needs_fmnist
@pytest.mark.parametrize("split, n", [("train", 60_000), ("test", 10_000)])
def test_fashion_mnist(split: str, n: int) -> None:
    x, y = load_dataset("fashion-mnist", split)
    assert x.shape == (n, 1, 28, 28) and x.dtype == np.float32
    assert 0.0 == x.min() and x.max() == 1.0
    assert y is not None and y.shape == (n,) and y.dtype == np.int64
    assert np.array_equal(np.bincount(y), np.full(10, n // 10))


def test_fashion_mnist_missing_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(UsageError) as err:
        load_dataset("fashion-mnist")
    assert err.value.hint == "apt-get install dataset-fashion-mnist"


def test_digits_split_is_fixed() -> None:
    x_train, y_train = load_dataset("digits", "train")
    x_test, y_test = load_dataset("digits", "test")
    assert x_train.shape == (1257, 1, 8, 8) and x_test.shape == (540, 1, 8, 8)
    assert x_test.dtype == np.float32 and y_test is not None and y_test.dtype == np.int64
    assert 0.0 <= x_test.min() and x_test.max() <= 1.0
    x_again, _ = load_dataset("digits", "test")
    assert np.array_equal(x_test, x_again)


def test_npz(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((5, 3, 4, 4))
    np.savez(tmp_path / "with_y.npz", x=x, y=np.arange(5))
    np.savez(tmp_path / "no_y.npz", x=x)
    got_x, got_y = load_dataset(str(tmp_path / "with_y.npz"))
    assert got_x.dtype == np.float32 and np.allclose(got_x, x)
    assert got_y is not None and got_y.dtype == np.int64 and got_y.tolist() == [0, 1, 2, 3, 4]
    assert load_dataset(str(tmp_path / "no_y.npz"))[1] is None
    np.savez(tmp_path / "bad.npz", inputs=x)
    with pytest.raises(UsageError):
        load_dataset(str(tmp_path / "bad.npz"))


@pytest.mark.parametrize("name, split", [("cifar-10", "test"), ("digits", "validation"), ("missing.npz", "test")])
def test_bad_dataset_requests_are_usage_errors(name: str, split: str) -> None:
    with pytest.raises(UsageError):
        load_dataset(name, split)


# ---- trained reference models


def _metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.mark.parametrize(
    "filename",
    [
        pytest.param("resnet8_fmnist.onnx", marks=needs_fmnist),
        pytest.param("dscnn_fmnist.onnx", marks=needs_fmnist),
        "digits_cnn.onnx",
    ],
)
def test_trained_model_reaches_documented_top1(filename: str) -> None:
    path = MODELS / filename
    meta = _metadata(path)
    assert meta["input_range"] == "[0,1]"
    documented = float(meta["top1"])
    assert f"{documented:.2f}" in (MODELS / "README.md").read_text()
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops[:2] == ["Sub", "Div"] and ops[-1] == "Softmax" and "BatchNormalization" in ops
    x, y = load_dataset(meta["dataset"], "test")  # all of it: ~5 s for ResNet-8 in onnxruntime
    assert y is not None
    assert abs(onnx_top1(path, x, y) - documented) <= 0.5


def test_digits_cnn_trains_in_seconds(tmp_path: Path) -> None:
    out = tmp_path / "digits.onnx"
    top1 = train_digits_cnn(out)
    assert top1 > 90.0
    assert _metadata(out)["top1"] == f"{top1:.2f}"
    counts = collections.Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    assert counts["Conv"] == 2 and counts["BatchNormalization"] == 2
