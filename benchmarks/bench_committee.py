"""eqgen against the hand-written baselines (numpy + scipy DOP853, fixed-step Euler).

Measures, on this machine:
1. one right-hand-side evaluation: eqgen's generated JAX (jitted) vs the vectorised numpy
   baseline, at (p, k) = (10, 2) and (64, 4) with the I4 variance term;
2. `eqgen solve` end to end in a fresh process (start-up, derivation, generation, compilation
   and the solve), p = 10, k = 2, erf, high-dimensional regime, γ c_p = 0.5, t ∈ [0, 10⁴],
   rtol 1e-10: cold (empty module cache) and second run (generated module reused);
3. a warm solve (same model again in the same process);
4. the numpy + DOP853 solve of the same problem and the Euler (dt = 1e-3) estimate.
Results go to benchmarks/results/committee.json; docs/performance.md quotes them.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import baseline_numpy as base  # noqa: E402
from benchmarks.bench_rhs_numpy import load_init  # noqa: E402

SPEC = ROOT / "models" / "committee_erf.eqg"
INIT = ROOT / "benchmarks" / "init_p10_k2.json"
T_MAX, RTOL, ATOL = 1e4, 1e-10, 1e-12


def _median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def rhs_times(p: int, k: int, repeats: int) -> dict[str, float]:
    import jax

    import eqgen

    init = load_init(p, k)
    model = eqgen.load(SPEC)
    params = {"p": p, "k": k, "gamma": p / 2, "Delta": 0.0}
    state = {name: np.asarray(v) for name, v in init.items()}

    jf = jax.jit(model.module.vector_field)
    full = {name: jax.numpy.asarray(v) for name, v in state.items()}
    full.update(a=jax.numpy.ones(p), a_star=jax.numpy.ones(k))
    pr = {name: jax.numpy.asarray(float(v)) for name, v in params.items()}

    def jax_call() -> None:  # the compiled field on device arrays, as a solver calls it
        jax.block_until_ready(jf(0.0, full, pr))

    a, a_s = np.ones(p), np.ones(k)

    def numpy_call() -> None:
        base.committee_erf_rhs(init["Q"], init["M"], init["P"], a, a_s, 1 / p, 1 / k, 0.5, 0.0)

    t_jax = _median_time(jax_call, repeats)
    t_np = _median_time(numpy_call, max(3, repeats // 10) if p > 32 else repeats)
    return {"eqgen_s": t_jax, "numpy_s": t_np, "speedup": t_np / t_jax}


def peak_rss_mb(code: str) -> float:
    """Peak resident memory of a fresh Python process running `code` (GNU time's %M)."""
    r = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-c", code],
                       capture_output=True, text=True, check=True, cwd=ROOT)
    return int(r.stderr.strip().splitlines()[-1]) / 1024


MEMORY_CODE = {
    "numpy_rhs_p64": (
        "import json, numpy as np; from benchmarks import baseline_numpy as b; "
        "i = json.load(open('benchmarks/init_p64_k4.json')); "
        "b.committee_erf_rhs(np.array(i['Q']), np.array(i['M']), np.array(i['P']), "
        "np.ones(64), np.ones(4), 1/64, 1/4, 0.5, 0.0)"),
    "eqgen_rhs_p64": (
        "import json, jax, eqgen; m = eqgen.load('models/committee_erf.eqg'); "
        "i = json.load(open('benchmarks/init_p64_k4.json')); "
        "f = m.vector_field({'p': 64, 'k': 4, 'gamma': 32.0}); "
        "jax.block_until_ready(f(0.0, i))"),
    "baseline_python_numpy_import": "import numpy, scipy.integrate",
    "baseline_python_jax_import": "import jax, diffrax, eqgen.model",
}


def cli_solve(cache: str, out: str, jax_cache: str = "0") -> float:
    cmd = [sys.executable, "-m", "eqgen", "solve", str(SPEC), "--set", "p=10", "--set", "k=2",
           "--set", "gamma=5", "--init", str(INIT), "--t-max", str(T_MAX), "--rtol", str(RTOL),
           "--atol", str(ATOL), "-o", out]
    env = {**os.environ, "EQGEN_CACHE_DIR": cache, "EQGEN_JAX_CACHE": jax_cache}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=tempfile.gettempdir())
    return time.perf_counter() - t0


def main() -> None:
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform()}}
    # numpy + DOP853 (same problem, same tolerances)
    init = load_init(10, 2)
    t0 = time.perf_counter()
    traj = base.solve_dop853(init["Q"], init["M"], init["P"], np.ones(10), np.ones(2),
                             c_p=0.1, c_k=0.5, gamma_cp_over_B=0.5, Delta=0.0, t_max=T_MAX,
                             rtol=RTOL, atol=ATOL, save_at=np.linspace(0, T_MAX, 11))
    t_dop = time.perf_counter() - t0
    results["numpy_dop853"] = {"seconds": t_dop, "rhs_evaluations": traj.nfev,
                               "final_excess_risk": float(traj.risk[-1])}
    euler = json.loads((ROOT / "benchmarks/results/numpy_baseline.json").read_text())["euler"]
    results["euler_dt1e-3"] = euler

    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "sol.csv")
        cold = cli_solve(cache, out)
        second = cli_solve(cache, out)
        with open(out, newline="") as f:
            final = float(list(csv.DictReader(f))[-1]["excess_risk"])
        jax_cache = str(Path(cache) / "jax")
        cli_solve(cache, out, jax_cache)  # fills the persistent compilation cache
        cached = cli_solve(cache, out, jax_cache)
    results["eqgen_cli"] = {"cold_seconds": cold, "second_run_seconds": second,
                            "with_compilation_cache_seconds": cached,
                            "final_excess_risk": final}

    import eqgen

    model = eqgen.load(SPEC)
    kw = dict(params={"p": 10, "k": 2, "gamma": 5.0}, init={k: np.asarray(v) for k, v in
                                                               init.items()},
              t_max=T_MAX, rtol=RTOL, atol=ATOL)
    t0 = time.perf_counter()
    sol = model.solve(**kw)
    first = time.perf_counter() - t0
    warm = _median_time(lambda: model.solve(**kw), repeats=3, warmup=0)
    stages = {"tsit5": 6, "dopri5": 6, "dopri8": 12}[sol.metadata["solver"]]
    evals = sol.metadata["steps"] * stages  # FSAL: new evaluations per accepted step, approx.
    results["eqgen_api"] = {"first_solve_seconds": first, "warm_solve_seconds": warm,
                            "steps": sol.metadata["steps"], "solver": sol.metadata["solver"],
                            "approx_rhs_evaluations": evals,
                            "seconds_per_rhs_in_solver": warm / evals,
                            "final_excess_risk": float(sol["excess_risk"][-1])}
    results["rhs_p10_k2"] = rhs_times(10, 2, repeats=2000)
    results["rhs_p64_k4"] = rhs_times(64, 4, repeats=20)
    results["peak_rss_mb"] = {name: peak_rss_mb(code) for name, code in MEMORY_CODE.items()}
    ratios = {
        "cli_cold_vs_dop853": cold / t_dop,
        "cli_second_run_vs_dop853": second / t_dop,
        "cli_with_compilation_cache_vs_dop853": cached / t_dop,
        "warm_solve_vs_dop853": warm / t_dop,
        "euler_vs_warm_solve": euler["wall_s_total_extrapolated"] / warm,
    }
    results["ratios"] = ratios
    path = ROOT / "benchmarks" / "results" / "committee.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
