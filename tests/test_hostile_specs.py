"""Hostile inputs to the front end: reports that stay short and quick however many problems a
file holds, inputs that never end, `--set` values beyond the bounds of spec numbers, functions
that are singular on the real line or grow too fast for Gaussian averages, powers of the stable
logistic functions in LaTeX, and `--init` files blamed for their own problems.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import eqgen
from eqgen.errors import Diagnostic, SpecError, UsageError
from eqgen.spec.committee import build_committee
from eqgen.spec.dmft import build_dmft
from eqgen.spec.parser import MAX_SOURCE_BYTES, parse_file
from eqgen.symbolic import stable
from eqgen.symbolic.domain import real_singularity, super_exponential_growth
from eqgen.theories import committee as committee_theory
from eqgen.theories import dmft as dmft_theory
from tests.helpers import MODELS, committee_spec, model_path, run_quiet, write_spec
from tests.test_latex import _pdflatex, check_structure

Z = sp.Symbol("z", real=True)
H = sp.Symbol("h", real=True)
Y = sp.Symbol("y", real=True)
LABELS = [{Y: sp.Integer(-1)}, {Y: sp.Integer(1)}]
FORBIDDEN = re.compile(r"Traceback|internal error|\b[A-Z][A-Za-z]*(Error|Exception)\b")


def headers(stderr: str, path: Path) -> list[str]:
    return re.findall(rf"^{re.escape(str(path))}:\d+:\d+: error: .*$", stderr, re.M)


# ---------------------------------------------------------------------------------------------
# many problems: a short report in bounded time


def test_one_name_repeated_thousands_of_times_is_one_quick_problem(tmp_path: Path):
    """`q + q + ... + q` (9900 terms) used to take over two minutes and print 4.9 MB."""
    path = committee_spec(tmp_path, sigma=" + ".join(["q"] * 9900))
    t0 = time.perf_counter()
    r = run_quiet("check", path)
    seconds = time.perf_counter() - t0
    assert r.code == 1 and not FORBIDDEN.search(r.err), r.err[:2000]
    assert seconds < 5, f"{seconds:.1f} s"
    assert len(r.err) < 5000, len(r.err)
    found = headers(r.err, path)
    assert any("unknown name 'q' in the student activation (and 9899 more times on this "
               "line)" in h for h in found), found
    assert "nested too deep" in r.err


def test_long_sum_in_a_dmft_label_is_quick(tmp_path: Path):
    """A 3000-term sum in a label rule: 3001 diagnostics once, each quoting a 12 kB line."""
    text = model_path("gmm_two_cluster_logistic").read_text().replace(
        "label = sign(h)", "label = sign(" + " + ".join(["z"] * 3000) + "1)")
    path = write_spec(tmp_path, text)
    t0 = time.perf_counter()
    r = run_quiet("check", path)
    assert time.perf_counter() - t0 < 5
    assert r.code == 1 and "more times on this line" in r.err and len(r.err) < 5000


def test_many_different_problems_are_capped(tmp_path: Path):
    """Distinct problems are all counted, but only the first MAX_SHOWN are printed."""
    names = [f"n{i}" for i in range(120)]
    path = committee_spec(tmp_path, sigma="(" + " + ".join(names[:60]) + ") * ("
                          + " + ".join(names[60:]) + ")")
    r = run_quiet("check", path)
    assert r.code == 1
    assert len(headers(r.err, path)) == SpecError.MAX_SHOWN
    assert "... and 70 more problems (not shown)" in r.err
    assert r.err.rstrip().endswith("120 problems found")


def test_quoting_a_huge_line_costs_no_more_than_a_short_one():
    """The line is cut to a window around the column before it is processed."""
    line = "x = " + "\t\x01ab" * 2_500_000 + "@" + "c" * 1000
    col = line.index("@") + 1
    d = Diagnostic("unexpected character '@'", "x.eqg", 1, col, 1, line, "remove it")
    t0 = time.perf_counter()
    text = d.format()
    assert time.perf_counter() - t0 < 0.05
    shown, caret = text.split("\n")[1:3]
    assert len(shown) < 1000 and shown.startswith("    ...")
    assert shown[caret.index("^")] == "@"


def test_repeated_problems_merge_only_on_one_line():
    a = [Diagnostic("unknown name 'q'", "x.eqg", 3, c, 1, "q q q", "h") for c in (1, 3, 5)]
    b = Diagnostic("unknown name 'q'", "x.eqg", 4, 1, 1, "q", "h")
    e = SpecError([*a, b])
    assert [(d.line, d.col) for d in e.diagnostics] == [(3, 1), (4, 1)]
    assert e.diagnostics[0].message.endswith("(and 2 more times on this line)")
    assert e.diagnostics[1].message == "unknown name 'q'"
    assert SpecError(e.diagnostics).diagnostics == e.diagnostics  # merging again changes nothing


# ---------------------------------------------------------------------------------------------
# endless and huge inputs


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_endless_input_is_refused_at_once():
    t0 = time.perf_counter()
    r = run_quiet("check", "/dev/zero")
    assert time.perf_counter() - t0 < 5
    assert r.code == 1
    assert re.search(r"^/dev/zero:1:1: error: spec file is too large", r.err, re.M), r.err
    assert "hint:" in r.err and not FORBIDDEN.search(r.err)


def test_huge_file_is_refused_without_reading_it(tmp_path: Path):
    path = tmp_path / "huge.eqg"
    with open(path, "wb") as f:  # sparse: 8 GiB on paper, nothing on disk
        f.truncate(8 << 30)
    t0 = time.perf_counter()
    r = run_quiet("check", path)
    assert time.perf_counter() - t0 < 5
    assert r.code == 1 and f"{path}:1:1: error: spec file is too large" in r.err
    assert f"more than {MAX_SOURCE_BYTES} bytes" in r.err


# ---------------------------------------------------------------------------------------------
# --set values obey the bounds of spec numbers


@pytest.mark.parametrize("setting", ["Delta=1e300", "eta=1e300", "lambda=-1e301"])
def test_set_beyond_the_bound_of_spec_numbers_is_a_usage_error(setting: str):
    r = run_quiet("solve", model_path("gmm_two_cluster_logistic"), "--set", setting,
                  "--samples", "500")
    assert r.code == 2, r.err
    assert f"--set {setting.split('=')[0]}=" in r.err and "like a number written" in r.err
    assert not FORBIDDEN.search(r.err)


@pytest.mark.parametrize(("setting", "col", "what"), [("Delta=1e299", 50, "Δ"),
                                                        ("eta=1e299", 12, "the step η")])
def test_huge_dmft_values_are_located_errors(setting: str, col: int, what: str):
    """Finite values whose squares overflow the DMFT sweep: refused where the spec uses them
    (they used to end in an internal OverflowError)."""
    path = model_path("gmm_two_cluster_logistic")
    r = run_quiet("solve", path, "--set", setting, "--samples", "500")
    assert r.code == 1, r.err
    assert re.search(rf"^{re.escape(str(path))}:\d+:{col}: error: {what} = 1e\+299 is too "
                     "large for the DMFT", r.err, re.M), r.err
    assert "hint:" in r.err and not FORBIDDEN.search(r.err)


def test_set_bounds_apply_to_committee_models_and_the_api():
    r = run_quiet("solve", model_path("committee_erf"), "--set", "gamma=1e300")
    assert r.code == 2 and "--set gamma=" in r.err
    with pytest.raises(UsageError, match="less than 1e\\+300"):
        eqgen.load(model_path("gmm_two_cluster_logistic")).resolve({"Delta": -1e305})


# ---------------------------------------------------------------------------------------------
# LaTeX of powers of the stable logistic functions


def _custom_functions() -> list[type]:
    """Every sympy function class eqgen's symbolic layer defines."""
    import eqgen.symbolic as pkg

    found = []
    for module in sorted(Path(pkg.__file__).parent.glob("*.py")):
        mod = __import__(f"eqgen.symbolic.{module.stem}", fromlist=["_"])
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, sp.Function) \
                    and obj.__module__ == mod.__name__:
                found.append(obj)
    return found


