"""Code generation: lowered IR + compressed weights + memory plan -> model.c / model.h.

The templates in `templates/` hold only glue (tables, parameter structs, the calls in
order, the arena); every computation lives in the runtime's kernels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jinja2
import numpy as np

from . import ops
from .compress import DTYPE_BYTES, CompressedModel, LayerWeights, pow2_exponent, stored_bytes
from .ir import Graph
from .plan import Buffer, plan_memory
from .resources import data_dir

DENSE_TILE = (4, 4)  # dense weights are walked in 4x4 tiles by the same kernels
VALUES_PER_LINE = 8


@dataclass
class Table:
    """One const array in flash."""

    ctype: str
    name: str
    body: str
    nbytes: int
    exp: int = 0  # an int8 array of codes: the power of two each code stands for


@dataclass
class LayerCode:
    index: int
    name: str  # ONNX node name
    op: str
    cname: str
    comment: str
    decls: list[str]  # parameter/weight struct definitions
    call: str
    macs: int
    flash_bytes: int  # this layer's tables
    out_shape: tuple[int, ...]


@dataclass
class GeneratedModel:
    files: dict[str, str]
    layers: list[LayerCode]
    arena_bytes: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    tables_bytes: int  # every const byte of model data
    params: int  # float parameters the kernels read (weights, biases, other constants)


def c_ident(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "t"
    return s if not s[0].isdigit() else f"t{s}"


def c_floats(values: np.ndarray) -> str:
    """float32 values as C literals that round-trip exactly (9 significant digits)."""
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    lits = []
    for v, s in zip(flat, np.char.mod("%.9g", flat.astype(np.float64))):
        if not np.isfinite(v):  # math.h's macros: "inff" or "nanf" would not compile
            lits.append("NAN" if np.isnan(v) else ("INFINITY" if v > 0 else "-INFINITY"))
            continue
        s = str(s)
        if "." not in s and "e" not in s:
            s += ".0"
        lits.append(s + "f")
    return _lines(lits)


def c_bytes(data: bytes) -> str:
    return _lines([f"0x{b:02x}" for b in data], per_line=16)


def _lines(items: list[str], per_line: int = VALUES_PER_LINE) -> str:
    rows = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "    " + ",\n    ".join(rows)


def _c_value(v: int | float | list[int]) -> str:
    if isinstance(v, list):
        return "{" + ", ".join(str(int(x)) for x in v) + "}"
    if isinstance(v, float):
        return c_floats(np.array([v])).strip()
    return str(int(v))


def _initialisers(fields: dict[str, int | float | list[int]]) -> str:
    """A C struct's designated initialisers, one field per line."""
    return ",\n".join(f"    .{k} = {_c_value(v)}" for k, v in fields.items())


def templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class _Storage:
    """Which buffer each tensor lives in: the caller's input, or a shared arena buffer.

    Views (Reshape & co) share their input's buffer; elementwise ops run in place when
    their input dies at that step. Graph outputs are copied out at the end, so they count
    as read after the last step.
    """

    def __init__(self, g: Graph, calls: list[ops.KernelCall]) -> None:
        self.root: dict[str, str] = {i: "input" for i in g.inputs}
        self.members: dict[str, list[str]] = {}
        reads: dict[str, list[int]] = {}
        for step, call in enumerate(calls):
            for t in call.inputs:
                reads.setdefault(t, []).append(step)
        for o in g.outputs:
            reads.setdefault(o, []).append(len(calls))
        self.born: dict[str, int] = {}
        for step, call in enumerate(calls):
            out = call.outputs[0]
            src = call.inputs[call.inplace_index] if call.inputs else None
            r = self.root.get(src) if src else None
            last = max((max(reads.get(m, [step])) for m in self.members.get(r or "", [])), default=-1)
            if call.view and r is not None:
                self._join(out, r)
            elif (call.inplace and r not in (None, "input") and last <= step
                  and g.tensors[out].size == g.tensors[src].size  # type: ignore[index]
                  and all(self.root.get(t) != r for k, t in enumerate(call.inputs) if k != call.inplace_index)):  # fmt: skip
                # In place only if no other operand of the call lives in that buffer too.
                self._join(out, r)  # type: ignore[arg-type]
            else:
                self._join(out, out)
                self.born[out] = step
        self.buffers = [
            Buffer(r, max(g.tensors[m].size for m in ms) * 4, self.born[r], max(max(reads.get(m, [self.born[r]])) for m in ms))
            for r, ms in self.members.items()
            if r != "input"
        ]  # fmt: skip

    def _join(self, tensor: str, root: str) -> None:
        self.root[tensor] = root
        self.members.setdefault(root, []).append(tensor)


