"""Linear stability of the perfect-learning fixed point, the decay rate of the risk there, and
the largest stable learning rate.

At the perfect-learning point the student is the teacher (p = k, Q = M = P, a = a*): the error
𝓔 vanishes identically, so without label noise (Δ = 0) every term of the ODEs vanishes and the
point is fixed at any learning rate γ. Near it the risk is *linear* in the deviation of the
overlaps (ε ∝ E[(λ − ν)²] ∝ Q − 2M + P), so the SGD variance term γ c_p/B · E[𝓔² σ'σ'] has a
non-zero linearisation proportional to γ: the Jacobian is J(γ) = A + γ B with A the
gradient-flow part.

- `slowest_decay` = −max Re λ(J(γ)): the rate at which the overlaps approach the point (in
  the model's time unit).
- `risk_decay`: the rate at which the excess risk decays, which is *not* `slowest_decay` in
  general. Write the deviation as δ(t) = Σ_i c_i v_i e^{λ_i t} + (second-order terms). The risk
  is ε ≈ g·δ + ½ δᵀHδ (g, H its gradient and Hessian at the point), so a mode with g·v_i ≠ 0
  shows in ε at rate −Re λ_i, while a mode with g·v_i = 0 shows only at second order, at twice
  its rate: through ½ vᵢᵀHvⱼ and through the part of the field quadratic in δ, which drives the
  other modes at the rate −Re(λ_i + λ_j) (w_ij = ((λ_i + λ_j) − J)⁻¹ s F''[v_i, v_j], s = ½
  for i = j and 1 otherwise, adds g·w_ij). `risk_decay` is the smallest of these rates whose
  coefficient is not zero. For Saad–Solla units the slowest mode (rate independent of η)
  leaves the risk unchanged to first order, so the risk decays at min(rate of the first
  η-dependent mode, 2 × slowest_decay): K = 1 at η = 0.5 gives 2 × 0.1225, K = 2 at η = 2 the
  first-order mode's 0.0701, K = 2 at η = 0.5 2 × 0.0442 (tests/test_analysis.py fits each on
  a solved curve).
- `risk_decay_first_order`: the smallest rate among the modes with g·v_i ≠ 0 alone. A
  second-order term is smaller than the first-order ones by a factor of the initial distance,
  so where the two differ a curve started close to the teacher shows this rate until that
  factor has been made up: at K = 2, η = 0.5 the risk falls at 0.0950 down to round-off,
  while its asymptotic rate, 2 × 0.0442 = 0.0884, would show only later.
- η_max is the smallest γ > 0 where max Re λ(J(γ)) crosses 0: found by scanning a geometric
  grid for the first sign change, then Brent's method on max Re λ(γ) (continuous in γ) to
  relative accuracy 1e-12. Jacobians are recomputed at each γ (no affine assumption).

Neutral directions: where the network is unchanged along a continuous family of perfect-learning
points — σ = z², whose output xᵀWᵀWx/p does not change when the student's units are rotated
among themselves (M = O for any orthogonal O at P = I) — the Jacobian has exact zero
eigenvalues at every γ, which round-off turns into ±1e-16 and a spurious "unstable at any γ".
Their common null space N (of J at γ = 0, at the model's γ and at a third γ) is split off:
J is block triangular in a basis [N, C], so its other eigenvalues are those of CᵀJC, and
`slowest_decay`, `risk_decay` and η_max are computed from those, with a note naming how many
directions were left out.

ReLU units: at the perfect point every student unit is aligned with a teacher unit, a
square-root branch point of each closed form. In the ODEs' combinations the singular parts
cancel, the field is once but not twice differentiable there (eqgen.analysis.system), and its
Jacobian — checked against one-sided difference quotients — gives the decay rates and η_max;
`risk_decay`, a second-order quantity, is left out (None, with a note). Where the check fails
(a kink), or the Jacobian is not finite, `NotDifferentiableError` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from eqgen.analysis.system import CommitteeSystem, learning_rate_parameter, linear_algebra
from eqgen.errors import UsageError

RATE_GRID = np.geomspace(1e-3, 1e4, 141)  # scanned for the first loss of stability, × γ scale
COEFF_TOL = 1e-8  # a mode's coefficient in the risk below this × its scale counts as zero
RESONANCE_TOL = 1e-12  # (λ_i + λ_j) − J this close to singular: a resonance
NEUTRAL_TOL = 1e-9  # a singular value of the stacked Jacobians below this × the largest: null


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
    risk_decay: float | None = None  # asymptotic decay rate of the excess risk at `rate`
    risk_decay_first_order: float | None = None  # ... of its first-order part alone
    notes: tuple[str, ...] = ()  # what was left out, and why

    @property
    def stable(self) -> bool:
        return self.slowest_decay > 0

    def to_dict(self) -> dict[str, Any]:
        return {"rate_name": self.rate_name, "rate": self.rate,
                "slowest_decay": self.slowest_decay, "risk_decay": self.risk_decay,
                "risk_decay_first_order": self.risk_decay_first_order,
                "stable": self.stable, "eta_max": self.eta_max,
                "gradient_flow_decay": self.gradient_flow_decay, "parameters": self.params,
                "eigenvalues": [[float(e.real), float(e.imag)] for e in self.eigenvalues],
                "notes": list(self.notes)}


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


def jacobian_at_rate(system: CommitteeSystem, x: np.ndarray, rate: float) -> np.ndarray:
    """The Jacobian at x with the learning rate `rate`."""
    return system.checked_jacobian(x, system.with_params(**{system.rate_name: rate}),
                                   "at the perfect-learning point", one_sided=False)


def max_real_part(system: CommitteeSystem, x: np.ndarray, rate: float,
                  complement: np.ndarray | None = None) -> float:
    """Largest real part of the Jacobian's eigenvalues at x with the learning rate `rate`;
    with `complement` (C, orthonormal columns), of CᵀJC: the neutral directions left out."""
    J = jacobian_at_rate(system, x, rate)
    if complement is not None:
        J = complement.T @ J @ complement
    with linear_algebra(f"computing the eigenvalues at {system.rate_name} = {rate:g}"):
        return float(np.linalg.eigvals(J).real.max())


def neutral_split(jacobians: list[np.ndarray]) -> tuple[int, np.ndarray | None]:
    """(dimension of the common null space of `jacobians`, an orthonormal basis C of its
    orthogonal complement as columns; None where the null space is empty)."""
    with linear_algebra("splitting off the neutral directions"):
        _, sv, vt = np.linalg.svd(np.vstack(jacobians))
    n = vt.shape[0]
    rank = int(np.sum(sv > NEUTRAL_TOL * max(float(sv[0]), 1e-300))) if sv.size else 0
    if rank >= n:
        return 0, None
    return n - rank, vt[:rank].T


def risk_decay_rates(system: CommitteeSystem, x: np.ndarray, J: np.ndarray,
                     second_order: bool = True, neutral: int = 0
                     ) -> tuple[float | None, float | None]:
    """(asymptotic, first-order) decay rates of the excess risk near the fixed point x
    (module docstring): the smallest −Re λ_i over the modes with g·v_i ≠ 0, and of those and
    −Re(λ_i + λ_j) over the pairs whose second-order coefficient is not zero; None where
    there is none, and the asymptotic one None without `second_order`. The `neutral` modes
    (the eigenvalues nearest zero; module docstring) move along the family of perfect points
    and are left out."""
    g, H = system.observable_derivatives(x, "excess_risk")
    with linear_algebra("computing the eigenvectors at the perfect-learning point"):
        lam, V = np.linalg.eig(J)
    V = V / np.linalg.norm(V, axis=0)
    g_norm = float(np.linalg.norm(g))
    skip = set(np.argsort(np.abs(lam), kind="stable")[:neutral].tolist())
    rates = [-lam[i].real for i in range(lam.size)
             if i not in skip and abs(g @ V[:, i]) > COEFF_TOL * max(g_norm, 1e-300)]
    first_order = float(min(rates)) if rates else None
    if not second_order:
        return None, first_order
    F2 = system.hessian(x)  # [a, j, k] = ∂²F_a/∂x_j∂x_k
    h_norm = float(np.linalg.norm(H, 2))
    n = lam.size
    for i in range(n):
        for j in range(i, n):
            if i in skip or j in skip:
                continue
            rate = -(lam[i] + lam[j]).real
            if rates and rate >= min(rates):
                continue  # cannot be the slowest
            if _second_order_coefficient_nonzero(J, F2, g, H, g_norm, h_norm, lam, V, i, j):
                rates.append(rate)
    return (float(min(rates)) if rates else None), first_order


def _second_order_coefficient_nonzero(J: np.ndarray, F2: np.ndarray, g: np.ndarray,
                                      H: np.ndarray, g_norm: float, h_norm: float,
                                      lam: np.ndarray, V: np.ndarray, i: int, j: int) -> bool:
    """Whether e^{(λ_i + λ_j) t} has a non-zero coefficient in the risk: g·w_ij + s vᵢᵀHvⱼ
    with w_ij = ((λ_i + λ_j) − J)⁻¹ s F''[v_i, v_j] (module docstring)."""
    s = 0.5 if i == j else 1.0
    forcing = s * np.einsum("ajk,j,k->a", F2, V[:, i], V[:, j])
    A = (lam[i] + lam[j]) * np.eye(lam.size) - J
    sv = np.linalg.svd(A, compute_uv=False)
    if sv[-1] <= RESONANCE_TOL * sv[0] and np.linalg.norm(forcing) > 0:
        return True  # resonant forcing: a t·e^{(λ_i + λ_j) t} term
    w = np.linalg.solve(A, forcing)
    coeff = g @ w + s * (V[:, i] @ H @ V[:, j])
    scale = g_norm * float(np.linalg.norm(w)) + s * h_norm
    return bool(abs(coeff) > COEFF_TOL * scale) if scale > 0 else False


def perfect_learning_stability(model: Any, params: Mapping[str, float] | None = None,
                               rate_name: str | None = None,
                               xtol: float = 1e-12) -> PerfectLearningStability:
    """Slowest decay rate, risk decay rate at the model's learning rate and η_max (module
    docstring).

    **Arguments**
    - `params`: overrides (p and k must be equal; Δ must be 0).
    - `rate_name`: the parameter to treat as the learning rate (default: the one the spec's
      `sgd learning_rate` is made of).

    Raises `NotDifferentiableError` (a `NumericalError`) where the field has no Jacobian at
    the point.
    """
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
    J = system.checked_jacobian(x, where="at the perfect-learning point")
    with linear_algebra("computing the eigenvalues at the perfect-learning point"):
        ev = np.linalg.eigvals(J)
    ev = ev[np.argsort(-ev.real, kind="stable")]
    neutral, complement = neutral_split([jacobian_at_rate(system, x, 0.0), J,
                                         jacobian_at_rate(system, x, 2.0 * abs(rate) + 1.0)])
    if complement is not None:
        with linear_algebra("computing the eigenvalues at the perfect-learning point"):
            slowest = float(-np.linalg.eigvals(complement.T @ J @ complement).real.max())
    else:
        slowest = float(-ev.real.max())
    g0 = max_real_part(system, x, 0.0, complement)
    smooth = system.twice_differentiable(x)
    risk, risk_first = risk_decay_rates(system, x, J, second_order=smooth, neutral=neutral)
    notes: tuple[str, ...] = () if smooth else (
        "the field is differentiable but not twice differentiable at the perfect-learning "
        "point (" + ", ".join(system.aligned_units(x)) + "): risk_decay, which needs second "
        "derivatives, is not given",)
    if neutral:
        notes += (f"{neutral} neutral direction{'s' if neutral > 1 else ''} (zero eigenvalue"
                  f"{'s' if neutral > 1 else ''} at every learning rate): the perfect-learning "
                  "point lies on a continuous family of them along which the network does not "
                  "change (for σ = z², rotations of the student's units); slowest_decay, "
                  "risk_decay and eta_max are computed from the other modes",)
    return PerfectLearningStability(name, float(rate), slowest, ev,
                                    _eta_max(system, x, rate, g0, xtol, complement),
                                    float(-g0), dict(system.params), risk, risk_first, notes)


def _eta_max(system: CommitteeSystem, x: np.ndarray, rate: float, g0: float,
             xtol: float, complement: np.ndarray | None = None) -> float | None:
    """The smallest γ > 0 with max Re λ(J(γ)) = 0 (0 if unstable at γ → 0, None if stable on
    the whole scanned grid)."""
    from scipy.optimize import brentq

    if g0 >= 0:
        return 0.0
    prev = 0.0
    for hi in RATE_GRID * max(1.0, abs(rate)):
        if max_real_part(system, x, float(hi), complement) > 0:
            return float(brentq(lambda gm: max_real_part(system, x, gm, complement), prev,
                                float(hi),
                                xtol=xtol * hi, rtol=4 * np.finfo(float).eps))
        prev = float(hi)
    return None
