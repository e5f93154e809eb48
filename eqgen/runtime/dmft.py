"""The DMFT forward sweep (docs/dmft.md, The discrete recursion): one causal pass over time with N
sampled trajectories.

Why a forward sweep and not damped fixed-point iteration: in discrete time every kernel at step
k depends only on the trajectories up to step k, so the self-consistent solution is reached in
a single pass — the Euler recursion with step η *is* SGD with step η. Older codes iterate the
whole history to a fixed point and stall at late times.

Each step k, for all trajectories at once (vectorised over N, `lax.scan` over k):
  h = m a + r; g = s̄ ℓ'(y, h); curvature κ_k = s̄ ℓ''(y, h);
  ν̂_k = αΔ E[κ_k]; M_C(k, j) = αΔ² E[g_k g_j]; M_R(k, j) = αΔ² E[κ_k χ_{k,j+1} κ_j] (j < k);
  the coloured noise Ξ_k from the row-k factor of M_C; then r, m and R one step on.
M_R needs each trajectory's response row χ_{k,·} at step k. It is recomputed at every step by
a backward solve (`response_row`) from two (K+2) × N histories, instead of carrying the whole
triangle χ_{i,u}: the same arithmetic, in cache rather than streamed from memory, and no K² × N
array. The responses cost about (K+2)³/3 multiply–adds per trajectory against O((K+2)²) for
everything else, so by default only the first N_χ = min(N, ⌊1.5·10⁹/(K+2)²⌋) trajectories
carry them (all of them up to K ≈ 190 at N = 4·10⁴): M_R is then estimated from N_χ
trajectories and everything else from all N, and the responses' cost grows only linearly in K.

The noise factor: M_C is almost rank-deficient at late times, where a Cholesky factor fails.
Row k of the factor L solves L[:k, :k] x = M_C[k, :k] by least squares with a relative cut-off
(1e-10) on the singular values, and the new pivot is √max(M_C(k,k) − |x|², 0); each trajectory's
Ξ_k = Σ_j L_kj ζ_j then uses its own fixed standard normals ζ, so it is drawn conditionally on
its own past.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from eqgen.runtime.dmft_problem import DmftProblem
from eqgen.runtime.lapack_threads import one_lapack_thread

RCOND = 1e-10
RESPONSE_BUDGET = 1.5e9  # the default N_χ is at most this over (K+2)² (see response_capacity)


class SweepInputs(NamedTuple):
    """The random inputs of a sampled sweep: per trajectory the cluster value c, the standard
    normal ξ (a = c + √Δ ξ), the label y, a standard normal r0 (r(0) = √(Δ q0) r0), the noise
    normals ζ (K+1, N) and the 0/1 selection s (K+1, N)."""

    c: jax.Array
    xi: jax.Array
    y: jax.Array
    r0: jax.Array
    zeta: jax.Array
    s: jax.Array


@dataclass
class DmftResult:
    """The swept DMFT: observables on t_k = kη and the kernels (numpy arrays)."""

    t: np.ndarray
    m: np.ndarray
    Q: np.ndarray
    train_loss: np.ndarray
    train_error: np.ndarray
    test_error: np.ndarray
    test_loss: np.ndarray
    nu_hat: np.ndarray
    M_C: np.ndarray
    M_R: np.ndarray
    R: np.ndarray
    C_perp: np.ndarray
    samples: int = 0
    response_samples: int = 0

    def observables(self) -> dict[str, np.ndarray]:
        """The CSV observables of docs/dmft.md, Running it, in contract order."""
        return {"m": self.m, "Q": self.Q, "train_loss": self.train_loss,
                "train_error": self.train_error, "test_error": self.test_error,
                "test_loss": self.test_loss}


def draw_inputs(problem: DmftProblem, samples: int, seed: int) -> SweepInputs:
    """Random inputs for `samples` trajectories from `seed` (reproducible)."""
    return _draw_jit(problem, int(samples), jnp.asarray(seed, dtype=jnp.uint32))


def _draw(problem: DmftProblem, samples: int, seed: jax.Array) -> SweepInputs:
    K = problem.steps
    key = jax.random.PRNGKey(seed)
    kd, kr, kz, ks0, ks = jax.random.split(key, 5)
    c, xi, y = problem.draw_samples(kd, samples)
    r0 = jax.random.normal(kr, (samples,))
    zeta = jax.random.normal(kz, (K + 1, samples))
    s0 = problem.selection_start(ks0, (samples,))

    def step(s: jax.Array, k: jax.Array) -> tuple[jax.Array, jax.Array]:
        nxt = problem.selection_next(k, s)
        return nxt, nxt

    _, rest = jax.lax.scan(step, s0, jax.random.split(ks, K))
    s = jnp.concatenate([s0[None], rest], axis=0)
    return SweepInputs(c, xi, y, r0, zeta, s)


_draw_jit = jax.jit(_draw, static_argnums=(0, 1))


def regularised_row(L: jax.Array, rhs: jax.Array, k: jax.Array, diag: jax.Array
                    ) -> jax.Array:
    """Row k of the noise factor: least squares against rows < k, pivot clipped at zero."""
    n = L.shape[0]
    idx = jnp.arange(n)
    before = idx < k
    A = jnp.where(before[:, None] & before[None, :], L, 0.0)
    b = jnp.where(before, rhs, 0.0)
    # LAPACK's SVD never returns on a matrix with an infinite entry (measured: a 5 × 5 with
    # one inf), so a sweep whose kernels overflowed would hang instead of failing: the SVD
    # sees zeros there, and the row is NaN, which the finite checks after the sweep report
    finite = jnp.all(jnp.isfinite(A)) & jnp.all(jnp.isfinite(b)) & jnp.isfinite(diag)
    u, sv, vt = jnp.linalg.svd(jnp.where(finite, A, 0.0))
    keep = sv > RCOND * jnp.maximum(sv[0], jnp.finfo(sv.dtype).tiny)
    x = vt.T @ (jnp.where(keep, (u.T @ b) / jnp.where(keep, sv, 1.0), 0.0))
    x = jnp.where(before, x, 0.0)
    pivot = jnp.sqrt(jnp.maximum(diag - x @ x, 0.0))
    return jnp.where(finite, x.at[k].set(pivot), jnp.nan)


def _sweep_arrays(problem: DmftProblem, inputs: SweepInputs, n_chi: int,
                  drop_earlier_curvature: bool) -> dict[str, jax.Array]:
    K = problem.steps
    T = K + 2  # one spare row: the last step writes step K+1, which is never read
    n = inputs.c.shape[0]
    alpha, Delta, lam, eta = problem.alpha, problem.Delta, problem.lam, problem.eta
    a = inputs.c + jnp.sqrt(Delta) * inputs.xi
    y = inputs.y
    zeta = jnp.pad(inputs.zeta, ((0, T - inputs.zeta.shape[0]), (0, 0)))
    sbar = inputs.s / problem.kappa
    steps = jnp.arange(T)

    def mean(x: jax.Array) -> jax.Array:  # over trajectories (last axis)
        return jnp.mean(x, axis=-1)

    zero = inputs.r0[0] * 0.0  # traced, so that XLA does not constant-fold the big carries

    def zeros(*shape: int) -> jax.Array:
        return jnp.full(shape, zero)

    carry = {
        "m": jnp.asarray(problem.m0, dtype=jnp.float64),
        "r": zeros(T, n).at[0].set(jnp.sqrt(Delta * problem.q0) * inputs.r0),
        "g": zeros(T, n),
        "L": zeros(T, T),
        "R": zeros(T, T).at[0, 0].set(1.0),
        "MC": zeros(T, T),
        "MR": zeros(T, T),
        # per step, for the first n_chi trajectories: the factor d_i of the response
        # recursion and the curvature κ_i that M_R weighs the response with (see response_row)
        "decay": zeros(T, n_chi),
        "kappa": zeros(T, n_chi),
    }

    def step(carry: dict, k: jax.Array) -> tuple[dict, dict]:
        m = carry["m"]
        r_k = carry["r"][k]
        s_k = sbar[k]
        h = m * a + r_k
        g_k = s_k * problem.dloss(y, h)
        cur_k = s_k * problem.d2loss(y, h)
        obs = {"m": m, "train_loss": mean(problem.loss(y, h)),
               "train_error": mean(problem.errors(y, h))}
        nu = alpha * Delta * mean(cur_k)
        g_all = carry["g"].at[k].set(g_k)
        # Rows > k of the (T, n) histories are still zero: each read below takes only the
        # rows up to a static width W > k (one branch per width, see _up_to_row).
        mc_row = _up_to_row(k, T, lambda W: jnp.pad(jnp.where(
            steps[:W] <= k, alpha * Delta**2 * mean(g_all[:W] * g_k), 0.0), (0, T - W)))
        L_row = regularised_row(carry["L"], mc_row, k, mc_row[k])
        noise = _up_to_row(k, T, lambda W: L_row[:W] @ zeta[:W])
        # M_R(k, j) = αΔ² E[κ_k χ_{k,j+1} κ_j] over the trajectories that carry responses
        cur_chi = cur_k[:n_chi]
        # the response recursion's memory coefficients, G[i, u] = η² M_R(i−1, u), stored
        # transposed so that column u is a contiguous row
        Gt = (eta**2) * jnp.pad(carry["MR"][:-1], ((1, 0), (0, 0))).T

        def mr_of_width(W: int) -> jax.Array:
            chi_k = response_row(k, carry["decay"], Gt, W, zero)  # (W, n_chi)
            shifted = jnp.pad(chi_k[1:], ((0, 1), (0, 0)))  # χ_{k,j+1}
            weighted = shifted * carry["kappa"][:W]  # χ_{k,j+1} κ_j
            mr = jnp.where(steps[:W] < k,
                           (alpha * Delta**2 / n_chi) * (weighted @ cur_chi), 0.0)
            return jnp.pad(mr, (0, T - W))

        mr_row = _up_to_row(k, T, mr_of_width)
        decay_k = 1.0 - eta * (lam + nu + Delta * cur_chi)
        r_memory = _up_to_row(k, T, lambda W: mr_row[:W] @ carry["r"][:W])
        r_new = r_k - eta * ((lam + nu) * r_k + Delta * g_k - eta * r_memory - noise)
        m_new = m - eta * (lam * m + alpha * mean(g_k * a))
        R_k = carry["R"][k]
        R_new = R_k - eta * ((lam + nu) * R_k - eta * (mr_row @ carry["R"]))
        new = {
            "m": m_new,
            "r": carry["r"].at[k + 1].set(r_new),
            "g": g_all,
            "decay": carry["decay"].at[k].set(decay_k),
            "kappa": carry["kappa"].at[k].set(
                jnp.ones_like(cur_chi) if drop_earlier_curvature else cur_chi),
            "L": carry["L"].at[k].set(L_row),
            "R": carry["R"].at[k + 1].set(R_new.at[k + 1].set(1.0)),
            "MC": carry["MC"].at[k].set(mc_row),
            "MR": carry["MR"].at[k].set(mr_row),
        }
        return new, {**obs, "nu_hat": nu}

    carry, per_step = jax.lax.scan(step, carry, jnp.arange(K + 1))
    cut = slice(0, K + 1)
    return {**per_step, "MC": carry["MC"][cut, cut], "MR": carry["MR"][cut, cut],
            "R": carry["R"][cut, cut]}


def response_row(k: jax.Array, decay: jax.Array, Gt: jax.Array, W: int, zero: jax.Array
                 ) -> jax.Array:
    """Row k of every trajectory's responses, χ_{k,u} for u ≤ k (zero for u > k), shape (W, n).

    The recursion χ_{i+1,u} = d_i χ_{i,u} + Σ_{u≤j<i} G[i+1, j] χ_{j,u} (with χ_{u,u} = 1,
    d_i = 1 − η(λ + ν̂_i + Δκ_i) per trajectory and G[i+1, j] = η² M_R(i, j) shared) says that
    χ = (I − L)⁻¹ for a lower-triangular L with L_{i+1,i} = d_i and L_{i,j} = G[i, j] below.
    A row of the inverse solves χ_{k,u} = Σ_{i>u} χ_{k,i} L_{i,u}, from u = k − 1 down to 0.

    Why rows and not the whole history: M_R at step k needs only row k. Recomputing it from d
    and G costs about k W multiply–adds per trajectory (each product runs over all W rows,
    zero below u), twice the k²/2 of advancing a stored triangle χ_{i,u} by one step, but
    it reads W × n numbers again and again (20 MB at W = 62, n = 4·10⁴: in the last-level
    cache; larger buffers are cut into chunks of trajectories, which are independent here)
    instead of streaming k²/2 numbers per trajectory from main memory, and nothing of size
    K² × n is kept: 2.2 × faster at K = 60 and N = 4·10⁴, 2.5 × at K = 200, with a fifth
    of the memory (docs/performance.md)."""
    n = decay.shape[1]
    chunks = max(1, -(-8 * W * n // RESPONSE_CHUNK_BYTES))
    if chunks == 1:
        return _row_of(k, decay[:W], Gt[:W, :W], zero)
    width = -(-n // chunks)
    d = jnp.pad(decay[:W], ((0, 0), (0, chunks * width - n))).reshape(W, chunks, width)
    rows = jax.lax.map(lambda dc: _row_of(k, dc, Gt[:W, :W], zero), d.transpose(1, 0, 2))
    return rows.transpose(1, 0, 2).reshape(W, chunks * width)[:, :n]


# The rows of a backward solve are re-read k times: trajectories are taken in chunks whose
# (W, chunk) buffer fits in the last-level cache (32 MB here). Measured warm, K = 60 and 200,
# N = 4·10⁴: 4 MB 0.87 and 18 s, 8 MB 0.87 and 13 s, 16 MB 0.72 and 13 s, 32 MB 0.75 and 20 s.
RESPONSE_CHUNK_BYTES = 16 * 2**20


def _row_of(k: jax.Array, decay: jax.Array, Gt: jax.Array, zero: jax.Array) -> jax.Array:
    """`response_row` for one chunk of trajectories: decay (W, chunk), Gt (W, W)."""
    W, n = decay.shape
    start = jnp.full((W, n), zero).at[k].set(1.0)

    def back(it: jax.Array, row: jax.Array) -> jax.Array:
        u = k - 1 - it
        return row.at[u].set(decay[u] * row[u + 1] + Gt[u] @ row)

    return jax.lax.fori_loop(0, k, back, start)


def _widths(T: int) -> list[int]:
    """The static widths of the history reads: every multiple of 8 up to 64, then growing by
    about a quarter; the last is T. Few widths keep compilation short (one branch each);
    close widths keep the work near the k rows actually needed."""
    widths = [min(8, T)]
    while widths[-1] < T:
        w = widths[-1]
        widths.append(min(T, max(w + 8, -(-(5 * w) // 32) * 8) if w >= 64 else w + 8))
    return widths


def _up_to_row(k: jax.Array, T: int, fn: Callable[[int], Any]) -> Any:
    """fn(W) for the smallest static width W > k: rows past k of every history are zero."""
    widths = _widths(T)
    branch = jnp.sum(k + 1 > jnp.asarray(widths[:-1])) if len(widths) > 1 else 0
    return jax.lax.switch(branch, [functools.partial(fn, W) for W in widths])


# XLA's CPU backend copies a loop-carried (K+2) × N history at every step when the value
# written into one of its rows is also used elsewhere in the step (measured: a two-line scan
# took 1.8 s instead of 0.1 s); its region analysis proves those copies unnecessary. Set for
# this program only, not for the user's process.
SWEEP_COMPILER_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}

_sweep_jit = jax.jit(_sweep_arrays, static_argnums=(0, 2, 3),
                     compiler_options=SWEEP_COMPILER_OPTIONS)


def weight_covariance(problem: DmftProblem, R: np.ndarray, MC: np.ndarray) -> np.ndarray:
    """C⊥(k, l) = C⊥(0,0) R_k0 R_l0 + η² Σ_ij R_{k,i+1} (M_C(i,j)/Δ) R_{l,j+1} (i < k, j < l).

    Computed on the leading block of times before the first non-finite row of R, and up to
    one step past the first non-finite row of M_C (NaN after): C⊥ up to step k needs R up to
    k and M_C only before k, so an overflow late in a sweep — or of M_C at t = 0, where
    C⊥(0, 0) = q0 — must not reach the earlier times (through inf · 0 in the products)."""
    n = min(first_nonfinite_row(R), first_nonfinite_row(MC) + 1, len(R))
    out = np.full(R.shape, np.nan)
    A = np.zeros((n, n))
    A[:, :-1] = R[:n, 1:n]
    A = np.tril(A, -1)  # A_{k,i} = R_{k,i+1} for i < k
    # within the block, a non-finite M_C entry is only ever multiplied by A's zeros
    MC_block = np.where(np.isfinite(MC[:n, :n]), MC[:n, :n], 0.0)
    out[:n, :n] = (problem.q0 * np.outer(R[:n, 0], R[:n, 0])
                   + problem.eta**2 * A @ (MC_block / problem.Delta) @ A.T)
    return out


def first_nonfinite_row(X: np.ndarray) -> int:
    """The first k with a non-finite entry in the lower triangle X[k, :k+1] (len(X) if none)."""
    bad = ~np.isfinite(np.where(np.tri(*X.shape, dtype=bool), X, 0.0))
    rows = np.flatnonzero(bad.any(axis=1))
    return int(rows[0]) if rows.size else len(X)


def sweep(problem: DmftProblem, samples: int = 20_000, seed: int = 0,
          response_samples: int | None = None, inputs: SweepInputs | None = None,
          drop_earlier_curvature: bool = False,
          response_budget: float = RESPONSE_BUDGET) -> DmftResult:
    """Solve the DMFT of `problem` with `samples` trajectories in one causal sweep.

    **Arguments**
    - `samples`, `seed`: the Monte Carlo trajectories (ignored when `inputs` are given).
    - `response_samples`: how many of them carry the responses χ from which M_R is estimated
      (default: `response_capacity`, all of them unless (K+2)² N exceeds `response_budget`).
    - `drop_earlier_curvature`: a planted error for tests — M_R without the factor ℓ''(t'),
      which docs/dmft.md, Theory warns gives plausible-looking, wrong curves.

    **Returns** a `DmftResult` (t, m, Q, training and test loss and error, kernels).
    """
    if inputs is None:
        inputs = draw_inputs(problem, samples, seed)
    n = int(inputs.c.shape[0])
    n_chi = response_capacity(problem, n, response_budget)
    if response_samples is not None:
        n_chi = max(1, min(n, int(response_samples)))
    with one_lapack_thread():
        out = jax.device_get(_sweep_jit(problem, inputs, n_chi, drop_earlier_curvature))
    MC_lower = np.asarray(out["MC"])
    MC = np.tril(MC_lower) + np.tril(MC_lower, -1).T
    MR = np.asarray(out["MR"])
    R = np.asarray(out["R"])
    C_perp = weight_covariance(problem, R, MC)
    m = np.asarray(out["m"])
    Q = m**2 + np.diag(C_perp)
    test_error, test_loss = problem.test_metrics(m, Q)
    return DmftResult(problem.times, m, Q, np.asarray(out["train_loss"]),
                      np.asarray(out["train_error"]), test_error, test_loss,
                      np.asarray(out["nu_hat"]), MC, MR, R, C_perp, samples=n,
                      response_samples=n_chi)


def response_capacity(problem: DmftProblem, samples: int,
                      budget: float = RESPONSE_BUDGET) -> int:
    """How many trajectories carry responses χ by default: all `samples`, unless
    N_χ (K+2)² would exceed `budget`. Each costs about (K+2)³/3 multiply–adds, so the cap
    keeps the responses' cost at most budget (K+2)/3, linear in the number of steps."""
    return int(max(1, min(samples, budget // (problem.steps + 2) ** 2)))
