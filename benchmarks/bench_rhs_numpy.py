"""Timings of the hand-written numpy baseline (benchmarks/baseline_numpy.py).

What is measured, and why (these are the numbers eqgen is compared against):
- one RHS evaluation at (p, k) = (10, 2) and (64, 4): median of repeats after warm-up;
- a DOP853 solve (scipy solve_ivp) for p = 10, k = 2, erf/erf, high-dimensional regime,
  gamma c_p = 0.5 (c_p = 1/p, c_k = 1/k, gamma = 5, B = 1, Delta = 0), a = a* = 1,
  t in [0, 1e4], rtol = 1e-10, atol = 1e-12: wall time, RHS evaluations, final excess risk;
- fixed-step Euler (dt = 1e-3, 1e7 steps) as in published research codes: run for a fixed
  wall-time budget and EXTRAPOLATED linearly to the full horizon.

Initial conditions are generic (not symmetric): W (p x d) then W* (k x d) drawn standard normal
with numpy default_rng(0) at d = 1000, Q = W W^T/d, M = W W*^T/d, P = W* W*^T/d. They are saved to
benchmarks/init_p{p}_k{k}.json so eqgen can start from the identical state.

Usage: .venv/bin/python benchmarks/bench_rhs_numpy.py [--euler-budget SECONDS] [--skip-checks]
Writes benchmarks/results/numpy_baseline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy

try:  # imported as part of the repository (python -m, or from the repo root)
    from benchmarks import baseline_numpy as bn
except ImportError:  # run as a script: benchmarks/ is on sys.path
    import baseline_numpy as bn  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "numpy_baseline.json"

D_INIT = 1000
SEED = 0
GAMMA_CP = 0.5
T_MAX = 1e4
RTOL, ATOL = 1e-10, 1e-12
EULER_DT = 1e-3
SAVE_AT = np.concatenate([[0.0], np.logspace(-2, 4, 61)])


def make_init(p: int, k: int, d: int = D_INIT, seed: int = SEED) -> dict[str, np.ndarray]:
    """Generic overlaps of Gaussian weights: W then W* from default_rng(seed) at dimension d."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((p, d))
    W_star = rng.standard_normal((k, d))
    return {"Q": W @ W.T / d, "M": W @ W_star.T / d, "P": W_star @ W_star.T / d}


def init_path(p: int, k: int) -> Path:
    """Location of the saved initial condition for (p, k)."""
    return HERE / f"init_p{p}_k{k}.json"


def write_init(p: int, k: int) -> dict[str, np.ndarray]:
    """Create (or overwrite) benchmarks/init_p{p}_k{k}.json and return its arrays."""
    init = make_init(p, k)
    init_path(p, k).write_text(json.dumps({key: v.tolist() for key, v in init.items()}))
    return init


def load_init(p: int, k: int) -> dict[str, np.ndarray]:
    """Read a saved initial condition as float64 arrays (repr round-trips exactly)."""
    raw = json.loads(init_path(p, k).read_text())
    return {key: np.array(raw[key], dtype=float) for key in ("Q", "M", "P")}


def problem(p: int, k: int) -> dict[str, Any]:
    """Keyword arguments of committee_erf_rhs/solvers for the benchmark problem at (p, k)."""
    init = load_init(p, k) if init_path(p, k).exists() else write_init(p, k)
    return {
        "Q0": init["Q"],
        "M0": init["M"],
        "P": init["P"],
        "a": np.ones(p),
        "a_star": np.ones(k),
        "c_p": 1.0 / p,
        "c_k": 1.0 / k,
        "gamma_cp_over_B": GAMMA_CP,
        "Delta": 0.0,
    }