def generate(g: Graph, cm: CompressedModel, model_name: str = "model") -> GeneratedModel:
    lowered = ops.fuse_residual_adds(g, [(n, ops.lower(n, g)) for n in g.nodes])
    calls = [call for _, call in lowered]
    storage = _Storage(g, calls)
    scratch: dict[int, str] = {}  # step -> scratch buffer name
    for step, call in enumerate(calls):
        if call.func == "lego_conv2d_f32":
            planes, floats = ops.conv_scratch_floats(call.params)
            call.params["scratch_planes"] = planes
            if floats:
                scratch[step] = f"__scratch{step}"
                storage.buffers.append(Buffer(scratch[step], floats * 4, step, step))
    mem = plan_memory(storage.buffers)

    def ptr(t: str) -> str:
        r = storage.root[t]
        if r == "input":
            return "input"
        return f"(lego_arena + {mem.offsets[r] // 4})"

    emitted: dict[str, Table] = {}
    codebooks = {name: _array(f"lego_codebook_{c_ident(name)}", cb.centroids, cb.dtype, coded=True)
                 for name, cb in cm.codebooks.items()}  # fmt: skip
    shared = list(codebooks.values())
    params = 0

    def const_table(tensor: str, cname: str) -> tuple[str, int]:
        """Emit a constant tensor once; return its C name and the bytes it added."""
        nonlocal params
        if tensor in emitted:
            return emitted[tensor].name, 0
        data = g.const(tensor)
        assert data is not None
        params += int(data.size)
        tbl = Table("float", cname, c_floats(data), int(data.size) * 4)
        emitted[tensor] = tbl
        return tbl.name, tbl.nbytes

    layers: list[LayerCode] = []
    weight_structs: dict[str, str] = {}  # weight tensor -> the C name of the layer that declared it
    params_structs: dict[tuple[str, str], str] = {}  # (type, fields) -> its struct's C name
    for idx, (node, call) in enumerate(lowered):
        cname = f"l{idx}_{c_ident(node.name)}"[:48]
        out_shape = g.shape(call.outputs[0])
        in_shapes = " x ".join(str(list(g.shape(i))) for i in call.inputs if i and not g.tensors[i].is_const)
        op = f"{node.op}+{call.fused}" if call.fused else node.op
        comment = f"{op} {node.name}: {in_shapes} -> {list(out_shape)}"
        decls: list[str] = []
        flash = 0
        if call.view:
            layers.append(LayerCode(idx, node.name, op, cname, comment + " (view, no code)", [], "", 0, 0, out_shape))
            continue
        # Identical parameters (the steps of an unrolled recurrence) share one struct: buffers are arguments.
        key = (call.params_type, _initialisers(call.params))
        if key not in params_structs:
            params_structs[key] = f"{cname}_params"
            decls.append(f"static const {key[0]} {cname}_params = {{\n{key[1]}\n}};")
        args = [f"&{params_structs[key]}"]
        if call.weight in weight_structs:  # read by an earlier call too: stored once
            args.append(f"&{weight_structs[call.weight]}_weights")
            comment += f", the weights of {weight_structs[call.weight]}, {call.macs} MACs"
        elif call.weight is not None:
            lw = cm.layers[call.weight]
            tiled = lw.storage == "tiled" and lw.codebook
            wdecl, wtables = _weights(cname, lw, codebooks[lw.codebook] if tiled else None,
                                      cm.codebooks[lw.codebook].k if tiled else 0)  # type: ignore[index]  # fmt: skip
            decls.append(wdecl)
            for t in wtables:
                emitted[f"__{t.name}"] = t
            flash += sum(t.nbytes for t in wtables)
            params += lw.params + (lw.rows if lw.bias is not None else 0)
            weight_structs[call.weight] = cname
            args.append(f"&{cname}_weights")
            comment += f", {lw.params} params, {call.macs} MACs"
        operands = []
        for k, t in enumerate(call.inputs):
            if g.tensors[t].is_const:
                name, nb = const_table(t, f"{cname}_c{k}")
                flash += nb
                operands.append(name)
            else:
                operands.append(ptr(t))
        out = ptr(call.outputs[0])
        if node.op == "Concat":
            decls_local = f"const float *const {cname}_in[] = {{{', '.join(operands)}}};"
            call_expr = f"{decls_local}\n    LEGO_CHECK({call.func}({', '.join(args)}, {cname}_in, {out}));"
        elif call.func == "lego_conv2d_f32":
            scr = f"(lego_arena + {mem.offsets[scratch[idx]] // 4})" if idx in scratch else "NULL"
            residual = operands[1] if len(operands) > 1 else "NULL"
            call_expr = f"LEGO_CHECK({call.func}({', '.join(args)}, {operands[0]}, {residual}, {out}, {scr}));"
        else:
            call_expr = f"LEGO_CHECK({call.func}({', '.join(args + operands)}, {out}));"
        layers.append(LayerCode(idx, node.name, op, cname, comment, decls, call_expr, call.macs, flash, out_shape))

    tables = shared + list(emitted.values())
    env = templates()
    in_shape = g.shape(g.inputs[0])
    out_shape = g.shape(g.outputs[0])
    ctx = dict(
        model_name=model_name,
        tables=tables,
        layers=layers,
        arena_floats=max(mem.peak // 4, 1),
        arena_bytes=mem.peak,
        input_size=int(np.prod(in_shape)),
        output_size=int(np.prod(out_shape)),
        input_shape=list(in_shape),
        output_shape=list(out_shape),
        output_ptr=ptr(g.outputs[0]),
        total_macs=sum(c.macs for c in calls),
    )
    files = {
        "model.h": env.get_template("model.h.j2").render(ctx),
        "model.c": env.get_template("model.c.j2").render(ctx),
    }
    # Tables that belong to one layer are attributed to it; codebooks are shared.
    return GeneratedModel(files, layers, mem.peak, in_shape, out_shape, sum(t.nbytes for t in tables), params)


def _tile_of(lw: LayerWeights) -> tuple[int, int]:
    """The tile shape the kernels walk this weight in."""
    return lw.tile if lw.storage == "tiled" else DENSE_TILE


C_TYPES = {"f32": "float", "f16": "uint16_t", "i8": "int8_t"}
C_DTYPES = {"f32": "LEGO_F32", "f16": "LEGO_F16", "i8": "LEGO_I8"}


def _array(name: str, values: np.ndarray, dtype: str, coded: bool = False) -> Table:
    """A const table in its storage type: float32 literals, float16 bit patterns, or int8.

    `coded`: an int8 array holds codes of a power of two (`compress.as_stored`), whose unit the
    weight record carries and the size counts. Dense int8 weights are codes already (unit 1).
    """
    size = int(np.asarray(values).size)
    nbytes = stored_bytes(size, dtype) if coded else size * DTYPE_BYTES[dtype]
    if dtype == "f32":
        body = c_floats(values)
    elif dtype == "f16":
        bits = np.asarray(values, dtype=np.float32).astype(np.float16).reshape(-1).view(np.uint16)
        body = _lines([f"0x{int(b):04x}" for b in bits], per_line=12)
    else:
        exp = pow2_exponent(values) if coded else 0  # dense int8 weights are codes of 1
        codes = np.rint(np.asarray(values, dtype=np.float64) / 2.0**exp)
        body = _lines([str(int(v)) for v in codes.astype(np.int8).reshape(-1)], per_line=16)
        return Table(C_TYPES[dtype], name, body, nbytes, exp)
    return Table(C_TYPES[dtype], name, body, nbytes)


def _weights(cname: str, lw: LayerWeights, codebook: Table | None, entries: int) -> tuple[str, list[Table]]:
    """A layer's lego_weights_t and the tables it points to (`codebook`: the tiled layer's shared table, of
    `entries` entries)."""
    tables: list[Table] = []
    side: dict[str, Table] = {}
    if lw.storage == "tiled":
        assert codebook is not None
        idx = Table("uint8_t", f"{cname}_idx", c_bytes(lw.packed), len(lw.packed))
        tables.append(idx)
        bits, values_exp = lw.bits, codebook.exp
        ptrs = [("kind", "LEGO_W_TILED"), ("values", codebook.name), ("indices", idx.name)]
    else:
        assert lw.values is not None
        tables.append(_array(f"{cname}_w", lw.values, lw.dtype))
        bits, values_exp = 0, 0
        ptrs = [("kind", "LEGO_W_DENSE"), ("values", tables[-1].name), ("indices", "NULL")]
    for key, arr in (("row_scale", lw.scale), ("bias", lw.bias)):
        if arr is not None:
            side[key] = _array(f"{cname}_{key}", arr, lw.side_dtype, coded=True)
            tables.append(side[key])
        ptrs.append((key, side[key].name if key in side else "NULL"))
    fields = ptrs + [("dtype", C_DTYPES[lw.dtype]), ("side_dtype", C_DTYPES[lw.side_dtype]),
                     ("rows", lw.rows), ("cols", lw.cols), ("tile_rows", _tile_of(lw)[0]), ("tile_cols", _tile_of(lw)[1]),
                     ("index_bits", bits), ("entries", entries), ("values_exp", values_exp), ("scale_exp", side["row_scale"].exp if "row_scale" in side else 0),
                     ("bias_exp", side["bias"].exp if "bias" in side else 0)]  # fmt: skip
    body = ",\n".join(f"    .{k} = {v}" for k, v in fields)
    return f"static const lego_weights_t {cname}_weights = {{\n{body}\n}};", tables
