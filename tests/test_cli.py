"""The real `lego2c` command as a user runs it: messages, exit codes, nothing lost, same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lego2c.errors import DoesNotFitError, EmulatorError, ToolchainMissingError, UnsupportedModelError, UsageError
from lego2c.project import MANIFEST

ROOT = Path(__file__).resolve().parents[1]


def lego2c(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lego2c", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)  # fmt: skip


def fails(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in proc.stderr, f"{n!r} not in: {proc.stderr}"


def test_missing_file(tmp_path: Path) -> None:
    fails(lego2c("inspect", tmp_path / "nope.onnx"), UsageError.exit_code, "no such file")


@pytest.mark.parametrize("content", [b"not a model at all\n", b"\x08\x07\x12\xff\xff\xff"])
def test_not_onnx(content: bytes, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    fails(lego2c("inspect", bad), UsageError.exit_code, "not a readable ONNX model")


def test_truncated(zoo: dict[str, Path], tmp_path: Path) -> None:
    data = zoo["cnn"].read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    fails(lego2c("inspect", cut), UsageError.exit_code, "not a readable ONNX model", "truncated")


def _model(tmp_path: Path, nodes: list[onnx.NodeProto], inputs: list[str], outputs: list[str],
           opset: int = 17, dtype: int = TensorProto.FLOAT, shape: list[int | str] | None = None) -> Path:  # fmt: skip
    shape = shape or [1, 2, 3, 3]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(i, dtype, shape) for i in inputs],
                              [helper.make_tensor_value_info(o, dtype, None) for o in outputs])  # fmt: skip
    path = tmp_path / "m.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if 7 <= opset <= 23:  # output shapes as an exporter writes them
        model = onnx.shape_inference.infer_shapes(model)
    onnx.save(model, str(path))
    return path


def test_unsupported_ops_all_listed(tmp_path: Path) -> None:
    nodes = [helper.make_node("Sin", ["x"], ["a"], name="s1"), helper.make_node("Cos", ["a"], ["y"], name="c1")]
    fails(lego2c("inspect", _model(tmp_path, nodes, ["x"], ["y"])), UnsupportedModelError.exit_code,
          "2 node(s)", "Cos: c1", "Sin: s1", "supported ops")  # fmt: skip


@pytest.mark.parametrize("opset", [3, 99])
def test_opset_out_of_range(opset: int, tmp_path: Path) -> None:
    path = _model(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], ["x"], ["y"], opset=opset)
    proc = lego2c("inspect", path)
    assert proc.returncode in (UnsupportedModelError.exit_code, UsageError.exit_code), proc.stderr
    assert "opset" in proc.stderr.lower() and "Traceback" not in proc.stderr


def test_non_float_input(tmp_path: Path) -> None:
    path = _model(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], ["x"], ["y"], dtype=TensorProto.INT32)
    fails(lego2c("inspect", path), UnsupportedModelError.exit_code, "INT32", "float32")


def test_dynamic_shape_without_input_shape(tmp_path: Path) -> None:
    path = _model(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], ["x"], ["y"], shape=["n", 3, "h", "w"])
    fails(lego2c("inspect", path), UnsupportedModelError.exit_code, "dynamic dimensions", "--input-shape")
    assert lego2c("inspect", path, "--input-shape", "1,3,8,8").returncode == 0


def test_several_inputs(tmp_path: Path) -> None:
    path = _model(tmp_path, [helper.make_node("Add", ["x", "z"], ["y"])], ["x", "z"], ["y"])
    fails(lego2c("inspect", path), UnsupportedModelError.exit_code, "2 inputs")


def _gemm(tmp_path: Path, w: np.ndarray, b: np.ndarray) -> Path:
    """x (1, in) -> Gemm with weight (out, in) and bias (out)."""
    from onnx import numpy_helper

    graph = helper.make_graph([helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w.shape[1]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, w.shape[0]])],
                              [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])  # fmt: skip
    path = tmp_path / "gemm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_weights_whose_squares_overflow_are_refused(tmp_path: Path) -> None:
    w = np.ones((4, 8), np.float32)
    w[2, 3] = 1e20
    fails(lego2c("compress", _gemm(tmp_path, w, np.zeros(4, np.float32)), "-o", tmp_path / "c.onnx"),
          UnsupportedModelError.exit_code, "up to 1e+20", "overflow float32")  # fmt: skip


def test_scales_and_biases_beyond_float16_are_stored_wider(tmp_path: Path) -> None:
    """Channels spanning 1000x keep float16 scales and biases rather than int8 (MIN_SCALE_CODE); a bias past
    float16's range then needs float32, not Inf."""
    from lego2c.verify import run_onnx

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((4, 8)) * np.array([[1e-3], [1], [1], [1]])).astype(np.float32)
    path = _gemm(tmp_path, w, np.array([0, 1e5, -3e5, 2], np.float32))
    out = tmp_path / "c.onnx"
    assert lego2c("compress", path, "--recipe", "safe", "-o", out).returncode == 0
    x = rng.standard_normal((1, 8)).astype(np.float32)
    want, got = run_onnx(path, x), run_onnx(out, x)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=0.05)  # int8 weights: each product within 1/254 of |w|


