"""Numerical I4: the nested product rule against the symmetric-root rule, in a whole model.

A committee whose activation has no closed form (tanh student, erf teacher, p = k = 2, γ = 1,
high-dimensional regime: the variance term's I4 integrals are numerical) is generated twice,
each in its own process and module cache:
- `nested`: what eqgen does (`gaussian_product_expectation`, order 24, the φ fields outermost);
- `symmetric`: the rule eqgen used before (`gaussian_expectation` on the symmetric root of the
  covariance, order 20 for four fields).
Measured in each: the jitted right-hand side at the spec's start (median of 5, warm), a solve to
`--t-max` saved at 0 and `--t-max` only, so that the steps are the controller's own (Tsit5,
rtol 1e-8; first call with compilation, then warm), and the final risk, so that the two rules'
results can be set side by side (they differ by their quadrature errors).

    .venv/bin/python benchmarks/bench_quadrature.py [--t-max 10]

Results go to benchmarks/results/quadrature.json; docs/performance.md quotes them.
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
sys.path.insert(0, str(ROOT))
SPEC = """model tanh_committee "numerical I4 benchmark"
param p = 2, k = 2, gamma = 1.0, Delta = 0.0
data gaussian
teacher committee(width = k, activation = erf(z / sqrt(2)), readout = 1/k, noise = Delta)
student committee(width = p, activation = tanh(z), readout = 1/p, second_layer = fixed(1))
loss square
sgd learning_rate = gamma, batch = 1
regime high_dimensional
init P = identity(k), Q = 0.5 * identity(p), M = [[0.1, 0.05], [0.02, 0.08]]
time t_max = 10
"""


def child(rule: str, t_max: float, folder: str) -> dict:
    """One variant, in this (fresh) process."""
    import os

    os.environ["EQGEN_CACHE_DIR"] = str(Path(folder) / "cache")
    import eqgen.theories.committee as committee

    if rule == "symmetric":  # the rule before the nested one, at its order
        committee.PRODUCT_RULE_NESTING = {}
        committee.QUADRATURE_ORDER = {**committee.QUADRATURE_ORDER, 4: 20}
    import jax
    import jax.numpy as jnp
    import numpy as np

    import eqgen

    spec = Path(folder) / "tanh_committee.eqg"
    spec.write_text(SPEC)
    model = eqgen.load(spec)
    source = model.generated_source()
    assert ("gaussian_product_expectation" in source) == (rule == "nested")
    field = model.vector_field()
    state = {k: jnp.asarray(v) for k, v in model.defaults.init.items()}
    jax.block_until_ready(field(0.0, state))
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(field(0.0, state))
        runs.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    sol = model.solve(save_at=[0.0, t_max])
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    sol = model.solve(save_at=[0.0, t_max])
    warm = time.perf_counter() - t0
    return {"rule": rule, "rhs_s": float(np.median(runs)), "solve_first_s": first,
            "solve_warm_s": warm, "steps": int(sol.metadata["steps"]),
            "final_risk": float(sol.observables["risk"][-1])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--t-max", type=float, default=10.0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.t_max, args.folder)))
        return
    out = {"machine": f"{platform.machine()}, Python {platform.python_version()}",
           "problem": "tanh student, erf teacher, p = k = 2, high_dimensional, t_max "
                      f"{args.t_max:g}, rtol 1e-8", "variants": []}
    for rule in ("nested", "symmetric"):
        with tempfile.TemporaryDirectory() as folder:
            done = subprocess.run([sys.executable, __file__, "--child", rule, "--folder", folder,
                                   "--t-max", str(args.t_max)], capture_output=True, text=True,
                                  check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(result)
        out["variants"].append(result)
    nested, symmetric = out["variants"]
    out["rhs_ratio"] = symmetric["rhs_s"] / nested["rhs_s"]
    out["solve_warm_ratio"] = symmetric["solve_warm_s"] / nested["solve_warm_s"]
    out["final_risk_difference"] = abs(symmetric["final_risk"] - nested["final_risk"])
    print(json.dumps({k: out[k] for k in ("rhs_ratio", "solve_warm_ratio",
                                          "final_risk_difference")}))
    path = ROOT / "benchmarks" / "results" / "quadrature.json"
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
