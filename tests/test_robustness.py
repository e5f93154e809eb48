"""Robustness at run time, for both families: numerical failures of solve, simulate and
compare stop with exit 3 and say what, when and what to try (partial results still written,
marked partial); solves, sweeps and simulations too large for the memory or the time are
refused up front with an estimate; a step past a known stability limit is warned about; the
same inputs give the same numbers to the bit; concurrent `eqgen generate` of one model leaves
a valid file.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import eqgen
from eqgen.errors import NumericalError
from eqgen.model import Model
from eqgen.runtime import health
from tests.helpers import ROOT, committee_spec, model_path, run_quiet, write_spec

FORBIDDEN = re.compile(r"Traceback|internal error|\b[A-Z][A-Za-z]*(Error|Exception)\b")


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


def failure_time(stderr: str) -> float:
    m = re.search(r"\(at t = ([0-9.eE+-]+)\)", stderr)
    assert m, f"no failure time in\n{stderr}"
    return float(m[1])


# ---------------------------------------------------------------------------------------------
# numerical failure at run time: committee models


def test_diverging_committee_exits_3_with_partial_results(tmp_path: Path):
    """σ = z² at a large learning rate blows up in finite time: exit 3, what, when, a hint,
    and the finite trajectory before the failure in the CSV."""
    out = tmp_path / "div.csv"
    r = run_quiet("solve", model_path("committee_square"), "--set", "gamma=10",
                  "--max-steps", "2000", "-o", out)
    assert r.code == 3, r.err
    assert not FORBIDDEN.search(r.err), r.err
    assert r.err.count("numerical failure:") == 1 and "hint:" in r.err
    t_fail = failure_time(r.err)
    assert "partial results" in r.err and out.exists()
    names, rows = read_csv(out)
    assert names[0] == "t" and len(rows) >= 2
    assert np.all(np.isfinite(rows)) and rows[-1, 0] < t_fail
    assert rows[-1, names.index("risk")] > 3 * rows[0, names.index("risk")]  # it was diverging
    assert "probably diverging" in r.err  # the growth before the failure is pointed out
    hint = r.err.split("hint:")[1]
    assert hint.count("diverging") == 1 and "otherwise:" not in hint  # said once
    assert "eqgen stability" in r.err  # where the largest stable learning rate comes from
    meta = read_meta(out)
    assert meta["partial"] is True and meta["failure"]["t"] == pytest.approx(t_fail)
    assert "numerical failure" not in meta["failure"]["message"]
    assert meta["failure"]["message"] in r.err


def read_meta(path: Path) -> dict[str, Any]:
    import json

    return json.loads(Path(str(path) + ".meta.json").read_text())


@pytest.mark.parametrize("message, other", [
    ("the step-size controller gave up (step size too small)", "kvaerno5"),
    ("the solver took the maximum number of steps (100)", "--rtol"),
])
def test_divergence_hint_says_it_once_then_the_alternative(message: str, other: str):
    """A solver failure after the overlaps grew gets one divergence hint, then what else to
    try; not the driver's own guess repeated."""
    from eqgen.runtime import ode

    t = np.linspace(0, 1, 5)
    Q = np.exp(3 * t)[:, None, None] * np.eye(2)
    raw = ode.RawSolution(t, {"Q": Q, "M": 0 * Q, "P": np.broadcast_to(np.eye(2), Q.shape)},
                          {}, 10, "tsit5")
    hint = {"kvaerno5": "lower the learning rate if the overlaps are diverging; if the "
                        "problem is stiff, try --solver kvaerno5",
            "--rtol": "loosen --rtol/--atol, shorten --t-max, or try --solver kvaerno5 if "
                      "stiff"}[other]
    error = NumericalError(message, t=1.0, hint=hint, partial=raw)
    health.explain_growth(error)
    assert error.hint.count("diverging") == 1 and error.hint.count(other) == 1, error.hint
    assert error.hint.startswith("the dynamics are probably diverging")
    assert str(error).startswith("the overlaps grew from 1 to 20.1")


# ---------------------------------------------------------------------------------------------
# partial results of simulate and compare


