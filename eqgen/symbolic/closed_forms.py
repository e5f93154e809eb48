"""Literature closed forms for the Gaussian integrals of two-layer-network ODEs (docs/numerics.md,
The expectation engine).

Every function takes the covariance matrix `C` of the fields *in the order the integral writes
them* (a sympy matrix, entries symbols or numbers) and returns a sympy expression in its entries.
Indices in the docstrings are 1-based as in docs/theory.md; `C[0, 1]` is `C12`.

Notation: `σ(x) = erf(x/√2)`, `σ'(x) = √(2/π) exp(-x²/2)`; `relu(x) = max(0, x)`,
`relu'(x) = Θ(x)` (Heaviside).

References:
- D. Saad and S. A. Solla, *On-line learning in soft committee machines*, Phys. Rev. E 52, 4225
  (1995) — erf I2, I3, I4.
- S. Goldt, M. S. Advani, A. M. Saxe, F. Krzakala, L. Zdeborová, *Dynamics of stochastic gradient
  descent for two-layer neural networks in the teacher-student setup*, NeurIPS 2019 — the same
  integrals in the (Q, M, P) notation used here, J2 and the Λ form of I4.
- Y. Cho and L. K. Saul, *Kernel methods for deep learning*, NeurIPS 2009 — arc-cosine kernels of
  degree 0 (`E[Θ Θ]`) and 1 (`E[relu relu]`); the ReLU I3 follows from them by Stein's lemma.
"""

from __future__ import annotations

import sympy

__all__ = [
    "erf_i2",
    "erf_i3",
    "erf_i4",
    "erf_j2",
    "erf_linear_i2",
    "erf_linear_i3",
    "erf_linear_i4",
    "linear_i2",
    "relu_i2",
    "relu_i3",
    "relu_j2",
    "relu_linear_i2",
    "relu_linear_i3",
]

_pi = sympy.pi


def erf_i2(c: sympy.Matrix) -> sympy.Expr:
    """`E[σ(h1) σ(h2)] = (2/π) arcsin(C12 / √((1+C11)(1+C22)))` (Saad & Solla 1995)."""
    return 2 / _pi * sympy.asin(c[0, 1] / sympy.sqrt((1 + c[0, 0]) * (1 + c[1, 1])))


def erf_j2(c: sympy.Matrix) -> sympy.Expr:
    """`E[σ'(h1) σ'(h2)] = (2/π) / √((1+C11)(1+C22) − C12²)` (Goldt et al. 2019)."""
    return 2 / _pi / sympy.sqrt((1 + c[0, 0]) * (1 + c[1, 1]) - c[0, 1] ** 2)


def erf_i3(c: sympy.Matrix) -> sympy.Expr:
    """`E[σ'(h1) h2 σ(h3)]` (Saad & Solla 1995):

    `(2/π) [C23 (1+C11) − C12 C13] / [(1+C11) √((1+C11)(1+C33) − C13²)]`.
    """
    num = c[1, 2] * (1 + c[0, 0]) - c[0, 1] * c[0, 2]
    root = sympy.sqrt((1 + c[0, 0]) * (1 + c[2, 2]) - c[0, 2] ** 2)
    return 2 / _pi * num / ((1 + c[0, 0]) * root)


def _lambdas(c: sympy.Matrix) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr, sympy.Expr]:
    """`(Λ4, Λ0, Λ1, Λ2)` of docs/numerics.md, The expectation engine for the I4 family (0-based
    entries)."""
    c11, c12, c22 = c[0, 0], c[0, 1], c[1, 1]
    lam4 = (1 + c11) * (1 + c22) - c12**2

    def lam_diag(k: int) -> sympy.Expr:
        c1k, c2k = c[0, k], c[1, k]
        return lam4 * (1 + c[k, k]) - c2k**2 * (1 + c11) - c1k**2 * (1 + c22) + 2 * c12 * c1k * c2k

    lam0 = (
        lam4 * c[2, 3]
        - c[1, 2] * c[1, 3] * (1 + c11)
        - c[0, 2] * c[0, 3] * (1 + c22)
        + c12 * c[0, 2] * c[1, 3]
        + c12 * c[0, 3] * c[1, 2]
    )
    return lam4, lam0, lam_diag(2), lam_diag(3)


