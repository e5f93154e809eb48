"""Hand-written numpy baseline for the two-layer online-SGD ODEs (docs/theory.md).

This is the reference eqgen is measured against: what a careful researcher writes by hand.
Erf student and erf teacher (sigma = g = erf(z/sqrt 2)), square loss, full high-dimensional
regime (gradient-flow part plus the SGD variance term). The right-hand side is vectorised with
numpy broadcasting over unit indices and uses the closed forms of docs/numerics.md, The
expectation engine directly: no Python loops over units, but also no use of symmetries and no
hoisted subexpressions.

Conventions (docs/theory.md, Setting and Index form for the square loss): Omega =
[[Q, M], [M^T, P]] over the p + k units (students first), u = (-c_p a, c_k a_star), the error
E = sum_c u_c phi(h_c) + sqrt(Delta) xi, and

    dM_jr = a_j sum_c u_c I3(j, r, c)
    dQ_jl = a_j sum_c u_c I3(j, l, c) + a_l sum_c u_c I3(l, j, c)
            + (gamma c_p / B) a_j a_l [sum_{c,e} u_c u_e I4(j, l, c, e) + Delta J2(j, l)]
    excess risk = 1/2 u^T I2 u.

Run as a script (``.venv/bin/python benchmarks/baseline_numpy.py``) for the self-checks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.integrate import solve_ivp

Array = NDArray[np.float64]

TWO_OVER_PI = 2.0 / math.pi
FOUR_OVER_PI2 = 4.0 / math.pi**2


# ---------------------------------------------------------------------------------------------
# Closed-form Gaussian expectations for erf units (docs/numerics.md, The expectation engine),
# as full tensors.
# ---------------------------------------------------------------------------------------------


def overlap_matrix(Q: Array, M: Array, P: Array) -> Array:
    """Covariance Omega = [[Q, M], [M^T, P]] of the fields (lambda, nu), students first."""
    return np.block([[Q, M], [M.T, P]])


def readout_vector(a: Array, a_star: Array, c_p: float, c_k: float) -> Array:
    """Coefficients u = (-c_p a, c_k a_star) of the square-loss error in the unit activations."""
    return np.concatenate([-c_p * np.asarray(a, float), c_k * np.asarray(a_star, float)])


def erf_I2(Omega: Array) -> Array:
    """I2(c, e) = E[sigma(h_c) sigma(h_e)] for all unit pairs, shape (n, n)."""
    d1 = 1.0 + np.diag(Omega)
    return TWO_OVER_PI * np.arcsin(Omega / np.sqrt(d1[:, None] * d1[None, :]))


def erf_I3(Omega: Array, p: int) -> Array:
    """I3(j, b, c) = E[sigma'(h_j) h_b sigma(h_c)], j a student unit; shape (p, n, n)."""
    d1 = 1.0 + np.diag(Omega)
    C11 = d1[:p, None, None] - 1.0  # Omega_jj
    C12 = Omega[:p, :, None]  # Omega_jb
    C13 = Omega[:p, None, :]  # Omega_jc
    C23 = Omega[None, :, :]  # Omega_bc
    C33 = d1[None, None, :] - 1.0  # Omega_cc
    num = C23 * (1.0 + C11) - C12 * C13
    den = (1.0 + C11) * np.sqrt((1.0 + C11) * (1.0 + C33) - C13**2)
    return TWO_OVER_PI * num / den


def erf_J2(Omega: Array, p: int) -> Array:
    """J2(j, l) = E[sigma'(lambda_j) sigma'(lambda_l)] over student pairs, shape (p, p)."""
    C11 = np.diag(Omega)[:p, None]
    C22 = np.diag(Omega)[None, :p]
    C12 = Omega[:p, :p]
    return TWO_OVER_PI / np.sqrt((1.0 + C11) * (1.0 + C22) - C12**2)


def erf_I4(Omega: Array, p: int) -> Array:
    """I4(j, l, c, e) = E[sigma'(h_j) sigma'(h_l) sigma(h_c) sigma(h_e)], shape (p, p, n, n).

    Axes are (j, l, c, e); each covariance entry C_ab of docs/numerics.md, The expectation engine is
    broadcast from Omega.
    """
    diag = np.diag(Omega)
    S = Omega[:p, :]  # student rows: Omega_{j, .}
    C11 = diag[:p, None, None, None]
    C22 = diag[None, :p, None, None]
    C33 = diag[None, None, :, None]
    C44 = diag[None, None, None, :]
    C12 = Omega[:p, :p][:, :, None, None]
    C13 = S[:, None, :, None]
    C14 = S[:, None, None, :]
    C23 = S[None, :, :, None]
    C24 = S[None, :, None, :]
    C34 = Omega[None, None, :, :]
    L4 = (1.0 + C11) * (1.0 + C22) - C12**2
    L0 = (
        L4 * C34
        - C23 * C24 * (1.0 + C11)
        - C13 * C14 * (1.0 + C22)
        + C12 * C13 * C24
        + C12 * C14 * C23
    )
    L1 = L4 * (1.0 + C33) - C23**2 * (1.0 + C11) - C13**2 * (1.0 + C22) + 2.0 * C12 * C13 * C23
    L2 = L4 * (1.0 + C44) - C24**2 * (1.0 + C11) - C14**2 * (1.0 + C22) + 2.0 * C12 * C14 * C24
    return FOUR_OVER_PI2 / np.sqrt(L4) * np.arcsin(L0 / np.sqrt(L1 * L2))


# ---------------------------------------------------------------------------------------------
# The ODE right-hand side and the excess risk.
# ---------------------------------------------------------------------------------------------


def committee_erf_rhs(
    Q: Array,
    M: Array,
    P: Array,
    a: Array,
    a_star: Array,
    c_p: float,
    c_k: float,
    gamma_cp_over_B: float,
    Delta: float,
) -> tuple[Array, Array]:
    """(dQ/dt, dM/dt) of docs/theory.md, The ODEs for erf/erf, square loss, high-dimensional regime.

    gamma_cp_over_B = 0 gives pure population gradient flow (variance term dropped).
    """
    p = Q.shape[0]
    Omega = overlap_matrix(Q, M, P)
    u = readout_vector(a, a_star, c_p, c_k)
    # E[E sigma'(lambda_j) h_b] = sum_c u_c I3(j, b, c); the label noise has mean zero.
    E3 = erf_I3(Omega, p) @ u  # (p, n)
    dM = a[:, None] * E3[:, p:]
    G = a[:, None] * E3[:, :p]
    # E[E^2 sigma'(lambda_j) sigma'(lambda_l)] = sum_{c,e} u_c u_e I4(j,l,c,e) + Delta J2(j,l).
    E4 = erf_I4(Omega, p) @ u @ u + Delta * erf_J2(Omega, p)
    dQ = G + G.T + gamma_cp_over_B * np.outer(a, a) * E4
    return dQ, dM


def excess_risk(
    Q: Array, M: Array, P: Array, a: Array, a_star: Array, c_p: float, c_k: float
) -> float:
    """Excess population risk 1/2 u^T I2 u (the full risk adds Delta/2)."""
    u = readout_vector(a, a_star, c_p, c_k)
    return float(0.5 * u @ erf_I2(overlap_matrix(Q, M, P)) @ u)


# ---------------------------------------------------------------------------------------------
# Integrators.
# ---------------------------------------------------------------------------------------------


@dataclass
class Trajectory:
    """Solution on the save grid, plus the cost of obtaining it."""

    t: Array
    Q: Array  # (T, p, p)
    M: Array  # (T, p, k)
    risk: Array  # (T,) excess risk
    nfev: int
    wall_s: float
    info: dict[str, object] = field(default_factory=dict)


def _pack(Q: Array, M: Array) -> Array:
    """Flatten (Q, M) into one state vector (full Q: symmetry is not exploited)."""
    return np.concatenate([Q.ravel(), M.ravel()])


def _unpack(y: Array, p: int, k: int) -> tuple[Array, Array]:
    """Inverse of _pack."""
    return y[: p * p].reshape(p, p), y[p * p :].reshape(p, k)


def _risks(
    Qs: Array, Ms: Array, P: Array, a: Array, a_star: Array, c_p: float, c_k: float
) -> Array:
    """Excess risk at every saved state."""
    return np.array(
        [excess_risk(Q, M, P, a, a_star, c_p, c_k) for Q, M in zip(Qs, Ms, strict=True)]
    )


def solve_dop853(
    Q0: ArrayLike,
    M0: ArrayLike,
    P: ArrayLike,
    a: ArrayLike,
    a_star: ArrayLike,
    c_p: float,
    c_k: float,
    gamma_cp_over_B: float,
    Delta: float,
    t_max: float,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    save_at: Sequence[float] | None = None,
) -> Trajectory:
    """Integrate with scipy's adaptive 8th-order DOP853 on the flattened state.

    save_at are output times (default: 0 and t_max); nfev is scipy's count of RHS calls,
    including the extra evaluations DOP853 spends on dense output at save points.
    """
    Q0, M0, P = (np.array(x, dtype=float) for x in (Q0, M0, P))
    a, a_star = np.asarray(a, float), np.asarray(a_star, float)
    p, k = M0.shape
    t_eval = np.array([0.0, t_max] if save_at is None else save_at, dtype=float)

    def f(_t: float, y: Array) -> Array:
        Q, M = _unpack(y, p, k)
        dQ, dM = committee_erf_rhs(Q, M, P, a, a_star, c_p, c_k, gamma_cp_over_B, Delta)
        return _pack(dQ, dM)

    t0 = time.perf_counter()
    sol = solve_ivp(
        f, (0.0, t_max), _pack(Q0, M0), method="DOP853", t_eval=t_eval, rtol=rtol, atol=atol
    )
    wall = time.perf_counter() - t0
    if not sol.success:
        raise RuntimeError(f"DOP853 failed: {sol.message}")
    Qs = sol.y[: p * p].T.reshape(-1, p, p)
    Ms = sol.y[p * p :].T.reshape(-1, p, k)
    risk = _risks(Qs, Ms, P, a, a_star, c_p, c_k)
    return Trajectory(sol.t, Qs, Ms, risk, int(sol.nfev), wall, {"message": sol.message})


def solve_euler(
    Q0: ArrayLike,
    M0: ArrayLike,
    P: ArrayLike,
    a: ArrayLike,
    a_star: ArrayLike,
    c_p: float,
    c_k: float,
    gamma_cp_over_B: float,
    Delta: float,
    t_max: float,
    dt: float = 1e-3,
    save_at: Sequence[float] | None = None,
    max_wall_s: float | None = None,
    max_steps: int | None = None,
) -> Trajectory:
    """Fixed-step forward Euler, a Python loop over steps as in published research codes.

    With max_wall_s / max_steps the loop stops early; the cost of the full run to t_max is then
    EXTRAPOLATED linearly from the measured steps (info["extrapolated"] is True, and
    info["wall_s_total_extrapolated"] holds the estimate). Saved points beyond the stopping time
    are not produced; the last row is the state at info["t_reached"].
    """
    Q, M, P = (np.array(x, dtype=float) for x in (Q0, M0, P))
    a, a_star = np.asarray(a, float), np.asarray(a_star, float)
    n_total = int(round(t_max / dt))
    save = [0.0, t_max] if save_at is None else list(save_at)
    save_steps = sorted({int(round(s / dt)) for s in save})
    limit = n_total if max_steps is None else min(n_total, max_steps)
    ts: list[float] = []
    Qs: list[Array] = []
    Ms: list[Array] = []
    si = 0
    n = 0
    t0 = time.perf_counter()
    while n < limit:
        while si < len(save_steps) and save_steps[si] == n:
            ts.append(n * dt)
            Qs.append(Q.copy())
            Ms.append(M.copy())
            si += 1
        dQ, dM = committee_erf_rhs(Q, M, P, a, a_star, c_p, c_k, gamma_cp_over_B, Delta)
        Q = Q + dt * dQ
        M = M + dt * dM
        n += 1
        if max_wall_s is not None and n % 256 == 0 and time.perf_counter() - t0 > max_wall_s:
            break
    wall = time.perf_counter() - t0
    if not ts or ts[-1] != n * dt:
        ts.append(n * dt)
        Qs.append(Q.copy())
        Ms.append(M.copy())
    risk = _risks(np.array(Qs), np.array(Ms), P, a, a_star, c_p, c_k)
    extrapolated = n < n_total
    info: dict[str, object] = {
        "dt": dt,
        "steps_done": n,
        "steps_total": n_total,
        "t_reached": n * dt,
        "extrapolated": extrapolated,
        "wall_s_measured": wall,
        "wall_s_total_extrapolated": wall * n_total / max(n, 1),
    }
    return Trajectory(np.array(ts), np.array(Qs), np.array(Ms), risk, n, wall, info)


# ---------------------------------------------------------------------------------------------
# Self-checks (docs/theory.md, Facts the implementation is tested against, and Monte Carlo).
# ---------------------------------------------------------------------------------------------


def _mc_moments(
    Omega: Array,
    p: int,
    a: Array,
    u: Array,
    g: float,
    Delta: float,
    n_samples: int,
    seed: int,
    chunk: int = 250_000,
) -> dict[str, tuple[Array, Array]]:
    """Monte Carlo (mean, standard error) of the ODE expectations at covariance Omega."""
    from scipy.special import erf

    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(Omega)
    n_units = Omega.shape[0]
    sums: dict[str, Array] = {}
    sq: dict[str, Array] = {}
    done = 0
    while done < n_samples:
        m = min(chunk, n_samples - done)
        h = rng.standard_normal((m, n_units)) @ L.T
        xi = rng.standard_normal(m)
        act = erf(h / math.sqrt(2.0))
        err = act @ u + math.sqrt(Delta) * xi  # E = y - f
        lam, nu = h[:, :p], h[:, p:]
        sp = math.sqrt(2.0 / math.pi) * np.exp(-0.5 * lam**2)  # sigma'(lambda)
        ge = (err[:, None] * sp)[:, :, None]  # E sigma'(lambda_j)
        e4 = err[:, None, None] ** 2 * sp[:, :, None] * sp[:, None, :]
        gq = a[None, :, None] * ge * lam[:, None, :]
        samples = {
            "E4": e4,  # E[E^2 sigma'_j sigma'_l]
            "dM": a[None, :, None] * ge * nu[:, None, :],
            "dQ": gq + gq.transpose(0, 2, 1) + g * np.outer(a, a)[None] * e4,
            "risk": 0.5 * (act @ u) ** 2,
        }
        for key, v in samples.items():
            sums[key] = sums.get(key, 0.0) + v.sum(axis=0)
            sq[key] = sq.get(key, 0.0) + (v**2).sum(axis=0)
        done += m
    out = {}
    for key in sums:
        mean = sums[key] / n_samples
        var = sq[key] / n_samples - mean**2
        out[key] = (mean, np.sqrt(np.maximum(var, 0.0) / n_samples))
    return out


def check(verbose: bool = True, n_mc: int = 2_000_000) -> dict[str, float]:
    """Run the self-checks; raise AssertionError on failure, return the measured deviations."""
    res: dict[str, float] = {}

    def say(msg: str) -> None:
        if verbose:
            print(msg)

    # 1. R(Q = I, M = 0, P = I) = 1/(3K) for p = k = K, default readouts c = 1/K.
    for K in (1, 2, 3, 5, 10):
        eps = excess_risk(
            np.eye(K), np.zeros((K, K)), np.eye(K), np.ones(K), np.ones(K), 1 / K, 1 / K
        )
        dev = abs(eps - 1 / (3 * K))
        assert dev < 1e-14, (K, eps)
        res[f"risk_identity_K{K}"] = dev
    say("[ok] R(Q=I, M=0, P=I) = 1/(3K) for K in 1,2,3,5,10")

    # 2. Saad-Solla plateau: gradient-flow RHS vanishes, eps* = (K/pi)(pi/6 - K asin(1/2K)).
    for K in (2, 3, 4, 8):
        q = 1.0 / (2 * K - 1)
        Q = np.full((K, K), q)
        M = np.full((K, K), 1.0 / math.sqrt(K * (2 * K - 1)))
        one = np.ones(K)
        dQ, dM = committee_erf_rhs(Q, M, np.eye(K), one, one, 1.0, 1.0, 0.0, 0.0)
        rhs_max = float(max(np.abs(dQ).max(), np.abs(dM).max()))
        eps = excess_risk(Q, M, np.eye(K), one, one, 1.0, 1.0)
        eps_star = (K / math.pi) * (math.pi / 6 - K * math.asin(1 / (2 * K)))
        assert rhs_max < 1e-12, (K, rhs_max)
        assert abs(eps - eps_star) < 1e-13, (K, eps, eps_star)
        res[f"plateau_rhs_K{K}"] = rhs_max
        res[f"plateau_eps_K{K}"] = abs(eps - eps_star)
        say(
            f"[ok] plateau K={K}: max|GF rhs| = {rhs_max:.1e}, "
            f"eps = {eps:.15f} (exact {eps_star:.15f})"
        )

    # 3. Monte Carlo at a random positive-definite Omega, generic readouts and label noise.
    rng = np.random.default_rng(12345)
    p, k = 3, 2
    A = rng.standard_normal((p + k, 7))
    Omega = A @ A.T / 7 + 0.1 * np.eye(p + k)
    Q, M, P = Omega[:p, :p], Omega[:p, p:], Omega[p:, p:]
    a = rng.uniform(0.5, 1.5, p) * rng.choice([-1.0, 1.0], p)
    a_star = rng.uniform(0.5, 1.5, k)
    c_p, c_k, g, Delta = 1.0 / p, 1.0 / k, 0.7, 0.3
    u = readout_vector(a, a_star, c_p, c_k)
    mc = _mc_moments(Omega, p, a, u, g, Delta, n_mc, seed=2024)
    dQ, dM = committee_erf_rhs(Q, M, P, a, a_star, c_p, c_k, g, Delta)
    exact = {
        "E4": erf_I4(Omega, p) @ u @ u + Delta * erf_J2(Omega, p),
        "dM": dM,
        "dQ": dQ,
        "risk": np.array(excess_risk(Q, M, P, a, a_star, c_p, c_k)),
    }
    for key, value in exact.items():
        mean, se = mc[key]
        z = float(np.max(np.abs(value - mean) / se))
        res[f"mc_max_z_{key}"] = z
        assert z < 5.0, (key, z, value, mean, se)
        say(f"[ok] Monte Carlo {key:5s}: max |exact - MC| / SE = {z:.2f} (N = {n_mc})")
    return res


if __name__ == "__main__":
    check()
    print("all baseline self-checks passed")
