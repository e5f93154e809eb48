"""The Gaussian-expectation engine against Monte Carlo, against quadrature and against itself.

Every exact result is checked numerically at several random positive-definite covariances Ω:
against Monte Carlo over N(0, Ω) (2·10⁶ samples, within 5 standard errors), and literature closed
forms against the independent derivation of the generic engine (to round-off).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from scipy.special import erf as np_erf

from eqgen.runtime.quadrature import gaussian_expectation
from eqgen.symbolic import (
    NUMERICAL,
    classify,
    conditional_expectation,
    derivative,
    erf_moment,
    expectation,
    stein_i3,
    wick_moment,
)
from eqgen.symbolic import closed_forms as cf

jax.config.update("jax_enable_x64", True)

Z = sp.Symbol("z", real=True)
SIGMA = sp.erf(Z / sp.sqrt(2))
DSIGMA = sp.diff(SIGMA, Z)
RELU = sp.Max(0, Z)
STEP = derivative(RELU, Z)
HE3 = Z**3 - 3 * Z
TANH = sp.tanh(Z)
SOFTPLUS = sp.log(1 + sp.exp(Z))

N_MC = 2_000_000
SEEDS = (0, 1, 2)

_NUMPY = [{"erf": np_erf, "Heaviside": lambda x, h0=0.5: np.heaviside(x, 0.5)}, "numpy"]
_JAX = [{"erf": jax.scipy.special.erf}, "jax"]


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def cov_symbols(n: int) -> sp.Matrix:
    """Symmetric matrix of symbols C11, C12, ... (variances positive)."""
    c = sp.zeros(n, n)
    for i in range(n):
        for j in range(i, n):
            c[i, j] = c[j, i] = sp.Symbol(f"C{i + 1}{j + 1}", positive=(i == j), real=True)
    return c


def random_cov(seed: int, n: int) -> np.ndarray:
    """A random positive-definite covariance with variances of order one."""
    a = np.random.default_rng(seed).normal(size=(n, n + 2))
    return a @ a.T / (n + 2) + 0.05 * np.eye(n)


def numeric(expr: sp.Expr, omega: np.ndarray) -> float:
    """Evaluate an expression in C11, C12, ... at the covariance `omega`."""
    n = omega.shape[0]
    sym = cov_symbols(n)
    pairs = [(i, j) for i in range(n) for j in range(i, n)]
    fn = sp.lambdify([sym[i, j] for i, j in pairs], sp.sympify(expr), modules="numpy")
    return float(fn(*[float(omega[i, j]) for i, j in pairs]))


@functools.cache
def _normals(dim: int) -> np.ndarray:
    return np.random.default_rng(100 + dim).standard_normal((dim, N_MC))


def monte_carlo(factors: Sequence[sp.Expr], omega: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of `∏ f_i(h_i)` over `N_MC` samples of N(0, omega)."""
    h = np.linalg.cholesky(omega) @ _normals(len(factors))
    values = np.ones(N_MC)
    for i, f in enumerate(factors):
        values *= sp.lambdify(Z, f, modules=_NUMPY)(h[i])
    return float(values.mean()), float(values.std() / np.sqrt(N_MC))


def assert_matches_mc(value: float, factors: Sequence[sp.Expr], omega: np.ndarray) -> None:
    mean, err = monte_carlo(factors, omega)
    assert abs(value - mean) < 5 * err + 1e-12, (value, mean, err)


def quadrature(factors: Sequence[sp.Expr], omega: np.ndarray, order: int) -> float:
    """Gauss-Hermite value of `E[∏ f_i(h_i)]` through the JAX runtime."""
    fns = [sp.lambdify(Z, f, modules=_JAX) for f in factors]

    def integrand(h: jax.Array) -> jax.Array:
        out = jnp.ones(h.shape[:-1])
        for i, fn in enumerate(fns):
            out = out * fn(h[..., i])
        return out

    return float(gaussian_expectation(integrand, jnp.asarray(omega), order=order, chunk=50_000))


# ----------------------------------------------------------------------------------------------
# literature closed forms
# ----------------------------------------------------------------------------------------------