def erf_i4(c: sympy.Matrix) -> sympy.Expr:
    """`E[σ'(h1) σ'(h2) σ(h3) σ(h4)] = 4 / (π² √Λ4) · arcsin(Λ0 / √(Λ1 Λ2))`
    (Saad & Solla 1995; Λ notation of Goldt et al. 2019, see docs/numerics.md, The expectation
    engine)."""
    lam4, lam0, lam1, lam2 = _lambdas(c)
    return 4 / (_pi**2 * sympy.sqrt(lam4)) * sympy.asin(lam0 / sympy.sqrt(lam1 * lam2))


def linear_i2(c: sympy.Matrix) -> sympy.Expr:
    """`E[h1 h2] = C12` (linear activations)."""
    return c[0, 1]


def erf_linear_i2(c: sympy.Matrix) -> sympy.Expr:
    """`E[σ(h1) h2] = √(2/π) C12 / √(1+C11)` (erf student, linear teacher; Stein's lemma)."""
    return sympy.sqrt(2 / _pi) * c[0, 1] / sympy.sqrt(1 + c[0, 0])


def erf_linear_i3(c: sympy.Matrix) -> sympy.Expr:
    """`E[σ'(h1) h2 h3] = √(2/π) [C23 (1+C11) − C12 C13] / (1+C11)^{3/2}` (erf student, linear
    teacher: the Gaussian tilt of Saad & Solla 1995 applied to `E[h2 h3]`)."""
    num = c[1, 2] * (1 + c[0, 0]) - c[0, 1] * c[0, 2]
    return sympy.sqrt(2 / _pi) * num / (1 + c[0, 0]) ** sympy.Rational(3, 2)


def erf_linear_i4(c: sympy.Matrix) -> sympy.Expr:
    """`E[σ'(h1) σ'(h2) h3 h4] = (2/π) Λ0 / Λ4^{3/2}` (linear teacher; Λ as in `erf_i4`)."""
    lam4, lam0, _, _ = _lambdas(c)
    return 2 / _pi * lam0 / lam4 ** sympy.Rational(3, 2)


def relu_i2(c: sympy.Matrix) -> sympy.Expr:
    """`E[relu(h1) relu(h2)] = (1/2π) [√(C11 C22 − C12²) + C12 (π/2 + arcsin ρ)]`,
    `ρ = C12/√(C11 C22)` (arc-cosine kernel of degree 1, Cho & Saul 2009)."""
    rho = c[0, 1] / sympy.sqrt(c[0, 0] * c[1, 1])
    root = sympy.sqrt(c[0, 0] * c[1, 1] - c[0, 1] ** 2)
    return (root + c[0, 1] * (_pi / 2 + sympy.asin(rho))) / (2 * _pi)


def relu_j2(c: sympy.Matrix) -> sympy.Expr:
    """`E[Θ(h1) Θ(h2)] = 1/4 + arcsin(ρ)/(2π)` (arc-cosine kernel of degree 0, Cho & Saul
    2009)."""
    return sympy.Rational(1, 4) + sympy.asin(c[0, 1] / sympy.sqrt(c[0, 0] * c[1, 1])) / (2 * _pi)


def relu_i3(c: sympy.Matrix) -> sympy.Expr:
    """`E[Θ(h1) h2 relu(h3)]` (Stein's lemma on the Cho & Saul 2009 kernels):

    `C12 √(C11 C33 − C13²) / (2π C11) + (C23/2π) arcsin(C13/√(C11 C33)) + C23/4`.
    """
    c11, c12, c13, c23, c33 = c[0, 0], c[0, 1], c[0, 2], c[1, 2], c[2, 2]
    return (
        c12 * sympy.sqrt(c11 * c33 - c13**2) / (2 * _pi * c11)
        + c23 / (2 * _pi) * sympy.asin(c13 / sympy.sqrt(c11 * c33))
        + c23 / 4
    )


def relu_linear_i2(c: sympy.Matrix) -> sympy.Expr:
    """`E[relu(h1) h2] = C12 / 2` (ReLU student, linear teacher)."""
    return c[0, 1] / 2


def relu_linear_i3(c: sympy.Matrix) -> sympy.Expr:
    """`E[Θ(h1) h2 h3] = C23 / 2` (ReLU student, linear teacher)."""
    return c[1, 2] / 2
