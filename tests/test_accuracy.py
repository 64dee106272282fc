"""Accuracy on real data: the documented figures hold, calibration helps, budgets are met.

The documented figures come from docs/accuracy.json, written by `python -m benchmarks.accuracy`
together with docs/accuracy.md, so the tests check exactly what the docs state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from lego2c import datasets
from lego2c.build import compile_model
from lego2c.calibrate import calibrate, output_error
from lego2c.compress import DEFAULT_RECIPE, RECIPES, as_stored
from lego2c.datasets import load_dataset
from lego2c.evaluate import evaluate
from lego2c.report import sizes
from lego2c.verify import run_onnx

ROOT = Path(__file__).resolve().parents[1]
needs_fmnist = pytest.mark.skipif(not datasets.FASHION_MNIST_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")


def lego2c(*args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "lego2c", *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc


def documented(model: str, label: str) -> dict[str, float]:
    """Seed 0 of the first row whose label starts with `label` (the CLI runs with seed 0 unless told otherwise)."""
    rows = json.loads((ROOT / "docs" / "accuracy.json").read_text())[model]
    return next(r for r in rows if r["label"].startswith(label))["evals"][0]


def onnx_value(name: str, g) -> onnx.ValueInfoProto:  # type: ignore[no-untyped-def]
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(g.shape(name)))


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scripts.train import train_digits_cnn

    out = tmp_path_factory.mktemp("digits") / "digits_cnn.onnx"
    train_digits_cnn(out)
    return out


def test_digits_safe_recipe_keeps_accuracy_at_documented_ratio(digits_model: Path) -> None:
    """The freshly trained digits CNN under the uniform recipe the default falls back to."""
    x, y = load_dataset("digits", "test")
    e = evaluate(compile_model(digits_model, RECIPES[DEFAULT_RECIPE], progress=False), x, y, progress=False)
    assert e.drop is not None and e.drop <= 1.0
    assert e.honest_ratio == pytest.approx(documented("digits", f"`--recipe {DEFAULT_RECIPE}`")["honest_ratio"], rel=1e-9)


@pytest.mark.parametrize("model, dataset", [
    ("digits", "digits"),
    pytest.param("resnet8", "fashion-mnist", marks=needs_fmnist),
])  # fmt: skip
def test_default_matches_the_docs_via_cli(model: str, dataset: str, tmp_path: Path) -> None:
    """The default (auto: synthetic calibration, searched plan) through the CLI: top-1 within 0.3 points of the
    documented figure and within 0.5 of the original, and the documented size within 3%. Not exactly: the
    search turns on small differences in measured damage, which differ between CPUs (under the rule before,
    ResNet-8 seed 0 stored 23,426 bytes on an AMD EPYC and another CPU, 23,580 on an Intel Xeon), and on that
    Xeon the synthetic inputs varied in their last bits from run to run, cause not pinned down
    (docs/accuracy.md)."""
    out = tmp_path / "eval.json"
    name = {"digits": "digits_cnn", "resnet8": "resnet8_fmnist"}[model]
    proc = lego2c("eval", f"models/{name}.onnx", "--dataset", dataset, "--json", out)
    assert "calibrated on synthetic inputs" in proc.stdout
    got, doc = json.loads(out.read_text()), documented(model, "default")
    assert set(got) >= {"top1_original", "top1_compressed", "agreement", "honest_ratio", "paper_ratio", "model_bytes"}
    assert abs(got["top1_compressed"] - doc["top1_compressed"]) <= 0.3
    assert abs(got["model_bytes"] - doc["model_bytes"]) <= 0.03 * doc["model_bytes"], (got, doc)
    assert got["top1_original"] - got["top1_compressed"] <= 0.5


@needs_fmnist
def test_calibration_on_a_small_subset_improves_output_error() -> None:
    pytest.importorskip("torch")
    x, _ = load_dataset("fashion-mnist", "train")
    calib, held_out = x[:64], x[64:320]
    c = compile_model(ROOT / "models" / "resnet8_fmnist.onnx", RECIPES[DEFAULT_RECIPE], progress=False)
    before = output_error(c.graph, c.compressed, held_out)
    res = calibrate(c.graph, c.compressed, calib, steps=30, seed=0, progress=False)
    after = output_error(c.graph, c.compressed, held_out)
    assert res.error_after < res.error_before and after < before
    for lw in c.compressed.layers.values():  # written back as stored: storing again changes nothing
        assert lw.bias is not None and np.array_equal(lw.bias, as_stored(lw.bias, lw.side_dtype))


@needs_fmnist
def test_distillation_moves_indices_and_stores_them() -> None:
    """--move-indices changes some tiles' entries, and the model stores (and packs) the moved indices.
    Whether the moves pay is measured over full runs (docs/accuracy.md): in a run this short they do not."""
    pytest.importorskip("torch")
    from lego2c.packing import pack_indices

    x = load_dataset("fashion-mnist", "train")[0][:256]
    opts = replace(RECIPES[DEFAULT_RECIPE], tile=(1, 2), k=8)
    for move in (False, True):
        c = compile_model(ROOT / "models" / "resnet8_fmnist.onnx", opts, progress=False)
        calibrate(c.graph, c.compressed, x, steps=0, seed=0, progress=False)
        assigned = {t: lw.indices.copy() for t, lw in c.compressed.layers.items() if lw.indices is not None}
        res = calibrate(c.graph, c.compressed, x, steps=800, seed=0, progress=False, move_indices=move)
        changed = sum(int((lw.indices != assigned[t]).sum()) for t, lw in c.compressed.layers.items() if t in assigned)
        assert (changed > 0) == move and res.moved >= changed
        assert all(lw.packed == pack_indices(lw.indices, lw.bits) for t, lw in c.compressed.layers.items() if t in assigned)


@needs_fmnist
def test_calibration_gives_the_same_values_twice() -> None:
    """Multithreaded backward passes may sum in any order: without torch's deterministic algorithms this
    failed about one run in three. With --move-indices, so the indices its latent tiles pick are checked too."""
    pytest.importorskip("torch")
    x = load_dataset("fashion-mnist", "train")[0][:512]
    runs = []
    for _ in range(2):
        c = compile_model(ROOT / "models" / "resnet8_fmnist.onnx", RECIPES[DEFAULT_RECIPE], progress=False)
        calibrate(c.graph, c.compressed, x, steps=200, seed=0, progress=False, move_indices=True)
        stored = [v for lw in c.compressed.layers.values() for v in (lw.scale, lw.bias, lw.indices) if v is not None]
        runs.append(stored + [cb.centroids for cb in c.compressed.codebooks.values()])
    assert len(runs[0]) == len(runs[1]) > 0
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


def moments_checked(model: Path, x: np.ndarray) -> list[str]:
    """The layers whose data-free mean input (lego2c.moments) is within 10% of its mean over the inputs `x`
    (per channel, mean absolute difference against mean magnitude); fails on any layer that is not."""
    import onnxruntime as ort

    from lego2c.frontend import load_model
    from lego2c.moments import activation_moments

    g = load_model(model)
    moments = activation_moments(g)
    checked = []
    for n in [n for n in g.nodes if n.op in ("Conv", "ConvTranspose", "Gemm") and n.inputs[0] in moments]:
        m = g.to_onnx()
        m.graph.output.append(onnx_value(n.inputs[0], g))
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        real = np.concatenate([sess.run([n.inputs[0]], {g.inputs[0]: xi[None]})[0] for xi in x])
        real_mean = real.mean(axis=tuple(i for i in range(real.ndim) if i != 1))
        est = moments[n.inputs[0]][0]
        assert np.abs(est - real_mean).mean() < 0.1 * np.abs(real_mean).mean(), n.name
        checked.append(n.name)
    return checked


def test_batchnorm_moments_predict_real_activation_means(digits_model: Path) -> None:
    """The data-free estimate of each layer's mean input, against the mean over real training images
    (measured: 3% off)."""
    checked = moments_checked(digits_model, load_dataset("digits", "train")[0][:200])
    assert len(checked) == 1  # the second conv: the first reads the raw image, the classifier a flattened map


@pytest.mark.parametrize("name, reached", [("nhwc_shuffle", 3), ("tiny_unet", 3), ("deconv_segmenter", 4)])
def test_moments_follow_moved_and_resized_channels(name: str, reached: int, tmp_path: Path) -> None:
    """Channels split, concatenated, shuffled by Reshape-Transpose-Reshape and averaged by ReduceMean
    (a ShuffleNetV2 unit), upsampled by Resize and concatenated with a skip (a U-Net), or by transposed
    convolutions with BatchNorms folded into them: the moments
    follow them to every layer but the first, which reads the input. The zoo model's BatchNorm statistics
    are gathered again on standard normal inputs after its random affines are set (as training leaves
    them), so those inputs are its training data."""
    import torch

    from tests.zoo import ZOO, build, export

    model = build(name)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a plain average over the batches
    model.train()
    with torch.no_grad():
        for _ in range(8):
            model(torch.randn(64, *ZOO[name].input_shape[1:]))
    export(name, tmp_path / "m.onnx", model.eval())
    x = np.random.default_rng(0).standard_normal((200, *ZOO[name].input_shape[1:])).astype(np.float32)
    assert len(moments_checked(tmp_path / "m.onnx", x)) == reached


def test_mean_response_of_a_transposed_convolution_is_exact_without_padding(tmp_path: Path) -> None:
    """A grouped, strided ConvTranspose without pads keeps every contribution: the mean of each output
    channel over its pixels is exactly what `mean_response` predicts from the input channels' means."""
    from lego2c.frontend import load_model
    from lego2c.moments import mean_response
    from tests.test_ops import conv_transpose_model

    onnx.save(conv_transpose_model("groups", bias=False), str(tmp_path / "m.onnx"))
    g = load_model(tmp_path / "m.onnx")
    n = g.nodes[0]
    mean = np.linspace(-1.0, 2.0, g.shape(n.inputs[0])[1])
    x = np.broadcast_to(mean[None, :, None, None], g.shape(n.inputs[0])).astype(np.float32)
    real = run_onnx(tmp_path / "m.onnx", x)[0].mean(axis=(1, 2))
    np.testing.assert_allclose(mean_response(g, n, g.const(n.inputs[1]), mean), real, rtol=1e-5)


