"""The generated right-hand sides against independent routes: Monte Carlo over the Gaussian
fields (docs/theory.md, The ODEs written directly as sample averages), the hand-written numpy
baseline, and the joint-quadrature code path. A planted error (variance term removed) must be
detected."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

import eqgen
from eqgen.codegen import module as modfile
from eqgen.codegen.committee import module_source
from tests.helpers import committee_spec, gaussian_fields, model_path, random_overlaps

N_MC = 400_000

NUMPY_ACTS = {
    "erf(z / sqrt(2))": (lambda z: erf(z / np.sqrt(2)),
                         lambda z: np.sqrt(2 / np.pi) * np.exp(-z**2 / 2)),
    "relu(z)": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
    "z**2": (lambda z: z**2, lambda z: 2 * z),
    "He(3, z)": (lambda z: z**3 - 3 * z, lambda z: 3 * z**2 - 3),
    "tanh(z)": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "sign(z)": (np.sign, None),  # teacher only
}


def monte_carlo(state, *, sigma, g, c_p, c_k, gamma, batch, Delta, rate, variance=True,
                loss_grad=None, seed=0):
    """Sample means and standard errors of every term of docs/theory.md, The ODEs."""
    Q, M, P, a, a_s = (np.asarray(state[k]) for k in ("Q", "M", "P", "a", "a_star"))
    p, k = M.shape
    omega = np.block([[Q, M], [M.T, P]])
    h = gaussian_fields(omega, N_MC, seed)
    xi = np.random.default_rng(seed + 1).standard_normal(N_MC)
    lam, nu = h[:, :p], h[:, p:]
    s, ds = NUMPY_ACTS[sigma]
    gg, _ = NUMPY_ACTS[g]
    f = c_p * s(lam) @ a
    fstar = c_k * gg(nu) @ a_s
    y = fstar + np.sqrt(Delta) * xi
    E = (y - f) if loss_grad is None else loss_grad(y, f)
    dsl = ds(lam)

    def mean_se(x):
        return x.mean(axis=0), x.std(axis=0) / np.sqrt(N_MC)

    dM = mean_se(a[None, :, None] * (E[:, None, None] * dsl[:, :, None] * nu[:, None, :]))
    drift = a[None, :, None] * (E[:, None, None] * dsl[:, :, None] * lam[:, None, :])
    dQ_s = drift + np.swapaxes(drift, 1, 2)
    if variance:
        dQ_s = dQ_s + gamma * c_p / batch * (a[:, None] * a[None, :])[None] * (
            (E**2)[:, None, None] * dsl[:, :, None] * dsl[:, None, :])
    dQ = mean_se(dQ_s)
    da = mean_se(rate * E[:, None] * s(lam))
    excess = mean_se(0.5 * (fstar - f) ** 2)
    return {"M": dM, "Q": dQ, "a": da, "excess_risk": excess}


def _state(p, k, seed, trained=False):
    st = random_overlaps(p, k, seed)
    rng = np.random.default_rng(seed + 7)
    st["a"] = rng.uniform(0.5, 1.5, p) if trained else np.ones(p)
    st["a_star"] = rng.uniform(0.5, 1.5, k)
    return st


def _evaluate(model, state, params):
    st = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in state.items()}
    pr = {k: jnp.asarray(float(v)) for k, v in params.items()}
    d = model.module.vector_field(0.0, st, pr)
    o = model.module.observables(st, pr)
    return {k: np.asarray(v) for k, v in d.items()}, {k: float(v) for k, v in o.items()}


def _assert_close(gen, mc, name, n_se=5.0, abs_tol=1e-10):
    mean, se = mc
    err = np.abs(np.asarray(gen) - mean)
    bound = n_se * se + abs_tol
    assert np.all(err <= bound), (
        f"{name}: generated {gen} vs Monte Carlo {mean} ± {se} (max |err|/se = "
        f"{np.max(err / np.maximum(se, 1e-300)):.1f})")


HD, GF = "high_dimensional", "gradient_flow"
CASES = [
    # sigma, g, p, k, gamma, Delta, c_p, c_k, second, batch, regime
    ("erf(z / sqrt(2))", "erf(z / sqrt(2))", 3, 2, 1.5, 0.3, "1/p", "1/k", "fixed(1)", 1, HD),
    ("erf(z / sqrt(2))", "erf(z / sqrt(2))", 2, 2, 0.7, 0.0, "1/sqrt(p)", "1",
     "trained(rate = 0.5)", 4, HD),
    ("relu(z)", "relu(z)", 2, 2, 1.0, 0.1, "1/p", "1/k", "trained(rate = 0.5)", 1, GF),
    ("z**2", "z**2", 2, 1, 0.4, 0.2, "1/p", "1/k", "fixed(1)", 1, HD),
    ("erf(z / sqrt(2))", "He(3, z)", 2, 1, 0.5, 0.0, "1/p", "1", "fixed(1)", 1, HD),
    ("relu(z)", "He(3, z)", 2, 1, 0.5, 0.0, "1/p", "1", "fixed(1)", 1, GF),
    ("erf(z / sqrt(2))", "relu(z)", 2, 2, 0.5, 0.1, "1/p", "1/k", "fixed(1)", 1, HD),
    ("tanh(z)", "erf(z / sqrt(2))", 2, 1, 0.8, 0.1, "1/p", "1/k", "fixed(1)", 1, HD),
    ("erf(z / sqrt(2))", "sign(z)", 2, 1, 0.6, 0.0, "1/p", "1", "fixed(1)", 1, HD),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}-{c[8]}-{c[10]}" for c in CASES])
def test_generated_field_matches_monte_carlo(tmp_path, case):
    sigma, g, p, k, gamma, Delta, c_p, c_k, second, batch, regime = case
    path = committee_spec(tmp_path, p=p, k=k, gamma=gamma, Delta=Delta, sigma=sigma, g=g,
                          c_p=c_p, c_k=c_k, second=second, batch=batch, regime=regime)
    model = eqgen.load(path)
    trained = second.startswith("trained")
    state = _state(p, k, seed=11, trained=trained)
    d, obs = _evaluate(model, state, model.parameters)
    cp = {"1/p": 1 / p, "1/sqrt(p)": 1 / np.sqrt(p), "1": 1.0}[c_p]
    ck = {"1/k": 1 / k, "1": 1.0}[c_k]
    mc = monte_carlo(state, sigma=sigma, g=g, c_p=cp, c_k=ck, gamma=gamma, batch=batch,
                     Delta=Delta, rate=0.5 if trained else 0.0, variance=regime == HD)
    _assert_close(d["M"], mc["M"], "dM/dt")
    _assert_close(d["Q"], mc["Q"], "dQ/dt")
    if trained:
        _assert_close(d["a"], mc["a"], "da/dt")
    _assert_close(obs["excess_risk"], mc["excess_risk"], "excess risk")
    assert obs["risk"] == pytest.approx(obs["excess_risk"] + Delta / 2, rel=1e-12)


def test_kinked_integral_without_closed_form_is_refused(tmp_path):
    """ReLU students in the high-dimensional regime need a ReLU I4, which eqgen can only
    integrate numerically and inaccurately: refused instead of giving a plausible wrong curve."""
    path = committee_spec(tmp_path, sigma="relu(z)", g="relu(z)")
    with pytest.raises(eqgen.SpecError, match="integrand has a jump"):
        eqgen.load(path).equations  # noqa: B018


def test_monte_carlo_check_detects_a_missing_variance_term(tmp_path):
    """Planted error: the same comparison without the variance term must fail."""
    path = committee_spec(tmp_path, p=2, k=2, gamma=2.0, c_p="1", c_k="1")
    model = eqgen.load(path)
    state = _state(2, 2, seed=5)
    d, _ = _evaluate(model, state, model.parameters)
    mc = monte_carlo(state, sigma="erf(z / sqrt(2))", g="erf(z / sqrt(2))", c_p=1.0, c_k=1.0,
                     gamma=2.0, batch=1, Delta=0.0, rate=0.0, variance=False)
    with pytest.raises(AssertionError):
        _assert_close(d["Q"], mc["Q"], "dQ/dt")


def test_generated_field_matches_numpy_baseline():
    """Against the hand-written vectorised numpy ODE of benchmarks/ (independent code)."""
    from benchmarks.baseline_numpy import committee_erf_rhs

    model = eqgen.load(model_path("committee_erf"))
    for p, k, seed in ((3, 2, 1), (10, 4, 2), (1, 3, 3)):
        state = _state(p, k, seed, trained=True)
        params = {**model.parameters, "p": p, "k": k, "gamma": 0.9, "Delta": 0.2}
        d, _ = _evaluate(model, state, params)
        dQ, dM = committee_erf_rhs(state["Q"], state["M"], state["P"], state["a"],
                                   state["a_star"], 1 / p, 1 / k, 0.9 / p, 0.2)
        np.testing.assert_allclose(d["Q"], dQ, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(d["M"], dM, rtol=1e-11, atol=1e-13)


def _module_with_joint_quadrature(model, tmp_path):
    eq = dataclasses.replace(model.equations, square_loss=False)
    text = module_source(eq, header="joint-quadrature variant", defaults=model.parameters)
    path = tmp_path / "joint.py"
    path.write_text(text)
    return modfile.load_module(path)


def test_index_form_matches_joint_quadrature(tmp_path):
    """The square loss through both code paths: closed-form index sums vs the joint
    Gauss–Hermite expectation over (λ, ν, ξ)."""
    path = committee_spec(tmp_path, p=2, k=1, gamma=0.8, Delta=0.25)
    model = eqgen.load(path)
    joint = _module_with_joint_quadrature(model, tmp_path)
    state = {k: jnp.asarray(v) for k, v in _state(2, 1, seed=4).items()}
    pr = {k: jnp.asarray(float(v)) for k, v in model.parameters.items()}
    a = model.module.vector_field(0.0, state, pr)
    b = joint.vector_field(0.0, state, pr)
    for name in ("Q", "M"):
        np.testing.assert_allclose(np.asarray(b[name]), np.asarray(a[name]), rtol=1e-4,
                                   atol=1e-6)
    oa = model.module.observables(state, pr)
    ob = joint.observables(state, pr)
    assert float(ob["risk"]) == pytest.approx(float(oa["risk"]), rel=1e-4)


def test_non_square_loss_matches_monte_carlo(tmp_path):
    """A logistic-type loss: 𝓔 = −∂ℓ/∂ŷ derived by sympy, expectations by joint quadrature."""
    path = committee_spec(tmp_path, p=2, k=1, gamma=0.5, c_k="1",
                          loss="log(1 + exp(-y * yhat))")
    model = eqgen.load(path)
    assert not model.equations.square_loss
    state = _state(2, 1, seed=9)
    d, _ = _evaluate(model, state, model.parameters)

    def grad(y, f):
        return y / (1 + np.exp(y * f))

    mc = monte_carlo(state, sigma="erf(z / sqrt(2))", g="erf(z / sqrt(2))", c_p=0.5, c_k=1.0,
                     gamma=0.5, batch=1, Delta=0.0, rate=0.0, loss_grad=grad)
    _assert_close(d["M"], mc["M"], "dM/dt", abs_tol=1e-4)
    _assert_close(d["Q"], mc["Q"], "dQ/dt", abs_tol=1e-4)


def test_stein_reduction_of_i3_for_a_generic_activation(tmp_path):
    """tanh has no closed form: I3 goes through Stein's lemma (two 2-D quadratures), which must
    agree with a direct 3-D Gauss–Hermite quadrature of E[σ'(h1) h2 φ(h3)]."""
    from eqgen.runtime.quadrature import gaussian_expectation

    model = eqgen.load(committee_spec(tmp_path, sigma="tanh(z)", p=2, k=1))
    it = model.equations.integral("i3_student")
    assert it.parts is not None and "Stein" in it.method
    rng = np.random.default_rng(3)
    v = rng.standard_normal((3, 5))
    C = v @ v.T / 5
    entries = {f"C{i + 1}{j + 1}": jnp.float64(C[i, j]) for i in range(3) for j in range(i, 3)}
    got = float(model.module.i3_student(**entries))

    def integrand(h):
        return (1 - jnp.tanh(h[..., 0]) ** 2) * h[..., 1] * jnp.tanh(h[..., 2])

    want = float(gaussian_expectation(integrand, jnp.asarray(C), order=80))  # converged
    assert got == pytest.approx(want, rel=1e-5)
