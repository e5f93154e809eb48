"""The DMFT forward sweep against the straightforward numpy sweep (benchmarks/baseline_dmft_numpy).

Measures, on this machine, for the logistic two-cluster model (models/gmm_two_cluster_logistic):
1. K = 60 steps (η = 0.1, t = 6) with N = 4·10⁴ trajectories: eqgen's sweep warm (compiled,
   as in a second solve; the best of two), cold (compilation included), and the numpy
   baseline on the same random inputs (they agree to round-off: tests/test_dmft.py), warm
   too: its first run also compiles the per-sample JAX functions (ℓ', ℓ'', ...) it calls, so
   it is reported apart and the best of the next two is compared;
2. K = 200 steps (t = 20) with N = 4·10⁴: time and peak memory of eqgen's sweep;
each in its own process so that peak resident memory (ru_maxrss) is per measurement.
Results go to benchmarks/results/dmft.json; docs/performance.md quotes them.
Usage: python benchmarks/bench_dmft.py [--quick]
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "models" / "gmm_two_cluster_logistic.eqg"


def _child(kind: str, samples: int, t_max: float) -> dict:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import jax

    import eqgen
    from eqgen.runtime import dmft

    model = eqgen.load(SPEC)
    problem = model.problem(t_max=t_max)
    out: dict = {"kind": kind, "samples": samples, "steps": problem.steps}
    if kind == "numpy":
        from baseline_dmft_numpy import numpy_sweep, random_inputs

        raw = random_inputs(problem, samples, 0)
        times = []
        for _ in range(3):  # the first also compiles the per-sample JAX functions it calls
            t0 = time.perf_counter()
            numpy_sweep(problem, **raw)
            times.append(time.perf_counter() - t0)
        out["first_seconds"] = times[0]
        out["seconds"] = min(times[1:])
        out["runs_seconds"] = times
    else:
        from eqgen.runtime.lapack_threads import one_lapack_thread

        inputs = dmft.draw_inputs(problem, samples, 0)
        jax.block_until_ready(inputs)
        n_chi = dmft.response_capacity(problem, samples)

        def run() -> float:  # the compiled sweep as `dmft.sweep` runs it
            t0 = time.perf_counter()
            with one_lapack_thread():
                jax.block_until_ready(dmft._sweep_jit(problem, inputs, n_chi, False))
            return time.perf_counter() - t0

        out["cold_seconds"] = run()
        times = [run() for _ in range(2)]
        out["seconds"] = min(times)
        out["runs_seconds"] = [out["cold_seconds"], *times]
        out["response_samples"] = n_chi
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _run(kind: str, samples: int, t_max: float) -> dict:
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import json, "
            f"bench_dmft as b; print(json.dumps(b._child({kind!r}, {samples}, {t_max})))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    quick = "--quick" in sys.argv
    n = 10_000 if quick else 40_000
    results = {"machine": platform.platform(), "python": platform.python_version(),
               "model": SPEC.name}
    results["eqgen_k60"] = _run("eqgen", n, 6.0)
    results["numpy_k60"] = _run("numpy", n, 6.0)
    results["speedup_k60"] = results["numpy_k60"]["seconds"] / results["eqgen_k60"]["seconds"]
    if not quick:
        results["eqgen_k200"] = _run("eqgen", n, 20.0)
    print(json.dumps(results, indent=2))
    out = ROOT / "benchmarks" / "results" / ("dmft_quick.json" if quick else "dmft.json")
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
