"""The Monte Carlo error of a sampled DMFT (eqgen.replicas): estimated from replicas, checked
against the actual spread of independent solves, and carried into `compare`."""

from __future__ import annotations

import numpy as np
import pytest

import eqgen
import eqgen.dmft_model
from eqgen.compare import compare, deviations
from eqgen.errors import UsageError
from eqgen.replicas import replica_seed
from eqgen.runtime.solution import Solution
from tests.helpers import model_path, run_quiet

NAMES = ("m", "Q", "train_loss", "train_error", "test_error")
SAMPLES, T_MAX = 4000, 2.0


@pytest.fixture(scope="module")
def logistic() -> eqgen.Model:
    return eqgen.load(model_path("gmm_two_cluster_logistic"))


@pytest.fixture(scope="module")
def actual_spread(logistic) -> dict[str, np.ndarray]:
    """The seed-to-seed standard deviation of 16 independent solves of SAMPLES trajectories:
    what the standard error of one such solve must estimate."""
    runs = [logistic.solve(samples=SAMPLES, seed=s, t_max=T_MAX) for s in range(100, 116)]
    return {k: np.std([r[k] for r in runs], axis=0, ddof=1) for k in NAMES}


def estimated_over_actual(logistic, actual: dict[str, np.ndarray]) -> float:
    """Median over t ≥ 0.5 and the observables of (replica estimate, averaged over three
    solves) / (actual spread)."""
    runs = [logistic.solve(samples=SAMPLES, seed=s, t_max=T_MAX, replicas=8) for s in range(3)]
    sel = runs[0].t >= 0.5
    return float(np.median(np.concatenate([
        np.mean([r[f"{k}_stderr"] for r in runs], axis=0)[sel] / actual[k][sel]
        for k in NAMES])))


def test_replica_error_matches_the_spread_of_independent_solves(logistic, actual_spread):
    """Measured: 1.07 (per observable 0.8–1.16); the estimate from 8 replicas scatters by
    about 25 % per time, the actual spread from 16 solves by about 18 %."""
    assert 0.7 < estimated_over_actual(logistic, actual_spread) < 1.45


def test_replica_error_without_the_root_R_is_caught(logistic, actual_spread, monkeypatch):
    """The planted error: the replicas' own spread (each has 1/8 of the trajectories) taken as
    the error of the full solve is √8 ≈ 2.8 times too large, outside the bound above."""
    monkeypatch.setattr(eqgen.dmft_model, "replica_stderr", lambda runs: {
        k: np.std(np.stack([r[k] for r in runs]), axis=0, ddof=1) for k in runs[0]})
    assert estimated_over_actual(logistic, actual_spread) > 2.0


def test_solve_columns_metadata_and_the_main_curve_unchanged(logistic):
    plain = logistic.solve(samples=SAMPLES, seed=3, t_max=1.0)
    sol = logistic.solve(samples=SAMPLES, seed=3, t_max=1.0, replicas=4)
    assert list(sol.observables) == [x for k in plain.observables for x in (k, f"{k}_stderr")]
    for k in plain.observables:  # the reported curve is the N-trajectory solve itself
        np.testing.assert_array_equal(sol[k], plain[k])
    assert np.all(sol["m_stderr"][1:] > 0) and sol["m_stderr"][0] == 0  # m(0) is given
    assert sol.metadata["replicas"] == 4 and sol.metadata["replica_samples"] == SAMPLES // 4
    seeds = {replica_seed(3, i) for i in range(4)}
    assert len(seeds) == 4 and 3 not in seeds and replica_seed(3, 0) == replica_seed(3, 0)


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"replicas": 1}, "at least 2"),
    ({"replicas": 50, "samples": 1000}, "20 trajectories per replica"),
])
def test_bad_replica_counts_are_usage_errors(logistic, kwargs, text):
    with pytest.raises(UsageError, match=text):
        logistic.solve(t_max=1.0, **kwargs)


def test_exact_propagation_has_no_replicas():
    ridge = eqgen.load(model_path("glm_ridge_square"))
    with pytest.raises(UsageError, match="no Monte Carlo error"):
        ridge.solve(t_max=1.0, replicas=4)
    cmp = ridge.compare(d=200, seeds=2, t_max=0.5, progress=False)  # default: none needed
    assert "m_stderr" not in cmp.observables and "m_sim_stderr" in cmp.observables


def test_compare_adds_the_theory_error_to_the_simulation_error():
    t = np.array([0.0, 1.0, 2.0])
    theory = Solution(t, {"m": np.array([0.0, 1.0, 2.0]), "m_stderr": np.array([0, 3.0, 0])},
                      {}, {})
    sim = Solution(t, {"m": np.array([0.0, 6.0, 2.0]), "m_stderr": np.array([0, 4.0, 1])},
                   {}, {})
    cmp = compare(theory, sim)
    assert list(cmp.observables) == ["m", "m_stderr", "m_sim", "m_sim_stderr"]
    dev = deviations(cmp)["m"]
    assert dev["max_in_stderr"] == pytest.approx(1.0)  # |1 − 6| / √(3² + 4²)
    assert dev["theory_stderr_included"]


def test_dmft_compare_on_the_command_line_carries_the_theory_error(tmp_path):
    out = tmp_path / "cmp.csv"
    r = run_quiet("compare", model_path("gmm_two_cluster_logistic"), "--d", "300", "--seeds",
                  "2", "--t-max", "0.5", "--samples", "2000", "--replicas", "4", "-o", str(out),
                  "--plot", str(tmp_path / "cmp.png"))
    assert r.code == 0, r.err
    header = out.read_text().splitlines()[0].split(",")
    assert header[1:5] == ["m", "m_stderr", "m_sim", "m_sim_stderr"]
    assert (tmp_path / "cmp.png").stat().st_size > 0
    r = run_quiet("compare", model_path("committee_erf"), "--d", "100", "--replicas", "4")
    assert r.code == 2 and "--replicas applies to DMFT models only" in r.err


def test_a_round_off_error_gives_no_z():
    """At a start every seed shares, standard errors are round-off (1e-17): a difference of
    1e-16 there must not count as ten errors (it gave z = 1e12 for a smoothed-hinge test loss
    at t = 0, a known smoothing difference divided by round-off)."""
    t = np.array([0.0, 1.0])
    theory = Solution(t, {"m": np.array([0.5, 1.0])}, {}, {})
    sim = Solution(t, {"m": np.array([0.5 + 1e-16, 1.3]), "m_stderr": np.array([1e-17, 0.1])},
                   {}, {})
    assert deviations(compare(theory, sim))["m"]["max_in_stderr"] == pytest.approx(3.0)
