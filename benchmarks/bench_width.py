"""Large widths: time per right-hand side, per solve, and peak memory, by width p.

Cases (k = 2, erf, readouts 1/p and 1/k, γ = 1):
- `full_gf`:  the full ODE (Q, M) in gradient flow — only the I3 terms — at p = 64, 128, 256;
- `full_hd`:  the full ODE with the I4 variance term (high_dimensional) at p = 16, 32, 64;
- `reduced`:  the mean-field reduction (M, q⊥; eqgen.mean_field) at p = 10², 10³, 10⁴.

Every case runs in its own process, so its peak resident memory (`resource.getrusage`,
ru_maxrss: the whole process, Python and XLA included) is its own. The start is the same for
all: M_jr ~ N(0, 0.3²), q⊥_j ~ U(0.2, 0.6) (seed 1), Q = MMᵀ + diag(q⊥), P = I. The right-hand
side is timed jitted and warm (median of repeats); a solve is Tsit5, rtol 1e-6, atol 1e-9, saved
at t = 0, 1, ..., t_max: "first" includes tracing and XLA compilation, "warm" is the same solve
again in the process (skipped for the largest reduced width).

    .venv/bin/python benchmarks/bench_width.py [--cases full_gf,full_hd,reduced] [--t-max 10]

Results go to benchmarks/results/width.json; docs/performance.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's eqgen, even where another is installed
SIZES = {"full_gf": (64, 128, 256), "full_hd": (16, 32, 64), "reduced": (100, 1000, 10_000)}
SPEC = """model width_{regime} "width benchmark"
param p = 8, k = 2, gamma = 1.0, Delta = 0.0
data gaussian
teacher committee(width = k, activation = erf(z / sqrt(2)), readout = 1/k, noise = Delta)
student committee(width = p, activation = erf(z / sqrt(2)), readout = 1/p, second_layer = fixed(1))
loss square
sgd learning_rate = gamma, batch = 1
regime {regime}
init Q = identity(p), M = zeros(p, k), P = identity(k)
time t_max = 10
"""


def child(case: str, p: int, t_max: float, warm: bool, folder: str) -> dict:
    """One measurement, in this (fresh) process."""
    import resource

    import jax
    import numpy as np

    import eqgen

    regime = {"full_gf": "gradient_flow", "full_hd": "high_dimensional",
              "reduced": "gradient_flow"}[case]
    path = Path(folder) / f"width_{regime}.eqg"
    if not path.exists():
        path.write_text(SPEC.format(regime=regime))
    model = eqgen.load(path)
    if case == "reduced":
        model = model.reduced("mean_field")
    k = 2
    rng = np.random.default_rng(1)
    M = rng.normal(size=(p, k)) * 0.3
    q = rng.uniform(0.2, 0.6, p)
    params = {**model.parameters, "p": float(p)}
    if case == "reduced":
        init = {"M": M, "q_perp": q}
        state = {**init, "a": np.ones(p), "a_star": np.ones(k)}
    else:
        init = {"Q": M @ M.T + np.diag(q), "M": M}
        state = {**init, "P": np.eye(k), "a": np.ones(p), "a_star": np.ones(k)}
    module = model.module
    f = jax.jit(module.vector_field)
    sj = {n: jax.numpy.asarray(v) for n, v in state.items()}
    pj = {n: jax.numpy.asarray(v) for n, v in params.items()}
    t0 = time.perf_counter()
    jax.block_until_ready(f(0.0, sj, pj))
    compile_rhs = time.perf_counter() - t0
    times = []
    for _ in range(3 if p >= 5000 else 10):
        t0 = time.perf_counter()
        jax.block_until_ready(f(0.0, sj, pj))
        times.append(time.perf_counter() - t0)
    out = {"case": case, "p": p, "k": k, "rhs_s": float(np.median(times)),
           "rhs_first_s": compile_rhs}
    ts = list(np.arange(0.0, t_max + 0.5))
    t0 = time.perf_counter()
    sol = model.solve({"p": p}, init, save_at=ts, rtol=1e-6, atol=1e-9)
    out["solve_first_s"] = time.perf_counter() - t0
    out["steps"] = sol.metadata["steps"]
    out["risk_final"] = float(sol["risk"][-1])
    if warm:
        t0 = time.perf_counter()
        model.solve({"p": p}, init, save_at=ts, rtol=1e-6, atol=1e-9)
        out["solve_warm_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["t_max"] = t_max
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="full_gf,full_hd,reduced")
    ap.add_argument("--sizes", default=None, help="comma-separated widths (default per case)")
    ap.add_argument("--t-max", type=float, default=10.0)
    ap.add_argument("--child", nargs=3, metavar=("CASE", "P", "FOLDER"), help=argparse.SUPPRESS)
    ap.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("-o", "--output", default=str(ROOT / "benchmarks" / "results" / "width.json"))
    args = ap.parse_args()
    if args.child:
        case, p, folder = args.child
        print(json.dumps(child(case, int(p), args.t_max, args.warm, folder)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for case in args.cases.split(","):
            sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else SIZES[case]
            for p in sizes:
                cmd = [sys.executable, __file__, "--child", case, str(p), folder,
                       "--t-max", str(args.t_max)]
                if not (case == "reduced" and p >= 5000):
                    cmd.append("--warm")
                res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if res.returncode != 0:
                    print(res.stderr[-2000:], file=sys.stderr)
                    continue
                row = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = Path(args.output)
    old = json.loads(out.read_text())["rows"] if out.exists() else []
    keep = [r for r in old if (r["case"], r["p"]) not in {(x["case"], x["p"]) for x in rows}]
    doc = {"machine": f"{platform.processor() or platform.machine()}, "
                      f"{__import__('os').cpu_count()} CPU cores (shared)",
           "rows": sorted(keep + rows, key=lambda r: (r["case"], r["p"]))}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
