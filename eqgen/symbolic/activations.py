"""Classify activation functions into the shapes the Gaussian-expectation engine can integrate.

An activation is a sympy expression `f(z)` in one real symbol `z`. The engine never works on the
raw expression: it works on a **sum of terms** `Σ_t p_t(z) · B_t(z)`, where `p_t` is a polynomial
in `z` and `B_t` is one of a few *bases* whose Gaussian calculus is known in closed form:

| base      | meaning                 | derivative                    |
|-----------|-------------------------|-------------------------------|
| `one`     | 1                       | 0                             |
| `gauss`   | exp(-c z²), c > 0       | -2c z · exp(-c z²)            |
| `erf`     | erf(k z), k > 0         | (2k/√π) · exp(-k² z²)         |
| `step`    | Heaviside(z)            | DiracDelta(z)                 |
| `delta`   | DiracDelta(z)           | (not needed, not supported)   |
| `generic` | anything else, verbatim | sympy.diff                    |

Why this form: multilinearity lets the engine expand products of sums, Gaussian factors are
absorbed into the covariance (the "tilt"), Dirac deltas are absorbed by conditioning, and the
remaining odd bases (`erf`, and `step` = ½ + ½ sign) have pairwise arcsin closed forms.

ReLU is `Max(0, z)`, rewritten as `z · Heaviside(z)`; its derivative (sympy gives `Heaviside(z)`)
has kind `"step"` and its second derivative (`DiracDelta(z)`) kind `"delta"`. `Min`, `Abs`,
`sign` and leaky ReLU (`Max(z, a z)`) are rewritten the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

__all__ = [
    "Activation",
    "Base",
    "Term",
    "classify",
    "derivative",
    "term_derivative",
    "terms_to_expr",
]

_BASE_ORDER = {"one": 0, "gauss": 1, "erf": 2, "step": 3, "delta": 4, "generic": 5}


@dataclass(frozen=True)
class Base:
    """A non-polynomial building block of an activation term.

    **Fields**
    - `name`: one of `"one"`, `"gauss"`, `"erf"`, `"step"`, `"delta"`, `"generic"`.
    - `param`: the rate `c` of `exp(-c z²)`, the scale `k` of `erf(k z)`, the verbatim expression
      for `"generic"`, and `0` otherwise.
    """

    name: str
    param: sympy.Expr = sympy.S.Zero

    def sort_key(self) -> tuple[int, str]:
        """A hash-independent key, so that iteration orders are deterministic."""
        return (_BASE_ORDER[self.name], sympy.srepr(self.param))

    def as_expr(self, z: sympy.Symbol) -> sympy.Expr:
        """The base as a sympy expression in `z`."""
        if self.name == "one":
            return sympy.S.One
        if self.name == "gauss":
            return sympy.exp(-self.param * z**2)
        if self.name == "erf":
            return sympy.erf(self.param * z)
        if self.name == "step":
            return sympy.Heaviside(z)
        if self.name == "delta":
            return sympy.DiracDelta(z)
        return self.param


ONE = Base("one")
STEP = Base("step")
DELTA = Base("delta")


@dataclass(frozen=True)
class Term:
    """One term `p(z) · B(z)` of an activation.

    **Fields**
    - `poly`: the coefficients of `p`, lowest degree first, without trailing zeros (the zero
      polynomial is the empty tuple). Coefficients are free of `z` and may contain symbols.
    - `base`: the `Base` `B`.
    """

    poly: tuple[sympy.Expr, ...]
    base: Base

    @property
    def degree(self) -> int:
        """Degree of the polynomial part (-1 for the zero polynomial)."""
        return len(self.poly) - 1

    def as_expr(self, z: sympy.Symbol) -> sympy.Expr:
        """The term as a sympy expression in `z`."""
        return _poly_expr(self.poly, z) * self.base.as_expr(z)


@dataclass(frozen=True)
class Activation:
    """An activation classified for the expectation engine.

    **Fields**
    - `expr`: the expression as given.
    - `kind`: `"polynomial"` (incl. constants), `"linear"` (`c z`), `"erf"` (`a erf(k z)`),
      `"relu"` (`a Max(0, z)`), `"step"` (`a Heaviside(z)`), `"delta"` (`a DiracDelta(z)`),
      `"gaussian"` (sums of polynomial × exp(-c z²), e.g. derivatives of erf), `"mixed"` (an exact
      sum of several of these shapes), `"generic"` (anything else: numerical only).
    - `terms`: the decomposition `Σ p_t(z) B_t(z)`, sorted by base.
    """

    expr: sympy.Expr
    kind: str
    terms: tuple[Term, ...]

    @property
    def amplitude(self) -> sympy.Expr:
        """The constant `a` of single-term kinds (`a erf`, `a z`, `a Max(0,z)`, `a exp(..)`)."""
        if len(self.terms) != 1 or not self.terms[0].poly:
            return sympy.S.Zero
        return self.terms[0].poly[-1]

    @property
    def scale(self) -> sympy.Expr | None:
        """`k` for kind `"erf"` (`erf(k z)`; the Saad-Solla σ has `k = 1/√2`), `c` for a single
        `"gaussian"` term `exp(-c z²)`; `None` otherwise."""
        if len(self.terms) == 1 and self.terms[0].base.name in ("erf", "gauss"):
            return self.terms[0].base.param
        return None


class _Unsupported(Exception):
    """Internal: the expression is not a sum of polynomial × known base."""


def _poly_expr(poly: tuple[sympy.Expr, ...], z: sympy.Symbol) -> sympy.Expr:
    return sympy.Add(*[c * z**i for i, c in enumerate(poly)])


def _trim(coeffs: list[sympy.Expr]) -> tuple[sympy.Expr, ...]:
    out = [sympy.expand(c) for c in coeffs]
    while out and out[-1] == 0:
        out.pop()
    return tuple(out)


def poly_add(p: tuple[sympy.Expr, ...], q: tuple[sympy.Expr, ...]) -> tuple[sympy.Expr, ...]:
    """Sum of two coefficient tuples."""
    n = max(len(p), len(q))
    return _trim([(p[i] if i < len(p) else 0) + (q[i] if i < len(q) else 0) for i in range(n)])


def poly_mul(p: tuple[sympy.Expr, ...], q: tuple[sympy.Expr, ...]) -> tuple[sympy.Expr, ...]:
    """Product of two coefficient tuples."""
    if not p or not q:
        return ()
    out: list[sympy.Expr] = [sympy.S.Zero] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return _trim(out)


def poly_diff(p: tuple[sympy.Expr, ...]) -> tuple[sympy.Expr, ...]:
    """Derivative of a coefficient tuple."""
    return _trim([i * c for i, c in enumerate(p)][1:])


def _linear_scale(arg: sympy.Expr, z: sympy.Symbol) -> sympy.Expr:
    """`k` if `arg == k z` with `k` free of `z` and nonzero, else raise."""
    k = arg / z
    if k.has(z):
        k = sympy.cancel(k)
    if k.has(z) or k == 0:
        raise _Unsupported(arg)
    return k


def _factor_terms(f: sympy.Expr, z: sympy.Symbol) -> list[Term]:
    """Decompose one multiplicative factor (free of sums at top level) into terms."""
    if not f.has(z):
        return [Term(_trim([f]), ONE)]
    if f.is_polynomial(z):
        return [Term(_trim(list(reversed(sympy.Poly(f, z).all_coeffs()))), ONE)]
    if isinstance(f, sympy.Pow) and isinstance(f.base, sympy.Heaviside):
        if f.exp.is_Integer and f.exp > 0:
            return _factor_terms(f.base, z)
        raise _Unsupported(f)
    if isinstance(f, sympy.Heaviside):
        k = _linear_scale(f.args[0], z)
        if k.is_positive:
            return [Term((sympy.S.One,), STEP)]
        if k.is_negative:  # Θ(-z) = 1 - Θ(z) almost everywhere
            return [Term((sympy.S.One,), ONE), Term((sympy.S.NegativeOne,), STEP)]
        raise _Unsupported(f)
    if isinstance(f, sympy.DiracDelta):
        if len(f.args) != 1:
            raise _Unsupported(f)
        k = _linear_scale(f.args[0], z)
        return [Term((1 / sympy.Abs(k),), DELTA)]
    if isinstance(f, sympy.erf):
        k = _linear_scale(f.args[0], z)
        if k.is_positive:
            return [Term((sympy.S.One,), Base("erf", k))]
        if k.is_negative:
            return [Term((sympy.S.NegativeOne,), Base("erf", -k))]
        raise _Unsupported(f)
    if isinstance(f, sympy.exp) and f.args[0].is_polynomial(z):
        coeffs = list(reversed(sympy.Poly(f.args[0], z).all_coeffs()))
        if len(coeffs) == 3 and coeffs[1] == 0 and (-coeffs[2]).is_positive:
            return [Term((sympy.exp(coeffs[0]),), Base("gauss", -coeffs[2]))]
    raise _Unsupported(f)


def _combine(a: Term, b: Term) -> Term:
    """Product of two terms (at most one non-trivial base, or equal steps)."""
    poly = poly_mul(a.poly, b.poly)
    if a.base == ONE:
        return Term(poly, b.base)
    if b.base == ONE:
        return Term(poly, a.base)
    if a.base == STEP and b.base == STEP:
        return Term(poly, STEP)
    if a.base.name == "gauss" and b.base.name == "gauss":
        return Term(poly, Base("gauss", a.base.param + b.base.param))
    raise _Unsupported((a, b))


def _rewrite_piecewise_linear(expr: sympy.Expr) -> sympy.Expr:
    """Rewrite Max/Min/Abs/sign (ReLU and friends) in terms of Heaviside, and erfc via erf."""
    targets = (sympy.Max, sympy.Min, sympy.Abs, sympy.sign)
    expr = expr.replace(lambda e: isinstance(e, targets), lambda e: e.rewrite(sympy.Heaviside))
    return expr.replace(lambda e: isinstance(e, sympy.erfc), lambda e: 1 - sympy.erf(*e.args))


def _decompose(expr: sympy.Expr, z: sympy.Symbol) -> tuple[Term, ...]:
    expanded = sympy.expand(_rewrite_piecewise_linear(expr))
    grouped: dict[Base, tuple[sympy.Expr, ...]] = {}
    for add_term in sympy.Add.make_args(expanded):
        partial = [Term((sympy.S.One,), ONE)]
        for f in sympy.Mul.make_args(add_term):
            pieces = _factor_terms(f, z)
            partial = [_combine(t, p) for t in partial for p in pieces]
        for t in partial:
            poly = t.poly[:1] if t.base == DELTA else t.poly  # p(z) δ(z) = p(0) δ(z)
            grouped[t.base] = poly_add(grouped.get(t.base, ()), poly)
    terms = [Term(p, b) for b, p in grouped.items() if p]
    return tuple(sorted(terms, key=lambda t: t.base.sort_key()))


def _kind(terms: tuple[Term, ...]) -> str:
    names = {t.base.name for t in terms}
    if not terms or names == {"one"}:
        if len(terms) == 1 and len(terms[0].poly) == 2 and terms[0].poly[0] == 0:
            return "linear"
        return "polynomial"
    if names == {"gauss"}:
        return "gaussian"
    if len(terms) == 1:
        t = terms[0]
        if t.base.name == "erf" and t.degree == 0:
            return "erf"
        if t.base.name == "step" and t.degree == 0:
            return "step"
        if t.base.name == "step" and t.degree == 1 and t.poly[0] == 0:
            return "relu"
        if t.base.name == "delta" and t.degree == 0:
            return "delta"
    return "mixed"


def classify(expr: sympy.Expr, z: sympy.Symbol) -> Activation:
    """Classify `expr` (a function of `z`) for the Gaussian-expectation engine.

    **Arguments**
    - `expr`: the activation (or a derivative of one), e.g. `erf(z/sqrt(2))`, `Max(0, z)`,
      `z**3 - 3*z`, `sqrt(2/pi)*exp(-z**2/2)`, `tanh(z)`. Constants are allowed.
    - `z`: the real symbol the activation is written in.

    **Returns**
    An `Activation` with its `kind` and exact term decomposition. Anything the engine cannot
    treat exactly becomes a single `generic` term holding the expression verbatim.
    """
    expr = sympy.sympify(expr)
    try:
        terms = _decompose(expr, z)
    except _Unsupported:
        return Activation(expr, "generic", (Term((sympy.S.One,), Base("generic", expr)),))
    return Activation(expr, _kind(terms), terms)


def derivative(expr: sympy.Expr, z: sympy.Symbol, order: int = 1) -> sympy.Expr:
    """`order`-th derivative of an activation, with ReLU-like pieces written via Heaviside.

    **Arguments**
    - `expr`, `z`: the activation and its variable.
    - `order`: how many derivatives (0 returns the rewritten expression).

    **Returns**
    A sympy expression: `Max(0, z)` → `Heaviside(z)` → `DiracDelta(z)`; `erf(z/√2)` →
    `√(2/π) exp(-z²/2)`; anything else as `sympy.diff` gives it.
    """
    out = _rewrite_piecewise_linear(sympy.sympify(expr))
    for _ in range(order):  # collapse after each step: z δ(z) = 0 before it can become z δ'(z)
        out = _collapse_deltas(sympy.diff(out, z), z)
    return out


def _collapse_deltas(expr: sympy.Expr, z: sympy.Symbol) -> sympy.Expr:
    """Use `g(z) δ(z) = g(0) δ(z)` term by term (so `d/dz [z Θ(z)]` is `Θ(z)`, not
    `Θ(z) + z δ(z)`)."""
    if not expr.has(sympy.DiracDelta):
        return expr
    out = []
    for term in sympy.Add.make_args(sympy.expand(expr)):
        factors = sympy.Mul.make_args(term)
        deltas = [f for f in factors if isinstance(f, sympy.DiracDelta)]
        if len(deltas) == 1 and len(deltas[0].args) == 1 and deltas[0].args[0].is_polynomial(z):
            arg = deltas[0].args[0]
            if sympy.degree(arg, z) == 1 and arg.subs(z, 0) == 0:
                rest = sympy.Mul(*[f for f in factors if f is not deltas[0]])
                term = rest.subs(z, 0) * deltas[0]
        out.append(term)
    return sympy.Add(*out)


def term_derivative(term: Term, z: sympy.Symbol) -> tuple[Term, ...]:
    """d/dz of one term, as a tuple of terms (product rule: `p' B + p B'`).

    **Arguments**
    - `term`: the term to differentiate. `delta` bases are not supported (the engine removes
      them by conditioning before it differentiates anything).
    - `z`: the variable (only used for `generic` bases).

    **Returns**
    The nonzero terms of the derivative.
    """
    p, b = term.poly, term.base
    out = [Term(poly_diff(p), b)]
    if b.name == "gauss":
        out.append(Term(poly_mul(p, (sympy.S.Zero, -2 * b.param)), b))
    elif b.name == "erf":
        slope = 2 * b.param / sympy.sqrt(sympy.pi)
        out.append(Term(poly_mul(p, (slope,)), Base("gauss", b.param**2)))
    elif b.name == "step":
        out.append(Term(p, DELTA))
    elif b.name == "delta":
        raise ValueError("derivatives of DiracDelta are not supported")
    elif b.name == "generic":
        out.append(Term(p, Base("generic", sympy.diff(b.param, z))))
    merged: dict[Base, tuple[sympy.Expr, ...]] = {}
    for t in out:
        merged[t.base] = poly_add(merged.get(t.base, ()), t.poly)
    return tuple(Term(q, bb) for bb, q in merged.items() if q)


def terms_to_expr(terms: tuple[Term, ...], z: sympy.Symbol) -> sympy.Expr:
    """Rebuild a sympy expression from a term decomposition (for display and tests)."""
    return sympy.Add(*[t.as_expr(z) for t in terms])
