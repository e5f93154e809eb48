"""Parameter sweeps and the (κ, δ) phase diagram: the vmapped sweep against separate solves,
per-point failure flags, the tidy CSV, the command line, and the regime classification."""

from __future__ import annotations

import csv
from fractions import Fraction

import numpy as np
import pytest

import eqgen
from eqgen.errors import UsageError
from eqgen.phase_diagram import NO_LIMIT, regime_class
from eqgen.sweep import parse_axis
from eqgen.theories.regimes import NoOdeLimit, classify
from tests.helpers import committee_spec, model_path, run_quiet, write_spec

LINEAR = """model lin "linear units; q0 enters the initial state"
param p = 2, k = 2, gamma = 1.0, Delta = 0.0, q0 = 0.5
data gaussian
teacher committee(width = k, activation = z, readout = 1/k, noise = Delta)
student committee(width = p, activation = z, readout = 1/p, second_layer = fixed(1))
loss square
sgd learning_rate = gamma, batch = 1
regime high_dimensional
init Q = q0 * identity(p), M = 0.1 * ones(p, k), P = identity(k)
time t_max = 4
"""
ERF_Q0 = LINEAR.replace("activation = z", "activation = erf(z / sqrt(2))").replace(
    "model lin", "model erf_q0")
SAVE = [0.0, 0.5, 1.0, 2.0, 4.0]


@pytest.fixture(scope="module")
def erf_model(tmp_path_factory):
    return eqgen.load(write_spec(tmp_path_factory.mktemp("erf"), ERF_Q0, "erf_q0"))


@pytest.fixture(scope="module")
def erf_sweep(erf_model):
    grid = {"gamma": [0.5, 2.0], "q0": [0.2, 0.5, 1.5]}
    return erf_model.sweep(grid, params={"Delta": 0.05}, save_at=SAVE)


@pytest.fixture(scope="module")
def linear_sweep(tmp_path_factory):
    model = eqgen.load(write_spec(tmp_path_factory.mktemp("lin"), LINEAR, "lin"))
    return model, model.sweep({"gamma": [0.5, 200.0]}, t_max=4)


# -- the sweep is the same as separate solves -------------------------------------------------

def test_sweep_equals_separate_solves_including_a_parameter_in_init(erf_model, erf_sweep):
    res = erf_sweep
    assert len(res) == 6 and res.success.all()
    assert res.names == ["gamma", "q0"]
    for i, point in enumerate(res.points):
        sol = erf_model.solve(params={"Delta": 0.05, **point}, save_at=SAVE)
        np.testing.assert_array_equal(res.t, sol.t)
        for name in ("risk", "excess_risk"):
            np.testing.assert_allclose(res[name][i], sol[name], rtol=1e-9, atol=1e-13)
        for name in ("Q", "M"):
            np.testing.assert_allclose(res.states[i][name], sol[name], rtol=1e-9, atol=1e-13)
        # the swept q0 really reached the initial state of this point
        np.testing.assert_allclose(res.states[i]["Q"][0], point["q0"] * np.eye(2))


def test_points_differ(erf_sweep):
    """A sweep that ignored its grid would give equal rows everywhere."""
    final = erf_sweep.final("risk")
    assert np.unique(np.round(final, 12)).size == len(final)


def test_width_sweep_is_split_into_shape_groups(tmp_path):
    model = eqgen.load(committee_spec(tmp_path, gamma=0.5))
    res = model.sweep({"p": [1, 2, 3]}, save_at=[0.0, 1.0, 3.0])
    assert res.success.all()
    assert [st["Q"].shape for st in res.states] == [(3, 1, 1), (3, 2, 2), (3, 3, 3)]
    for i, p in enumerate((1, 2, 3)):
        sol = model.solve(params={"p": p}, save_at=[0.0, 1.0, 3.0])
        np.testing.assert_allclose(res["excess_risk"][i], sol["excess_risk"], rtol=1e-9,
                                   atol=1e-13)
    out = tmp_path / "p.csv"
    res.to_csv(out)
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["Q[2,2]"] == "" and rows[-1]["Q[2,2]"] != ""  # union of the columns


def test_plain_axes_are_those_that_change_only_their_own_value(erf_model):
    """γ and Δ enter only the vector field; q0 enters the initial state; a parameter used by
    another parameter, or range-checked together with another swept one, is not plain."""
    from eqgen.sweep.grid import axes_from
    from eqgen.sweep.run import plain_axes

    axes = axes_from({"gamma": [0.5, 1.0], "Delta": [0.0, 0.1], "q0": [0.2, 0.5]})
    assert plain_axes(erf_model, axes) == {"gamma", "Delta"}
    spec = ERF_Q0.replace("gamma = 1.0,", "gamma = 1.0, base = 1.0, g2 = 2 * base,").replace(
        "learning_rate = gamma", "learning_rate = g2 - Delta")
    model = eqgen.load(write_spec(erf_model.path.parent, spec, "erf_joint"))
    axes = axes_from({"gamma": [0.5, 1.0], "Delta": [0.0, 0.1], "base": [1.0, 2.0]})
    # γ is now unused; base enters g2 (another parameter); Δ is range-checked with g2 = 2 base
    assert plain_axes(model, axes) == {"gamma"}
    axes = axes_from({"gamma": [0.5, 1.0], "Delta": [0.0, 0.1]})
    assert plain_axes(model, axes) == {"gamma", "Delta"}


