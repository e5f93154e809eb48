"""Finite-d simulation of multi-pass SGD on a reused data set, for a `DmftProblem`.

The setting is that of docs/dmft.md (Setting). This is the ground truth the DMFT is checked
against, so it runs the *same discrete dynamics* the DMFT describes, with nothing added or
averaged:

- n = round(α d) samples drawn once and reused at every step; v* ~ N(0, I_d) rescaled so
  |v*|² = d exactly. Mixture: x_μ = c_μ v*/√d + √Δ z_μ, label from the cluster. GLM:
  x_μ ~ N(0, I_d) (Δ = 1, c = 0), y_μ = f(x_μ·v*/√d).
- w(0) = m₀ v* + w⊥ with w⊥ Gaussian, projected orthogonal to v* and rescaled so |w⊥|²/d = q₀
  exactly (the DMFT starts from exactly these overlaps).
- w(t+η) = w − η [λ w + κ⁻¹ Σ_μ s_μ(t) ℓ'(y_μ, h_μ) x_μ/√d], h_μ = w·x_μ/√d, with the
  selection s from the problem's Markov chain (GD: s ≡ 1).

Only the noise matrix Z (n × d) is stored; the inputs are never formed, since
h_μ = c_μ (w·v*)/d + √Δ z_μ·w/√d and Σ_μ g_μ x_μ/√d = (Σ_μ g_μ c_μ) v*/d + √Δ Zᵀg/√d.
Time is a `lax.scan`, run in a few pieces of `chunk_steps` steps that carry the weights and
the selection from one piece to the next (one jitted program per problem, d and piece length,
cached), so that a progress bar can move within a run; the pieces change nothing in the numbers
(the selection of step k is drawn from `fold_in(selection_key, k)` whatever the piece). Seeds
run one after the other, never vectorised: each needs its own n × d data matrix (d = 4000,
α = 3: 384 MB in float64), so memory stays at one of them whatever the number of seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from eqgen.runtime.dmft_problem import DmftProblem

jax.config.update("jax_enable_x64", True)  # float64 throughout, before any array exists

Progress = Callable[[int], None]  # called with the steps done so far, summed over seeds
PIECES = 16  # pieces per run by default: the progress granularity
BLOW_UP = 1e12  # |w|²/d this large means the weights diverged (as eqgen.runtime.health.BLOW_UP)


class Dataset(NamedTuple):
    """One draw of the data and of the initial weights.

    x_μ = c_μ v/√d + √Δ z_μ (Δ = 1 and c = 0 for a GLM); `w0` = m₀ v + w⊥.
    """

    z: jax.Array  # (n, d) standard normal noise of the inputs
    c: jax.Array  # (n,) cluster value of each sample (zero for a GLM)
    y: jax.Array  # (n,) labels
    v: jax.Array  # (d,) the signal direction, |v|² = d
    w0: jax.Array  # (d,) the initial weights


def n_samples(problem: DmftProblem, d: int) -> int:
    """n = round(α d), at least one."""
    return max(1, round(problem.alpha * d))


def input_variance(problem: DmftProblem) -> float:
    """Δ of the inputs around their cluster: the problem's Δ for mixtures, 1 for a GLM."""
    return 1.0 if problem.data == "glm" else float(problem.Delta)


def seed_keys(seed: int, index: int) -> tuple[jax.Array, jax.Array]:
    """(data key, selection key) of seed number `index` of a run started with `seed`.

    Exposed so that a test can redraw exactly the data set a simulation used.
    """
    key = jax.random.fold_in(jax.random.PRNGKey(seed), index)
    data_key, selection_key = jax.random.split(key)
    return data_key, selection_key


def draw_dataset(problem: DmftProblem, d: int, key: jax.Array) -> Dataset:
    """Draw the n samples, the signal v* and w(0) (docs/dmft.md, Setting); pure, so jit-able."""
    n = n_samples(problem, d)
    kv, kw, kc, kz = jax.random.split(key, 4)
    v = jax.random.normal(kv, (d,))
    v = v * (math.sqrt(d) / jnp.linalg.norm(v))
    c, _, y = problem.draw_samples(kc, n)
    z = jax.random.normal(kz, (n, d))
    if problem.data == "glm":
        assert problem.target is not None
        c = jnp.zeros(n)
        y = problem.target(z @ v / math.sqrt(d))
    g = jax.random.normal(kw, (d,))
    g = g - (g @ v / d) * v  # |v|² = d
    norm = jnp.linalg.norm(g)
    scale = jnp.where(norm > 0, math.sqrt(problem.q0 * d) / jnp.where(norm > 0, norm, 1.0), 0.0)
    w0 = problem.m0 * v + scale * g
    return Dataset(z=z, c=jnp.asarray(c, jnp.float64), y=jnp.asarray(y, jnp.float64), v=v, w0=w0)


