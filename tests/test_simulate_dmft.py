"""The finite-d simulator of multi-pass SGD and the numpy DMFT baseline (docs/dmft.md).

The simulator is checked against an exact computation with the same data set (to round-off),
against analytic t = 0 values, and against the Marchenko–Pastur closed form: a hand-written
problem at d = 2000, and the shipped `models/glm_ridge_square.eqg` through `Model.simulate`
(where a 10 % error in η or α fails the same check). Running the time scan in pieces (for the
progress bar) changes no number. `DmftModel.simulate` writes each mean beside its standard error
and records the measured start, from which `DmftModel.compare` starts the theory (shown with a
planted start off the spec's). The baseline sweep is checked against the closed form within
Monte Carlo error and at t = 0.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

import eqgen
import eqgen.simulate.dmft as dmft_sim
from benchmarks.baseline_dmft_numpy import numpy_sweep, random_inputs
from eqgen.runtime.dmft_problem import DmftProblem
from eqgen.simulate.dmft import Dataset, design_matrix, draw_dataset, seed_keys, simulate_dmft
from tests.helpers import model_path
from tests.helpers_dmft import (
    gaussian_mean,
    logistic_two_cluster_problem,
    mp_closed_form,
    square_glm_problem,
)

KEYS = ("m", "Q", "train_loss", "train_error", "test_error", "test_loss")
RIDGE = model_path("glm_ridge_square")


def _dataset(problem: DmftProblem, d: int, seed: int, index: int):
    """The simulator's data set for run `index` of base seed `seed`, as numpy arrays."""
    data_key, selection_key = seed_keys(seed, index)
    data = jax.jit(draw_dataset, static_argnums=(0, 1))(problem, d, data_key)
    X = np.asarray(design_matrix(problem, data))
    return X, np.asarray(data.y), np.asarray(data.v), np.asarray(data.w0), selection_key


# -- simulator: exact agreement with an independent computation on the same data ----------------


def test_simulator_matches_exact_linear_dynamics() -> None:
    """Square loss, GD, ridge: w_k = e_k(Σ) w0 + (1 − e_k(Σ)) (λ + Σ)⁻¹ Xᵀy/√d, Σ = XᵀX/d."""
    d, seeds = 300, 2
    problem = square_glm_problem(alpha=1.5, lam=0.1, eta=0.1, steps=25, m0=0.2, q0=0.5)
    out = simulate_dmft(problem, d, seeds=seeds, seed=7)
    assert out["t"].shape == (problem.steps + 1,)
    for name in KEYS:
        assert out[name].shape == (seeds, problem.steps + 1)
    k = np.arange(problem.steps + 1)
    for index in range(seeds):
        X, y, v, w0, _ = _dataset(problem, d, 7, index)
        s, U = np.linalg.eigh(X.T @ X / d)
        decay = (1.0 - problem.eta * (problem.lam + s))[None, :] ** k[:, None]
        target = U.T @ (X.T @ y / math.sqrt(d)) / (problem.lam + s)
        W = (decay * (U.T @ w0) + (1.0 - decay) * target) @ U.T  # (K+1, d)
        H = W @ X.T / math.sqrt(d)
        np.testing.assert_allclose(out["m"][index], W @ v / d, rtol=0, atol=1e-10)
        np.testing.assert_allclose(out["Q"][index], (W**2).sum(1) / d, rtol=0, atol=1e-10)
        np.testing.assert_allclose(out["train_loss"][index], 0.5 * ((H - y) ** 2).mean(1),
                                   rtol=0, atol=1e-10)
    again = simulate_dmft(problem, d, seeds=seeds, seed=7)
    for name in KEYS:
        np.testing.assert_array_equal(out[name], again[name])
    other = simulate_dmft(problem, d, seeds=1, seed=8)
    assert not np.allclose(other["m"][0], out["m"][0])


def test_simulator_matches_numpy_recursion_mixture_persistent_sgd() -> None:
    """Logistic, two clusters, persistent SGD: the same recursion iterated in numpy with the
    simulator's own data set and selection keys."""
    d = 200
    problem = logistic_two_cluster_problem(alpha=2.0, Delta=0.5, lam=0.05, eta=0.2, steps=20,
                                           m0=0.1, q0=1.0, b=0.3, tau=1.0)
    out = simulate_dmft(problem, d, seeds=1, seed=3)
    X, y, v, w, key = _dataset(problem, d, 3, 0)
    sel = problem.selection_start(jax.random.fold_in(key, 0), y.shape)
    fractions = []
    for k in range(problem.steps + 1):
        h = X @ w / math.sqrt(d)
        assert abs(out["m"][0, k] - w @ v / d) < 1e-10
        assert abs(out["Q"][0, k] - w @ w / d) < 1e-10
        assert abs(out["train_loss"][0, k] - np.logaddexp(0.0, -y * h).mean()) < 1e-10
        assert abs(out["train_error"][0, k] - np.mean(np.sign(h) != y)) < 1e-12
        s = np.asarray(sel)
        fractions.append(s.mean())
        grad = X.T @ (s * -y / (1.0 + np.exp(y * h))) / math.sqrt(d) / problem.kappa
        w = w - problem.eta * (problem.lam * w + grad)
        sel = problem.selection_next(jax.random.fold_in(key, k + 1), sel)
    assert min(fractions) > 0.0 and max(fractions) < 1.0  # a real selection was exercised


