"""The packed index stream and the int8 storage of side data: round trips, and the C decoder reading what Python wrote."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lego2c.compress import as_stored, pow2_exponent, stored_scales
from lego2c.packing import PAD_BYTES, pack_indices, packed_size, unpack_indices
from lego2c.resources import data_dir


@pytest.mark.parametrize("k", range(2, 257))
def test_round_trip_every_k(k: int) -> None:
    bits = math.ceil(math.log2(k))
    rng = np.random.default_rng(k)
    idx = rng.integers(0, k, size=101)
    idx[:2] = [0, k - 1]  # the extremes are always present
    data = pack_indices(idx, bits)
    assert len(data) == packed_size(len(idx), bits)
    assert data[-PAD_BYTES:] == bytes(PAD_BYTES)
    np.testing.assert_array_equal(unpack_indices(data, len(idx), bits), idx)


def test_known_layout() -> None:
    """LSB first: indices 1, 2, 3 at 3 bits are 001 010 011 -> 0b11_010_001, 0b0."""
    assert pack_indices(np.array([1, 2, 3]), 3) == bytes([0b11010001, 0b0]) + bytes(PAD_BYTES)


def test_out_of_range_index_rejected() -> None:
    with pytest.raises(ValueError):
        pack_indices(np.array([8]), 3)


@pytest.mark.parametrize("bits", [1, 3, 5, 7, 8, 11, 16])
def test_c_decoder_matches(bits: int, tmp_path: Path) -> None:
    """lego_unpack_index (runtime/lego_runtime.h) decodes Python's stream exactly."""
    rng = np.random.default_rng(bits)
    idx = rng.integers(0, 1 << bits, size=200)
    data = pack_indices(idx, bits)
    src = tmp_path / "t.c"
    src.write_text(
        '#include <stdio.h>\n#include "lego_runtime.h"\n'
        f"static const uint8_t s[] = {{{', '.join(str(b) for b in data)}}};\n"
        "int main(void) { for (uint32_t i = 0; i < 200; i++) "
        f'printf("%u\\n", (unsigned)lego_unpack_index(s, i, {bits}u)); return 0; }}\n'
    )
    exe = tmp_path / "t"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{data_dir('runtime')}", str(src), "-o", str(exe)],
                   check=True)  # fmt: skip
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    np.testing.assert_array_equal(np.array(out, dtype=np.int64), idx)


FINITE = st.floats(-1e4, 1e4, width=32)


@settings(max_examples=300, deadline=None)
@given(arrays(np.float32, st.integers(1, 40), elements=FINITE))
@example(np.array([0.0, 1e-45], dtype=np.float32))  # subnormal: the unit stays a normal float32
def test_int8_storage_is_codes_of_a_readable_power_of_two(x: np.ndarray) -> None:
    """What codegen writes: int8 codes whose unit it reads back from the stored values alone."""
    stored = as_stored(x, "i8")
    unit = 2.0 ** pow2_exponent(stored)
    codes = stored.astype(np.float64) / unit
    assert np.array_equal(codes, np.round(codes)) and np.abs(codes).max() <= 127
    assert np.abs(stored - x).max() <= unit / 2 * (1 + 1e-6)  # round to nearest
    assert np.array_equal(as_stored(stored, "i8"), stored)  # storing again changes nothing
    assert np.abs(codes).max() >= 64 or pow2_exponent(stored) == -126 or not np.any(stored)  # full range, unless subnormal


@settings(max_examples=300, deadline=None)
@given(arrays(np.float32, st.integers(1, 40), elements=st.floats(0, 1e4, width=32)), st.sampled_from(["i8", "f16"]))
def test_stored_scales_are_never_zero(x: np.ndarray, dtype: str) -> None:
    """A channel of zeros still gets a scale to divide by; int8 scales round up, so int8 weights never clip."""
    s = stored_scales(x, dtype)
    assert np.all(s > 0)
    if dtype == "i8":
        assert np.all(s >= x) and np.array_equal(as_stored(s, "i8"), s)