CLOSED: list[tuple[str, list[sp.Expr], Callable[[sp.Matrix], sp.Expr]]] = [
    ("erf I2", [SIGMA, SIGMA], cf.erf_i2),
    ("erf J2", [DSIGMA, DSIGMA], cf.erf_j2),
    ("erf I3", [DSIGMA, Z, SIGMA], cf.erf_i3),
    ("erf I4", [DSIGMA, DSIGMA, SIGMA, SIGMA], cf.erf_i4),
    ("erf-linear I2", [SIGMA, Z], cf.erf_linear_i2),
    ("erf-linear I3", [DSIGMA, Z, Z], cf.erf_linear_i3),
    ("erf-linear I4", [DSIGMA, DSIGMA, Z, Z], cf.erf_linear_i4),
    ("ReLU I2", [RELU, RELU], cf.relu_i2),
    ("ReLU J2", [STEP, STEP], cf.relu_j2),
    ("ReLU I3", [STEP, Z, RELU], cf.relu_i3),
    ("ReLU-linear I2", [RELU, Z], cf.relu_linear_i2),
    ("ReLU-linear I3", [STEP, Z, Z], cf.relu_linear_i3),
    ("linear I2", [Z, Z], cf.linear_i2),
]
CLOSED_IDS = [c[0] for c in CLOSED]


@pytest.mark.parametrize(("name", "factors", "formula"), CLOSED, ids=CLOSED_IDS)
def test_closed_form_is_selected(name: str, factors: list[sp.Expr], formula: Callable) -> None:
    c = cov_symbols(len(factors))
    result = expectation(factors, c, Z)
    assert result.exact
    assert result.method.startswith("closed form")
    assert result.expr == formula(c)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("name", "factors", "formula"), CLOSED, ids=CLOSED_IDS)
def test_closed_form_vs_monte_carlo(
    name: str, factors: list[sp.Expr], formula: Callable, seed: int
) -> None:
    n = len(factors)
    omega = random_cov(seed, n)
    assert_matches_mc(numeric(formula(cov_symbols(n)), omega), factors, omega)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("name", "factors", "formula"), CLOSED, ids=CLOSED_IDS)
def test_engine_reproduces_closed_forms(
    name: str, factors: list[sp.Expr], formula: Callable, seed: int
) -> None:
    """Independent route: tilt + Stein + Wick + arcsin pairs vs the literature formula."""
    n = len(factors)
    c = cov_symbols(n)
    engine = expectation(factors, c, Z, use_closed_forms=False)
    assert engine.exact
    assert not engine.method.startswith("closed form")
    omega = random_cov(seed, n)
    assert numeric(engine.expr, omega) == pytest.approx(numeric(formula(c), omega), abs=1e-11)


def test_closed_forms_match_any_factor_order_and_amplitude() -> None:
    c = cov_symbols(3)
    permuted = expectation([Z, 3 * SIGMA, DSIGMA], c, Z)  # I3 with fields (2, 3, 1)
    assert permuted.method.startswith("closed form")
    omega = random_cov(7, 3)
    assert_matches_mc(numeric(permuted.expr, omega), [Z, 3 * SIGMA, DSIGMA], omega)


def _permuted(omega: np.ndarray, perm: list[int]) -> np.ndarray:
    return omega[np.ix_(perm, perm)]


@pytest.mark.parametrize("seed", SEEDS)
def test_i4_symmetries(seed: int) -> None:
    """I4 is invariant under 1↔2 and 3↔4 (with the covariance entries), not under 1↔3."""
    i4 = expectation([DSIGMA, DSIGMA, SIGMA, SIGMA], cov_symbols(4), Z).expr
    omega = random_cov(seed, 4)
    value = numeric(i4, omega)
    assert numeric(i4, _permuted(omega, [1, 0, 2, 3])) == pytest.approx(value, abs=1e-13)
    assert numeric(i4, _permuted(omega, [0, 1, 3, 2])) == pytest.approx(value, abs=1e-13)
    assert abs(numeric(i4, _permuted(omega, [2, 1, 0, 3])) - value) > 1e-6
    c = cov_symbols(4)
    swap12 = {c[0, 0]: c[1, 1], c[1, 1]: c[0, 0], c[0, 2]: c[1, 2], c[1, 2]: c[0, 2],
              c[0, 3]: c[1, 3], c[1, 3]: c[0, 3]}  # fmt: skip
    assert numeric(i4.subs(swap12, simultaneous=True), omega) == pytest.approx(value, abs=1e-13)


