"""The finite-d SGD simulator of the committee family, and the ODEs checked against it.

- Initial weights: built to match given overlaps exactly (also for singular Ω), or drawn as the
  spec's `init random(...)` says, reproducing the theory's own initial overlaps.
- Reproducibility: a seed's trajectory depends neither on the output times nor on how many
  seeds run beside it.
- Held-out test set: the loss on fresh samples agrees, seed by seed, with the analytic risk of
  the very overlaps measured at that time, within its Monte Carlo error; the same check sees a
  missing label-noise term and a 5 % scale error.
- Standard errors of the evolving states; a Gaussian (not orthonormalised) random teacher.
- Theory against simulation (docs/theory.md, Facts): committee_erf at γ c_p = 0.5 and d = 1000
  tracks the ODE within statistical error plus an O(d^{-1/2}) allowance, while the same ODE
  without the SGD variance term (the compiler's own `regime gradient_flow` version of the model)
  fails the same test; ReLU units in the gradient-flow regime at d = 3 track their ODE; the
  trained second layer, minibatches with label noise and a non-square loss track theirs.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

import eqgen
from eqgen.errors import UsageError
from eqgen.simulate import committee as sim
from eqgen.simulate.progress import ProgressBar

try:  # `tests` is not a package: pytest puts tests/ itself on sys.path
    from helpers import committee_spec, model_path, random_overlaps, write_spec
except ModuleNotFoundError:  # pragma: no cover - run with tests/ as a package
    from tests.helpers import committee_spec, model_path, random_overlaps, write_spec

ERF = model_path("committee_erf")
RELU = model_path("committee_relu")
TIMES = [0.25, 0.5, 1, 2, 3, 4, 6, 8, 10]


def within(theory: np.ndarray, mean: np.ndarray, stderr: np.ndarray, allowance: np.ndarray,
           z: float = 3.0) -> np.ndarray:
    """Where |theory − simulation mean| ≤ z standard errors + an allowance (per time)."""
    return np.abs(theory - mean) <= z * stderr + allowance


# ---------------------------------------------------------------------------------------------
# initial weights


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constructed_weights_have_exactly_the_given_overlaps(seed: int) -> None:
    ov = random_overlaps(3, 2, seed, d=40)
    W, Ws = sim.weights_with_overlaps(ov["Q"], ov["M"], ov["P"], d=7, seed=seed)
    assert W.shape == (3, 7) and Ws.shape == (2, 7)
    np.testing.assert_allclose(W @ W.T / 7, ov["Q"], atol=1e-12)
    np.testing.assert_allclose(W @ Ws.T / 7, ov["M"], atol=1e-12)
    np.testing.assert_allclose(Ws @ Ws.T / 7, ov["P"], atol=1e-12)


def test_constructed_weights_for_a_singular_gram_matrix() -> None:
    # student = teacher: Ω = [[I, I], [I, I]] has rank 2, so d = 2 is enough
    eye = np.eye(2)
    W, Ws = sim.weights_with_overlaps(eye, eye, eye, d=2)
    np.testing.assert_allclose(W, Ws, atol=1e-12)
    np.testing.assert_allclose(W @ W.T / 2, eye, atol=1e-12)
    with pytest.raises(UsageError, match="too small.*rank 2"):
        sim.weights_with_overlaps(eye, eye, eye, d=1)


def test_sampled_weights_reproduce_the_spec_initial_overlaps() -> None:
    """committee_relu says `init random(d = 1000, seed = 1, teacher = orthonormal, scale = 0.5)`:
    simulated at d = 1000, the measured start is the theory's start, for every seed."""
    model = eqgen.load(RELU)
    sol = model.simulate(d=1000, seeds=2, save_at=[0.0])
    want = model.resolve().init
    assert sol.t.tolist() == [0.0]
    for name in ("Q", "M", "P"):
        np.testing.assert_allclose(sol[name][0], want[name], atol=1e-13)
    assert sol["excess_risk_stderr"][0] < 1e-15  # shared initial weights
    assert sol.metadata["initial_weights"].startswith("random(d = 1000, seed = 1")


