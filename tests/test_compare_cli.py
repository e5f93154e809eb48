"""`eqgen simulate` and `eqgen compare` on the command line (the command-line contract,
docs/comparison.md, Usage).

Exit codes: 0 success; 1 bad spec or input; 2 usage (a bad --d, --seeds, --set, ...);
3 numerical failure (SGD diverged). Outputs: the simulation CSV has `t`, each observable with
`<name>_stderr` beside it, then the seed-mean state entries (each evolving state followed by its
`<name>_stderr` entries); the comparison CSV has `t`, then `<name>`, `<name>_sim`,
`<name>_sim_stderr` for each observable (with `--test-samples`, the held-out `risk_test_sim` and
`risk_test_sim_stderr` after the risk's), then state entries (theory `Q[0,1]`, simulation
`Q_sim[0,1]`, `Q_sim_stderr[0,1]`), and a PNG plot. Runs are small (d = 100, t ≤ 1) and the
successful ones are shared through module-scoped fixtures.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:  # `tests` is not a package: pytest puts tests/ itself on sys.path
    from helpers import Run, model_path, run_quiet
except ModuleNotFoundError:  # pragma: no cover - run with tests/ as a package
    from tests.helpers import Run, model_path, run_quiet

ERF = model_path("committee_erf")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|internal error")


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array([[float(v) for v in row] for row in rows[1:]])


def entries(name: str, *shape: int) -> list[str]:
    return [f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    out = tmp_path_factory.mktemp("simulate") / "sim.csv"
    r = run_quiet("simulate", ERF, "--d", 100, "--seeds", 3, "--seed", 5, "--save-at",
                  "0.25,0.5,1", "-o", out, "--plot", out.with_suffix(".png"))
    return r, out


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    out = tmp_path_factory.mktemp("compare") / "cmp.csv"
    r = run_quiet("compare", ERF, "--d", 100, "--seeds", 2, "--set", "gamma=0.5",
                  "--save-at", "0.5,1", "-o", out, "--plot", out.with_suffix(".png"))
    return r, out


def test_simulate_writes_means_and_standard_errors(simulated: tuple[Run, Path]) -> None:
    r, out = simulated
    assert r.code == 0, r.err
    header, data = read_csv(out)
    assert header == ["t", "risk", "risk_stderr", "excess_risk", "excess_risk_stderr",
                      *entries("Q", 2, 2), *entries("Q_stderr", 2, 2), *entries("M", 2, 2),
                      *entries("M_stderr", 2, 2), *entries("P", 2, 2), *entries("a", 2),
                      *entries("a_star", 2)]
    np.testing.assert_allclose(data[:, 0], [0, 0.25, 0.5, 1.0])
    assert np.all(data[1:, 2] > 0) and data[0, 2] < 1e-15  # seeds share the initial weights
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert (meta["d"], meta["seeds"], meta["seed"]) == (100, 3, 5)
    assert out.with_suffix(".png").read_bytes().startswith(PNG_SIGNATURE)
    assert r.err == ""  # quiet when stderr is not a terminal


def test_simulate_is_reproducible(simulated: tuple[Run, Path], tmp_path: Path) -> None:
    _, out = simulated
    again = tmp_path / "again.csv"
    r = run_quiet("simulate", ERF, "--d", 100, "--seeds", 3, "--seed", 5, "--save-at",
                  "0.25,0.5,1", "-o", again)
    assert r.code == 0, r.err
    assert read_csv(again)[1].tolist() == read_csv(out)[1].tolist()


def test_compare_writes_theory_simulation_and_errors(compared: tuple[Run, Path]) -> None:
    r, out = compared
    assert r.code == 0, r.err
    header, data = read_csv(out)
    assert header[:7] == ["t", "risk", "risk_sim", "risk_sim_stderr", "excess_risk",
                          "excess_risk_sim", "excess_risk_sim_stderr"]
    assert header[7:11] == entries("Q", 2, 2) and header[11:15] == entries("Q_sim", 2, 2)
    assert header[15:19] == entries("Q_sim_stderr", 2, 2)
    assert "risk_test_sim" not in header  # the held-out test set is off by default
    np.testing.assert_allclose(data[:, 0], [0, 0.5, 1.0])
    col = {name: data[:, i] for i, name in enumerate(header)}
    # the theory starts from the simulation's measured overlaps
    assert col["excess_risk"][0] == col["excess_risk_sim"][0]
    for name in entries("M", 2, 2):
        assert col[name][0] == col[name.replace("M[", "M_sim[")][0]
    # and the two agree roughly even at d = 100
    np.testing.assert_allclose(col["excess_risk_sim"], col["excess_risk"], rtol=0.2)
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["d"] == 100 and meta["simulation"]["parameters"]["gamma"] == 0.5
    assert out.with_suffix(".png").read_bytes().startswith(PNG_SIGNATURE)


def test_held_out_test_set_columns(tmp_path: Path) -> None:
    """`--test-samples N`: the held-out estimate beside the analytic risk, in both commands."""
    sim_out, cmp_out = tmp_path / "sim.csv", tmp_path / "cmp.csv"
    common = ["--d", 60, "--seeds", 2, "--save-at", "0.5", "--test-samples", 400]
    r = run_quiet("simulate", ERF, *common, "-o", sim_out)
    assert r.code == 0, r.err
    assert read_csv(sim_out)[0][:5] == ["t", "risk", "risk_stderr", "risk_test",
                                        "risk_test_stderr"]
    r = run_quiet("compare", ERF, *common, "-o", cmp_out, "--plot", tmp_path / "cmp.png")
    assert r.code == 0, r.err
    header, data = read_csv(cmp_out)
    assert header[:7] == ["t", "risk", "risk_sim", "risk_sim_stderr", "risk_test_sim",
                          "risk_test_sim_stderr", "excess_risk"]
    col = {name: data[:, i] for i, name in enumerate(header)}
    np.testing.assert_allclose(col["risk_test_sim"], col["risk_sim"], rtol=0.3)
    meta = json.loads(Path(str(cmp_out) + ".meta.json").read_text())
    assert meta["simulation"]["test_samples"] == 400
    assert (tmp_path / "cmp.png").read_bytes().startswith(PNG_SIGNATURE)


def test_compare_without_output_prints_a_table() -> None:
    r = run_quiet("compare", ERF, "--d", 60, "--seeds", 2, "--save-at", "0.5")
    assert r.code == 0, r.err
    lines = r.out.strip().splitlines()
    assert lines[0].startswith("t,risk,risk_sim,risk_sim_stderr,excess_risk")
    assert len(lines) == 3  # t = 0 and t = 0.5


@pytest.mark.parametrize(("args", "message"), [
    (["--d", "0"], "--d must be a whole number"),
    (["--d", "-5"], "--d must be a whole number"),
    (["--d", "abc"], "invalid int value"),
    (["--d", "1.5"], "invalid int value"),
    ([], "--d"),  # required
    (["--d", "3"], "--d 3 is too small"),  # the spec's Q, M, P have rank 4
    (["--d", "50", "--seeds", "0"], "--seeds must be"),
    (["--d", "50", "--set", "nope=1"], "unknown parameter"),
    (["--d", "50", "--t-max", "-1"], "--t-max"),
    (["--d", "50", "--save-at", "x"], "--save-at"),
    (["--d", "50", "--samples", "10"], "DMFT"),
    (["--d", "50", "--test-samples", "-1"], "--test-samples must be"),
    (["--d", "50", "--test-samples", "x"], "invalid int value"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
@pytest.mark.parametrize("command", ["simulate", "compare"])
def test_usage_errors_exit_2(command: str, args: list[str], message: str) -> None:
    r = run_quiet(command, ERF, *args)
    assert r.code == 2, (r.code, r.err)
    assert message in r.err, r.err
    assert not TRACEBACK.search(r.err)


@pytest.mark.parametrize("command", ["simulate", "compare"])
def test_held_out_test_set_is_refused_for_dmft_models(command: str) -> None:
    r = run_quiet(command, model_path("glm_ridge_square"), "--d", 50, "--test-samples", 100)
    assert r.code == 2 and "--test-samples applies to committee models" in r.err, r.err


def test_bad_init_file_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "init.json"
    bad.write_text('{"Q": [[1, 0], [0, 1]], "M": [[0.1, 0.2, 0.3]]}')
    r = run_quiet("simulate", ERF, "--d", 50, "--init", bad)
    assert r.code == 1 and "init.json" in r.err and "shape" in r.err, r.err


def test_diverging_sgd_exits_3() -> None:
    # σ = z² with a large learning rate: the weights blow up within a few units of time
    r = run_quiet("simulate", model_path("committee_square"), "--d", 50, "--seeds", 2,
                  "--set", "gamma=20", "--t-max", 2)
    assert r.code == 3, r.err
    assert "diverged" in r.err and "at t =" in r.err and "hint" in r.err


def test_usage_error_in_a_subprocess_is_a_message(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "eqgen", "compare", str(ERF), "--d", "0"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "--d must be a whole number" in r.stderr
    assert not TRACEBACK.search(r.stderr)


def test_help_lists_the_simulation_options() -> None:
    for command in ("simulate", "compare"):
        out = run_quiet(command, "--help").out
        for option in ("--d", "--seeds", "--seed", "--set", "--init", "--t-max", "--save-at",
                       "--test-samples", "-o", "--plot"):
            assert option in out, (command, option)
