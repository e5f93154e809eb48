"""I3 split by Stein's lemma into two functions of a 2-D covariance.

In I3(1, 2, 3) = E[σ'(h1) h2 φ(h3)] the middle field enters linearly, so

    I3 = C12 · A(C11, C13, C33) + C23 · B(C11, C13, C33),
    A = E[σ''(h1) φ(h3)] = ∂I3/∂C12,     B = E[σ'(h1) φ'(h3)] = ∂I3/∂C23.

The full ODE uses this to sum Σ_c u_c I3(j, β, c) as two matrix products over functions of
(j, c) only (p(p+k) evaluations instead of p(p+k)²); the mean-field reduction is built on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from eqgen.theories.committee import Integral


@dataclass(frozen=True)
class LinearI3:
    """I3 of one unit class split by Stein's lemma: I3 = C12 · curvature + C23 · slope, both
    functions of (C11, C13, C33) only. `curvature`/`slope` are sympy expressions in those
    symbols, or None when they are the parts of a Stein-reduced integral (`integral.parts`)."""

    integral: Integral
    curvature: sp.Expr | None
    slope: sp.Expr | None

    @property
    def cls(self) -> str:
        return self.integral.classes[0]

def split_i3(it: Integral, numerical_parts: bool = False) -> LinearI3 | None:
    """The (∂I3/∂C12, ∂I3/∂C23) split of an I3, checked exact; None when it has no exact form.

    A Stein-reduced integral (`integral.parts`) is split by construction; when its parts are
    evaluated by quadrature it counts only with `numerical_parts`.

    A closed form must be linear in C12 and C23 jointly (no constant, no C12·C23 term) and free
    of C22: that is Stein's lemma, and it is verified symbolically here, not assumed.
    """
    if it.parts is not None:
        return LinearI3(it, None, None) if it.exact or numerical_parts else None
    if it.expr is None:
        return None
    sym = {str(a): a for a in it.args}
    c12, c22, c23 = sym["C12"], sym["C22"], sym["C23"]
    e = sp.expand(it.expr)
    curvature, slope = sp.diff(e, c12), sp.diff(e, c23)
    rest = sp.simplify(e - c12 * curvature - c23 * slope)
    ok = (rest == 0 and c22 not in it.expr.free_symbols
          and not ({c12, c23} & (curvature.free_symbols | slope.free_symbols)))
    if not ok:
        return None
    return LinearI3(it, sp.simplify(sp.diff(it.expr, c12)), sp.simplify(sp.diff(it.expr, c23)))