GAUSSIAN_TEACHER = """model gaussian_teacher "erf committee, Gaussian random teacher"
param p = 3, k = 2, gamma = 1, Delta = 0
data gaussian
teacher committee(width = k, activation = erf(z / sqrt(2)), readout = 1/k, noise = Delta)
student committee(width = p, activation = erf(z / sqrt(2)), readout = 1/p, second_layer = fixed(1))
loss square
sgd learning_rate = gamma, batch = 1
regime high_dimensional
init random(d = 300, seed = 4, teacher = gaussian, scale = 0.7)
time t_max = 5
"""


def test_sampled_gaussian_teacher_reproduces_the_spec_initial_overlaps(tmp_path: Path) -> None:
    """`init random(..., teacher = gaussian)`: teacher rows i.i.d. N(0, 1), not orthonormalised,
    so P is a sample covariance; simulated at the spec's d, the measured start is the theory's,
    and `compare` starts the ODE from exactly it."""
    model = eqgen.load(write_spec(tmp_path, GAUSSIAN_TEACHER, "gaussian_teacher"))
    want = model.resolve().init
    assert abs(want["P"][0, 0] - 1) > 1e-3 and abs(want["P"][0, 1]) > 1e-3  # not orthonormal
    cmp = model.compare(d=300, seeds=2, save_at=[0.5], progress=False)
    for name in ("Q", "M", "P"):
        np.testing.assert_allclose(cmp[f"{name}_sim"][0], want[name], atol=1e-13)
        np.testing.assert_array_equal(cmp[name][0], cmp[f"{name}_sim"][0])
    assert "teacher = gaussian" in cmp.metadata["simulation"]["initial_weights"]


def test_explicit_initial_overlaps_override_the_random_init() -> None:
    model = eqgen.load(RELU)
    init = {"Q": [[1.0, 0.2], [0.2, 0.8]], "M": [[0.3, 0.0], [0.1, 0.2]]}
    sol = model.simulate(init=init, d=30, seeds=1, save_at=[0.0])
    np.testing.assert_allclose(sol["Q"][0], init["Q"], atol=1e-12)
    np.testing.assert_allclose(sol["M"][0], init["M"], atol=1e-12)
    np.testing.assert_allclose(sol["P"][0], np.eye(2), atol=1e-12)
    assert "constructed" in sol.metadata["initial_weights"]


# ---------------------------------------------------------------------------------------------
# steps, time, reproducibility, inputs


def test_time_is_steps_times_gamma_cp_over_d() -> None:
    model = eqgen.load(ERF)  # γ = 1, c_p = 1/2: dt = 0.5 / d
    sol = model.simulate(params={"gamma": 0.8}, d=40, seeds=1, save_at=[0.1, 0.33, 1.0])
    dt = 0.8 / 2 / 40
    np.testing.assert_allclose(sol.t, np.array([0, 10, 33, 100]) * dt)
    assert sol.metadata["steps"] == 100 and sol.metadata["time_per_step"] == pytest.approx(dt)
    assert {"d", "seeds", "seed"} <= set(sol.metadata)
    assert list(sol.observables) == ["risk", "risk_stderr", "excess_risk",
                                     "excess_risk_stderr"]
    # each evolving state's seed mean is followed by its standard error
    assert list(sol.states) == ["Q", "Q_stderr", "M", "M_stderr", "P", "a", "a_star"]
    assert np.isnan(sol["Q_stderr"]).all()  # a single seed: unknown
    assert sol.metadata["test_samples"] == 0 and "risk_test" not in sol.observables


def _raw(seeds: int, steps: list[int], seed: int = 3) -> sim.Trajectories:
    model = eqgen.load(ERF)
    r = model.resolve()
    W0, Ws = sim.weights_with_overlaps(r.init["Q"], r.init["M"], r.init["P"], d=25)
    s = {k: float(v) for k, v in model.module.scalars(r.params).items()}
    return sim.run(model.module, s, W0, Ws, r.init["a"], r.init["a_star"],
                   steps=np.asarray(steps), dt=0.02, batch=1, trained=False, seeds=seeds,
                   seed=seed, progress=False)


