"""Numerical runtime of eqgen (JAX): quadrature, ODE integration and friends."""

from eqgen.runtime.quadrature import gauss_hermite_nodes, gaussian_expectation, symmetric_sqrt

__all__ = ["gauss_hermite_nodes", "gaussian_expectation", "symmetric_sqrt"]