def test_a_point_out_of_range_only_in_combination_is_refused(tmp_path):
    """learning_rate = g − Δ is positive at every value of each axis alone but not at
    (g, Δ) = (0.5, 1): the sweep must resolve that combination and name it."""
    spec = ERF_Q0.replace("gamma = 1.0,", "gamma = 1.0, g = 1.0,").replace(
        "learning_rate = gamma", "learning_rate = g - Delta")
    model = eqgen.load(write_spec(tmp_path, spec, "erf_joint"))
    refused = r"(?s)g = 0\.5, Delta = 1 is refused:\n.*erf_joint.eqg:7:21: the learning rate must"
    with pytest.raises(UsageError, match=refused):
        model.sweep({"g": [2.0, 0.5], "Delta": [0.0, 1.0]}, t_max=1)


def test_a_dependency_missed_by_the_static_test_is_still_resolved(erf_model, erf_sweep,
                                                                  monkeypatch):
    """Planted error: the static test is told that nothing enters the state, so q0 looks
    plain. Each value is still resolved once, the changed initial state is seen, and the
    points are resolved in full: the sweep equals the one resolved honestly."""
    monkeypatch.setattr(type(erf_model.spec), "state_names", lambda self: frozenset())
    res = erf_model.sweep({"gamma": [0.5, 2.0], "q0": [0.2, 0.5, 1.5]},
                          params={"Delta": 0.05}, save_at=SAVE)
    for i, point in enumerate(res.points):
        np.testing.assert_allclose(res.states[i]["Q"][0], point["q0"] * np.eye(2))
    np.testing.assert_array_equal(res["risk"], erf_sweep["risk"])


# -- failures are per point ------------------------------------------------------------------

def test_a_diverging_point_is_flagged_while_the_others_succeed(linear_sweep):
    model, res = linear_sweep
    assert res.success.tolist() == [True, False]
    (i, point, message), = res.failed
    assert i == 1 and point == {"gamma": 200.0} and "diverged" in message
    bad = res["excess_risk"][1]
    assert np.isnan(bad[-1]) and np.isfinite(bad[0])
    good = model.solve(params={"gamma": 0.5}, t_max=4)
    np.testing.assert_allclose(res["excess_risk"][0], good["excess_risk"], rtol=1e-9,
                               atol=1e-13)
    with pytest.raises(eqgen.NumericalError):
        model.solve(params={"gamma": 200.0}, t_max=4)


def test_csv_is_tidy(linear_sweep, tmp_path):
    _, res = linear_sweep
    out = tmp_path / "s.csv"
    res.to_csv(out)
    rows = list(csv.DictReader(out.open()))
    header = list(rows[0])
    assert header[:4] == ["gamma", "t", "risk", "excess_risk"] and header[-1] == "success"
    assert "Q[0,1]" in header
    assert len(rows) == len(res) * len(res.t)
    first = [r for r in rows if float(r["gamma"]) == 0.5]
    second = [r for r in rows if float(r["gamma"]) == 200.0]
    assert {r["success"] for r in first} == {"1"} and {r["success"] for r in second} == {"0"}
    assert [float(r["t"]) for r in first] == res.t.tolist()
    assert second[-1]["excess_risk"] == "nan"
    res.to_csv(tmp_path / "slim.csv", states=False)
    slim = next(csv.reader((tmp_path / "slim.csv").open()))
    assert slim == ["gamma", "t", "risk", "excess_risk", "success"]
    assert (tmp_path / "s.csv.meta.json").exists()


# -- grid syntax and the command line ---------------------------------------------------------

def test_grid_forms():
    assert parse_axis("gamma=0.1:0.3:3").values.tolist() == [0.1, 0.2, 0.3]
    assert parse_axis("Delta=0,1e-3,1e-2").values.tolist() == [0.0, 1e-3, 1e-2]
    ax = parse_axis("gamma=log:1e-2:1:3")
    assert ax.log and np.allclose(ax.values, [1e-2, 1e-1, 1.0])
    assert parse_axis("kappa=0:1:11").values[3] == 0.3  # written as typed, not 0.30000000004


