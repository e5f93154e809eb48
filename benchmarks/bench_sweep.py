"""Throughput of a 64-point sweep: one vmapped solve against 64 separate solves.

Problem: committee_erf (erf, p = k = 2, high-dimensional regime), grid γ × Δ = 8 × 8
(γ from 0.25 to 2, Δ from 0 to 0.1), t ∈ [0, T_MAX] on the default save grid, rtol 1e-8.
Measured in this process:
1. `model.sweep(...)` cold (compilation included) and warm (second call; median of 3), split
   over the cores (`eqgen.runtime.ode.batch_workers`), and warm as one vmapped solve on one
   core (EQGEN_SWEEP_THREADS=1);
2. 64 separate `model.solve(...)` calls, warm (the single-point solver compiled once before);
then, unless --no-processes, N_PROCESSES separate `eqgen solve` processes (each pays start-up
and compilation; the 64-process time is that mean times 64).
Also checked: every point of the sweep equals its separate solve (largest difference printed).
Results go to benchmarks/results/sweep.json; docs/performance.md quotes them.

    .venv/bin/python benchmarks/bench_sweep.py [--no-processes] [--t-max T]
    .venv/bin/python benchmarks/bench_sweep.py --spec committee_relu --t-max 100 --result sweep_relu

(`--spec committee_relu`: a gradient-flow model, only I3 terms: per-step overhead rather than
arithmetic dominates a single solve, which is where one vmapped solve gains most on a CPU.
Grid: γ × Δ as above; Δ does not enter a gradient-flow ODE, but the 64 points are still solved.)
"""

from __future__ import annotations

import argparse
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

GAMMAS = np.linspace(0.25, 2.0, 8)
DELTAS = np.linspace(0.0, 0.1, 8)
N_PROCESSES = 3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-processes", action="store_true")
    ap.add_argument("--t-max", type=float, default=1000.0)
    ap.add_argument("--spec", default="committee_erf", help="a model in models/")
    ap.add_argument("--result", default="sweep", help="benchmarks/results/<RESULT>.json")
    args = ap.parse_args()
    spec = ROOT / "models" / f"{args.spec}.eqg"
    os.environ.setdefault("EQGEN_CACHE_DIR", tempfile.mkdtemp(prefix="eqgen-bench-"))
    import jax

    import eqgen

    model = eqgen.load(spec)
    grid = {"gamma": GAMMAS, "Delta": DELTAS}
    t0 = time.perf_counter()
    res = model.sweep(grid, t_max=args.t_max)
    cold = time.perf_counter() - t0
    warm_runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        res = model.sweep(grid, t_max=args.t_max)
        warm_runs.append(time.perf_counter() - t0)
    warm = float(np.median(warm_runs))
    assert res.success.all()
    from eqgen.runtime.ode import batch_workers

    workers = batch_workers(len(res))
    os.environ["EQGEN_SWEEP_THREADS"] = "1"  # the same sweep as one vmapped solve on one core
    model.sweep(grid, t_max=args.t_max)
    one_thread = []
    for _ in range(3):
        t0 = time.perf_counter()
        model.sweep(grid, t_max=args.t_max)
        one_thread.append(time.perf_counter() - t0)
    del os.environ["EQGEN_SWEEP_THREADS"]

    model.solve(params=res.points[0], t_max=args.t_max)  # compile the single-point solver
    t0 = time.perf_counter()
    diff = 0.0
    steps = []
    for i, point in enumerate(res.points):
        sol = model.solve(params=point, t_max=args.t_max)
        steps.append(sol.metadata["steps"])
        diff = max(diff, float(np.max(np.abs(sol["excess_risk"] - res["excess_risk"][i]))))
    separate = time.perf_counter() - t0

    out: dict = {
        "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, Python "
                   f"{platform.python_version()}, JAX {jax.__version__} "
                   f"({jax.default_backend()})",
        "problem": f"{args.spec} p=k=2, gamma x Delta = 8 x 8, t_max={args.t_max:g}, "
                   "rtol 1e-8",
        "points": len(res), "sweep_cold_s": cold, "sweep_warm_s": warm,
        "sweep_warm_runs_s": warm_runs, "sweep_threads": workers,
        "sweep_warm_one_thread_s": float(np.median(one_thread)), "separate_warm_s": separate,
        "ratio_warm": separate / warm, "ratio_vs_cold_sweep": separate / cold,
        "max_abs_diff_excess_risk": diff,
        "steps_per_point_min_max": [int(min(steps)), int(max(steps))],
        "sweep_steps_max": int(res.steps.max()),
    }
    if not args.no_processes:
        times = []
        for point in res.points[:N_PROCESSES]:
            cmd = [str(ROOT / ".venv" / "bin" / "eqgen"), "solve", str(spec),
                   "--set", f"gamma={point['gamma']}", "--set", f"Delta={point['Delta']}",
                   "--t-max", str(args.t_max), "-o", os.devnull + ".csv"]
            with tempfile.TemporaryDirectory() as tmp:
                cmd[-1] = str(Path(tmp) / "o.csv")
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                times.append(time.perf_counter() - t0)
        out["process_mean_s"] = float(np.mean(times))
        out["processes_64_s_extrapolated"] = float(np.mean(times)) * len(res)
        out["ratio_processes"] = out["processes_64_s_extrapolated"] / cold
    print(json.dumps(out, indent=2))
    path = ROOT / "benchmarks" / "results" / f"{args.result}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
