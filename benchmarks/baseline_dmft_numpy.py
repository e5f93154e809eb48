"""Hand-written numpy baseline for the DMFT forward sweep (docs/dmft.md, The discrete recursion).

What a researcher writes straight from the discrete recursion: one Python loop over time, numpy
over the N sampled trajectories, no JAX transformations. It is the reference for speed and an
independent check of the JAX sweep: with the same random inputs (`random_inputs`) both must agree
to round-off.

The recursion, step η, t = kη (g_k = s̄_k ℓ'(y, h_k), h_k = m_k a + r_k, s̄ = s/κ,
a = c + √Δ ξ; for a GLM c = 0 and Δ = 1):

    ν̂_k      = αΔ E[s̄_k ℓ''_k]
    M_C(k,j) = αΔ² E[g_k g_j]
    M_R(k,j) = αΔ² E[s̄_k ℓ''_k χ_{k,j+1} s̄_j ℓ''_j]                          (j < k)
    χ_{k+1,u} = χ_{k,u} − η[(λ + ν̂_k + Δ s̄_k ℓ''_k) χ_{k,u} − η Σ_{u≤i<k} M_R(k,i) χ_{i,u}]
    r_{k+1}   = r_k − η[(λ + ν̂_k) r_k + Δ g_k − η Σ_{j<k} M_R(k,j) r_j − Ξ_k]
    m_{k+1}   = m_k − η[λ m_k + α E(g_k a)]
    R_{k+1,u} = R_{k,u} − η[(λ + ν̂_k) R_{k,u} − η Σ_{u≤i<k} M_R(k,i) R_{i,u}]
    C⊥        = q₀ R_{·,0} R_{·,0}ᵀ + η² A (M_C/Δ) Aᵀ,  A_{k,i} = R_{k,i+1} (i < k)

with χ_{u,u} = R_{u,u} = 1, r_0 = √(Δ q₀) r0 and E the average over the N trajectories.
The coloured noise is Ξ_k = Σ_{j≤k} L_{kj} ζ_j with L L ᵀ = M_C built one row per step: the new
row solves L_{<k} ℓ = M_C(<k, k) by least squares, dropping singular values of L_{<k} below
1e-10 times the largest (`np.linalg.lstsq(rcond=1e-10)`), and the pivot is
L_kk = √max(M_C(k,k) − |ℓ|², 0). So Ξ_k depends only on the trajectory's own ζ_0..ζ_k.

Cost O(K³N) time and O(K²N) memory (the per-trajectory responses χ; K = 60, N = 20 000 is
about 600 MB).

Run as a script (``.venv/bin/python benchmarks/baseline_dmft_numpy.py``) for the self-checks:
square loss against the Marchenko–Pastur closed form and the logistic t = 0 values.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import NDArray

from eqgen.runtime.dmft_problem import DmftProblem

jax.config.update("jax_enable_x64", True)

Array = NDArray[np.float64]

LSTSQ_RCOND = 1e-10  # relative cut-off of the least-squares rows of the noise factor


def _delta(problem: DmftProblem) -> float:
    """Δ of the effective process: the mixture's Δ, or 1 for a teacher–student GLM."""
    return 1.0 if problem.data == "glm" else float(problem.Delta)


def _call(f, y: Array, h: Array) -> Array:
    """A per-sample JAX function of (y, h), evaluated on numpy arrays, back as numpy."""
    return np.asarray(f(jnp.asarray(y), jnp.asarray(h)), dtype=np.float64)


