"""Analysis of the dynamics (eqgen.analysis): fixed points against the closed-form
Saad–Solla plateau (THEORY §1.5), the Jacobian against finite differences of the independent
numpy right-hand side, η_max against that Jacobian and against direct solves on either side,
plateau detection on solved curves, and first-passage times."""

from __future__ import annotations

import json

import numpy as np
import pytest

import eqgen
from eqgen.analysis import (
    CommitteeSystem,
    classify,
    find_fixed_points,
    find_plateaus,
    first_time_below,
    perfect_learning_stability,
    solution_plateaus,
)
from tests.helpers import committee_spec, model_path, run_quiet


def closed_form_plateau(K: int) -> tuple[float, float, float]:
    """Q_jl = 1/(2K−1), M_jr = 1/√(K(2K−1)), ε* (unit readouts)."""
    return (1 / (2 * K - 1), 1 / np.sqrt(K * (2 * K - 1)),
            K / np.pi * (np.pi / 6 - K * np.arcsin(1 / (2 * K))))


@pytest.fixture(scope="module")
def saad_solla() -> eqgen.Model:
    return eqgen.load(model_path("saad_solla"))


@pytest.mark.parametrize("K", [2, 3, 4, 5])
def test_symmetric_plateau_is_found_to_1e8_as_a_saddle(saad_solla, K: int) -> None:
    """Newton from the generic symmetric start lands on the closed-form plateau (unit
    readouts, gradient flow) to 1e-8 — the bordered polish makes this possible at a root with
    zero eigenvalues — and the full Jacobian on the independent coordinates has unstable
    directions: a saddle."""
    found, notes = find_fixed_points(saad_solla, {"p": K, "k": K}, named=["symmetric"],
                                     gradient_flow=True)
    assert len(found) == 1, notes
    fp = found[0]
    q, m, eps = closed_form_plateau(K)
    assert np.abs(fp.state["Q"] - q).max() < 1e-8
    assert np.abs(fp.state["M"] - m).max() < 1e-8
    assert fp.observables["excess_risk"] == pytest.approx(eps, rel=1e-8)
    assert fp.classification == "saddle" and fp.n_unstable >= 1
    assert fp.residual < 1e-14
    assert len(fp.eigenvalues) == K * (K + 1) // 2 + K * K  # triangle of Q, all of M
    # each escape direction is an eigenvector: J v = λ v
    system = CommitteeSystem.build(saad_solla, {"p": K, "k": K}, gradient_flow=True)
    J = system.jacobian(system.point(fp.state))
    for esc in fp.escape_directions:
        v = system.point({k: np.asarray(x) for k, x in esc["direction"].items()})
        lam = esc["eigenvalue"][0]
        assert lam > 0
        np.testing.assert_allclose(J @ v, lam * v, atol=1e-10)


def test_plateau_with_normalised_readouts_has_risk_over_K2() -> None:
    model = eqgen.load(model_path("committee_erf"))
    K = 3
    found, _ = find_fixed_points(model, {"p": K, "k": K}, named=["symmetric"],
                                 gradient_flow=True)
    q, m, eps = closed_form_plateau(K)
    assert np.abs(found[0].state["M"] - m).max() < 1e-8
    assert found[0].observables["excess_risk"] == pytest.approx(eps / K**2, rel=1e-8)
    assert found[0].classification == "saddle"


def _fd_jacobian_numpy(state: dict, gamma_cp: float, c: float, K: int) -> np.ndarray:
    """Central finite differences of the independent numpy right-hand side
    (benchmarks/baseline_numpy.py) on the same coordinates (triangle of Q, then M)."""
    from benchmarks.baseline_numpy import committee_erf_rhs

    iu = np.triu_indices(K)

    def F(x: np.ndarray) -> np.ndarray:
        n = iu[0].size
        Q = np.zeros((K, K))
        Q[iu] = x[:n]
        Q = Q + np.triu(Q, 1).T
        M = x[n:].reshape(K, K)
        dQ, dM = committee_erf_rhs(Q, M, np.eye(K), np.ones(K), np.ones(K), c, c, gamma_cp,
                                   0.0)
        return np.concatenate([dQ[iu], dM.ravel()])

    x0 = np.concatenate([state["Q"][iu], state["M"].ravel()])
    h = 1e-6
    cols = [(F(x0 + h * e) - F(x0 - h * e)) / (2 * h) for e in np.eye(x0.size)]
    return np.array(cols).T


