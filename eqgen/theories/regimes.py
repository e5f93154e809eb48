"""Scaling regimes of online SGD (docs/theory.md, Regimes; Veiga et al. 2022): which ODE terms
survive.

With p ~ d^κ and γ = γ₀ d^{−δ}, the SGD noise enters through γ c_p ~ d^{−(κ+δ)} (c_p = 1/p).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


class NoOdeLimit(ValueError):
    """The requested scaling has no ODE limit (SGD diverges before any macroscopic time)."""


@dataclass(frozen=True)
class RegimeInfo:
    """What a regime keeps in the ODE, and how time is measured."""

    name: str  # gradient_flow | high_dimensional | noise_dominated
    drift: bool  # population-gradient terms
    variance: bool  # the SGD variance term of dQ
    summary: str
    time_unit: str  # plain text
    time_unit_latex: str


GRADIENT_FLOW = RegimeInfo(
    "gradient_flow", True, False,
    "gradient flow: the SGD variance term vanishes (γ c_p → 0)",
    "t = steps · γ c_p / d", r"t = \nu\,\gamma c_p / d")
HIGH_DIMENSIONAL = RegimeInfo(
    "high_dimensional", True, True,
    "high-dimensional SGD (Saad & Solla; Goldt et al.): full ODE with the variance term "
    "γ c_p / B",
    "t = steps · γ c_p / d", r"t = \nu\,\gamma c_p / d")
NOISE_DOMINATED = RegimeInfo(
    "noise_dominated", False, True,
    "noise-dominated ('bad learning'): only the variance and label-noise terms act, on the "
    "time scale steps · (γ c_p)² / (d B)",
    "t = steps · (γ c_p)² / (d B)", r"t = \nu\,(\gamma c_p)^2 / (d B)")


def classify(kind: str, kappa: Fraction | None = None, delta: Fraction | None = None
             ) -> RegimeInfo:
    """The regime for a named kind, or for exponents (κ, δ) by the table of docs/theory.md, Regimes.

    Raises `NoOdeLimit` with the reason when −δ ≥ (κ + 1)/2.
    """
    if kind == "gradient_flow":
        return GRADIENT_FLOW
    if kind == "high_dimensional":
        return HIGH_DIMENSIONAL
    if kind != "exponents":
        raise ValueError(f"unknown regime {kind}")
    kappa = Fraction(kappa or 0)
    delta = Fraction(delta or 0)
    if -delta >= (kappa + 1) / 2:
        raise NoOdeLimit(
            f"with κ = {kappa} and δ = {delta}, −δ ≥ (κ + 1)/2: the SGD noise grows faster than "
            "the number of steps per unit time and the dynamics has no ODE limit")
    if kappa + delta > 0:
        return GRADIENT_FLOW
    if kappa + delta == 0:
        return HIGH_DIMENSIONAL
    return NOISE_DOMINATED
