"""The DMFT family against independent routes: the Marchenko–Pastur closed form (docs/dmft.md,
A closed form: the square loss at b = 1), the analytic t = 0 values, an independent numpy sweep,
and finite-d simulations."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

import eqgen
from eqgen.runtime.dmft import SweepInputs, sweep
from eqgen.runtime.dmft_exact import sweep_exact
from tests.helpers import model_path
from tests.helpers_dmft import gaussian_mean, mp_closed_form

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from baseline_dmft_numpy import numpy_sweep, random_inputs  # noqa: E402


# -- square loss: the closed form ------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.5, 2.0, 3.0])
def test_exact_propagation_matches_marchenko_pastur_for_gd(alpha: float) -> None:
    model = eqgen.load(model_path("glm_ridge_square"))
    params = {"alpha": alpha, "lambda": 0.1, "eta": 0.1, "m0": 0.2, "q0": 0.5}
    problem = model.problem(params, t_max=3.0)
    res = sweep_exact(problem)
    ref = mp_closed_form(alpha, 0.1, 0.1, 0.2, 0.5, problem.steps)
    for key in ("m", "Q", "train_loss"):
        np.testing.assert_allclose(getattr(res, key), ref[key], atol=1e-6, err_msg=key)
    np.testing.assert_allclose(res.R[:, 0], ref["R"], atol=1e-6)
    np.testing.assert_allclose(res.test_loss, ref["test_loss"], atol=1e-6)


def test_gradient_flow_converges_to_the_closed_form_at_first_order() -> None:
    """Continuous time: the error is O(η), and Richardson extrapolation removes that order."""
    model = eqgen.load(model_path("glm_ridge_square"))
    errors = {}
    for eta in (0.04, 0.02):
        p = {"eta": eta, "alpha": 2.0, "lambda": 0.1, "m0": 0.0, "q0": 1.0}
        res = sweep_exact(model.problem(p, t_max=2.0))
        ref = mp_closed_form(2.0, 0.1, eta, 0.0, 1.0, res.m.size - 1, gd=False)
        errors[eta] = np.abs(res.m - ref["m"]).max()
        if eta == 0.02:
            coarse = sweep_exact(model.problem({**p, "eta": 0.04}, t_max=2.0))
            rich = 2 * res.m[::2] - coarse.m
            rich_err = np.abs(rich - ref["m"][::2]).max()
    assert errors[0.04] > 1e-3  # the discretisation error is there ...
    assert 1.8 < errors[0.04] / errors[0.02] < 2.2  # ... and first order in η
    assert rich_err < errors[0.02] / 10


def test_sampled_sweep_matches_the_closed_form_within_monte_carlo_error() -> None:
    model = eqgen.load(model_path("glm_ridge_square"))
    problem = model.problem({"alpha": 2.0}, t_max=2.0)
    res = sweep(problem, samples=20_000, seed=3)
    ref = mp_closed_form(2.0, 0.1, 0.1, 0.0, 1.0, problem.steps)
    for key in ("m", "Q", "train_loss"):
        np.testing.assert_allclose(getattr(res, key), ref[key], atol=0.02, err_msg=key)
    np.testing.assert_allclose(res.R[:, 0], ref["R"], atol=1e-10)  # ℓ'' = 1: no sampling error


def test_model_solve_uses_exact_propagation_for_square_loss() -> None:
    model = eqgen.load(model_path("glm_ridge_square"))
    sol = model.solve(t_max=2.0)
    assert sol.metadata["method"] == "exact Gaussian propagation"
    ref = mp_closed_form(2.0, 0.1, 0.1, 0.0, 1.0, len(sol.t) - 1)
    np.testing.assert_allclose(sol["m"], ref["m"], atol=1e-8)
    sampled = model.solve(t_max=2.0, samples=2000)
    assert sampled.metadata["method"] == "sampled trajectories"


# -- logistic, two clusters: t = 0 ------------------------------------------------------------
def test_logistic_initial_values_are_analytic() -> None:
    """m0 = 0, q0 = 1: yh ~ N(0, Δ), so every t = 0 quantity is a 1-D Gaussian integral."""
    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    problem = model.problem(t_max=0.2)
    res = sweep(problem, samples=40_000, seed=0)
    alpha, Delta = problem.alpha, problem.Delta
    sig = lambda u: 1 / (1 + np.exp(-u))  # noqa: E731
    loss0 = gaussian_mean(lambda u: np.logaddexp(0, -u), 0, Delta)
    nu0 = alpha * Delta * gaussian_mean(lambda u: sig(u) * sig(-u), 0, Delta)
    mc0 = alpha * Delta**2 * gaussian_mean(lambda u: sig(-u) ** 2, 0, Delta)
    tol = 4 / np.sqrt(40_000)
    assert abs(res.train_loss[0] - loss0) < tol
    assert abs(res.nu_hat[0] - nu0) < tol
    assert abs(res.M_C[0, 0] - mc0) < tol
    # dm/dt(0) = α/2 (κ = 1; λ plays no role at m = 0), to O(η) and Monte Carlo error
    assert abs((res.m[1] - res.m[0]) / problem.eta - alpha / 2) < 0.05
    assert res.Q[0] == pytest.approx(1.0)
    assert res.test_error[0] == pytest.approx(0.5)


# -- an independent implementation -----------------------------------------------------------------
@pytest.mark.parametrize("b, tau", [(1.0, 0.1), (0.3, 2.0)])
def test_forward_sweep_equals_the_numpy_baseline_on_the_same_noise(b: float, tau: float) -> None:
    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    problem = model.problem({"b": b, "tau": tau}, t_max=1.5)
    raw = random_inputs(problem, 400, seed=7)
    ours = sweep(problem, inputs=SweepInputs(*(jnp.asarray(raw[k]) for k in
                                              ("c", "xi", "y", "r0", "zeta", "s"))))
    ref = numpy_sweep(problem, **raw)
    # the two solve the noise factor's regularised least squares by different algorithms, so
    # they agree to 1e-7 or better (not to round-off) once M_C is nearly singular
    for key in ("m", "Q", "train_loss", "train_error", "nu_hat"):
        np.testing.assert_allclose(getattr(ours, key), ref[key], rtol=1e-6, atol=1e-10,
                                   err_msg=key)
    for key, mine in (("M_C", ours.M_C), ("M_R", ours.M_R), ("R", ours.R),
                      ("C_perp", ours.C_perp)):
        np.testing.assert_allclose(mine, ref[key], rtol=1e-6, atol=1e-10, err_msg=key)


def test_response_rows_in_chunks_and_over_every_width_equal_the_numpy_baseline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # K = 70 reaches every kind of static width (steps of 8, then the last, T = 72), and a
    # small cache budget cuts the trajectories into three chunks, the last one padded
    from eqgen.runtime import dmft

    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    problem = model.problem({"b": 0.3, "tau": 2.0}, t_max=7.0)
    assert problem.steps == 70 and dmft._widths(problem.steps + 2)[-2:] == [64, 72]
    n = 301
    monkeypatch.setattr(dmft, "RESPONSE_CHUNK_BYTES", 8 * 72 * n // 3 + 1)
    jax.clear_caches()
    raw = random_inputs(problem, n, seed=3)
    ours = sweep(problem, inputs=SweepInputs(*(jnp.asarray(raw[k]) for k in
                                              ("c", "xi", "y", "r0", "zeta", "s"))))
    jax.clear_caches()
    ref = numpy_sweep(problem, **raw)
    for key, mine in (("M_R", ours.M_R), ("R", ours.R), ("m", ours.m), ("Q", ours.Q)):
        np.testing.assert_allclose(mine, ref[key], rtol=1e-6, atol=1e-10, err_msg=key)
    assert np.abs(ours.M_R).max() > 1e-3  # the memory kernel is not trivially zero


def test_noise_factor_survives_a_rank_deficient_kernel() -> None:
    """A plain Cholesky of M_C fails once it is nearly singular; the sweep stays finite."""
    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    res = sweep(model.problem({"alpha": 6, "Delta": 0.05, "lambda": 0.0}, t_max=6.0),
                samples=2000, seed=0)
    assert np.all(np.isfinite(res.Q)) and res.Q[-1] < 1e3
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(res.M_C)


# -- against the finite-d simulation ---------------------------------------------------------------
def _compare(model: eqgen.Model, params: dict, d: int, seeds: int, samples: int,
             planted: bool = False, problem: Any = None) -> dict[str, float]:
    """Largest deviation of the DMFT from the simulation, in units of the allowed error.
    `problem`: the theory's problem, if not the model's (the simulation is the model's)."""
    from eqgen.simulate.dmft import simulate_dmft

    sim = simulate_dmft(model.problem(params), d, seeds, seed=11)
    theory_problem = model.problem(params) if problem is None else problem
    th = sweep(theory_problem, samples=samples, seed=5, drop_earlier_curvature=planted)
    worst = {}
    for key in ("m", "Q", "train_loss", "train_error", "test_error"):
        runs = np.asarray(sim[key])
        se = runs.std(0, ddof=1) / np.sqrt(seeds)
        theory = getattr(th, key)
        se_theory = 0.5 / np.sqrt(samples)  # Monte Carlo error of the sampled averages
        # statistical error (4 s.e.) plus a finite-size allowance: 1 % of the value, 0.004
        allowed = 4 * np.hypot(se, se_theory) + 0.01 * np.abs(theory) + 0.004
        worst[key] = float(np.max(np.abs(theory - runs.mean(0)) / allowed))
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("params", [{}, {"b": 0.3, "tau": 0.1 / 0.3}, {"b": 0.3, "tau": 2.0}],
                         ids=["gd", "sgd", "persistent"])
def test_logistic_dmft_tracks_the_simulation(params: dict) -> None:
    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    worst = _compare(model, params, d=4000, seeds=3, samples=20_000)
    assert max(worst.values()) < 1, worst


@pytest.mark.slow
def test_dropping_the_earlier_curvature_factor_is_detected() -> None:
    """docs/dmft.md, The effective process: M_R without ℓ''(t') looks plausible and is wrong;
    the comparison sees it."""
    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    worst = _compare(model, {"b": 0.3, "tau": 2.0}, d=4000, seeds=3, samples=20_000,
                     planted=True)
    assert worst["Q"] > 3, worst


@pytest.mark.slow
def test_three_clusters_from_positive_overlap_track_the_simulation() -> None:
    model = eqgen.load(model_path("gmm_three_cluster"))
    worst = _compare(model, {}, d=4000, seeds=3, samples=20_000)
    assert max(worst.values()) < 1, worst


SQUARED_HINGE = model_path("gmm_two_cluster_logistic").read_text().replace(
    "loss log(1 + exp(-y * h))", "loss max(0, 1 - y * h)**2 / 2")


def test_squared_hinge_has_a_step_in_its_curvature_and_no_delta(tmp_path: Path) -> None:
    """ℓ' = −y max(0, 1 − yh) is continuous: ℓ'' = y² θ(1 − yh) is accepted (sympy's
    δ(hy − 1)·max(0, 1 − yh) term vanishes), while the hinge itself, whose ℓ' jumps, is not."""
    from eqgen.symbolic.convert import Y
    from eqgen.theories.dmft import _without_null_deltas

    assert "max(0, 1 - y * h)**2" in SQUARED_HINGE
    (tmp_path / "sq.eqg").write_text(SQUARED_HINGE)
    model = eqgen.load(tmp_path / "sq.eqg")
    problem = model.problem({})
    y = jnp.asarray([1.0, 1.0, -1.0, -1.0])
    h = jnp.asarray([0.5, 1.5, -0.5, 0.3])
    np.testing.assert_allclose(problem.d2loss(y, h), [1.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(problem.dloss(y, h), [-0.5, 0.0, 0.5, 1.3])
    H = sp.Symbol("h", real=True)
    kept = _without_null_deltas(Y**2 * sp.DiracDelta(H * Y - 1))  # the hinge's own ℓ''
    assert kept.has(sp.DiracDelta)


@pytest.mark.slow
def test_squared_hinge_dmft_tracks_the_simulation(tmp_path: Path) -> None:
    """SGD (b = 0.3), where the curvature at both times enters M_R; with ℓ'' replaced by its
    value inside the margin (y², as if the loss were square) the same comparison fails."""
    (tmp_path / "sq.eqg").write_text(SQUARED_HINGE)
    model = eqgen.load(tmp_path / "sq.eqg")
    params = {"b": 0.3, "tau": 0.1 / 0.3}
    worst = _compare(model, params, d=4000, seeds=3, samples=20_000)
    assert max(worst.values()) < 1, worst
    wrong = dataclasses.replace(model.problem(params), d2loss=lambda y, h: y * y + 0 * h)
    planted = _compare(model, params, d=4000, seeds=3, samples=20_000, problem=wrong)
    assert max(planted.values()) > 2, planted


def test_three_cluster_overlap_grows_from_positive_start() -> None:
    model = eqgen.load(model_path("gmm_three_cluster"))
    sol = model.solve(samples=4000, t_max=3.0)
    assert sol["m"][-1] > 2 * sol["m"][0]
    assert sol["test_error"][-1] < 0.2 < sol["test_error"][0]


def test_test_error_of_two_clusters_is_the_erfc_formula() -> None:
    from scipy.special import erfc

    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    problem = model.problem()
    m, Q = np.array([0.0, 0.4, 1.3]), np.array([1.0, 1.5, 3.0])
    err, _ = problem.test_metrics(m, Q)
    np.testing.assert_allclose(err, 0.5 * erfc(m / np.sqrt(2 * problem.Delta * Q)), atol=1e-12)


def test_stable_logistic_loss_in_the_tails() -> None:
    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    p = model.problem()
    h = jnp.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    y = jnp.ones(5)
    for f in (p.loss, p.dloss, p.d2loss):
        assert bool(jnp.all(jnp.isfinite(f(y, h))))
    assert float(p.loss(y, h)[0]) == pytest.approx(800.0)
    assert float(jax.grad(lambda x: p.loss(1.0, x))(0.3)) == pytest.approx(float(p.dloss(1.0, 0.3)))