# -- simulator: analytic values ------------------------------------------------------------------


@pytest.mark.parametrize("m0", [0.0, 0.4])
def test_simulator_initial_values_logistic(m0: float) -> None:
    """t = 0: m = m0, Q = m0² + q0 exactly; y h ~ N(m0, ΔQ) per sample, so the training loss is
    E log(1 + e^{−u}) and the error P(u < 0), within sampling error; at m0 = 0, dm/dt = α/2."""
    d, seeds, q0, Delta, alpha = 1000, 2, 1.0, 0.5, 3.0
    problem = logistic_two_cluster_problem(alpha=alpha, Delta=Delta, lam=0.3, eta=0.05, steps=1,
                                           m0=m0, q0=q0)
    out = simulate_dmft(problem, d, seeds=seeds, seed=1)
    np.testing.assert_allclose(out["m"][:, 0], m0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["Q"][:, 0], m0**2 + q0, rtol=0, atol=1e-12)
    n_total = seeds * round(alpha * d)
    var = Delta * (m0**2 + q0)
    loss_mean = gaussian_mean(lambda u: np.logaddexp(0.0, -u), m0, var)
    loss_std = math.sqrt(gaussian_mean(lambda u: np.logaddexp(0.0, -u) ** 2, m0, var)
                         - loss_mean**2)
    assert abs(out["train_loss"][:, 0].mean() - loss_mean) < 5 * loss_std / math.sqrt(n_total)
    p_wrong = 0.5 * math.erfc(m0 / math.sqrt(2 * var))
    assert (abs(out["train_error"][:, 0].mean() - p_wrong)
            < 5 * math.sqrt(p_wrong * (1 - p_wrong) / n_total))
    np.testing.assert_allclose(out["test_error"][:, 0], p_wrong, rtol=1e-9)
    np.testing.assert_allclose(out["test_loss"][:, 0], loss_mean, rtol=1e-9)
    if m0 == 0.0:
        # dm/dt(0) = −α mean_μ ℓ'_μ a_μ = α mean_μ σ(−c r_μ)(1 + c√Δ ξ_μ), r ⟂ ξ
        slope = (out["m"][:, 1] - out["m"][:, 0]).mean() / problem.eta
        second = (1 + Delta) * gaussian_mean(lambda u: 1 / (1 + np.exp(u)) ** 2, 0.0, Delta * q0)
        std = alpha * math.sqrt(second - 0.25)
        assert abs(slope - alpha / 2) < 5 * std / math.sqrt(n_total)


def test_simulator_near_marchenko_pastur_closed_form() -> None:
    """Square loss GLM, GD, d = 2000: m, Q and the training loss within finite-size error of the
    d → ∞ closed form (per-run fluctuations are about 0.5/√d here)."""
    d, seeds = 2000, 3
    problem = square_glm_problem(alpha=2.0, lam=0.05, eta=0.1, steps=30, m0=0.2, q0=0.5)
    exact = mp_closed_form(problem.alpha, problem.lam, problem.eta, problem.m0, problem.q0,
                           problem.steps)
    out = simulate_dmft(problem, d, seeds=seeds, seed=0)
    for name in ("m", "Q", "train_loss", "test_loss"):
        deviation = np.abs(out[name].mean(axis=0) - exact[name]).max()
        assert deviation < 2.5 / math.sqrt(d * seeds), (name, deviation)
    # the closed form is far from trivial over this window: the test can see a wrong rate
    assert exact["m"][-1] - exact["m"][0] > 0.3


# -- the shipped ridge model against its closed form ----------------------------------------------

RIDGE_D, RIDGE_SEEDS = 1000, 24
CLOSED_FORM_KEYS = ("m", "Q", "train_loss", "test_loss")


@pytest.fixture(scope="module")
def ridge_simulation() -> eqgen.Solution:
    """`models/glm_ridge_square.eqg` as shipped (α = 2, λ = 0.1, GD with η = 0.1 to t = 10,
    m₀ = 0, q₀ = 1), simulated through the model at d = 1000 with 24 seeds (about 10 s)."""
    return eqgen.load(RIDGE).simulate(d=RIDGE_D, seeds=RIDGE_SEEDS, seed=0, progress=False)


