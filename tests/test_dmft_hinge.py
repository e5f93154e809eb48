"""The hinge loss in the DMFT family: smoothed at a temperature T, with its smoothing error
stated, extrapolated on request, and checked against a finite-d simulation of the hinge itself
(docs/dmft.md, Non-smooth losses: the hinge, where the hinge's ℓ'' is a delta at the margin)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import eqgen
from eqgen.errors import SpecError
from tests.helpers import model_path

HINGE = model_path("gmm_two_cluster_hinge")


def _spec(tmp_path: Path, loss: str, params: str = "T = 0.05") -> Path:
    text = HINGE.read_text().replace("loss hinge(smoothing = T)", f"loss {loss}")
    text = text.replace("q0 = 1, T = 0.0125", f"q0 = 1, {params}")
    path = tmp_path / "hinge.eqg"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("loss", "message"), [
    ("hinge", "the hinge loss is not smooth"),
    ("hinge()", "hinge() needs its smoothing temperature"),
    ("hinge(smoothing = 0.05)", "the hinge's smoothing must be a declared parameter"),
    ("hinge(temperature = T)", "unknown argument 'temperature'"),
])
def test_malformed_hinge_is_a_spec_error_with_a_hint(tmp_path: Path, loss: str,
                                                     message: str) -> None:
    with pytest.raises(SpecError) as err:
        eqgen.load(_spec(tmp_path, loss)).equations  # noqa: B018
    text = err.value.format()
    assert message in text and "hint:" in text and "hinge.eqg:" in text


def test_non_positive_temperature_is_refused() -> None:
    model = eqgen.load(HINGE)
    with pytest.raises(SpecError, match="smoothing T must be positive"):
        model.resolve({"T": 0.0})


def test_smoothed_derivative_tends_to_the_hinge_subgradient() -> None:
    """ℓ'_T(y, h) = −y σ((1 − yh)/T): at a tiny T (the simulation's) it is the subgradient
    −y 1{yh < 1} away from the margin, and the loss is max(0, 1 − yh)."""
    from eqgen.dmft_model import HINGE_SIMULATION_TEMPERATURE

    model = eqgen.load(HINGE)
    problem = model.problem({"T": HINGE_SIMULATION_TEMPERATURE})
    h = np.array([-2.0, 0.3, 0.999, 1.001, 2.5])
    for y in (-1.0, 1.0):
        want_d = np.where(y * h < 1, -y, 0.0)
        want = np.maximum(0.0, 1 - y * h)
        assert np.allclose(np.asarray(problem.dloss(y, h)), want_d, atol=1e-12)
        assert np.allclose(np.asarray(problem.loss(y, h)), want, atol=1e-12)


def test_solve_states_the_smoothing_error_and_extrapolates() -> None:
    model = eqgen.load(HINGE)
    plain = model.solve(samples=3000, seed=1, t_max=1.0, params={"T": 0.05})
    meta = plain.metadata
    assert meta["smoothing"] == {"parameter": "T", "temperature": 0.05}
    assert set(meta["smoothing_error"]) >= {"m", "Q", "train_loss"}
    assert 0 < meta["smoothing_error"]["m"] < 0.2
    ext = model.solve(samples=3000, seed=1, t_max=1.0, params={"T": 0.05}, extrapolate=True)
    half = model.solve(samples=3000, seed=1, t_max=1.0, params={"T": 0.025})
    # Richardson with common random numbers: (4 x(T/2) − x(T)) / 3, exactly
    assert np.allclose(ext["m"], (4 * half["m"] - plain["m"]) / 3, rtol=1e-12, atol=1e-14)
    assert "extrapolated to the hinge" in ext.metadata["method"]


def _worst(model: eqgen.Model, params: dict, sim: eqgen.Solution, samples: int) -> dict:
    """Largest deviation of the DMFT from the simulation, in units of the allowed error
    (4 s.e. of both plus 1 % of the value plus 0.004, as for the logistic loss)."""
    th = model.solve(params=params, samples=samples, seed=5, save_at=sim.t,
                     t_max=float(sim.t[-1]))
    worst = {}
    for key in ("m", "Q", "train_loss", "train_error", "test_error"):
        allowed = (4 * np.hypot(sim[f"{key}_stderr"], 0.5 / np.sqrt(samples))
                   + 0.01 * np.abs(th[key]) + 0.004)
        worst[key] = float(np.max(np.abs(th[key] - sim[key]) / allowed))
    return worst


@pytest.mark.slow
def test_smoothed_dmft_tracks_the_simulated_hinge_and_large_smoothing_fails() -> None:
    """d = 4000, 3 seeds of the hinge itself against the DMFT at the default T = ηΔ/4; the
    same comparison at T = 0.2 (a visible smoothing error) fails it."""
    model = eqgen.load(HINGE)
    sim = model.simulate(d=4000, seeds=3, seed=11, t_max=3.0, progress=False)
    assert sim.metadata["parameters"]["T"] == 0.0125  # the spec's; the hinge is simulated
    good = _worst(model, {}, sim, samples=20_000)
    assert max(good.values()) < 1, good
    bad = _worst(model, {"T": 0.2}, sim, samples=20_000)
    assert max(bad.values()) > 2, bad