@pytest.mark.parametrize("bad", ["gamma", "gamma=", "gamma=1:2", "gamma=1:2:x", "gamma=1:2:0",
                                 "gamma=a,b", "gamma=log:0:1:3", "gamma=1:2:3:4",
                                 "1x=1,2", "gamma=inf,1"])
def test_malformed_grid_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        parse_axis(bad)
    r = run_quiet("sweep", model_path("committee_erf"), "--grid", bad)
    assert r.code == 2 and "--grid" in r.err and "Traceback" not in r.err


@pytest.mark.parametrize("args, words", [
    ([], "at least one --grid"),
    (["--grid", "nope=1,2"], "unknown parameter"),
    (["--grid", "gamma=1,2", "--set", "gamma=1"], "both swept"),
    (["--grid", "gamma=1,2", "--grid", "gamma=3"], "more than once"),
    (["--grid", "gamma=1,2", "--d-ref", "100"], "--d-ref"),
])
def test_sweep_usage_errors(args, words):
    r = run_quiet("sweep", model_path("committee_erf"), *args)
    assert r.code == 2 and words in r.err


def test_cli_reports_failed_points_and_exit_codes(tmp_path):
    spec = write_spec(tmp_path, LINEAR, "lin")
    out = tmp_path / "s.csv"
    r = run_quiet("sweep", spec, "--grid", "gamma=0.5,200", "--t-max", "4", "-o", out,
                  "--plot", tmp_path / "s.png")
    assert r.code == 0, r.err
    assert "1 of 2 grid points failed" in r.err and "gamma = 200" in r.err
    assert out.exists() and (tmp_path / "s.png").stat().st_size > 0
    r = run_quiet("sweep", spec, "--grid", "gamma=200,300", "--t-max", "4")
    assert r.code == 3 and "every one of the 2" in r.err


# -- the phase diagram -------------------------------------------------------------------------

# docs/theory.md, Regimes, point by point: (κ, δ) → class
TABLE = [
    (0, 0, "high_dimensional"), (0.5, -0.5, "high_dimensional"), (0.8, -0.8, "high_dimensional"),
    (0, 0.5, "gradient_flow"), (1, 0, "gradient_flow"), (0.5, -0.25, "gradient_flow"),
    (0, -0.25, "noise_dominated"), (0.5, -0.6, "noise_dominated"), (0.8, -0.85, "noise_dominated"),
    (0, -0.5, NO_LIMIT), (0.5, -0.75, NO_LIMIT), (1, -1, NO_LIMIT), (0, -2, NO_LIMIT),
]


@pytest.mark.parametrize("kappa, delta, expected", TABLE)
def test_phase_classification_matches_theory_table(kappa, delta, expected):
    assert regime_class(kappa, delta) == expected
    try:
        direct = classify("exponents", Fraction(kappa).limit_denominator(100),
                          Fraction(delta).limit_denominator(100)).name
    except NoOdeLimit:
        direct = NO_LIMIT
    assert direct == expected


def test_decimal_grid_hits_the_critical_line_exactly():
    kappas = parse_axis("kappa=0:1:11").values
    deltas = parse_axis("delta=-1:0:11").values
    on_line = [(k, d) for k in kappas for d in deltas if regime_class(k, d) ==
               "high_dimensional"]
    # κ + δ = 0 at all 11 diagonal points; (1, −1) is also on −δ = (κ + 1)/2: no ODE limit
    assert len(on_line) == 10 and all(k + d == 0 for k, d in on_line)
    assert regime_class(1.0, -1.0) == NO_LIMIT


@pytest.fixture(scope="module")
def phase(erf_model):
    grid = {"kappa": [0.0, 0.5], "delta": [-0.5, -0.25, 0.0, 0.5]}
    return erf_model.sweep(grid, params={"Delta": 0.05}, save_at=SAVE)


def test_phase_sweep_classifies_every_point(phase):
    assert phase.names == ["delta", "kappa"]
    for i, pt in enumerate(phase.points):
        cls = phase.extra["regime"][i]
        assert cls == regime_class(pt["kappa"], pt["delta"])
        assert bool(phase.success[i]) == (cls != NO_LIMIT)
        if cls == NO_LIMIT:
            assert np.all(np.isnan(phase["excess_risk"][i]))


