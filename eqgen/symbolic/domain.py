"""Where a function of one real variable is finite, and how fast it grows: checks that refuse
activations, targets and losses whose Gaussian expectations cannot exist.

Two questions, each answered only when the answer can be shown (a function that passes is not
proved harmless, but a function that fails certainly is):

- `real_singularity`: a real point where the function is not a finite real number: a
  denominator that vanishes (1/z), the log of a number ≤ 0 (log(h)), a fractional power of a
  negative number (sqrt(h)). Shown by exact root counting for polynomial arguments, and
  otherwise by evaluation: an argument that is exactly 0 at a point, changes sign between two
  points (a continuous function then vanishes in between), or is negative at a point.
- `super_exponential_growth`: whether log|f(x)| grows at least like c·x² (exp(h²), exp(exp(h))),
  so that E[f(x)] diverges for a Gaussian x of variance ≥ 1/(2c). Polynomials times exp(c|x|)
  (the exponential, logistic and square losses) pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import sympy as sp

# Evaluation grid of the sign and zero tests: steps of 0.01 over [-50, 50] (every integer and
# every multiple of 0.01 is a node, so 1/z or 1/(h - 1) are found exactly).
GRID = np.round(np.linspace(-50.0, 50.0, 10_001), 2)
# Radii of the growth probe, and the excess L(2R) − 2·L(R) of L = log(1 + |f|) above which the
# growth is faster than exponential: ≈ 2c·R² for exp(c x²), but only ≈ |k|·log(R/2) for
# x^k·exp(c x) (at most ~145 for |k| ≤ 30 at R = 256; the rates met in losses give far less).
GROWTH_RADII = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
GROWTH_EXCESS = 60.0
OVERFLOW_LOG = 709.0  # log of the largest float64
# Functions with jumps: a sign change of an argument that holds one proves no zero.
_JUMPS = (sp.sign, sp.Heaviside)
_NUMERIC = [{"Sigmoid": lambda u: 1 / (1 + np.exp(-u)), "Softplus": lambda u: np.logaddexp(0, u)},
            "scipy", "numpy"]


def real_singularity(expr: sp.Expr, var: sp.Symbol,
                     cases: Iterable[Mapping[sp.Symbol, sp.Expr]] = ({},),
                     named: Iterable[sp.Symbol] = ()) -> str | None:
    """What makes `expr` not a finite real number at some real point (for one of the
    substitutions `cases` of its other symbols), as a phrase such as "divides by z, which is 0
    at z = 0", or None when nothing is found.

    **Arguments**
    - `expr`: a function of `var` (other symbols are replaced by each case in turn; a case that
      leaves free symbols is skipped).
    - `var`: the real variable (z of an activation, h of a loss).
    - `cases`: values of the other symbols, e.g. the labels y = ±1 and the parameters.
    - `named`: the symbols whose value in the case is stated, e.g. "(for y = -1)".
    """
    named = [s for s in named if s in expr.free_symbols]
    for case in cases:
        e = expr.xreplace(dict(case)) if case else expr
        if e.free_symbols - {var}:
            continue
        for what, test, arg in _conditions(e, var):
            where = test(arg, var)
            if where is not None:
                given = ", ".join(f"{s} = {case[s]}" for s in named if s in case)
                return f"{what} {_short(arg)}, which is {where}" + (
                    f" (for {given})" if given else "")
    return None


Test = Callable[[sp.Expr, sp.Symbol], "str | None"]


def _conditions(expr: sp.Expr, var: sp.Symbol) -> list[tuple[str, Test, sp.Expr]]:
    """The arguments that must stay away from 0 (denominators, logs) or from negative numbers
    (logs, fractional powers), innermost first: (what is done to it, its test, it)."""
    out: list[tuple[str, Test, sp.Expr]] = []
    for node in sp.postorder_traversal(expr):
        if isinstance(node, sp.Pow) and node.base.has(var) and node.exp.is_number:
            if node.exp.is_negative:
                out.append(("divides by", _vanishes, node.base))
            if not node.exp.is_integer:
                out.append(("takes a fractional power of", _negative, node.base))
        elif isinstance(node, sp.log) and node.args[0].has(var):
            out.append(("takes the log of", _vanishes, node.args[0]))
            out.append(("takes the log of", _negative, node.args[0]))
    return list(dict.fromkeys(out))


def _vanishes(arg: sp.Expr, var: sp.Symbol) -> str | None:
    """Where `arg` (a denominator or a log's argument) is 0 for a real `var`, if shown."""
    point = _polynomial_root(arg, var)
    if point is None:
        point = _zero_on_grid(arg, var)
    return None if point is None else f"0 at {var} = {point}"


def _negative(arg: sp.Expr, var: sp.Symbol) -> str | None:
    """Where `arg` (a log's argument, a fractional power's base) is negative, if shown: the
    whole region for a polynomial (e.g. "negative for h < 0"), else a grid point."""
    region = _negative_region(arg, var)
    if region is not None:
        return region
    values = _values(arg, var)
    if values is None:
        return None
    bad = np.flatnonzero(values < -1e-9)
    if not len(bad):
        return None
    nearest = GRID[bad[np.argmin(np.abs(GRID[bad]))]]
    return f"negative at {var} = {_point(nearest)}"


def _negative_region(arg: sp.Expr, var: sp.Symbol) -> str | None:
    """"negative for h < 0"-style text when `arg` is a polynomial in `var` of degree ≤ 4 that
    is negative somewhere (exact: from its real roots), else None."""
    if not arg.is_polynomial(var):
        return None
    try:
        if not 1 <= sp.Poly(arg, var).degree() <= 4:
            return None
        region = sp.solve_univariate_inequality(arg < 0, var, relational=False)
    except (sp.PolynomialError, NotImplementedError, ValueError, TypeError):
        return None
    pieces = list(region.args) if isinstance(region, sp.Union) else [region]
    if not pieces or not all(isinstance(p, sp.Interval) for p in pieces):
        return None
    return "negative for " + " and for ".join(_interval_text(p, var) for p in pieces)


def _interval_text(interval: sp.Interval, var: sp.Symbol) -> str:
    """An open interval of `var` as text: "h < 0", "h > 1", "-1 < h < 1", "every h"."""
    lo, hi = interval.start, interval.end
    if lo == -sp.oo and hi == sp.oo:
        return f"every {var}"
    if lo == -sp.oo:
        return f"{var} < {_point(float(hi))}"
    if hi == sp.oo:
        return f"{var} > {_point(float(lo))}"
    return f"{_point(float(lo))} < {var} < {_point(float(hi))}"


def _polynomial_root(arg: sp.Expr, var: sp.Symbol) -> str | None:
    """A real root of `arg` when it is a polynomial in `var` (exact root counting), else None."""
    if not arg.is_polynomial(var):
        return None
    try:
        poly = sp.Poly(arg, var)
        if poly.degree() < 1 or poly.count_roots() == 0:
            return None
        root = min(sp.real_roots(poly), key=lambda r: (abs(float(r)), float(r)))
    except (sp.PolynomialError, NotImplementedError, ValueError, TypeError):
        return None
    return _point(float(root))


def _zero_on_grid(arg: sp.Expr, var: sp.Symbol) -> str | None:
    """A grid point where `arg` is exactly 0, or the middle of two neighbouring points between
    which it changes sign (a zero when `arg` is continuous: no jumps, and no poles of its own,
    which `_conditions` lists and tests first)."""
    values = _values(arg, var)
    if values is None:
        return None
    for i in np.flatnonzero(values == 0):
        if arg.subs(var, sp.Rational(str(GRID[i]))) == 0:  # exact, not round-off
            return _point(GRID[i])
    if arg.has(*_JUMPS):
        return None
    finite = np.isfinite(values)
    flips = np.flatnonzero(finite[:-1] & finite[1:] & (np.sign(values[:-1])
                                                        * np.sign(values[1:]) < 0))
    if len(flips):
        i = flips[np.argmin(np.abs(GRID[flips]))]
        return f"about {_point((GRID[i] + GRID[i + 1]) / 2)}"
    return None


def _values(arg: sp.Expr, var: sp.Symbol) -> np.ndarray | None:
    """`arg` on the grid (real parts; NaN where not real), or None when numpy cannot
    evaluate it."""
    try:
        fn = sp.lambdify(var, arg, modules=_NUMERIC)
        with np.errstate(all="ignore"):
            out = np.asarray(fn(GRID), dtype=complex)
    except Exception:  # noqa: BLE001 - a probe only: what numpy cannot evaluate is not tested
        return None
    out = np.broadcast_to(out, GRID.shape)
    real = out.real.copy()
    real[np.abs(out.imag) > 1e-12] = np.nan
    return real


def _point(x: float) -> str:
    return f"{x:.4g}" if x != 0 else "0"


_SPEC_NAMES = {"Abs(": "abs(", "Max(": "max(", "Min(": "min(", "Softplus(": "softplus(",
               "Sigmoid(": "sigmoid("}


def _short(e: sp.Expr) -> str:
    """`e` as a spec would write it, cut to 60 characters."""
    text = sp.sstr(e)
    for name, spelled in _SPEC_NAMES.items():
        text = text.replace(name, spelled)
    return text if len(text) <= 60 else text[:57] + "..."


def super_exponential_growth(expr: sp.Expr, var: sp.Symbol,
                             cases: Iterable[Mapping[sp.Symbol, sp.Expr]] = ({},)
                             ) -> float | None:
    """The radius R at which |expr| is seen to grow faster than exp(c·|var|) (like exp(c var²)
    or faster), on either side and for any of the substitutions `cases`; else None."""
    for case in cases:
        e = expr.xreplace(dict(case)) if case else expr
        if e.free_symbols - {var}:
            continue
        try:
            fn = sp.lambdify(var, e, modules=_NUMERIC)
        except Exception:  # noqa: BLE001 - a probe only
            continue
        for sign in (1.0, -1.0):
            radius = _growth_radius(fn, sign)
            if radius is not None:
                return radius
    return None


def _growth_radius(fn: Callable[[np.ndarray], object], sign: float) -> float | None:
    """The first probe radius R where L = log(1 + |fn|) has L(2R) − 2·L(R) > GROWTH_EXCESS,
    or overflows at 2R although L(R) is small enough that an exponential could not."""
    radii = np.array(GROWTH_RADII)
    try:
        with np.errstate(all="ignore"):
            raw = np.asarray(fn(sign * np.concatenate([radii, [2 * radii[-1]]])), dtype=complex)
    except Exception:  # noqa: BLE001 - a probe only
        return None
    sizes = np.log1p(np.abs(np.broadcast_to(raw, (len(radii) + 1,))))
    for i, r in enumerate(radii):
        now, later = sizes[i], sizes[i + 1]
        if math.isnan(now) or math.isnan(later) or math.isinf(now):
            continue
        if math.isinf(later) and now < OVERFLOW_LOG / 3:  # an exponential at most doubles L
            return float(r)
        if math.isfinite(later) and later - 2 * now > GROWTH_EXCESS:
            return float(r)
    return None


__all__ = ["real_singularity", "super_exponential_growth"]
