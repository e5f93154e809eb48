"""The error hierarchy: every failure a user can cause maps to one exit code and one clear message.

- `SpecError` (exit 1): the spec or an input file is wrong. Carries one or more `Diagnostic`s,
  each pointing at `file:line:col` with the source line, a caret and a hint.
- `UsageError` (exit 2): the command line is wrong.
- `NumericalError` (exit 3): the solve failed (diverged, non-finite, non-positive covariance);
  says what happened and at which time, and may carry the partial solution.
"""

from __future__ import annotations

import dataclasses
import unicodedata
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
        """Render as `file:line:col: error: message`, the line, a caret and the hint.

        Tabs in the quoted line are expanded and control characters shown as visible symbols
        (one character each), and the caret is placed on the expanded text, so that it sits
        under column `col` whatever the line holds. A long line is cut to a window around the
        column first, so that the cost does not grow with the length of the line.
        """
        where = f"{self.path}:{self.line}:{self.col}" if self.line else self.path
        out = [f"{where}: error: {self.message}"]
        if self.source_line is not None and self.line:
            out += _quote(self.source_line.rstrip("\r\n"), max(self.col - 1, 0), self.width)
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)

    @property
    def sort_key(self) -> tuple[int, int, int]:
        """Diagnostics with a position first, in source order."""
        return (0, self.line, self.col) if self.line else (1, 0, 0)


TAB = 4
WINDOW = 200  # the most characters of a source line quoted (a window around the column)
MAX_CARET = 80


def _quote(raw: str, offset: int, width: int) -> list[str]:
    """The quoted line and the caret line under characters `offset` .. `offset + width` of
    `raw`: only a window of WINDOW characters around the offset is shown (and processed)."""
    first = max(0, offset - WINDOW // 2) if len(raw) > WINDOW else 0
    piece = raw[first : first + WINDOW]
    rel = offset - first
    start = len(piece[:rel].expandtabs(TAB))  # the caret's offset on the shown text
    end = len(piece[: rel + max(width, 1)].expandtabs(TAB))
    text = visible(piece.expandtabs(TAB))
    if first:
        text, start, end = "..." + text, start + 3, end + 3
    caret = "^" * max(1, min(end - start, MAX_CARET))
    return [f"    {text}", "    " + " " * start + caret]


def visible(text: str) -> str:
    """`text` with each control, line-separator and format character replaced by one visible
    symbol (␀ for NUL, ␉ for a tab, ..., � otherwise), so columns are kept."""
    out = []
    for ch in text:
        o = ord(ch)
        if o < 0x20:
            out.append(chr(0x2400 + o))
        elif o == 0x7F:
            out.append("\u2421")
        elif 0x80 <= o < 0xA0 or unicodedata.category(ch) in ("Zl", "Zp", "Cf", "Cs"):
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


class EqgenError(Exception):
    """Base class of every error eqgen reports to a user (never shown as a traceback)."""

    exit_code = 1

    def format(self) -> str:
        return f"error: {self}"


class SpecError(EqgenError):
    """The spec (or an input file derived from it) is wrong; lists every problem found.

    The same problem repeated along one line (an unknown name used a thousand times) is one
    entry that says how often it occurs, and at most MAX_SHOWN entries are printed, so that the
    report of a hostile file stays short and quick to produce.
    """

    exit_code = 1
    MAX_SHOWN = 50

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        # one entry per problem, grouped by file (in order of appearance), in source order
        unique = list(dict.fromkeys(diagnostics))
        files = {d.path: i for i, d in reversed(list(enumerate(unique)))}
        self.diagnostics = _merge_repeats(
            sorted(unique, key=lambda d: (files[d.path], *d.sort_key)))
        super().__init__(f"{len(self.diagnostics)} problem(s) in {', '.join(files)}")

    def __str__(self) -> str:
        return self._shown()

    def _shown(self) -> str:
        """The first MAX_SHOWN diagnostics, formatted, and how many more there are."""
        shown = [d.format() for d in self.diagnostics[: self.MAX_SHOWN]]
        rest = len(self.diagnostics) - len(shown)
        if rest:
            shown.append(f"... and {rest} more problem{'s' if rest != 1 else ''} (not shown)")
        return "\n".join(shown)

    def format(self) -> str:
        n = len(self.diagnostics)
        tail = f"\n{n} problem{'s' if n != 1 else ''} found" if n > 1 else ""
        return self._shown() + tail


def _merge_repeats(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Diagnostics in order, each run of the same message and hint on one line of one file
    kept once (at its first column), with how many more times it occurs there."""
    groups: dict[tuple[Any, ...], list[Diagnostic]] = {}
    for d in diagnostics:
        key = (d.path, d.line, d.message, d.hint) if d.line else (id(d),)
        groups.setdefault(key, []).append(d)
    out = []
    for group in groups.values():
        first = group[0]
        if len(group) > 1:
            more = len(group) - 1
            first = dataclasses.replace(
                first, message=f"{first.message} (and {more} more time{'s' if more != 1 else ''}"
                               " on this line)")
        out.append(first)
    return out  # groups keep the order of their first members


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


class Interrupted(KeyboardInterrupt):
    """A solve stopped by Ctrl-C between two of its pieces; `t` is how far it had come and
    `partial` what was computed up to then.

    A `KeyboardInterrupt`, not an `EqgenError`: code that catches failed solves to go on
    (`except NumericalError`) must not swallow a request to stop."""

    exit_code = 130

    def __init__(self, message: str, t: float | None = None, partial: Any = None):
        self.t = t
        self.hint = None
        self.partial = partial
        super().__init__(message)


__all__ = ["Diagnostic", "EqgenError", "Interrupted", "NumericalError", "SpecError",
           "UsageError"]
