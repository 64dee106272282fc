"""Static memory plan: place activation buffers in one arena by their lifetimes.

Knows nothing about ops: it takes buffers (size, first step written, last step read) and
returns byte offsets such that buffers alive at the same step never overlap. Greedy by
decreasing size, each at the lowest offset that fits (the strategy TFLite Micro's greedy
planner uses), which is deterministic and near-optimal for the chains CNNs produce.
"""

from __future__ import annotations

from dataclasses import dataclass

ALIGN = 16  # bytes: keeps every buffer aligned for wide loads on any target


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int  # bytes
    first: int  # step that writes it
    last: int  # last step that reads it


@dataclass
class MemoryPlan:
    offsets: dict[str, int]
    peak: int  # arena bytes


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def plan_memory(buffers: list[Buffer]) -> MemoryPlan:
    placed: list[tuple[Buffer, int]] = []
    offsets: dict[str, int] = {}
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.name)):
        live = sorted(
            (off, off + _aligned(b.size)) for b, off in placed if b.first <= buf.last and buf.first <= b.last
        )
        offset = 0
        for lo, hi in live:
            if offset + _aligned(buf.size) <= lo:
                break
            offset = max(offset, hi)
        placed.append((buf, offset))
        offsets[buf.name] = offset
    peak = max((off + _aligned(b.size) for b, off in placed), default=0)
    return MemoryPlan(offsets, peak)
