"""Spec expressions → exact sympy expressions (numbers become rationals, not floats)."""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from eqgen.spec import ast

Z = sp.Symbol("z", real=True)
Y = sp.Symbol("y", real=True)
YHAT = sp.Symbol("yhat", real=True)


def _he(n: sp.Expr, x: sp.Expr) -> sp.Expr:
    return sp.expand(sp.hermite_prob(int(n), x))


FUNCTIONS = {
    "erf": sp.erf,
    "erfc": sp.erfc,
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "tanh": sp.tanh,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "sin": sp.sin,
    "cos": sp.cos,
    "abs": sp.Abs,
    "sign": sp.sign,
    "relu": lambda x: sp.Max(0, x),
    "sigmoid": lambda x: 1 / (1 + sp.exp(-x)),
    "softplus": lambda x: sp.log(1 + sp.exp(x)),
    "max": sp.Max,
    "min": sp.Min,
    "He": _he,
}


def to_sympy(expr: ast.Expr, symbols: Mapping[str, sp.Symbol]) -> sp.Expr:
    """Convert a checked spec expression; names resolve through `symbols` (and `pi`)."""
    match expr:
        case ast.Number():
            return sp.Rational(expr.value.numerator, expr.value.denominator)
        case ast.Name():
            if expr.id == "pi":
                return sp.pi
            return symbols[expr.id]
        case ast.Neg():
            return -to_sympy(expr.operand, symbols)
        case ast.BinOp():
            a, b = to_sympy(expr.left, symbols), to_sympy(expr.right, symbols)
            return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                    "/": lambda: a / b, "**": lambda: a**b}[expr.op]()
        case ast.Call():
            args = [to_sympy(a, symbols) for a in expr.args]
            return FUNCTIONS[expr.func](*args)
    raise TypeError(f"cannot convert {expr!r} to sympy")


def activation(expr: ast.Expr) -> sp.Expr:
    """An activation (or target) as a sympy function of `Z`."""
    return to_sympy(expr, {"z": Z})


def loss(expr: ast.Expr | None) -> sp.Expr:
    """A loss as a sympy function of `Y` and `YHAT`; None is the square loss ½(y − ŷ)²."""
    if expr is None:
        return (Y - YHAT) ** 2 / 2
    return to_sympy(expr, {"y": Y, "yhat": YHAT})
