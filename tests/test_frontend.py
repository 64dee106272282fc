"""The ONNX frontend on what exporters really emit, checked end to end against onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from lego2c.boards import load_board
from lego2c.build import build_host, build_target, compile_model, run_emulated
from lego2c.compress import DEFAULT_RECIPE, RECIPES, CompressOptions, bias_of, weighted_nodes
from lego2c.ops import weight_readers
from lego2c.errors import UnsupportedModelError
from lego2c.evaluate import model_outputs
from lego2c.frontend import load_model

DENSE = CompressOptions(enabled=False)
KERAS = sorted((Path(__file__).parent / "data" / "keras").glob("*.onnx"))  # scripts/export_keras.py


def host_matches(path: Path, tmp_path: Path, opts: CompressOptions = DENSE, input_shape: list[int] | None = None) -> None:
    run = build_host(compile_model(path, opts, input_shape, progress=False), tmp_path / "out")
    assert run.max_error <= run.allowed, f"{run.max_error} > {run.allowed}"


class ShapeArithmetic(torch.nn.Module):
    """Reshape and pad sizes computed from x.shape: the legacy exporter emits Shape/Gather/Concat."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.drop = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(torch.relu(self.bn(self.conv(x))))
        pad = (x.shape[-1] - 6) // 2
        y = F.pad(y, (pad, pad, pad, pad))
        return self.fc(y.reshape(x.shape[0], -1))


def export(model: torch.nn.Module, x: torch.Tensor, path: Path, **kw: object) -> Path:
    model.eval()
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, **kw)
    return path


def test_shape_subgraphs_and_dynamic_batch_are_folded(tmp_path: Path) -> None:
    path = export(ShapeArithmetic(), torch.randn(1, 3, 8, 8), tmp_path / "m.onnx",
                  input_names=["x"], dynamic_axes={"x": {0: "batch"}})  # fmt: skip
    raw_ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Shape", "Gather", "BatchNormalization"} & raw_ops  # the exporter really emitted them
    g = load_model(path)
    ops = {n.op for n in g.nodes}
    assert not ops & {"Shape", "Gather", "Concat", "Cast", "BatchNormalization", "Dropout", "Identity", "Constant"}
    assert g.shape(g.inputs[0]) == (1, 3, 8, 8)
    host_matches(path, tmp_path)


def test_external_data(tmp_path: Path) -> None:
    path = export(ShapeArithmetic(), torch.randn(1, 3, 8, 8), tmp_path / "tmp.onnx")
    model = onnx.load(str(path))
    ext = tmp_path / "ext" / "model.onnx"
    ext.parent.mkdir()
    onnx.save(model, str(ext), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)  # fmt: skip
    assert (ext.parent / "weights.bin").stat().st_size > 1000
    host_matches(ext, tmp_path, CompressOptions(k=16, tile=(2, 2)))


def test_onnx_local_functions_are_inlined(tmp_path: Path) -> None:
    """A graph calling a model-local function (as the dynamo exporter and other tools emit)."""
    fn = helper.make_function(
        "custom.fn", "ScaledRelu", ["a", "s"], ["b"],
        [helper.make_node("Mul", ["a", "s"], ["m"]), helper.make_node("Relu", ["m"], ["b"])],
        opset_imports=[helper.make_opsetid("", 17)],
    )  # fmt: skip
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
         helper.make_node("ScaledRelu", ["c", "s"], ["y"], domain="custom.fn", name="call")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float32([0.5]), "s")],
    )  # fmt: skip
    model = helper.make_model(graph, functions=[fn], opset_imports=[helper.make_opsetid("", 17),
                                                                    helper.make_opsetid("custom.fn", 1)])  # fmt: skip
    model.ir_version = 8
    path = tmp_path / "f.onnx"
    onnx.save(model, str(path))
    assert [n.op for n in load_model(path).nodes] == ["Conv", "Mul", "Relu"]
    host_matches(path, tmp_path)