def test_a_trajectory_depends_only_on_its_seed() -> None:
    a = _raw(1, [0, 37, 300])
    np.testing.assert_array_equal(a.Q[-1], _raw(1, [0, 300]).Q[-1])  # other output times
    b = _raw(3, [0, 300])
    # more seeds beside it: the same samples (vectorised arithmetic may round differently)
    np.testing.assert_allclose(a.Q[-1, 0], b.Q[-1, 0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.M[-1, 0], b.M[-1, 0], rtol=1e-12, atol=1e-14)
    assert not np.allclose(b.Q[-1, 0], b.Q[-1, 1])  # seeds differ from one another
    c = _raw(1, [0, 300], seed=4)
    assert not np.allclose(a.Q[-1, 0], c.Q[-1, 0])  # and the base seed matters


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"d": 0}, "--d must be"), ({"d": 2.5}, "--d must be"), ({"d": True}, "--d must be"),
    ({"d": 100, "seeds": 0}, "--seeds must be"), ({"d": 100, "seed": -1}, "--seed must be"),
    ({"d": 3}, "too small"),  # Q, M, P of committee_erf have rank 4
    ({"d": 100, "t_max": -1.0}, "--t-max"), ({"d": 100, "save_at": [-1.0]}, "--save-at"),
])
def test_bad_simulation_inputs_are_usage_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        eqgen.load(ERF).simulate(**{"seeds": 1, **kwargs})


# ---------------------------------------------------------------------------------------------
# held-out test set


@pytest.fixture(scope="module")
def held_out() -> tuple[sim.Trajectories, dict[str, np.ndarray]]:
    """committee_erf with label noise Δ = 0.3 at d = 1000, 3 seeds, N = 10⁴ held-out samples
    per seed at t = 0, 0.5, 2: the raw trajectories and the analytic observables of every
    seed's measured overlaps."""
    model = eqgen.load(ERF)
    r = model.resolve({"Delta": 0.3})
    params = {k: float(v) for k, v in r.params.items()}
    s = {k: float(v) for k, v in model.module.scalars(params).items()}
    W0, Ws = sim.weights_with_overlaps(r.init["Q"], r.init["M"], r.init["P"], d=1000)
    dt = sim.time_per_step(model.module.REGIME, s["gamma"], s["c_p"], 1000, 1)
    raw = sim.run(model.module, s, W0, Ws, r.init["a"], r.init["a_star"],
                  steps=sim.output_steps([0.5, 2.0], dt), dt=dt, batch=1, trained=False,
                  seeds=3, seed=2, progress=False, test_samples=10_000)
    return raw, sim.per_seed_observables(model.module, raw, params)


def held_out_z(raw: sim.Trajectories, analytic: np.ndarray) -> tuple[np.ndarray, float]:
    """(z per seed and time, pooled z) of the held-out loss against `analytic` (T, S), in
    units of the held-out estimate's own Monte Carlo error √(var ℓ / N)."""
    err2 = raw.risk_test_var / raw.test_samples
    diff = raw.risk_test - analytic
    return diff / np.sqrt(err2), float(diff.sum() / np.sqrt(err2.sum()))


def test_held_out_risk_agrees_with_the_risk_of_the_measured_overlaps(held_out: tuple) -> None:
    """Seed by seed and time by time, the mean loss ½(y − f)² on fresh samples (labels with
    their noise) is the analytic risk ε + Δ/2 of the overlaps measured at that moment, within
    a few Monte Carlo errors (about 1.4 % of the risk per seed at N = 10⁴)."""
    raw, analytic = held_out
    assert raw.risk_test.shape == (3, 3) and raw.risk_test.dtype == np.float64
    excess = analytic["excess_risk"]
    assert excess[-1].max() < 0.5 * excess[0].min()  # learning happened over this window
    z, pooled = held_out_z(raw, analytic["risk"])
    assert np.abs(z).max() < 4.5, z
    assert abs(pooled) < 4, pooled
    assert np.all(np.diff(raw.risk_test[0]) != 0)  # fresh samples per seed, not shared