def test_calibration_distils_a_model_whose_output_is_an_image(zoo: dict[str, Path]) -> None:
    """Distillation compares outputs row by row, whatever their shape (here 2 x 24 x 24 per input)."""
    c = compile_model(zoo["tiny_unet"], RECIPES[DEFAULT_RECIPE], progress=False)
    x = np.random.default_rng(0).standard_normal((64, 1, 16, 16)).astype(np.float32)
    res = calibrate(c.graph, c.compressed, x, steps=50, seed=0, progress=False)
    assert res.error_after < res.error_before


@pytest.mark.parametrize("lo, hi", [(0.0, np.inf), (0.0, 6.0), (-1.0, 1.0)])
def test_clipped_gaussian_moments_match_sampling(lo: float, hi: float) -> None:
    """ReLU and ReLU6 moments against 400,000 samples (sampling error about 0.005 here)."""
    from lego2c.moments import _clipped

    mean, std = np.array([-1.0, 0.0, 0.5, 2.0, 7.0]), np.array([1.0, 2.0, 0.3, 3.0, 1.0])
    y = np.clip(np.random.default_rng(0).normal(mean, std, size=(400_000, 5)), lo, hi)
    m, v = _clipped(mean, std**2, lo, hi)
    assert np.abs(m - y.mean(0)).max() < 0.02 and np.abs(v - y.var(0)).max() < 0.06