def time_rhs(p: int, k: int, repeats: int | None = None, warmup: int = 3) -> dict[str, Any]:
    """Median wall time of one numpy RHS evaluation at the benchmark initial condition."""
    kw = problem(p, k)
    args = (kw["Q0"], kw["M0"], kw["P"], kw["a"], kw["a_star"], kw["c_p"], kw["c_k"])
    extra = (kw["gamma_cp_over_B"], kw["Delta"])
    for _ in range(warmup):
        bn.committee_erf_rhs(*args, *extra)
    if repeats is None:  # aim at ~2 s of measurement, at least 7 repeats
        t0 = time.perf_counter()
        bn.committee_erf_rhs(*args, *extra)
        one = time.perf_counter() - t0
        repeats = int(min(20_000, max(7, 2.0 / max(one, 1e-7))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        bn.committee_erf_rhs(*args, *extra)
        times.append(time.perf_counter() - t0)
    return {
        "p": p,
        "k": k,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "repeats": repeats,
        "warmup": warmup,
    }


def time_dop853(p: int = 10, k: int = 2) -> dict[str, Any]:
    """Full DOP853 solve to T_MAX; returns timing, RHS count and the risk trajectory."""
    kw = problem(p, k)
    tr = bn.solve_dop853(**kw, t_max=T_MAX, rtol=RTOL, atol=ATOL, save_at=SAVE_AT)
    return {
        "p": p,
        "k": k,
        "t_max": T_MAX,
        "rtol": RTOL,
        "atol": ATOL,
        "wall_s": tr.wall_s,
        "nfev": tr.nfev,
        "wall_per_rhs_s": tr.wall_s / tr.nfev,
        "final_excess_risk": float(tr.risk[-1]),
        "final_Q": tr.Q[-1].tolist(),
        "final_M": tr.M[-1].tolist(),
        "save_t": tr.t.tolist(),
        "save_excess_risk": tr.risk.tolist(),
    }


def time_euler(p: int = 10, k: int = 2, budget_s: float = 20.0) -> dict[str, Any]:
    """Euler at dt = 1e-3 for budget_s seconds, extrapolated to T_MAX; checked against DOP853."""
    kw = problem(p, k)
    tr = bn.solve_euler(**kw, t_max=T_MAX, dt=EULER_DT, max_wall_s=budget_s)
    info = dict(tr.info)
    t_reached = float(info["t_reached"])
    # Accuracy at the stopping time, against a tight DOP853 reference started from the same state.
    ref = bn.solve_dop853(**kw, t_max=t_reached, rtol=RTOL, atol=ATOL, save_at=[0.0, t_reached])
    info.update(
        {
            "p": p,
            "k": k,
            "budget_s": budget_s,
            "wall_per_step_s": tr.wall_s / max(tr.nfev, 1),
            "excess_risk_at_t_reached": float(tr.risk[-1]),
            "dop853_excess_risk_at_t_reached": float(ref.risk[-1]),
            "max_abs_dQ_dM_vs_dop853_at_t_reached": float(
                max(np.abs(tr.Q[-1] - ref.Q[-1]).max(), np.abs(tr.M[-1] - ref.M[-1]).max())
            ),
        }
    )
    return info


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas_s = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # informational only
        blas_s = "unknown"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "blas": blas_s,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run self-checks, write init files, time everything, print a table, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--euler-budget", type=float, default=20.0, help="Euler wall budget (s)")
    ap.add_argument("--skip-checks", action="store_true", help="skip baseline self-checks")
    args = ap.parse_args(argv)

    if not args.skip_checks:
        bn.check(verbose=True)
    for p, k in ((10, 2), (64, 4)):
        write_init(p, k)

    out: dict[str, Any] = {"machine": machine(), "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out["problem"] = {
        "student": "erf",
        "teacher": "erf",
        "loss": "square",
        "regime": "high-dimensional (variance term kept)",
        "gamma_cp": GAMMA_CP,
        "c_p": "1/p",
        "c_k": "1/k",
        "gamma": 5.0,  # gamma c_p = 0.5 with c_p = 1/10
        "B": 1,
        "Delta": 0.0,
        "a": "ones (fixed)",
        "a_star": "ones",
        "init": f"W (p x d), W* (k x d) ~ N(0,1), default_rng({SEED}), d = {D_INIT}",
        "init_files": [
            str(init_path(p, k).relative_to(HERE.parent)) for p, k in ((10, 2), (64, 4))
        ],
    }
    out["rhs"] = [time_rhs(10, 2), time_rhs(64, 4)]
    out["dop853"] = time_dop853(10, 2)
    out["euler"] = time_euler(10, 2, args.euler_budget)

    d, e = out["dop853"], out["euler"]
    rows = [
        (f"RHS p={r['p']} k={r['k']} (median of {r['repeats']})", r["median_s"]) for r in out["rhs"]
    ]
    rows += [
        (f"DOP853 t=0..1e4 total ({d['nfev']} RHS evals)", d["wall_s"]),
        ("DOP853 per RHS eval (incl. solver overhead)", d["wall_per_rhs_s"]),
        (
            f"Euler dt=1e-3 measured ({e['steps_done']} of {e['steps_total']} steps)",
            e["wall_s_measured"],
        ),
        ("Euler dt=1e-3 to t=1e4 (EXTRAPOLATED)", e["wall_s_total_extrapolated"]),
    ]
    width = max(len(r[0]) for r in rows)
    print(
        f"\nnumpy baseline, {out['machine']['cpu_count']} CPUs, numpy {np.__version__}, "
        f"scipy {scipy.__version__}"
    )
    for name, sec in rows:
        print(f"  {name:<{width}}  {sec:12.6g} s")
    print(f"  final excess risk at t=1e4 (DOP853): {d['final_excess_risk']:.12e}")
    print(
        f"  Euler at t={e['t_reached']:.3f}: risk {e['excess_risk_at_t_reached']:.10e} vs "
        f"DOP853 {e['dop853_excess_risk_at_t_reached']:.10e}, "
        f"max|state diff| {e['max_abs_dQ_dM_vs_dop853_at_t_reached']:.2e}"
    )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    print(f"wrote {RESULTS.relative_to(HERE.parent)}")
    return out


if __name__ == "__main__":
    main()