def test_diverging_committee_simulation_writes_its_times_up_to_the_failure(tmp_path: Path):
    out = tmp_path / "sim.csv"
    r = run_quiet("simulate", model_path("committee_square"), "--d", "200", "--seeds", "2",
                  "--t-max", "50", "--set", "gamma=5", "-o", out)
    assert r.code == 3, r.err
    assert not FORBIDDEN.search(r.err), r.err
    assert "the simulation diverged" in r.err and "hint:" in r.err
    t_fail = failure_time(r.err)
    names, rows = read_csv(out)
    assert names[:3] == ["t", "risk", "risk_stderr"] and len(rows) >= 2
    assert np.all(np.isfinite(rows)) and rows[-1, 0] < t_fail
    meta = read_meta(out)
    assert meta["partial"] is True and meta["failure"]["t"] == pytest.approx(t_fail)
    assert meta["kind"] == "simulation" and meta["seeds"] == 2


def test_a_simulation_divergence_is_dated_to_its_step_not_to_the_next_output(tmp_path: Path):
    """The same diverging SGD run (same seed: the same samples) with outputs at 0 and t = 50
    only, and on the default grid: both report the same failure time, well before t = 50,
    one step after the last good time."""
    times = {}
    for name, when in (("sparse", ["--save-at", "0,50"]), ("dense", ["--t-max", "50"])):
        out = tmp_path / f"{name}.csv"
        r = run_quiet("simulate", model_path("committee_square"), "--d", "200", "--seeds", "2",
                      *when, "--set", "gamma=5", "-o", out)
        assert r.code == 3 and "the simulation diverged" in r.err, r.err
        good = re.search(r"last good time t = ([0-9.eE+-]+)", r.err)
        assert good, r.err
        times[name] = (float(good[1]), failure_time(r.err))
        assert read_meta(out)["failure"]["t"] == pytest.approx(times[name][1])
    assert times["sparse"] == times["dense"]
    good, fail = times["sparse"]
    assert fail < 5 and fail - good == pytest.approx(0.0125)  # dt = γ c_p / d = 2.5 / 200


def test_compare_keeps_the_theory_when_the_simulation_diverges(tmp_path: Path):
    """The theory is solved at the simulated times before the failure (here it fails too,
    later on): both columns up to there, the simulation's error reported."""
    out = tmp_path / "cmp.csv"
    r = run_quiet("compare", model_path("committee_square"), "--d", "200", "--seeds", "2",
                  "--t-max", "50", "--set", "gamma=5", "-o", out)
    assert r.code == 3, r.err
    assert "the simulation diverged" in r.err
    t_fail = failure_time(r.err)
    names, rows = read_csv(out)
    sim, theory = rows[:, names.index("risk_sim")], rows[:, names.index("risk")]
    assert np.all(np.isfinite(sim)) and rows[-1, 0] < t_fail
    assert np.isfinite(theory[:3]).all()  # the theory's own values, up to its failure
    meta = read_meta(out)
    assert meta["partial"] is True and meta["failure"]["stage"] == "simulation"
    assert meta["kind"] == "comparison"


def test_compare_keeps_the_simulation_when_the_theory_fails(tmp_path: Path):
    """A theory that fails after a completed simulation (here: too few solver steps) keeps
    every simulated time, with the theory up to its failure and NaN after it."""
    out = tmp_path / "cmp.csv"
    r = run_quiet("compare", model_path("committee_erf"), "--d", "100", "--seeds", "2",
                  "--t-max", "2", "--max-steps", "3", "-o", out)
    assert r.code == 3, r.err
    assert "maximum number of steps" in r.err
    t_fail = failure_time(r.err)
    names, rows = read_csv(out)
    assert rows[-1, 0] == pytest.approx(2.0)  # the whole simulation
    assert np.all(np.isfinite(rows[:, names.index("risk_sim")]))
    theory = rows[:, names.index("risk")]
    assert np.isfinite(theory[rows[:, 0] < t_fail]).all() and theory[0] > 0
    assert np.isnan(theory[rows[:, 0] >= t_fail]).all()
    meta = read_meta(out)
    assert meta["partial"] is True and meta["failure"]["stage"] == "theory"
    assert meta["failure"]["t"] == pytest.approx(t_fail)


class _Planted:
    """A generated module whose dM/dt has a constant +1 added: M grows without Q and P, so
    |M_jr|² ≤ Q_jj P_rr soon fails and Ω stops being a covariance (a planted error)."""

    def __init__(self, module: Any):
        self._module = module
        self.vector_field = self._field

    def _field(self, t: Any, state: Any, params: Any) -> Any:
        d = self._module.vector_field(t, state, params)
        return {**d, "M": d["M"] + 1.0}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


