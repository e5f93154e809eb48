"""Published facts of the committee ODEs (docs/theory.md, Facts the implementation is tested
against): the risk at Q = I, M = 0, the Saad–Solla symmetric plateau, and the map between
Saad–Solla and normalised units."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import eqgen
from tests.helpers import committee_spec, model_path


def _risk(model: eqgen.Model, state: dict, params: dict) -> float:
    st = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in state.items()}
    pr = {k: jnp.asarray(float(v)) for k, v in params.items()}
    return float(model.module.observables(st, pr)["excess_risk"])


@pytest.mark.parametrize("K", [1, 2, 3, 5, 10])
def test_risk_at_identity_is_one_over_3K(K: int) -> None:
    model = eqgen.load(model_path("committee_erf"))
    params = {**model.parameters, "p": K, "k": K}
    state = {"Q": np.eye(K), "M": np.zeros((K, K)), "P": np.eye(K), "a": np.ones(K),
             "a_star": np.ones(K)}
    assert _risk(model, state, params) == pytest.approx(1 / (3 * K), rel=1e-13)


def plateau(K: int) -> tuple[float, float, float]:
    q = 1 / (2 * K - 1)
    m = 1 / np.sqrt(K * (2 * K - 1))
    eps_unit = K / np.pi * (np.pi / 6 - K * np.arcsin(1 / (2 * K)))
    return q, m, eps_unit


@pytest.mark.parametrize("K", [2, 3, 4, 5])
def test_saad_solla_plateau_is_a_fixed_point_with_the_published_risk(tmp_path, K: int) -> None:
    """The closed-form symmetric point makes the gradient-flow field vanish, and its risk is
    ε* = (K/π)(π/6 − K arcsin(1/(2K))) (unit readouts), ε*/K² with readouts 1/K."""
    q, m, eps_unit = plateau(K)
    state = {"Q": np.full((K, K), q), "M": np.full((K, K), m), "P": np.eye(K)}
    for c, scale in (("1", 1.0), ("1/p", 1.0 / K**2)):
        model = eqgen.load(committee_spec(tmp_path, name=f"m{len(c)}", p=K, k=K, c_p=c,
                                          c_k=c.replace("p", "k"), regime="gradient_flow"))
        d = model.vector_field()(0.0, state)
        assert float(jnp.abs(d["Q"]).max()) < 1e-13
        assert float(jnp.abs(d["M"]).max()) < 1e-13
        full = {**state, "a": np.ones(K), "a_star": np.ones(K)}
        assert _risk(model, full, model.parameters) == pytest.approx(eps_unit * scale,
                                                                     rel=1e-12)


@pytest.mark.parametrize("K", [2, 3, 4, 5])
def test_saad_solla_plateau_reached_from_symmetric_start(tmp_path, K: int) -> None:
    """Gradient flow from a symmetric start stays symmetric and approaches the plateau (the
    approach is algebraic, ~1/t, so the distance is checked to shrink and be small)."""
    model = eqgen.load(committee_spec(tmp_path, p=K, k=K, c_p="1", c_k="1",
                                      regime="gradient_flow"))
    init = {"Q": 0.2 * np.eye(K) + 0.01, "M": np.full((K, K), 0.05), "P": np.eye(K)}
    sol = model.solve(init=init, save_at=[30.0, 100.0, 300.0], rtol=1e-11, atol=1e-13)
    q, m, eps_unit = plateau(K)
    dist = np.abs(sol["M"] - m).reshape(3, -1).max(axis=1)
    assert dist[0] > dist[1] > dist[2]
    assert dist[2] < 5e-3
    assert sol["excess_risk"][-1] == pytest.approx(eps_unit, rel=2e-2)
    # the symmetric manifold is invariant: all M equal, all off-diagonal Q equal
    M = sol["M"][-1]
    assert np.ptp(M) < 1e-9
    assert np.ptp(sol["Q"][-1][~np.eye(K, dtype=bool)]) < 1e-9


def test_saad_solla_units_map_to_normalised_units() -> None:
    """η_SS = γ/K², t_default = K t_SS, ε_default = ε_SS/K², same (Q, M) (docs/theory.md, Saad
    and Solla)."""
    K, gamma = 3, 1.5
    default = eqgen.load(model_path("committee_erf"))
    ss = eqgen.load(model_path("saad_solla"))
    rng = np.random.default_rng(3)
    W = rng.standard_normal((K, 400)) * 0.3
    Ws = np.linalg.qr(rng.standard_normal((400, K)))[0].T * np.sqrt(400)
    init = {"Q": W @ W.T / 400, "M": W @ Ws.T / 400, "P": Ws @ Ws.T / 400}
    t_ss = np.array([0.0, 5.0, 20.0, 60.0])
    s1 = ss.solve(params={"p": K, "k": K, "eta": gamma / K**2}, init=init, save_at=t_ss,
                  rtol=1e-11, atol=1e-13)
    s2 = default.solve(params={"p": K, "k": K, "gamma": gamma}, init=init, save_at=K * t_ss,
                       rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(s2["Q"], s1["Q"], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(s2["M"], s1["M"], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(s2["excess_risk"], s1["excess_risk"] / K**2, rtol=1e-7)
