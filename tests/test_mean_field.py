"""The mean-field (large-p) reduction against the full ODE (docs/theory.md, Mean-field reduction).

Three routes: (1) on the manifold Q = MMᵀ + diag(q⊥) the reduced right-hand side must *equal*
the full one projected (dM, and dq⊥ = dQ_jj − 2 Σ_r M_jr dM_jr) to round-off — a planted error
(the factor 2 of dq⊥ dropped) must break this; (2) solved trajectories differ from the full
ODE's only by the neglected O(1/p) off-teacher overlaps, so the difference must shrink like 1/p
from p = 16 to 64; (3) a finite-d SGD simulation at p = 32 agrees with the reduced ODE.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

import eqgen
from eqgen.codegen import module as modfile
from eqgen.errors import SpecError
from eqgen.mean_field import MeanFieldModel
from tests.helpers import committee_spec, model_path

ACTIVATIONS = ["erf(z / sqrt(2))", "relu(z)"]


def _manifold(p: int, k: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(p, k)) * 0.4
    q = rng.uniform(0.2, 1.0, p)
    a = rng.uniform(0.5, 1.5, p)
    return {"M": M, "q_perp": q, "a": a, "a_star": rng.uniform(0.5, 1.5, k)}


def _projection_error(full_model: eqgen.Model, module, p: int, k: int, seed: int) -> float:
    """max |reduced − projected full| over dM, dq⊥ and the risk, at a random manifold point."""
    s = _manifold(p, k, seed)
    M, q = s["M"], s["q_perp"]
    full_state = {"Q": M @ M.T + np.diag(q), "M": M, "P": np.eye(k), "a": s["a"],
                  "a_star": s["a_star"]}
    full = full_model.vector_field({"p": p, "k": k})(0.0, full_state)
    params = {**full_model.parameters, "p": float(p), "k": float(k)}
    red = module.vector_field(0.0, s, params)
    dM = np.asarray(full["M"])
    dq = np.diagonal(np.asarray(full["Q"])) - 2 * np.sum(M * dM, axis=1)
    risk_full = full_model.module.observables(full_state, params)["risk"]
    risk_red = module.observables(s, params)["risk"]
    return max(np.abs(dM - np.asarray(red["M"])).max(),
               np.abs(dq - np.asarray(red["q_perp"])).max(), abs(risk_full - risk_red))


@pytest.mark.parametrize("sigma", ACTIVATIONS)
def test_reduced_field_equals_projected_full_field(tmp_path, sigma):
    model = eqgen.load(committee_spec(tmp_path, p=6, k=2, sigma=sigma, g=sigma,
                                      regime="gradient_flow"))
    reduced = model.reduced("mean_field")
    for seed in range(3):  # round-off only (ReLU: √(C11 C33 − C13²) at coincident units)
        assert _projection_error(model, reduced.module, 6, 2, seed) < 1e-9


def test_planted_error_in_q_perp_is_caught(tmp_path):
    """Dropping the factor 2 of dq⊥/dt (or the self term u_j B_jj) breaks the exact match."""
    model = eqgen.load(committee_spec(tmp_path, p=6, k=2, regime="gradient_flow"))
    text = model.reduced("mean_field").generated_source()
    for good, bad in (("dq = 2 * a[j]", "dq = a[j]"), ("(drive + u[j] * B[j])", "drive")):
        assert good in text
        path = tmp_path / f"planted_{len(bad)}.py"
        path.write_text(text.replace(good, bad))
        assert _projection_error(model, modfile.load_module(path), 6, 2, 0) > 1e-4


def _trajectory_gap(model: eqgen.Model, p: int, ts: list[float]) -> tuple[float, float]:
    """max |risk_full − risk_reduced| and RMS |M_full − M_reduced| over `ts`."""
    rng = np.random.default_rng(1)
    M = rng.normal(size=(p, 2)) * 0.3
    q = rng.uniform(0.2, 0.6, p)
    full = model.solve({"p": p}, {"Q": M @ M.T + np.diag(q), "M": M}, save_at=ts)
    red = model.solve({"p": p}, {"M": M, "q_perp": q}, save_at=ts, reduction="mean_field")
    gap_M = np.sqrt(np.mean((full["M"] - red["M"]) ** 2, axis=(1, 2))).max()
    return float(np.abs(full["risk"] - red["risk"]).max()), float(gap_M)


def test_difference_to_full_ode_shrinks_like_one_over_p(tmp_path):
    """Same start on the manifold: the full ODE leaves it only through the off-teacher
    overlaps Q⊥_jl, created at rate O(c_p) = O(1/p) and acting back with weight O(1/p) per
    unit over p units, so the gap is O(t/p): it must fall by about 4 from p = 16 to p = 64
    (measured: p · gap in risk = 0.050, 0.052, 0.055 for p = 16, 32, 64 up to t = 50)."""
    model = eqgen.load(committee_spec(tmp_path, p=16, k=2, regime="gradient_flow"))
    ts = [0.0, 1.0, 5.0, 20.0, 50.0]
    gaps = {p: _trajectory_gap(model, p, ts) for p in (16, 32, 64)}
    risk16, m16 = gaps[16]
    risk64, m64 = gaps[64]
    assert 3.0 < risk16 / risk64 < 5.0, gaps
    assert 64 * risk64 < 0.1  # the O(1/p) constant: p · gap ≈ 0.05
    assert m16 / m64 > 2.5, gaps
    assert 64 * m64 < 2.0, gaps


def test_finite_d_simulation_agrees_with_reduced_ode(tmp_path):
    """SGD at d = 2000, p = 32 (γ c_p = 1/32), from weights built with overlaps exactly on the
    manifold (Q = MMᵀ + diag(q⊥), P = I): the reduced ODE follows the simulated risk within
    the O(1/p) gap measured against the full ODE (p · gap ≤ 0.055, test above) plus 3 % and
    4 standard errors (finite d, O(γ c_p) SGD noise). Measured: gap 1.4e-3 at t = 4."""
    model = eqgen.load(committee_spec(tmp_path, p=32, k=2, regime="gradient_flow"))
    rng = np.random.default_rng(1)
    M = rng.normal(size=(32, 2)) * 0.3
    q = rng.uniform(0.2, 0.6, 32)
    init = {"Q": M @ M.T + np.diag(q), "M": M}
    cmp = model.reduced("mean_field").compare(init=init, d=2000, seeds=2,
                                              save_at=[0.0, 0.5, 1.0, 2.0, 4.0],
                                              progress=False)
    theory, sim, err = cmp["risk"], cmp["risk_sim"], cmp["risk_sim_stderr"]
    assert theory[-1] < 0.5 * theory[0]  # it learns
    assert np.all(np.abs(theory - sim) <= 0.06 / 32 + 0.03 * theory + 4 * err), (theory, sim)


def test_shipped_model_is_reduced_and_keeps_the_csv_contract(tmp_path):
    model = eqgen.load(model_path("committee_mean_field"))
    assert isinstance(model, MeanFieldModel)
    sol = model.solve({"p": 50}, save_at=[0.0, 1.0, 2.0])
    out = tmp_path / "mf.csv"
    sol.to_csv(out)
    header = next(csv.reader(out.open()))
    assert header[:3] == ["t", "risk", "excess_risk"]
    assert header[3:6] == ["M[0,0]", "M[0,1]", "M[1,0]"]
    assert header[-1] == "q_perp[49]" and len(header) == 3 + 50 * 3
    assert np.all(np.diff(sol["risk"]) < 0)
    # large p: states left out unless asked for, and said so
    big = model.solve({"p": 3000}, save_at=[0.0, 0.1])
    assert not big.states and "states_left_out" in big.metadata


def test_a_failed_reduced_solve_keeps_the_times_before_the_failure():
    """As for the full ODE: the solution up to the last good time, with its risk, marked
    partial — and equal to the unbroken solve there."""
    model = eqgen.load(model_path("committee_mean_field"))
    times = np.linspace(0.0, 2.0, 21)
    whole = model.solve({"p": 50}, save_at=times)
    with pytest.raises(eqgen.NumericalError) as info:
        model.solve({"p": 50}, save_at=times, max_steps=6)
    part = info.value.partial
    assert isinstance(part, eqgen.Solution) and part.metadata["partial"] is True
    n = len(part.t)
    assert 1 <= n < len(times) and part.t[-1] < info.value.t
    assert part.metadata["failure"]["t"] == pytest.approx(info.value.t)
    assert np.all(np.isfinite(part["risk"])) and part.states["q_perp"].shape == (n, 50)
    np.testing.assert_allclose(part["risk"], whole["risk"][:n], rtol=1e-6)


def test_init_checks(tmp_path):
    model = eqgen.load(committee_spec(tmp_path, p=4, k=2, regime="gradient_flow"))
    M = np.full((4, 2), 0.1)
    with pytest.raises(SpecError, match="reduced form"):
        model.solve(init={"Q": np.eye(4) + 0.05, "M": M}, t_max=1, reduction="mean_field")
    with pytest.raises(SpecError, match="P = I"):
        model.solve(init={"M": M, "q_perp": np.ones(4), "P": 2 * np.eye(2)}, t_max=1,
                    reduction="mean_field")
    # Q of the reduced form is accepted and gives the same solution as q_perp
    q = np.linspace(0.5, 1.0, 4)
    a = model.solve(init={"Q": M @ M.T + np.diag(q), "M": M}, save_at=[0, 1],
                    reduction="mean_field")
    b = model.solve(init={"M": M, "q_perp": q}, save_at=[0, 1], reduction="mean_field")
    np.testing.assert_array_equal(a["risk"], b["risk"])


def test_given_q_perp_replaces_the_spec_q_at_large_width(tmp_path):
    """The spec says `init Q = identity(p)`, which at p = 10⁴ is a matrix eqgen refuses to
    build; M and q_perp given to the solve replace it, so the spec's Q is never evaluated."""
    model = eqgen.load(committee_spec(tmp_path, p=4, k=2, regime="gradient_flow"))
    reduced = model.reduced("mean_field")
    p = 10_000
    r = reduced.resolve({"p": p}, {"M": np.zeros((p, 2)), "q_perp": np.ones(p)})
    assert r.init["q_perp"].shape == (p,)


