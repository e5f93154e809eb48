"""Throughput of the finite-d SGD simulator (`eqgen simulate`) at large d.

Simulates committee_erf with p = k = 8 (γ = 1, readouts 1/p: γ c_p = 1/8, so d/(γ c_p) = 8·d
steps per unit of time) at d = 10⁴ for 1 and 4 seeds, after a short warm-up that compiles the
stepper, and reports SGD steps per second (summed over seeds) and the extrapolated time to
t = 10. With `--full 1 4`, also runs the whole t = 10 simulation with 1 and 4 seeds.

    .venv/bin/python benchmarks/bench_simulate.py [--d 10000] [--t 0.5] [--full 1 4]

Results go to benchmarks/results/simulate.json (and are quoted in docs/comparison.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=10_000)
    ap.add_argument("--p", type=int, default=8)
    ap.add_argument("--t", type=float, default=0.5, help="simulated time per measurement")
    ap.add_argument("--seeds", type=int, nargs="*", default=[1, 4])
    ap.add_argument("--full", type=int, nargs="*", default=[], metavar="SEEDS",
                    help="also run the whole t = 10 with these numbers of seeds")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "simulate.json"))
    args = ap.parse_args()

    import jax

    import eqgen
    model = eqgen.load(ROOT / "models" / "committee_erf.eqg")
    p = args.p
    params = {"p": p, "k": p}
    init = {"Q": 0.5 * np.eye(p), "M": np.full((p, p), 0.01), "P": np.eye(p)}
    rows = []

    def measure(seeds: int, t: float) -> dict:
        # warm-up (compiles the stepper for these shapes), then the timed run
        model.simulate(params, init, d=args.d, seeds=seeds, save_at=[t / 50], progress=False)
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        sol = model.simulate(params, init, d=args.d, seeds=seeds, save_at=[t], progress=False)
        wall = time.perf_counter() - t0
        meta = sol.metadata
        rate = meta["steps"] * seeds / wall
        row = {"d": args.d, "p": p, "k": p, "seeds": seeds, "t": float(sol.t[-1]),
               "steps_per_seed": meta["steps"], "wall_s": round(wall, 2),
               "cpu_per_wall": round((time.process_time() - cpu0) / wall, 2),
               "steps_per_s": round(rate),
               "extrapolated_t10_s": round(10 / sol.t[-1] * wall, 1)}
        print(json.dumps(row), flush=True)
        return row

    for seeds in args.seeds:
        rows.append(measure(seeds, args.t))
    for seeds in args.full:
        rows.append(measure(seeds, 10.0))
    doc = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "jax": jax.__version__, "devices": len(jax.local_devices())},
        "model": "committee_erf, p = k = 8, gamma = 1 (γ c_p = 1/8)",
        "runs": rows,
    }
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