def random_inputs(problem: DmftProblem, N: int, seed: int) -> dict[str, Array]:
    """The random inputs of one sweep, drawn with `np.random.default_rng(seed)`.

    **Returns** `c`, `xi`, `y`, `r0` of shape (N,), and `zeta`, `s` of shape (K+1, N): cluster
    values, the standard normal ξ, labels (cluster label, or f(a) for a GLM), the standard normal
    of r(0), the standard normals driving Ξ, and the 0/1 selection (GD: all ones; else the Markov
    chain of docs/dmft.md, Setting, s(0) ~ Bernoulli(b)).
    """
    rng = np.random.default_rng(seed)
    K = problem.steps
    probs = np.asarray(problem.cluster_probs, dtype=float)
    which = rng.choice(len(probs), size=N, p=probs / probs.sum())
    c = np.asarray(problem.cluster_values, dtype=float)[which]
    xi = rng.standard_normal(N)
    if problem.data == "glm":
        assert problem.target is not None
        y = np.asarray(problem.target(jnp.asarray(c + xi)), dtype=float)
    else:
        y = np.asarray(problem.cluster_labels, dtype=float)[which]
    r0 = rng.standard_normal(N)
    zeta = rng.standard_normal((K + 1, N))
    s = np.ones((K + 1, N))
    if not problem.is_gd:
        s[0] = rng.random(N) < problem.b
        for k in range(K):
            u = rng.random(N)
            s[k + 1] = np.where(s[k] > 0, u >= problem.p_off, u < problem.p_on)
    return {"c": c, "xi": xi, "y": y, "r0": r0, "zeta": zeta, "s": s}


def noise_factor_row(L: Array, MC: Array, k: int) -> None:
    """Fill row k of the lower-triangular L so that (L Lᵀ)[k, :k+1] ≈ M_C[k, :k+1], in place."""
    if k > 0:
        row, *_ = np.linalg.lstsq(L[:k, :k], MC[:k, k], rcond=LSTSQ_RCOND)
        L[k, :k] = row
        pivot = MC[k, k] - row @ row
    else:
        pivot = MC[0, 0]
    L[k, k] = math.sqrt(max(pivot, 0.0))


def numpy_sweep(problem: DmftProblem, c: Array, xi: Array, y: Array, r0: Array, zeta: Array,
                s: Array) -> dict[str, Array]:
    """One forward sweep of the discrete DMFT with the given random inputs (module docstring).

    **Returns** `t`, `m`, `Q`, `train_loss`, `train_error`, `test_error`, `test_loss`, `nu_hat`
    (each (K+1,)), and the (K+1) × (K+1) matrices `M_C`, `M_R` (strictly lower), `R` (lower),
    `C_perp`, plus the noise factor `L`.
    """
    K = problem.steps
    N = len(c)
    alpha, lam, eta, q0 = problem.alpha, problem.lam, problem.eta, problem.q0
    Delta = _delta(problem)
    a = c + math.sqrt(Delta) * xi
    sbar = np.asarray(s, dtype=float) / problem.kappa

    m = np.zeros(K + 1)
    r = np.zeros((K + 1, N))
    g = np.zeros((K + 1, N))  # s̄ ℓ'
    curv = np.zeros((K + 1, N))  # s̄ ℓ''
    chi = np.zeros((K + 1, K + 1, N))  # χ_{k,u}, u ≤ k
    R = np.zeros((K + 1, K + 1))
    MC = np.zeros((K + 1, K + 1))
    MR = np.zeros((K + 1, K + 1))
    L = np.zeros((K + 1, K + 1))
    nu_hat = np.zeros(K + 1)
    train_loss = np.zeros(K + 1)
    train_error = np.zeros(K + 1)

    m[0] = problem.m0
    r[0] = math.sqrt(Delta * q0) * r0
    chi[0, 0] = 1.0
    R[0, 0] = 1.0
    for k in range(K + 1):
        h = m[k] * a + r[k]
        g[k] = sbar[k] * _call(problem.dloss, y, h)
        curv[k] = sbar[k] * _call(problem.d2loss, y, h)
        train_loss[k] = _call(problem.loss, y, h).mean()
        train_error[k] = _call(problem.errors, y, h).mean()

        nu_hat[k] = alpha * Delta * curv[k].mean()
        MC[k, : k + 1] = alpha * Delta**2 * (g[: k + 1] @ g[k]) / N
        MC[: k + 1, k] = MC[k, : k + 1]
        # M_R(k, j) = αΔ² E[s̄_k ℓ''_k χ_{k,j+1} s̄_j ℓ''_j], j < k
        MR[k, :k] = alpha * Delta**2 * ((chi[k, 1 : k + 1] * curv[:k]) @ curv[k]) / N
        noise_factor_row(L, MC, k)
        if k == K:
            break
        Xi = L[k, : k + 1] @ zeta[: k + 1]

        memory_r = MR[k, :k] @ r[:k]
        r[k + 1] = r[k] - eta * ((lam + nu_hat[k]) * r[k] + Delta * g[k] - eta * memory_r - Xi)
        m[k + 1] = m[k] - eta * (lam * m[k] + alpha * np.mean(g[k] * a))

        memory_chi = np.einsum("i,iun->un", MR[k, :k], chi[:k, : k + 1])
        chi[k + 1, : k + 1] = chi[k, : k + 1] - eta * (
            (lam + nu_hat[k] + Delta * curv[k]) * chi[k, : k + 1] - eta * memory_chi)
        chi[k + 1, k + 1] = 1.0

        memory_R = MR[k, :k] @ R[:k, : k + 1]
        R[k + 1, : k + 1] = R[k, : k + 1] - eta * ((lam + nu_hat[k]) * R[k, : k + 1]
                                                   - eta * memory_R)
        R[k + 1, k + 1] = 1.0

    A = np.zeros((K + 1, K + 1))
    A[:, :K] = R[:, 1:]  # A_{k,i} = R_{k,i+1}; zero for i ≥ k since R is lower triangular
    C_perp = q0 * np.outer(R[:, 0], R[:, 0]) + eta**2 * A @ (MC / Delta) @ A.T
    Q = m**2 + np.diag(C_perp)
    test_error, test_loss = problem.test_metrics(m, Q)
    return {"t": problem.times, "m": m, "Q": Q, "train_loss": train_loss,
            "train_error": train_error, "test_error": np.asarray(test_error),
            "test_loss": np.asarray(test_loss), "nu_hat": nu_hat, "M_C": MC, "M_R": MR,
            "R": R, "C_perp": C_perp, "L": L}