def test_dynamo_exporter(zoo: dict[str, Path]) -> None:
    model = onnx.load(str(zoo["dynamo_cnn"]))
    assert model.producer_name != "pytorch" or model.opset_import[0].version >= 18
    g = load_model(zoo["dynamo_cnn"])
    assert {"Conv", "Concat", "HardSwish"} <= {n.op for n in g.nodes}


@pytest.mark.parametrize("path", KERAS, ids=lambda p: p.stem)
def test_keras_models_through_tf2onnx(path: Path, tmp_path: Path) -> None:
    """Another framework and exporter: channels-last Keras graphs that tf2onnx rewrote into ONNX's layout,
    with a symbolic batch, BatchNorm folded its own way and, for a Normalization layer, graph inputs that no
    node reads. Dense and at the safe recipe, on the host."""
    model = onnx.load(str(path))
    assert model.producer_name == "tf2onnx" and len(KERAS) == 8
    assert len(model.graph.input) == (3 if path.stem == "upsampling" else 1)
    host_matches(path, tmp_path / "dense")
    host_matches(path, tmp_path / "safe", RECIPES[DEFAULT_RECIPE])


def test_a_keras_keyword_spotter_runs_in_qemu(tmp_path: Path) -> None:
    c = compile_model(Path(__file__).parent / "data" / "keras" / "dscnn.onnx", RECIPES[DEFAULT_RECIPE], progress=False)
    r = run_emulated(build_target(c, load_board("stm32f746g"), tmp_path / "fw").out_dir)
    assert r.output.rc == 0 and r.max_error <= r.allowed, f"{r.max_error} > {r.allowed}"


def test_batchnorm_folds_into_conv_and_gemm(zoo: dict[str, Path]) -> None:
    for name in ("resnet8", "autoencoder"):
        assert "BatchNormalization" not in {n.op for n in load_model(zoo[name]).nodes}


def test_a_weight_that_two_nodes_read_is_stored_once(tmp_path: Path) -> None:
    """Tied weights: one layer, one weight record in the C code, its parameters counted once. Readers that
    would store it differently (here two Convs with their own biases) get a copy each."""

    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.fc, self.out = torch.nn.Linear(16, 16, bias=False), torch.nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.fc(torch.relu(self.fc(x)))))

    path = export(Tied(), torch.randn(1, 16), tmp_path / "tied.onnx")
    c = compile_model(path, CompressOptions(k=16, tile=(1, 1), scope="layer", channel_scales=True), progress=False)
    assert len(weight_readers(c.graph)) == 3 and len(c.compressed.layers) == len(weighted_nodes(c.graph)) == 2
    run = build_host(c, tmp_path / "out")
    assert run.max_error <= run.allowed
    assert (tmp_path / "out" / "src" / "model.c").read_text().count("lego_weights_t ") == 2
    assert c.code.params == 16 * 16 + 16 * 4 + 4

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 4, 1, 1)).astype(np.float32), "W")
    biases = [numpy_helper.from_array(np.full(4, v, np.float32), f"b{v}") for v in (1, 2)]
    nodes = [helper.make_node("Conv", ["x", "W", "b1"], ["h"], name="c1"),
             helper.make_node("Conv", ["h", "W", "b2"], ["y"], name="c2")]  # fmt: skip
    value = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 5, 5]) for n in ("x", "y")]
    graph = helper.make_graph(nodes, "untie", value[:1], value[1:], [w, *biases])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "two_biases.onnx")
    g = load_model(tmp_path / "two_biases.onnx")
    assert len(weighted_nodes(g)) == 2
    host_matches(tmp_path / "two_biases.onnx", tmp_path / "two", CompressOptions(k=4, tile=(1, 1)))


