"""A real pretrained ImageNet CNN (EfficientNet-Lite0, weights from its wheel) through the compiler.

Inputs are photographs that matplotlib and scikit-learn install (benchmarks/pretrained.py); there are
no ImageNet labels here, so compression is judged by top-1 agreement with the original model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.pretrained import EXPECTED, SAFE, centre_crop, default_options, export, photo_crops
from lego2c.build import build_host, compile_graph
from lego2c.compress import CompressOptions
from lego2c.evaluate import evaluate, model_outputs
from lego2c.frontend import load_model
from lego2c.search import AUTO_MAX_SECONDS, auto_obstacle, safe_for_depth, synthesis_seconds

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("efficientnet")
    return {name: export(out / f"{name}.onnx", dynamo=name == "dynamo") for name in ("legacy", "dynamo")}


@pytest.fixture(scope="module")
def defaults(exports: dict[str, Path]) -> dict[str, CompressOptions]:
    """What the default chooses for each export (choosing it compresses the model a few times)."""
    return {name: default_options(load_model(path)).options for name, path in exports.items()}


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_default_build_matches_onnxruntime_on_a_photograph(exports: dict[str, Path], defaults: dict[str, CompressOptions],
                                                           exporter: str, tmp_path: Path) -> None:  # fmt: skip
    g = load_model(exports[exporter])
    photo = tmp_path / "grace_hopper.npy"
    np.save(photo, centre_crop("grace_hopper.jpg"))
    assert int(np.argmax(model_outputs(g, None, np.load(photo)))) == EXPECTED["grace_hopper.jpg"][0]  # real weights
    run = build_host(compile_graph(g, exports[exporter], defaults[exporter], progress=False), tmp_path / "host",
                     input_npy=photo)  # fmt: skip
    assert run.max_error <= run.allowed, f"host C vs onnxruntime: {run.max_error:.3g} > {run.allowed:.3g}"


def test_batched_evaluation_handles_a_reshape_that_pins_batch_one(exports: dict[str, Path]) -> None:
    g = load_model(exports["legacy"])
    pinned = [n for n in g.nodes if n.op == "Reshape" and list(g.const(n.inputs[1]))[0] == 1]
    assert pinned, "the premise: the legacy export traces x.view(x.size(0), -1) to a constant [1, -1]"
    x = photo_crops(3, seed=0)
    one_by_one = np.concatenate([model_outputs(g, None, x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(model_outputs(g, None, x), one_by_one, rtol=1e-4, atol=1e-4)


def test_the_default_raises_k_for_a_deep_model_and_keeps_its_predictions(exports: dict[str, Path],
                                                                        defaults: dict[str, CompressOptions]) -> None:  # fmt: skip
    for name in ("resnet8_fmnist", "dscnn_fmnist", "digits_cnn"):  # their documented figures rest on K=16
        assert safe_for_depth(load_model(ROOT / "models" / f"{name}.onnx"), SAFE)[0] == SAFE, name
    path = exports["legacy"]
    g = load_model(path)
    opts = defaults["legacy"]
    assert opts.k > SAFE.k
    x = photo_crops(60, seed=0)
    deep, flat = (evaluate(compile_graph(g, path, o, progress=False), x, None, progress=False) for o in (opts, SAFE))
    # docs/pretrained.md, 300 crops: 93.7% at 4.79x against 57.3% at 6.12x for K=16
    assert deep.agreement >= 88.0 and deep.honest_ratio >= 4.5, deep
    assert flat.agreement <= deep.agreement - 20, flat


def test_the_default_calibrates_small_models_but_not_this_one(exports: dict[str, Path]) -> None:
    for name in ("resnet8_fmnist", "dscnn_fmnist", "digits_cnn"):  # their documented default figures are calibrated
        assert auto_obstacle(load_model(ROOT / "models" / f"{name}.onnx")) is None, name
    g = load_model(exports["legacy"])
    assert synthesis_seconds(g) > 10 * AUTO_MAX_SECONDS
    why = auto_obstacle(g)
    assert why is not None and "minutes on 2 cores" in why and "--calib synthetic" in why
