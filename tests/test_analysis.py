"""Analysis of the dynamics (eqgen.analysis): fixed points against the closed-form
Saad–Solla plateau (docs/theory.md, Facts the implementation is tested against), the Jacobian
against finite differences of independent numpy right-hand sides (erf and ReLU), η_max against
that Jacobian and against direct solves on either side, the risk's decay rate against fits of
solved curves, ReLU's non-differentiable points, plateau detection on solved curves,
first-passage and interpolation times, planted errors that the checks must catch, and the
outputs printed on docs/analysis.md."""

from __future__ import annotations

import json
import re
import shlex

import numpy as np
import pytest

import eqgen
from eqgen.analysis import (
    CommitteeSystem,
    classify,
    find_fixed_points,
    find_plateaus,
    first_time_below,
    interpolation_time,
    perfect_learning_stability,
    solution_plateaus,
)
from eqgen.analysis.crossing import interpolation_spread
from eqgen.analysis.fixed_points import NOT_DIFFERENTIABLE
from tests.helpers import ROOT, committee_spec, model_path, run_quiet


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


@pytest.fixture(scope="module")
def square_committee() -> eqgen.Model:
    return eqgen.load(model_path("committee_square"))


def test_square_activation_rotations_are_neutral_not_unstable(square_committee) -> None:
    """σ = z², p = k = 2: rotating the student's units leaves the network unchanged, so the
    perfect point lies on a circle of fixed points (M = O, Q = P = I) and J has an exact zero
    eigenvalue at every γ. It is split off (one neutral direction, named in a note); the other
    modes decide: stable at γ = 0.2 (slowest rate 2.4), η_max = 1/2. Direct solves from near
    the point settle below η_max and leave above it."""
    res = perfect_learning_stability(square_committee, {"p": 2, "k": 2})
    assert res.stable and res.slowest_decay == pytest.approx(2.4, rel=1e-9)
    assert res.eta_max == pytest.approx(0.5, rel=1e-9)
    assert res.risk_decay == pytest.approx(2.4, rel=1e-9)
    assert np.sum(np.abs(res.eigenvalues) < 1e-12) == 1
    assert any("1 neutral direction" in n for n in res.notes)
    start = {"Q": [[1.02, 0.01], [0.01, 0.99]], "M": [[1.0, 0.01], [-0.005, 0.99]],
             "P": np.eye(2)}
    below = square_committee.solve({"p": 2, "k": 2, "gamma": 0.45}, start, t_max=40.0)
    assert below["excess_risk"][-1] < 1e-6 * below["excess_risk"][0]
    with pytest.raises(eqgen.NumericalError):
        square_committee.solve({"p": 2, "k": 2, "gamma": 0.55}, start, t_max=40.0)


def test_without_the_neutral_split_the_square_committee_looks_unstable(
        square_committee, monkeypatch) -> None:
    """The planted error: the zero eigenvalue left in, round-off decides the sign and the point
    is called unstable at every learning rate (η_max = 0) — what the split prevents."""
    import eqgen.analysis.stability as stability

    monkeypatch.setattr(stability, "neutral_split", lambda jacobians: (0, None))
    res = perfect_learning_stability(square_committee, {"p": 2, "k": 2})
    assert abs(res.slowest_decay) < 1e-12 and res.eta_max != pytest.approx(0.5, rel=1e-3)


def test_single_unit_eta_max_is_the_closed_form(saad_solla) -> None:
    """K = 1 (one erf unit learning one erf unit, Saad–Solla units): linearising by hand
    dR/dt = η[I3(λ,ν,ν) − I3(λ,ν,λ)] and dQ/dt = 2η[I3(λ,λ,ν) − I3(λ,λ,λ)] + η²[I4 terms]
    with the closed forms (docs/numerics.md, The expectation engine) at Q = R = T = 1 gives,
    in the coordinates (R, Q),

        J = [[−8√3 η/(9π),                 √3 η/(3π)],
             [8η(5√3π − 9√5η)/(45π²),      2η(6√5η − 5√3π)/(15π²)]],

    whose determinant vanishes at η_max = π√15/3 = π√(5/3) ≈ 4.0558 (the trace stays negative
    there). J is per unit of α = steps/d; eqgen's time is t = η α (docs/theory.md, Time, with
    c_p = 1), so its rates are those of J divided by η: the spectrum at η = 0.5 is checked
    that way."""
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
    """η_SS = γ/K² and t_default = K t_SS (docs/theory.md, Saad and Solla): γ_max = K² η_max,
    rates / K."""
    K = 3
    ss = perfect_learning_stability(saad_solla, {"p": K, "k": K})
    erf = perfect_learning_stability(eqgen.load(model_path("committee_erf")), {"p": K, "k": K})
    assert erf.eta_max == pytest.approx(K**2 * ss.eta_max, rel=1e-9)
    assert erf.gradient_flow_decay == pytest.approx(ss.gradient_flow_decay / K, rel=1e-9)


