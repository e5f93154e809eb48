"""Numerically stable forms of the logistic functions, for losses evaluated far in their tails.

`log(1 + exp(u))` overflows for u ≳ 710 and its derivatives, written with `exp`, become inf/inf;
a logistic loss meets such u as soon as the classifier is confident. `stabilise` rewrites
them as `Softplus(u)` and `1/(1 + exp(u))` as `Sigmoid(-u)`, two sympy functions whose
derivatives stay in the family (softplus' = sigmoid, sigmoid' = sigmoid (1 - sigmoid)) and
which print as `jnp.logaddexp(0, u)` and `jax.nn.sigmoid(u)`, exact in float64 everywhere.
"""

from __future__ import annotations

import sympy as sp


class Sigmoid(sp.Function):
    """σ(u) = 1 / (1 + e^{-u})."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:  # noqa: ARG002
        s = Sigmoid(self.args[0])
        return s * (1 - s)

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None) -> str:
        return _raised(rf"\sigma\left({printer._print(self.args[0])}\right)", exp)


class Softplus(sp.Function):
    """softplus(u) = log(1 + e^{u})."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:  # noqa: ARG002
        return Sigmoid(self.args[0])

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None) -> str:
        return _raised(rf"\operatorname{{softplus}}\left({printer._print(self.args[0])}\right)",
                       exp)


def _raised(text: str, exp: str | None) -> str:
    """`text`, raised to the power `exp` when sympy's LaTeX printer passes one (it does for a
    function inside a power, e.g. σ(u)², and calls `_latex(printer, exp=...)`)."""
    return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


def _exp_argument(e: sp.Expr) -> sp.Expr | None:
    """u when e = 1 + exp(u), else None."""
    if isinstance(e, sp.Add) and len(e.args) == 2 and sp.S.One in e.args:
        other = e.args[0] if e.args[1] == 1 else e.args[1]
        if isinstance(other, sp.exp):
            return other.args[0]
    return None


def stabilise(expr: sp.Expr) -> sp.Expr:
    """Rewrite log(1 + e^u) → Softplus(u) and (1 + e^u)^(-1) → Sigmoid(-u)."""

    def is_softplus(e: sp.Expr) -> bool:
        return isinstance(e, sp.log) and _exp_argument(e.args[0]) is not None

    def is_sigmoid(e: sp.Expr) -> bool:
        return isinstance(e, sp.Pow) and e.exp == -1 and _exp_argument(e.base) is not None

    expr = expr.replace(is_softplus, lambda e: Softplus(_exp_argument(e.args[0])))
    return expr.replace(is_sigmoid, lambda e: Sigmoid(-_exp_argument(e.base)))
