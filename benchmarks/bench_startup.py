"""Start-up latency of `eqgen solve` and `eqgen sweep`, cold and warm, with and without the
opt-in persistent caches (EQGEN_JAX_CACHE).

Each run is a fresh process on a copy of models/committee_erf.eqg in a temporary folder (so
no shipped generated module is found: "cold" includes the sympy derivation and the code
generation), t_max = 100. Sequence, with one private module cache folder:
1. cold: empty module cache, no JAX cache (derive, generate, trace, compile, solve);
2. second run, no JAX cache (module reused by spec hash; traced and compiled again);
3. first run with EQGEN_JAX_CACHE (module reused; writes the serialised solver and the
   compiled program);
4. second run with EQGEN_JAX_CACHE (both read back).
The same four for `eqgen sweep --grid gamma=0.5:2:8` on a fresh cache folder. Results go to
benchmarks/results/startup.json; docs/performance.md quotes them.

    .venv/bin/python benchmarks/bench_startup.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQGEN = ROOT / ".venv" / "bin" / "eqgen"


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def sequence(extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "models" / "committee_erf.eqg"
        spec.parent.mkdir()
        shutil.copy(ROOT / "models" / "committee_erf.eqg", spec)
        env = {**os.environ, "EQGEN_CACHE_DIR": str(Path(tmp) / "cache")}
        env.pop("EQGEN_JAX_CACHE", None)
        cmd = [str(EQGEN), *extra[:1], str(spec), *extra[1:], "--t-max", "100",
               "-o", str(Path(tmp) / "out.csv")]
        out = {"cold": _timed(cmd, env), "second_no_jax_cache": _timed(cmd, env)}
        env["EQGEN_JAX_CACHE"] = str(Path(tmp) / "jax")
        out["first_with_jax_cache"] = _timed(cmd, env)
        out["second_with_jax_cache"] = _timed(cmd, env)
    return out


def main() -> None:
    res = {"solve": sequence(["solve"]),
           "sweep_8_points": sequence(["sweep", "--grid", "gamma=0.5:2:8"]),
           "machine": f"{os.cpu_count()} CPU cores, Python {sys.version.split()[0]}"}
    print(json.dumps(res, indent=2))
    (ROOT / "benchmarks" / "results" / "startup.json").write_text(json.dumps(res, indent=2)
                                                                   + "\n")


if __name__ == "__main__":
    main()
