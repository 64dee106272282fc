"""Recurrent layers (ONNX LSTM, GRU and RNN), unrolled by the frontend, against onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from lego2c.boards import load_board
from lego2c.build import build_host, build_target, compile_model, run_emulated
from lego2c.calibrate import calibrated
from lego2c.compress import DEFAULT_RECIPE, RECIPES, CompressOptions, weighted_nodes
from lego2c.datasets import load_dataset
from lego2c.errors import UnsupportedModelError
from lego2c.evaluate import evaluate
from lego2c.frontend import load_model
from lego2c.ops import batch_mover
from lego2c.recurrent import RECURRENT_OPS

SAFE = RECIPES[DEFAULT_RECIPE]
KERAS_LSTM = Path(__file__).parent / "data" / "keras" / "lstm.onnx"  # scripts/export_keras.py


class Sequence(torch.nn.Module):
    """A batch-first recurrent layer whose last step feeds a classifier, as sensor and audio models have."""

    def __init__(self, cell: str, layers: int, bidirectional: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = getattr(torch.nn, cell)(8, 16, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.fc = torch.nn.Linear(32 if bidirectional else 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x)[0][:, -1])


def export(model: torch.nn.Module, path: Path, steps: int = 12, opset: int = 17) -> Path:
    torch.onnx.export(model.eval(), (torch.randn(1, steps, 8),), str(path), dynamo=False, opset_version=opset)
    return path


def weight_structs(out_dir: Path) -> int:
    return (out_dir / "src" / "model.c").read_text().count("lego_weights_t ")


@pytest.mark.parametrize("cell", sorted(RECURRENT_OPS))
@pytest.mark.parametrize("layers,bidirectional,opset", [(1, False, 17), (2, True, 17), (1, False, 11)])
def test_pytorch_recurrent_layers_match_onnxruntime(cell: str, layers: int, bidirectional: bool, opset: int,
                                                    tmp_path: Path) -> None:  # fmt: skip
    """Opset 11 exports are converted to 13 first: the unrolled nodes take Unsqueeze's axes as an input."""
    path = export(Sequence(cell, layers, bidirectional), tmp_path / "m.onnx", opset=opset)
    assert cell in {n.op_type for n in onnx.load(str(path)).graph.node}
    for name, opts in [("dense", CompressOptions(enabled=False)), ("safe", SAFE)]:
        c = compile_model(path, opts, progress=False)
        assert not {n.op for n in c.graph.nodes} & set(RECURRENT_OPS)
        run = build_host(c, tmp_path / name)
        assert run.max_error <= run.allowed, f"{name}: {run.max_error} > {run.allowed}"
        # Every step reads the same recurrent weight: one layer, one weight record in the C code.
        assert weight_structs(tmp_path / name) == len(c.compressed.layers) == len(weighted_nodes(c.graph))
    # The layer stays batch first, its exporter's transposes gone, so calibration can run it.
    assert batch_mover(c.graph) is None and "Transpose" not in {n.op for n in c.graph.nodes}


