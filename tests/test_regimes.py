"""Scaling regimes (docs/theory.md, Regimes): the table, the refusal, and what each keeps in the
ODE."""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest

import eqgen
from eqgen.theories.regimes import NoOdeLimit, classify
from tests.helpers import committee_spec


@pytest.mark.parametrize(("kappa", "delta", "name"), [
    (F(0), F(0), "high_dimensional"),
    (F(1, 2), F(-1, 2), "high_dimensional"),
    (F(0), F(1, 2), "gradient_flow"),
    (F(1), F(0), "gradient_flow"),
    (F(1, 2), F(-2, 3), "noise_dominated"),
])
def test_classification(kappa, delta, name) -> None:
    assert classify("exponents", kappa, delta).name == name


@pytest.mark.parametrize(("kappa", "delta"), [(F(0), F(-1, 2)), (F(1), F(-1)), (F(0), F(-2))])
def test_no_ode_limit_is_refused(kappa, delta) -> None:
    with pytest.raises(NoOdeLimit, match="no ODE limit"):
        classify("exponents", kappa, delta)


def test_gradient_flow_drops_the_variance_term(tmp_path) -> None:
    state = {"Q": np.eye(2) * 0.7, "M": np.full((2, 2), 0.2), "P": np.eye(2)}
    hd = eqgen.load(committee_spec(tmp_path, name="hd", gamma=3.0)).vector_field()(0.0, state)
    gf = eqgen.load(committee_spec(tmp_path, name="gf", gamma=3.0,
                                   regime="gradient_flow")).vector_field()(0.0, state)
    np.testing.assert_allclose(gf["M"], hd["M"], rtol=1e-14)
    assert np.abs(np.asarray(gf["Q"] - hd["Q"])).max() > 1e-3


def test_batch_divides_the_variance_term(tmp_path) -> None:
    state = {"Q": np.eye(2) * 0.7, "M": np.full((2, 2), 0.2), "P": np.eye(2)}
    f = {}
    for b in (1, 4):
        f[b] = eqgen.load(committee_spec(tmp_path, name=f"b{b}", gamma=3.0,
                                         batch=b)).vector_field()(0.0, state)
    gf = eqgen.load(committee_spec(tmp_path, name="gf", gamma=3.0,
                                   regime="gradient_flow")).vector_field()(0.0, state)
    var1 = np.asarray(f[1]["Q"] - gf["Q"])
    var4 = np.asarray(f[4]["Q"] - gf["Q"])
    np.testing.assert_allclose(var4, var1 / 4, rtol=1e-12, atol=1e-15)


def test_noise_dominated_keeps_only_the_variance(tmp_path) -> None:
    path = committee_spec(tmp_path, regime="exponents(kappa = 0.5, delta = -0.6)")
    model = eqgen.load(path)
    d = model.vector_field()(0.0, {"Q": np.eye(2) * 0.7, "M": np.full((2, 2), 0.2),
                                   "P": np.eye(2)})
    assert np.all(np.asarray(d["M"]) == 0)
    assert np.all(np.asarray(d["Q"]) > 0)  # noise only inflates the norms


def test_check_refuses_a_regime_without_ode_limit(tmp_path) -> None:
    path = committee_spec(tmp_path, regime="exponents(kappa = 0, delta = -1)")
    with pytest.raises(eqgen.SpecError, match="no ODE limit"):
        eqgen.load(path)