# ----------------------------------------------------------------------------------------------
# Stein's lemma
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("phi", [SIGMA, HE3, RELU], ids=["erf", "He3", "relu"])
def test_stein_identity_exact(phi: sp.Expr) -> None:
    c = cov_symbols(3)
    second, first = stein_i3(SIGMA, phi, c, Z)
    assert second.exact and first.exact
    i3 = c[0, 1] * second.expr + c[1, 2] * first.expr
    direct = expectation([DSIGMA, Z, phi], c, Z)
    for seed in SEEDS[:2]:
        omega = random_cov(seed, 3)
        assert numeric(i3, omega) == pytest.approx(numeric(direct.expr, omega), abs=1e-11)
        assert_matches_mc(numeric(i3, omega), [DSIGMA, Z, phi], omega)


def test_stein_identity_numerical_pieces() -> None:
    """tanh student: both 2-D pieces are numerical; their quadrature gives the 3-D I3."""
    c = cov_symbols(3)
    second, first = stein_i3(TANH, HE3, c, Z)
    assert second.expr is None and first.expr is None and not second.exact
    omega = random_cov(3, 3)
    pair = _permuted(omega, [0, 2])
    q_second = quadrature([derivative(TANH, Z, 2), HE3], pair, order=40)
    q_first = quadrature([derivative(TANH, Z, 1), derivative(HE3, Z, 1)], pair, order=40)
    i3 = omega[0, 1] * q_second + omega[1, 2] * q_first
    assert_matches_mc(i3, [derivative(TANH, Z), Z, HE3], omega)


# ----------------------------------------------------------------------------------------------
# Wick and mixtures with polynomial (He3) teachers
# ----------------------------------------------------------------------------------------------


def test_wick_polynomial_moments_exact() -> None:
    c = cov_symbols(4)
    assert sp.expand(wick_moment([2, 2, 0, 0], c) - (c[0, 0] * c[1, 1] + 2 * c[0, 1] ** 2)) == 0
    assert wick_moment([6, 0, 0, 0], c) == 15 * c[0, 0] ** 3
    pairs = c[0, 1] * c[2, 3] + c[0, 2] * c[1, 3] + c[0, 3] * c[1, 2]
    assert sp.expand(wick_moment([1, 1, 1, 1], c) - pairs) == 0
    assert wick_moment([3, 2, 0, 0], c) == 0
    he3 = expectation([HE3, HE3], cov_symbols(2), Z)
    c2 = cov_symbols(2)
    target = 6 * c2[0, 1] ** 3 + 9 * c2[0, 1] * (c2[0, 0] - 1) * (c2[1, 1] - 1)
    assert he3.method == "Wick (exact polynomial)"
    assert sp.expand(he3.expr - target) == 0


MIXED = [
    ("E[erf He3]", [SIGMA, HE3]),
    ("E[erf' h He3]", [DSIGMA, Z, HE3]),
    ("J2", [DSIGMA, DSIGMA]),
    ("E[erf' erf' He3 He3]", [DSIGMA, DSIGMA, HE3, HE3]),
    ("E[erf' erf' erf He3]", [DSIGMA, DSIGMA, SIGMA, HE3]),
    ("E[relu' relu' He3 He3]", [STEP, STEP, HE3, HE3]),
    ("E[erf' erf' relu relu]", [DSIGMA, DSIGMA, RELU, RELU]),
]


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize(("name", "factors"), MIXED, ids=[m[0] for m in MIXED])
def test_mixed_erf_he3_exact_vs_mc(name: str, factors: list[sp.Expr], seed: int) -> None:
    result = expectation(factors, cov_symbols(len(factors)), Z)
    assert result.exact and result.expr is not None
    omega = random_cov(seed + 10, len(factors))
    assert_matches_mc(numeric(result.expr, omega), factors, omega)


def test_conditional_decomposition_agrees_with_engine() -> None:
    """E[erf(h1/√2) He3(h2) h3²]: conditioning on h1 + Stein's 1-D recursion vs the engine."""
    c = cov_symbols(3)
    factors = [SIGMA, HE3, Z**2]
    engine = expectation(factors, c, Z)
    polys = [(sp.S.One,), (0, -3, 0, 1), (0, 0, 1)]
    route = conditional_expectation(polys, 0, lambda m, v: erf_moment(m, v, 1 / sp.sqrt(2)), c)
    omega = random_cov(4, 3)
    assert numeric(route, omega) == pytest.approx(numeric(engine.expr, omega), abs=1e-11)
    assert_matches_mc(numeric(route, omega), factors, omega)