# -- the decay rate of the risk near perfect learning -----------------------------------------
def _near_teacher(K: int, noise: float = 1e-2, d: int = 100) -> dict[str, np.ndarray]:
    """Overlaps of a student = teacher + noise·N(0, 1) weights (a valid Ω), P ≈ I."""
    rng = np.random.default_rng(0)
    Ws = np.linalg.qr(rng.standard_normal((d, K)))[0].T * np.sqrt(d)
    W = Ws + noise * rng.standard_normal((K, d))
    return {"Q": W @ W.T / d, "M": W @ Ws.T / d, "P": Ws @ Ws.T / d}


def _rotated_teacher(theta: float = 1e-2) -> dict[str, np.ndarray]:
    """K = 2: the student is the teacher rotated by θ in the teachers' plane (Q = P = I)."""
    c, s = np.cos(theta), np.sin(theta)
    return {"Q": np.eye(2), "M": np.array([[c, s], [-s, c]]), "P": np.eye(2)}


@pytest.mark.parametrize("K, eta, start, window, rate_name, rel", [
    (1, 0.5, "near", (32.0, 48.0), "risk_decay", 1e-2),  # 2 × slowest_decay
    (2, 2.0, "near", (60.0, 250.0), "risk_decay", 1e-2),  # an η-dependent mode's rate
    (2, 0.5, "rotated", (60.0, 160.0), "risk_decay", 2e-2),  # 2 × slowest_decay
    (2, 0.5, "near", (15.0, 60.0), "risk_decay_first_order", 1e-2),
], ids=["K1-eta0.5", "K2-eta2", "K2-eta0.5-rotated", "K2-eta0.5-near"])
def test_risk_decay_is_the_fitted_decay_of_a_solved_curve(saad_solla, K: int, eta: float,
                                                          start: str, window: tuple,
                                                          rate_name: str, rel: float) -> None:
    """The risk of a curve solved from near the teacher decays as e^{−rate t}, with the rate
    `eqgen stability` reports, which is *not* the overlaps' `slowest_decay`: the slowest mode
    leaves the risk unchanged to first order. From a generic start close to the teacher the
    first-order modes dominate as long as the curve can be followed (K = 2, η = 0.5:
    `risk_decay_first_order`); from a rotated teacher both orders start equal and the
    asymptotic 2 × slowest_decay shows."""
    res = perfect_learning_stability(saad_solla, {"p": K, "k": K, "eta": eta})
    state = _near_teacher(K) if start == "near" else _rotated_teacher()
    ts = np.linspace(0.0, window[1], 201)
    sol = saad_solla.solve({"p": K, "k": K, "eta": eta}, state, save_at=ts, rtol=1e-12,
                           atol=1e-18)
    risk = np.asarray(sol["excess_risk"])
    keep = ts >= window[0]
    assert np.all(risk[keep] > 1e-14)  # above round-off on the whole window
    fitted = -np.polyfit(ts[keep], np.log(risk[keep]), 1)[0]
    assert fitted == pytest.approx(getattr(res, rate_name), rel=rel)
    assert abs(fitted / res.slowest_decay - 1) > 0.4


def test_gradient_flow_has_no_eta_max(tmp_path) -> None:
    """Without the variance term the perfect point is stable at every learning rate: the
    η_max of the high-dimensional ODE comes from the SGD noise term alone."""
    model = eqgen.load(committee_spec(tmp_path, regime="gradient_flow"))
    res = perfect_learning_stability(model)
    assert res.eta_max is None and res.stable


# -- ReLU: exact derivatives where a unit meets itself, none where two units align ------------
@pytest.fixture(scope="module")
def relu() -> eqgen.Model:
    return eqgen.load(model_path("committee_relu"))


