"""The Python API, as docs/index.md, The Python API states it: `eqgen.load`, `Model`, `Solution`,
the error classes.

One committee_erf model is loaded and solved per module and reused: the solver compiled for it
is kept for the process, and solves with the same array shapes (p, k and the number of save
times) reuse it, which keeps the module fast. Known defects of eqgen are marked
`xfail(strict=True)` with the reason, so that a fix shows up as XPASS.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest

import eqgen
from eqgen.runtime import ode

try:  # `tests` is not a package: pytest puts tests/ itself on sys.path
    from helpers import committee_spec, model_path, write_spec
except ModuleNotFoundError:  # pragma: no cover - run with tests/ as a package
    from tests.helpers import committee_spec, model_path, write_spec

ERF = model_path("committee_erf")
SAVE_AT = [0.0, 1.5, 7.0]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model() -> eqgen.Model:
    return eqgen.load(ERF)


@pytest.fixture(scope="module")
def sol(model: eqgen.Model) -> eqgen.Solution:
    return model.solve(save_at=SAVE_AT)


# ------------------------------------------------------------------------------------------
# the public names


def test_public_error_classes():
    assert issubclass(eqgen.SpecError, eqgen.EqgenError)
    assert issubclass(eqgen.UsageError, eqgen.EqgenError)
    assert issubclass(eqgen.NumericalError, eqgen.EqgenError)
    assert issubclass(eqgen.EqgenError, Exception)
    assert (eqgen.SpecError.exit_code, eqgen.UsageError.exit_code,
            eqgen.NumericalError.exit_code) == (1, 2, 3)


def test_public_api_names():
    for name in ("load", "Model", "Solution", "EqgenError", "SpecError", "UsageError",
                 "NumericalError", "__version__"):
        assert hasattr(eqgen, name), name
        assert name in eqgen.__all__


# ------------------------------------------------------------------------------------------
# load


def test_load_gives_a_model_with_name_and_parameters(model: eqgen.Model):
    assert isinstance(model, eqgen.Model)
    assert model.name == "committee_erf"
    assert isinstance(model.parameters, dict)
    assert list(model.parameters) == ["p", "k", "gamma", "Delta"]
    assert model.parameters == {"p": 2, "k": 2, "gamma": 1.0, "Delta": 0.0}


def test_load_keeps_parameter_declaration_order(tmp_path: Path):
    path = committee_spec(tmp_path, name="ordered")
    text = path.read_text().replace("param p = 2, k = 2, gamma = 1.0, Delta = 0.0",
                                    "param gamma = 0.5, Delta = 0.1\nparam k = 1, p = 3")
    m = eqgen.load(write_spec(tmp_path, text, name="ordered"))
    assert m.name == "ordered"
    assert list(m.parameters) == ["gamma", "Delta", "k", "p"]
    assert m.parameters == {"gamma": 0.5, "Delta": 0.1, "k": 1, "p": 3}


def test_load_accepts_str_and_path():
    assert eqgen.load(str(ERF)).parameters == eqgen.load(ERF).parameters


def test_load_bad_spec_raises_spec_error(tmp_path: Path):
    bad = committee_spec(tmp_path, name="bad", regime="high_dim")
    with pytest.raises(eqgen.SpecError) as info:
        eqgen.load(bad)
    assert f"{bad}:8:" in str(info.value)
    assert "high_dim" in str(info.value)


def test_load_missing_file_raises_spec_error(tmp_path: Path):
    with pytest.raises(eqgen.SpecError):
        eqgen.load(tmp_path / "absent.eqg")


# ------------------------------------------------------------------------------------------
# solve and Solution


def test_solution_times_and_observables(sol: eqgen.Solution):
    assert isinstance(sol, eqgen.Solution)
    np.testing.assert_allclose(sol.t, SAVE_AT, rtol=0, atol=1e-12)
    for name in ("risk", "excess_risk"):
        assert isinstance(sol[name], np.ndarray)
        assert sol[name].shape == (3,)
        assert np.all(np.isfinite(sol[name]))
    assert sol["excess_risk"][-1] < sol["excess_risk"][0]


def test_solution_states_and_entries(sol: eqgen.Solution):
    assert sol["Q"].shape == (3, 2, 2)
    assert sol["M"].shape == (3, 2, 2)
    assert sol["P"].shape == (3, 2, 2)
    np.testing.assert_array_equal(sol["Q[0,1]"], sol["Q"][:, 0, 1])
    np.testing.assert_array_equal(sol["M[1,0]"], sol["M"][:, 1, 0])
    np.testing.assert_array_equal(sol["Q"][0], 0.5 * np.eye(2))
    np.testing.assert_array_equal(sol["M"][0], [[0.1, 0.05], [0.02, 0.08]])
    np.testing.assert_array_equal(sol["Q"], np.swapaxes(sol["Q"], 1, 2))  # symmetric
    with pytest.raises(KeyError):
        sol["nope"]


def test_save_at_without_zero_gives_exactly_those_times(model: eqgen.Model,
                                                        sol: eqgen.Solution):
    later = model.solve(save_at=[1.5, 7.0])
    np.testing.assert_allclose(later.t, [1.5, 7.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(later["Q"], sol["Q"][1:], rtol=1e-12, atol=1e-14)


def test_risk_is_excess_risk_plus_half_delta(model: eqgen.Model, sol: eqgen.Solution):
    noisy = model.solve(params={"Delta": 0.3}, save_at=SAVE_AT)
    np.testing.assert_allclose(noisy["risk"], noisy["excess_risk"] + 0.15, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sol["risk"], sol["excess_risk"], rtol=0, atol=1e-15)
    # label noise feeds the variance term: the trajectory changes after t = 0
    np.testing.assert_array_equal(noisy["Q"][0], sol["Q"][0])
    assert not np.allclose(noisy["Q"][-1], sol["Q"][-1])


def test_solve_with_params_and_init(model: eqgen.Model, sol: eqgen.Solution):
    init = {"Q": [[1.0, 0.2], [0.2, 0.9]], "M": [[0.0, 0.1], [0.1, 0.0]]}
    other = model.solve(params={"gamma": 0.5}, init=init, save_at=SAVE_AT)
    np.testing.assert_array_equal(other["Q"][0], init["Q"])
    np.testing.assert_array_equal(other["M"][0], init["M"])
    np.testing.assert_array_equal(other["P"][0], np.eye(2))  # P from the spec
    assert other.metadata["parameters"]["gamma"] == 0.5
    assert not np.allclose(other["Q"][-1], sol["Q"][-1])


def test_tolerances_are_honoured(model: eqgen.Model, sol: eqgen.Solution):
    loose = model.solve(save_at=SAVE_AT, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(loose["Q"], sol["Q"], rtol=0, atol=1e-3)
    assert loose.metadata["rtol"] == 1e-5 and loose.metadata["atol"] == 1e-7
    assert loose.metadata["steps"] < sol.metadata["steps"]


@pytest.mark.parametrize("kwargs, error", [
    ({"params": {"nope": 1.0}}, eqgen.UsageError),
    ({"init": {"Q": np.eye(3)}}, eqgen.SpecError),
    ({"rtol": -1.0}, eqgen.UsageError),
    ({"save_at": [-1.0, 2.0]}, eqgen.UsageError),
    ({"solver": "euler42"}, eqgen.UsageError),
], ids=["unknown-param", "init-shape", "rtol", "save_at", "solver"])
def test_solve_rejects_bad_input(model: eqgen.Model, kwargs: dict, error: type):
    with pytest.raises(error):
        model.solve(**{"save_at": SAVE_AT, **kwargs})


def test_solving_again_reuses_the_compiled_solver(model: eqgen.Model):
    # a max_steps no other test uses keys a solver of its own, so the first call compiles
    # whatever ran before; both calls use the default grid (the same number of save times)
    t0 = time.perf_counter()
    model.solve(t_max=2.0, max_steps=654_321)
    t1 = time.perf_counter()
    hits = ode._compiled.cache_info().hits
    second = model.solve(params={"gamma": 0.5}, t_max=3.0, max_steps=654_321)
    t2 = time.perf_counter()
    assert ode._compiled.cache_info().hits > hits
    assert t2 - t1 < 0.5 * (t1 - t0), (t1 - t0, t2 - t1)
    assert second.metadata["parameters"]["gamma"] == 0.5


def test_t_max_ends_the_default_grid(model: eqgen.Model):
    a = model.solve(t_max=2.0, max_steps=654_321)
    b = model.solve(t_max=3.0, max_steps=654_321)
    assert a.t[0] == 0.0 and a.t[-1] == pytest.approx(2.0, abs=1e-12)
    assert b.t[-1] == pytest.approx(3.0, abs=1e-12)
    assert np.all(np.diff(a.t) > 0) and len(a.t) > 10
    assert np.all(np.isfinite(a["excess_risk"]))


def test_loading_the_same_spec_again_reuses_the_compiled_solver(model: eqgen.Model,
                                                                sol: eqgen.Solution):
    hits = ode._compiled.cache_info().hits
    again = eqgen.load(ERF).solve(save_at=SAVE_AT)
    assert ode._compiled.cache_info().hits > hits
    np.testing.assert_array_equal(again["Q"], sol["Q"])


# ------------------------------------------------------------------------------------------
# output


def test_to_csv(sol: eqgen.Solution, tmp_path: Path):
    path = tmp_path / "x.csv"
    sol.to_csv(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["t", "risk", "excess_risk"]
    assert "Q[0,1]" in rows[0] and "a_star[1]" in rows[0]
    assert len(rows) == 4
    col = rows[0].index("Q[0,1]")
    assert [float(r[col]) for r in rows[1:]] == sol["Q[0,1]"].tolist()


def test_to_json(sol: eqgen.Solution, tmp_path: Path):
    path = tmp_path / "x.json"
    sol.to_json(path)
    doc = json.loads(path.read_text())
    assert doc["t"] == sol.t.tolist()
    assert doc["observables"]["excess_risk"] == sol["excess_risk"].tolist()
    assert doc["states"]["Q"] == sol["Q"].tolist()


def test_plot(sol: eqgen.Solution, tmp_path: Path):
    path = tmp_path / "x.png"
    sol.plot(path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE


# ------------------------------------------------------------------------------------------
# determinism


def test_same_inputs_give_bit_identical_solutions(model: eqgen.Model, sol: eqgen.Solution,
                                                  tmp_path: Path):
    again = model.solve(save_at=SAVE_AT)
    np.testing.assert_array_equal(again.t, sol.t)
    for name in ("risk", "excess_risk", "Q", "M", "P", "a", "a_star"):
        np.testing.assert_array_equal(again[name], sol[name])
    sol.to_csv(tmp_path / "a.csv")
    again.to_csv(tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


# ------------------------------------------------------------------------------------------
# vector field and LaTeX


def test_vector_field_gives_derivatives_of_every_state(model: eqgen.Model):
    f = model.vector_field(params={"gamma": 0.5})
    state = {"Q": 0.5 * np.eye(2), "M": np.array([[0.1, 0.05], [0.02, 0.08]]), "P": np.eye(2)}
    d = f(0.0, state)
    assert set(d) == {"Q", "M", "P", "a", "a_star"}
    for name, value in state.items():
        assert np.shape(d[name]) == value.shape
        assert np.all(np.isfinite(d[name]))
    np.testing.assert_array_equal(np.asarray(d["P"]), 0.0)
    np.testing.assert_array_equal(np.asarray(d["a"]), 0.0)  # fixed second layer
    np.testing.assert_array_equal(np.asarray(d["a_star"]), 0.0)
    dq = np.asarray(d["Q"])
    np.testing.assert_allclose(dq, dq.T, rtol=0, atol=1e-15)
    assert np.any(np.asarray(d["M"]) != 0)
    # gamma reaches the variance term: another rate gives another dQ/dt, the same dM/dt
    d1 = model.vector_field(params={"gamma": 1.0})(0.0, state)
    assert not np.allclose(np.asarray(d1["Q"]), dq)
    np.testing.assert_allclose(np.asarray(d1["M"]), np.asarray(d["M"]), rtol=1e-14)


def test_vector_field_is_the_solved_right_hand_side(model: eqgen.Model):
    h = 1e-3
    s = model.solve(save_at=[0.0, h, 2 * h])  # three save times: the compiled solver is reused
    d = model.vector_field()(0.0, {"Q": s["Q"][0], "M": s["M"][0], "P": s["P"][0]})
    for name in ("Q", "M"):
        y = s[name]
        slope = (-3 * y[0] + 4 * y[1] - y[2]) / (2 * h)  # second order one-sided difference
        np.testing.assert_allclose(slope, np.asarray(d[name]), rtol=0, atol=1e-5)


def test_latex_returns_the_document(model: eqgen.Model):
    doc = model.latex()
    assert doc.lstrip().startswith(r"\documentclass")
    assert r"\begin{document}" in doc and doc.rstrip().endswith(r"\end{document}")
    assert r"\frac{dM_{jr}}{dt}" in doc and r"\frac{dQ_{jl}}{dt}" in doc
    assert model.latex() == doc
