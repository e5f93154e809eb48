"""The command line, as the command-line contract states it (docs/index.md, Write your first
model): subcommands, options, outputs, exit codes.

Most runs go in-process through `eqgen.cli.main` (it returns the exit code); a few go through
`python -m eqgen` in a subprocess, to prove that errors reach a user as messages, never as a
Python traceback. Solves are small (committee_erf, p = k = 2, a few save times) and shared between
tests through module-scoped fixtures, since every new `eqgen solve` compiles its solver afresh.

Exit codes: 0 success; 1 bad spec or input; 2 usage; 3 numerical failure. Known defects of eqgen
are marked `xfail(strict=True)` with the reason, so that a fix shows up as XPASS.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eqgen.cli import main

try:  # `tests` is not a package: pytest puts tests/ itself on sys.path
    from helpers import MODELS, Run, committee_spec, model_path, run_quiet
except ModuleNotFoundError:  # pragma: no cover - run with tests/ as a package
    from tests.helpers import MODELS, Run, committee_spec, model_path, run_quiet

ERF = model_path("committee_erf")
ALL_MODELS = sorted(MODELS.glob("*.eqg"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|internal error")


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> Run:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def run_subprocess(cwd: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eqgen", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array([[float(v) for v in row] for row in rows[1:]])


def expected_columns(p: int, k: int) -> list[str]:
    def entries(name: str, *shape: int) -> list[str]:
        return [f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]

    return ["t", "risk", "excess_risk", *entries("Q", p, p), *entries("M", p, k),
            *entries("P", k, k), *entries("a", p), *entries("a_star", k)]


# ------------------------------------------------------------------------------------------
# check, help, usage


@pytest.mark.parametrize("spec", ALL_MODELS, ids=lambda p: p.stem)
def test_check_accepts_every_shipped_model(capsys: pytest.CaptureFixture[str], spec: Path):
    r = run_cli(capsys, "check", spec)
    assert r.code == 0, r.err
    assert r.err == ""


def test_check_accepts_all_models_at_once(capsys: pytest.CaptureFixture[str]):
    r = run_cli(capsys, "check", *ALL_MODELS)
    assert r.code == 0, r.err
    assert len(r.out.strip().splitlines()) == len(ALL_MODELS)


def test_check_rejects_bad_spec_listing_every_problem(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path):
    bad = committee_spec(tmp_path, name="bad", regime="high_dim", sigma="erff(z)")
    r = run_cli(capsys, "check", bad)
    assert r.code == 1
    # the student activation (line 5) and the regime (line 8), each at file:line:col
    assert re.search(rf"{re.escape(str(bad))}:5:\d+: error: .*erff", r.err), r.err
    assert re.search(rf"{re.escape(str(bad))}:8:\d+: error: .*high_dim", r.err), r.err
    assert not TRACEBACK.search(r.err)


def test_check_good_and_bad_together_exits_1(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path):
    bad = committee_spec(tmp_path, name="bad", regime="high_dim")
    r = run_cli(capsys, "check", ERF, bad)
    assert r.code == 1
    assert str(bad) in r.err
    assert str(ERF) not in r.err


def test_check_missing_file_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    r = run_cli(capsys, "check", tmp_path / "nope.eqg")
    assert r.code == 1
    assert "nope.eqg" in r.err


@pytest.mark.parametrize("args", [["--help"], ["solve", "--help"], ["check", "--help"],
                                  ["latex", "--help"], ["generate", "--help"]],
                         ids=" ".join)
def test_help_exits_0(capsys: pytest.CaptureFixture[str], args: list[str]):
    r = run_cli(capsys, *args)
    assert r.code == 0
    assert "usage" in r.out.lower()


def test_solve_help_lists_the_contract_options(capsys: pytest.CaptureFixture[str]):
    out = run_cli(capsys, "solve", "--help").out
    for option in ("--set", "--init", "--t-max", "--save-at", "--rtol", "--atol", "--samples",
                   "--seed", "-o", "--plot"):
        assert option in out


@pytest.mark.parametrize("args", [["frobnicate"], [], ["solve"], ["check"], ["latex"],
                                  ["generate"], ["solve", str(ERF), "--t-max"],
                                  ["solve", str(ERF), "--t-max", "soon"],
                                  ["solve", str(ERF), "--bogus-option"]],
                         ids=lambda a: " ".join(a) or "nothing")
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]):
    r = run_cli(capsys, *args)
    assert r.code == 2
    assert r.err.strip()
    assert not TRACEBACK.search(r.err)


# ------------------------------------------------------------------------------------------
# latex


def _strip_escapes(text: str) -> str:
    """Drop every backslash and the character after it (`\\{`, `\\}`, `\\\\`), and comments."""
    text = re.sub(r"\\.", "", text, flags=re.S)
    return "\n".join(line.split("%", 1)[0] for line in text.splitlines())


def _braces_balanced(text: str) -> bool:
    depth = 0
    for ch in _strip_escapes(text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _environments(text: str) -> list[tuple[str, str]]:
    return re.findall(r"\\(begin|end)\{([^}]*)\}", text)


@pytest.fixture(scope="module")
def latex_doc(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("latex") / "x.tex"
    r = run_quiet("latex", ERF, "-o", out)
    assert r.code == 0, r.err
    return out.read_text()


def test_latex_is_a_standalone_document(latex_doc: str):
    assert latex_doc.lstrip().startswith(r"\documentclass")
    assert latex_doc.count(r"\begin{document}") == 1
    assert latex_doc.rstrip().endswith(r"\end{document}")


def test_latex_braces_and_environments_balance(latex_doc: str):
    assert _braces_balanced(latex_doc)
    stack: list[str] = []
    for kind, env in _environments(latex_doc):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, f"\\end{{{env}}} does not close {stack}"
    assert stack == []


def test_latex_has_the_equations_risk_regime_and_time(latex_doc: str):
    assert r"\frac{dM_{jr}}{dt}" in latex_doc
    assert r"\frac{dQ_{jl}}{dt}" in latex_doc
    assert "Risk" in latex_doc and r"\frac{\Delta}{2}" in latex_doc
    assert "Regime" in latex_doc and "high-dimensional" in latex_doc
    assert "Time" in latex_doc and re.search(r"\$t = [^$]*\$", latex_doc)


def test_latex_without_output_goes_to_stdout(capsys: pytest.CaptureFixture[str],
                                             latex_doc: str):
    r = run_cli(capsys, "latex", ERF)
    assert r.code == 0
    assert r.out == latex_doc


def test_latex_is_plain_ascii_for_pdflatex(latex_doc: str):
    # pdflatex stops at a raw non-ASCII character such as 'γ' in text mode
    bad = sorted({ch for ch in latex_doc if ord(ch) > 127})
    assert bad == []


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_compiles_with_pdflatex(latex_doc: str, tmp_path: Path):
    (tmp_path / "x.tex").write_text(latex_doc)
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "x.tex"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
    assert (tmp_path / "x.pdf").stat().st_size > 0


# ------------------------------------------------------------------------------------------
# generate


def test_generate_writes_a_module_with_versions_and_spec_hash(tmp_path: Path):
    import sympy

    import eqgen

    out_dir = tmp_path / "gen" / "nested"
    r = run_quiet("generate", ERF, "--out-dir", out_dir)
    assert r.code == 0, r.err
    path = out_dir / "committee_erf.py"
    assert path.is_file()
    head = path.read_text()[:2000]
    assert f"eqgen {eqgen.__version__}" in head
    assert f"sympy {sympy.__version__}" in head
    assert hashlib.sha256(ERF.read_bytes()).hexdigest() in head

    spec = importlib.util.spec_from_file_location("eqgen_test_generated_committee_erf", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.MODEL == "committee_erf"
    assert callable(module.vector_field) and callable(module.observables)


# ------------------------------------------------------------------------------------------
# solve: output


@pytest.fixture(scope="module")
def solved_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    path = tmp_path_factory.mktemp("solve") / "out.csv"
    r = run_quiet("solve", ERF, "--save-at", "0,1.5,7", "-o", path)
    assert r.code == 0, r.err
    return r, path


def test_solve_csv_columns_in_contract_order(solved_csv: tuple[Run, Path]):
    header, data = read_csv(solved_csv[1])
    assert header[:3] == ["t", "risk", "excess_risk"]
    assert header == expected_columns(2, 2)
    assert data.shape == (3, len(header))
    assert np.all(np.isfinite(data))


def test_solve_save_at_gives_exactly_those_times(solved_csv: tuple[Run, Path]):
    header, data = read_csv(solved_csv[1])
    np.testing.assert_allclose(data[:, header.index("t")], [0.0, 1.5, 7.0], rtol=0, atol=1e-12)


def test_a_mistyped_option_gets_the_closest_one(capsys: pytest.CaptureFixture[str]):
    assert main(["solve", str(MODELS / "committee_erf.eqg"), "--tmax", "3"]) == 2
    assert "hint: did you mean --t-max? See `eqgen solve --help`" in capsys.readouterr().err
    assert main(["sweep", str(MODELS / "committee_erf.eqg"), "--gird", "gamma=1,2"]) == 2
    assert "did you mean --grid? See `eqgen sweep --help`" in capsys.readouterr().err
    assert main(["solve", str(MODELS / "committee_erf.eqg"), "--set", "gamma", "=", "1"]) == 2
    assert "without spaces around '='" in capsys.readouterr().err


def test_save_at_beyond_t_max_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "x.csv"
    for command in ("solve", "sweep"):
        extra = ["--grid", "gamma=0.5,1"] if command == "sweep" else []
        code = main([command, str(MODELS / "committee_erf.eqg"), *extra, "--save-at", "1,5,10",
                     "--t-max", "3", "-o", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and "--save-at time 10 is beyond --t-max 3" in err, err
        assert "hint: leave out --t-max" in err
    assert not out.exists()


def test_solve_starts_from_the_spec_init(solved_csv: tuple[Run, Path]):
    header, data = read_csv(solved_csv[1])
    row = dict(zip(header, data[0], strict=True))
    assert row["Q[0,0]"] == 0.5 and row["Q[0,1]"] == 0.0
    assert (row["M[0,0]"], row["M[0,1]"], row["M[1,0]"], row["M[1,1]"]) == (0.1, 0.05, 0.02, 0.08)
    assert row["P[0,0]"] == 1.0 and row["P[0,1]"] == 0.0
    assert row["risk"] == pytest.approx(row["excess_risk"])  # Delta = 0
    assert data[-1, header.index("excess_risk")] < data[0, header.index("excess_risk")]


def test_solve_is_quiet_in_a_pipe(solved_csv: tuple[Run, Path]):
    run, _ = solved_csv
    assert run.err == ""


@pytest.fixture(scope="module")
def solved_json(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("solve_json")
    r = run_quiet("solve", ERF, "--t-max", "5", "-o", folder / "x.json",
                  "--plot", folder / "x.png")
    assert r.code == 0, r.err
    return json.loads((folder / "x.json").read_text()), folder


def test_solve_t_max_ends_the_grid(solved_json: tuple[dict, Path]):
    t = np.array(solved_json[0]["t"])
    assert t[0] == 0.0
    assert t[-1] == pytest.approx(5.0, abs=1e-12)
    assert np.all(np.diff(t) > 0)


def test_solve_json_has_t_observables_and_states(solved_json: tuple[dict, Path]):
    doc = solved_json[0]
    n = len(doc["t"])
    assert set(doc["observables"]) >= {"risk", "excess_risk"}
    assert all(len(v) == n for v in doc["observables"].values())
    assert set(doc["states"]) == {"Q", "M", "P", "a", "a_star"}
    assert np.array(doc["states"]["Q"]).shape == (n, 2, 2)
    assert np.array(doc["states"]["M"]).shape == (n, 2, 2)


def test_solve_plot_writes_a_png(solved_json: tuple[dict, Path]):
    data = (solved_json[1] / "x.png").read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000


# ------------------------------------------------------------------------------------------
# solve: --set and --init


def test_solve_set_changes_shapes_with_a_fitting_init(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path):
    init = tmp_path / "init.json"
    init.write_text(json.dumps({"Q": [[1.0, 0.0, 0.0], [0.0, 0.8, 0.0], [0.0, 0.0, 0.6]],
                                "M": [[0.1], [0.2], [0.3]]}))
    out = tmp_path / "p3.csv"
    r = run_cli(capsys, "solve", ERF, "--set", "p=3", "--set", "k=1", "--init", init,
                "--save-at", "0,1", "-o", out)
    assert r.code == 0, r.err
    header, data = read_csv(out)
    assert header == expected_columns(3, 1)
    row = dict(zip(header, data[0], strict=True))
    assert (row["Q[0,0]"], row["Q[1,1]"], row["Q[2,2]"]) == (1.0, 0.8, 0.6)
    assert (row["M[0,0]"], row["M[1,0]"], row["M[2,0]"]) == (0.1, 0.2, 0.3)
    # missing states come from the spec: P = identity(k), fixed(1) second layers
    for later in data:
        later_row = dict(zip(header, later, strict=True))
        assert later_row["P[0,0]"] == 1.0
        assert [later_row[f"a[{j}]"] for j in range(3)] == [1.0, 1.0, 1.0]
        assert later_row["a_star[0]"] == 1.0


def test_solve_set_unknown_parameter_lists_the_parameters(capsys: pytest.CaptureFixture[str]):
    r = run_cli(capsys, "solve", ERF, "--set", "nope=1")
    assert r.code == 2
    assert "nope" in r.err
    for name in ("p", "k", "gamma", "Delta"):
        assert re.search(rf"\b{name}\b", r.err)


@pytest.mark.parametrize("value", ["p=abc", "p", "gamma=nan", "gamma=inf"])
def test_solve_set_bad_value_exits_2(capsys: pytest.CaptureFixture[str], value: str):
    r = run_cli(capsys, "solve", ERF, "--set", value)
    assert r.code == 2
    assert not TRACEBACK.search(r.err)


def test_solve_set_out_of_range_size_exits_1(capsys: pytest.CaptureFixture[str]):
    r = run_cli(capsys, "solve", ERF, "--set", "p=2.5")
    assert r.code == 1
    assert re.search(rf"{re.escape(str(ERF))}:\d+:\d+: error", r.err)


def test_solve_malformed_init_json_points_at_file_line_col(capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Path):
    init = tmp_path / "init.json"
    text = '{"Q": [[1, 0],\n      [0, 1]],, "M": [[0, 0], [0, 0]]}\n'
    init.write_text(text)
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads(text)
    r = run_cli(capsys, "solve", ERF, "--init", init)
    assert r.code == 1
    assert f"{init}:{info.value.lineno}:{info.value.colno}:" in r.err
    assert not TRACEBACK.search(r.err)


def test_solve_init_with_wrong_shape_exits_1(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path):
    init = tmp_path / "init.json"
    init.write_text(json.dumps({"Q": np.eye(3).tolist()}))
    r = run_cli(capsys, "solve", ERF, "--init", init)
    assert r.code == 1
    assert "Q" in r.err and "3" in r.err
    assert str(init) in r.err  # the message names the file
    assert not TRACEBACK.search(r.err)


def test_solve_init_not_an_object_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    init = tmp_path / "init.json"
    init.write_text("[1, 2]\n")
    r = run_cli(capsys, "solve", ERF, "--init", init)
    assert r.code == 1
    assert str(init) in r.err


def test_solve_init_missing_file_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    r = run_cli(capsys, "solve", ERF, "--init", tmp_path / "absent.json")
    assert r.code == 1
    assert "absent.json" in r.err


def test_solve_init_with_unknown_state_is_bad_input(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path):
    init = tmp_path / "init.json"
    init.write_text(json.dumps({"R": [[1.0]]}))
    r = run_cli(capsys, "solve", ERF, "--init", init)
    assert r.code == 1
    assert str(init) in r.err


# ------------------------------------------------------------------------------------------
# solve: usage errors


@pytest.mark.parametrize("args", [["--rtol", "-1"], ["--atol", "0"], ["--solver", "euler42"],
                                  ["--samples", "10"], ["--seed", "1"], ["--t-max", "0"],
                                  ["--t-max", "-3"], ["--save-at", "1,-2"],
                                  ["--save-at", "0,soon"]],
                         ids=" ".join)
def test_solve_bad_options_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]):
    r = run_cli(capsys, "solve", ERF, *args)
    assert r.code == 2
    assert r.err.strip()
    assert not TRACEBACK.search(r.err)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy, on the NaN grid
def test_solve_infinite_t_max_is_a_usage_error(capsys: pytest.CaptureFixture[str]):
    r = run_cli(capsys, "solve", ERF, "--t-max", "inf")
    assert r.code == 2
    assert not TRACEBACK.search(r.err)


# ------------------------------------------------------------------------------------------
# solve: numerical failure

# committee_erf cannot blow up: erf saturates, so dQ/dt ~ γ/√Q and Q grows like (γt)^(2/3)
# (gamma = 200, Delta = 1 reaches Q ≈ 97 at t = 10, finite). Square activations make the
# variance term grow like Q³: with gamma = 5 the overlaps reach infinity at t ≈ 0.065.
DIVERGING = ["solve", model_path("committee_square"), "--set", "gamma=5", "--t-max", "10"]


def test_solve_divergence_exits_3_with_partial_csv(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path):
    out = tmp_path / "partial.csv"
    r = run_cli(capsys, *DIVERGING, "-o", out)
    assert r.code == 3, r.err
    assert not TRACEBACK.search(r.err)
    assert re.search(r"non-finite|diverg", r.err)
    m = re.search(r"at t = ([0-9.eE+-]+)", r.err)
    assert m, r.err
    t_fail = float(m.group(1))
    assert 0 < t_fail < 10

    header, data = read_csv(out)
    assert header == expected_columns(2, 1)
    assert data.shape[0] >= 2
    assert np.all(np.isfinite(data))
    t = data[:, 0]
    assert t[0] == 0.0 and np.all(np.diff(t) > 0)
    assert t[-1] < t_fail
    assert math.isclose(t_fail, t[-1], rel_tol=0.5)  # the last saved time is just before


# ------------------------------------------------------------------------------------------
# the real command line: no traceback


def test_subprocess_bad_spec_is_a_message(tmp_path: Path):
    bad = committee_spec(tmp_path, name="bad", regime="high_dim")
    r = run_subprocess(tmp_path, "check", bad)
    assert r.returncode == 1
    assert re.search(rf"{re.escape(str(bad))}:8:\d+: error", r.stderr), r.stderr
    assert "high_dim" in r.stderr and "^" in r.stderr and "hint" in r.stderr
    assert not TRACEBACK.search(r.stderr + r.stdout)


def test_subprocess_malformed_init_is_a_message(tmp_path: Path):
    init = tmp_path / "init.json"
    init.write_text('{"Q": [[1, 0], [0, 1]]\n')  # unterminated object
    r = run_subprocess(tmp_path, "solve", ERF, "--init", init)
    assert r.returncode == 1
    assert re.search(rf"{re.escape(str(init))}:\d+:\d+: error", r.stderr), r.stderr
    assert not TRACEBACK.search(r.stderr + r.stdout)


@pytest.mark.parametrize("args", [["solve", str(ERF), "--set", "nope=1"], ["frobnicate"]],
                         ids=" ".join)
def test_subprocess_usage_error_exits_2(tmp_path: Path, args: list[str]):
    r = run_subprocess(tmp_path, *args)
    assert r.returncode == 2
    assert r.stderr.strip()
    assert not TRACEBACK.search(r.stderr + r.stdout)
