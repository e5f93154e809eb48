"""Numeric evaluation of spec expressions (parameters, sizes, initial overlaps).

The spec layer needs numbers to check a model before any derivation: sizes must be positive
integers, initial covariances positive semi-definite, and so on. Expressions here are evaluated
with numpy in float64; the derivation converts the same expressions to exact sympy separately.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from eqgen.errors import Diagnostic
from eqgen.spec import ast

Value = float | np.ndarray


class EvalError(Exception):
    """An expression could not be evaluated; carries the position of the culprit."""

    def __init__(self, message: str, pos: ast.Pos, hint: str | None = None):
        super().__init__(message)
        self.pos = pos
        self.hint = hint

    def diagnostic(self, source: ast.SourceFile) -> Diagnostic:
        return Diagnostic(str(self), source.path, self.pos.line, self.pos.col, self.pos.width,
                          source.line(self.pos.line), self.hint)


NO_POS = ast.Pos(0, 0)


def _size(x: Value, pos: ast.Pos) -> int:
    if isinstance(x, np.ndarray) or not math.isfinite(x) or x != int(x) or x < 0 \
            or x > 100_000:
        raise EvalError("a matrix size must be a whole number between 0 and 100000", pos,
                        "e.g. identity(p), zeros(p, k), ones(p)")
    return int(x)


# The most entries a matrix built in a spec may have: a 4096 × 4096 Q (the largest width),
# 128 MiB of float64. Checked before allocating, so that e.g. ones(100000, 100000) is an
# error and not 75 GiB of memory.
MAX_ENTRIES = 4096 * 4096


def _matrix_shape(n: int, m: int, pos: ast.Pos) -> tuple[int, int]:
    if n * m > MAX_ENTRIES:
        raise EvalError(f"matrix too large: {n} × {m} = {n * m} entries (at most {MAX_ENTRIES})",
                        pos, "a spec's matrices are at most 4096 × 4096 (the largest width)")
    return n, m


def _identity(n: Value, pos: ast.Pos) -> np.ndarray:
    size = _size(n, pos)
    return np.eye(*_matrix_shape(size, size, pos))


def _zeros(n: Value, m: Value | None = None, pos: ast.Pos = NO_POS) -> np.ndarray:
    return np.zeros(_matrix_shape(_size(n, pos), _size(m if m is not None else n, pos), pos))


def _ones(n: Value, m: Value | None = None, pos: ast.Pos = NO_POS) -> np.ndarray:
    if m is None:
        return np.ones(_size(n, pos))
    return np.ones(_matrix_shape(_size(n, pos), _size(m, pos), pos))


def _diag(v: Value, pos: ast.Pos) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(v, dtype=float))
    if arr.ndim != 1:
        raise EvalError("diag expects a list of numbers", pos, "e.g. diag([1, 0.5])")
    _matrix_shape(arr.size, arr.size, pos)
    return np.diag(arr)


def _relu(x: Value) -> Value:
    return np.maximum(x, 0.0)


# name -> (function, number of arguments accepted, whether it needs the call position)
NUMERIC_FUNCTIONS: dict[str, tuple[Callable[..., Any], tuple[int, ...], bool]] = {
    "sqrt": (np.sqrt, (1,), False),
    "exp": (np.exp, (1,), False),
    "log": (np.log, (1,), False),
    "abs": (np.abs, (1,), False),
    "tanh": (np.tanh, (1,), False),
    "erf": (np.vectorize(math.erf, otypes=[float]), (1,), False),
    "relu": (_relu, (1,), False),
    "identity": (_identity, (1,), True),
    "zeros": (_zeros, (1, 2), True),
    "ones": (_ones, (1, 2), True),
    "diag": (_diag, (1,), True),
}
CONSTANTS = {"pi": math.pi}
HUGE = 1e300  # a number literal at or above this magnitude is refused as an overflow
_EXAMPLES = {name: f"{name}(x)" for name in NUMERIC_FUNCTIONS} | {
    "identity": "identity(p)", "zeros": "zeros(p, k)", "ones": "ones(p)",
    "diag": "diag([1, 0.5])"}


def evaluate(expr: ast.Expr, env: Mapping[str, Value]) -> Value:
    """Evaluate `expr` with the names in `env` (and `pi`), raising `EvalError` at the culprit."""
    with np.errstate(all="ignore"):
        value = _eval(expr, env)
    finite = math.isfinite(value) if type(value) is float else \
        not np.any(~np.isfinite(np.asarray(value, dtype=float)))
    literal = expr.operand if isinstance(expr, ast.Neg) else expr
    if not finite and isinstance(literal, ast.Number):
        raise EvalError(f"this number is too large: eqgen accepts magnitudes below {HUGE:g}",
                        expr.pos, "a value this large overflows as soon as it is squared")
    if not finite:
        raise EvalError("this expression does not evaluate to a finite number", expr.pos,
                        "check for division by zero, log of a non-positive number or overflow")
    return value


def _eval(expr: ast.Expr, env: Mapping[str, Value]) -> Value:
    match expr:
        case ast.Number():
            try:
                v = float(expr.value)
            except OverflowError:
                return math.inf
            return v if abs(v) < HUGE else math.inf
        case ast.Name():
            if expr.id in env:
                return env[expr.id]
            if expr.id in CONSTANTS:
                return CONSTANTS[expr.id]
            raise EvalError(f"unknown name '{expr.id}'", expr.pos, _names_hint(expr.id, env))
        case ast.String():
            raise EvalError("a string is not allowed here", expr.pos, "write a number")
        case ast.Neg():
            return -_eval(expr.operand, env)
        case ast.BinOp():
            a, b = _eval(expr.left, env), _eval(expr.right, env)
            if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape != b.shape:
                raise EvalError(f"shapes {a.shape} and {b.shape} do not match", expr.where_op,
                                f"'{expr.op}' acts entry by entry on equal shapes")
            try:
                if expr.op == "+":
                    return a + b
                if expr.op == "-":
                    return a - b
                if expr.op == "*":
                    return a * b
                if expr.op == "/":
                    if np.any(np.asarray(b) == 0):
                        raise EvalError("division by zero", expr.where_op,
                                        f"the divisor {ast.to_text(expr.right)[:60]} is 0 here")
                    return a / b
                if isinstance(b, np.ndarray):
                    raise EvalError("an exponent must be a number", expr.where_op,
                                    "powers of lists act entry by entry with a number exponent, "
                                    "e.g. [1, 2]**2")
                if abs(b) > 1e4:
                    raise EvalError("exponent too large", expr.where_op,
                                    "an exponent in a value is at most 10000 in size")
                return np.power(a, b) if isinstance(a, np.ndarray) else float(a) ** float(b)
            except (ValueError, OverflowError, ZeroDivisionError) as e:
                raise EvalError(f"cannot evaluate: {e}", expr.where_op,
                                "check the sizes of the numbers involved") from None
        case ast.ListExpr():
            items = [_eval(i, env) for i in expr.items]
            if not items:
                raise EvalError("empty list", expr.pos, "write at least one number, e.g. [1]")
            shapes = {np.shape(i) for i in items}
            if len(shapes) != 1:
                raise EvalError("rows of a matrix must all have the same length", expr.pos,
                                "e.g. [[1, 0], [0, 1]]: every row has the same number of "
                                "entries")
            return np.array(items, dtype=float)
        case ast.Call():
            if expr.func not in NUMERIC_FUNCTIONS:
                raise EvalError(f"unknown function '{expr.func}' in a numeric value", expr.pos,
                                "known here: " + ", ".join(sorted(NUMERIC_FUNCTIONS)))
            fn, arities, wants_pos = NUMERIC_FUNCTIONS[expr.func]
            if expr.kwargs:
                raise EvalError(f"{expr.func}() takes no keyword arguments", expr.kwargs[0].pos,
                                f"give the arguments without names, e.g. {_EXAMPLES[expr.func]}")
            if len(expr.args) not in arities:
                raise EvalError(f"{expr.func}() takes {' or '.join(map(str, arities))} "
                                f"argument(s), got {len(expr.args)}", expr.pos,
                                f"e.g. {_EXAMPLES[expr.func]}")
            args = [_eval(a, env) for a in expr.args]
            return fn(*args, pos=expr.pos) if wants_pos else fn(*args)
    raise EvalError("cannot evaluate this", expr.pos, "write a number")  # pragma: no cover


SUGGESTION_CUTOFF = 0.8  # difflib's 0.6 offered 'Delta' for 'eta', a different parameter


def closest_name(name: str, options: list[str] | tuple[str, ...]) -> str | None:
    """The option `name` is most likely a typo of: the same letters in another case, else
    the closest by difflib's ratio above `SUGGESTION_CUTOFF`; None when nothing is close."""
    import difflib

    same = [o for o in options if o.lower() == name.lower() and o != name]
    if same:
        return same[0]
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=SUGGESTION_CUTOFF)
    return close[0] if close else None


def _names_hint(name: str, env: Mapping[str, Value]) -> str:
    known = sorted(set(env) | set(CONSTANTS))
    if (close := closest_name(name, known)) is not None:
        return f"did you mean '{close}'?"
    return "declare it with `param " + name + " = ...`" if known else "declare it with param"
