"""Fast, accurate elementary functions for generated code.

XLA's CPU `arcsin` is about ten times slower than numpy's, and the I4 variance term evaluates
p²(p+k)² of them per right-hand side. `arcsin` here uses only multiply-adds, one square root
and selects, which XLA vectorises and fuses with the surrounding arithmetic.

Method: for |x| ≤ 1/2, asin(t) = t · R(t²) where R is a degree-12 polynomial fitted (least
squares at Chebyshev nodes of [0, 1/4]) to the exact Maclaurin series Σ_n (2n)!/(4ⁿ(n!)²(2n+1))
uⁿ, summed exactly in rationals; R is evaluated in two interleaved halves (even/odd powers) to
shorten the dependency chain. For |x| > 1/2, asin(x) = π/2 − 2 asin(√((1 − x)/2)), whose
argument is again ≤ 1/2. Absolute error ≤ 6·10⁻¹⁶ on [−1, 1] (tested against numpy).

`gram_sqrt(a, b, c)` = √(ab − c²) and `corr_arcsin(a, b, c)` = arcsin(c/√(ab)) are the two
non-smooth pieces of the ReLU closed forms, with values and derivatives that stay exact where
the 2 × 2 covariance block is singular (a unit paired with itself); see their comment below.
"""

from __future__ import annotations

from fractions import Fraction
from math import factorial

import jax
import jax.numpy as jnp
import numpy as np


def _series(u: float, n_terms: int = 60) -> float:
    """asin(t)/t at u = t², from the Maclaurin series summed in exact rationals."""
    uf = Fraction(u)
    total = Fraction(0)
    for n in range(n_terms):
        total += Fraction(factorial(2 * n), 4**n * factorial(n) ** 2 * (2 * n + 1)) * uf**n
    return float(total)


def _fit(degree: int = 12) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Monomial coefficients in u of R(u) ≈ asin(√u)/√u on [0, 1/4], split even/odd."""
    k = np.arange(4 * degree)
    nodes = 0.125 * (1 - np.cos(np.pi * (k + 0.5) / (4 * degree)))
    values = np.array([_series(float(u)) for u in nodes])
    cheb = np.polynomial.Chebyshev.fit(nodes, values, degree, domain=[0.0, 0.25])
    coeffs = cheb.convert(kind=np.polynomial.Polynomial, domain=[0.0, 0.25],
                          window=[0.0, 0.25]).coef
    return tuple(float(c) for c in coeffs[0::2]), tuple(float(c) for c in coeffs[1::2])


# The coefficients `_fit()` returns, written out so that importing this module (on every solve)
# does not repeat the 0.1 s of exact-rational series sums; tests/test_special.py checks that they
# are still what `_fit()` gives.
_EVEN = (1.0000000000000007, 0.07500000002683747, 0.030382005124262913, 0.017372168317289688,
         0.012826194106469591, 0.026103012563732285, 0.03804397379182001)
_ODD = (0.16666666666646127, 0.044642855444743376, 0.022370817877346492, 0.013774959066772686,
        0.00392505169681265, -0.025805974048212707)


def _horner(coeffs: tuple[float, ...], v: jnp.ndarray) -> jnp.ndarray:
    acc = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = acc * v + c
    return acc


def arcsin(x: jnp.ndarray) -> jnp.ndarray:
    """asin(x) for x in [−1, 1] (values outside are clipped), float64-accurate."""
    x = jnp.clip(x, -1.0, 1.0)
    ax = jnp.abs(x)
    big = ax > 0.5
    t = jnp.where(big, jnp.sqrt(0.5 * (1.0 - ax)), ax)
    u = t * t
    u2 = u * u
    s = t * (_horner(_EVEN, u2) + u * _horner(_ODD, u2))
    r = jnp.where(big, jnp.pi / 2 - 2.0 * s, s)
    return jnp.where(x < 0, -r, r)


# -- square roots of 2 × 2 Gram determinants (ReLU closed forms) ------------------------------
# The ReLU integrals (Cho & Saul 2009) contain √(C11 C22 − C12²) and arcsin(C12/√(C11 C22)).
# The generated code evaluates them over every pair of units, including a unit with itself,
# where C11 = C12 = C22 and the determinant vanishes identically. There plain code goes wrong
# twice: the determinant comes out as ±1e-16 C11² (fused multiply-adds), whose square root is a
# spurious 1e-8 C11 (and arcsin(1 − 2⁻⁵²) a spurious π/2 − 2e-8), and the derivative is 0/0.
# `gram_sqrt` and `corr_arcsin` snap a determinant below round-off to zero and carry their own
# derivative (jax.custom_jvp, linear in the tangents, so reverse mode works too): the usual one
# where the determinant is positive and 0 where it is zero. That is exact for a unit with
# itself, where both functions are constant. For two *distinct* units with correlation ±1 each
# function alone has infinite slope, but in the ReLU integrals their singular parts cancel
# (the integrals go as δ^{3/2} there), and dropping them is what gives the integrals' true
# derivative. The analysis does not take that on trust: at such points it checks the
# Jacobian against one-sided difference quotients (`has_branch_points`,
# eqgen.analysis.system).
GRAM_TOL = 4 * float(np.finfo(np.float64).eps)  # det ≤ GRAM_TOL · |C11 C22|: round-off, 0


def _gram(a: jnp.ndarray, b: jnp.ndarray, c: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(C11 C22 − C12², regular): regular where the determinant is above round-off."""
    det = a * b - c**2
    return det, det > GRAM_TOL * jnp.abs(a * b)


