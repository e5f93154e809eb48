"""`eqgen` on DMFT models: the command-line contract (docs/dmft.md, Running it)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from eqgen.cli import main
from tests.helpers import model_path

COLUMNS = ["t", "m", "Q", "train_loss", "train_error", "test_error", "test_loss"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_solve_writes_the_contract_columns(tmp_path: Path) -> None:
    out = tmp_path / "glm.csv"
    code = main(["solve", str(model_path("glm_ridge_square")), "--set", "alpha=3",
                 "--t-max", "1", "-o", str(out), "--plot", str(tmp_path / "glm.png")])
    assert code == 0
    rows = _rows(out)
    assert list(rows[0]) == COLUMNS
    assert len(rows) == 11 and float(rows[-1]["t"]) == pytest.approx(1.0)
    assert (tmp_path / "glm.png").stat().st_size > 1000


def test_sampled_solve_with_samples_seed_and_save_at(tmp_path: Path) -> None:
    out = tmp_path / "gmm.csv"
    args = ["solve", str(model_path("gmm_two_cluster_logistic")), "--samples", "500",
            "--seed", "3", "--save-at", "0.5,1", "-o", str(out)]
    assert main(args) == 0
    first = _rows(out)
    assert [float(r["t"]) for r in first] == [0.0, 0.5, 1.0]
    assert main(args) == 0
    assert _rows(out) == first  # seeded: reproducible


def test_save_at_off_the_step_grid_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    code = main(["solve", str(model_path("glm_ridge_square")), "--save-at", "0.25"])
    assert code == 2
    assert "multiples of η" in capsys.readouterr().err


def test_samples_on_a_committee_model_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["solve", str(model_path("committee_erf")), "--samples", "10"]) == 2
    assert "DMFT models only" in capsys.readouterr().err


def test_extrapolate_needs_a_continuous_model(capsys: pytest.CaptureFixture) -> None:
    assert main(["solve", str(model_path("glm_ridge_square")), "--extrapolate"]) == 2
    assert "continuous-time" in capsys.readouterr().err


def test_continuous_model_reports_its_discretisation_error(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    spec = model_path("glm_ridge_square").read_text().replace(
        "init m = m0", "regime continuous\ninit m = m0")
    path = tmp_path / "glm_flow.eqg"
    path.write_text(spec)
    assert main(["solve", str(path), "--t-max", "1", "--set", "eta=0.05"]) == 0
    assert "discretisation error in η" in capsys.readouterr().err
    assert main(["solve", str(path), "--t-max", "1", "--set", "eta=0.05", "--extrapolate",
                 "-o", str(tmp_path / "x.csv")]) == 0


def test_unknown_set_name_lists_the_parameters(capsys: pytest.CaptureFixture) -> None:
    assert main(["solve", str(model_path("gmm_three_cluster")), "--set", "gamma=1"]) == 2
    assert "rho" in capsys.readouterr().err


def test_latex_has_the_kernels_and_sympy_derivatives(tmp_path: Path) -> None:
    out = tmp_path / "g.tex"
    assert main(["latex", str(model_path("gmm_two_cluster_logistic")), "-o", str(out)]) == 0
    text = out.read_text()
    for piece in (r"\hat\nu(t)", "M_C(t,t')", "M_R(t,t')", r"\frac{dm}{dt}",
                  r"\ell''(y, h)", r"\sigma\left(- h y\right)", r"\operatorname{erfc}"):
        assert piece in text, piece


def test_check_accepts_the_shipped_dmft_models(capsys: pytest.CaptureFixture) -> None:
    names = ["gmm_two_cluster_logistic", "gmm_three_cluster", "glm_ridge_square"]
    assert main(["check", *(str(model_path(n)) for n in names)]) == 0


def test_compare_with_samples_puts_theory_beside_simulation(tmp_path: Path) -> None:
    """`eqgen compare` on a DMFT model honours --samples/--seed for the theory side: its theory
    columns are exactly those of `eqgen solve` with the same options."""
    spec = str(model_path("gmm_two_cluster_logistic"))
    cmp_out, solve_out = tmp_path / "cmp.csv", tmp_path / "solve.csv"
    opts = ["--t-max", "0.5", "--samples", "1000", "--seed", "2"]
    assert main(["compare", spec, "--d", "400", "--seeds", "2", *opts,
                 "-o", str(cmp_out), "--plot", str(tmp_path / "cmp.png")]) == 0
    assert main(["solve", spec, *opts, "-o", str(solve_out)]) == 0
    cmp, theory = _rows(cmp_out), _rows(solve_out)
    assert [r["t"] for r in cmp] == [r["t"] for r in theory]
    for name in COLUMNS[1:]:
        # the theory starts from the measured m(0), q(0): equal to the spec's to round-off
        np.testing.assert_allclose([float(r[name]) for r in cmp],
                                   [float(r[name]) for r in theory], rtol=1e-12, atol=1e-15)
        assert f"{name}_sim" in cmp[0] and f"{name}_sim_stderr" in cmp[0]
    # the finite-d process is close to its theory (d = 400, loose: finite-size and MC error)
    assert abs(float(cmp[-1]["m"]) - float(cmp[-1]["m_sim"])) < 0.05
    assert (tmp_path / "cmp.png").stat().st_size > 1000


def test_compare_with_samples_below_two_is_a_usage_error() -> None:
    assert main(["compare", str(model_path("glm_ridge_square")), "--d", "50",
                 "--samples", "1"]) == 2


def test_simulation_warns_when_a_step_selects_less_than_one_sample(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # b·n < 1: the finite-d run is far from the large-n limit; said before the work, once
    spec = str(model_path("gmm_two_cluster_logistic"))
    few = ["--set", "b=0.1", "--set", "tau=1", "--t-max", "0.5", "--seeds", "1"]
    assert main(["simulate", spec, *few, "--d", "3", "-o", str(tmp_path / "a.csv")]) == 0
    err = capsys.readouterr().err
    assert "b·n = 0.9 samples per step on average, fewer than one" in err
    assert "raise --d or b" in err
    assert main(["simulate", spec, *few, "--d", "40", "-o", str(tmp_path / "b.csv")]) == 0
    assert "fewer than one" not in capsys.readouterr().err


def test_a_horizon_that_is_not_a_whole_number_of_steps_is_said(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from eqgen.dmft_model import horizon_warning

    assert horizon_warning(6.0, 0.1) is None and horizon_warning(0.3, 0.1) is None
    assert "runs 10 steps, to t = 1 " in horizon_warning(1.05, 0.1)
    out = tmp_path / "gmm.csv"
    assert main(["solve", str(model_path("gmm_two_cluster_logistic")), "--samples", "200",
                 "--t-max", "1.05", "-o", str(out)]) == 0
    assert "not a whole number of steps" in capsys.readouterr().err
    assert float(_rows(out)[-1]["t"]) == pytest.approx(1.0)
    spec = tmp_path / "odd.eqg"
    spec.write_text(model_path("gmm_two_cluster_logistic").read_text()
                    .replace("time t_max = 6", "time t_max = 6.05"))
    assert main(["check", str(spec)]) == 0
    assert "runs 60 steps, to t = 6" in capsys.readouterr().err
