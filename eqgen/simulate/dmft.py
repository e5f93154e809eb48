"""Finite-d simulation of multi-pass SGD on a reused data set (THEORY §2.1), for a `DmftProblem`.

This is the ground truth the DMFT is checked against, so it runs the *same discrete dynamics*
the DMFT describes, with nothing added or averaged:

- n = round(α d) samples drawn once and reused at every step; v* ~ N(0, I_d) rescaled so
  |v*|² = d exactly. Mixture: x_μ = c_μ v*/√d + √Δ z_μ, label from the cluster. GLM:
  x_μ ~ N(0, I_d) (Δ = 1, c = 0), y_μ = f(x_μ·v*/√d).
- w(0) = m₀ v* + w⊥ with w⊥ Gaussian, projected orthogonal to v* and rescaled so |w⊥|²/d = q₀
  exactly (the DMFT starts from exactly these overlaps).
- w(t+η) = w − η [λ w + κ⁻¹ Σ_μ s_μ(t) ℓ'(y_μ, h_μ) x_μ/√d], h_μ = w·x_μ/√d, with the
  selection s from the problem's Markov chain (GD: s ≡ 1).

Only the noise matrix Z (n × d) is stored; the inputs are never formed, since
h_μ = c_μ (w·v*)/d + √Δ z_μ·w/√d and Σ_μ g_μ x_μ/√d = (Σ_μ g_μ c_μ) v*/d + √Δ Zᵀg/√d.
Time is a `lax.scan` (one jitted program per problem and d, cached); seeds run one after the
other, so memory stays at one n × d matrix (d = 4000, α = 3: 384 MB in float64).
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

Progress = Callable[[str], None]


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
    """Draw the n samples, the signal v* and w(0) (THEORY §2.1); pure, so jit-able."""
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


def _trajectory(problem: DmftProblem, d: int, data_key: jax.Array,
                selection_key: jax.Array) -> dict[str, jax.Array]:
    """m, Q, training loss and training error at steps k = 0..K of one simulation."""
    data = draw_dataset(problem, d, data_key)
    z, c, y, v = data.z, data.c, data.y, data.v
    root_d = math.sqrt(d)
    root_delta = math.sqrt(input_variance(problem))
    eta, lam, kappa = problem.eta, problem.lam, problem.kappa

    def fields(w: jax.Array) -> jax.Array:
        """h_μ = w·x_μ/√d."""
        return c * (w @ v / d) + root_delta * (z @ w) / root_d

    def observe(w: jax.Array, h: jax.Array) -> tuple[jax.Array, ...]:
        return (w @ v / d, w @ w / d, jnp.mean(problem.loss(y, h)),
                jnp.mean(problem.errors(y, h)))

    def step(carry: tuple[jax.Array, jax.Array], k: jax.Array
             ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, ...]]:
        w, s = carry
        h = fields(w)
        g = s * problem.dloss(y, h) / kappa
        force = (g @ c) * v / d + root_delta * (g @ z) / root_d  # κ⁻¹ Σ_μ s ℓ' x_μ/√d
        w_next = w - eta * (lam * w + force)
        s_next = problem.selection_next(jax.random.fold_in(selection_key, k + 1), s)
        return (w_next, s_next), observe(w, h)

    s0 = problem.selection_start(jax.random.fold_in(selection_key, 0), y.shape)
    (w_last, _), history = jax.lax.scan(step, (data.w0, s0), jnp.arange(problem.steps))
    last = observe(w_last, fields(w_last))
    names = ("m", "Q", "train_loss", "train_error")
    return {name: jnp.concatenate([series, value[None]])
            for name, series, value in zip(names, history, last, strict=True)}


@lru_cache(maxsize=8)
def _compiled(problem: DmftProblem, d: int) -> Callable[..., dict[str, jax.Array]]:
    """The jitted trajectory of one (problem, d), kept so that repeated calls do not recompile."""
    return jax.jit(partial(_trajectory, problem, d))


def _runner(problem: DmftProblem, d: int) -> Callable[..., dict[str, jax.Array]]:
    """The cached jitted trajectory, or a fresh one when the problem cannot be hashed."""
    try:
        return _compiled(problem, d)
    except TypeError:  # a problem with an unhashable field: compile for this call only
        return jax.jit(partial(_trajectory, problem, d))


def simulate_dmft(problem: DmftProblem, d: int, seeds: int = 4, seed: int = 0,
                  progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Simulate the discrete dynamics at dimension d, for `seeds` independent data sets.

    **Arguments**
    - `problem`: the model (data, loss, selection, step, initial overlaps, t_max).
    - `d`: the input dimension; n = round(α d) samples.
    - `seeds`: number of independent runs; run i uses `jax.random.fold_in(PRNGKey(seed), i)`,
      split into a data key and a selection key (`seed_keys`).
    - `seed`: the base seed (the same seed gives the same numbers).
    - `progress`: called with a short message after each run, if given.

    **Returns** a dict of numpy arrays: `t` (K+1,), and `m`, `Q`, `train_loss`, `train_error`,
    `test_error`, `test_loss`, each (seeds, K+1), at t_k = k η for k = 0..K. The test metrics
    are those of a fresh sample at the measured overlaps (m, Q).
    """
    if d < 1 or seeds < 1:
        raise ValueError(f"need d >= 1 and seeds >= 1, got d={d}, seeds={seeds}")
    run = _runner(problem, d)
    runs: list[dict[str, np.ndarray]] = []
    for index in range(seeds):
        out = run(*seed_keys(seed, index))
        runs.append({name: np.asarray(value) for name, value in out.items()})
        if progress is not None:
            progress(f"simulation d={d}: seed {index + 1}/{seeds} done")
    result = {name: np.stack([r[name] for r in runs]) for name in runs[0]}
    test_error, test_loss = problem.test_metrics(result["m"].ravel(), result["Q"].ravel())
    shape = result["m"].shape
    result["test_error"] = np.asarray(test_error).reshape(shape)
    result["test_loss"] = np.asarray(test_loss).reshape(shape)
    return {"t": problem.times, **result}