@jax.custom_jvp
def gram_sqrt(a: jnp.ndarray, b: jnp.ndarray, c: jnp.ndarray) -> jnp.ndarray:
    """√(ab − c²) for a covariance block [[a, c], [c, b]]; exactly 0 where ab − c² is below
    round-off (a unit with itself). Derivative: see the comment above."""
    det, regular = _gram(a, b, c)
    return jnp.where(regular, jnp.sqrt(jnp.where(regular, det, 1.0)), 0.0)


@gram_sqrt.defjvp
def _gram_sqrt_jvp(primals: tuple, tangents: tuple) -> tuple[jnp.ndarray, jnp.ndarray]:
    # d√(ab − c²) = (a db + b da − 2c dc) / (2√(ab − c²)); 0 where the block is singular
    a, b, c = primals
    da, db, dc = tangents
    root = gram_sqrt(a, b, c)
    _, regular = _gram(a, b, c)
    scale = jnp.where(regular, 0.5 / jnp.where(regular, root, 1.0), 0.0)
    return root, (a * db + b * da - 2 * c * dc) * scale


@jax.custom_jvp
def corr_arcsin(a: jnp.ndarray, b: jnp.ndarray, c: jnp.ndarray) -> jnp.ndarray:
    """arcsin(c/√(ab)), the angle of a covariance block [[a, c], [c, b]]; exactly ±π/2 where
    ab − c² is below round-off (a unit with itself). Derivative: see the comment above."""
    _, regular = _gram(a, b, c)
    return jnp.where(regular, arcsin(c / (jnp.sqrt(a) * jnp.sqrt(b))),
                     jnp.sign(c) * (jnp.pi / 2))


@corr_arcsin.defjvp
def _corr_arcsin_jvp(primals: tuple, tangents: tuple) -> tuple[jnp.ndarray, jnp.ndarray]:
    # d arcsin(c/√(ab)) = [dc − (c/2)(da/a + db/b)] / √(ab − c²); 0 where the block is singular
    a, b, c = primals
    da, db, dc = tangents
    _, regular = _gram(a, b, c)
    scale = jnp.where(regular, 1.0 / jnp.where(regular, gram_sqrt(a, b, c), 1.0), 0.0)
    return corr_arcsin(a, b, c), (dc - 0.5 * c * (da / a + db / b)) * scale


def has_branch_points(module: object) -> bool:
    """Whether a generated module evaluates `gram_sqrt` or `corr_arcsin` (ReLU closed forms):
    where two distinct units are aligned its field is then at best once differentiable."""
    return any(getattr(module, name, None) is fn
               for name, fn in (("gram_sqrt", gram_sqrt), ("corr_arcsin", corr_arcsin)))