def test_float16_codebooks_that_would_overflow_are_refused(tmp_path: Path) -> None:
    w = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32) * 1e5
    fails(lego2c("compress", _gemm(tmp_path, w, np.zeros(4, np.float32)), "--recipe", "legonet", "-K", "4",
                 "-b", "1", "--codebook-dtype", "f16", "-o", tmp_path / "c.onnx"),
          UsageError.exit_code, "codebook 'global'", "beyond float16's range", "--channel-scales")  # fmt: skip


@pytest.mark.parametrize(
    "args, needle",
    [(["-K", "1"], "-K 1"), (["-K", "abc"], "invalid int"), (["-b", "9"], "tile 9x9"), (["-b", "2x"], "tile shape"),
     (["--board", "stm32f999"], "known boards"), (["--bench", "0"], "--bench"), (["--exclude", "nope"], "nope"),
     (["--recipe", "safe", "--move-indices"], "nothing calibrates")],
)  # fmt: skip
def test_bad_options(args: list[str], needle: str, zoo: dict[str, Path], tmp_path: Path) -> None:
    fails(lego2c("build", zoo["mlp"], "-o", tmp_path / "o", *args), UsageError.exit_code, needle)


def test_does_not_fit(zoo: dict[str, Path], tmp_path: Path) -> None:
    proc = lego2c("build", zoo["autoencoder"], "--no-compress", "--board", "stm32f746g", "-o", tmp_path / "o")
    fails(proc, DoesNotFitError.exit_code, "does not fit", "bytes short", "--target-kb")