def test_phase_sweep_checks_every_class_before_solving_any(erf_model, monkeypatch):
    """At p = 120 the gradient-flow class (solved first) fits in 1 GB and the
    high-dimensional one (the I4 term) does not: refused before anything is solved."""
    from eqgen.runtime import health
    from eqgen.sweep import run

    fits = health.committee_sweep_memory([(120, 2, 1)], len(SAVE), variance=False)
    needs = health.committee_sweep_memory([(120, 2, 1)], len(SAVE), variance=True)
    limit = (fits + needs) / 2 / health.USABLE_FRACTION
    monkeypatch.setenv("EQGEN_MEMORY_LIMIT", f"{limit:.6g}")

    def solve_points(m, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise AssertionError(f"{m.name} was solved before every class was checked")

    monkeypatch.setattr(run, "solve_points", solve_points)
    with pytest.raises(UsageError, match="would need about"):
        erf_model.sweep({"kappa": [0.0], "delta": [0.0, 0.5]}, params={"p": 120, "q0": 3},
                        save_at=SAVE)


def test_phase_values_are_the_limiting_ode_of_each_class(phase, erf_model, tmp_path):
    """Each class's value equals a separate solve of the spec with that regime written in."""
    final = phase.final()
    by_class: dict[str, set[float]] = {}
    for i, cls in enumerate(phase.extra["regime"]):
        if cls != NO_LIMIT:
            by_class.setdefault(cls, set()).add(round(float(final[i]), 14))
    assert set(by_class) == {"gradient_flow", "high_dimensional", "noise_dominated"}
    assert all(len(v) == 1 for v in by_class.values())
    text = ERF_Q0.replace("model erf_q0", "model erf_gf")
    gf = eqgen.load(write_spec(tmp_path, text.replace("regime high_dimensional",
                                                      "regime gradient_flow"), "gf"))
    nd = eqgen.load(write_spec(tmp_path, text.replace(
        "regime high_dimensional", "regime exponents(kappa = 1/2, delta = -3/5)"), "nd"))
    for cls, model in (("gradient_flow", gf), ("noise_dominated", nd),
                       ("high_dimensional", erf_model)):
        sol = model.solve(params={"Delta": 0.05}, save_at=SAVE)
        assert by_class[cls] == {round(float(sol["excess_risk"][-1]), 14)}
    # the picture of Veiga et al.: noise-free learning below SGD with noise, and "bad
    # learning" (no drift: M frozen, Q driven up by the noise) worst of all
    assert min(by_class["gradient_flow"]) < min(by_class["high_dimensional"])
    start = float(phase["excess_risk"][-1, 0])
    assert min(by_class["noise_dominated"]) > start > min(by_class["gradient_flow"])


# -- a batch split over threads is the same batch --------------------------------------------

@pytest.mark.parametrize("parts", [3, 4])
def test_points_split_over_threads_equal_one_vmapped_solve(erf_model, erf_sweep, monkeypatch,
                                                           parts):
    """Parts of unequal fill (6 points in 3 or 4 parts, the last padded) give the same rows as
    the whole batch (the erf_sweep fixture: 6 points, too few to be split by default)."""
    from eqgen.runtime.ode import batch_workers

    monkeypatch.setenv("EQGEN_SWEEP_THREADS", "1")
    assert batch_workers(6) == 1
    monkeypatch.setenv("EQGEN_SWEEP_THREADS", str(parts))
    assert batch_workers(6) == parts
    res = erf_model.sweep({"gamma": [0.5, 2.0], "q0": [0.2, 0.5, 1.5]},
                          params={"Delta": 0.05}, save_at=SAVE)
    assert res.points == erf_sweep.points and res.success.all()
    for name in ("risk", "excess_risk"):
        np.testing.assert_allclose(res[name], erf_sweep[name], rtol=1e-12, atol=1e-15)
    for mine, whole in zip(res.states, erf_sweep.states, strict=True):
        np.testing.assert_allclose(mine["Q"], whole["Q"], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(res.steps, erf_sweep.steps)


def test_a_failed_point_in_a_padded_part_is_still_flagged(linear_sweep, monkeypatch):
    model, whole = linear_sweep
    monkeypatch.setenv("EQGEN_SWEEP_THREADS", "3")  # parts [0], [1], [1 (padding)]
    res = model.sweep({"gamma": [0.5, 200.0]}, t_max=4)
    assert res.success.tolist() == [True, False] and len(res.failed) == 1
    np.testing.assert_allclose(res["excess_risk"][0], whole["excess_risk"][0], rtol=1e-12)


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_thread_count_is_a_usage_error(value, monkeypatch):
    from eqgen.runtime.ode import batch_workers

    monkeypatch.setenv("EQGEN_SWEEP_THREADS", value)
    with pytest.raises(UsageError, match="EQGEN_SWEEP_THREADS"):
        batch_workers(8)


def test_heat_map_draws_unevenly_spaced_values_as_equal_cells():
    from eqgen.sweep.plot import _cells

    edges, at, categorical = _cells(np.array([0.0, 1e-3, 1e-2, 0.1]), log=False)
    assert categorical and list(at) == [0, 1, 2, 3] and list(edges) == [-0.5, 0.5, 1.5, 2.5, 3.5]
    for values, log in ((np.linspace(0.25, 2, 8), False), (np.geomspace(1e-3, 1, 4), True),
                        (np.array([0.0, 1.0]), False)):
        edges, at, categorical = _cells(values, log)
        assert not categorical and np.array_equal(at, values)