@pytest.mark.parametrize("planted", ["no_label_noise", "scaled_by_1.05", "scaled_by_0.95"])
def test_held_out_check_sees_a_planted_error(held_out: tuple, planted: str) -> None:
    """The same statistic against a wrong target fails: the excess risk (an estimator that
    forgot the label noise, Δ/2 = 0.15 off) and the risk off by 5 %. (Samples reused from
    training would not be caught: in one-pass SGD one sample moves the weights by O(1/d).)"""
    raw, analytic = held_out
    wrong = {"no_label_noise": analytic["excess_risk"],
             "scaled_by_1.05": 1.05 * analytic["risk"],
             "scaled_by_0.95": 0.95 * analytic["risk"]}[planted]
    _, pooled = held_out_z(raw, wrong)
    assert abs(pooled) > 6, pooled


def test_held_out_risk_in_the_solution_and_its_stream(tmp_path: Path) -> None:
    """`simulate(test_samples=N)`: `risk_test` and its standard error right after `risk`, the
    metadata says so, and the held-out samples of a seed at a step do not depend on the
    other output times."""
    model = eqgen.load(ERF)
    a = model.simulate(d=200, seeds=2, seed=1, save_at=[0.5, 1.0], test_samples=3000)
    assert list(a.observables) == ["risk", "risk_stderr", "risk_test", "risk_test_stderr",
                                   "excess_risk", "excess_risk_stderr"]
    assert a.metadata["test_samples"] == 3000 and a.metadata["risk_test_mc_error"] > 0
    b = model.simulate(d=200, seeds=2, seed=1, save_at=[1.0], test_samples=3000)
    np.testing.assert_array_equal(a["risk_test"][-1], b["risk_test"][-1])
    bound = 5 * np.hypot(a["risk_test_stderr"], a.metadata["risk_test_mc_error"])
    assert np.all(np.abs(a["risk_test"] - a["risk"]) < bound)
    for bad in (-1, 2.5, True):
        with pytest.raises(UsageError, match="--test-samples"):
            model.simulate(d=200, seeds=1, save_at=[0.5], test_samples=bad)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_is_drawn_on_a_terminal_only() -> None:
    tty, pipe = _Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar("simulating m", 200, stream=stream, delay=0, min_interval=0)
        bar.update(100)
        bar.close()
    assert "simulating m" in tty.getvalue() and " 50.0%" in tty.getvalue()
    assert "100.0%" in tty.getvalue() and tty.getvalue().endswith("\n")  # closed: full, newline
    assert pipe.getvalue() == ""


# ---------------------------------------------------------------------------------------------
# theory against simulation


@pytest.fixture(scope="module")
def erf_comparison() -> eqgen.Solution:
    """committee_erf, p = k = 2, γ = 1 with readout 1/p (γ c_p = 0.5), d = 1000, 4 seeds."""
    return eqgen.load(ERF).compare(d=1000, seeds=4, seed=0, save_at=TIMES)


def test_erf_ode_tracks_the_simulation(erf_comparison: eqgen.Solution) -> None:
    cmp = erf_comparison
    assert cmp.t[0] == 0 and np.allclose(cmp.t[1:], TIMES)
    th = cmp["excess_risk"]
    assert th[-1] < 0.05 * th[0]  # a real learning curve, not a flat line
    ok = within(th, cmp["excess_risk_sim"], cmp["excess_risk_sim_stderr"],
                np.abs(th) / np.sqrt(1000))
    assert ok.all(), (cmp.t[~ok], th[~ok], cmp["excess_risk_sim"][~ok])
    # the theory started from the simulation's measured overlaps
    np.testing.assert_array_equal(cmp["Q"][0], cmp["Q_sim"][0])
    # standard errors of the measured overlaps: zero at the shared start, then positive
    assert np.all(cmp["Q_sim_stderr"][0] == 0) and np.all(cmp["M_sim_stderr"][1:] > 0)


