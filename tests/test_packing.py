"""The packed index stream: round trips, and the C decoder reading what Python wrote."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

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
