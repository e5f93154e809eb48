"""Symbolic side of eqgen: activations, Gaussian expectations, literature closed forms."""

from eqgen.symbolic.activations import Activation, Base, Term, classify, derivative
from eqgen.symbolic.expectations import NUMERICAL, Expectation, expectation, stein_i3
from eqgen.symbolic.wick import (
    condition_at_zero,
    conditional_expectation,
    erf_moment,
    gaussian_tilt,
    polynomial_expectation,
    wick_moment,
)

__all__ = [
    "NUMERICAL",
    "Activation",
    "Base",
    "Expectation",
    "Term",
    "classify",
    "condition_at_zero",
    "conditional_expectation",
    "derivative",
    "erf_moment",
    "expectation",
    "gaussian_tilt",
    "polynomial_expectation",
    "stein_i3",
    "wick_moment",
]