def ridge_closed_form(sim: eqgen.Solution, **wrong: float) -> dict[str, np.ndarray]:
    """The Marchenko–Pastur closed form at the spec's parameters (or with some `wrong` ones)."""
    r = eqgen.load(RIDGE).resolve()
    at = {"alpha": r.alpha, "lam": r.lam, "eta": r.eta, "m0": r.m0, "q0": r.q0, **wrong}
    return mp_closed_form(k_steps=len(sim.t) - 1, **at)


def worst_in_tolerance(sim: eqgen.Solution, exact: dict[str, np.ndarray]) -> float:
    """The largest |simulation − closed form| over t and observables, in units of the
    tolerance 5 standard errors (over seeds) + 0.5/d. The per-run spread is about 0.4–1/√d
    here (measured), so 5 standard errors are about 2–5/√(d · seeds); 0.5/d allows for the
    O(1/d) finite-size bias (measured consistent with zero at d = 1000 and 2000)."""
    worst = 0.0
    for name in CLOSED_FORM_KEYS:
        tol = 5 * sim[f"{name}_stderr"] + 0.5 / RIDGE_D
        worst = max(worst, float(np.max(np.abs(sim[name] - exact[name]) / tol)))
    return worst


def test_shipped_ridge_model_matches_its_closed_form(ridge_simulation: eqgen.Solution) -> None:
    """m, Q, training and test loss of the shipped spec's simulation are the d → ∞ closed form
    (docs/dmft.md, the square-loss closed form) within the statistical tolerance, at every
    step to t = 10."""
    sim = ridge_simulation
    exact = ridge_closed_form(sim)
    np.testing.assert_allclose(sim.t, exact["t"], rtol=0, atol=1e-12)
    assert exact["m"][-1] > 0.8 and exact["train_loss"][-1] < 0.5 * exact["train_loss"][0]
    assert worst_in_tolerance(sim, exact) < 1


@pytest.mark.parametrize(("name", "factor"), [("eta", 1.1), ("eta", 0.9), ("alpha", 1.1),
                                              ("alpha", 0.9)])
def test_ridge_closed_form_with_a_planted_error_fails(ridge_simulation: eqgen.Solution,
                                                      name: str, factor: float) -> None:
    """The same check against the closed form with η or α off by 10 % fails, by a margin:
    the tolerance is tight enough to see such an error."""
    r = eqgen.load(RIDGE).resolve()
    value = {"eta": r.eta, "alpha": r.alpha}[name] * factor
    assert worst_in_tolerance(ridge_simulation,
                              ridge_closed_form(ridge_simulation, **{name: value})) > 1.5


# -- the scan in pieces, the model's simulate and compare ----------------------------------------


def test_scan_in_pieces_changes_nothing_and_moves_the_progress() -> None:
    """Persistent SGD (the selection's keys cross the pieces' borders): 31 observations in
    pieces of 7 steps equal one piece of 31, and progress is reported within each seed."""
    problem = logistic_two_cluster_problem(alpha=2.0, Delta=0.5, lam=0.05, eta=0.2, steps=30,
                                           m0=0.1, q0=1.0, b=0.3, tau=1.0)
    whole = simulate_dmft(problem, 150, seeds=2, seed=4, chunk_steps=problem.steps + 1)
    calls: list[int] = []
    pieces = simulate_dmft(problem, 150, seeds=2, seed=4, chunk_steps=7, progress=calls.append)
    for name in KEYS:
        np.testing.assert_allclose(pieces[name], whole[name], rtol=1e-12, atol=1e-14)
    assert calls == [6, 13, 20, 27, 30, 36, 43, 50, 57, 60]  # steps done, out of 2 · 30
    default: list[int] = []
    simulate_dmft(problem, 150, seeds=1, seed=4, progress=default.append)
    assert len(default) == 16 and default[-1] == 30  # about K/16 steps a piece by default


def test_dmft_simulate_columns_and_measured_start() -> None:
    """Each mean beside its standard error (as for committee models), and the measured start
    (seed means of m(0), Q(0) and q(0) = Q(0) − m(0)²) in the metadata."""
    sim = eqgen.load(RIDGE).simulate(d=200, seeds=2, t_max=0.5, progress=False)
    assert list(sim.observables) == [x for k in KEYS for x in (k, f"{k}_stderr")]
    start = sim.metadata["measured_start"]
    assert (start["m"], start["Q"]) == (sim["m"][0], sim["Q"][0])
    assert start["q"] == pytest.approx(1.0, abs=1e-12)  # the spec's q0, to round-off
    assert sim.metadata["spec_start"] == {"m": 0.0, "q": 1.0}