def _relu_field_numpy(Q: np.ndarray, M: np.ndarray, P: np.ndarray) -> np.ndarray:
    """committee_relu's gradient-flow field (readouts 1/p, 1/k, a = a* = 1) on the independent
    coordinates (triangle of Q, then M), written in numpy from the Cho & Saul kernels,
    independently of sympy and the code generator: dM_jr = Σ_c u_c I3(j, p + r, c),
    dQ_jl = Σ_c u_c [I3(j, l, c) + I3(l, j, c)], u = (−1/p, ..., +1/k, ...), with
    I3(j, β, c) = E[Θ(h_j) h_β relu(h_c)] and, for c = j, E[Θ(h) h_β h] = Ω_βj / 2."""
    p, k = M.shape
    omega = np.block([[Q, M], [M.T, P]])
    u = np.concatenate([-np.ones(p) / p, np.ones(k) / k])

    def i3(j: int, b: int, c: int) -> float:
        if j == c:
            return omega[b, c] / 2
        c11, c12, c13, c23, c33 = omega[j, j], omega[j, b], omega[j, c], omega[b, c], omega[c, c]
        rho = np.clip(c13 / np.sqrt(c11 * c33), -1.0, 1.0)
        root = np.sqrt(max(c11 * c33 - c13**2, 0.0))
        return c12 * root / (2 * np.pi * c11) + c23 / (2 * np.pi) * np.arcsin(rho) + c23 / 4

    T = np.array([[sum(u[c] * i3(j, b, c) for c in range(p + k)) for b in range(p + k)]
                  for j in range(p)])
    dQ = T[:, :p] + T[:, :p].T
    return np.concatenate([dQ[np.triu_indices(p)], T[:, p:].ravel()])


def _relu_numpy_at(x: np.ndarray, P: np.ndarray) -> np.ndarray:
    p = P.shape[0]
    iu = np.triu_indices(p)
    Q = np.zeros((p, p))
    Q[iu] = x[:iu[0].size]
    Q = Q + np.triu(Q, 1).T
    return _relu_field_numpy(Q, x[iu[0].size:].reshape(p, -1), P)


def _relu_fd_jacobian(x: np.ndarray, P: np.ndarray, h: float = 1e-6) -> np.ndarray:
    return np.array([(_relu_numpy_at(x + h * e, P) - _relu_numpy_at(x - h * e, P)) / (2 * h)
                     for e in np.eye(x.size)]).T


