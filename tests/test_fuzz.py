"""Fuzzing the compiler's error contract with mutated zoo models.

`load_model` returns a Graph or raises a LegoError; for any model it accepts, `compile_model`
does the same. The mutators live in benchmarks/fuzz.py (shared with the long run,
`python -m benchmarks.fuzz --cases 10000`); here hypothesis picks the base model, the
mutators and their random choices, deterministically, for a few hundred cases.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from benchmarks.fuzz import (
    BASE_MODELS, BYTE_LEVEL, COMPRESS_OPTIONS, STRUCTURAL, Mutant,
    export_bases, mutate, run_case,
)  # fmt: skip
from lego2c.compress import CompressOptions


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return export_bases(tmp_path_factory.mktemp("fuzz_zoo"))


@pytest.fixture(scope="module")
def case_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_case") / "case.onnx"


def check(mutant: Mutant, path: Path, opts: CompressOptions) -> None:
    """The contract: accepted, or a LegoError."""
    out = run_case(mutant, path, opts)
    steps = "\n  ".join(mutant.steps)
    assert out.kind in ("accepted", "typed"), f"{out.stage} raised {out.error} at {out.where}: {out.message}\n  {steps}\n{out.traceback}"


FUZZ = settings(
    derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow],
    max_examples=300,
)  # fmt: skip


@FUZZ
@given(
    base=st.sampled_from(BASE_MODELS),
    mutators=st.lists(st.sampled_from(sorted(STRUCTURAL)), min_size=1, max_size=3),
    opts=st.sampled_from(COMPRESS_OPTIONS),
    odd_shape=st.sampled_from((False, False, False, True)),
    seed=st.integers(0, 2**64 - 1),
)
def test_structural_mutants_fail_only_with_lego_errors(
    bases: dict[str, bytes], case_path: Path, base: str, mutators: list[str], opts: CompressOptions,
    odd_shape: bool, seed: int,
) -> None:  # fmt: skip
    check(mutate(bases[base], mutators, random.Random(seed), odd_shape), case_path, opts)


@FUZZ
@given(
    base=st.sampled_from(BASE_MODELS),
    mutators=st.tuples(st.lists(st.sampled_from(sorted(STRUCTURAL)), max_size=2), st.sampled_from(sorted(BYTE_LEVEL))).map(
        lambda t: [*t[0], t[1]]
    ),
    opts=st.sampled_from(COMPRESS_OPTIONS),
    seed=st.integers(0, 2**64 - 1),
)
def test_corrupted_files_fail_only_with_lego_errors(
    bases: dict[str, bytes], case_path: Path, base: str, mutators: list[str], opts: CompressOptions,
    seed: int,
) -> None:  # fmt: skip
    check(mutate(bases[base], mutators, random.Random(seed)), case_path, opts)


def test_unmutated_bases_compile(bases: dict[str, bytes], case_path: Path) -> None:
    """The fuzzer starts from models the compiler accepts, so mutants probe past the first check."""
    for name in BASE_MODELS:
        out = run_case(Mutant(bases[name], None, []), case_path, COMPRESS_OPTIONS[1])
        assert out.kind == "accepted", f"{name}: {out}"


# --------------------------------------------------------------------------------------------
# Minimal reproductions of crashes the fuzzer found in the op lowerings (fixed; docs/robustness.md).


def _model(node: onnx.NodeProto, x: list[int], y: list[int], inits: dict[str, np.ndarray], opset: int = 17) -> bytes:
    graph = helper.make_graph(
        [node], "repro", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _recursive_function_model() -> bytes:
    """A model-local function that calls itself: the inliner refuses it with a ValidationError."""
    fn = helper.make_function("local", "f", ["a"], ["b"], [helper.make_node("f", ["a"], ["b"], domain="local")],
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])  # fmt: skip
    graph = helper.make_graph([helper.make_node("f", ["x"], ["y"], domain="local")], "repro",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])  # fmt: skip
    model = helper.make_model(graph, functions=[fn], opset_imports=[helper.make_opsetid("", 17),
                                                                    helper.make_opsetid("local", 1)])  # fmt: skip
    return model.SerializeToString()


REPROS = {
    "recursive-function": _recursive_function_model(),
    "clip-bound-not-scalar": _model(helper.make_node("Clip", ["x", "lo"], ["y"]), [1, 4], [1, 4],
                                    {"lo": np.zeros(2, np.float32)}),
    "reduce-axes-not-1d": _model(helper.make_node("ReduceMean", ["x", "axes"], ["y"]), [1, 4], [1, 1],
                                 {"axes": np.array([[1]], np.int64)}, opset=18),
    "global-pool-rank-2": _model(helper.make_node("GlobalAveragePool", ["x"], ["y"]), [1, 4], [1, 4], {}),
    "conv-group-0": _model(helper.make_node("Conv", ["x", "w"], ["y"], group=0), [1, 2, 4, 4], [1, 2, 4, 4],
                           {"w": np.ones((2, 2, 1, 1), np.float32)}),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(REPROS))
def test_former_crashes_fail_cleanly(name: str, case_path: Path) -> None:
    check(Mutant(REPROS[name], None, [name]), case_path, CompressOptions(enabled=False))
