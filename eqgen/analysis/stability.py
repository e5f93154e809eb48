"""Linear stability of the perfect-learning fixed point and the largest stable learning rate.

At the perfect-learning point the student is the teacher (p = k, Q = M = P, a = a*): the error
𝓔 vanishes identically, so without label noise (Δ = 0) every term of the ODEs vanishes and the
point is fixed at any learning rate γ. Near it the risk is *linear* in the distance (ε ∝
E[(λ − ν)²] ∝ Q − 2M + P), so the SGD variance term γ c_p/B · E[𝓔² σ'σ'] has a non-zero
linearisation proportional to γ: the Jacobian is J(γ) = A + γ B with A the gradient-flow part.

- The slowest decay rate of the overlaps is −max Re λ(J(γ)) (in the model's time unit); the
  risk, linear in the overlaps there, decays at the same rate.
- η_max is the smallest γ > 0 where max Re λ(J(γ)) crosses 0: found by scanning a geometric
  grid for the first sign change, then Brent's method on max Re λ(γ) (continuous in γ) to
  relative accuracy 1e-12. Jacobians are recomputed at each γ (no affine assumption).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from eqgen.analysis.system import CommitteeSystem, learning_rate_parameter
from eqgen.errors import UsageError

RATE_GRID = np.geomspace(1e-3, 1e4, 141)  # scanned for the first loss of stability, × γ scale


@dataclass
class PerfectLearningStability:
    """Linear stability of the perfect-learning point at one parameter set."""

    rate_name: str
    rate: float  # the learning rate at which `slowest_decay` and `eigenvalues` are given
    slowest_decay: float  # −max Re λ at `rate` (negative: unstable)
    eigenvalues: np.ndarray
    eta_max: float | None  # None: stable over the whole scanned range
    gradient_flow_decay: float  # −max Re λ at rate 0
    params: dict[str, float]

    @property
    def stable(self) -> bool:
        return self.slowest_decay > 0

    def to_dict(self) -> dict[str, Any]:
        return {"rate_name": self.rate_name, "rate": self.rate,
                "slowest_decay": self.slowest_decay, "stable": self.stable,
                "eta_max": self.eta_max, "gradient_flow_decay": self.gradient_flow_decay,
                "parameters": self.params,
                "eigenvalues": [[float(e.real), float(e.imag)] for e in self.eigenvalues]}


def perfect_learning_state(system: CommitteeSystem) -> dict[str, np.ndarray]:
    """Q = M = P (and a = a* when the second layer is trained)."""
    r = system.resolved
    if r.p != r.k:
        raise UsageError(f"the perfect-learning point needs as many student as teacher units "
                         f"(here p = {r.p}, k = {r.k}); use --set p=K --set k=K")
    P = np.asarray(system.constants.get("P", r.init["P"]), dtype=float)
    state = {"Q": P.copy(), "M": P.copy()}
    if "a" in system.coords.evolving:
        state["a"] = np.asarray(system.constants.get("a_star", r.init["a_star"]), dtype=float)
    elif not np.allclose(system.constants["a"], system.constants["a_star"]):
        raise UsageError("the perfect-learning point needs the student's fixed second layer to "
                         "equal the teacher's (a = a*)")
    return state


def max_real_part(system: CommitteeSystem, x: np.ndarray, rate: float) -> float:
    """Largest real part of the Jacobian's eigenvalues at x with the learning rate `rate`."""
    J = system.jacobian(x, system.with_params(**{system.rate_name: rate}))
    return float(np.linalg.eigvals(J).real.max())


def perfect_learning_stability(model: Any, params: Mapping[str, float] | None = None,
                               rate_name: str | None = None,
                               xtol: float = 1e-12) -> PerfectLearningStability:
    """Slowest decay rate at the model's learning rate and η_max (module docstring).

    **Arguments**
    - `params`: overrides (p and k must be equal; Δ must be 0).
    - `rate_name`: the parameter to treat as the learning rate (default: the one the spec's
      `sgd learning_rate` is made of).
    """
    from scipy.optimize import brentq

    system = CommitteeSystem.build(model, params)
    name = rate_name or learning_rate_parameter(model)
    if name not in system.params:
        raise UsageError(f"unknown parameter '{name}'; this model has "
                         + ", ".join(system.params))
    system.rate_name = name
    x = system.point(perfect_learning_state(system))
    res = float(np.abs(system.field(x)).max())
    if not res <= 1e-10:
        raise UsageError(f"the perfect-learning point is not a fixed point here (|dx/dt| = "
                         f"{res:.2e}); it is one only without label noise: --set Delta=0")
    rate = system.params[name]
    J = system.jacobian(x)
    ev = np.linalg.eigvals(J)
    ev = ev[np.argsort(-ev.real, kind="stable")]
    g0 = max_real_part(system, x, 0.0)
    eta_max = None
    if g0 < 0:
        grid = RATE_GRID * max(1.0, abs(rate))
        prev = 0.0
        for hi in grid:
            if max_real_part(system, x, float(hi)) > 0:
                eta_max = float(brentq(lambda g: max_real_part(system, x, g), prev, float(hi),
                                       xtol=xtol * hi, rtol=4 * np.finfo(float).eps))
                break
            prev = float(hi)
    else:
        eta_max = 0.0
    return PerfectLearningStability(name, float(rate), float(-ev.real.max()), ev, eta_max,
                                    float(-g0), dict(system.params))
