"""Checks of a committee spec that need no derivation (pure Python, no sympy): the regime has
an ODE limit, and a non-square loss's joint quadrature grid is affordable."""

from __future__ import annotations

import numpy as np

from eqgen.errors import SpecError
from eqgen.spec.committee import CommitteeSpec
from eqgen.theories.regimes import NoOdeLimit, RegimeInfo, classify

# Nodes per dimension, and the largest grid, for the joint expectation of non-square losses.
JOINT_ORDER = 16
JOINT_MAX_NODES = 2_000_000  # 16^5: p + k ≤ 4


def regime_of(spec: CommitteeSpec) -> RegimeInfo:
    """The spec's regime, or `SpecError` (with the reason) when no ODE limit exists."""
    r = spec.regime
    try:
        return classify(r.kind, r.kappa, r.delta)
    except NoOdeLimit as e:
        raise SpecError(spec.diagnostic(str(e), r.pos,
                                        "choose exponents with −δ < (κ + 1)/2")) from None


def joint_nodes(p: int, k: int) -> int:
    """Quadrature nodes of the joint (λ, ν, ξ) grid used for non-square losses."""
    return JOINT_ORDER ** (p + k + 1)


def check_joint_size(spec: CommitteeSpec, p: int, k: int) -> None:
    """Refuse non-square losses whose joint quadrature grid would be too large."""
    if spec.loss is None:
        return
    n = joint_nodes(p, k)
    if n > JOINT_MAX_NODES:
        raise SpecError(spec.diagnostic(
            f"a non-square loss needs a joint quadrature over p + k + 1 = {p + k + 1} "
            f"Gaussian fields: {JOINT_ORDER}^{p + k + 1} = {n:.3g} nodes per evaluation "
            f"(limit {JOINT_MAX_NODES:.0e})", spec.loss.pos,
            f"use p + k ≤ {int(np.log(JOINT_MAX_NODES) / np.log(JOINT_ORDER)) - 1}, "
            "or the square loss (exact index-form ODE for any p, k)"))
