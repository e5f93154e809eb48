"""Helpers for the DMFT tests: small `DmftProblem`s and the square-loss closed form (docs/dmft.md).

Square loss, teacher–student GLM with y = a (Δ = 1), full batch: the dynamics is linear in w, so
every overlap is an integral over the spectrum of Σ = XᵀX/d, which for n = αd is Marchenko–Pastur
of ratio α: density √((λ₊ − s)(s − λ₋))/(2πs) on [λ₋, λ₊] = [(√α − 1)², (√α + 1)²], of mass
min(α, 1), plus an atom of mass 1 − α at s = 0 when α < 1.
"""

from __future__ import annotations

import math
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from eqgen.runtime.dmft_problem import DmftProblem


@lru_cache(maxsize=16)
def mp_quadrature(alpha: float, nodes: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Nodes s_i and weights w_i with Σ w_i F(s_i) ≈ ∫ F dμ_MP(α), the atom at 0 included.

    The density has a 1/s that is singular at α = 1 and nearly so close to it, so write
    ∫ F p ds = F(0) μ_c + ∫ G(s) √((λ₊ − s)(s − λ₋))/(2π) ds with G(s) = (F(s) − F(0))/s and
    μ_c = min(α, 1) the mass of the continuous part. The second integral has a semicircle weight:
    with s = (1 + α) + 2√α x it is Gauss–Chebyshev of the second kind, whose nodes and weights are
    in closed form, exact for polynomial G of degree < 2·nodes. Collecting the terms gives one
    rule with an extra node at s = 0 (weight μ_c − Σ ω_i/s_i, plus the atom 1 − α when α < 1).
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    theta = np.arange(1, nodes + 1) * math.pi / (nodes + 1)
    half = 2.0 * math.sqrt(alpha)  # (λ₊ − λ₋)/2
    s = (1.0 + alpha) + half * np.cos(theta)
    omega = half**2 / (2.0 * math.pi) * math.pi / (nodes + 1) * np.sin(theta) ** 2
    continuous_mass = min(alpha, 1.0)
    w = omega / s
    w0 = continuous_mass - w.sum() + max(1.0 - alpha, 0.0)
    return np.concatenate([[0.0], s]), np.concatenate([[w0], w])


def mp_closed_form(alpha: float, lam: float, eta: float, m0: float, q0: float, k_steps: int,
                   gd: bool = True, nodes: int = 2000) -> dict[str, np.ndarray]:
    """Square loss, y = a, full batch, ridge λ: the exact d → ∞ overlaps (docs/dmft.md, the
    square-loss closed form).

    Decay e_k(s) = (1 − η(λ + s))^k (GD with step η) or e^{−(λ+s) t_k} (gradient flow, t_k = kη);
    f = m₀ e + s/(λ + s) (1 − e).

    **Returns** a dict with `t` (K+1,), `m` = ∫ f, `Q` = ∫ (f² + q₀ e²), `train_loss` =
    (1/2α) ∫ s[(f − 1)² + q₀ e²], `test_loss` = (1 − 2m + Q)/2, `R` = ∫ e (the response R(t_k, 0),
    which for this time-invariant problem is also R(t_j + t_k, t_j)), `C` (K+1, K+1) =
    ∫ (f_k f_j + q₀ e_k e_j) and `C_perp` = C − m mᵀ.
    """
    s, w = mp_quadrature(float(alpha), nodes)
    k = np.arange(k_steps + 1)
    t = eta * k
    if gd:
        e = (1.0 - eta * (lam + s))[None, :] ** k[:, None]
    else:
        e = np.exp(-(lam + s)[None, :] * t[:, None])
    denom = lam + s
    gain = np.divide(s, denom, out=np.zeros_like(s), where=denom > 0)  # s/(λ+s); 0 at s = λ = 0
    f = m0 * e + gain[None, :] * (1.0 - e)
    m = f @ w
    C = (f * w) @ f.T + q0 * (e * w) @ e.T
    Q = np.diag(C).copy()
    train_loss = ((f - 1.0) ** 2 + q0 * e**2) @ (s * w) / (2.0 * alpha)
    return {"t": t, "m": m, "Q": Q, "train_loss": train_loss,
            "test_loss": (1.0 - 2.0 * m + Q) / 2.0, "R": e @ w, "C": C,
            "C_perp": C - np.outer(m, m)}


def square_glm_problem(alpha: float = 2.0, lam: float = 0.1, eta: float = 0.1, steps: int = 30,
                       m0: float = 0.2, q0: float = 0.5, b: float = 1.0,
                       tau: float | None = None) -> DmftProblem:
    """Teacher–student GLM, y = a (identity target), loss (y − h)²/2, ridge λ (docs/dmft.md,
    the square-loss closed form)."""
    return DmftProblem(
        data="glm", cluster_values=(0.0,), cluster_probs=(1.0,), cluster_labels=(0.0,),
        alpha=alpha, Delta=1.0, lam=lam, eta=eta, b=b, tau=eta / b if tau is None else tau,
        kappa=1.0, m0=m0, q0=q0, t_max=steps * eta,
        loss=lambda y, h: 0.5 * (y - h) ** 2,
        dloss=lambda y, h: h - y,
        d2loss=lambda y, h: jnp.ones_like(h),
        label=jnp.sign, target=lambda a: a,
    )


def logistic_two_cluster_problem(alpha: float = 3.0, Delta: float = 0.5, lam: float = 0.1,
                                 eta: float = 0.1, steps: int = 20, m0: float = 0.0,
                                 q0: float = 1.0, b: float = 1.0,
                                 tau: float | None = None) -> DmftProblem:
    """Two clusters c = ±1, label y = c, logistic loss log(1 + e^{−yh}) (docs/dmft.md, Setting)."""
    return DmftProblem(
        data="mixture", cluster_values=(-1.0, 1.0), cluster_probs=(0.5, 0.5),
        cluster_labels=(-1.0, 1.0), alpha=alpha, Delta=Delta, lam=lam, eta=eta, b=b,
        tau=eta / b if tau is None else tau, kappa=1.0, m0=m0, q0=q0, t_max=steps * eta,
        loss=lambda y, h: jnp.logaddexp(0.0, -y * h),
        dloss=lambda y, h: -y * jax.nn.sigmoid(-y * h),
        d2loss=lambda y, h: jax.nn.sigmoid(y * h) * jax.nn.sigmoid(-y * h),
        label=jnp.sign,
    )


def gaussian_mean(f, mean: float, var: float, order: int = 120) -> float:
    """E[f(u)], u ~ N(mean, var), by Gauss–Hermite quadrature (f vectorised over numpy arrays)."""
    x, w = np.polynomial.hermite_e.hermegauss(order)
    return float(np.asarray(f(mean + math.sqrt(var) * x)) @ (w / w.sum()))