@needs_fmnist
def test_data_free_bias_correction_reduces_output_error() -> None:
    x = load_dataset("fashion-mnist", "test")[0][:500]
    errors = {}
    for bc in (False, True):
        opts = replace(RECIPES[DEFAULT_RECIPE], k=8, bias_correction=bc)
        c = compile_model(ROOT / "models" / "resnet8_fmnist.onnx", opts, progress=False)
        errors[bc] = output_error(c.graph, c.compressed, x)
    assert errors[True] < 0.8 * errors[False], errors


@needs_fmnist
def test_reassignment_lowers_every_layers_output_error() -> None:
    """Error-feedback assignment against k-means' nearest entry, in the error each layer's output sees."""
    pytest.importorskip("torch")
    from lego2c.compress import weight_matrix, weighted_nodes
    from lego2c.packing import unpack_indices
    from lego2c.reassign import input_hessians, reassign

    x = load_dataset("fashion-mnist", "train")[0][:128]
    opts = replace(RECIPES[DEFAULT_RECIPE], tile=(1, 2), k=8)
    c = compile_model(ROOT / "models" / "resnet8_fmnist.onnx", opts, progress=False)
    hessians = input_hessians(c.graph, x)

    def output_errors() -> dict[str, float]:
        out = {}
        for n in weighted_nodes(c.graph):
            if n.inputs[1] in hessians and c.compressed.layers[n.inputs[1]].storage == "tiled":
                d = c.compressed.matrix(n.inputs[1]) - weight_matrix(n, c.graph)
                out[n.name] = float(np.einsum("rc,cd,rd->", d, hessians[n.inputs[1]], d))
        return out

    before = output_errors()
    reassign(c.graph, c.compressed, hessians)
    after = output_errors()
    assert len(after) == 8  # every tiled layer: the first and last are int8
    for name in after:
        assert after[name] < 0.75 * before[name], name  # measured 0.37 to 0.64
    for lw in c.compressed.layers.values():  # the format still holds what the kernels decode
        if lw.storage == "tiled":
            assert np.array_equal(unpack_indices(lw.packed, lw.n_tiles, lw.bits), lw.indices)