def test_a_linear_on_more_than_two_axes_keeps_its_bias(tmp_path: Path) -> None:
    """A Linear on a (1, T, K) input as MatMul + Add (as the recurrent layers' input projection is, and as
    exports are where onnxslim does not make them Gemms): the IR gives the MatMul the bias, so that it is
    stored, corrected and distilled with its layer, and added in the same pass."""
    rng = np.random.default_rng(0)
    consts = {"W1": rng.standard_normal((12, 16)), "b1": rng.uniform(-1, 1, 16), "W2": rng.standard_normal((16, 5)),
              "b2": rng.uniform(-1, 1, (1, 1, 5))}  # fmt: skip
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["p1"]), helper.make_node("Add", ["b1", "p1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["r1"]), helper.make_node("MatMul", ["r1", "W2"], ["p2"]),
             helper.make_node("Add", ["p2", "b2"], ["y"])]  # fmt: skip
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 7, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7, 5])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in consts.items()])  # fmt: skip
    path = tmp_path / "linear.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    g = load_model(path)
    assert "Add" not in {n.op for n in g.nodes} and ("MatMul", 3) in [(n.op, len(n.inputs)) for n in g.nodes]
    assert len(weighted_nodes(g)) == 2 and all(bias_of(n, g) is not None for n in weighted_nodes(g))
    x = rng.standard_normal((3, 1, 7, 12)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = np.concatenate([session.run(None, {"x": xi})[0].reshape(1, -1) for xi in x])
    np.testing.assert_allclose(model_outputs(g, None, x.reshape(3, 7, 12)), want, rtol=1e-5, atol=1e-5)
    host_matches(path, tmp_path, CompressOptions(k=16, tile=(1, 2), scope="layer", channel_scales=True))


def test_standalone_batchnorm_becomes_mul_add(tmp_path: Path) -> None:
    class M(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = torch.nn.BatchNorm2d(3)
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(x + 1.0)

    path = export(M(), torch.randn(1, 3, 5, 5), tmp_path / "bn.onnx", do_constant_folding=False)
    assert "BatchNormalization" not in {n.op for n in load_model(path).nodes}
    host_matches(path, tmp_path)


def _dynamic_model(tmp_path: Path) -> Path:
    conv = torch.nn.Conv2d(1, 2, 3, padding=1)
    return export(conv, torch.randn(1, 1, 8, 8), tmp_path / "dyn.onnx", input_names=["x"],
                  dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})  # fmt: skip


def test_dynamic_spatial_dims_need_input_shape(tmp_path: Path) -> None:
    path = _dynamic_model(tmp_path)
    with pytest.raises(UnsupportedModelError) as e:
        load_model(path)
    assert "'h'" in e.value.message and "--input-shape" in (e.value.hint or "")
    host_matches(path, tmp_path, input_shape=[1, 1, 10, 12])


def test_every_unsupported_op_is_listed_at_once(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Cos", ["x"], ["a"], name="cos_1"),
        helper.make_node("Relu", ["a"], ["b"], name="ok"),
        helper.make_node("Cos", ["b"], ["c"], name="cos_2"),
        helper.make_node("Pad", ["c", "pads"], ["y"], name="pd", mode="reflect"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 5, 4])],
                              [numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 1, 0], np.int64), "pads")])  # fmt: skip
    path = tmp_path / "u.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(UnsupportedModelError) as e:
        load_model(path)
    for part in ("3 node(s)", "Cos: cos_1, cos_2", "Pad: pd (Pad mode 'reflect' (only 'constant'))"):
        assert part in e.value.message


def test_the_readme_names_every_op_there_is_a_kernel_for() -> None:
    from lego2c.frontend import supported_ops

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## What it compiles") :]
    section = section[: section.index("\n## ")]
    assert [op for op in supported_ops() if f"`{op}`" not in section] == []


@pytest.mark.parametrize("opset, axes_as", [(11, "attribute"), (17, "input")])
def test_constant_folding_reads_a_node_at_its_models_opset(opset: int, axes_as: str) -> None:
    """Unsqueeze took its axes as an attribute before opset 13; onnx's evaluator given the bare node runs the
    newest opset and refuses that form."""
    from lego2c.constfold import folded

    x = np.arange(3, dtype=np.int64)
    inputs, attrs = (["x"], {"axes": [0]}) if axes_as == "attribute" else (["x", "axes"], {})
    node = helper.make_node("Unsqueeze", inputs, ["y"], **attrs)
    feeds = {"x": x} | ({"axes": np.array([0])} if axes_as == "input" else {})
    assert folded(node, {"": opset}, feeds)["y"].shape == (1, 3)