# ---------------------------------------------------------------------------------------------
# Self-checks (run as a script)
# ---------------------------------------------------------------------------------------------


def _self_checks(N: int = 20_000, steps: int = 30, seeds: int = 4) -> None:
    """Square loss vs the Marchenko–Pastur closed form; logistic t = 0 values. Prints a table."""
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from tests.helpers_dmft import (  # the test helpers, only needed by the script
        gaussian_mean,
        logistic_two_cluster_problem,
        mp_closed_form,
        square_glm_problem,
    )

    for alpha in (0.5, 2.0):
        problem = square_glm_problem(alpha=alpha, lam=0.05, eta=0.1, steps=steps, m0=0.2, q0=0.5)
        exact = mp_closed_form(alpha, problem.lam, problem.eta, problem.m0, problem.q0, steps)
        runs = []
        start = time.perf_counter()
        for seed in range(seeds):
            runs.append(numpy_sweep(problem, **random_inputs(problem, N, seed)))
        elapsed = (time.perf_counter() - start) / seeds
        print(f"square loss GLM, GD, alpha={alpha}, N={N}, K={steps}: {elapsed:.2f} s per sweep")
        for name in ("m", "Q", "train_loss"):
            values = np.stack([run[name] for run in runs])
            dev = np.abs(values - exact[name]).max(axis=1)
            spread = values.std(axis=0, ddof=1)
            score = np.abs(values.mean(axis=0) - exact[name]) / (spread / math.sqrt(seeds))
            print(f"  {name:10s} max_t |sweep - MP| per seed "
                  f"{' '.join(f'{x:.1e}' for x in dev)}; seed-to-seed std <= {spread.max():.1e}; "
                  f"max_t |mean - MP|/(std/sqrt(seeds)) = {score.max():.1f}")
        R = np.stack([run["R"][:, 0] for run in runs])
        print(f"  R(t,0)     max|sweep - MP| {np.abs(R - exact['R']).max():.1e}")

    problem = logistic_two_cluster_problem(alpha=3.0, Delta=0.5, steps=5, m0=0.0, q0=1.0)
    out = numpy_sweep(problem, **random_inputs(problem, N, 0))
    expected = gaussian_mean(lambda u: np.logaddexp(0.0, -u), 0.0, problem.Delta)
    slope = (out["m"][1] - out["m"][0]) / problem.eta
    print(f"logistic two clusters, t = 0: train loss {out['train_loss'][0]:.5f} "
          f"(exact {expected:.5f}), dm/dt {slope:.4f} (exact {problem.alpha / 2})")


if __name__ == "__main__":
    _self_checks()