def design_matrix(problem: DmftProblem, data: Dataset) -> jax.Array:
    """The inputs X (n × d), x_μ = c_μ v/√d + √Δ z_μ (for checks; the simulation never forms it)."""
    d = data.v.shape[0]
    return (data.c[:, None] * data.v[None, :] / math.sqrt(d)
            + math.sqrt(input_variance(problem)) * data.z)


def _step_function(problem: DmftProblem, d: int, data: Dataset, selection_key: jax.Array
                   ) -> Callable[..., tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, ...]]]:
    """One step k of the dynamics: observe w_k (m, Q, training loss and error), then update
    w and the selection. The scan body; pure, so jit-able."""
    z, c, y, v = data.z, data.c, data.y, data.v
    root_d = math.sqrt(d)
    root_delta = math.sqrt(input_variance(problem))
    eta, lam, kappa = problem.eta, problem.lam, problem.kappa

    def step(carry: tuple[jax.Array, jax.Array], k: jax.Array
             ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, ...]]:
        w, s = carry
        h = c * (w @ v / d) + root_delta * (z @ w) / root_d  # h_μ = w·x_μ/√d
        g = s * problem.dloss(y, h) / kappa
        force = (g @ c) * v / d + root_delta * (g @ z) / root_d  # κ⁻¹ Σ_μ s ℓ' x_μ/√d
        w_next = w - eta * (lam * w + force)
        s_next = problem.selection_next(jax.random.fold_in(selection_key, k + 1), s)
        seen = (w @ v / d, w @ w / d, jnp.mean(problem.loss(y, h)),
                jnp.mean(problem.errors(y, h)))
        return (w_next, s_next), seen

    return step


def _start(problem: DmftProblem, d: int, data_key: jax.Array, selection_key: jax.Array
           ) -> tuple[Dataset, tuple[jax.Array, jax.Array]]:
    """The data set and the initial carry (w(0), s(0)) of one run."""
    data = draw_dataset(problem, d, data_key)
    s0 = problem.selection_start(jax.random.fold_in(selection_key, 0), data.y.shape)
    return data, (data.w0, s0)


def _piece(problem: DmftProblem, d: int, length: int, data: Dataset, selection_key: jax.Array,
           carry: tuple[jax.Array, jax.Array], first: jax.Array
           ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, ...]]:
    """Steps first..first+length−1 from `carry`: the carry after them and what each observed."""
    step = _step_function(problem, d, data, selection_key)
    return jax.lax.scan(step, carry, first + jnp.arange(length))


@lru_cache(maxsize=8)
def _compiled(problem: DmftProblem, d: int, length: int | None) -> Callable:
    """The jitted start (`length=None`) or piece of `length` steps of one (problem, d), kept so
    that repeated calls do not recompile."""
    if length is None:
        return jax.jit(partial(_start, problem, d))
    return jax.jit(partial(_piece, problem, d, length))


def _runner(problem: DmftProblem, d: int, length: int) -> tuple[Callable, Callable]:
    """The cached jitted (start, piece), or fresh ones when the problem cannot be hashed."""
    try:
        return _compiled(problem, d, None), _compiled(problem, d, length)
    except TypeError:  # a problem with an unhashable field: compile for this call only
        return jax.jit(partial(_start, problem, d)), jax.jit(partial(_piece, problem, d, length))


