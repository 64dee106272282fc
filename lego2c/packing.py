"""Bit-packing of tile indices: the byte stream described in docs/format.md.

Index i occupies bits [i*w, (i+1)*w) of the stream, least significant bit first, where
stream bit j is bit (j % 8) of byte j // 8. The stream is followed by PAD_BYTES zero bytes
so a decoder can always load three bytes at once without a bounds check.
"""

from __future__ import annotations

import numpy as np

PAD_BYTES = 2


def packed_size(n: int, bits: int) -> int:
    return -(-n * bits // 8) + PAD_BYTES


def pack_indices(indices: np.ndarray, bits: int) -> bytes:
    idx = np.asarray(indices, dtype=np.uint32)
    if not 1 <= bits <= 16:
        raise ValueError(f"index width {bits} is outside 1..16")
    if idx.size and int(idx.max()) >= 1 << bits:
        raise ValueError(f"index {int(idx.max())} does not fit in {bits} bits")
    bitmat = (idx[:, None] >> np.arange(bits, dtype=np.uint32)) & 1  # (n, bits), LSB first
    packed = np.packbits(bitmat.reshape(-1).astype(np.uint8), bitorder="little")
    return packed.tobytes() + bytes(PAD_BYTES)


def unpack_indices(data: bytes, n: int, bits: int) -> np.ndarray:
    stream = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[: n * bits]
    weights = (1 << np.arange(bits, dtype=np.int64))
    return (stream.reshape(n, bits).astype(np.int64) * weights).sum(1)
