"""The syntax tree of a spec: plain frozen dataclasses, each with its source position.

Numbers are kept as exact `Fraction`s (with their source text) so that the derivation can turn
them into exact rationals; floats only appear when code is printed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import TypeVar

from eqgen.errors import Diagnostic

T = TypeVar("T")


@dataclass(frozen=True)
class Pos:
    """A 1-based source position and the width of the underlined span.

    The position of an expression is where it starts (its first token, an opening bracket
    included) and its width reaches to its last token when that is on the same line (to the
    end of the line otherwise), so that a caret underlines the whole value.
    """

    line: int
    col: int
    width: int = 1


@dataclass(frozen=True)
class Number:
    value: Fraction
    text: str
    pos: Pos


@dataclass(frozen=True)
class Name:
    id: str
    pos: Pos


@dataclass(frozen=True)
class String:
    value: str
    pos: Pos


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    kwargs: tuple[KeywordArg, ...]
    pos: Pos

    def kwarg(self, name: str) -> KeywordArg | None:
        return next((k for k in self.kwargs if k.name == name), None)


@dataclass(frozen=True)
class KeywordArg:
    name: str
    value: Expr
    pos: Pos


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / **
    left: Expr
    right: Expr
    pos: Pos  # the whole expression
    op_pos: Pos | None = None  # the operator (errors about the operation itself point here)

    @property
    def where_op(self) -> Pos:
        """The operator's position (the whole expression's when unknown)."""
        return self.op_pos if self.op_pos is not None else self.pos


@dataclass(frozen=True)
class Neg:
    operand: Expr
    pos: Pos


@dataclass(frozen=True)
class ListExpr:
    items: tuple[Expr, ...]
    pos: Pos


Expr = Number | Name | String | Call | BinOp | Neg | ListExpr


@dataclass(frozen=True)
class Item:
    """One comma-separated entry of a statement: `name = value` or a bare value."""

    name: str | None
    value: Expr
    pos: Pos


@dataclass(frozen=True)
class Statement:
    keyword: str
    items: tuple[Item, ...]
    pos: Pos


@dataclass(frozen=True)
class SourceFile:
    """The text of a spec file, kept to quote lines in error messages."""

    path: str
    text: str

    @cached_property
    def lines(self) -> list[str]:
        """The lines as the parser counts them: split at '\\n' only (a trailing '\\r' removed),
        not at form feeds or U+2028 as `str.splitlines` would."""
        return [ln.removesuffix("\r") for ln in self.text.split("\n")]

    def line(self, n: int) -> str | None:
        lines = self.lines
        return lines[n - 1] if 0 < n <= len(lines) else None


@dataclass(frozen=True)
class ModelFile:
    """A parsed spec: the `model` header and its statements, in source order."""

    name: str
    title: str
    pos: Pos
    statements: tuple[Statement, ...]
    source: SourceFile
    # Problems found while parsing that did not stop it (numbers out of range, expressions
    # nested too deep or too large): a family's builder reports them with its own, and never
    # returns a spec when there are any.
    problems: tuple[Diagnostic, ...] = field(default=(), compare=False)


def children(expr: Expr) -> tuple[Expr, ...]:
    """The direct subexpressions of `expr`, in source order (a call's keyword values last)."""
    match expr:
        case Call():
            return expr.args + tuple(k.value for k in expr.kwargs)
        case BinOp():
            return (expr.left, expr.right)
        case Neg():
            return (expr.operand,)
        case ListExpr():
            return expr.items
    return ()


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of `expr`, outermost first, in source order; iterative, so any depth is fine."""
    stack = [expr]
    while stack:
        e = stack.pop()
        yield e
        stack.extend(reversed(children(e)))


def names_in(expr: Expr) -> list[Name]:
    """Every `Name` used in an expression (function names of calls excluded)."""
    return [e for e in walk(expr) if isinstance(e, Name)]


def calls_in(expr: Expr) -> list[Call]:
    """Every `Call` in an expression, outermost first."""
    return [e for e in walk(expr) if isinstance(e, Call)]


def lists_in(expr: Expr) -> list[ListExpr]:
    """Every `ListExpr` in an expression, outermost first."""
    return [e for e in walk(expr) if isinstance(e, ListExpr)]


def fold(expr: Expr, combine: Callable[[Expr, list[T]], T]) -> T:
    """`combine(node, results of its children)` from the leaves up; iterative, so any depth
    is fine (children in the order of `children`)."""
    done: list[T] = []  # results of finished subexpressions, in order
    stack: list[tuple[Expr, bool]] = [(expr, False)]
    while stack:
        e, ready = stack.pop()
        kids = children(e)
        if not ready and kids:
            stack.append((e, True))
            stack.extend((k, False) for k in reversed(kids))
            continue
        parts = done[len(done) - len(kids):]
        del done[len(done) - len(kids):]
        done.append(combine(e, parts))
    (result,) = done
    return result


def to_text(expr: Expr) -> str:
    """The expression written back as source text (canonical spacing)."""
    return fold(expr, _text_of)


def _text_of(expr: Expr, parts: list[str]) -> str:
    match expr:
        case Number():
            return expr.text
        case Name():
            return expr.id
        case String():
            return '"' + expr.value + '"'
        case Call():
            n = len(expr.args)
            named = [f"{k.name} = {t}" for k, t in zip(expr.kwargs, parts[n:], strict=True)]
            return f"{expr.func}({', '.join(parts[:n] + named)})"
        case BinOp():
            return f"({parts[0]} {expr.op} {parts[1]})"
        case Neg():
            return f"-{parts[0]}"
        case ListExpr():
            return "[" + ", ".join(parts) + "]"
    raise TypeError(expr)