def test_jacobian_matches_finite_differences_of_the_numpy_rhs(saad_solla) -> None:
    K = 2
    system = CommitteeSystem.build(saad_solla, {"p": K, "k": K, "eta": 0.7})
    rng = np.random.default_rng(1)
    W = rng.standard_normal((K, 30)) * 0.7
    Ws = np.linalg.qr(rng.standard_normal((30, K)))[0].T * np.sqrt(30)
    state = {"Q": W @ W.T / 30, "M": W @ Ws.T / 30}
    J = system.jacobian(system.point(state))
    np.testing.assert_allclose(J, _fd_jacobian_numpy(state, 0.7, 1.0, K), atol=1e-7)


def test_eta_max_agrees_with_the_numpy_linearisation_and_direct_solves(saad_solla) -> None:
    """η_max (bisection on max Re λ) against (i) the smallest positive γ with
    det(A + γB) = 0 from finite differences of the numpy field (an independent route, valid
    since the crossing is real here), and (ii) solves just below and above η_max from a small
    perturbation of the perfect point: the distance shrinks below and grows above."""
    import scipy.linalg

    K = 2
    res = perfect_learning_stability(saad_solla, {"p": K, "k": K})
    assert res.rate_name == "eta" and res.stable
    perfect = {"Q": np.eye(K), "M": np.eye(K)}
    A = _fd_jacobian_numpy(perfect, 0.0, 1.0, K)
    B = _fd_jacobian_numpy(perfect, 1.0, 1.0, K) - A
    g = scipy.linalg.eigvals(A, -B)
    g = g[np.isfinite(g) & (np.abs(g.imag) < 1e-6) & (g.real > 0)].real
    assert res.eta_max == pytest.approx(g.min(), rel=1e-6)
    assert res.slowest_decay == pytest.approx(-np.linalg.eigvals(A).real.max(), rel=1e-6)

    rng = np.random.default_rng(0)  # student = teacher + small noise (a valid Ω)
    Ws = np.linalg.qr(rng.standard_normal((40, K)))[0].T * np.sqrt(40)
    W = Ws + 1e-3 * rng.standard_normal((K, 40))
    start = {"Q": W @ W.T / 40, "M": W @ Ws.T / 40, "P": Ws @ Ws.T / 40}
    dist = {}
    for f in (0.97, 1.03):
        sol = saad_solla.solve({"p": K, "k": K, "eta": f * res.eta_max}, start,
                               save_at=[0.0, 300.0], rtol=1e-10, atol=1e-14)
        dist[f] = [np.abs(sol["Q"][i] - np.eye(K)).max() + np.abs(sol["M"][i] - np.eye(K)).max()
                   for i in (0, 1)]
    assert dist[0.97][1] < 0.5 * dist[0.97][0]
    assert dist[1.03][1] > 2 * dist[1.03][0]


def test_single_unit_eta_max_is_the_closed_form(saad_solla) -> None:
    """K = 1 (one erf unit learning one erf unit, Saad–Solla units): linearising by hand
    dR/dt = η[I3(λ,ν,ν) − I3(λ,ν,λ)] and dQ/dt = 2η[I3(λ,λ,ν) − I3(λ,λ,λ)] + η²[I4 terms]
    with THEORY §1.4's closed forms at Q = R = T = 1 gives, in the coordinates (R, Q),

        J = [[−8√3 η/(9π),                 √3 η/(3π)],
             [8η(5√3π − 9√5η)/(45π²),      2η(6√5η − 5√3π)/(15π²)]],

    whose determinant vanishes at η_max = π√15/3 = π√(5/3) ≈ 4.0558 (the trace stays negative
    there). J is per unit of α = steps/d; eqgen's time is t = η α (THEORY §1.1 with c_p = 1),
    so its rates are those of J divided by η: the spectrum at η = 0.5 is checked that way."""
    res = perfect_learning_stability(saad_solla, {"p": 1, "k": 1})
    assert res.eta_max == pytest.approx(np.pi * np.sqrt(15) / 3, rel=1e-9)

    def jacobian(eta: float) -> np.ndarray:
        r3, r5, pi = np.sqrt(3), np.sqrt(5), np.pi
        return np.array([[-8 * r3 * eta / (9 * pi), r3 * eta / (3 * pi)],
                         [8 * eta * (5 * r3 * pi - 9 * r5 * eta) / (45 * pi**2),
                          2 * eta * (6 * r5 * eta - 5 * r3 * pi) / (15 * pi**2)]])

    hand = np.linalg.eigvals(jacobian(0.5)) / 0.5
    assert res.rate == 0.5
    assert res.slowest_decay == pytest.approx(-hand.real.max(), rel=1e-9)
    assert np.linalg.det(jacobian(res.eta_max)) == pytest.approx(0.0, abs=1e-12)


