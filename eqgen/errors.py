"""The error hierarchy: every failure a user can cause maps to one exit code and one clear message.

- `SpecError` (exit 1): the spec or an input file is wrong. Carries one or more `Diagnostic`s,
  each pointing at `file:line:col` with the source line, a caret and a hint.
- `UsageError` (exit 2): the command line is wrong.
- `NumericalError` (exit 3): the solve failed (diverged, non-finite, non-positive covariance);
  says what happened and at which time, and may carry the partial solution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a source file, with enough context to show it to a person."""

    message: str
    path: str = "<input>"
    line: int = 0
    col: int = 0
    width: int = 1
    source_line: str | None = None
    hint: str | None = None

    def format(self) -> str:
        """Render as `file:line:col: error: message`, the line, a caret and the hint."""
        where = f"{self.path}:{self.line}:{self.col}" if self.line else self.path
        out = [f"{where}: error: {self.message}"]
        if self.source_line is not None and self.line:
            text = self.source_line.rstrip("\n").expandtabs(4)
            if len(text) > 200:  # keep very long lines readable: show a window around the column
                start = max(0, self.col - 100)
                text = ("..." if start else "") + text[start : start + 200]
                caret_col = self.col - start + (3 if start else 0)
            else:
                caret_col = self.col
            out.append(f"    {text}")
            out.append("    " + " " * max(caret_col - 1, 0) + "^" * max(1, min(self.width, 80)))
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


class EqgenError(Exception):
    """Base class of every error eqgen reports to a user (never shown as a traceback)."""

    exit_code = 1

    def format(self) -> str:
        return f"error: {self}"


class SpecError(EqgenError):
    """The spec (or an input file derived from it) is wrong; lists every problem found."""

    exit_code = 1

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))

    def format(self) -> str:
        n = len(self.diagnostics)
        tail = f"\n{n} problem{'s' if n != 1 else ''} found" if n > 1 else ""
        return "\n".join(d.format() for d in self.diagnostics) + tail


class UsageError(EqgenError):
    """The command line (or an API call) asks for something impossible."""

    exit_code = 2


class NumericalError(EqgenError):
    """The numerical solution failed; `t` is when, `partial` what was computed before."""

    exit_code = 3

    def __init__(self, message: str, t: float | None = None, hint: str | None = None,
                 partial: Any = None):
        self.t = t
        self.hint = hint
        self.partial = partial
        super().__init__(message)

    def format(self) -> str:
        out = f"numerical failure: {self}"
        if self.t is not None:
            out += f" (at t = {self.t:.6g})"
        if self.hint:
            out += f"\n  hint: {self.hint}"
        return out


__all__ = ["Diagnostic", "EqgenError", "NumericalError", "SpecError", "UsageError"]