def _run(problem: DmftProblem, d: int, keys: tuple[jax.Array, jax.Array], length: int,
         done: Callable[[int], None], horizon: int | None = None) -> dict[str, np.ndarray]:
    """m, Q, training loss and training error at steps k = 0..K of one run, scanned in pieces
    of `length` steps; `done(k)` after each piece. The last piece may run past K: its extra
    steps are dropped (they observe and update, but nothing reads them).

    The run stops after the piece in which Q = |w|²/d exceeds `BLOW_UP` or stops being finite
    (the weights diverged: nothing after it is worth computing), or after `horizon`
    observations; the observations not made are NaN."""
    start, piece = _runner(problem, d, length)
    data, carry = start(*keys)
    total = problem.steps + 1  # observations at k = 0..K
    stop = total if horizon is None else min(total, horizon)
    pieces: list[tuple[np.ndarray, ...]] = []
    for first in range(0, stop, length):
        carry, seen = piece(data, keys[1], carry, jnp.int64(first))
        pieces.append(tuple(np.asarray(x) for x in seen))
        done(min(first + length, total) - 1)
        if first_blow_up(pieces[-1][1]) is not None:
            break
    names = ("m", "Q", "train_loss", "train_error")
    out = {}
    for i, name in enumerate(names):
        seen = np.concatenate([p[i] for p in pieces])[:total]
        out[name] = np.concatenate([seen, np.full(total - len(seen), np.nan)])
    return out


def first_blow_up(Q: np.ndarray) -> int | None:
    """The first index at which Q = |w|²/d is non-finite or above `BLOW_UP`, else None."""
    bad = np.flatnonzero(~(np.abs(np.asarray(Q)) < BLOW_UP))  # NaN compares false
    return int(bad[0]) if bad.size else None


def simulate_dmft(problem: DmftProblem, d: int, seeds: int = 4, seed: int = 0,
                  progress: Progress | None = None, chunk_steps: int | None = None
                  ) -> dict[str, np.ndarray]:
    """Simulate the discrete dynamics at dimension d, for `seeds` independent data sets.

    **Arguments**
    - `problem`: the model (data, loss, selection, step, initial overlaps, t_max).
    - `d`: the input dimension; n = round(α d) samples.
    - `seeds`: number of independent runs, one after the other (memory: one data set);
      run i uses `jax.random.fold_in(PRNGKey(seed), i)`, split into a data key and a
      selection key (`seed_keys`).
    - `seed`: the base seed (the same seed gives the same numbers).
    - `progress`: called with the number of steps done so far (summed over seeds, out of
      K · seeds) after each piece of a run, if given.
    - `chunk_steps`: steps per piece of the scan (default: about K/16); any value gives the
      same numbers.

    **Returns** a dict of numpy arrays: `t` (K+1,), and `m`, `Q`, `train_loss`, `train_error`,
    `test_error`, `test_loss`, each (seeds, K+1), at t_k = k η for k = 0..K. The test metrics
    are those of a fresh sample at the measured overlaps (m, Q). A run whose Q = |w|²/d
    exceeds `BLOW_UP` (or stops being finite) is stopped there, and later seeds run only up to
    that step: the observations not made are NaN (`first_blow_up` finds the first bad one).
    """
    if d < 1 or seeds < 1:
        raise ValueError(f"need d >= 1 and seeds >= 1, got d={d}, seeds={seeds}")
    K = problem.steps
    length = int(chunk_steps) if chunk_steps is not None else -(-(K + 1) // PIECES)
    if length < 1:
        raise ValueError(f"chunk_steps must be at least 1, got {chunk_steps}")
    runs: list[dict[str, np.ndarray]] = []
    horizon = K + 1  # observations worth making: up to the first blow-up of any seed
    for index in range(seeds):
        def done(k: int, index: int = index) -> None:
            if progress is not None:
                progress(index * K + k)

        runs.append(_run(problem, d, seed_keys(seed, index), min(length, K + 1), done,
                         horizon))
        bad = first_blow_up(runs[-1]["Q"])
        if bad is not None:
            horizon = min(horizon, bad + 1)
    result = {name: np.stack([r[name] for r in runs]) for name in runs[0]}
    with np.errstate(over="ignore", invalid="ignore"):  # a diverged run: NaN, reported later
        test_error, test_loss = problem.test_metrics(result["m"].ravel(),
                                                     result["Q"].ravel())
    shape = result["m"].shape
    result["test_error"] = np.asarray(test_error).reshape(shape)
    result["test_loss"] = np.asarray(test_loss).reshape(shape)
    return {"t": problem.times, **result}
