"""Readable forms of models, solutions and sweeps: the text a terminal prints (states or axes,
parameters, regime, time unit, observables) and the LaTeX a notebook renders (`_repr_latex_`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import eqgen
from eqgen.runtime.solution import Solution
from eqgen.sweep.grid import Axis
from eqgen.sweep.result import SweepResult

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


# -- DMFT solutions -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dmft_solution() -> Solution:
    """A short DMFT solve (the GLM with square loss at b = 1 is propagated exactly: fast)."""
    return eqgen.load(ROOT / "models" / "glm_ridge_square.eqg").solve(t_max=0.5)


def test_dmft_solution_text(dmft_solution: Solution) -> None:
    text = repr(dmft_solution)
    assert text.splitlines()[0] == "Solution of glm_ridge_square"
    assert "\n  regime       gradient descent (b = 1); discrete steps, η = 0.1\n" in text
    assert "t = k · η after k steps, η = 0.1" in text
    assert "exact Gaussian propagation" in text
    for name in ("m", "Q", "train_loss", "test_error"):
        assert f"\n  {name} " in text, name
    assert f"{dmft_solution['test_loss'][-1]:g}" in text


def test_dmft_solution_latex(dmft_solution: Solution) -> None:
    out = dmft_solution._repr_latex_()
    assert out.startswith("$$\\begin{array}{lrr}") and out.endswith("\\end{array}$$")
    assert "glm\\_ridge\\_square" in out and "t = 0.5" in out
    assert "\\text{train\\_loss} & 1 & " in out


@pytest.mark.parametrize(("extra", "regime"), [
    ({"b": 1.0, "tau": 0.1}, "gradient descent (b = 1); discrete steps, η = 0.1"),
    ({"b": 0.5, "tau": 0.2}, "plain SGD (b = 0.5, τ = η/b); discrete steps, η = 0.1"),
    ({"b": 0.5, "tau": 1.0}, "persistent SGD (b = 0.5, τ = 1); discrete steps, η = 0.1"),
    ({"b": 0.5, "tau": 1.0, "continuous": True},
     "persistent SGD (b = 0.5, τ = 1); continuous time (η → 0), solved at step η = 0.1"),
    ({"method": "sampled trajectories"}, "discrete steps, η = 0.1"),
])
def test_dmft_regime_line(extra: dict, regime: str) -> None:
    """GD, plain or persistent SGD from b and τ, discrete or continuous, and the step η."""
    sol = Solution(np.array([0.0, 0.1]), {"m": np.array([0.0, 0.1])}, {},
                   {"model": "toy_dmft", "family": "dmft", "eta": 0.1, **extra})
    assert f"\n  regime     {regime}\n" in repr(sol)


# -- sweeps -------------------------------------------------------------------------------------
LINEAR = """model lin "linear units"
param p = 2, k = 2, gamma = 1.0, Delta = 0.0
data gaussian
teacher committee(width = k, activation = z, readout = 1/k, noise = Delta)
student committee(width = p, activation = z, readout = 1/p, second_layer = fixed(1))
loss square
sgd learning_rate = gamma, batch = 1
init Q = 0.5 * identity(p), M = 0.1 * ones(p, k), P = identity(k)
time t_max = 4
"""


@pytest.fixture(scope="module")
def two_point_sweep(tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    """Two grid points of a linear committee: γ = 0.5 converges, γ = 200 diverges."""
    path = tmp_path_factory.mktemp("sweep") / "lin.eqg"
    path.write_text(LINEAR)
    return eqgen.load(path).sweep({"gamma": [0.5, 200.0]}, save_at=[0.0, 1.0, 2.0, 4.0])


def test_sweep_text(two_point_sweep: SweepResult) -> None:
    res = two_point_sweep
    text = repr(res)
    lines = text.splitlines()
    assert lines[0] == "SweepResult of lin"
    assert "\n  axes         gamma: 0.5, 200 (2 values)\n" in text
    assert "\n  points       2 (1 solved, 1 failed)\n" in text
    failed = next(line for line in lines if line.startswith("  failed"))
    assert "#1 gamma = 200: the overlaps diverged" in failed and len(failed) < 110
    assert "hint" not in text  # the failure's first line only
    assert "\n  times        4 times, t = 0 … 4\n" in text
    assert "p = 2, k = 2, Delta = 0" in text and "high_dimensional" in text
    assert lines[-1] == "  observables  risk, excess_risk"


def test_sweep_latex(two_point_sweep: SweepResult) -> None:
    out = two_point_sweep._repr_latex_()
    assert out.startswith("$$\\begin{array}{rr}") and out.endswith("\\end{array}$$")
    assert "lin: 2 points, 1 failed, 4 times" in out
    assert "\\text{gamma} & \\text{excess\\_risk},\\ t = 4 \\\\ \\hline" in out
    final = two_point_sweep.final()[0]
    assert f"0.5 & {final:.4g} \\\\" in out
    assert "200 & \\text{failed} \\\\" in out


def _big_sweep(n_a: int, n_b: int, failed: set[int]) -> SweepResult:
    """A grid of n_a × n_b points with made-up values (no solve), some of them failed."""
    a, b = Axis("gamma", np.linspace(0.1, 1.0, n_a)), Axis("q0", np.geomspace(0.1, 10, n_b), True)
    points = [{"gamma": float(x), "q0": float(y)} for x in a.values for y in b.values]
    n = len(points)
    ok = np.array([i not in failed for i in range(n)])
    return SweepResult([a, b], points, np.array([0.0, 1.0]),
                       {"excess_risk": np.arange(2.0 * n).reshape(n, 2)},
                       [{} for _ in points], ok,
                       [None if ok[i] else f"diverged at t = {i}" for i in range(n)],
                       np.zeros(n, dtype=int), {"model": "toy_grid"})


def test_big_sweep_forms_are_short() -> None:
    """A long axis is written as a range, only a few failed points are named, and the LaTeX
    table is cut with a count of the rest."""
    res = _big_sweep(3, 40, failed=set(range(0, 120, 10)))
    text = repr(res)
    assert "gamma: 0.1, 0.55, 1 (3 values)" in text
    assert "q0: 0.1 … 10 (40 values, log)" in text
    assert "120 (108 solved, 12 failed)" in text
    assert text.count(": diverged at t = ") == 5 and "… and 7 more (see .failed)" in text
    assert len(text.splitlines()) < 20
    out = res._repr_latex_()
    assert out.count("\\\\\n") < 20 and "and 108 more points" in out
    assert "0.1 & 0.1 & \\text{failed} \\\\" in out
