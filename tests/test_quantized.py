"""Quantised (QDQ) models, as onnxruntime's quantize_static writes them: folded, fused, compiled, compared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from lego2c.boards import load_board
from lego2c.build import build_host, build_target, compile_model, run_emulated
from lego2c.compress import RECIPES, CompressOptions
from lego2c.datasets import load_dataset
from lego2c.errors import UnsupportedModelError
from lego2c.evaluate import evaluate
from lego2c.frontend import load_model
from lego2c.ir import FAKE_QUANTIZE
from lego2c.verify import ort_session
from tests.test_cli import fails, lego2c

MODELS = Path(__file__).resolve().parents[1] / "models"


class Inputs(CalibrationDataReader):
    def __init__(self, name: str, x: np.ndarray) -> None:
        self.batches = iter([{name: x[i : i + 1]} for i in range(len(x))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def quantised(src: Path, dst: Path, x: np.ndarray) -> Path:
    """onnxruntime's static QDQ quantisation: int8 weights per channel, uint8 activations per tensor."""
    name = onnx.load(str(src)).graph.input[0].name
    quantize_static(str(src), str(dst), Inputs(name, x), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
    return dst


def random_inputs(path: Path, n: int, seed: int = 0) -> np.ndarray:
    g = load_model(path)
    return np.random.default_rng(seed).standard_normal((n, *g.shape(g.inputs[0])[1:])).astype(np.float32)


def fake_quant_model(dtype: int, scale: float, zero_point: int, n: int) -> onnx.ModelProto:
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
                              initializer=[numpy_helper.from_array(np.array(scale, np.float32), "s"),
                                           numpy_helper.from_array(np.array(zero_point, helper.tensor_dtype_to_np_dtype(dtype)), "z")])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21 if dtype in (TensorProto.INT16, TensorProto.UINT16) else 17)])


@pytest.mark.parametrize("dtype, scale, zero_point", [(TensorProto.UINT8, 0.05, 128), (TensorProto.INT8, 0.1, -3),
                                                       (TensorProto.UINT8, 0.02, 0), (TensorProto.INT16, 0.001, 7)])  # fmt: skip
def test_fake_quantize_kernel_and_torch_equal_onnxruntime(dtype: int, scale: float, zero_point: int, tmp_path: Path) -> None:
    """Exact equality, ties included: values on the half steps (rounded to even), in range and far beyond it."""
    torch = pytest.importorskip("torch")
    from lego2c.torchexec import Executor

    half_steps = (np.arange(-300, 300) + 0.5).astype(np.float32) * np.float32(scale)
    x = np.concatenate([half_steps, np.random.default_rng(0).standard_normal(400).astype(np.float32) * 200 * scale])
    path = tmp_path / "m.onnx"
    onnx.save(fake_quant_model(dtype, scale, zero_point, x.size), str(path))
    np.save(tmp_path / "x.npy", x.reshape(1, -1))
    c = compile_model(path, CompressOptions(enabled=False), progress=False)
    assert [n.op for n in c.graph.nodes] == [FAKE_QUANTIZE]
    run = build_host(c, tmp_path / "out", input_npy=tmp_path / "x.npy")
    want = run.reference.reshape(-1)
    assert len(np.unique(want)) > 100  # the grid, not a constant
    np.testing.assert_array_equal(run.output.values, want)  # the C kernel: bit for bit
    with torch.no_grad():
        np.testing.assert_array_equal(Executor(c.graph)(torch.from_numpy(x.reshape(1, -1))).numpy().reshape(-1), want)


@pytest.mark.parametrize("name", ["resnet8", "tiny_vit"])
def test_onnxruntime_qdq_model_compiles_and_matches(name: str, zoo: dict[str, Path], tmp_path: Path) -> None:
    """Weights folded to float, every activation's Q/DQ pair one node; the IR computes exactly what the QDQ file
    does in onnxruntime, and the C code (default recipe) what the IR does, within the rounding slack."""
    path = quantised(zoo[name], tmp_path / "qdq.onnx", random_inputs(zoo[name], 16))
    g = load_model(path)
    ops = {n.op for n in g.nodes}
    assert FAKE_QUANTIZE in ops and not ops & {"QuantizeLinear", "DequantizeLinear"}
    assert not [t.name for t in g.tensors.values() if t.is_const and t.data.dtype in (np.int8, np.uint8)]  # type: ignore[union-attr]
    original, ir = ort_session(path, optimize=False), ort_session(g.to_onnx(), optimize=False)
    for x in random_inputs(path, 20, seed=1):
        feed = x[None]
        np.testing.assert_array_equal(ir.run(None, {ir.get_inputs()[0].name: feed})[0],
                                      original.run(None, {original.get_inputs()[0].name: feed})[0])  # fmt: skip
    run = build_host(compile_model(path, RECIPES["safe"], progress=False), tmp_path / "out")
    assert run.output.rc == 0 and run.ok, f"max error {run.max_error} > {run.allowed}"


def test_qdq_model_on_the_board_emulator(zoo: dict[str, Path], tmp_path: Path) -> None:
    path = quantised(zoo["dscnn"], tmp_path / "qdq.onnx", random_inputs(zoo["dscnn"], 16))
    tb = build_target(compile_model(path, RECIPES["safe"], progress=False), load_board("stm32f746g"), tmp_path / "fw")
    r = run_emulated(tb.out_dir)
    assert r.output.rc == 0 and r.ok, f"max error {r.max_error} > {r.allowed}"


def test_quantised_trained_model_keeps_its_accuracy(tmp_path: Path) -> None:
    """The trained digits CNN, quantised by onnxruntime with 64 training digits, then compressed by the
    data-free recipe: top-1 on the 540 held-out digits within 1 point of the quantised model's."""
    x_train, _ = load_dataset("digits", "train")
    path = quantised(MODELS / "digits_cnn.onnx", tmp_path / "qdq.onnx", x_train[:64])
    x, y = load_dataset("digits", "test")
    e = evaluate(compile_model(path, RECIPES["safe"], progress=False), x, y, progress=False)
    assert e.top1_original is not None and e.top1_original > 90
    assert e.drop is not None and e.drop <= 1.0, e
    assert e.honest_ratio > 4.5, e  # the QDQ file's int8 weights and their scales come to under 4x


def test_activations_quantised_per_channel_are_refused(tmp_path: Path) -> None:
    """What lego2c cannot compute is named, node by node, with what it does read."""
    model = fake_quant_model(TensorProto.UINT8, 0.1, 0, 4)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.full(4, 0.1, np.float32), "s"))
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.zeros(4, np.uint8), "z"))
    path = tmp_path / "per_channel.onnx"
    onnx.save(model, str(path))
    fails(lego2c("inspect", path), UnsupportedModelError.exit_code, "QuantizeLinear: q", "DequantizeLinear: dq",
          "per tensor")  # fmt: skip
