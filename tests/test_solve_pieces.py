"""A Tsit5 solve runs in pieces (eqgen.runtime.ode._run_in_pieces): between them it reports its
progress and answers Ctrl-C with the solution so far (`eqgen.Interrupted`).

The pieces must change nothing: a solve cut into one-step pieces takes exactly the steps, and
gives exactly the numbers, of a solve in one piece. (Planted error: starting each piece from a
fresh step size, as a loop that forgot the carried `dt` would, changes the steps and fails the
first test.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest

import eqgen
from eqgen.runtime import ode
from tests.helpers import model_path


@pytest.fixture(scope="module")
def model() -> eqgen.Model:
    return eqgen.load(model_path("committee_erf"))


def _raw(model: eqgen.Model, progress=None, t_max: float = 200.0) -> ode.RawSolution:  # noqa: ANN001
    r = model.resolve()
    ts = np.linspace(0.0, t_max, 41)
    m = model.module
    return ode.solve(m.vector_field, m.observables, r.init, r.params, ts, evolving=m.EVOLVING,
                     state_order=m.STATES, observable_order=m.OBSERVABLES, progress=progress)


def test_a_solve_in_one_step_pieces_equals_the_solve_in_one_piece(
        model: eqgen.Model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ode, "FIRST_PIECE", 10**9)
    whole = _raw(model)
    monkeypatch.setattr(ode, "FIRST_PIECE", 1)
    monkeypatch.setattr(ode, "PIECE_SECONDS", 0.0)  # every later piece is one step
    times: list[float] = []
    pieces = _raw(model, progress=times.append)
    assert pieces.num_steps == whole.num_steps > 100
    assert len(times) == whole.num_steps - 1  # a report after every step but the last
    assert np.all(np.diff(times) >= 0) and 0 < times[0] < times[-1] < 200.0
    for name in whole.states:
        np.testing.assert_array_equal(pieces.states[name], whole.states[name])
    for name in whole.observables:
        np.testing.assert_array_equal(pieces.observables[name], whole.observables[name])


def test_ctrl_c_between_pieces_hands_back_the_solution_so_far(
        model: eqgen.Model, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _raw(model)
    monkeypatch.setattr(ode, "FIRST_PIECE", 1)
    monkeypatch.setattr(ode, "PIECE_SECONDS", 0.0)
    calls: list[float] = []

    def press_ctrl_c(t: float) -> None:  # the 60th report: Ctrl-C arrives between pieces
        calls.append(t)
        if len(calls) == 60:
            raise KeyboardInterrupt

    with pytest.raises(eqgen.Interrupted) as caught:
        _raw(model, progress=press_ctrl_c)
    e = caught.value
    assert isinstance(e, KeyboardInterrupt) and not isinstance(e, eqgen.NumericalError)
    assert e.t == calls[-1] and "interrupted at t = " in str(e)
    part = e.partial
    n = len(part.t)
    assert 1 < n < len(whole.t) and part.t[-1] <= e.t < whole.t[n]
    for name in whole.states:  # the rows saved before the Ctrl-C, exactly as in a whole solve
        np.testing.assert_array_equal(part.states[name], whole.states[name][:n])
    for name in whole.observables:
        np.testing.assert_array_equal(part.observables[name], whole.observables[name][:n])


@contextlib.contextmanager
def _ctrl_c_at_first_report(*args: object) -> Iterator:
    def report(t: float) -> None:
        raise KeyboardInterrupt

    yield report


def test_model_solve_marks_an_interrupted_solution_partial(
        model: eqgen.Model, monkeypatch: pytest.MonkeyPatch) -> None:
    import eqgen.simulate.progress as progress

    monkeypatch.setattr(progress, "over_time", _ctrl_c_at_first_report)
    monkeypatch.setattr(ode, "FIRST_PIECE", 1)
    monkeypatch.setattr(ode, "PIECE_SECONDS", 0.0)
    with pytest.raises(eqgen.Interrupted) as caught:
        model.solve(t_max=50.0)
    part = caught.value.partial
    assert isinstance(part, eqgen.Solution)
    assert part.metadata["partial"] is True
    assert part.metadata["failure"]["message"].startswith("interrupted at t = ")
    assert len(part.t) >= 1 and np.all(np.isfinite(part["excess_risk"]))
