"""Compile time at scale: a ResNet-50-shaped model (25.6M parameters) through lego2c.

Generates the model (`benchmarks.resnet50`, seeded random weights) in a child process, so torch
never enters this process and its peak RSS is the compiler's alone. Then times each stage:
frontend, clustering, code generation, and writing the C sources. No firmware is built: the
model could not fit a microcontroller. `--profile` runs the stages under cProfile and prints
the functions that dominate.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from lego2c.build import Compiled, write_sources
from lego2c.codegen import generate
from lego2c.compress import CompressOptions, compress
from lego2c.frontend import load_model
from lego2c.report import sizes
from lego2c.verify import test_input

from .mcu import markdown_table, provenance, write_section

TARGET_S = 60.0
T = TypeVar("T")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_time", description=__doc__.splitlines()[0])
    parser.add_argument("-K", type=int, default=32, help="codebook size (default 32)")
    parser.add_argument("-b", type=int, default=4, help="square tile side (default 4)")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the result into FILE (docs/benchmarks.md)")
    parser.add_argument("--profile", type=int, metavar="N", default=0, help="print the N functions with the most own time")
    args = parser.parse_args(argv)
    opts = CompressOptions(k=args.K, tile=(args.b, args.b))
    profiler = cProfile.Profile() if args.profile else None
    times: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        result = profiler.runcall(fn) if profiler else fn()
        times[name] = time.perf_counter() - start
        print(f"{name:<28} {times[name]:7.2f} s", flush=True)
        return result

    with tempfile.TemporaryDirectory(prefix="lego2c-resnet50-") as tmp:
        path = Path(tmp) / "resnet50.onnx"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "benchmarks.resnet50", str(path)], check=True)
        print(f"{'export (not counted)':<28} {time.perf_counter() - start:7.2f} s")
        graph = stage("frontend", lambda: load_model(path))
        cm = stage("clustering", lambda: compress(graph, opts, progress=sys.stderr.isatty()))
        code = stage("codegen", lambda: generate(graph, cm))
        c = Compiled(path, graph, cm, code)
        src = Path(tmp) / "src"
        stage("write C sources", lambda: write_sources(c, src, test_input(graph.shape(graph.inputs[0])), "random"))
        c_bytes = sum(f.stat().st_size for f in src.iterdir())
    total = sum(times.values())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    s = sizes(cm, code)
    tiles = sum(lw.n_tiles for lw in cm.layers.values() if lw.storage == "tiled")
    facts = [
        ("model", f"ResNet-50 shape, {s.params:,} parameters after BatchNorm folding, {sum(l.macs for l in code.layers):,} MACs"),
        ("compression", f"{args.b}x{args.b} tiles, K={args.K}: {tiles:,} tiles; {s.model_bytes:,} bytes of model data "
                        f"({s.honest_ratio:.1f}x honest, {s.paper_ratio or 0:.1f}x paper); {c_bytes:,} bytes of C"),
        *((f"{name} time", f"{t:.2f} s") for name, t in times.items()),
        ("total compile time", f"**{total:.1f} s** (target ≤ {TARGET_S:.0f} s: {'met' if total <= TARGET_S else 'NOT met'})"),
        ("peak memory (max RSS)", f"{peak_mb:,.0f} MiB"),
    ]  # fmt: skip
    print(f"{'total':<28} {total:7.2f} s   peak RSS {peak_mb:,.0f} MiB")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)
    if args.markdown:
        body = markdown_table(["", "ResNet-50 shape"], [list(f) for f in facts], [False, False])
        write_section(args.markdown, "compile_time", body + "\n" + provenance("benchmarks.compile_time", argv))
    return 0 if total <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
