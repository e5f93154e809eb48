"""The fast arcsin used by generated code (eqgen.runtime.special): accuracy against numpy, and
its written-out coefficients against the fit they come from; the ReLU helpers gram_sqrt and
corr_arcsin: plain values and slopes on regular blocks, exact ones for a unit with itself, and
no derivative for two distinct aligned units."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqgen.runtime import special


def test_written_coefficients_are_the_fit(monkeypatch) -> None:  # noqa: ANN001
    """Same function, not same digits: in the monomial basis the fit is ill-conditioned,
    and the least squares of another numpy/LAPACK moves its high-order coefficients by up to
    1.5 % (numpy 2.4 against the one they were written with) while the polynomial moves by
    round-off. A wrong coefficient (test below) moves it by far more."""
    x = np.linspace(-1.0, 1.0, 200_001)
    written = np.asarray(special.arcsin(x))
    even, odd = special._fit()
    monkeypatch.setattr(special, "_EVEN", even)
    monkeypatch.setattr(special, "_ODD", odd)
    refit = np.asarray(special.arcsin(x))
    assert np.max(np.abs(refit - written)) <= 1e-15
    assert np.max(np.abs(refit - np.arcsin(x))) <= 6e-16


def test_arcsin_matches_numpy_on_the_whole_interval() -> None:
    x = np.concatenate([np.linspace(-1.0, 1.0, 200_001), [-1.0, -0.5, 0.0, 0.5, 1.0],
                        np.nextafter(0.5, [0.0, 1.0]), 1 - np.logspace(-16, -1, 50)])
    got = np.asarray(jax.jit(special.arcsin)(x))
    assert np.max(np.abs(got - np.arcsin(x))) <= 6e-16


def test_a_wrong_coefficient_is_caught(monkeypatch) -> None:  # noqa: ANN001
    """The accuracy test can fail: one coefficient off in its 12th digit breaks it."""
    bad = list(special._EVEN)
    bad[1] *= 1 + 1e-12
    monkeypatch.setattr(special, "_EVEN", tuple(bad))
    x = np.linspace(-1.0, 1.0, 20_001)
    assert np.max(np.abs(np.asarray(special.arcsin(x)) - np.arcsin(x))) > 6e-16


# -- gram_sqrt and corr_arcsin (the ReLU closed forms' √(ab − c²) and arcsin(c/√(ab))) ---------
def _plain_root(a, b, c):  # noqa: ANN001, ANN202
    return jnp.sqrt(jnp.maximum(a * b - c**2, 0))


def _plain_angle(a, b, c):  # noqa: ANN001, ANN202
    return special.arcsin(c / (jnp.sqrt(a) * jnp.sqrt(b)))


def _regular_blocks(n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, c) of random positive-definite 2 × 2 covariance blocks."""
    rng = np.random.default_rng(3)
    v = rng.standard_normal((n, 2, 5))
    C = v @ v.transpose(0, 2, 1) / 5
    return C[:, 0, 0], C[:, 1, 1], C[:, 0, 1]


def test_gram_helpers_equal_the_plain_formulas_on_regular_blocks() -> None:
    """Values (to the bit) and derivatives (forward and reverse mode) of the plain expressions
    away from singular blocks: the generated ReLU modules' values do not change there."""
    a, b, c = _regular_blocks()
    np.testing.assert_array_equal(special.gram_sqrt(a, b, c), _plain_root(a, b, c))
    np.testing.assert_array_equal(special.corr_arcsin(a, b, c), _plain_angle(a, b, c))
    for fn, plain in ((special.gram_sqrt, _plain_root), (special.corr_arcsin, _plain_angle)):
        for i in range(20):
            want = jax.grad(plain, argnums=(0, 1, 2))(a[i], b[i], c[i])
            for diff in (jax.grad, jax.jacfwd):
                got = diff(fn, argnums=(0, 1, 2))(a[i], b[i], c[i])
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_a_unit_with_itself_is_exact_in_value_and_derivative() -> None:
    """C11 = C12 = C22 = q (one variable): √(q·q − q²) ≡ 0 and arcsin(q/q) ≡ π/2, so both
    derivatives are 0. Under jit the determinant comes out as ±1e-16 q² (fused multiply-adds)
    and q/(√q √q) as 1 − 2⁻⁵², which the plain formulas turn into 1e-8 errors and NaN slopes."""
    q = jnp.asarray(np.random.default_rng(0).uniform(0.05, 5.0, 1000))
    root = jax.jit(lambda x: special.gram_sqrt(x, x, x))
    angle = jax.jit(lambda x: special.corr_arcsin(x, x, x))
    np.testing.assert_array_equal(root(q), 0.0)
    np.testing.assert_array_equal(angle(q), np.pi / 2)
    np.testing.assert_array_equal(jax.jit(lambda x: special.corr_arcsin(x, x, -x))(q), -np.pi / 2)
    np.testing.assert_array_equal(jax.jit(jax.vmap(jax.grad(lambda x: special.gram_sqrt(
        x, x, x))))(q), 0.0)
    np.testing.assert_array_equal(jax.jit(jax.vmap(jax.grad(lambda x: special.corr_arcsin(
        x, x, x))))(q), 0.0)
    # the plain formulas: spurious values and non-finite slopes at the same points
    assert np.abs(np.asarray(jax.jit(lambda x: _plain_angle(x, x, x))(q)) - np.pi / 2).max() > 1e-9
    assert not np.all(np.isfinite(jax.vmap(jax.grad(lambda x: _plain_root(x, x, x)))(q)))


def test_distinct_aligned_units_have_no_derivative_and_are_flagged() -> None:
    """Two distinct fields with correlation 1 (a = b = c as separate variables): moving one of
    them makes the determinant leave 0 linearly, so the difference quotient of √ alone grows
    like h^(-1/2). The helpers' 0 there is right only in combinations where the singular
    parts cancel (the ReLU integrals), which is why the analysis checks such points in the
    modules that use the helpers (`has_branch_points`)."""
    a = 1.5
    for h in (1e-6, 1e-8):
        quotient = (float(special.gram_sqrt(a + h, a, a)) - float(special.gram_sqrt(a, a, a))) / h
        assert quotient == pytest.approx(np.sqrt(a / h), rel=1e-3)
    import eqgen
    from tests.helpers import model_path

    assert special.has_branch_points(eqgen.load(model_path("committee_relu")).module)
    assert not special.has_branch_points(eqgen.load(model_path("committee_erf")).module)
