"""Caches across processes: the generated module is reused by freshness key, and with the
opt-in EQGEN_JAX_CACHE the traced solver (jax.export) and its compilation are reused too —
with bit-identical results."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import model_path


def _solve(tmp_path, out, jax_cache):
    env = {**os.environ, "EQGEN_CACHE_DIR": str(tmp_path / "cache"), "EQGEN_JAX_CACHE": jax_cache}
    subprocess.run([sys.executable, "-m", "eqgen", "solve", str(model_path("committee_erf")),
                    "--t-max", "50", "-o", str(out)], check=True, env=env, timeout=300,
                   capture_output=True)


def test_second_run_reuses_module_and_solver_with_identical_results(tmp_path):
    jax_cache = str(tmp_path / "jax")
    _solve(tmp_path, tmp_path / "a.csv", jax_cache)
    exported = list((tmp_path / "jax" / "exported").glob("*.jaxexport"))
    assert len(exported) == 2  # the solver's two programs, advance and finish (ode.Pieces)
    _solve(tmp_path, tmp_path / "b.csv", jax_cache)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    _solve(tmp_path, tmp_path / "c.csv", "0")  # no persistent cache: same numbers
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "c.csv").read_bytes()