@pytest.fixture(scope="module")
def erf_model() -> Model:
    return eqgen.load(model_path("committee_erf"))


def test_loss_of_positive_definiteness_is_caught_with_partial_solution(erf_model: Model):
    model = eqgen.load(model_path("committee_erf"))
    model._module = _Planted(erf_model.module)
    with pytest.raises(NumericalError) as info:
        model.solve(t_max=10)
    e = info.value
    assert "positive semi-definite" in str(e) and e.t is not None and 0 < e.t < 10
    assert "hint" in e.format() and "at t =" in e.format()
    part = e.partial
    assert isinstance(part, eqgen.Solution) and len(part) > 0 and part.t[-1] < e.t
    lo = health.smallest_eigenvalues(part["Q"], part["M"], part["P"])
    assert lo.min() > -1e-6  # what was kept is still a covariance
    # the unplanted model solves cleanly over the same horizon
    assert np.all(np.isfinite(erf_model.solve(t_max=10)["risk"]))


def test_loss_of_positive_definiteness_through_the_cli(tmp_path: Path, erf_model: Model,
                                                      monkeypatch: pytest.MonkeyPatch):
    planted = _Planted(erf_model.module)
    monkeypatch.setattr(Model, "module", property(lambda self: planted))
    out = tmp_path / "pd.csv"
    r = run_quiet("solve", model_path("committee_erf"), "--t-max", "10", "-o", out)
    assert r.code == 3, r.err
    assert "positive semi-definite" in r.err and "hint:" in r.err
    t_fail = failure_time(r.err)
    names, rows = read_csv(out)
    assert len(rows) > 0 and rows[-1, 0] < t_fail


def test_first_non_psd_finds_the_first_bad_time():
    t = np.linspace(0, 1, 6)
    Q = np.broadcast_to(np.eye(2), (6, 2, 2)).copy()
    P = Q.copy()
    M = np.zeros((6, 2, 2))
    assert health.first_non_psd(t, {"Q": Q, "M": M, "P": P}, 1e-8) is None
    M[3:, 0, 0] = 1.5  # |M_00| > √(Q_00 P_00)
    i, lo = health.first_non_psd(t, {"Q": Q, "M": M, "P": P}, 1e-8)
    assert i == 3 and lo == pytest.approx(-0.5)
    # a singular Ω (student = teacher) with integration-size errors is not a failure
    Q2 = np.broadcast_to(np.eye(2), (6, 2, 2)).copy()
    M2 = Q2 * (1 + 1e-9)
    assert health.first_non_psd(t, {"Q": Q2, "M": M2, "P": Q2}, 1e-8) is None


# ---------------------------------------------------------------------------------------------
# numerical failure at run time: DMFT models


def test_non_finite_dmft_sweep_exits_3_with_partial_results(tmp_path: Path):
    """A logistic model at a step far past stability: |w|² explodes; exit 3 at a time, the
    rows before it in the CSV, all finite."""
    out = tmp_path / "dmft.csv"
    r = run_quiet("solve", model_path("glm_ridge_square"), "--set", "eta=3", "--set",
                  "lambda=0", "--t-max", "60", "-o", out)
    assert r.code == 3, r.err
    assert not FORBIDDEN.search(r.err), r.err
    assert "numerical failure: the DMFT sweep" in r.err and "hint:" in r.err
    t_fail = failure_time(r.err)
    assert t_fail > 0
    names, rows = read_csv(out)
    assert names[:3] == ["t", "m", "Q"] and len(rows) > 0
    assert np.all(np.isfinite(rows)) and rows[-1, 0] < t_fail


def test_diverging_dmft_simulation_exits_3_with_partial_results(tmp_path: Path):
    """Simulated GD past its stability limit: |w|²/d passes 1e12; exit 3 at that time,
    the finite rows before it written and marked partial, the limit in the hint."""
    out = tmp_path / "sim.csv"
    r = run_quiet("simulate", model_path("glm_ridge_square"), "--set", "eta=3", "--t-max",
                  "99", "--d", "200", "--seeds", "2", "-o", out)  # 33 whole steps
    assert r.code == 3, r.err
    assert not FORBIDDEN.search(r.err), r.err
    assert "the simulation diverged" in r.err and "0.3374" in r.err
    assert r.err.count("warning:") == 1  # the step is past the known limit
    t_fail = failure_time(r.err)
    assert 0 < t_fail < 100
    names, rows = read_csv(out)
    assert names[:3] == ["t", "m", "m_stderr"] and len(rows) > 1
    assert np.all(np.isfinite(rows[:, names.index("Q")])) and rows[-1, 0] < t_fail
    assert np.max(rows[:, names.index("Q")]) <= 1e12
    meta = read_meta(out)
    assert meta["partial"] is True and meta["failure"]["t"] == pytest.approx(t_fail)