def test_every_custom_function_prints_inside_a_power():
    classes = _custom_functions()
    assert {stable.Sigmoid, stable.Softplus} <= set(classes)
    u = sp.Symbol("u")
    for cls in classes:
        for expr in (cls(u) ** 2, cls(u) ** sp.Rational(3, 2), 1 / cls(u) ** 3):
            text = sp.latex(expr)
            assert text.count("{") == text.count("}"), text
            assert text.count(r"\left") == text.count(r"\right"), text
        assert sp.latex(cls(u) ** 2).endswith("^{2}")


@pytest.fixture(scope="module")
def squared_sigmoid_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logistic loss plus a small h² term: ℓ'' holds σ(−yh)²."""
    text = model_path("gmm_two_cluster_logistic").read_text().replace(
        "loss log(1 + exp(-y * h))", "loss log(1 + exp(-y * h)) + 0.01*h**2")
    return write_spec(tmp_path_factory.mktemp("sq"), text, "squared_sigmoid")


def test_squared_sigmoid_latex_compiles(squared_sigmoid_spec: Path, tmp_path: Path):
    out = tmp_path / "doc.tex"
    r = run_quiet("latex", squared_sigmoid_spec, "-o", out)
    assert r.code == 0, r.err
    doc = out.read_text()
    check_structure(doc)
    assert r"\left(\sigma\left(- h y\right)\right)^{2}" in doc
    if shutil.which("pdflatex"):
        _pdflatex(doc, tmp_path, "doc")


def test_squared_sigmoid_solves(squared_sigmoid_spec: Path, tmp_path: Path):
    out = tmp_path / "sol.csv"
    r = run_quiet("solve", squared_sigmoid_spec, "--samples", "200", "--t-max", "1", "-o", out)
    assert r.code == 0, r.err
    rows = np.loadtxt(out, delimiter=",", skiprows=1)
    assert rows.shape[0] >= 2 and np.all(np.isfinite(rows))


# ---------------------------------------------------------------------------------------------
# singular and fast-growing functions


@pytest.mark.parametrize(("expr", "phrase"), [
    (1 / Z, "divides by z, which is 0 at z = 0"),
    (sp.Max(0, Z) / Z, "divides by z"),
    (sp.sin(Z) / Z, "divides by z"),
    (1 / (Z - sp.Rational(1, 3)), "0 at z = 0.3333"),
    (1 / (sp.erf(Z) - sp.Rational(1, 3)), "0 at z = about 0.305"),
    (sp.log(sp.Abs(Z)), "takes the log of abs(z), which is 0 at z = 0"),
    (sp.log(Z), "takes the log of z"),
    (sp.sqrt(Z), "takes a fractional power of z, which is negative for z < 0"),
    (sp.sqrt(1 - Z**2), "negative for z < -1 and for z > 1"),
    (sp.sqrt(Z**2 - 1), "negative for -1 < z < 1"),
    (sp.sqrt(-Z**2 - 1), "negative for every z"),
    (sp.log(sp.exp(Z) - 2), "takes the log of exp(z) - 2, which is 0 at z = about 0.6"),
    (sp.diff(sp.sqrt(sp.Abs(Z)), Z), "divides by abs(z)"),
    (sp.log((Z - sp.Rational(123, 1000)) ** 2), "0 at z = 0.123"),
])
def test_singular_functions_are_found(expr: sp.Expr, phrase: str):
    reason = real_singularity(expr, Z)
    assert reason is not None and phrase in reason, reason


@pytest.mark.parametrize("expr", [
    sp.erf(Z / sp.sqrt(2)), sp.tanh(Z), sp.Max(0, Z), sp.Abs(Z), sp.sqrt(sp.Abs(Z)),
    sp.log(1 + sp.exp(Z)), 1 / (1 + sp.exp(-Z)), sp.expand(sp.hermite_prob(3, Z)),
    Z**2, sp.exp(-Z**2), sp.sqrt(Z**2 + 1), sp.log(Z**2 + 1), 1 / (Z**2 + 1), sp.sin(Z),
    sp.Max(Z, Z / 10), stable.Softplus(Z), stable.Sigmoid(Z) ** 2, sp.cosh(Z),
])
def test_regular_functions_pass(expr: sp.Expr):
    assert real_singularity(expr, Z) is None
    assert super_exponential_growth(expr, Z) is None


@pytest.mark.parametrize("expr", [sp.exp(H**2), sp.exp(H**2 / 100), sp.exp(sp.exp(H)),
                                  sp.exp(100 * H**2), sp.cosh(H**2)])
def test_faster_than_exponential_growth_is_found(expr: sp.Expr):
    assert super_exponential_growth(expr, H, LABELS) is not None


@pytest.mark.parametrize("expr", [
    sp.log(1 + sp.exp(-Y * H)), (Y - H) ** 2 / 2, sp.exp(-Y * H), sp.exp(30 * H),
    H**30 * sp.exp(H), sp.cosh(H) ** 4, (Y - H) ** 4, sp.log(sp.cosh(Y - H)),
    stable.stabilise(sp.log(1 + sp.exp(-Y * H)) + H**2 / 100), H**3,
])
def test_losses_up_to_polynomial_times_exponential_pass(expr: sp.Expr):
    assert super_exponential_growth(expr, H, LABELS) is None


def test_shipped_models_pass_check():
    r = run_quiet("check", *sorted(MODELS.glob("*.eqg")))
    assert r.code == 0, r.err


@pytest.mark.parametrize("sigma", [
    "erf(z / sqrt(2))", "tanh(z)", "relu(z)", "softplus(z)", "He(3, z)", "z**3", "sigmoid(z)",
    "exp(-z**2)", "sin(z)", "sqrt(1 + z**2)", "max(z, 0.1 * z)", "z / (1 + z**2)",
    "log(1 + exp(z))", "abs(z)",
])
def test_legitimate_student_activations_pass(tmp_path: Path, sigma: str):
    spec = build_committee(parse_file(committee_spec(tmp_path, sigma=sigma, g=sigma)))
    committee_theory.student_activation(spec)
    committee_theory._check_finite(spec, committee_theory.convert.activation(
        spec.teacher.activation), "teacher", spec.teacher.activation.pos)


@pytest.mark.parametrize(("loss", "data"), [
    ("log(1 + exp(-y * h))", "mixture"), ("hinge(smoothing = T)", "mixture"),
    ("exp(-y * h)", "mixture"), ("log(1 + exp(-y * h)) + 0.01*h**2", "mixture"),
    ("(y - h)**2 / 2", "glm"), ("log(cosh(y - h))", "glm"), ("(y - h)**4", "glm"),
    ("sqrt(1 + (y - h)**2)", "glm"), ("1 / (1 + exp(y * h))", "mixture"),
])
def test_legitimate_dmft_losses_pass(tmp_path: Path, loss: str, data: str):
    text = model_path("gmm_two_cluster_logistic" if data == "mixture" else
                      "glm_ridge_square").read_text()
    text = re.sub(r"^loss .*$", f"loss {loss}", text, flags=re.M)
    text = text.replace("q0 = 1\n", "q0 = 1, T = 0.05\n", 1)
    spec = build_dmft(parse_file(write_spec(tmp_path, text)))
    dmft_theory.derive(spec)


@pytest.mark.parametrize("target", ["z", "sign(z)", "tanh(z)", "relu(z)", "z**3"])
def test_legitimate_dmft_targets_pass(tmp_path: Path, target: str):
    text = model_path("glm_ridge_square").read_text().replace("target = z", f"target = {target}")
    dmft_theory.derive(build_dmft(parse_file(write_spec(tmp_path, text))))


def test_singular_student_no_longer_reaches_the_solver(tmp_path: Path):
    """σ = 1/z in gradient flow passed `check` and then ran for ever (risk 1.8e33 at t = 0)."""
    path = committee_spec(tmp_path, sigma="1/z", regime="gradient_flow")
    t0 = time.perf_counter()
    r = run_quiet("solve", path, "--t-max", "1")
    assert time.perf_counter() - t0 < 20
    assert r.code == 1 and "the student activation is singular" in r.err, r.err


# ---------------------------------------------------------------------------------------------
# --init problems are reported at the JSON file


@pytest.mark.parametrize(("init", "message"), [
    ({"Q": [[1, 2], [2, 1]]}, "is not positive semi-definite"),
    ({"Q": [[1, 0], [0.5, 1]]}, "initial Q is not symmetric"),
    ({"M": [[3, 0], [0, 3]]}, "is not positive semi-definite (smallest eigenvalue"),
])
def test_init_file_problems_point_at_the_file(tmp_path: Path, init: dict, message: str):
    path = tmp_path / "start.json"
    path.write_text(json.dumps(init))
    r = run_quiet("solve", model_path("committee_erf"), "--init", path, "--t-max", "1")
    assert r.code == 1, r.err
    assert re.search(rf"^{re.escape(str(path))}: error: .*{re.escape(message)}", r.err,
                     re.M), r.err
    assert "fix the JSON file" in r.err
    assert "committee_erf.eqg" not in r.err  # not blamed on the spec's init line


def test_spec_init_problems_still_point_at_the_spec(tmp_path: Path):
    text = model_path("committee_erf").read_text().replace(
        "Q = 0.5 * identity(p)", "Q = [[1, 2], [2, 1]]")
    path = write_spec(tmp_path, text)
    r = run_quiet("solve", path, "--t-max", "1")
    assert r.code == 1 and re.search(rf"^{re.escape(str(path))}:\d+:\d+: error: the initial "
                                     "covariance", r.err, re.M), r.err


# ---------------------------------------------------------------------------------------------
# A DMFT loss that overflows at the start: exit 3 at once, not a hang


def test_a_loss_overflowing_at_the_start_fails_at_once_with_the_loss_named(tmp_path):
    """exp(-y h)**1000 overflows at the initial fields: M_C(0, 0) is infinite, and LAPACK's SVD
    of the noise factor never returned on it (the solve hung). Now: exit 3 at t = 0, the
    non-finite observables named, and a hint about the loss, not the start (m, Q are fine)."""
    text = (MODELS / "gmm_two_cluster_logistic.eqg").read_text()
    text = re.sub(r"(?m)^loss .*$", "loss exp(-y*h)**1000", text)
    path = write_spec(tmp_path, text)
    start = time.perf_counter()
    r = run_quiet("solve", path, "--samples", "200", "--t-max", "0.3")
    assert r.code == 3, r.err
    assert time.perf_counter() - start < 60
    assert "non-finite values (train_loss, test_loss) (at t = 0)" in r.err
    assert "the loss itself overflows" in r.err and "check the initial state" not in r.err


def test_the_noise_factor_row_is_nan_not_a_hang_on_an_infinite_kernel():
    from eqgen.runtime.dmft import regularised_row

    L = np.zeros((5, 5))
    L[0, 0] = 1.0
    rhs = np.array([np.inf, 0.0, 0.0, 0.0, 0.0])
    row = np.asarray(regularised_row(L, rhs, 1, 2.0))
    assert np.all(np.isnan(row))
    assert np.all(np.isfinite(np.asarray(regularised_row(L, np.ones(5), 1, 2.0))))


def test_weight_covariance_keeps_q0_when_the_first_kernel_overflows():
    from types import SimpleNamespace

    from eqgen.runtime.dmft import weight_covariance

    R = np.tril(np.ones((3, 3)))
    MC = np.full((3, 3), np.inf)
    C = weight_covariance(SimpleNamespace(q0=0.7, eta=0.1, Delta=1.0), R, MC)
    assert C[0, 0] == pytest.approx(0.7) and np.isnan(C[1, 1])


def test_a_failure_before_the_first_time_replaces_a_stale_output(tmp_path):
    """A start that is already diverged fails before any time is computed. `-o` must not keep
    the file of an earlier run, which would pass for this one's: it gets a result with no
    rows, marked partial with the failure."""
    text = (MODELS / "gmm_two_cluster_logistic.eqg").read_text()
    path = write_spec(tmp_path, re.sub(r"(?m)^init .*$", "init m = 1e7, q = q0", text))
    out = tmp_path / "o.csv"
    out.write_text("t,m\n0,1\n")
    r = run_quiet("solve", path, "--samples", "200", "-o", out)
    assert r.code == 3, r.err
    assert out.read_text().strip() == "t"
    meta = json.loads((tmp_path / "o.csv.meta.json").read_text())
    assert meta["partial"] and "above the 1e+12" in meta["failure"]["message"]