def _path_without(tmp_path: Path, *missing: str) -> dict[str, str]:
    """PATH holding links to every tool in PATH except `missing`: a machine without them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        for tool in Path(d).glob("*") if Path(d).is_dir() else []:
            link = bin_dir / tool.name
            if tool.name not in missing and not link.exists():
                link.symlink_to(tool)
    return {**os.environ, "PATH": str(bin_dir)}


def test_cross_compiler_missing(zoo: dict[str, Path], tmp_path: Path) -> None:
    env = _path_without(tmp_path, "arm-none-eabi-gcc")
    proc = lego2c("build", zoo["mlp"], "--board", "stm32f746g", "-o", tmp_path / "o", env=env)
    fails(proc, ToolchainMissingError.exit_code, "arm-none-eabi-gcc", "apt-get install")


def test_qemu_missing_and_timeout(zoo: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fw"
    assert lego2c("build", zoo["cnn"], "--recipe", "safe", "--board", "qemu-m7", "-o", out).returncode == 0
    fails(lego2c("run", out, env=_path_without(tmp_path, "qemu-system-arm")), ToolchainMissingError.exit_code,
          "qemu-system-arm", "apt-get install")  # fmt: skip
    fails(lego2c("run", out, "--timeout", "0.001"), EmulatorError.exit_code, "did not finish")


def test_run_on_a_folder_that_is_no_build(tmp_path: Path) -> None:
    fails(lego2c("run", tmp_path), UsageError.exit_code, "not a lego2c firmware build")


def test_user_files_are_never_overwritten(zoo: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    fails(lego2c("build", zoo["mlp"], "-o", out), UsageError.exit_code, "refusing to overwrite", "--force")
    assert (out / "notes.txt").read_text() == "precious"
    single = tmp_path / "file.onnx"
    single.write_text("mine")
    fails(lego2c("compress", zoo["mlp"], "-o", single), UsageError.exit_code, "refusing")
    assert single.read_text() == "mine"
    # lego2c's own output is replaced without --force; others' only with it.
    assert lego2c("build", zoo["mlp"], "-o", tmp_path / "ours").returncode == 0
    assert lego2c("build", zoo["mlp"], "-o", tmp_path / "ours").returncode == 0
    assert lego2c("build", zoo["mlp"], "-o", out, "--force").returncode == 0
    assert not (out / "notes.txt").exists()


def _hashes(folder: Path) -> dict[str, str]:
    files = sorted(folder.glob("src/*")) + [folder / "firmware.bin", folder / "firmware.hex"]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_same_input_same_bytes(zoo: dict[str, Path], tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        proc = lego2c("build", zoo["resnet8"], "--recipe", "safe", "--board", "stm32f746g", "-o", out)
        assert proc.returncode == 0, proc.stderr
    assert _hashes(a) == _hashes(b)


def test_inspect_reports_both_ratios(zoo: dict[str, Path], tmp_path: Path) -> None:
    proc = lego2c("inspect", zoo["resnet8"], "-K", "32", "-b", "4", "--json", tmp_path / "s.json")
    assert proc.returncode == 0, proc.stderr
    assert "honest" in proc.stdout and "paper" in proc.stdout and "102.4x paper" in proc.stdout
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["paper_ratio"] == pytest.approx(102.4)
    assert 1 < data["honest_ratio"] < data["paper_ratio"]


def test_compress_writes_a_model_onnxruntime_runs(zoo: dict[str, Path], tmp_path: Path) -> None:
    from lego2c.verify import run_onnx

    out = tmp_path / "m.lego.onnx"
    assert lego2c("compress", zoo["cnn"], "-K", "16", "-b", "2", "-o", out).returncode == 0
    y = run_onnx(out, np.zeros((1, 1, 28, 28), np.float32))
    assert y.shape[-1] == 10 and np.isfinite(y).all()


def test_bias_correction_flag_changes_only_biases(zoo: dict[str, Path], tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    def constants(*flags: str) -> dict[str, np.ndarray]:
        out = tmp_path / f"m{len(flags)}.lego.onnx"
        assert lego2c("compress", zoo["resnet8"], *flags, "-o", out).returncode == 0
        return {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}

    on, off = constants("--recipe", "safe"), constants("--recipe", "safe", "--no-bias-correction")
    changed = {name for name in on if not np.array_equal(on[name], off[name])}
    assert changed and all(on[name].ndim == 1 for name in changed)  # biases only: the weights are the same


def test_inspect_says_where_bias_correction_reached(zoo: dict[str, Path]) -> None:
    kept = lego2c("inspect", ROOT / "models" / "resnet8_fmnist.onnx", "--recipe", "safe")  # exported with its BatchNorms
    assert "data-free bias correction: 9 of 10 compressed layers" in kept.stdout
    folded = lego2c("inspect", zoo["dynamo_cnn"])  # the dynamo exporter folds BN away
    assert "data-free bias correction: 0 of" in " ".join(folded.stdout.split()) and "PRESERVE" in folded.stdout


def test_host_build_prints_footprint_and_error(zoo: dict[str, Path], tmp_path: Path) -> None:
    proc = lego2c("build", zoo["resnet8"], "--recipe", "safe", "--board", "host", "-o", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert "model data in flash" in proc.stdout and "activation arena" in proc.stdout
    assert "max abs error" in proc.stdout and "match" in proc.stdout


def test_interrupted_build_leaves_the_old_output(zoo: dict[str, Path], tmp_path: Path) -> None:
    """Ctrl-C in the middle of a build: the previous output stays whole, no temporary folder stays.

    Ctrl-C is held back while the finished output is swapped in (that must not stop half-way), so a
    press that lands then lets the build finish: the new output is whole. The old one must survive
    at least one of five presses that land earlier (on a loaded CI machine three all once landed late).
    """
    import signal
    import time

    out = tmp_path / "fw"
    assert lego2c("build", zoo["cnn"], "--recipe", "safe", "-o", out).returncode == 0
    kept = 0
    uncached = {k: v for k, v in os.environ.items() if k != "CCACHE"}  # cached objects leave too short a window
    for _ in range(5):
        before = _tree_hash(out)
        # A job started in the background inherits SIGINT ignored; a user's terminal has it on.
        proc = subprocess.Popen([sys.executable, "-m", "lego2c", "build", zoo["mobilenetv1"], "--recipe", "safe",
                                 "--board", "stm32f746g", "-o", out, "--force"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=uncached,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
        deadline = time.time() + 120
        while time.time() < deadline and not list(tmp_path.glob(".fw.tmp-*/src")):
            time.sleep(0.02)
        assert list(tmp_path.glob(".fw.tmp-*")), "the build never started writing"
        # Pressed again while the build is still writing: on a loaded CI run single presses were all lost once.
        while proc.poll() is None and list(tmp_path.glob(".fw.tmp-*")):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.1)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, 130) and "Traceback" not in err, err
        if proc.returncode == 130 and _tree_hash(out) == before:
            kept += 1
            assert "interrupted" in err
        else:  # the press landed while the new output was being swapped in: it is there, whole
            assert all((out / name).exists() for name in (out / MANIFEST).read_text().split())
        assert [p.name for p in tmp_path.iterdir()] == ["fw"]
        if kept:
            break
    assert kept, "no Ctrl-C stopped the build before it published"


def _tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode() + f.read_bytes())
    return h.hexdigest()


def test_generated_c_rejects_null_pointers(zoo: dict[str, Path], tmp_path: Path) -> None:
    """lego_model_run and the kernels return LEGO_ERR_NULL instead of faulting."""
    out = tmp_path / "o"
    assert lego2c("build", zoo["cnn"], "--recipe", "safe", "-o", out).returncode == 0
    probe = out / "probe.c"
    probe.write_text(
        '#include <stdio.h>\n#include "model.h"\n#include "lego_runtime.h"\n'
        "int main(void) {\n"
        "  static float buf[LEGO_MODEL_INPUT_SIZE];\n"
        '  printf("%d %d %d %d\\n", lego_model_run(NULL, buf), lego_model_run(buf, NULL),\n'
        "         lego_unary_f32(NULL, buf, buf), lego_conv2d_f32(NULL, NULL, buf, NULL, buf, NULL));\n"
        "  return 0;\n}\n"
    )
    srcs = [str(p) for p in sorted((out / "src").glob("*.c")) if p.name != "main.c"]
    exe = out / "probe"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{out / 'src'}", str(probe), *srcs, "-lm",
                    "-o", str(exe)], check=True)  # fmt: skip
    codes = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert codes == ["-1", "-1", "-1", "-1"]


def test_several_outputs(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Sigmoid", ["x"], ["z"]),
             helper.make_node("Cos", ["z"], ["e"])]  # fmt: skip
    path = _model(tmp_path, nodes, ["x"], ["y", "e"])
    fails(lego2c("inspect", path), UnsupportedModelError.exit_code, "2 outputs", "--output-name")
    fails(lego2c("inspect", path, "--output-name", "w"), UsageError.exit_code, "--output-name w", "outputs: y, e")
    # Any tensor will do, and what it does not need (here an op lego2c lacks) is dropped.
    proc = lego2c("build", path, "--output-name", "z", "--board", "host", "-o", tmp_path / "o")
    assert proc.returncode == 0 and "match" in proc.stdout, proc.stdout + proc.stderr


def test_a_scikit_learn_export_compiles_by_its_probabilities(tmp_path: Path) -> None:
    """skl2onnx ends a classifier in ArgMax, ArrayFeatureExtractor and Cast to an int64 label output, beside
    the probabilities (or, by default, a ZipMap of them): a real other exporter, whose models need --output-name.
    The error names the tensor to ask for."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    clf = MLPClassifier((32,), max_iter=500, random_state=0).fit(x[:1000], y[:1000])
    path, zipmap = tmp_path / "mlp.onnx", tmp_path / "mlp_zipmap.onnx"
    path.write_bytes(to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset=17).SerializeToString())
    fails(lego2c("inspect", path), UnsupportedModelError.exit_code, "(label: int64 tensor, probabilities: float tensor)",
          "e.g. --output-name probabilities")  # fmt: skip
    np.savez(tmp_path / "held_out.npz", x=x[1000:], y=y[1000:])
    proc = lego2c("eval", path, "--output-name", "probabilities", "--dataset", tmp_path / "held_out.npz",
                  "--json", tmp_path / "e.json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["top1_original"] == pytest.approx(100 * clf.score(x[1000:], y[1000:]))  # onnxruntime is scikit-learn
    assert e["agreement"] >= 98 and e["honest_ratio"] > 3.5, e  # the default; both layers int8, as first and last
    proc = lego2c("build", path, "--output-name", "probabilities", "--board", "host", "-o", tmp_path / "o")
    assert proc.returncode == 0 and "match" in proc.stdout, proc.stdout + proc.stderr
    # skl2onnx's default: the probabilities as a sequence of maps, which is no tensor at all
    model = to_onnx(clf, x[:1], target_opset=17)
    zipmap.write_bytes(model.SerializeToString())
    scores = next(n.input[0] for n in model.graph.node if n.op_type == "ZipMap")
    fails(lego2c("inspect", zipmap), UnsupportedModelError.exit_code, "output_probability: sequence of maps",
          f"e.g. --output-name {scores}")  # fmt: skip
    fails(lego2c("inspect", zipmap, "--output-name", "output_probability"), UsageError.exit_code,
          "it is a sequence of maps", f"e.g. --output-name {scores}")  # fmt: skip
    proc = lego2c("build", zipmap, "--output-name", scores, "--board", "host", "-o", tmp_path / "z")
    assert proc.returncode == 0 and "match" in proc.stdout, proc.stdout + proc.stderr


def test_a_scikit_learn_linear_model_names_the_ops_it_lacks(tmp_path: Path) -> None:
    """A scaler and a logistic regression export to ONNX-ML ops, whose int64 label and untyped outputs
    would otherwise be reported before their cause."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(x.astype(np.float32), y)
    path = tmp_path / "logreg.onnx"
    options = {id(pipe.steps[-1][1]): {"zipmap": False}}
    path.write_bytes(to_onnx(pipe, x[:1].astype(np.float32), options=options, target_opset=17).SerializeToString())
    fails(lego2c("inspect", path, "--output-name", "probabilities"), UnsupportedModelError.exit_code,
          "3 node(s) cannot be compiled", "ai.onnx.ml.Scaler", "ai.onnx.ml.LinearClassifier", "ai.onnx.ml.Normalizer")  # fmt: skip
