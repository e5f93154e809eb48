"""The DMFT forward sweep (docs/dmft.md, The discrete recursion): one causal pass over time with N
sampled trajectories.

Why a forward sweep and not damped fixed-point iteration: in discrete time every kernel at step
k depends only on the trajectories up to step k, so the self-consistent solution is reached in
a single pass — the Euler recursion with step η *is* SGD with step η. Older codes iterate the
whole history to a fixed point and stall at late times.

Each step k, for all trajectories at once (vectorised over N, `lax.scan` over k):
  h = m a + r; g = s̄ ℓ'(y, h); curvature κ_k = s̄ ℓ''(y, h);
  ν̂_k = αΔ E[κ_k]; M_C(k, j) = αΔ² E[g_k g_j]; M_R(k, j) = αΔ² E[κ_k χ_{k,j+1} κ_j] (j < k);
  the coloured noise Ξ_k from the row-k factor of M_C; then χ, r, m and R one step on.
The per-trajectory responses χ are the memory cost, about 4 (K+2)² bytes per trajectory (the
lower triangle, in blocks: `_Triangle`). They enter
only M_R, so they are carried by the first N_χ ≤ N trajectories, with N_χ chosen to fit a memory
budget (6 GB by default): M_R is then estimated from N_χ trajectories and everything else from
all N. Memory is bounded whatever K and N; the price is a larger Monte Carlo error on M_R alone.

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
RESPONSE_MEMORY_BUDGET = 6e9  # bytes for the per-trajectory responses χ


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
        # χ_{i,u} for the first n_chi trajectories, in row blocks (see _Triangle)
        "chi": _Triangle.start(T, n_chi, zero),
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
        # rows up to the end of k's block (static widths, one branch per block).
        mc_row = _up_to_row(k, T, lambda W: jnp.pad(jnp.where(
            steps[:W] <= k, alpha * Delta**2 * mean(g_all[:W] * g_k), 0.0), (0, T - W)))
        L_row = regularised_row(carry["L"], mc_row, k, mc_row[k])
        noise = _up_to_row(k, T, lambda W: L_row[:W] @ zeta[:W])
        chi = carry["chi"]
        # M_R(k, j) = αΔ² E[κ_k χ_{k,j+1} κ_j] over the trajectories that carry responses, and
        # χ_{k+1,u} = χ_{k,u} − η[(λ + ν̂ + Δ κ_k) χ_{k,u} − η Σ_i M_R(k,i) χ_{i,u}].
        # Each column u of χ follows the same linear recursion, so it is stored already
        # multiplied by κ_{u−1}: it starts at χ_{u,u} κ_{u−1} = κ_{u−1} instead of 1, and
        # M_R needs no history of the curvatures.
        cur_chi = cur_k[:n_chi]
        mr_row, chi_new = _Triangle.advance(
            chi, k, cur_chi=cur_chi, mr_scale=alpha * Delta**2,
            decay=lam + nu + Delta * cur_chi, eta=eta,
            start=1.0 if drop_earlier_curvature else cur_chi)
        r_memory = _up_to_row(k, T, lambda W: mr_row[:W] @ carry["r"][:W])
        r_new = r_k - eta * ((lam + nu) * r_k + Delta * g_k - eta * r_memory - noise)
        m_new = m - eta * (lam * m + alpha * mean(g_k * a))
        R_k = carry["R"][k]
        R_new = R_k - eta * ((lam + nu) * R_k - eta * (mr_row @ carry["R"]))
        new = {
            "m": m_new,
            "r": carry["r"].at[k + 1].set(r_new),
            "g": g_all,
            "chi": _Triangle.set_row(chi, k + 1, chi_new),
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


def _up_to_row(k: jax.Array, T: int, fn: Callable[[int], Any]) -> Any:
    """fn(W), where W (static, at most T) ends the rows that can be non-zero at step k: every
    row up to the end of k's block of _Triangle.B rows, and one more (step k writes row k+1)."""
    widths = [min(T, i1 + 1) for _, i1 in _Triangle.bounds(T)]
    return jax.lax.switch(k // _Triangle.B, [functools.partial(fn, W) for W in widths])


class _Triangle:
    """The responses χ_{i,u} (u ≤ i) of the trajectories that carry them, stored as row blocks.

    Block c holds rows i in [cB, (c+1)B) and only the columns u < (c+1)B that can be non-zero,
    as one dense (B, u, trajectory) array: about half the memory of the square, and each block
    is read whole by one matrix product. The memory term Σ_i M_R(k,i) χ_{i,u} is the cost of the
    sweep (memory traffic on χ, far larger than any cache); step k reads only the blocks of
    rows up to its own (M_R(k, i) vanishes for i ≥ k), about k²/2 numbers per trajectory
    instead of the whole array."""

    B = 16

    @staticmethod
    def bounds(T: int) -> list[tuple[int, int]]:
        """(first row, end row) of every block; a block's columns end where its rows do."""
        return [(i0, min(T, i0 + _Triangle.B)) for i0 in range(0, T, _Triangle.B)]

    @staticmethod
    def size(T: int) -> int:
        """Numbers stored per trajectory."""
        return sum((i1 - i0) * i1 for i0, i1 in _Triangle.bounds(T))

    @staticmethod
    def start(T: int, n: int, zero: jax.Array) -> tuple[jax.Array, ...]:
        """χ at the start: χ_{0,0} = 1 and everything else 0."""
        blocks = tuple(jnp.full((i1 - i0, i1, n), zero) for i0, i1 in _Triangle.bounds(T))
        return (blocks[0].at[0, 0].set(1.0), *blocks[1:])

    @staticmethod
    def advance(chi: tuple[jax.Array, ...], k: jax.Array, *, cur_chi: jax.Array,
                mr_scale: float, decay: jax.Array, eta: float, start: jax.Array | float
                ) -> tuple[jax.Array, jax.Array]:
        """Row k of M_R (length T) and row k+1 of χ (T, n) from rows ≤ k of χ, whose new
        diagonal entry χ_{k+1,k+1} is `start`.

        One branch per block of row k (`lax.switch`), so that every width is static: the
        branch of block c reads row k within that block, and the memory term
        Σ_i M_R(k,i) χ_{i,u} from blocks 0..c only (M_R(k, i) vanishes for i ≥ k)."""
        bounds = _Triangle.bounds(sum(b.shape[0] for b in chi))
        T = bounds[-1][1]

        def branch(c: int) -> Callable[[], tuple[jax.Array, jax.Array]]:
            i0, i1 = bounds[c]
            W = min(T, i1 + 1)  # row k+1 can reach column i1

            def run() -> tuple[jax.Array, jax.Array]:
                row = jax.lax.dynamic_index_in_dim(chi[c], k - i0, 0, False)  # (i1, n)
                row = jnp.pad(row, ((0, W - i1), (0, 0)))
                shifted = jnp.pad(row[1:i1], ((0, W - i1 + 1), (0, 0)))  # χ_{k,j+1}
                # a matrix-vector product, not mean(cur_chi * shifted): XLA then streams
                # the row once instead of materialising the broadcast product (~10 %)
                mr = jnp.where(jnp.arange(W) < k,
                               (mr_scale / cur_chi.shape[0]) * (shifted @ cur_chi), 0.0)
                memory = sum(jnp.pad(jnp.einsum("i,iun->un", mr[j0:j1], chi[d]),
                                     ((0, W - j1), (0, 0)))
                             for d, (j0, j1) in enumerate(bounds[:c + 1]))
                new = row - eta * (decay * row - eta * memory)
                new = jnp.where(jnp.arange(W)[:, None] == k + 1, start, new)
                return jnp.pad(mr, (0, T - W)), jnp.pad(new, ((0, T - W), (0, 0)))
            return run

        return jax.lax.switch(k // _Triangle.B, [branch(c) for c in range(len(chi))])

    @staticmethod
    def set_row(chi: tuple[jax.Array, ...], k: jax.Array, values: jax.Array
                ) -> tuple[jax.Array, ...]:
        """χ with row k replaced by `values` (T, n), cut to the block's columns."""
        T = values.shape[0]
        out = []
        for c, (i0, i1) in enumerate(_Triangle.bounds(T)):
            def write(block: jax.Array, i0: int = i0, i1: int = i1) -> jax.Array:
                return jax.lax.dynamic_update_index_in_dim(block, values[:i1], k - i0, 0)
            out.append(jax.lax.cond((k >= i0) & (k < i1), write, lambda b: b, chi[c]))
        return tuple(out)


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
          memory_budget_bytes: float = RESPONSE_MEMORY_BUDGET) -> DmftResult:
    """Solve the DMFT of `problem` with `samples` trajectories in one causal sweep.

    **Arguments**
    - `samples`, `seed`: the Monte Carlo trajectories (ignored when `inputs` are given).
    - `response_samples`: how many of them carry the responses χ from which M_R is estimated
      (default: all that fit in `memory_budget_bytes`, at about 4 (K+2)² bytes each).
    - `drop_earlier_curvature`: a planted error for tests — M_R without the factor ℓ''(t'),
      which docs/dmft.md, Theory warns gives plausible-looking, wrong curves.

    **Returns** a `DmftResult` (t, m, Q, training and test loss and error, kernels).
    """
    if inputs is None:
        inputs = draw_inputs(problem, samples, seed)
    n = int(inputs.c.shape[0])
    n_chi = response_capacity(problem, n, memory_budget_bytes)
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
                      budget_bytes: float = RESPONSE_MEMORY_BUDGET) -> int:
    """How many trajectories can carry responses χ (a lower triangle of (K+2)² float64 each,
    in blocks) within the budget."""
    per = 8.0 * _Triangle.size(problem.steps + 2)
    return int(max(1, min(samples, budget_bytes // per)))