def test_eta_max_in_normalised_units_is_K2_times_saad_solla(saad_solla) -> None:
    """η_SS = γ/K² and t_default = K t_SS (THEORY §1.5): γ_max = K² η_max, rates / K."""
    K = 3
    ss = perfect_learning_stability(saad_solla, {"p": K, "k": K})
    erf = perfect_learning_stability(eqgen.load(model_path("committee_erf")), {"p": K, "k": K})
    assert erf.eta_max == pytest.approx(K**2 * ss.eta_max, rel=1e-9)
    assert erf.gradient_flow_decay == pytest.approx(ss.gradient_flow_decay / K, rel=1e-9)


def test_gradient_flow_has_no_eta_max(tmp_path) -> None:
    """Without the variance term the perfect point is stable at every learning rate: the
    η_max of the high-dimensional ODE comes from the SGD noise term alone."""
    model = eqgen.load(committee_spec(tmp_path, regime="gradient_flow"))
    res = perfect_learning_stability(model)
    assert res.eta_max is None and res.stable


def test_classify() -> None:
    assert classify(np.array([-1.0, -2.0]))[0] == "stable"
    assert classify(np.array([0.5, -2.0]))[:2] == ("saddle", 1)
    assert classify(np.array([0.5, 1.0]))[0] == "unstable"
    assert classify(np.array([1e-12, -1.0]))[0] == "marginal"


# -- plateaus ---------------------------------------------------------------------------------
def test_plateau_detected_at_the_closed_form_level(tmp_path) -> None:
    """Gradient flow (unit readouts) from a slightly asymmetric start: one plateau, at the
    closed-form level, which the curve leaves."""
    K = 2
    model = eqgen.load(committee_spec(tmp_path, p=K, k=K, c_p="1", c_k="1",
                                      regime="gradient_flow"))
    init = {"Q": 0.2 * np.eye(K) + 0.01, "M": np.array([[0.05, 0.05], [0.05, 0.05 + 1e-6]]),
            "P": np.eye(K)}
    sol = model.solve(init=init, t_max=3000, rtol=1e-10, atol=1e-13)
    plateaus = sol.metadata["plateaus"]
    assert len(plateaus) == 1
    pl = plateaus[0]
    _, _, eps = closed_form_plateau(K)
    # the approach to the plateau is algebraic (~1/t, a non-hyperbolic point), so the curve
    # passes within a few 1e-3 of it before escaping; the SGD plateau at η = 0.1 is 4 % higher
    assert pl["level"] == pytest.approx(eps, rel=4e-3)
    assert not pl["open"] and pl["end"] > 3 * pl["start"]
    assert sol["excess_risk"][-1] < 1e-3 * eps  # escaped and learned


def test_sgd_plateau_level_is_the_fixed_point_at_that_learning_rate(saad_solla) -> None:
    """At η = 0.5 the plateau is shifted from the gradient-flow value; the level detected on
    the solved curve is the risk of the saddle that fixed-points finds at the same η."""
    K = 2
    sol = saad_solla.solve({"p": K, "k": K}, t_max=2000, rtol=1e-10, atol=1e-12)
    (pl,) = solution_plateaus(sol)
    # at η > 0 the gradient-flow plateau (with zero eigenvalues) splits into nearby saddles;
    # the curve passes the one its start leads to, found here from the same start
    found, _ = find_fixed_points(saad_solla, {"p": K, "k": K}, named=["spec", "symmetric"])
    assert all(f.classification == "saddle" for f in found)
    levels = np.array([f.observables["excess_risk"] for f in found])
    assert np.abs(levels / pl.level - 1).min() < 1e-4
    assert pl.level > 1.2 * closed_form_plateau(K)[2]


