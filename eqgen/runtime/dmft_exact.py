"""Exact Gaussian propagation of the DMFT for square-type losses at b = 1 (no sampling).

When ℓ'' is a constant and ℓ' is affine in (y, h) (the square loss) and every sample is used at
every step (GD / gradient flow), the effective process is linear: within each cluster, r(t),
h(t) and g(t) are affine functions of finitely many independent standard normals — ξ (the
field along the signal), r0 (the initial orthogonal field) and the noise normals ζ_0..ζ_K —
and the responses χ are deterministic. Representing every quantity by its coefficients on
(1, ξ, r0, ζ_0, ..., ζ_K), one per cluster, turns each average of docs/dmft.md, The discrete
recursion into an exact
bilinear form, so the sweep has no Monte Carlo error at all. Used by tests against the
Marchenko–Pastur closed form (docs/dmft.md, the square-loss closed form) and by `solve(...,
exact=True)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from eqgen.runtime.dmft import DmftResult, regularised_row, weight_covariance
from eqgen.runtime.dmft_problem import DmftProblem, _wrong_probability


def affine_loss_coefficients(problem: DmftProblem) -> dict[str, float]:
    """ℓ'(y, h) = p0 + ph h + py y and ℓ(y, h) as a quadratic, read off the problem's functions
    (and checked at other points: a loss that is not of this form is refused)."""
    d = lambda y, h: float(problem.dloss(jnp.asarray(y, float), jnp.asarray(h, float)))  # noqa: E731
    ell = lambda y, h: float(problem.loss(jnp.asarray(y, float), jnp.asarray(h, float)))  # noqa: E731
    p0 = d(0.0, 0.0)
    ph = d(0.0, 1.0) - p0
    py = d(1.0, 0.0) - p0
    l0, lp, lm = ell(0.0, 0.0), ell(1.0, 0.0), ell(-1.0, 0.0)
    coef = {"p0": p0, "ph": ph, "py": py, "l0": l0, "ly": (lp - lm) / 2, "lyy": lp + lm - 2 * l0}
    for y, h in ((0.7, -1.3), (-2.1, 0.4), (1.5, 2.5)):
        want_d = p0 + ph * h + py * y
        want_l = (coef["l0"] + coef["ly"] * y + coef["lyy"] * y * y / 2 + p0 * h
                  + ph * h * h / 2 + py * h * y)
        if abs(d(y, h) - want_d) > 1e-9 * (1 + abs(want_d)) or \
                abs(ell(y, h) - want_l) > 1e-9 * (1 + abs(want_l)):
            raise ValueError("exact Gaussian propagation needs a quadratic loss "
                             "(ℓ'' constant, ℓ' affine in y and h)")
    return coef


def _exact_arrays(problem: DmftProblem, coef: dict[str, float], y_rep: jax.Array,
                  a_rep: jax.Array, probs: jax.Array) -> dict[str, jax.Array]:
    K = problem.steps
    T = K + 2
    K + 4  # coefficients on (1, ξ, r0, ζ_0 .. ζ_K)
    alpha, Delta, lam, eta = problem.alpha, problem.Delta, problem.lam, problem.eta
    inv_kappa = 1.0 / problem.kappa
    cur = coef["ph"] * inv_kappa  # s̄ ℓ'': the same for every sample and time
    nu = alpha * Delta * cur
    steps = jnp.arange(T)

    def mean(x: jax.Array) -> jax.Array:  # E over clusters of the constant part; x: (C, B)
        return probs @ x[:, 0]

    def mean_prod(x: jax.Array, y: jax.Array) -> jax.Array:  # E[x y], x, y: (..., C, B)
        return jnp.einsum("c,...cb,cb->...", probs, x, y)

    r0 = jnp.zeros_like(a_rep).at[:, 2].set(jnp.sqrt(Delta * problem.q0))
    carry0 = {
        "m": jnp.asarray(problem.m0, dtype=jnp.float64),
        "r": jnp.zeros((T, *a_rep.shape)).at[0].set(r0),
        "g": jnp.zeros((T, *a_rep.shape)),
        "chi": jnp.zeros((T, T)).at[0, 0].set(1.0),
        "R": jnp.zeros((T, T)).at[0, 0].set(1.0),
        "L": jnp.zeros((T, T)),
        "MC": jnp.zeros((T, T)),
        "MR": jnp.zeros((T, T)),
    }

    def step(carry: dict, k: jax.Array) -> tuple[dict, dict]:
        m, r_k = carry["m"], carry["r"][k]
        h = m * a_rep + r_k
        g_k = inv_kappa * (coef["p0"] * jnp.zeros_like(h).at[:, 0].set(1.0)
                           + coef["ph"] * h + coef["py"] * y_rep)
        g_all = carry["g"].at[k].set(g_k)
        mc_row = jnp.where(steps <= k, alpha * Delta**2 * mean_prod(g_all, g_k), 0.0)
        L_row = regularised_row(carry["L"], mc_row, k, mc_row[k])
        noise = jnp.zeros_like(h).at[:, 3:3 + K + 1].set(L_row[:K + 1])
        chi_shift = jnp.roll(carry["chi"][k], -1).at[-1].set(0.0)
        mr_row = jnp.where(steps < k, alpha * Delta**2 * cur * cur * chi_shift, 0.0)
        chi_new = carry["chi"][k] - eta * ((lam + nu + Delta * cur) * carry["chi"][k]
                                           - eta * (mr_row @ carry["chi"]))
        R_new = carry["R"][k] - eta * ((lam + nu) * carry["R"][k] - eta * (mr_row @ carry["R"]))
        r_mem = jnp.einsum("j,jcb->cb", mr_row, carry["r"])
        r_new = r_k - eta * ((lam + nu) * r_k + Delta * g_k - eta * r_mem - noise)
        m_new = m - eta * (lam * m + alpha * mean_prod(g_k, a_rep))
        new = {
            "m": m_new,
            "r": carry["r"].at[k + 1].set(r_new),
            "g": g_all,
            "chi": carry["chi"].at[k + 1].set(chi_new.at[k + 1].set(1.0)),
            "R": carry["R"].at[k + 1].set(R_new.at[k + 1].set(1.0)),
            "L": carry["L"].at[k].set(L_row),
            "MC": carry["MC"].at[k].set(mc_row),
            "MR": carry["MR"].at[k].set(mr_row),
        }
        return new, {"m": m, "h": h, "nu_hat": nu + 0.0 * m}

    final, per = jax.lax.scan(step, carry0, jnp.arange(K + 1))
    cut = slice(0, K + 1)
    return {**per, "MC": final["MC"][cut, cut], "MR": final["MR"][cut, cut],
            "R": final["R"][cut, cut]}


_exact_jit = jax.jit(_exact_arrays, static_argnums=(0,))


def sweep_exact(problem: DmftProblem) -> DmftResult:
    """The DMFT of a square-type loss at b = 1 by exact Gaussian propagation (no sampling)."""
    if not problem.is_gd:
        raise ValueError("exact Gaussian propagation needs b = 1 (every sample at every step)")
    coef = affine_loss_coefficients(problem)
    K = problem.steps
    C = len(problem.cluster_values)
    B = K + 4
    a_rep = np.zeros((C, B))
    a_rep[:, 0] = problem.cluster_values
    a_rep[:, 1] = np.sqrt(problem.Delta)
    y_rep = np.zeros((C, B))
    if problem.data == "glm":
        assert problem.target is not None
        t0 = float(problem.target(jnp.asarray(0.0)))
        t1 = float(problem.target(jnp.asarray(1.0))) - t0
        if abs(float(problem.target(jnp.asarray(-2.5))) - (t0 - 2.5 * t1)) > 1e-9 * (1 + abs(t0)):
            raise ValueError("exact Gaussian propagation needs an affine GLM target")
        y_rep = t1 * a_rep
        y_rep[:, 0] += t0
    else:
        y_rep[:, 0] = problem.cluster_labels
    probs = np.asarray(problem.cluster_probs, dtype=float)
    out = jax.device_get(_exact_jit(problem, coef, jnp.asarray(y_rep), jnp.asarray(a_rep),
                                    jnp.asarray(probs)))
    MC_lower = np.asarray(out["MC"])
    MC = np.tril(MC_lower) + np.tril(MC_lower, -1).T
    R = np.asarray(out["R"])
    C_perp = weight_covariance(problem, R, MC)
    m = np.asarray(out["m"])
    Q = m**2 + np.diag(C_perp)
    h = np.asarray(out["h"])  # (K+1, C, B)
    train_loss, train_error = _train_observables(problem, coef, h, y_rep, probs)
    test_error, test_loss = problem.test_metrics(m, Q)
    return DmftResult(problem.times, m, Q, train_loss, train_error, test_error, test_loss,
                      np.asarray(out["nu_hat"]), MC, np.asarray(out["MR"]), R, C_perp)


def _train_observables(problem: DmftProblem, coef: dict[str, float], h: np.ndarray,
                       y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training loss (exact, from first and second moments) and error (exact per cluster)."""

    def e2(x: np.ndarray, z: np.ndarray) -> np.ndarray:  # E[x z] per cluster
        return x[..., 0] * z[..., 0] + (x[..., 1:] * z[..., 1:]).sum(-1)

    yb = np.broadcast_to(y, h.shape)
    loss_c = (coef["l0"] + coef["ly"] * yb[..., 0] + coef["lyy"] / 2 * e2(yb, yb)
              + coef["p0"] * h[..., 0] + coef["ph"] / 2 * e2(h, h) + coef["py"] * e2(h, yb))
    train_loss = loss_c @ probs
    if problem.data != "glm":
        s = np.sqrt((h[..., 1:] ** 2).sum(-1))
        err = sum(p * _wrong_probability(problem, h[:, c, 0], s[:, c], problem.cluster_labels[c])
                  for c, p in enumerate(probs))
        return train_loss, np.asarray(err)
    # GLM: y = y0 + σ_y u, h | u Gaussian; integrate over u piecewise where ŷ(y) jumps
    y0, yv = y[0, 0], y[0, 1:]
    sy = np.linalg.norm(yv)
    hv, h0 = h[:, 0, 1:], h[:, 0, 0]
    proj = hv @ (yv / sy)
    s = np.sqrt(np.maximum((hv**2).sum(-1) - proj**2, 0.0))
    bps = sorted((b - y0) / sy for b in (problem.label_breakpoints or ()))
    edges = [-12.0, *[b for b in bps if -12 < b < 12], 12.0]
    xs, ws = np.polynomial.legendre.leggauss(64)
    pieces = list(zip(edges[:-1], edges[1:], strict=True))
    u = np.concatenate([(hi - lo) / 2 * xs + (hi + lo) / 2 for lo, hi in pieces])
    wu = np.concatenate([(hi - lo) / 2 * ws for lo, hi in pieces])
    wu = wu * np.exp(-u**2 / 2) / np.sqrt(2 * np.pi)
    truth = np.asarray(problem.label(jnp.asarray(y0 + sy * u)))
    mu = h0[:, None] + proj[:, None] * u[None, :]
    wrong = _wrong_probability(problem, mu, np.broadcast_to(s[:, None], mu.shape),
                               np.broadcast_to(truth, mu.shape))
    return train_loss, wrong @ wu
