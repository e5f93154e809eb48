"""Numerical runtime: ODE driver, quadrature, special functions, solutions (JAX, float64)."""

import jax

jax.config.update("jax_enable_x64", True)  # float64 throughout, before any array exists

from eqgen.runtime.quadrature import (  # noqa: E402
    gauss_hermite_nodes,
    gaussian_expectation,
    symmetric_sqrt,
)

__all__ = ["gauss_hermite_nodes", "gaussian_expectation", "symmetric_sqrt"]