def test_no_plateau_on_a_curve_without_one() -> None:
    sol = eqgen.load(model_path("committee_erf")).solve(t_max=1000)
    assert sol.metadata["plateaus"] == []
    t = np.geomspace(1e-3, 100, 300)
    assert find_plateaus(t, np.exp(-t)) == []  # flat only at t ≪ 1: not a plateau
    assert find_plateaus(t, 1 / (1 + t)) == []


def test_plateaus_in_csv_metadata_json_and_plot(tmp_path, saad_solla) -> None:
    sol = saad_solla.solve({"p": 2, "k": 2}, t_max=500)
    sol.to_csv(tmp_path / "s.csv")
    meta = json.loads((tmp_path / "s.csv.meta.json").read_text())
    assert len(meta["plateaus"]) == 1 and meta["plateau_criterion"]["flatness"] == 0.05
    sol.to_json(tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["metadata"]["plateaus"]
    sol.plot(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000


# -- first-passage times ----------------------------------------------------------------------
def test_first_time_below() -> None:
    t = np.linspace(0, 10, 2001)
    assert first_time_below(t, np.exp(-t), 0.1) == pytest.approx(np.log(10), abs=1e-4)
    assert first_time_below(t, np.exp(-t), 1e-9) is None
    assert first_time_below(t, 1 - t, 0.25) == pytest.approx(0.75, abs=1e-12)


def test_time_to_cli_on_a_dmft_model(tmp_path) -> None:
    out = tmp_path / "t.json"
    r = run_quiet("time-to", model_path("glm_ridge_square"), "--loss", "0.1", "--loss",
                  "1e-9", "-o", out)
    assert r.code == 0, r.err
    doc = json.loads(out.read_text())
    t01 = doc["times"][0]["t"]
    sol = eqgen.load(model_path("glm_ridge_square")).solve()
    i = int(np.searchsorted(sol.t, t01))
    assert sol["train_loss"][i - 1] > 0.1 >= sol["train_loss"][i]
    assert doc["times"][1]["t"] is None
    assert "interpolation_time" in doc and "not reached" in r.out


# -- command line -----------------------------------------------------------------------------
def test_cli_fixed_points_and_stability(tmp_path) -> None:
    out = tmp_path / "fp.json"
    r = run_quiet("fixed-points", model_path("saad_solla"), "--gradient-flow", "--start",
                  "symmetric", "--start", "perfect", "-o", out)
    assert r.code == 0, r.err
    doc = json.loads(out.read_text())
    kinds = sorted(f["classification"] for f in doc["fixed_points"])
    assert kinds == ["saddle", "stable"]
    csv = tmp_path / "st.csv"
    r = run_quiet("stability", model_path("saad_solla"), "--sweep", "eta=0.5,3", "-o", csv)
    assert r.code == 0, r.err
    rows = csv.read_text().splitlines()
    assert rows[0].startswith("eta,") and "False" in rows[2] and "True" in rows[1]


@pytest.mark.parametrize("args, code, text", [
    (("stability", "models/saad_solla.eqg", "--set", "p=3"), 2, "p = 3, k = 2"),
    (("stability", "models/saad_solla.eqg", "--set", "Delta=0.1"), 2, "Delta=0"),
    (("stability", "models/saad_solla.eqg", "--sweep", "eta=1:2"), 2, "a:b:n"),
    (("fixed-points", "models/saad_solla.eqg", "--start", "nope"), 2, "unknown start"),
    (("fixed-points", "models/glm_ridge_square.eqg"), 2, "time-to"),
])
def test_cli_bad_input(args, code: int, text: str) -> None:
    r = run_quiet(*args)
    assert r.code == code and text in r.err and "Traceback" not in r.err
