"""Names the expression language knows, shared by validation and the symbolic layer."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from eqgen.spec import ast

# Functions usable in activations, targets and losses: name -> accepted argument counts.
SYMBOLIC_FUNCTIONS: dict[str, tuple[int, ...]] = {
    "erf": (1,),
    "erfc": (1,),
    "exp": (1,),
    "log": (1,),
    "sqrt": (1,),
    "tanh": (1,),
    "sinh": (1,),
    "cosh": (1,),
    "sin": (1,),
    "cos": (1,),
    "abs": (1,),
    "sign": (1,),
    "relu": (1,),
    "sigmoid": (1,),
    "softplus": (1,),
    "max": (2,),
    "min": (2,),
    "He": (2,),  # He(n, z): probabilists' Hermite polynomial of degree n
}
CONSTANTS = ("pi",)
# Words with a fixed meaning that a parameter may not take.
RESERVED = {"z", "y", "yhat", "h", "pi", "square", "gaussian", "committee", "fixed", "trained",
            "random", "identity", "zeros", "ones", "diag", *SYMBOLIC_FUNCTIONS}

# The exact derivation expands polynomial factors by Wick's theorem, whose cost grows like a
# double factorial of the degree of the four-field integrand (the student activation appears
# four times in I4): these bounds keep `eqgen check` within seconds. Measured on committee_erf
# (derivation time): student z**5 4.5 s, He(6, z) > 25 s, erf(z)*z**3 5 s, erf(z)*z**4 20 s;
# teacher He(10, z) 2.3 s, He(12, z) 8.9 s, He(16, z) > 25 s.
MAX_DEGREE = {"student": 5, "teacher": 10}  # pure polynomials
MAX_MIXED_DEGREE = {"student": 3, "teacher": 5}  # polynomial factors beside erf, tanh, ...
_DEGREE_CAP = 10**9
# Functions that keep the polynomial degree of their argument (piecewise polynomials).
_PIECEWISE = {"abs", "relu", "max", "min"}


def polynomial_degree(expr: Any) -> tuple[int, bool]:
    """An upper bound on the degree in z of the polynomial factors of an activation, and whether
    it has non-polynomial parts (calls such as erf or tanh); iterative, so any depth is fine.

    `He(n, x)` has degree n·deg(x); a power with a whole-number literal exponent multiplies
    the degree; other calls count as degree 0 (their expectations are not expanded by Wick).
    """
    def combine(e: ast.Expr, parts: list[tuple[int, bool]]) -> tuple[int, bool]:
        degs = [d for d, _ in parts]
        mixed = any(m for _, m in parts)
        match e:
            case ast.Name():
                return (1 if e.id == "z" else 0), False
            case ast.Call():
                if e.func == "He" and e.args and isinstance(e.args[0], ast.Number):
                    n = e.args[0].value
                    inner = degs[1] if len(degs) > 1 else 0
                    return min(_DEGREE_CAP, int(abs(n)) * inner), mixed
                if e.func in _PIECEWISE:
                    return max(degs, default=0), mixed
                return 0, True
            case ast.BinOp():
                a, b = degs
                if e.op in ("+", "-"):
                    return max(a, b), mixed
                if e.op == "*":
                    return min(_DEGREE_CAP, a + b), mixed
                if e.op == "/":
                    return a, mixed or b > 0
                n = _constant(e.right)  # "**"
                if n is None or n < 0:
                    return (0, True) if a or b else (0, mixed)
                whole = int(n) + (0 if n.denominator == 1 else 1)
                return min(_DEGREE_CAP, a * whole), mixed
            case ast.Neg():
                return degs[0], mixed
        return 0, mixed

    return ast.fold(expr, combine)


def degree_problem(expr: Any, who: str) -> str | None:
    """A message when the activation of `who` ("student" or "teacher") has polynomial factors
    of a degree too high to derive in bounded time, else None."""
    degree, mixed = polynomial_degree(expr)
    limit = (MAX_MIXED_DEGREE if mixed else MAX_DEGREE)[who]
    if degree <= limit:
        return None
    kind = "polynomial factors beside other functions" if mixed else "a polynomial"
    shown = f"{degree}" if degree < _DEGREE_CAP else f"above {_DEGREE_CAP}"
    return (f"the {who} activation has degree {shown} in z: {kind} of degree at most {limit} "
            "can be derived exactly")


def _constant(expr: Any) -> Fraction | None:
    """The exact value of a constant numeric expression (numbers, + − * / and unary minus),
    or None."""
    def combine(e: ast.Expr, parts: list[Fraction | None]) -> Fraction | None:
        if isinstance(e, ast.Number):
            return e.value
        if any(p is None for p in parts) or not parts:
            return None
        if isinstance(e, ast.Neg):
            return -parts[0]
        if isinstance(e, ast.BinOp):
            a, b = parts
            assert a is not None and b is not None
            if e.op == "+":
                return a + b
            if e.op == "-":
                return a - b
            if e.op == "*":
                return a * b if abs(a) < 10**12 and abs(b) < 10**12 else None
            if e.op == "/":
                return a / b if b else None
        return None

    return ast.fold(expr, combine)


# Exact symbolic arithmetic on a literal such as 2**2**22 builds a number of millions of digits
# (and float64 code cannot hold anything above ~1.8e308): such expressions are refused up front.
MAX_SYMBOLIC_EXPONENT = 1000
MAX_CONSTANT = 1e300


def size_problem(expr: Any) -> tuple[str, ast.Pos, str] | None:
    """(message, position, hint) for the innermost constant in a symbolic expression that is too
    large to compute exactly or to hold in float64 (an exponent above MAX_SYMBOLIC_EXPONENT in
    size, a constant above MAX_CONSTANT), else None. Evaluated in floats, so it is cheap."""
    Problem = tuple[str, ast.Pos, str]
    hint = (f"exponents in activations and losses are at most {MAX_SYMBOLIC_EXPONENT} in size "
            f"and constants at most {MAX_CONSTANT:g}")

    def too_large(v: float) -> bool:
        return not math.isfinite(v) or abs(v) > MAX_CONSTANT

    def combine(e: ast.Expr, parts: list[tuple[float | None, Problem | None]]
                ) -> tuple[float | None, Problem | None]:
        for _, problem in parts:
            if problem is not None:
                return None, problem
        values = [v for v, _ in parts]
        match e:
            case ast.Number():
                try:
                    v = float(e.value)
                except OverflowError:
                    v = math.inf
                return (None, ("number too large", e.pos, hint)) if too_large(v) else (v, None)
            case ast.Name():
                return (math.pi if e.id == "pi" else None), None
            case ast.Neg():
                return (None if values[0] is None else -values[0]), None
            case ast.BinOp():
                a, b = values
                if e.op == "**" and b is not None and abs(b) > MAX_SYMBOLIC_EXPONENT:
                    return None, ("exponent too large", e.where_op, hint)
                if a is None or b is None:
                    return None, None
                try:
                    v = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                         "/": lambda: a / b, "**": lambda: math.pow(a, b)}[e.op]()
                except OverflowError:
                    v = math.inf
                except (ZeroDivisionError, ValueError):  # reported elsewhere, or complex
                    return None, None
                if too_large(v):
                    return None, ("number too large", e.where_op, hint)
                return v, None
        return None, None

    return ast.fold(expr, combine)[1]