@pytest.fixture
def planted_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator's w(0) off the spec's start: 1.3 w(0) + 0.25 v*, i.e. m(0) = 1.3 m₀ + 0.25
    and q(0) = 1.69 q₀ (compiled programs are dropped before and after)."""
    original = dmft_sim.draw_dataset

    def planted(problem: DmftProblem, d: int, key: jax.Array) -> Dataset:
        data = original(problem, d, key)
        return data._replace(w0=1.3 * data.w0 + 0.25 * data.v)

    dmft_sim._compiled.cache_clear()
    monkeypatch.setattr(dmft_sim, "draw_dataset", planted)
    yield
    dmft_sim._compiled.cache_clear()


def test_dmft_compare_starts_the_theory_from_the_measured_start(planted_start: None) -> None:
    """With a simulation that starts off the spec's (m₀, q₀) = (0, 1), the theory starts where
    the simulation did, (0.25, 1.69), not where the spec says, and follows the closed form
    from there (exact Gaussian propagation for this model)."""
    cmp = eqgen.load(RIDGE).compare(d=300, seeds=2, t_max=1.0, progress=False)
    start = cmp.metadata["theory_start"]
    assert start["m"] == pytest.approx(0.25, abs=1e-12)
    assert start["q"] == pytest.approx(1.69, abs=1e-12)
    assert start["m"] == cmp.metadata["simulation"]["measured_start"]["m"]
    np.testing.assert_allclose(cmp["m"][0], cmp["m_sim"][0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(cmp["Q"][0], cmp["Q_sim"][0], rtol=0, atol=1e-12)
    r = eqgen.load(RIDGE).resolve()
    exact = mp_closed_form(r.alpha, r.lam, r.eta, 0.25, 1.69, len(cmp.t) - 1)
    np.testing.assert_allclose(cmp["m"], exact["m"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(cmp["Q"], exact["Q"], rtol=0, atol=1e-6)


# -- numpy baseline sweep -------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_baseline_sweep_matches_closed_form(alpha: float) -> None:
    """Square loss GLM, GD: the sweep's m, Q, losses within Monte Carlo error of the closed form
    (per-sweep std ≲ 4.5e-3 at N = 20 000; averaged over 4 sweeps), R exactly (ℓ'' = 1)."""
    N, sweeps = 20_000, 4
    problem = square_glm_problem(alpha=alpha, lam=0.05, eta=0.1, steps=30, m0=0.2, q0=0.5)
    exact = mp_closed_form(alpha, problem.lam, problem.eta, problem.m0, problem.q0,
                           problem.steps)
    runs = [numpy_sweep(problem, **random_inputs(problem, N, seed)) for seed in range(sweeps)]
    for name in ("m", "Q", "train_loss", "test_loss"):
        mean = np.mean([run[name] for run in runs], axis=0)
        assert np.abs(mean - exact[name]).max() < 1e-2, name
    K = problem.steps
    lag = np.subtract.outer(np.arange(K + 1), np.arange(K + 1))
    R_exact = np.where(lag >= 0, exact["R"][np.clip(lag, 0, K)], 0.0)
    for run in runs:
        np.testing.assert_allclose(run["R"], R_exact, rtol=0, atol=1e-12)
        np.testing.assert_allclose(run["nu_hat"], alpha, rtol=1e-12)
        assert np.all(np.triu(run["M_R"]) == 0.0)
        np.testing.assert_allclose(run["Q"], run["m"] ** 2 + np.diag(run["C_perp"]))
    mean_C = np.mean([run["C_perp"] for run in runs], axis=0)
    assert np.abs(mean_C - exact["C_perp"]).max() < 1e-2


def test_baseline_sweep_initial_values_logistic() -> None:
    """Logistic, two clusters, m0 = 0, q0 = 1: train loss E log(1 + e^{−u}), u ~ N(0, Δ), and
    dm/dt(0) = α/2, within Monte Carlo error."""
    N = 40_000
    problem = logistic_two_cluster_problem(alpha=3.0, Delta=0.5, lam=0.1, eta=0.05, steps=2)
    out = numpy_sweep(problem, **random_inputs(problem, N, 0))
    loss_mean = gaussian_mean(lambda u: np.logaddexp(0.0, -u), 0.0, problem.Delta)
    assert abs(out["train_loss"][0] - loss_mean) < 5 * 0.5 / math.sqrt(N)
    assert abs((out["m"][1] - out["m"][0]) / problem.eta - problem.alpha / 2) < 0.05
    assert out["Q"][0] == pytest.approx(1.0)
    assert out["test_error"][0] == pytest.approx(0.5)