def test_target_kb_meets_its_budget(digits_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "sizes.json"
    proc = lego2c("inspect", digits_model, "--target-kb", "4", "--json", out)
    assert json.loads(out.read_text())["model_bytes"] <= 4 * 1024
    assert "chosen plan" in proc.stdout


def test_max_drop_meets_its_drop_on_the_validation_set(digits_model: Path, tmp_path: Path) -> None:
    plan, out = tmp_path / "plan.json", tmp_path / "eval.json"
    lego2c("inspect", digits_model, "--max-drop", "0.5", "--val", "digits", "--save-plan", plan)
    lego2c("eval", digits_model, "--dataset", "digits", "--plan", plan, "--json", out)
    got = json.loads(out.read_text())
    assert got["top1_original"] - got["top1_compressed"] <= 0.5
    default = compile_model(digits_model, RECIPES[DEFAULT_RECIPE], progress=False)
    assert got["honest_ratio"] > sizes(default.compressed, default.code).honest_ratio  # smaller than the default


def test_int8_scales_keep_every_channel_normalised() -> None:
    """DS-CNN's first depthwise layer spans 100x across channels: its side data stays fp16, the rest go int8."""
    from lego2c.compress import MIN_SCALE_CODE, pow2_exponent

    c = compile_model(ROOT / "models" / "dscnn_fmnist.onnx", RECIPES[DEFAULT_RECIPE], progress=False)
    scaled = [lw for lw in c.compressed.layers.values() if lw.scale is not None]
    assert RECIPES[DEFAULT_RECIPE].side_dtype == "i8" and {lw.side_dtype for lw in scaled} == {"i8", "f16"}
    for lw in scaled:
        spread = float(lw.scale.max() / lw.scale.min())
        if lw.side_dtype == "i8":
            assert (lw.scale / 2.0 ** pow2_exponent(lw.scale)).min() >= MIN_SCALE_CODE and spread <= 127 / MIN_SCALE_CODE
        else:
            assert spread > 64 / MIN_SCALE_CODE  # int8 would have left its smallest channel under MIN_SCALE_CODE codes


def test_sweep_plots_every_family_and_keeps_int8_lossless(tmp_path: Path) -> None:
    """`lego2c sweep` on the committed digits CNN: the table, the JSON and the PNG, with sane figures."""
    png, out = tmp_path / "sweep.png", tmp_path / "sweep.json"
    proc = lego2c("sweep", "models/digits_cnn.onnx", "--dataset", "digits", "-o", png, "--json", out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "wrote" in proc.stdout
    points = json.loads(out.read_text())
    assert {p["family"] for p in points} == {"lego2c (data-free)", "LegoNet literal", "uniform per-channel"}
    by_label = {p["label"]: p for p in points}
    assert abs(by_label["int8"]["drop"]) <= 1.0  # per-channel int8 keeps a small CNN's accuracy
    assert by_label["1x1 K=4"]["honest_ratio"] > by_label["1x1 K=16"]["honest_ratio"] > by_label["int8"]["honest_ratio"]
    literal = [p for p in points if p["family"] == "LegoNet literal"]
    assert all(p["paper_ratio"] > p["honest_ratio"] for p in literal)  # the paper's count leaves bytes out


def test_eval_errors_are_typed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((3, 5), dtype=np.float32))
    proc = subprocess.run([sys.executable, "-m", "lego2c", "eval", "models/digits_cnn.onnx", "--dataset", str(bad)],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "the model takes" in proc.stderr


def test_torch_executor_computes_what_the_c_code_computes(digits_model: Path) -> None:
    torch = pytest.importorskip("torch")
    from lego2c.compress import reconstructed_weights
    from lego2c.evaluate import model_outputs
    from lego2c.torchexec import Executor, StoredParams

    x, _ = load_dataset("digits", "test")
    c = compile_model(digits_model, RECIPES[DEFAULT_RECIPE], progress=False)
    with torch.no_grad():
        got = Executor(c.graph, StoredParams(c.graph, c.compressed))(torch.from_numpy(x[:32])).numpy()
    want = model_outputs(c.graph, reconstructed_weights(c.graph, c.compressed), x[:32])
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def _bn_match_error(g, x: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """Relative error of each BatchNorm tensor's per-channel batch mean and std against the stored ones."""
    import torch

    from lego2c.torchexec import Executor

    errs = []

    def see(name: str, y: torch.Tensor) -> None:
        if name in g.bn_stats:
            mean, std = g.bn_stats[name]
            got = y.detach().double().numpy()
            axes = (0, *range(2, got.ndim))
            errs.append(np.linalg.norm(np.r_[got.mean(axes) - mean, got.std(axes) - std]) / np.linalg.norm(std))

    Executor(g)(torch.from_numpy(x), on_output=see)
    assert len(errs) == len(g.bn_stats)
    return float(np.mean(errs))


def test_synthetic_inputs_match_batchnorm_statistics(digits_model: Path) -> None:
    pytest.importorskip("torch")
    from lego2c.frontend import load_model
    from lego2c.synthesize import bn_matched_inputs

    g = load_model(digits_model)
    start, _ = bn_matched_inputs(g, n=64, steps=0, progress=False)
    x, loss = bn_matched_inputs(g, n=64, steps=150, progress=False)
    assert _bn_match_error(g, x) < 0.2 * _bn_match_error(g, start)
    assert 0.0 <= x.min() and x.max() <= 1.0  # the model declares [0,1] inputs
    assert np.array_equal(x, bn_matched_inputs(g, n=64, steps=150, progress=False)[0])  # deterministic


@needs_fmnist
def test_synthetic_calibration_lowers_the_error_on_real_images() -> None:
    """No data at all: calibrating on BatchNorm-matched inputs beats data-free bias correction on real test images."""
    pytest.importorskip("torch")
    from lego2c.synthesize import bn_matched_inputs

    held_out = load_dataset("fashion-mnist", "test")[0][:500]
    opts = replace(RECIPES[DEFAULT_RECIPE], k=8)
    c = compile_model(ROOT / "models" / "resnet8_fmnist.onnx", opts, progress=False)
    data_free = output_error(c.graph, c.compressed, held_out)
    x, _ = bn_matched_inputs(c.graph, n=64, steps=100, progress=False)
    calibrate(c.graph, c.compressed, x, steps=100, seed=0, progress=False)
    assert output_error(c.graph, c.compressed, held_out) < 0.8 * data_free


def test_synthetic_calibration_without_batchnorms(tmp_path: Path) -> None:
    w = onnx.numpy_helper.from_array(np.ones((2, 1, 3, 3), dtype=np.float32), "w")
    node = onnx.helper.make_node("Conv", ["x", "w"], ["y"], name="conv")
    graph = onnx.helper.make_graph([node], "no_bn", [onnx.helper.make_tensor_value_info("x", 1, [1, 1, 8, 8])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1, 2, 6, 6])], [w])  # fmt: skip
    model = tmp_path / "no_bn.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)]), model)
    proc = subprocess.run([sys.executable, "-m", "lego2c", "compress", str(model), "--calib", "synthetic", "-o",
                           str(tmp_path / "out.onnx")], capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "BatchNorm" in proc.stderr
    assert not (tmp_path / "out.onnx").exists()
    # The default needs no BatchNorms: it says why it falls back to the uniform recipe.
    assert "no BatchNorm statistics" in " ".join(lego2c("inspect", model).stdout.split())


def test_the_default_says_why_it_cannot_calibrate_a_model_that_moves_the_batch_axis(tmp_path: Path) -> None:
    h, rng = onnx.helper, np.random.default_rng(0)
    stats = [onnx.numpy_helper.from_array(a.astype(np.float32), n) for n, a in
             (("w", rng.standard_normal((3, 2, 1, 1))), ("s", np.ones(3)), ("b", np.zeros(3)), ("m", np.zeros(3)),
              ("v", np.ones(3)))]  # fmt: skip
    nodes = [h.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             h.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
             h.make_node("Transpose", ["n"], ["y"], name="heads_first", perm=[1, 0, 2, 3])]  # fmt: skip
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", 1, [1, 2, 4, 4])],
                         [h.make_tensor_value_info("y", 1, [3, 1, 4, 4])], stats)  # fmt: skip
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), tmp_path / "m.onnx")
    text = " ".join(lego2c("inspect", tmp_path / "m.onnx").stdout.split())
    assert "along the leading axis, which Transpose 'heads_first' moves" in text


