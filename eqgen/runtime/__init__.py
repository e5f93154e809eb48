"""Numerical runtime: ODE driver, quadrature, special functions, solutions (JAX, float64)."""

import jax

jax.config.update("jax_enable_x64", True)  # float64 throughout, before any array exists


def _persistent_cache() -> None:
    """Opt-in: EQGEN_JAX_CACHE=1 (or a folder) keeps compiled solvers across processes."""
    import os

    value = os.environ.get("EQGEN_JAX_CACHE", "")
    if not value or value == "0":
        return
    if value == "1":
        from eqgen.codegen.module import cache_dir

        value = str(cache_dir() / "jax")
    # equinox's run-time checks use host callbacks, which JAX does not cache: make them
    # return NaN instead (the solve is checked for non-finite values anyway)
    os.environ.setdefault("EQX_ON_ERROR", "nan")
    jax.config.update("jax_compilation_cache_dir", value)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


_persistent_cache()

from eqgen.runtime.quadrature import (  # noqa: E402
    gauss_hermite_nodes,
    gaussian_expectation,
    symmetric_sqrt,
)

__all__ = ["gauss_hermite_nodes", "gaussian_expectation", "symmetric_sqrt"]
