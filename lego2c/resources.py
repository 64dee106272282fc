"""Where the C runtime, templates and board files are.

An installed wheel carries them inside the package (`lego2c/_data/runtime`, ...); a source
checkout keeps them at the top level beside `lego2c/`.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`name` is one of "runtime", "templates", "boards"."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"lego2c is missing its '{name}' directory; reinstall the package")


def runtime_sources() -> list[Path]:
    d = data_dir("runtime")
    return sorted(d.glob("*.c")) + sorted(d.glob("*.S")) + sorted(d.glob("*.h"))