# Each process: torch as lego2c loads it, then sqrt of one array on 2 threads (ATen splits it in halves).
SQRT_ON_TWO_THREADS = """
import hashlib, numpy as np
from lego2c.calibrate import require_torch
torch = require_torch()
torch.set_num_threads(2)
v = torch.from_numpy(np.random.default_rng(0).uniform(1e-12, 1e-8, 1 << 16).astype(np.float32))
print(hashlib.sha256(v.sqrt().numpy().tobytes()).hexdigest())
"""


def test_mkl_vector_maths_agree_across_processes() -> None:
    """Without require_torch's first calls, about 1 fresh process in 10 got other sqrt bits on one thread."""
    runs = [subprocess.run([sys.executable, "-c", SQRT_ON_TWO_THREADS], capture_output=True, text=True, cwd=ROOT,
                           check=True).stdout for _ in range(12)]  # fmt: skip
    assert len(set(runs)) == 1 and runs[0].strip()


def test_default_gives_the_same_bytes_twice(tmp_path: Path) -> None:
    """The default's synthetic inputs, search and distillation are deterministic: same model, same file."""
    outs = [tmp_path / f"{i}.onnx" for i in range(2)]
    for out in outs:
        lego2c("compress", "models/digits_cnn.onnx", "-o", out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
