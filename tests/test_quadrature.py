"""Gauss-Hermite quadrature of Gaussian expectations (eqgen.runtime.quadrature)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from jax.scipy.special import erf

from eqgen.runtime import quadrature
from eqgen.runtime.quadrature import (
    gauss_hermite_nodes,
    gaussian_expectation,
    gaussian_product_expectation,
    psd_cholesky,
    symmetric_sqrt,
)
from eqgen.symbolic import closed_forms as cf
from eqgen.symbolic.wick import wick_moment

jax.config.update("jax_enable_x64", True)

SQRT2 = np.sqrt(2.0)


def random_cov(seed: int, n: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n, n + 2))
    return a @ a.T / (n + 2) + 0.05 * np.eye(n)


def sigma(h: jax.Array) -> jax.Array:
    return erf(h / SQRT2)


def dsigma(h: jax.Array) -> jax.Array:
    return jnp.sqrt(2 / jnp.pi) * jnp.exp(-(h**2) / 2)


def closed(formula: Callable[[sp.Matrix], sp.Expr], omega: np.ndarray) -> float:
    """A closed form of `eqgen.symbolic.closed_forms` evaluated at a numeric covariance."""
    return float(formula(sp.Matrix(omega)))


def test_nodes_are_a_probability_rule() -> None:
    nodes, weights = gauss_hermite_nodes(3, 5)
    assert nodes.shape == (125, 3) and weights.shape == (125,)
    assert weights.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.all(weights > 0)
    x, w = gauss_hermite_nodes(1, 5)
    moments = [float(np.sum(w * x[:, 0] ** k)) for k in range(10)]
    assert moments == pytest.approx([1, 0, 1, 0, 3, 0, 15, 0, 105, 0], abs=1e-11)
    with pytest.raises(ValueError):
        gauss_hermite_nodes(0, 5)


@pytest.mark.parametrize("exponents", [(2, 2, 2), (4, 2, 0), (1, 3, 2), (3, 3, 1)])
def test_exact_for_polynomials_below_twice_the_order(exponents: tuple[int, ...]) -> None:
    omega = random_cov(0, 3)
    exact = float(wick_moment(exponents, sp.Matrix(omega)))
    powers = jnp.asarray(exponents)

    def monomial(h: jax.Array) -> jax.Array:
        return jnp.prod(h**powers, axis=-1)

    degree = sum(exponents)
    order = (degree + 2) // 2  # smallest order with 2·order − 1 ≥ degree
    assert float(gaussian_expectation(monomial, omega, order=order)) == pytest.approx(
        exact, abs=1e-12
    )
    if degree % 2 == 0:  # one order lower is not exact any more (odd moments vanish anyway)
        assert abs(float(gaussian_expectation(monomial, omega, order=order - 1)) - exact) > 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_erf_closed_forms_to_1e8(seed: int) -> None:
    omega = random_cov(seed, 3)
    pair = omega[:2, :2]
    i2 = gaussian_expectation(lambda h: sigma(h[..., 0]) * sigma(h[..., 1]), pair, order=30)
    j2 = gaussian_expectation(lambda h: dsigma(h[..., 0]) * dsigma(h[..., 1]), pair, order=30)
    assert float(i2) == pytest.approx(closed(cf.erf_i2, pair), abs=1e-8)
    assert float(j2) == pytest.approx(closed(cf.erf_j2, pair), abs=1e-8)
    i3 = gaussian_expectation(
        lambda h: dsigma(h[..., 0]) * h[..., 1] * sigma(h[..., 2]), omega, order=30, chunk=4096
    )
    assert float(i3) == pytest.approx(closed(cf.erf_i3, omega), abs=1e-8)


def test_singular_covariance() -> None:
    """Q = M = P: the student has learnt the teacher; the covariance has rank one."""
    q = 0.8
    rank_one = np.full((2, 2), q)
    i2 = gaussian_expectation(lambda h: sigma(h[..., 0]) * sigma(h[..., 1]), rank_one, order=30)
    assert float(i2) == pytest.approx(2 / np.pi * np.arcsin(q / (1 + q)), abs=1e-10)
    block = np.full((4, 4), q)
    i4 = gaussian_expectation(
        lambda h: dsigma(h[..., 0]) * dsigma(h[..., 1]) * sigma(h[..., 2]) * sigma(h[..., 3]),
        block,
        order=16,
    )
    assert np.isfinite(float(i4))
    assert float(i4) == pytest.approx(closed(cf.erf_i4, block), abs=1e-9)
    root = symmetric_sqrt(jnp.asarray(block))
    assert np.allclose(root @ root, block, atol=1e-12)


def test_jit_batch_and_chunk() -> None:
    covs = jnp.stack([jnp.asarray(random_cov(s, 2)) for s in range(5)])

    def i2(c: jax.Array) -> jax.Array:
        return gaussian_expectation(lambda h: sigma(h[..., 0]) * sigma(h[..., 1]), c, order=24)

    batched = jax.jit(i2)(covs)
    assert batched.shape == (5,) and batched.dtype == jnp.float64
    for k in range(5):
        assert float(batched[k]) == pytest.approx(closed(cf.erf_i2, np.asarray(covs[k])), abs=1e-6)
    chunked = jax.jit(
        lambda c: gaussian_expectation(
            lambda h: sigma(h[..., 0]) * sigma(h[..., 1]), c, order=24, chunk=37
        )
    )(covs)
    assert np.allclose(chunked, batched, atol=1e-14, rtol=0)


def test_float32_is_preserved() -> None:
    cov = jnp.asarray(random_cov(0, 2), dtype=jnp.float32)
    out = gaussian_expectation(lambda h: h[..., 0] * h[..., 1], cov, order=4)
    assert out.dtype == jnp.float32
    assert float(out) == pytest.approx(float(cov[0, 1]), rel=1e-5)


# -- the nested product rule (four-field integrals) ---------------------------------------------

def _omega(q: list[list[float]], m: list[list[float]]) -> np.ndarray:
    """Ω for p = k = 2 with P = I (the covariances of docs/numerics.md)."""
    return np.block([[np.array(q), np.array(m)], [np.array(m).T, np.eye(2)]])


STAGES = {
    "early": _omega([[0.5, 0.05], [0.05, 0.6]], [[0.1, 0.05], [0.02, 0.08]]),
    "learned": _omega([[1.0, 0.02], [0.02, 1.0]], [[0.98, 0.01], [0.01, 0.97]]),
    "large": _omega([[4.0, 1.0], [1.0, 3.0]], [[1.5, 0.3], [0.2, 1.2]]),
}
I4_NESTING = (2, 3, 0, 1)  # eqgen.theories.committee.PRODUCT_RULE_NESTING[4]


@pytest.mark.parametrize("stage", sorted(STAGES))
@pytest.mark.parametrize("fields", [(0, 1, 2, 3), (0, 1, 2, 2)], ids=["generic", "c=e"])
def test_product_rule_meets_the_erf_i4_closed_form(stage: str, fields: tuple[int, ...]) -> None:
    """The I4 of erf units at the three stages of a run, with the c = e pair whose 4 × 4
    covariance is singular: within the errors docs/numerics.md states for eqgen's order 28
    (the largest, 2·10⁻⁷ relative, on the nearly singular "learned" c = e pair)."""
    omega = STAGES[stage][np.ix_(fields, fields)]
    exact = closed(cf.erf_i4, omega)
    got = float(gaussian_product_expectation((dsigma, dsigma, sigma, sigma), omega, order=28,
                                             nesting=I4_NESTING))
    assert got == pytest.approx(exact, abs=1e-6 * max(abs(exact), 1e-3))


def test_product_rule_is_exact_for_polynomials() -> None:
    """E[h1 h2² h3 h4²] by Isserlis (wick_moment): exact at order 4, in any nesting (every
    field depends on the outermost node, so the degree there is the total degree 6 ≤ 2·4 − 1);
    not at order 3. A Cholesky factor with a wrong entry fails here."""
    omega = random_cov(4, 4)
    exact = float(wick_moment((1, 2, 1, 2), sp.Matrix(omega)))
    ident, square = (lambda h: h), (lambda h: h**2)
    factors = (ident, square, ident, square)
    for nesting in (None, I4_NESTING, (3, 1, 0, 2)):
        got = gaussian_product_expectation(factors, omega, order=4, nesting=nesting)
        assert float(got) == pytest.approx(exact, abs=1e-12)
    assert abs(float(gaussian_product_expectation(factors, omega, order=3)) - exact) > 1e-6


def test_psd_cholesky_of_singular_covariances() -> None:
    omega = STAGES["learned"][np.ix_((0, 1, 2, 2), (0, 1, 2, 2))]  # rank 3
    L = np.array([[float(v) if j <= i else 0.0 for j, v in enumerate(row)]
                  for i, row in enumerate(psd_cholesky(jnp.asarray(omega)))])
    np.testing.assert_allclose(L @ L.T, omega, atol=1e-14)
    assert L[3, 3] == 0.0


def test_product_rule_in_blocks_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches larger than `BLOCK_NODES` nodes are summed a block at a time (bounded memory):
    the same numbers as all at once, batch shape kept, under jit."""
    covs = jnp.asarray(np.stack([random_cov(s, 4) for s in range(10)]).reshape(2, 5, 4, 4))
    factors = (dsigma, dsigma, sigma, jnp.tanh)

    def run() -> np.ndarray:
        fn = jax.jit(lambda c: gaussian_product_expectation(factors, c, order=6,
                                                            nesting=I4_NESTING))
        return np.asarray(fn(covs))

    whole = run()
    monkeypatch.setattr(quadrature, "BLOCK_NODES", 3 * 6**4)  # blocks of 3 covariances
    blocked = run()
    assert whole.shape == blocked.shape == (2, 5)
    np.testing.assert_allclose(whole, blocked, rtol=1e-13, atol=1e-16)  # fused differently
    with pytest.raises(ValueError, match="ordering"):
        gaussian_product_expectation(factors, covs, order=6, nesting=(0, 1, 2, 2))
    with pytest.raises(ValueError, match="factors"):
        gaussian_product_expectation(factors[:3], covs, order=6)