@pytest.mark.parametrize("m", [1, 3, 5])
def test_erf_moment_vs_mc(m: int) -> None:
    var = 0.7
    value = float(erf_moment(m, sp.Float(var), 1 / sp.sqrt(2)))
    assert_matches_mc(value, [Z**m * SIGMA], np.array([[var]]))


# ----------------------------------------------------------------------------------------------
# generic activations and the numerical route
# ----------------------------------------------------------------------------------------------

SHAPES = {
    "I2": lambda f: [f, f],
    "J2": lambda f: [derivative(f, Z), derivative(f, Z)],
    "I3": lambda f: [derivative(f, Z), Z, f],
    "I4": lambda f: [derivative(f, Z), derivative(f, Z), f, f],
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("act", [TANH, HE3, SOFTPLUS], ids=["tanh", "He3", "softplus"])
def test_any_activation_goes_through(act: sp.Expr, shape: str) -> None:
    factors = SHAPES[shape](act)
    n = len(factors)
    result = expectation(factors, cov_symbols(n), Z)
    if act == HE3:
        assert result.exact
    else:
        assert (result.expr, result.method, result.exact) == (None, NUMERICAL, False)
    if shape == "I4":
        return  # the 4-D quadrature is exercised by test_relu_i4_is_numerical
    omega = random_cov(5, n)
    value = quadrature(factors, omega, order=30)
    assert_matches_mc(value, factors, omega)
    if result.exact:
        assert value == pytest.approx(numeric(result.expr, omega), abs=1e-10)


def test_relu_i4_is_numerical() -> None:
    factors = [STEP, STEP, RELU, RELU]
    result = expectation(factors, cov_symbols(4), Z)
    assert result.expr is None and not result.exact
    omega = random_cov(6, 4)
    mean, err = monte_carlo(factors, omega)
    # kinks: Gauss-Hermite converges slowly, allow its own error on top of the MC bar
    assert abs(quadrature(factors, omega, order=16) - mean) < 5 * err + 2e-3


def test_odd_integrands_vanish_exactly() -> None:
    result = expectation([TANH, Z**2], cov_symbols(2), Z)
    assert result.exact and result.expr == 0
    assert expectation([SIGMA, SIGMA, SIGMA], cov_symbols(3), Z).expr == 0


# ----------------------------------------------------------------------------------------------
# classification and determinism
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "kind"),
    [
        (SIGMA, "erf"),
        (3 * SIGMA, "erf"),
        (Z, "linear"),
        (-2 * Z, "linear"),
        (HE3, "polynomial"),
        (sp.Integer(1), "polynomial"),
        (RELU, "relu"),
        (STEP, "step"),
        (derivative(RELU, Z, 2), "delta"),
        (DSIGMA, "gaussian"),
        (sp.diff(SIGMA, Z, 2), "gaussian"),
        (Z * sp.exp(-(Z**2) / 2), "gaussian"),
        (TANH, "generic"),
        (SOFTPLUS, "generic"),
        (SIGMA + Z, "mixed"),
    ],
)
def test_classify(expr: sp.Expr, kind: str) -> None:
    assert classify(expr, Z).kind == kind


def test_classify_amplitudes_and_scales() -> None:
    act = classify(3 * SIGMA, Z)
    assert act.amplitude == 3 and act.scale == sp.sqrt(2) / 2
    assert classify(5 * RELU, Z).amplitude == 5
    assert classify(derivative(RELU, Z), Z).expr == sp.Heaviside(Z)


_DETERMINISM_SCRIPT = """
import sympy as sp
from eqgen.symbolic import expectation
z = sp.Symbol("z", real=True)
n = 4
c = sp.zeros(n, n)
for i in range(n):
    for j in range(i, n):
        c[i, j] = c[j, i] = sp.Symbol(f"C{i + 1}{j + 1}", positive=(i == j), real=True)
s = sp.erf(z / sp.sqrt(2)); ds = sp.diff(s, z); he3 = z**3 - 3*z
for f in ([ds, ds, he3, he3], [ds, ds, s, sp.Max(0, z)], [sp.Heaviside(z)] * 2 + [he3, he3]):
    print(sp.srepr(expectation(f, c, z).expr))
"""


def test_results_do_not_depend_on_hash_seed() -> None:
    outputs = []
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        run = subprocess.run(
            [sys.executable, "-c", _DETERMINISM_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(run.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") == 3