def test_dmft_simulation_stops_at_the_blow_up():
    """The simulator does not go on for the steps after a seed diverged (NaN there)."""
    from eqgen.simulate.dmft import first_blow_up, simulate_dmft

    model = eqgen.load(model_path("glm_ridge_square"))
    problem = model.problem({"eta": 3.0}, None, 300.0)
    raw = simulate_dmft(problem, 100, seeds=2, chunk_steps=5)
    k = first_blow_up(raw["Q"][0])
    assert k is not None and k < 40
    assert np.isnan(raw["Q"][:, k + 10:]).all()  # neither seed ran on


def test_dmft_failure_at_the_start_points_at_the_initial_state(tmp_path: Path):
    r = run_quiet("solve", model_path("glm_ridge_square"), "--set", "m0=1e7")
    assert r.code == 3, r.err
    assert failure_time(r.err) == 0
    hint = r.err.split("hint:")[1]
    assert "m0" in hint and "lower the step" not in hint


def test_dmft_step_past_the_gd_stability_limit_warns_with_the_limit(tmp_path: Path):
    """Square loss, b = 1: GD diverges when η (λ + (1 + √α)²) > 2 (Marchenko–Pastur edge).
    Checked on the exact DMFT just below and above the limit; `check` and `solve` warn past
    it, and do not refuse (the numbers are a correct prediction of the divergence)."""
    model = eqgen.load(model_path("glm_ridge_square"))
    r = model.resolve({"alpha": 2.0, "lambda": 0.1})
    limit = model.step_limit(r)
    assert limit == pytest.approx(2 / (0.1 + (1 + np.sqrt(2)) ** 2))
    below = model.solve({"eta": 0.9 * limit}, t_max=80 * 0.9 * limit)
    assert np.max(below["Q"]) <= 1.0 + 1e-9
    with pytest.warns(UserWarning, match="stability limit"):
        above = model.solve({"eta": 1.1 * limit}, t_max=80 * 1.1 * limit)
    assert above["Q"][-1] > 1e6 * above["Q"][0]
    assert model.step_limit(model.resolve({"b": 0.5, "tau": 2.0})) is None  # SGD: unknown
    logistic = eqgen.load(model_path("gmm_two_cluster_logistic"))
    assert logistic.step_limit(logistic.resolve()) is None
    spec = tmp_path / "fast.eqg"
    spec.write_text(model_path("glm_ridge_square").read_text().replace("eta = 0.1", "eta = 3"))
    c = run_quiet("check", spec)
    assert c.code == 0 and "warning:" in c.err and "0.3374" in c.err, c.err
    assert run_quiet("check", model_path("glm_ridge_square")).err == ""

    out = tmp_path / "dmft.csv"
    r = run_quiet("solve", model_path("glm_ridge_square"), "--set", "eta=3", "--set",
                  "lambda=0", "--t-max", "600", "-o", out)
    assert r.code == 3
    assert failure_time(r.err) > 0
    assert len(read_csv(out)[1]) > 0


# ---------------------------------------------------------------------------------------------
# resources: refused up front, with the estimate


def test_committee_too_large_for_memory_is_refused_before_compiling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec = committee_spec(tmp_path, name="wide")

    def no_compile(self: Model) -> Any:
        raise AssertionError("compiled before the memory check")

    monkeypatch.setattr(Model, "module", property(no_compile))
    t0 = time.perf_counter()
    r = run_quiet("solve", spec, "--set", "p=512", "--set", "k=512")
    assert r.code == 2, r.err
    assert re.search(r"would need about [0-9.e+]+ GiB of memory", r.err), r.err
    assert "hint:" in r.err and "lower p or k" in r.err
    assert time.perf_counter() - t0 < 30


