"""Typed, user-facing errors.

Every failure a user can cause ends up as one of these: the CLI prints the one-line
message and the hint and exits with the class's code, never with a traceback.
"""

from __future__ import annotations


class LegoError(Exception):
    """Base class: a message a person can act on, a hint, and a process exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(LegoError):
    """Bad options, bad file paths, unknown boards."""

    exit_code = 2


class UnsupportedModelError(LegoError):
    """A readable model that lego2c cannot compile (ops, dtypes, dynamic shapes, ...)."""

    exit_code = 3


class DoesNotFitError(LegoError):
    """The compiled model does not fit the board's memories; `short` maps each linker region to its overflow."""

    exit_code = 4

    def __init__(self, message: str, hint: str | None = None, short: dict[str, int] | None = None) -> None:
        super().__init__(message, hint)
        self.short = short or {}


class ToolchainMissingError(LegoError):
    """A compiler, emulator or flasher that the command needs is not installed."""

    exit_code = 5


class EmulatorError(LegoError):
    """The emulated run failed, hung, or disagreed with onnxruntime."""

    exit_code = 6


def first_line(e: BaseException) -> str:
    """An exception's text for a one-line message: its first line, at most 300 characters (libraries' run long)."""
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]
