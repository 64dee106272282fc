"""Tables for people: per-layer footprint, both compression ratios, memory use."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from .boards import Board
from .codegen import GeneratedModel
from .compress import CompressedModel
from .toolchain import MemoryUse


@dataclass
class Sizes:
    """Model data only (no code): what the paper counts, and everything we store."""

    params: int  # float32 parameters the kernels read: weights, biases, other constants
    model_bytes: int  # every byte of model data in flash: indices, codebooks, dense tables
    index_bits: int  # packed index bits of clustered layers
    clustered_elems: int  # tile elements those indices stand for (padding included, as the paper's formula)

    @property
    def honest_ratio(self) -> float:
        return 32 * self.params / (8 * self.model_bytes) if self.model_bytes else 1.0

    @property
    def paper_ratio(self) -> float | None:
        return 32 * self.clustered_elems / self.index_bits if self.index_bits else None

    def as_dict(self) -> dict[str, float | int | None]:
        return dict(params=self.params, model_bytes=self.model_bytes, honest_ratio=round(self.honest_ratio, 3),
                    paper_ratio=None if self.paper_ratio is None else round(self.paper_ratio, 3))  # fmt: skip


def sizes(cm: CompressedModel, code: GeneratedModel) -> Sizes:
    tiled = [lw for lw in cm.layers.values() if lw.storage == "tiled"]
    return Sizes(
        params=code.params,
        model_bytes=code.tables_bytes,
        index_bits=sum(lw.n_tiles * lw.bits for lw in tiled),
        clustered_elems=sum(lw.n_tiles * lw.tile[0] * lw.tile[1] for lw in tiled),
    )


def layer_table(cm: CompressedModel, code: GeneratedModel, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("#", "layer", "op", "output", "params", "MACs", "storage", "tiles", "bytes", "rel.err"):
        t.add_column(col, justify="right" if col not in ("layer", "op", "storage", "output") else "left")
    by_node = {lw.node: lw for lw in cm.layers.values()}
    for lc in code.layers:
        lw = by_node.get(lc.name)
        storage = tiles = err = ""
        params = ""
        if lw is not None:
            params = f"{lw.params}"
            err = f"{lw.rel_error:.3f}" if lw.rel_error else ""
            if lw.storage == "tiled":
                storage = f"{lw.tile[0]}x{lw.tile[1]} {lw.bits}b" + (" +scale" if lw.scale is not None else "")
                tiles = f"{lw.n_tiles}"
            else:
                storage = f"dense {lw.dtype}"
        t.add_row(str(lc.index), lc.name, lc.op, "x".join(map(str, lc.out_shape)), params,
                  f"{lc.macs:,}" if lc.macs else "", storage, tiles,
                  f"{lc.flash_bytes:,}" if lc.flash_bytes else "", err)  # fmt: skip
    for cb in cm.codebooks.values():
        t.add_row("", f"codebook '{cb.name}'", "", "", "", "", f"K={cb.k} {cb.dtype}", "", f"{cb.nbytes:,}", "")
    return t


def summary_lines(s: Sizes, code: GeneratedModel) -> list[str]:
    paper = f"{s.paper_ratio:.1f}x" if s.paper_ratio else "n/a (nothing clustered)"
    return [
        f"parameters: {s.params:,} ({s.params * 4:,} bytes as float32)   MACs: {sum(l.macs for l in code.layers):,}",
        f"model data in flash: {s.model_bytes:,} bytes   compression: {s.honest_ratio:.1f}x honest "
        f"(every stored byte), {paper} paper (index bits only)",
        f"activation arena (peak RAM for tensors): {code.arena_bytes:,} bytes",
    ]


def print_report(console: Console, cm: CompressedModel, code: GeneratedModel, title: str) -> None:
    console.print(layer_table(cm, code, title))
    for line in summary_lines(sizes(cm, code), code):
        console.print(line)
    if cm.options.enabled and cm.options.bias_correction:
        console.print(bias_correction_line(cm))


def bias_correction_line(cm: CompressedModel) -> str:
    """How many layers the data-free bias correction reached, and why it may have reached none."""
    approximated = sum(1 for lw in cm.layers.values() if lw.rel_error > 0 and lw.bias is not None)
    line = f"data-free bias correction: {cm.bias_corrected} of {approximated} compressed layers with a bias"
    if approximated and not cm.bias_corrected and cm.bn_stats:
        line += " (the BatchNorm statistics do not reach these layers' inputs through the ops between)"
    elif approximated and not cm.bias_corrected:
        line += (" (the file has no BatchNormalization statistics; if the model was trained with BatchNorm, torch's "
                 "exporters folded it into the convs: export with torch.onnx.export(..., dynamo=False, "
                 "training=torch.onnx.TrainingMode.PRESERVE) to keep them)")
    return line


def memory_table(board: Board, mem: MemoryUse, code: GeneratedModel) -> Table:
    """Flash and RAM used against the board's capacity, from the ELF, with the model's share."""
    assert board.flash is not None and board.ram is not None
    t = Table(title=f"{board.title}: memory from firmware.elf", title_justify="left")
    for col in ("region", "used", "capacity", "use", "of which model"):
        t.add_column(col, justify="left" if col == "region" else "right")
    model_flash = sum(size for name, size in mem.symbols.items() if is_model_symbol(name, code))
    arena = mem.symbols.get("lego_arena", 0)
    for name, used, cap, share in (("flash", mem.flash, board.flash.size, model_flash), ("RAM", mem.ram, board.ram.size, arena)):
        t.add_row(name, f"{used:,}", f"{cap:,}", f"{100 * used / cap:.1f}%", f"{share:,}")
    return t


def layer_flash_table(mem: MemoryUse, code: GeneratedModel) -> Table:
    """Each layer's const tables and parameter structs as linked (symbol sizes in the ELF)."""
    t = Table(title="model flash per layer (from the ELF's symbols)", title_justify="left")
    for col in ("#", "layer", "op", "flash bytes"):
        t.add_column(col, justify="right" if col in ("#", "flash bytes") else "left")
    for lc in code.layers:
        size = sum(s for name, s in mem.symbols.items() if name.startswith(lc.cname + "_"))
        if size:
            t.add_row(str(lc.index), lc.name, lc.op, f"{size:,}")
    shared = sum(s for name, s in mem.symbols.items() if name.startswith("lego_codebook_"))
    if shared:
        t.add_row("", "codebooks (shared)", "", f"{shared:,}")
    return t


def is_model_symbol(name: str, code: GeneratedModel) -> bool:
    return name.startswith("lego_codebook_") or any(name.startswith(lc.cname + "_") for lc in code.layers)