def test_erf_ode_without_the_variance_term_fails(erf_comparison: eqgen.Solution,
                                                 tmp_path: Path) -> None:
    """The same model with `regime gradient_flow` is the ODE with its I4 variance term left
    out; started from the same measured overlaps it is 10–20 % off from t ≈ 1 on, far
    outside the band."""
    cmp = erf_comparison
    text = ERF.read_text().replace("regime high_dimensional", "regime gradient_flow")
    text = text.replace("model committee_erf ", "model committee_erf_no_variance ")
    assert "regime gradient_flow" in text
    model = eqgen.load(write_spec(tmp_path, text, "committee_erf_no_variance"))
    assert model.module.REGIME == "gradient_flow"
    start = {name: cmp[f"{name}_sim"][0] for name in ("Q", "M", "P", "a", "a_star")}
    wrong = model.solve(init=start, save_at=cmp.t)["excess_risk"]
    ok = within(wrong, cmp["excess_risk_sim"], cmp["excess_risk_sim_stderr"],
                np.abs(cmp["excess_risk"]) / np.sqrt(1000))
    assert not ok[cmp.t >= 2].any(), ok
    assert np.max(np.abs(wrong / cmp["excess_risk_sim"] - 1)) > 0.1


def test_gradient_flow_at_small_d_tracks_the_ode() -> None:
    """ReLU (regime gradient_flow), d = 3, p = 10, k = 2, γ c_p = 0.005: population gradient
    flow holds at any d as γ → 0, so SGD follows the ODE up to the neglected variance term,
    of relative order γ c_p (allowance 10 γ c_p), and the sampling noise over 8 seeds."""
    model = eqgen.load(RELU)
    cmp = model.compare(params={"p": 10, "gamma": 0.05}, d=3, seeds=8, seed=0,
                        save_at=[0.5, 1, 2, 5, 10, 20])
    assert cmp.metadata["simulation"]["time_per_step"] == pytest.approx(0.005 / 3)
    th = cmp["excess_risk"]
    assert th[-1] < 0.01 * th[0]
    ok = within(th, cmp["excess_risk_sim"], cmp["excess_risk_sim_stderr"], 0.05 * np.abs(th))
    assert ok.all(), (cmp.t[~ok], th[~ok], cmp["excess_risk_sim"][~ok])


VARIANT_INIT = {"Q": [[0.5, 0.0], [0.0, 0.5]], "M": [[0.1, 0.05], [0.02, 0.08]]}


@pytest.mark.parametrize("variant", ["trained_readout", "batch_and_noise", "logistic_loss"])
def test_other_model_features_track_the_ode(variant: str, tmp_path: Path) -> None:
    """The second-layer update and its rate, the 1/B of the variance term with label noise,
    and the error signal of a non-square loss: each simulated as the spec says."""
    init = VARIANT_INIT
    if variant == "trained_readout":
        model = eqgen.load(model_path("committee_trained_readout"))
        init = None
    elif variant == "batch_and_noise":  # γ c_p / B = 0.5 with B = 4, Δ = 0.3
        model = eqgen.load(committee_spec(tmp_path, name="batch_noise", batch=4, gamma=4.0,
                                          Delta=0.3))
    else:
        model = eqgen.load(committee_spec(tmp_path, name="logistic", p=1, k=1,
                                          loss="log(1 + exp(-y * yhat))"))
        init = {"Q": [[0.5]], "M": [[0.1]]}
    cmp = model.compare(init=init, d=1000, seeds=4, seed=1, save_at=[0.5, 1, 2, 5])
    th = cmp["risk"]
    ok = within(th, cmp["risk_sim"], cmp["risk_sim_stderr"], np.abs(th) / np.sqrt(1000))
    assert ok.all(), (cmp.t[~ok], th[~ok], cmp["risk_sim"][~ok])
    if variant == "trained_readout":
        assert not np.allclose(cmp["a"][-1], cmp["a"][0])  # the readout did move
        np.testing.assert_allclose(cmp["a_sim"][-1], cmp["a"][-1], rtol=0.03)
