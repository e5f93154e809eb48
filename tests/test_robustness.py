"""Robustness at run time, for both families: numerical failures stop with exit 3 and say what,
when and what to try (partial results still written); solves too large for the memory are
refused up front with an estimate; the same inputs give the same numbers to the bit; concurrent
`eqgen generate` of one model leaves a valid file.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import eqgen
from eqgen.errors import NumericalError
from eqgen.model import Model
from eqgen.runtime import health
from tests.helpers import ROOT, committee_spec, model_path, run_quiet

FORBIDDEN = re.compile(r"Traceback|internal error|\b[A-Z][A-Za-z]*(Error|Exception)\b")


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


def failure_time(stderr: str) -> float:
    m = re.search(r"\(at t = ([0-9.eE+-]+)\)", stderr)
    assert m, f"no failure time in\n{stderr}"
    return float(m[1])


# ---------------------------------------------------------------------------------------------
# numerical failure at run time: committee models


def test_diverging_committee_exits_3_with_partial_results(tmp_path: Path):
    """σ = z² at a large learning rate blows up in finite time: exit 3, what, when, a hint,
    and the finite trajectory before the failure in the CSV."""
    out = tmp_path / "div.csv"
    r = run_quiet("solve", model_path("committee_square"), "--set", "gamma=10",
                  "--max-steps", "2000", "-o", out)
    assert r.code == 3, r.err
    assert not FORBIDDEN.search(r.err), r.err
    assert r.err.count("numerical failure:") == 1 and "hint:" in r.err
    t_fail = failure_time(r.err)
    assert "partial results" in r.err and out.exists()
    names, rows = read_csv(out)
    assert names[0] == "t" and len(rows) >= 2
    assert np.all(np.isfinite(rows)) and rows[-1, 0] < t_fail
    assert rows[-1, names.index("risk")] > 3 * rows[0, names.index("risk")]  # it was diverging
    assert "probably diverging" in r.err  # the growth before the failure is pointed out


class _Planted:
    """A generated module whose dM/dt has a constant +1 added: M grows without Q and P, so
    |M_jr|² ≤ Q_jj P_rr soon fails and Ω stops being a covariance (a planted error)."""

    def __init__(self, module: Any):
        self._module = module
        self.vector_field = self._field

    def _field(self, t: Any, state: Any, params: Any) -> Any:
        d = self._module.vector_field(t, state, params)
        return {**d, "M": d["M"] + 1.0}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


@pytest.fixture(scope="module")
def erf_model() -> Model:
    return eqgen.load(model_path("committee_erf"))


def test_loss_of_positive_definiteness_is_caught_with_partial_solution(erf_model: Model):
    model = eqgen.load(model_path("committee_erf"))
    model._module = _Planted(erf_model.module)
    with pytest.raises(NumericalError) as info:
        model.solve(t_max=10)
    e = info.value
    assert "positive semi-definite" in str(e) and e.t is not None and 0 < e.t < 10
    assert "hint" in e.format() and "at t =" in e.format()
    part = e.partial
    assert isinstance(part, eqgen.Solution) and len(part) > 0 and part.t[-1] < e.t
    lo = health.smallest_eigenvalues(part["Q"], part["M"], part["P"])
    assert lo.min() > -1e-6  # what was kept is still a covariance
    # the unplanted model solves cleanly over the same horizon
    assert np.all(np.isfinite(erf_model.solve(t_max=10)["risk"]))


def test_loss_of_positive_definiteness_through_the_cli(tmp_path: Path, erf_model: Model,
                                                      monkeypatch: pytest.MonkeyPatch):
    planted = _Planted(erf_model.module)
    monkeypatch.setattr(Model, "module", property(lambda self: planted))
    out = tmp_path / "pd.csv"
    r = run_quiet("solve", model_path("committee_erf"), "--t-max", "10", "-o", out)
    assert r.code == 3, r.err
    assert "positive semi-definite" in r.err and "hint:" in r.err
    t_fail = failure_time(r.err)
    names, rows = read_csv(out)
    assert len(rows) > 0 and rows[-1, 0] < t_fail


def test_first_non_psd_finds_the_first_bad_time():
    t = np.linspace(0, 1, 6)
    Q = np.broadcast_to(np.eye(2), (6, 2, 2)).copy()
    P = Q.copy()
    M = np.zeros((6, 2, 2))
    assert health.first_non_psd(t, {"Q": Q, "M": M, "P": P}, 1e-8) is None
    M[3:, 0, 0] = 1.5  # |M_00| > √(Q_00 P_00)
    i, lo = health.first_non_psd(t, {"Q": Q, "M": M, "P": P}, 1e-8)
    assert i == 3 and lo == pytest.approx(-0.5)
    # a singular Ω (student = teacher) with integration-size errors is not a failure
    Q2 = np.broadcast_to(np.eye(2), (6, 2, 2)).copy()
    M2 = Q2 * (1 + 1e-9)
    assert health.first_non_psd(t, {"Q": Q2, "M": M2, "P": Q2}, 1e-8) is None


# ---------------------------------------------------------------------------------------------
# numerical failure at run time: DMFT models


def test_non_finite_dmft_sweep_exits_3_with_partial_results(tmp_path: Path):
    """A logistic model at a step far past stability: |w|² explodes; exit 3 at a time, the
    rows before it in the CSV, all finite."""
    out = tmp_path / "dmft.csv"
    r = run_quiet("solve", model_path("glm_ridge_square"), "--set", "eta=3", "--set",
                  "lambda=0", "--t-max", "60", "-o", out)
    assert r.code == 3, r.err
    assert not FORBIDDEN.search(r.err), r.err
    assert "numerical failure: the DMFT sweep" in r.err and "hint:" in r.err
    t_fail = failure_time(r.err)
    assert t_fail > 0
    names, rows = read_csv(out)
    assert names[:3] == ["t", "m", "Q"] and len(rows) > 0
    assert np.all(np.isfinite(rows)) and rows[-1, 0] < t_fail


def test_late_dmft_overflow_keeps_the_early_times(tmp_path: Path):
    out = tmp_path / "dmft.csv"
    r = run_quiet("solve", model_path("glm_ridge_square"), "--set", "eta=3", "--set",
                  "lambda=0", "--t-max", "600", "-o", out)
    assert r.code == 3
    assert failure_time(r.err) > 0
    assert len(read_csv(out)[1]) > 0


# ---------------------------------------------------------------------------------------------
# resources: refused up front, with the estimate


def test_committee_too_large_for_memory_is_refused_before_compiling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec = committee_spec(tmp_path, name="wide")

    def no_compile(self: Model) -> Any:
        raise AssertionError("compiled before the memory check")

    monkeypatch.setattr(Model, "module", property(no_compile))
    t0 = time.perf_counter()
    r = run_quiet("solve", spec, "--set", "p=512", "--set", "k=512")
    assert r.code == 2, r.err
    assert re.search(r"would need about [0-9.e+]+ GiB of memory", r.err), r.err
    assert "hint:" in r.err and "lower p or k" in r.err
    assert time.perf_counter() - t0 < 30


def test_memory_limit_is_configurable_and_small_models_pass(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    spec = committee_spec(tmp_path, name="mid")
    monkeypatch.setenv("EQGEN_MEMORY_LIMIT", "1e9")
    r = run_quiet("solve", spec, "--set", "p=64", "--set", "k=64", "--t-max", "1")
    assert r.code == 2 and "GiB" in r.err, r.err
    r = run_quiet("solve", spec, "--t-max", "1")
    assert r.code == 0, r.err
    monkeypatch.setenv("EQGEN_MEMORY_LIMIT", "lots")
    assert run_quiet("solve", spec, "--t-max", "1").code == 2


def test_committee_estimate_bounds_the_compiled_vector_field():
    """The estimate is above XLA's own account of the generated vector field's memory."""
    import jax

    from eqgen.spec.committee import resolve

    for name in ("committee_erf", "committee_hermite"):
        model = eqgen.load(model_path(name))
        p, k = 12, 12
        r = resolve(model.spec, {"p": p, "k": k}, use_spec_init=False)
        shapes = {n: jax.ShapeDtypeStruct(np.shape(v), np.float64) for n, v in r.init.items()}
        pars = {n: jax.ShapeDtypeStruct((), np.float64) for n in r.params}
        mem = jax.jit(model.module.vector_field).lower(0.0, shapes, pars).compile() \
            .memory_analysis()
        used = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
        estimate = health.committee_memory(p, k, 1) - health.BASELINE_BYTES
        assert used < estimate, (name, used, estimate)


def test_dmft_with_too_many_samples_is_refused_with_an_estimate():
    t0 = time.perf_counter()
    r = run_quiet("solve", model_path("gmm_two_cluster_logistic"), "--samples", "100000000")
    assert r.code == 2, r.err
    assert "100000000 trajectories" in r.err and "GiB" in r.err and "--samples" in r.err
    assert time.perf_counter() - t0 < 30


def test_dmft_estimate_bounds_the_compiled_sweep():
    from eqgen.runtime import dmft

    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    problem = model.problem(None, None, 3.0)
    n = 1000
    inputs = dmft.draw_inputs(problem, n, 0)
    n_chi = dmft.response_capacity(problem, n)
    mem = dmft._sweep_jit.lower(problem, inputs, n_chi, False).compile().memory_analysis()
    used = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
    assert used < health.dmft_memory(problem.steps, n, n_chi) - health.BASELINE_BYTES


# ---------------------------------------------------------------------------------------------
# reproducibility


def test_dmft_solve_is_bitwise_reproducible_in_a_process():
    model = eqgen.load(model_path("gmm_two_cluster_logistic"))
    kw = dict(params={"b": 0.5, "tau": 1.0}, t_max=2.0, samples=2000)
    a, b = model.solve(seed=3, **kw), model.solve(seed=3, **kw)
    c = model.solve(seed=4, **kw)
    for name in a.observables:
        assert a[name].tobytes() == b[name].tobytes(), name
    assert a["train_loss"].tobytes() != c["train_loss"].tobytes()


def test_simulate_is_bitwise_reproducible_in_a_process():
    model = eqgen.load(model_path("committee_erf"))
    kw = dict(d=200, seeds=2, seed=5, t_max=2.0)
    a, b = model.simulate(**kw), model.simulate(**kw)
    for name in (*a.observables, *a.states):
        assert a[name].tobytes() == b[name].tobytes(), name


def _cli(args: list[str], hashseed: str, cwd: Path = ROOT, **env: str
         ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONHASHSEED": hashseed, **env}
    full_env.pop("EQGEN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "eqgen", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", [
    ["solve", "models/gmm_two_cluster_logistic.eqg", "--set", "b=0.5", "--set", "tau=1",
     "--t-max", "2", "--samples", "2000", "--seed", "7"],
    ["simulate", "models/committee_erf.eqg", "--d", "200", "--seeds", "2", "--seed", "1",
     "--t-max", "2"],
], ids=["dmft-solve", "committee-simulate"])
def test_same_seed_same_bytes_across_processes(tmp_path: Path, command: list[str]):
    outs = []
    for i, hashseed in enumerate(("0", "12345")):
        out = tmp_path / f"run{i}.csv"
        r = _cli([*command, "-o", str(out)], hashseed)
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_concurrent_generate_leaves_a_valid_file(tmp_path: Path):
    """Four processes generate the same model into the same folder and cache at once."""
    out_dir, cache = tmp_path / "gen", tmp_path / "cache"
    spec = model_path("committee_erf")
    env = {**os.environ, "EQGEN_CACHE_DIR": str(cache), "PYTHONHASHSEED": "0"}
    procs = [subprocess.Popen([sys.executable, "-m", "eqgen", "generate", str(spec),
                               "--out-dir", str(out_dir)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    written = out_dir / "committee_erf.py"
    assert written.read_bytes() == (ROOT / "generated" / "committee_erf.py").read_bytes()
    assert sorted(x.name for x in out_dir.iterdir()) == ["committee_erf.py"]  # no temp files
