"""The whole pipeline, stage by stage: frontend -> compress -> codegen -> project -> toolchain.

The CLI calls these functions; tests and benchmarks call them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from .codegen import GeneratedModel, c_floats, generate, templates
from .compress import CompressedModel, CompressOptions, compress, reconstructed_weights
from .frontend import load_model
from .ir import Graph
from .project import staged_output, write_file
from .resources import runtime_sources
from .toolchain import make, run_host
from .verify import ProgramOutput, max_error, parse_program_output, run_onnx, test_input


@dataclass
class Compiled:
    """A model through the compiler's front half: IR, compressed weights, generated C."""

    path: Path
    graph: Graph
    compressed: CompressedModel
    code: GeneratedModel

    def lego_onnx(self) -> onnx.ModelProto:
        """The IR with every clustered weight replaced by its tiles: what the C computes."""
        return self.graph.to_onnx(reconstructed_weights(self.graph, self.compressed))


def compile_model(path: Path, opts: CompressOptions, input_shape: list[int] | None = None,
                  progress: bool = True) -> Compiled:  # fmt: skip
    graph = load_model(path, input_shape)
    cm = compress(graph, opts, progress=progress)
    return Compiled(Path(path), graph, cm, generate(graph, cm))


def reference_output(c: Compiled, x: np.ndarray) -> np.ndarray:
    """onnxruntime's answer for what the C code should compute."""
    clustered = any(lw.storage == "tiled" for lw in c.compressed.layers.values())
    return run_onnx(c.lego_onnx() if clustered else c.path, x)


@dataclass
class HostRun:
    out_dir: Path
    output: ProgramOutput
    reference: np.ndarray
    max_error: float
    allowed: float
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.max_error <= self.allowed


def write_sources(c: Compiled, src: Path, x: np.ndarray, source: str, bench_runs: int = 1) -> None:
    """model.c/.h, the runtime, main.c and the baked test input into `src`."""
    env = templates()
    for name, text in c.code.files.items():
        write_file(src / name, text)
    for f in runtime_sources():
        write_file(src / f.name, f.read_text())
    write_file(src / "main.c", env.get_template("main.c.j2").render(bench_runs=bench_runs))
    write_file(src / "test_input.h", env.get_template("test_input.h.j2").render(values=c_floats(x), source=source))


def build_host(c: Compiled, out: Path, force: bool = False, input_npy: Path | None = None,
               bench_runs: int = 1) -> HostRun:  # fmt: skip
    """Generate a host project, compile it with gcc, run it and compare with onnxruntime."""
    x = test_input(c.graph.shape(c.graph.inputs[0]), input_npy)
    ref = reference_output(c, x)
    with staged_output(out, force) as tmp:
        write_sources(c, tmp / "src", x, str(input_npy) if input_npy else "deterministic, seed 0", bench_runs)
        write_file(tmp / "Makefile", templates().get_template("Makefile.host.j2").render())
        onnx.save(c.lego_onnx(), str(tmp / "model.lego.onnx"))
        make(tmp)
        result = parse_program_output(run_host(tmp / "model"))
    err, allowed = max_error(result.values, ref)
    return HostRun(out.resolve(), result, ref, err, allowed)