def _node_model(node: onnx.NodeProto, x_shape: list[int], inits: list[onnx.TensorProto], out_shape: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph([node], "rnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(node.output[-1], TensorProto.FLOAT, out_shape)], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def _weights(op: str, dirs: int, hidden: int, features: int, batch: int, seed: int) -> list[onnx.TensorProto]:
    g, rng = RECURRENT_OPS[op], np.random.default_rng(seed)
    arrays = {"W": (dirs, g * hidden, features), "R": (dirs, g * hidden, hidden), "B": (dirs, 2 * g * hidden),
              "h0": (dirs, batch, hidden), "c0": (dirs, batch, hidden)}  # fmt: skip
    return [numpy_helper.from_array((rng.standard_normal(s) * 0.4).astype(np.float32), n) for n, s in arrays.items()]


# Attributes PyTorch's and tf2onnx's exports do not use, each checked on its own node.
CASES = {
    "gru_reset_before_reverse": ("GRU", dict(direction="reverse", linear_before_reset=0), ["h0"], "Y"),
    "gru_reset_after_initial_state": ("GRU", dict(linear_before_reset=1), ["h0"], "Y_h"),
    "lstm_clip_bidirectional_cell_state": ("LSTM", dict(direction="bidirectional", clip=0.7), ["h0", "c0"], "Y_c"),
    "rnn_reverse_initial_state": ("RNN", dict(direction="reverse"), ["h0"], "Y_h"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_recurrent_attributes_match_onnxruntime(case: str, tmp_path: Path) -> None:
    op, attrs, states, output = CASES[case]
    dirs, hidden, features, batch, steps = 2 if attrs.get("direction") == "bidirectional" else 1, 6, 5, 1, 7
    inputs = ["x", "W", "R", "B", "", *states]
    outputs = {"Y": ["Y"], "Y_h": ["", "Y_h"], "Y_c": ["", "", "Y_c"]}[output]
    node = helper.make_node(op, inputs, outputs, hidden_size=hidden, **attrs)
    x_shape = [steps, batch, features]
    out_shape = {"Y": [steps, dirs, batch, hidden]}.get(output, [dirs, batch, hidden])
    path = tmp_path / "m.onnx"
    onnx.save(_node_model(node, x_shape, _weights(op, dirs, hidden, features, batch, seed=len(case)), out_shape), path)
    run = build_host(compile_model(path, CompressOptions(enabled=False), progress=False), tmp_path / "out")
    assert run.max_error <= run.allowed, f"{run.max_error} > {run.allowed}"


def test_recurrent_options_lego2c_cannot_unroll_are_named_at_once(tmp_path: Path) -> None:
    inits = _weights("LSTM", 1, 4, 3, 1, seed=0)
    inits.append(numpy_helper.from_array(np.ones((1, 12), np.float32), "P"))
    node = helper.make_node("LSTM", ["x", "W", "R", "B", "", "", "", "P"], ["Y"], name="lstm_peep", hidden_size=4,
                            activations=["Sigmoid", "Relu", "Tanh"], layout=1)  # fmt: skip
    path = tmp_path / "m.onnx"
    onnx.save(_node_model(node, [1, 5, 3], inits, [1, 5, 1, 4]), path)
    with pytest.raises(UnsupportedModelError) as e:
        load_model(path)
    msg = str(e.value)
    assert "LSTM: lstm_peep (" in msg and all(w in msg for w in ("activations", "peephole", "layout=1"))


def test_calibration_runs_through_an_unrolled_lstm(tmp_path: Path) -> None:
    """The steps share their recurrent weight: index assignment sums their inputs, distillation their gradients."""
    path = export(Sequence("LSTM", 1, False), tmp_path / "m.onnx")
    c = compile_model(path, CompressOptions(tile=(1, 2), k=8, channel_scales=True), progress=False)
    x = np.random.default_rng(0).standard_normal((64, 12, 8)).astype(np.float32)
    calib, res = calibrated(c, x, steps=300, progress=False)
    assert res.error_after < 0.7 * res.error_before, (res.error_before, res.error_after)
    run = build_host(calib, tmp_path / "out")
    assert run.max_error <= run.allowed


class DigitRows(torch.nn.Module):
    """An 8x8 digit read as 8 time steps of 8 pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.fc = torch.nn.LSTM(8, 32, batch_first=True), torch.nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x.flatten(1, 2))[0][:, -1])


def test_a_trained_lstm_keeps_its_accuracy_at_the_default(tmp_path: Path) -> None:
    """Real data: an LSTM trained on the digits (seeded, seconds), compressed by the default (the uniform safe
    recipe: no BatchNorm statistics), evaluated on the 540 held-out digits through onnxruntime in batches.
    One digit is 0.19 points: over training seeds 0-3 the default loses 1.11, 0.37, -0.37 and -0.74 (mean 0.09)
    at 5.81x, so the bound is loose; a broken unrolling or compression loses tens of points."""
    x, y = load_dataset("digits", "train")
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    try:
        model, xt, yt = DigitRows(), torch.from_numpy(x), torch.from_numpy(y)
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        for _ in range(30):
            for idx in torch.randperm(len(xt)).split(64):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    path = tmp_path / "digits_lstm.onnx"
    torch.onnx.export(model.eval(), (xt[:1],), str(path), dynamo=False, opset_version=17)
    xs, ys = load_dataset("digits", "test")
    e = evaluate(compile_model(path, SAFE, progress=False), xs, ys, progress=False)
    assert e.top1_original is not None and e.top1_original >= 95.0 and e.drop is not None and e.drop <= 1.5, e
    assert e.honest_ratio > 5.0


def test_a_keras_lstm_keyword_spotter_runs_in_qemu(tmp_path: Path) -> None:
    """Two stacked Keras LSTMs through tf2onnx (time-major ONNX LSTMs between transposes), default recipe."""
    assert {n.op_type for n in onnx.load(str(KERAS_LSTM)).graph.node} >= {"LSTM", "Transpose"}
    c = compile_model(KERAS_LSTM, SAFE, progress=False)
    assert batch_mover(c.graph) is None
    r = run_emulated(build_target(c, load_board("stm32f746g"), tmp_path / "fw").out_dir)
    assert r.output.rc == 0 and r.max_error <= r.allowed, f"{r.max_error} > {r.allowed}"


def loop_model(trips: int, data_condition: bool = False, opset: int = 17) -> onnx.ModelProto:
    """h_t = tanh(h_{t-1} W + x_t) over the 5 steps of x (1, 5, 3), as a Loop that gathers x_t by its counter
    and stacks every h_t; with `data_condition`, the loop goes on only while sum(h_t) > 0. The counter reaches
    the Gather through an Unsqueeze and a Squeeze, whose axes are an attribute before opset 13 and an input since."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32), "W")
    zero = numpy_helper.from_array(np.zeros((1, 3), np.float32), "h0")
    axes = {"axes": [0]} if opset < 13 else {}
    body_nodes = [helper.make_node("Unsqueeze", ["i"] + ["axis"] * (not axes), ["i1"], **axes),
                  helper.make_node("Squeeze", ["i1"] + ["axis"] * (not axes), ["i0"], **axes),
                  helper.make_node("Gather", ["xs", "i0"], ["x_t"], axis=0),
                  helper.make_node("MatMul", ["h", "W"], ["hw"]), helper.make_node("Add", ["hw", "x_t"], ["pre"]),
                  helper.make_node("Tanh", ["pre"], ["h_new"]), helper.make_node("Identity", ["h_new"], ["scan"])]  # fmt: skip
    if data_condition:
        body_nodes += [helper.make_node("ReduceSum", ["h_new"], ["total"], keepdims=0),
                       helper.make_node("Greater", ["total", "zero"], ["cond_out"])]  # fmt: skip
    else:
        body_nodes.append(helper.make_node("Identity", ["cond"], ["cond_out"]))
    body = helper.make_graph(
        body_nodes, "step",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("h_new", TensorProto.FLOAT, [1, 3]),
         helper.make_tensor_value_info("scan", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(np.array(0.0, np.float32), "zero"), numpy_helper.from_array(np.array([0]), "axis")])  # fmt: skip
    nodes = [helper.make_node("Transpose", ["x"], ["xs"], perm=[1, 0, 2]),
             helper.make_node("Loop", ["M", "", "h0"], ["h_last", "hs"], body=body),
             helper.make_node("Transpose", ["hs"], ["y"], perm=[1, 0, 2])]  # fmt: skip
    graph = helper.make_graph(nodes, "loop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, trips, 3])],
                              [w, zero, numpy_helper.from_array(np.array(trips, np.int64), "M")])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [11, 17])
def test_a_loop_of_constant_trip_count_is_unrolled(opset: int, tmp_path: Path) -> None:
    """Each step one copy of the body, its counter and the Gather index it feeds folded (at the model's opset);
    every step reads one weight; the C code matches onnxruntime on the Loop itself."""
    path = tmp_path / "loop.onnx"
    onnx.save(loop_model(5, opset=opset), str(path))
    c = compile_model(path, CompressOptions(enabled=False), progress=False)
    assert "Loop" not in {n.op for n in c.graph.nodes} and len(weighted_nodes(c.graph)) == 1
    x = np.random.default_rng(1).standard_normal((1, 5, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run = build_host(c, tmp_path / "out", input_npy=tmp_path / "x.npy")
    want = onnxruntime_outputs(path, x)
    assert run.output.rc == 0 and np.abs(run.output.values - want.reshape(-1)).max() <= 1e-5 * np.abs(want).max()


def onnxruntime_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    from lego2c.verify import run_onnx

    return run_onnx(path, x)


@pytest.mark.parametrize("trips, data_condition, reason", [(5, True, "its condition depends on the data"),
                                                            (5000, False, "trip count 5000 is not between 1 and 4096")])  # fmt: skip
def test_a_loop_that_cannot_be_unrolled_is_named_with_the_reason(trips: int, data_condition: bool, reason: str,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    path = tmp_path / "loop.onnx"
    onnx.save(loop_model(trips, data_condition), str(path))
    with pytest.raises(UnsupportedModelError, match="Loop") as e:
        load_model(path)
    assert reason in e.value.message