def test_reduction_refused_outside_gradient_flow(tmp_path):
    model = eqgen.load(committee_spec(tmp_path, p=4, k=2, regime="high_dimensional"))
    with pytest.raises(SpecError, match="gradient flow"):
        model.reduced("mean_field")


def test_cli_reduction(tmp_path):
    from tests.helpers import run_quiet

    spec = committee_spec(tmp_path, p=8, k=2, regime="gradient_flow")
    out = tmp_path / "r.csv"
    res = run_quiet("solve", spec, "--reduction", "mean_field", "--save-at", "0,1",
                    "-o", out)
    assert res.code == 0, res
    header = next(csv.reader(out.open()))
    assert header[3] == "M[0,0]" and header[-1] == "q_perp[7]"
    bad = committee_spec(tmp_path, name="hd", p=8, k=2, regime="high_dimensional")
    res = run_quiet("solve", bad, "--reduction", "mean_field", "--t-max", "1")
    assert res.code == 1 and "gradient flow" in res.err


def test_shipped_mean_field_model_simulates_and_compares() -> None:
    """A `regime mean_field` spec simulates its full network (a separately generated full
    module, not the shipped reduced one) and compares it with the reduced ODE."""
    model = eqgen.load(model_path("committee_mean_field"))
    cmp = model.compare(params={"p": 8}, d=200, seeds=1, t_max=0.5, progress=False)
    assert {"excess_risk", "excess_risk_sim", "excess_risk_sim_stderr"} <= set(cmp.observables)
    assert np.all(np.isfinite(cmp["excess_risk_sim"]))
    # start from the measured overlaps: equal at t = 0 up to the dropped off-diagonal Q⊥
    assert abs(cmp["excess_risk"][0] - cmp["excess_risk_sim"][0]) < 0.05