def _generic_relu_state(K: int = 2, d: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    W = rng.standard_normal((K, d)) * 0.8
    Ws = np.linalg.qr(rng.standard_normal((d, K)))[0].T * np.sqrt(d)
    return {"Q": W @ W.T / d, "M": W @ Ws.T / d, "P": Ws @ Ws.T / d}


@pytest.mark.parametrize("K", [2, 3])
def test_relu_jacobian_is_finite_and_matches_finite_differences_of_a_numpy_field(
        relu, K: int) -> None:
    """At a generic point the jacfwd Jacobian (which used to be entirely NaN: the closed forms
    take √0 and arcsin(1) where a unit meets itself) equals central differences of the numpy
    field above; the fields themselves agree to round-off."""
    state = _generic_relu_state(K)
    system = CommitteeSystem.build(relu, {"p": K, "k": K}, state)
    x = system.point(state)
    np.testing.assert_allclose(system.field(x), _relu_numpy_at(x, state["P"]), atol=1e-14)
    J = system.checked_jacobian(x)
    assert np.all(np.isfinite(J))
    np.testing.assert_allclose(J, _relu_fd_jacobian(x, state["P"]), atol=1e-8)


def test_relu_symmetric_plateau_is_a_saddle_of_the_numpy_field(relu) -> None:
    """`--start symmetric` finds a hyperbolic saddle (one unstable direction); it is a zero of
    the independent numpy field, and the eigenvalues eqgen reports are those of that field's
    finite-difference Jacobian."""
    found, notes = find_fixed_points(relu, {"p": 2, "k": 2}, named=["symmetric"])
    assert len(found) == 1, notes
    fp = found[0]
    assert fp.classification == "saddle" and fp.n_unstable == 1 and fp.n_zero == 0
    assert fp.residual < 1e-14
    assert fp.observables["excess_risk"] == pytest.approx(0.01840323313, rel=1e-9)
    P = fp.state["P"]
    x = np.concatenate([fp.state["Q"][np.triu_indices(2)], fp.state["M"].ravel()])
    assert np.abs(_relu_numpy_at(x, P)).max() < 1e-13
    fd = np.sort(np.linalg.eigvals(_relu_fd_jacobian(x, P)).real)
    np.testing.assert_allclose(np.sort(fp.eigenvalues.real), fd, atol=1e-7)


def test_relu_field_is_once_but_not_twice_differentiable_at_perfect_learning(relu) -> None:
    """Student = teacher: each student unit is aligned with a teacher unit, where every
    √(C11 C33 − C13²) and arcsin(C13/√(C11 C33)) has infinite slope, but in I3 their singular
    parts cancel: the numpy field's one-sided difference quotients converge (like √h) to the
    Jacobian eqgen computes, in every coordinate direction and both signs, while its second
    difference quotient along Q[0,0] grows like h^(-1/2). The slowest decay rate from that
    Jacobian is the decay rate of |M − P| on a solved curve."""
    P = np.eye(2)
    state = {"Q": P, "M": P, "P": P}
    system = CommitteeSystem.build(relu, {"p": 2, "k": 2}, state)
    x = system.point(state)
    J = system.checked_jacobian(x)
    err = {}
    for h in (1e-6, 1e-10):
        err[h] = max(np.abs((_relu_numpy_at(x + s * h * e, P) - _relu_numpy_at(x, P))
                            / (s * h) - J[:, k]).max()
                     for k, e in enumerate(np.eye(x.size)) for s in (1.0, -1.0))
    assert err[1e-10] < 1e-5 and err[1e-10] < err[1e-6] / 30
    e0 = np.eye(x.size)[0]
    second = [np.abs(_relu_numpy_at(x + 2 * h * e0, P) - 2 * _relu_numpy_at(x + h * e0, P)
                     + _relu_numpy_at(x, P)).max() / h**2 for h in (1e-4, 1e-6)]
    assert second[1] > 5 * second[0]
    assert not system.twice_differentiable(x)

    res = perfect_learning_stability(relu, {"p": 2, "k": 2})
    assert res.slowest_decay == pytest.approx(-np.linalg.eigvals(J).real.max(), rel=1e-12)
    assert res.eta_max is None and res.risk_decay is None and res.notes
    start = _near_teacher(2)
    ts = np.linspace(0.0, 200.0, 101)
    sol = relu.solve({"p": 2, "k": 2}, start, save_at=ts, rtol=1e-12, atol=1e-18)
    dist = np.array([np.abs(m - start["P"]).max() for m in sol["M"]])
    keep = ts >= 60
    fitted = -np.polyfit(ts[keep], np.log(dist[keep]), 1)[0]
    assert fitted == pytest.approx(res.slowest_decay, rel=1e-3)


def test_relu_perfect_learning_on_the_command_line(tmp_path) -> None:
    """`stability` gives the decay rate with risk_decay nan and a note saying why;
    `fixed-points --start perfect` classifies the point (stable)."""
    r = run_quiet("stability", model_path("committee_relu"))
    assert r.code == 0, r.err
    head, row = r.out.splitlines()
    values = dict(zip(head.split(","), row.split(","), strict=True))
    assert float(values["slowest_decay"]) == pytest.approx(0.0454225284541, rel=1e-9)
    assert values["risk_decay"] == "nan" and values["eta_max"] == "inf"
    assert "not twice differentiable" in r.err
    out = tmp_path / "fp.json"
    r = run_quiet("fixed-points", model_path("committee_relu"), "--start", "perfect", "-o", out)
    assert r.code == 0, r.err
    (fp,) = json.loads(out.read_text())["fixed_points"]
    assert fp["classification"] == "stable" and fp["observables"]["excess_risk"] == 0.0


def _kinked_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plant a kink the ReLU kernels do not cancel: F + 1e-3 √(max(Q[0,0] − 1, 0)) in its
    first component, at the perfect point Q[0,0] = 1 (the Jacobian is left as it is)."""
    plain = CommitteeSystem.field

    def field(self, x, params=None):  # noqa: ANN001, ANN202
        out = plain(self, x, params).copy()
        out[0] += 1e-3 * np.sqrt(max(float(np.asarray(x)[0]) - 1.0, 0.0))
        return out

    monkeypatch.setattr(CommitteeSystem, "field", field)


def test_a_kink_at_aligned_units_is_reported_as_not_differentiable(monkeypatch,
                                                                   tmp_path) -> None:
    """Where the one-sided difference quotients do not approach the Jacobian (here a planted
    √ kink), both commands say the field is not differentiable and name the aligned units:
    exit code 3, a hint, no traceback; fixed-points still reports the point, unclassified."""
    _kinked_field(monkeypatch)
    r = run_quiet("stability", model_path("committee_relu"))
    assert r.code == 3, r.err
    assert "not differentiable at the perfect-learning point" in r.err
    assert "student 0 and teacher 0 are aligned" in r.err and "hint:" in r.err
    assert "internal error" not in r.err and "Traceback" not in r.err
    out = tmp_path / "fp.json"
    r = run_quiet("fixed-points", model_path("committee_relu"), "--start", "perfect",
                  "--start", "symmetric", "-o", out)
    assert r.code == 3 and "not differentiable at fixed point 0 (from perfect)" in r.err
    perfect, plateau = json.loads(out.read_text())["fixed_points"]
    assert perfect["classification"] == NOT_DIFFERENTIABLE and perfect["eigenvalues"] == []
    assert "aligned" in perfect["reason"] and plateau["classification"] == "saddle"


def test_non_finite_jacobians_and_linear_algebra_failures_are_numerical_errors(
        monkeypatch) -> None:
    """A Jacobian with NaN entries, or numpy's linear algebra failing, is a numerical failure
    (exit code 3) with a message, not an internal error."""
    import eqgen.analysis.system as system_module

    with monkeypatch.context() as m:
        m.setattr(system_module.CommitteeSystem, "jacobian",
                  lambda self, x, params=None: np.full((x.size, x.size), np.nan))
        r = run_quiet("stability", model_path("saad_solla"))
        assert r.code == 3 and "derivative is not finite" in r.err, r.err

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise np.linalg.LinAlgError("planted")

    with monkeypatch.context() as m:
        m.setattr(np.linalg, "eigvals", fail)
        m.setattr(np.linalg, "eig", fail)
        for args in (("stability", model_path("saad_solla")),
                     ("fixed-points", model_path("saad_solla"), "--start", "perfect")):
            r = run_quiet(*args)
            assert r.code == 3 and "linear algebra failed" in r.err, r.err
            assert "internal error" not in r.err


def test_a_start_on_a_smooth_fixed_point_is_kept_as_it_is(saad_solla) -> None:
    """The perfect point of an erf model is a root already: taken without iterating, stable,
    with a risk of exactly 0 (round-off below 0 is not printed as −5e-17)."""
    (fp,), _ = find_fixed_points(saad_solla, {"p": 2, "k": 2}, named=["perfect"])
    assert fp.steps == 0 and fp.classification == "stable"
    assert fp.observables["excess_risk"] == 0.0


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


def _span(patch: object) -> tuple[float, float]:
    """The x extent of an axvspan patch (a Rectangle, or a Polygon in older matplotlib)."""
    if hasattr(patch, "get_width"):
        return float(patch.get_x()), float(patch.get_x() + patch.get_width())
    xs = np.asarray(patch.get_xy())[:, 0]
    return float(xs.min()), float(xs.max())


def test_plateaus_in_csv_metadata_json_and_plot(tmp_path, saad_solla, monkeypatch) -> None:
    """The plateau is in the CSV metadata and the JSON, and the plot draws it: a shaded span
    over [start, end] on the risk panel, with a "plateau" legend entry."""
    import matplotlib.figure

    sol = saad_solla.solve({"p": 2, "k": 2}, t_max=500)
    sol.to_csv(tmp_path / "s.csv")
    meta = json.loads((tmp_path / "s.csv.meta.json").read_text())
    assert len(meta["plateaus"]) == 1 and meta["plateau_criterion"]["flatness"] == 0.05
    sol.to_json(tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["metadata"]["plateaus"]
    figures = []
    save = matplotlib.figure.Figure.savefig

    def capture(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        figures.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    sol.plot(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000
    (pl,) = meta["plateaus"]
    risk_axes = figures[0].axes[0]
    spans = [_span(patch) for patch in risk_axes.patches]
    assert any(a == pytest.approx(pl["start"]) and b == pytest.approx(pl["end"])
               for a, b in spans), spans
    assert "plateau" in [t.get_text() for t in risk_axes.get_legend().get_texts()]


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


@pytest.fixture(scope="module")
def gmm_interpolating() -> list:
    """gmm_two_cluster_logistic at α = 0.5, λ = 0, where the training set is separated:
    N = 2000 sampled trajectories, seeds 0, 1, 2, t_max = 20 (docs/analysis.md §4)."""
    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    return [model.solve({"alpha": 0.5, "lambda": 0.0}, t_max=20, samples=2000, seed=seed)
            for seed in range(3)]


def test_interpolation_time_is_found_and_the_error_stays_zero(gmm_interpolating) -> None:
    """For each seed the interpolation time exists, the sampled training error is zero at
    every saved time from it on and not just before it; the spread over the seeds summarises
    them (a finite-N estimate: the seeds do not all agree)."""
    for sol in gmm_interpolating:
        t = interpolation_time(sol)
        assert t is not None
        i = int(np.flatnonzero(np.isclose(sol.t, t))[0])
        err = np.asarray(sol["train_error"])
        assert np.all(err[i:] == 0) and err[i - 1] > 0
        assert interpolation_time(sol, tol=0.01) <= t
    spread = interpolation_spread(gmm_interpolating, [0, 1, 2])
    summary = spread.summary()
    assert summary["samples"] == 2000 and summary["n_reached"] == 3
    assert summary["min"] <= summary["median"] <= summary["max"]
    assert summary["min"] < summary["max"]


# -- planted errors: the checks above must fail when the analysis is wrong --------------------
def test_without_the_bordered_polish_the_plateau_misses_1e8(saad_solla, monkeypatch) -> None:
    """Plain Newton steps instead of the bordered polish at the (multiple) plateau root leave
    the point about 2e-8 from the closed form: the 1e-8 test above would fail."""
    import eqgen.analysis.fixed_points as fixed_points

    monkeypatch.setattr(fixed_points, "_bordered_polish",
                        lambda system, x, iters=6: fixed_points._newton_polish(system, x))
    (fp,), _ = find_fixed_points(saad_solla, {"p": 2, "k": 2}, named=["symmetric"],
                                 gradient_flow=True)
    q, m, _ = closed_form_plateau(2)
    assert max(np.abs(fp.state["Q"] - q).max(), np.abs(fp.state["M"] - m).max()) > 1e-8


def test_a_wrong_rate_in_the_eta_max_search_is_caught(saad_solla, monkeypatch) -> None:
    """A 10 % error in the learning rate used inside the η_max search moves η_max by 11 %,
    far outside both the closed form (K = 1) and the finite-difference route (K = 2)."""
    import scipy.linalg

    import eqgen.analysis.stability as stability

    plain = stability.max_real_part
    monkeypatch.setattr(stability, "max_real_part",
                        lambda system, x, rate, *rest: plain(system, x, 0.9 * rate, *rest))
    res = perfect_learning_stability(saad_solla, {"p": 1, "k": 1})
    assert abs(res.eta_max / (np.pi * np.sqrt(15) / 3) - 1) > 1e-2
    res = perfect_learning_stability(saad_solla, {"p": 2, "k": 2})
    perfect = {"Q": np.eye(2), "M": np.eye(2)}
    A = _fd_jacobian_numpy(perfect, 0.0, 1.0, 2)
    B = _fd_jacobian_numpy(perfect, 1.0, 1.0, 2) - A
    g = scipy.linalg.eigvals(A, -B)
    g = g[np.isfinite(g) & (np.abs(g.imag) < 1e-6) & (g.real > 0)].real
    assert abs(res.eta_max / g.min() - 1) > 1e-2


# -- the outputs printed on docs/analysis.md ---------------------------------------------------
PAGE = ROOT / "docs" / "analysis.md"
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def _page_output(command: str) -> list[str]:
    """The lines the page shows under `command` (its indented block after a blank line)."""
    lines = PAGE.read_text().splitlines()
    i = lines.index("    " + command) + 2
    out = []
    while i < len(lines) and lines[i].startswith("    "):
        out.append(lines[i][4:])
        i += 1
    return out


def _same(shown: str, printed: str) -> bool:
    """Equal text outside numbers and numbers equal to 1e-8 (relative); a residual bound is
    only required to be below 1e-13 (its power of ten is round-off)."""
    if NUMBER.sub("#", shown).rstrip() != NUMBER.sub("#", printed).rstrip():
        return False
    a = [float(v) for v in NUMBER.findall(shown)]
    b = [float(v) for v in NUMBER.findall(printed)]
    if "residual" in shown:
        return all(v < 1e-13 for v in b)
    # times read off sampled DMFT trajectories move with the LAPACK round-off of the noise
    # factor (numpy 2.4 against an earlier run): a loss time in its 6th digit, and the range
    # of the interpolation time (the last of 2000 trajectories to fit) by one save time
    rel = 0.05 if "sampled trajectories" in shown else 1e-4 if "median" in shown else 1e-8
    return all(x == pytest.approx(y, rel=rel, abs=1e-14) for x, y in zip(a, b, strict=True))


def _check_page(command: str, output: str) -> None:
    """Every line the page shows (except `...`) is printed, in the same order."""
    printed = output.splitlines()
    at = 0
    for shown in _page_output(command):
        if shown.strip() == "...":
            continue
        hits = [i for i in range(at, len(printed)) if _same(shown, printed[i])]
        assert hits, f"page line not printed by `{command}`:\n{shown}\n---\n{output}"
        at = hits[0] + 1


@pytest.mark.slow
def test_docs_page_outputs(tmp_path, monkeypatch, saad_solla, gmm_interpolating) -> None:
    """Run the commands of docs/analysis.md and compare what they print with the page (the
    DMFT one through the command's `report` on the fixture's solves, which are the solves it
    makes); the plateau metadata against the page's JSON excerpt, and its agreement with the
    fixed point (2e-5) that the page states."""
    from eqgen.commands import time_to

    monkeypatch.chdir(ROOT)
    commands = [
        "eqgen fixed-points models/saad_solla.eqg --set p=3 --set k=3 --gradient-flow "
        "--start symmetric",
        "eqgen fixed-points models/committee_relu.eqg --start symmetric",
        "eqgen stability models/saad_solla.eqg --sweep p=1,2,3,4,5 --sweep k=1,2,3,4,5",
        "eqgen time-to models/glm_ridge_square.eqg --loss 0.1 --loss 1e-9",
    ]
    for command in commands:
        r = run_quiet(*shlex.split(command)[1:])
        assert r.code == 0, r.err
        _check_page(command, r.out)
    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    _, lines, notes = time_to.report(model, gmm_interpolating, [0, 1, 2], [0.3])
    _check_page("eqgen time-to models/gmm_two_cluster_logistic.eqg --set alpha=0.5 --set "
                "lambda=0 --t-max 20 --samples 2000 --loss 0.3 --seeds 3", "\n".join(lines))
    assert "finite-N estimate" in notes[0]

    r = run_quiet("solve", "models/saad_solla.eqg", "--t-max", "2000", "-o", tmp_path / "ss.csv")
    assert r.code == 0, r.err
    (pl,) = json.loads((tmp_path / "ss.csv.meta.json").read_text())["plateaus"]
    shown = next(line for line in PAGE.read_text().splitlines() if '"plateaus": [' in line)
    values = dict(re.findall(r'"(\w+)": ([\d.]+)', shown))
    for key in ("start", "end", "level", "t_level"):  # to the digits shown
        digits = len(values[key].split(".")[1])
        assert abs(pl[key] - float(values[key])) <= 0.5 * 10.0**-digits, key
    found, _ = find_fixed_points(saad_solla, {"p": 2, "k": 2}, named=["spec"])
    assert abs(pl["level"] / found[0].observables["excess_risk"] - 1) < 2e-5
    assert found[0].observables["excess_risk"] == pytest.approx(0.0146770, abs=5e-8)


def test_time_to_over_several_seeds(tmp_path) -> None:
    """`--seeds S` solves S times and reports the median and range, every seed's time in the
    JSON; the printed times have 6 significant digits."""
    out = tmp_path / "t.json"
    r = run_quiet("time-to", model_path("glm_ridge_square"), "--loss", "0.1", "--seeds", "2",
                  "--samples", "200", "-o", out)
    assert r.code == 0, r.err
    doc = json.loads(out.read_text())
    assert doc["seeds"] == [0, 1] and len(doc["times"][0]["t_per_seed"]) == 2
    assert doc["interpolation"]["samples"] == 200
    line = r.out.splitlines()[0]
    assert "(median; range" in line
    assert all(len(v.replace(".", "").lstrip("0")) <= 6 for v in NUMBER.findall(line)[1:])


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
    (("time-to", "models/saad_solla.eqg", "--seeds", "2"), 2, "DMFT models only"),
    (("time-to", "models/glm_ridge_square.eqg", "--seeds", "0"), 2, "at least 1"),
])
def test_cli_bad_input(args, code: int, text: str) -> None:
    r = run_quiet(*args)
    assert r.code == code and text in r.err and "Traceback" not in r.err
