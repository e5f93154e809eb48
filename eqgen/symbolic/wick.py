"""Exact Gaussian algebra with a symbolic covariance: Wick moments, tilts, conditioning.

These are the primitives of the expectation engine. Fields `h ~ N(0, C)` with `C` a sympy matrix
whose entries are symbols or numbers; everything returned is an exact sympy expression.

- **Wick / Isserlis.** `E[∏ h_i^{n_i}]` is the sum over pairings of the product of covariances,
  computed by the recursion `E[h_a X] = Σ_j C_aj E[∂X/∂h_j]` on exponent tuples (memoised).
- **Gaussian tilt.** A factor `exp(-c_i h_i²)` multiplies the density by a Gaussian, so
  `E_C[∏_{i∈G} exp(-c_i h_i²) F(h)] = det(I + A C_GG)^{-1/2} E_{C'}[F(h)]` with `A = diag(2 c_i)`
  and `C' = C − C_{:,G} (I + A C_GG)^{-1} A C_{G,:}` (for `c = ½`: `(I + C_GG)^{-1}`).
- **Conditioning at zero.** `E[δ(h_s) F(h)] = (2π C_ss)^{-1/2} E[F(h) | h_s = 0]`, and given
  `h_s = 0` the other fields are centred with covariance `C − C_{:,s} C_{s,:} / C_ss`.
- **Conditional decomposition** for one non-polynomial factor `F(h_s)`: write
  `h_j = (C_js/C_ss) h_s + ε_j` with `ε ⟂ h_s`, expand, and reduce to 1-D moments
  `E[h_s^m F(h_s)]`; for `F = erf(k h)` these follow from Stein's recursion
  `E[h^m F] = v [(m−1) E[h^{m−2} F] + E[h^{m−1} F']]` (`E[F] = 0` since `F` is odd).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import sympy

__all__ = [
    "condition_at_zero",
    "conditional_expectation",
    "erf_moment",
    "gaussian_tilt",
    "polynomial_expectation",
    "wick_moment",
]

Poly = tuple[sympy.Expr, ...]  # coefficients, lowest degree first


def _imm(cov: sympy.Matrix) -> sympy.ImmutableMatrix:
    return sympy.ImmutableMatrix(cov)


def _is_plain(cov: sympy.ImmutableMatrix) -> bool:
    """Entries are symbols, indexed symbols or numbers (not yet tilted or conditioned)."""
    return all(e.is_Atom or isinstance(e, sympy.Indexed) for e in cov)


def wick_moment(exponents: Sequence[int], cov: sympy.Matrix) -> sympy.Expr:
    """`E[∏_i h_i^{n_i}]` for `h ~ N(0, cov)`, exactly (Isserlis' theorem).

    **Arguments**
    - `exponents`: the powers `n_i`, one per field (length = size of `cov`).
    - `cov`: symmetric covariance (symbols or numbers).

    **Returns**
    The moment as a sympy expression (0 when the total degree is odd).
    """
    cov = _imm(cov)
    memo: dict[tuple[int, ...], sympy.Expr] = {}

    def rec(n: tuple[int, ...]) -> sympy.Expr:
        if sum(n) % 2:
            return sympy.S.Zero
        if not any(n):
            return sympy.S.One
        if n in memo:
            return memo[n]
        a = next(i for i, k in enumerate(n) if k)
        rest = list(n)
        rest[a] -= 1
        total = sympy.S.Zero
        for j, k in enumerate(rest):
            if k and cov[a, j] != 0:
                lower = list(rest)
                lower[j] -= 1
                total += k * cov[a, j] * rec(tuple(lower))
        memo[n] = total
        return total

    return rec(tuple(int(k) for k in exponents))


def polynomial_expectation(polys: Sequence[Poly], cov: sympy.Matrix) -> sympy.Expr:
    """`E[∏_i p_i(h_i)]` for polynomials `p_i` given by coefficient tuples (Wick, exact).

    **Arguments**
    - `polys`: one coefficient tuple per field (lowest degree first).
    - `cov`: the covariance of the fields.

    **Returns**
    The expectation, a polynomial in the entries of `cov`.
    """
    supports = [[(k, c) for k, c in enumerate(p) if c != 0] for p in polys]
    total = sympy.S.Zero
    for choice in itertools.product(*supports):
        coeff = sympy.Mul(*[c for _, c in choice])
        total += coeff * wick_moment([k for k, _ in choice], cov)
    return total


def gaussian_tilt(
    cov: sympy.Matrix, fields: Sequence[int], rates: Sequence[sympy.Expr]
) -> tuple[sympy.Expr, sympy.ImmutableMatrix]:
    """Absorb the factors `exp(-rates[g] h_{fields[g]}²)` into the Gaussian measure.

    **Arguments**
    - `cov`: covariance of all fields.
    - `fields`: indices `G` of the tilted fields.
    - `rates`: the positive rates `c_g` (½ for the derivative of `erf(z/√2)`).

    **Returns**
    `(prefactor, tilted_cov)` with `prefactor = det(I + A C_GG)^{-1/2}` and the tilted
    covariance `C'` of *all* fields (the tilted ones stay, with shrunk variance), such that
    `E_C[∏ exp(-c_g h_g²) F] = prefactor · E_{C'}[F]`.
    """
    cov = _imm(cov)
    n = cov.shape[0]
    g = list(fields)
    # Normalise to single fractions only when the entries are atoms (symbols, numbers): on an
    # already-tilted covariance `together`/`cancel` cost seconds and gain little.
    tidy = _is_plain(cov)
    a_mat = sympy.diag(*[2 * c for c in rates])
    m = sympy.eye(len(g)) + a_mat * cov.extract(g, g)
    det = m.det(method="berkowitz")
    det = sympy.cancel(det) if tidy else det
    inner = m.adjugate(method="berkowitz") * a_mat  # = det · (I + A C_GG)^{-1} A
    cross = cov.extract(list(range(n)), g)
    corr = cross * inner * cross.T
    new = sympy.zeros(n, n)
    for i in range(n):
        for j in range(i, n):
            if tidy:
                entry = sympy.together(cov[i, j] - sympy.expand(corr[i, j]) / det)
            else:
                entry = cov[i, j] - corr[i, j] / det
            new[i, j] = new[j, i] = entry
    return 1 / sympy.sqrt(det), sympy.ImmutableMatrix(new)


def condition_at_zero(cov: sympy.Matrix, s: int) -> tuple[sympy.Expr, sympy.ImmutableMatrix]:
    """Condition on `h_s = 0`: the Dirac delta `δ(h_s)` integrated out.

    **Arguments**
    - `cov`: covariance of all fields.
    - `s`: the conditioned field.

    **Returns**
    `(density, cond_cov)`: the density of `h_s` at 0, `(2π C_ss)^{-1/2}`, and the conditional
    covariance of the *other* fields (field `s` removed), so that
    `E[δ(h_s) F(h_{-s})] = density · E_{cond_cov}[F]`.
    """
    cov = _imm(cov)
    n = cov.shape[0]
    rest = [i for i in range(n) if i != s]
    css = cov[s, s]
    tidy = _is_plain(cov)
    new = sympy.zeros(n - 1, n - 1)
    for a, i in enumerate(rest):
        for b in range(a, n - 1):
            j = rest[b]
            entry = cov[i, j] - cov[i, s] * cov[s, j] / css
            new[a, b] = new[b, a] = sympy.together(entry) if tidy else entry
    return 1 / sympy.sqrt(2 * sympy.pi * css), sympy.ImmutableMatrix(new)


def erf_moment(m: int, var: sympy.Expr, k: sympy.Expr) -> sympy.Expr:
    """`E[h^m erf(k h)]` for `h ~ N(0, var)`, by Stein's recursion.

    `E[h^m F] = var [(m−1) E[h^{m−2} F] + E[h^{m−1} F']]` with `F' = (2k/√π) exp(-k² h²)`, whose
    moments follow from the 1-D tilt. `E[F] = 0` because `erf` is odd.

    **Arguments**
    - `m`: the power of `h` (≥ 0).
    - `var`: the variance of `h`.
    - `k`: the scale inside `erf` (`1/√2` for the Saad-Solla activation).

    **Returns**
    The exact moment (0 for even `m`).
    """
    if m % 2 == 0:
        return sympy.S.Zero
    tilt = 1 + 2 * k**2 * var
    tilted_var = var / tilt
    gauss_moment = 2 * k / sympy.sqrt(sympy.pi) / sympy.sqrt(tilt)
    gauss_moment *= sympy.factorial2(m - 2) * tilted_var ** ((m - 1) // 2) if m > 1 else 1
    lower = (m - 1) * erf_moment(m - 2, var, k) if m > 1 else sympy.S.Zero
    return var * (lower + gauss_moment)


def conditional_expectation(
    polys: Sequence[Poly],
    s: int,
    moment: Callable[[int, sympy.Expr], sympy.Expr],
    cov: sympy.Matrix,
) -> sympy.Expr:
    """`E[F(h_s) ∏_i p_i(h_i)]` for one non-polynomial factor `F`, by conditioning on `h_s`.

    The other fields are split as `h_j = β_j h_s + ε_j` (`β_j = C_js/C_ss`, `ε` independent of
    `h_s` with covariance `C − C_{:,s} C_{s,:}/C_ss`), the polynomial is expanded in `h_s` and
    `ε`, `ε`-moments are taken by Wick and `h_s`-moments by `moment`.

    **Arguments**
    - `polys`: one coefficient tuple per field (`polys[s]` multiplies `F`).
    - `s`: the field carrying `F`.
    - `moment`: `moment(m, var)` = `E[h^m F(h)]` for `h ~ N(0, var)`, e.g.
      `lambda m, v: erf_moment(m, v, 1/sqrt(2))`.
    - `cov`: covariance of all fields.

    **Returns**
    The exact expectation.
    """
    cov = _imm(cov)
    n = cov.shape[0]
    rest = [i for i in range(n) if i != s]
    css = cov[s, s]
    hs = sympy.Dummy("hs")
    eps = [sympy.Dummy(f"eps{i}") for i in rest]
    prod = sympy.Add(*[c * hs**k for k, c in enumerate(polys[s])])
    for e, i in zip(eps, rest, strict=True):
        field = cov[i, s] / css * hs + e
        prod *= sympy.Add(*[c * field**k for k, c in enumerate(polys[i])])
    _, cond_cov = condition_at_zero(cov, s)
    total = sympy.S.Zero
    expanded = sympy.Poly(sympy.expand(prod), hs, *eps)
    for powers, coeff in sorted(expanded.terms()):
        total += coeff * moment(powers[0], css) * wick_moment(powers[1:], cond_cov)
    return total
