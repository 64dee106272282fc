"""onnxruntime as the reference: test inputs, reference outputs, and the comparison."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from .errors import EmulatorError, UsageError
from .ir import FAKE_QUANTIZE, Graph
from .ops import quantization_grid

TOLERANCE = 1e-4  # max abs error allowed, relative to max |reference output|


def test_input(shape: tuple[int, ...], path: Path | None = None, seed: int = 0) -> np.ndarray:
    """The user's .npy input, or a deterministic one in [-1, 1)."""
    if path is None:
        return np.random.default_rng(seed).uniform(-1.0, 1.0, size=shape).astype(np.float32)
    try:
        x = np.load(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read --input '{path}': {e}") from None
    if x.size != int(np.prod(shape)):
        raise UsageError(f"--input '{path}' has {x.size} values; the model's input {list(shape)} needs {int(np.prod(shape))}")
    return x.astype(np.float32).reshape(shape)


def ort_session(model: onnx.ModelProto | Path, optimize: bool = True) -> ort.InferenceSession:
    """An onnxruntime CPU session, quiet; without graph optimisations when `optimize` is off."""
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    data = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def run_onnx(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    """One inference in onnxruntime, without graph optimisations: the reference for one run."""
    sess = ort_session(model, optimize=False)
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run(None, {name: x})[0], dtype=np.float32)


@dataclass
class ProgramOutput:
    values: np.ndarray
    bench_runs: int
    bench_ms: int
    rc: int


def parse_program_output(text: str) -> ProgramOutput:
    """Parse the LEGO_OUTPUT / LEGO_BENCH / LEGO_RESULT lines that main.c prints."""
    m = re.search(r"LEGO_OUTPUT (\d+)\n((?:[0-9a-f]{8}\n)*)", text)
    rc = re.search(r"LEGO_RESULT rc=(-?\d+)", text)
    if rc is None:
        raise EmulatorError("the program printed no result line", hint=f"its output began: {text[:300]!r}")
    values = np.zeros(0, dtype=np.float32)
    if m:
        words = m.group(2).split()
        if len(words) != int(m.group(1)):
            raise EmulatorError(f"expected {m.group(1)} output values, got {len(words)}")
        values = np.array([int(w, 16) for w in words], dtype=np.uint32).view(np.float32)
    bench = re.search(r"LEGO_BENCH runs=(\d+) ms=(\d+)", text)
    runs, ms = (int(bench.group(1)), int(bench.group(2))) if bench else (0, 0)
    return ProgramOutput(values, runs, ms, int(rc.group(1)))


def max_error(got: np.ndarray, ref: np.ndarray, slack: float = 0.0) -> tuple[float, float]:
    """(max abs error, allowed): allowed = TOLERANCE x max |ref|, plus a quantised model's `rounding_slack`."""
    got, ref = got.reshape(-1), ref.reshape(-1)
    err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    return err, TOLERANCE * max(float(np.max(np.abs(ref))), 1e-30) + slack


NUDGE = 2e-7  # relative: about float32's rounding step
NUDGES = 8
OUTPUT_STEPS = 2  # of the output's own grid, at least


def rounding_slack(g: Graph, model: onnx.ModelProto | Path, x: np.ndarray, ref: np.ndarray) -> float:
    """How far a quantised model's output may move when float rounding puts a value on a rounding boundary of
    one of its grids: C and onnxruntime, which sum in other orders, may then round it differently, and the
    step grows downstream (in deep models, by up to 16 output steps in 1 input of 400). Measured on the
    reference itself, as the largest change that moving the input by float rounding's size makes, and at
    least OUTPUT_STEPS steps of the output's own grid. 0 for a model without quantisation."""
    quantizers = [n for n in g.nodes if n.op == FAKE_QUANTIZE]
    if not quantizers:
        return 0.0
    last = next((n for n in quantizers if g.outputs[0] in n.outputs), None)
    sess = ort_session(model, optimize=False)
    name, rng = sess.get_inputs()[0].name, np.random.default_rng(0)
    moved = [sess.run(None, {name: (x * (1 + NUDGE * rng.standard_normal(x.shape))).astype(np.float32)})[0]
             for _ in range(NUDGES)]  # fmt: skip
    return max([OUTPUT_STEPS * quantization_grid(last)[0] if last else 0.0,
                *(float(np.max(np.abs(y.reshape(-1) - ref.reshape(-1)))) for y in moved)])  # fmt: skip