def test_memory_is_checked_before_the_initial_covariance(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    """A solve too large for the memory is refused before the Ω check of its initial state
    (seconds at widths in the thousands), and `eqgen check` warns of it at the spec's values."""
    spec = committee_spec(tmp_path, name="mid")
    monkeypatch.setenv("EQGEN_MEMORY_LIMIT", "1e9")
    calls = []
    real = Model.resolve

    def counted(self: Model, *a: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(self, *a, **kw)

    model = eqgen.load(spec)
    monkeypatch.setattr(Model, "resolve", counted)
    with pytest.raises(eqgen.UsageError, match="GiB of memory"):
        model.solve({"p": 64, "k": 64}, t_max=1)
    assert calls == []
    monkeypatch.setattr(Model, "resolve", real)
    assert run_quiet("check", spec).code == 0
    wide = committee_spec(tmp_path, name="wide", p=64, k=64)
    r = run_quiet("check", wide)
    assert r.code == 0 and "ok" in r.out, r.err
    assert re.search(r"warning: solving \w+ with p = 64, k = 64 at \d+ times would need about",
                     r.err), r.err
    assert "lower p or k" in r.err


def test_the_fast_semi_definiteness_test_agrees_with_the_eigenvalues():
    """Ω on the boundary of the cone (rank-deficient), just inside and just outside it: the
    Cholesky shortcut decides as the smallest eigenvalue does."""
    from eqgen.spec.committee import _smallest_eigenvalue_below

    rng = np.random.default_rng(0)
    W = rng.standard_normal((300, 40))
    omega = W @ W.T / 40  # rank 40 of 300: eigenvalue 0, to round-off
    assert np.linalg.eigvalsh(omega).min() > -1e-12
    assert _smallest_eigenvalue_below(omega, -1e-10 * np.abs(omega).max()) is None
    shifted = omega - 1e-6 * np.eye(300)
    lo = _smallest_eigenvalue_below(shifted, -1e-10 * np.abs(shifted).max())
    assert lo == pytest.approx(-1e-6, rel=1e-3)
    assert _smallest_eigenvalue_below(omega + 1e-6 * np.eye(300), -1e-10) is None


def test_memory_limit_is_configurable_and_small_models_pass(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    spec = committee_spec(tmp_path, name="mid")
    monkeypatch.setenv("EQGEN_MEMORY_LIMIT", "1e9")
    r = run_quiet("solve", spec, "--set", "p=64", "--set", "k=64", "--t-max", "1")
    assert r.code == 2 and "GiB" in r.err, r.err
    r = run_quiet("solve", spec, "--t-max", "1")
    assert r.code == 0, r.err
    monkeypatch.setenv("EQGEN_MEMORY_LIMIT", "lots")
    assert run_quiet("solve", spec, "--t-max", "1").code == 2


def test_committee_estimate_bounds_the_compiled_vector_field():
    """The estimate is above XLA's own account of the generated vector field's memory."""
    import jax

    from eqgen.spec.committee import resolve

    for name in ("committee_erf", "committee_hermite"):
        model = eqgen.load(model_path(name))
        p, k = 12, 12
        r = resolve(model.spec, {"p": p, "k": k}, use_spec_init=False)
        shapes = {n: jax.ShapeDtypeStruct(np.shape(v), np.float64) for n, v in r.init.items()}
        pars = {n: jax.ShapeDtypeStruct((), np.float64) for n in r.params}
        mem = jax.jit(model.module.vector_field).lower(0.0, shapes, pars).compile() \
            .memory_analysis()
        used = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
        estimate = health.committee_memory(p, k, 1) - health.BASELINE_BYTES
        assert used < estimate, (name, used, estimate)


def test_sweep_too_large_for_memory_is_refused_before_compiling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def no_compile(self: Model) -> Any:
        raise AssertionError("compiled before the memory check")

    monkeypatch.setattr(Model, "module", property(no_compile))
    r = run_quiet("sweep", model_path("committee_square"), "--grid", "gamma=0.1,0.2", "--set",
                  "p=512", "--set", "k=512")
    assert r.code == 2, r.err
    assert re.search(r"2 grid point\(s\).*would need about [0-9.e+]+ GiB", r.err), r.err
    # the estimate is that of one solve, once per point solved at the same time
    one = health.committee_memory(8, 8, 201) - health.BASELINE_BYTES
    many = health.committee_sweep_memory([(8, 8, 10)], 201) - health.BASELINE_BYTES
    assert many == pytest.approx(10 * one)


def test_huge_grids_are_refused_at_once(monkeypatch: pytest.MonkeyPatch):
    t0 = time.perf_counter()
    r = run_quiet("sweep", model_path("committee_square"), "--grid", "gamma=1:2:100000000")
    assert r.code == 2 and "100,000,000 grid points" in r.err, r.err
    r = run_quiet("sweep", model_path("committee_square"), "--grid", "gamma=1:2:1000",
                  "--grid", "Delta=0:1:1000")
    assert r.code == 2 and "1,000,000 grid points" in r.err, r.err
    assert time.perf_counter() - t0 < 30
    from eqgen.sweep import axes_from

    monkeypatch.setenv("EQGEN_MAX_GRID_POINTS", "3")
    with pytest.raises(eqgen.UsageError, match="EQGEN_MAX_GRID_POINTS"):
        axes_from(["gamma=1:2:4"])
    assert len(axes_from(["gamma=1:2:3"])[0].values) == 3


def test_dmft_simulation_too_large_for_memory_is_refused_with_an_estimate():
    t0 = time.perf_counter()
    r = run_quiet("simulate", model_path("gmm_two_cluster_logistic"), "--d", "1000000",
                  "--seeds", "1", "--set", "alpha=1000")
    assert r.code == 2, r.err
    assert "1,000,000,000 samples" in r.err and "GiB" in r.err and "--d" in r.err
    assert time.perf_counter() - t0 < 30


def test_compare_checks_the_theory_before_simulating(monkeypatch: pytest.MonkeyPatch):
    def no_simulation(self: Model, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("simulated before the theory was checked")

    monkeypatch.setattr(Model, "simulate", no_simulation)
    r = run_quiet("compare", model_path("committee_square"), "--d", "1000", "--seeds", "2",
                  "--set", "p=512", "--set", "k=512")
    assert r.code == 2 and "GiB" in r.err, r.err
    r = run_quiet("compare", model_path("committee_erf"), "--d", "100", "--solver", "euler")
    assert r.code == 2 and "unknown solver" in r.err, r.err


def test_very_long_committee_simulations_warn_or_are_refused(monkeypatch: pytest.MonkeyPatch):
    from eqgen.simulate import committee as sim

    assert sim.check_duration(10**5, 1000, 1, 4) < sim.WARN_SECONDS  # seconds: silent
    with pytest.warns(UserWarning, match="hours"):
        sim.check_duration(10**9, 1000, 1, 4)
    with pytest.raises(eqgen.UsageError, match="EQGEN_ALLOW_LONG_SIMULATION"):
        sim.check_duration(10**12, 10**4, 1, 4)
    monkeypatch.setenv("EQGEN_ALLOW_LONG_SIMULATION", "1")
    with pytest.warns(UserWarning, match="years"):
        sim.check_duration(10**12, 10**4, 1, 4)
    monkeypatch.delenv("EQGEN_ALLOW_LONG_SIMULATION")
    r = run_quiet("simulate", model_path("committee_erf"), "--d", "100000", "--seeds", "4",
                  "--t-max", "100")
    assert r.code == 2 and "SGD steps" in r.err and "hours" in r.err, r.err


def test_dmft_with_too_many_samples_is_refused_with_an_estimate():
    t0 = time.perf_counter()
    r = run_quiet("solve", model_path("gmm_two_cluster_logistic"), "--samples", "100000000")
    assert r.code == 2, r.err
    assert "100000000 trajectories" in r.err and "GiB" in r.err and "--samples" in r.err
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("t_max, n", [(3.0, 1000), (6.0, 40_000)])  # the second in chunks
def test_dmft_estimate_bounds_the_compiled_sweep(t_max: float, n: int):
    from eqgen.runtime import dmft

    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    problem = model.problem(None, None, t_max)
    inputs = dmft.draw_inputs(problem, n, 0)
    n_chi = dmft.response_capacity(problem, n)
    mem = dmft._sweep_jit.lower(problem, inputs, n_chi, False).compile().memory_analysis()
    used = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
    assert used < health.dmft_memory(problem.steps, n, n_chi) - health.BASELINE_BYTES


# ---------------------------------------------------------------------------------------------
# reproducibility


def test_dmft_solve_is_bitwise_reproducible_in_a_process():
    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    kw = dict(params={"b": 0.5, "tau": 1.0}, t_max=2.0, samples=2000)
    a, b = model.solve(seed=3, **kw), model.solve(seed=3, **kw)
    c = model.solve(seed=4, **kw)
    for name in a.observables:
        assert a[name].tobytes() == b[name].tobytes(), name
    assert a["train_loss"].tobytes() != c["train_loss"].tobytes()


def test_simulate_is_bitwise_reproducible_in_a_process():
    model = eqgen.load(model_path("committee_erf"))
    kw = dict(d=200, seeds=2, seed=5, t_max=2.0)
    a, b = model.simulate(**kw), model.simulate(**kw)
    for name in (*a.observables, *a.states):
        assert a[name].tobytes() == b[name].tobytes(), name


def _cli(args: list[str], hashseed: str, cwd: Path = ROOT, **env: str
         ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONHASHSEED": hashseed, **env}
    full_env.pop("EQGEN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "eqgen", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", [
    ["solve", "models/gmm_two_cluster_logistic.eqg", "--set", "b=0.5", "--set", "tau=1",
     "--t-max", "2", "--samples", "2000", "--seed", "7"],
    ["simulate", "models/committee_erf.eqg", "--d", "200", "--seeds", "2", "--seed", "1",
     "--t-max", "2"],
], ids=["dmft-solve", "committee-simulate"])
def test_same_seed_same_bytes_across_processes(tmp_path: Path, command: list[str]):
    outs = []
    for i, hashseed in enumerate(("0", "12345")):
        out = tmp_path / f"run{i}.csv"
        r = _cli([*command, "-o", str(out)], hashseed)
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_concurrent_generate_leaves_a_valid_file(tmp_path: Path):
    """Four processes generate the same model into the same folder and cache at once."""
    out_dir, cache = tmp_path / "gen", tmp_path / "cache"
    spec = model_path("committee_erf")
    env = {**os.environ, "EQGEN_CACHE_DIR": str(cache), "PYTHONHASHSEED": "0"}
    procs = [subprocess.Popen([sys.executable, "-m", "eqgen", "generate", str(spec),
                               "--out-dir", str(out_dir)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    written = out_dir / "committee_erf.py"
    assert written.read_bytes() == (ROOT / "generated" / "committee_erf.py").read_bytes()
    assert sorted(x.name for x in out_dir.iterdir()) == ["committee_erf.py"]  # no temp files


def test_init_file_too_deep_or_too_large_is_a_located_error(tmp_path):
    """An --init file is read only up to a bound and its nesting cannot crash the reader."""
    deep = tmp_path / "deep.json"
    deep.write_text('{"Q": ' + "[" * 100_000 + "]" * 100_000 + "}")
    r = run_quiet("solve", model_path("committee_erf"), "--init", str(deep),
                  "-o", str(tmp_path / "x.csv"))
    assert r.code == 1 and "nested too deeply" in r.err and "Traceback" not in r.err
    if Path("/dev/zero").exists():
        r = run_quiet("solve", model_path("committee_erf"), "--init", "/dev/zero",
                      "-o", str(tmp_path / "x.csv"))
        assert r.code == 1 and "too large" in r.err


ABS_STUDENT = """model abs_student "|z| student: its I2 with the erf teacher is 0 by parity"
param p = 2, k = 2, gamma = 1.0, Delta = 0.0
data gaussian
teacher committee(width = k, activation = erf(z / sqrt(2)), readout = 1/k, noise = Delta)
student committee(width = p, activation = abs(z), readout = 1/p, second_layer = fixed(1))
loss square
sgd learning_rate = gamma, batch = 1
regime gradient_flow
init P = identity(k), Q = 0.5 * identity(p), M = zeros(p, k)
time t_max = 2
"""


def test_an_integral_that_folds_to_a_constant_still_has_its_block_shape(tmp_path):
    """E[|h1| erf(h2/√2)] = 0 by parity, so the generated I2 returns a scalar; the risk must
    still be assembled (it used to end in a matmul error) and equal its closed form at t = 0:
    ½(¼(1 + 2/π) + 1/6) with Q = I/2, M = 0, P = I."""
    import eqgen

    sol = eqgen.load(write_spec(tmp_path, ABS_STUDENT, "abs_student")).solve(t_max=2)
    assert sol["risk"][0] == pytest.approx(0.5 * (0.25 * (1 + 2 / np.pi) + 1 / 6), rel=1e-12)
