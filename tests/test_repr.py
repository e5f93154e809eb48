"""Readable forms of models and solutions: the text a terminal prints (states, parameters,
regime, time unit, observables) and the LaTeX a notebook renders (`_repr_latex_`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import eqgen
from eqgen.runtime.solution import Solution

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ("states", "parameters", "regime", "time unit", "observables")


@pytest.mark.parametrize("name", ["committee_erf", "saad_solla", "committee_trained_readout",
                                  "gmm_two_cluster_logistic", "glm_ridge_square"])
def test_model_text(name: str) -> None:
    model = eqgen.load(ROOT / "models" / f"{name}.eqg")
    text = repr(model)
    assert text.splitlines()[0].startswith(f"Model {name}")
    for field in FIELDS:
        assert f"\n  {field} " in text, field
    for param, value in model.parameters.items():
        assert f"{param} = {value:g}" in text
    if model.family == "dmft":
        assert "train_loss" in text and "test_error" in text and "t = k · η" in text
    else:
        assert "Q (p×p)" in text and "M (p×k)" in text and "excess_risk" in text
        assert "t = steps · γ c_p / d" in text
    assert ("a (p, trained second layer)" in text) == (name == "committee_trained_readout")


def test_model_text_needs_no_derivation() -> None:
    """Printing a model is cheap: it neither derives nor compiles."""
    model = eqgen.load(ROOT / "models" / "committee_erf.eqg")
    repr(model)
    assert "equations" not in model.__dict__ and model._module is None


def test_model_latex_is_its_equations() -> None:
    model = eqgen.load(ROOT / "models" / "saad_solla.eqg")
    out = model._repr_latex_()
    assert out.count("$$\\begin{aligned}") == 2  # M and Q
    assert "\\frac{dM_{jr}}{dt}" in out and "\\frac{dQ_{jl}}{dt}" in out
    assert "\\eta\\; a_j a_l" in out  # the spec's LaTeX name for the learning rate
    assert out.count("$$") % 2 == 0


def test_dmft_model_latex() -> None:
    out = eqgen.load(ROOT / "models" / "gmm_two_cluster_logistic.eqg")._repr_latex_()
    assert "\\frac{dm}{dt}" in out and "M_R" in out


def _solution() -> Solution:
    t = np.array([0.0, 1.0, 2.0])
    return Solution(t, {"risk": np.array([0.5, 0.1, 1.5e-7])},
                    {"Q": np.zeros((3, 2, 2))},
                    {"model": "toy_model", "parameters": {"p": 2.0, "gamma": 0.5},
                     "regime": "high_dimensional", "family": "committee"})


def test_solution_text() -> None:
    text = repr(_solution())
    assert text.splitlines()[0] == "Solution of toy_model"
    assert "3 times, t = 0 … 2" in text
    assert "p = 2, gamma = 0.5" in text
    assert "high_dimensional" in text and "t = steps · γ c_p / d" in text
    assert "Q (2, 2)" in text
    assert "\n  risk        0.5 → 1.5e-07" in text


def test_solution_latex_table() -> None:
    out = _solution()._repr_latex_()
    assert out.startswith("$$\\begin{array}{lrr}") and out.endswith("\\end{array}$$")
    assert "toy\\_model" in out
    assert "\\text{risk} & 0.5 & 1.5 \\times 10^{-7} \\\\" in out
    assert "t = 2" in out


def test_solved_solution_forms() -> None:
    sol = eqgen.load(ROOT / "models" / "committee_erf.eqg").solve(save_at=[0.0, 1.0, 5.0])
    text = repr(sol)
    assert "Solution of committee_erf" in text and "excess_risk" in text
    assert f"{sol['excess_risk'][-1]:g}" in text
    assert "\\text{excess\\_risk}" in sol._repr_latex_()
