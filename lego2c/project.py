"""Writing output folders without losing anything the user owns.

Everything is first written (and built) in a temporary sibling folder, then swapped into
place, so an interrupted build leaves either the old output or the new one. A folder that
holds files lego2c did not create is only replaced with --force. A manifest records what
lego2c wrote.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from .errors import UsageError

MANIFEST = ".lego2c-manifest"
# Written into a build folder after the build, by `lego2c run --emulator renode` and `pio run`.
WRITTEN_LATER = {"renode", ".pio"}


def _owned(out: Path) -> bool:
    """True if `out` is absent, empty, or was written by lego2c and holds nothing else."""
    if not out.exists():
        return True
    if not out.is_dir():
        return False
    entries = {p.name for p in out.iterdir()}
    if not entries:
        return True
    manifest = out / MANIFEST
    if not manifest.is_file():
        return False
    listed = set(manifest.read_text().split())
    return entries <= listed | {MANIFEST} | WRITTEN_LATER


@contextmanager
def staged_output(out: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `out` atomically enough."""
    out = out.resolve()
    if not force and not _owned(out):
        what = "a file" if out.exists() and not out.is_dir() else "files lego2c did not create"
        raise UsageError(f"'{out}' holds {what}; refusing to overwrite it", hint="choose another -o, or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        (tmp / MANIFEST).write_text("\n".join(sorted(p.name for p in tmp.iterdir())) + "\n")
        with _uninterrupted():
            old = None
            if out.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                os.replace(out, old / "x")
            os.replace(tmp, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        with _uninterrupted():
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def ignore_interrupts() -> Callable[[int, FrameType | None], Any] | int | None:
    """Ignore Ctrl-C from now on; the handler it replaced, or None off the main thread (which may not)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Hold Ctrl-C back while output folders are swapped or cleaned up, so that a second
    Ctrl-C cannot leave half of either behind."""
    previous = ignore_interrupts()
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def write_file(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
