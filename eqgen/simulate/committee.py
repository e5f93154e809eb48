"""Finite-d online SGD of a committee (two-layer) model: the ground truth for its ODEs.

The simulation is driven by the *same* generated module as the theory (docs/theory.md, Setting):

- inputs x ~ N(0, I_d), fresh at every step (one pass), B of them per step;
- student f(x) = c_p Σ_j a_j σ(λ_j), teacher f*(x) = c_k Σ_r a*_r g(ν_r), with λ = Wx/√d,
  ν = W*x/√d and σ, g, c_p, c_k taken from the module (`sigma`, `g`, `scalars`);
- labels y = f* + √Δ ξ; error signal 𝓔 = y − f for the square loss, else the module's
  `error_signal(y, ŷ)` (= −∂ℓ/∂ŷ, derived by sympy);
- updates w_j += (γ/B) Σ_batch c_p a_j 𝓔 σ'(λ_j) x/√d and, for a trained second layer,
  a_j += (γ_a/B) Σ_batch c_p 𝓔 σ(λ_j) with γ_a = rate · γ/d;
- time t = steps · γ c_p / d (steps · (γ c_p)²/(d B) in the noise-dominated regime, whose ODE
  runs on that clock).

The order parameters Q = WWᵀ/d, M = WW*ᵀ/d, P = W*W*ᵀ/d and a are measured from the weights at
the output times, and the risk is evaluated from them with the module's `observables`, exactly
as for the ODE. Optionally (`test_samples = N > 0`) the risk is also estimated on a held-out test
set: N fresh samples (x, ξ) per seed and output time, never used for training, on which the
mean loss E[ℓ(y, f)] (½(y − f)² for the square loss, labels with their noise) is `risk_test`,
the Monte Carlo counterpart of the analytic `risk`.

Initial weights are either drawn as the spec's `init random(...)` says (at the simulation's d)
or built so that their overlaps equal the given Q, M, P exactly. They are shared by all seeds,
which differ only in the stream of samples, so the theory can start from the very overlaps the
simulation starts from.

Implementation: JAX, float64. Each seed is one trajectory; seeds are vectorised with `vmap`.
Samples are drawn a chunk of steps at a time (one random draw of about 2¹⁸ numbers per seed,
which XLA spreads over the CPU cores) and the steps of a chunk run in a `lax.scan`. The
sample of global step n is a fixed function of (seed, seed index, n, d, B), so a trajectory
does not depend on the output times, on how many seeds run beside it, nor on how the run is cut
into pieces for the progress bar. The held-out samples of seed i at step n come from their own
stream (`held_out_key`), a fixed function of (seed, i, n), and are drawn inside the jitted,
seed-vectorised measurement in blocks of about 2¹⁸ numbers (a `fori_loop`), so N may be large.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from eqgen.errors import NumericalError, UsageError
from eqgen.spec.committee import CommitteeSpec, Resolved, random_weights

MAX_D = 10**7  # input dimension
MAX_SEEDS = 10_000
CHUNK_FLOATS = 2**18  # samples drawn at once per seed (2 MiB of float64: in cache)
MAX_CHUNK = 256  # steps per chunk
PIECE_CHUNKS = 64  # chunks per call of the compiled stepper (progress granularity)
GROUP_BYTES = 2**28  # memory for the seeds vectorised together (weights + one chunk)
SEED_BYTES = 2**34  # refuse a single trajectory that needs more memory than this
MAX_STEPS = 10**12
BLOW_UP = 1e12  # an overlap this large means SGD diverged (as eqgen.runtime.health.BLOW_UP)
MAX_TEST_SAMPLES = 10**8  # held-out samples per seed and output time
TEST_STREAM = 2**32 - 1  # folded into the base key for the held-out samples (seed indices < it)
STEP_OVERHEAD = 2e-6  # seconds per SGD step and seed, whatever d (see `step_seconds`)
STEP_PER_INPUT = 1.5e-8  # seconds per step, seed and input coordinate
WARN_SECONDS = 600.0  # warn about a simulation estimated to take longer than this
MAX_SECONDS = 86400.0  # refuse one estimated to take longer (EQGEN_ALLOW_LONG_SIMULATION)


def check_dimension(d: Any) -> int:
    """`d` as an int, or a `UsageError` saying what a valid input dimension is."""
    if isinstance(d, bool) or not isinstance(d, int | np.integer | float) or \
            not float(d).is_integer() or not 1 <= d <= MAX_D:
        raise UsageError(f"--d must be a whole number between 1 and {MAX_D:,}, got {d!r}"
                         "\n  hint: the input dimension of the simulated network, e.g. --d 1000")
    return int(d)


def check_seeds(seeds: Any, seed: Any) -> tuple[int, int]:
    """`seeds` (number of independent trajectories) and `seed` (base seed) as ints."""
    if isinstance(seeds, bool) or not isinstance(seeds, int | np.integer) or \
            not 1 <= seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds must be a whole number between 1 and {MAX_SEEDS}, "
                         f"got {seeds!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or \
            not 0 <= seed < 2**63:
        raise UsageError(f"--seed must be a whole number ≥ 0, got {seed!r}")
    return int(seeds), int(seed)


def check_test_samples(test_samples: Any) -> int:
    """`test_samples` (held-out samples per seed and output time; 0: none) as an int."""
    if isinstance(test_samples, bool) or not isinstance(test_samples, int | np.integer) or \
            not 0 <= test_samples <= MAX_TEST_SAMPLES:
        raise UsageError(f"--test-samples must be a whole number between 0 and "
                         f"{MAX_TEST_SAMPLES:.0e}, got {test_samples!r}\n  hint: held-out "
                         "samples per seed and output time, e.g. --test-samples 10000")
    return int(test_samples)


def time_per_step(regime: str, gamma: float, c_p: float, d: int, batch: int) -> float:
    """ODE time per SGD step: γ c_p / d (docs/theory.md, Time), or (γ c_p)²/(d B) for the
    noise-dominated regime, whose equations are written on that clock (docs/theory.md, Regimes)."""
    if regime == "noise_dominated":
        return (gamma * c_p) ** 2 / (d * batch)
    return gamma * c_p / d


def output_steps(times: Sequence[float] | np.ndarray, dt: float) -> np.ndarray:
    """The steps nearest to the requested times, with step 0, sorted and without repeats."""
    steps = np.rint(np.asarray(times, dtype=float) / dt)
    if steps.size and steps.max() > MAX_STEPS:
        raise UsageError(f"the simulation would need {steps.max():.3g} SGD steps (more than "
                         f"{MAX_STEPS:.0e})\n  hint: lower --t-max or --d")
    return np.unique(np.concatenate([[0], steps.astype(np.int64)]))


def step_seconds(d: int, batch: int, width: int) -> float:
    """A rough cost of one SGD step of one seed, in seconds: a fixed overhead plus a part
    linear in d·B (drawing the inputs and two matrix–vector products), growing slowly with
    the widths p + k. Fitted to the throughput measured on two CPU cores (docs/comparison.md,
    Throughput): about 6 700 steps/s at d = 10⁴ (p = k = 8) and 7·10⁴ at d = 10³ (p = k = 2)
    for one seed; only its order of magnitude matters."""
    return STEP_OVERHEAD + STEP_PER_INPUT * d * batch * max(1.0, width / 16)


def check_duration(total_steps: int, d: int, batch: int, width: int) -> float:
    """The estimated wall time of `total_steps` SGD steps (summed over seeds), in seconds:
    a warning above `WARN_SECONDS`, a `UsageError` above `MAX_SECONDS` (unless
    $EQGEN_ALLOW_LONG_SIMULATION is set), so that nobody is surprised by hours of SGD."""
    seconds = total_steps * step_seconds(d, batch, width)
    if seconds <= WARN_SECONDS:
        return seconds
    what = (f"the simulation runs {total_steps:.3g} SGD steps (t_max · d / (γ c_p) per seed, "
            f"times the seeds) at d = {d}: about {_duration(seconds)} at a typical "
            f"{1 / step_seconds(d, batch, width):.2g} steps/s (a rough estimate)")
    if seconds > MAX_SECONDS and not os.environ.get("EQGEN_ALLOW_LONG_SIMULATION"):
        raise UsageError(f"{what}, more than {_duration(MAX_SECONDS)}\n  hint: lower --t-max, "
                         "--d or --seeds (the cost to a fixed t grows like d²), or set "
                         "EQGEN_ALLOW_LONG_SIMULATION=1 to run it anyway")
    warnings.warn(f"{what}; lower --t-max, --d or --seeds for a quicker run", stacklevel=3)
    return seconds


def _duration(seconds: float) -> str:
    """`40 minutes`, `3.2 hours`, `12 days`, `4.1e+03 years`."""
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600)):
        if seconds >= 1.5 * size:
            return f"{seconds / size:.2g} {unit}"
    return f"{seconds / 60:.0f} minutes"


def chunk_size(d: int, batch: int) -> int:
    """Steps per random draw: a power of two with about `CHUNK_FLOATS` samples per seed."""
    c = max(1, CHUNK_FLOATS // (d * batch))
    return int(min(MAX_CHUNK, 2 ** int(np.floor(np.log2(c)))))


def test_block(d: int, test_samples: int) -> int:
    """Held-out samples drawn at once: about `CHUNK_FLOATS` numbers per seed, at most all."""
    return int(max(1, min(test_samples, CHUNK_FLOATS // d)))


# ---------------------------------------------------------------------------------------------
# initial weights


def weights_with_overlaps(Q: np.ndarray, M: np.ndarray, P: np.ndarray, d: int,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Student W (p×d) and teacher W* (k×d) whose overlaps are exactly Q, M and P.

    The joint Gram matrix Ω = [[Q, M], [Mᵀ, P]] = L Lᵀ is factored by its eigendecomposition
    (L has one column per positive eigenvalue, so singular Ω are fine), and the weights are
    √d L Oᵀ with O a random d×r matrix of orthonormal columns: then [W; W*][W; W*]ᵀ/d = Ω.
    Raises `UsageError` when Ω has rank r > d (no d-dimensional weights have these overlaps).
    """
    p, k = M.shape
    omega = np.block([[Q, M], [M.T, P]]).astype(float)
    omega = (omega + omega.T) / 2
    vals, vecs = np.linalg.eigh(omega)
    tol = 1e-12 * max(float(np.abs(vals).max(initial=0.0)), 1e-300)
    keep = vals > tol
    rank = int(keep.sum())
    if rank > d:
        raise UsageError(
            f"--d {d} is too small for the initial overlaps: Ω = [[Q, M], [Mᵀ, P]] has rank "
            f"{rank}, so the weights need d ≥ {rank}\n  hint: use --d {rank} or more, or "
            "initial overlaps of lower rank")
    L = vecs[:, keep] * np.sqrt(vals[keep])
    rng = np.random.default_rng(seed)
    O, _ = np.linalg.qr(rng.standard_normal((d, rank)))
    V = np.sqrt(d) * (L @ O.T)
    return V[:p], V[p:]


def initial_weights(spec: CommitteeSpec, r: Resolved, d: int, seed: int,
                    explicit: set[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """Initial (W, W*, description) at dimension d.

    With the spec's `init random(...)` and no explicit Q, M or P (in the spec or `explicit`),
    the weights are drawn as it says (its seed, teacher and scale) at the simulation's d, by
    the same function the theory uses for its initial overlaps; otherwise they are built from
    the resolved overlaps with `weights_with_overlaps` (random directions from `seed`).
    """
    from eqgen.spec.values import evaluate

    ri = spec.random_init
    if ri is not None and not ({"Q", "M", "P"} & (explicit | set(spec.init))):
        env = dict(r.params)
        wseed = int(evaluate(ri.seed, env))
        scale = float(evaluate(ri.scale, env)) if ri.scale is not None else 1.0
        if ri.teacher == "orthonormal" and d < r.k:
            raise UsageError(f"--d {d} is too small: k = {r.k} orthonormal teacher vectors "
                             f"need d ≥ {r.k}")
        W, Ws = random_weights(r.p, r.k, d, wseed, ri.teacher, scale)
        return W, Ws, (f"random(d = {d}, seed = {wseed}, teacher = {ri.teacher}, "
                       f"scale = {scale:g})")
    W, Ws = weights_with_overlaps(r.init["Q"], r.init["M"], r.init["P"], d, seed)
    return W, Ws, "constructed to match the initial overlaps Q, M, P"


# ---------------------------------------------------------------------------------------------
# the compiled stepper


@functools.cache
def _kernels(module: ModuleType, batch: int, chunk: int, trained: bool
             ) -> tuple[Callable, Callable]:
    """(advance, measure), jitted and vectorised over seeds, for one generated module.

    `advance(W, a, keys, Ws, a_star, s, start, stop)` runs the global steps start..stop−1 of
    every seed and returns (W, a, blown): per seed, the first of those steps at which a
    preactivation λ_j² (≈ Q_jj) passed `BLOW_UP` or was not finite, else −1 — so that a
    divergence is dated to its step at no extra cost. `measure(W, Ws)` gives the overlaps
    (Q, M) of every seed.
    """
    import jax
    import jax.numpy as jnp

    sigma, sigma_prime, g = module.sigma, module.sigma_prime, module.g
    square, error_signal = _error_signal(module)

    def one_seed(W, a, key, Ws, a_star, s, start, stop):  # noqa: ANN001, ANN202
        d = W.shape[1]
        root_d = jnp.sqrt(jnp.asarray(d, dtype=W.dtype))
        lr = s["gamma"] * s["c_p"] / batch  # first layer: (γ/B) c_p
        lr_a = s["rate"] * s["gamma"] / d * s["c_p"] / batch  # second layer: (γ_a/B) c_p

        def step(carry, sample):  # noqa: ANN001, ANN202
            W, a, blown = carry
            x, xi, active, n = sample  # x: (B, d), xi: (B,)
            lam = (W @ x.T).T / root_d  # (B, p); W @ xᵀ avoids transposing W every step
            # λ_j² ≈ Q_jj: the first step at which it passes BLOW_UP (or is not finite)
            exploded = active & ~(jnp.max(lam * lam) < BLOW_UP)
            blown = jnp.where((blown < 0) & exploded, n, blown)
            nu = (Ws @ x.T).T / root_d  # (B, k)
            f = s["c_p"] * (sigma(lam) @ a)
            fstar = s["c_k"] * (g(nu) @ a_star)
            y = fstar + jnp.sqrt(s["Delta"]) * xi
            err = y - f if square else error_signal(y, f)
            err = jnp.where(active, err, 0.0)
            grad = (lr * err)[:, None] * sigma_prime(lam) * a[None, :]  # (B, p)
            W = W + grad.T @ x / root_d
            if trained:
                a = a + lr_a * (err @ sigma(lam))
            return (W, a, blown), None

        def run_chunk(c, carry):  # noqa: ANN001, ANN202
            kx, kxi = jax.random.split(jax.random.fold_in(key, c))
            x = jax.random.normal(kx, (chunk, batch, d), dtype=W.dtype)
            xi = jax.random.normal(kxi, (chunk, batch), dtype=W.dtype)
            n = c * chunk + jnp.arange(chunk)
            carry, _ = jax.lax.scan(step, carry, (x, xi, (n >= start) & (n < stop), n))
            return carry

        return jax.lax.fori_loop(start // chunk, (stop + chunk - 1) // chunk, run_chunk,
                                 (W, a, jnp.asarray(-1, dtype=start.dtype)))

    advance = jax.jit(jax.vmap(one_seed, in_axes=(0, 0, 0, None, None, None, None, None)))

    def overlaps(W, Ws):  # noqa: ANN001, ANN202
        d = W.shape[1]
        return W @ W.T / d, W @ Ws.T / d

    measure = jax.jit(jax.vmap(overlaps, in_axes=(0, None)))
    return advance, measure


def _error_signal(module: ModuleType) -> tuple[bool, Callable | None]:
    """(square loss?, the module's error signal 𝓔(y, ŷ) for other losses)."""
    square = getattr(module, "SQUARE_LOSS", True)
    error_signal = getattr(module, "error_signal", None)
    if not square and error_signal is None:
        raise UsageError(f"generated module {module.__name__} has no error_signal: regenerate "
                         "it with `eqgen generate`")
    return square, error_signal


def held_out_key(base: Any, index: Any, step: Any) -> Any:
    """The key of the held-out samples of seed `index` at global step `step` (an int64 that
    may exceed 32 bits: folded in as two 32-bit halves). Its own stream, apart from the
    training samples' keys `fold_in(base, index)`, since `index < TEST_STREAM`."""
    import jax
    import jax.numpy as jnp

    step = jnp.asarray(step, dtype=jnp.int64)
    key = jax.random.fold_in(jax.random.fold_in(base, jnp.uint32(TEST_STREAM)),
                             jnp.asarray(index).astype(jnp.uint32))
    key = jax.random.fold_in(key, (step & 0xFFFFFFFF).astype(jnp.uint32))
    return jax.random.fold_in(key, (step >> 32).astype(jnp.uint32))


@functools.cache
def _held_out_kernel(module: ModuleType, samples: int, block: int) -> Callable:
    """`held_out(W, a, base, index, step, Ws, a_star, s)`, jitted and vectorised over seeds
    (`W`, `a` and the seed indices `index`): the mean and the sample variance of the loss
    ℓ(y, f) over `samples` fresh held-out samples per seed, drawn from `held_out_key`.

    The samples are drawn `block` at a time inside a `fori_loop` (memory: one block); the
    blocks' means and sums of squared deviations are merged one after the other (Chan et al.),
    so the variance loses no precision to a large mean.
    """
    import jax
    import jax.numpy as jnp

    sigma, g = module.sigma, module.g
    square, _ = _error_signal(module)
    loss = None if square else module.loss
    blocks = -(-samples // block)

    def one_seed(W, a, base, index, step, Ws, a_star, s):  # noqa: ANN001, ANN202
        d = W.shape[1]
        root_d = jnp.sqrt(jnp.asarray(d, dtype=W.dtype))
        key = held_out_key(base, index, step)

        def body(b, acc):  # noqa: ANN001, ANN202
            kx, kxi = jax.random.split(jax.random.fold_in(key, b))
            x = jax.random.normal(kx, (block, d), dtype=W.dtype)
            xi = jax.random.normal(kxi, (block,), dtype=W.dtype)
            f = s["c_p"] * (sigma(x @ W.T / root_d) @ a)
            fstar = s["c_k"] * (g(x @ Ws.T / root_d) @ a_star)
            y = fstar + jnp.sqrt(s["Delta"]) * xi
            ell = (y - f) ** 2 / 2 if loss is None else loss(y, f)
            valid = b * block + jnp.arange(block) < samples
            n_b = jnp.minimum(block, samples - b * block).astype(W.dtype)
            mean_b = jnp.sum(jnp.where(valid, ell, 0.0)) / n_b
            m2_b = jnp.sum(jnp.where(valid, (ell - mean_b) ** 2, 0.0))
            n, mean, m2 = acc
            total = n + n_b
            delta = mean_b - mean
            return total, mean + delta * n_b / total, m2 + m2_b + delta**2 * n * n_b / total

        zero = jnp.zeros((), dtype=W.dtype)
        n, mean, m2 = jax.lax.fori_loop(0, blocks, body, (zero, zero, zero))
        return mean, m2 / jnp.maximum(n - 1, 1)

    return jax.jit(jax.vmap(one_seed, in_axes=(0, 0, None, 0, None, None, None, None)))


@dataclass
class Trajectories:
    """Raw simulation output: measured overlaps of every seed at every output step, and the
    held-out loss (its mean and per-sample variance) when `test_samples > 0`."""

    steps: np.ndarray  # (T,)
    t: np.ndarray  # (T,)
    Q: np.ndarray  # (T, S, p, p)
    M: np.ndarray  # (T, S, p, k)
    a: np.ndarray  # (T, S, p)
    P: np.ndarray  # (k, k)
    a_star: np.ndarray  # (k,)
    wall: float  # seconds, compilation included
    chunk: int
    test_samples: int = 0
    risk_test: np.ndarray | None = None  # (T, S) mean loss on the held-out samples
    risk_test_var: np.ndarray | None = None  # (T, S) its per-sample variance


def run(module: ModuleType, scalars: Mapping[str, float], W0: np.ndarray, Ws: np.ndarray,
        a0: np.ndarray, a_star: np.ndarray, *, steps: np.ndarray, dt: float, batch: int,
        trained: bool, seeds: int, seed: int, progress: bool | None = None,
        label: str = "simulating", test_samples: int = 0) -> Trajectories:
    """Run `seeds` SGD trajectories from (W0, a0) against the teacher (Ws, a_star), measuring
    the overlaps at each of `steps` (sorted, starting at 0) and, with `test_samples = N > 0`,
    the loss on N fresh held-out samples per seed (`risk_test`; its Monte Carlo error is
    √(risk_test_var / N)).

    The seeds are vectorised together (in groups, one after the other, when they would not fit
    in `GROUP_BYTES`). Raises `NumericalError` when the weights become non-finite or explode.
    """
    import jax
    import jax.numpy as jnp

    from eqgen.simulate.progress import ProgressBar

    p, d = W0.shape
    chunk = chunk_size(d, batch)
    block = test_block(d, test_samples) if test_samples else 0
    per_seed = 8 * (p * d + max(chunk * batch * d + chunk * (batch + 1), block * (d + 1)))
    if per_seed + 8 * Ws.size > SEED_BYTES:
        raise UsageError(f"one trajectory at d = {d}, p = {p} needs about "
                         f"{per_seed / 2**30:.1f} GiB\n  hint: lower --d")
    size = int(max(1, min(seeds, GROUP_BYTES // per_seed)))
    advance, measure = _kernels(module, batch, chunk, trained)
    held_out = _held_out_kernel(module, test_samples, block) if test_samples else None
    s = {k: jnp.asarray(float(v)) for k, v in scalars.items()}
    Ws_j, a_star_j = jnp.asarray(Ws), jnp.asarray(a_star, dtype=jnp.float64)
    base = jax.random.key(seed)
    T, last = len(steps), int(steps[-1])
    Q = np.empty((T, seeds, p, p))
    M = np.empty((T, seeds, p, Ws.shape[0]))
    A = np.empty((T, seeds, p))
    R = np.full((T, seeds), np.nan) if test_samples else None
    V = np.full((T, seeds), np.nan) if test_samples else None
    piece = chunk * PIECE_CHUNKS
    t0 = time.perf_counter()
    failure: NumericalError | None = None
    limit = T  # output times measured on every seed: lowered to the first failure
    with ProgressBar(label, last * seeds, "steps", enabled=progress) as bar:
        for lo in range(0, seeds, size):
            idx = np.arange(lo, min(seeds, lo + size))
            keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(idx))
            W = jnp.broadcast_to(jnp.asarray(W0), (len(idx), p, d))
            a = jnp.broadcast_to(jnp.asarray(a0, dtype=jnp.float64), (len(idx), p))
            current, good = 0, 0  # the last step at which every seed was known sound
            for i in range(limit):
                target = int(steps[i])
                error = None
                while current < target:
                    nxt = min(target, current + piece)
                    W, a, blown = advance(W, a, keys, Ws_j, a_star_j, s, jnp.int64(current),
                                          jnp.int64(nxt))
                    current = nxt
                    if bar.enabled:
                        W.block_until_ready()
                        bar.update(lo * last + current * len(idx))
                    first = first_blown(np.asarray(blown))
                    if first is None:
                        good = current
                        continue
                    # a preactivation exploded at step `first`: confirmed on the overlaps,
                    # the failure is dated there rather than at the next output time
                    error = _measured(measure, W, Ws_j, a, idx, first - 1, first, dt)[3]
                    if error is not None:
                        break
                if error is None:
                    q, m, a_now, error = _measured(measure, W, Ws_j, a, idx, good, current, dt)
                if error is not None:  # this and later times are lost for every seed
                    failure, limit = error, i
                    break
                Q[i, idx], M[i, idx], A[i, idx] = q, m, a_now
                good = current
                if held_out is not None:
                    mean, var = held_out(W, a, base, jnp.asarray(idx), jnp.int64(target),
                                         Ws_j, a_star_j, s)
                    R[i, idx], V[i, idx] = np.asarray(mean), np.asarray(var)
        bar.close(last * seeds)
    raw = Trajectories(steps=steps[:limit], t=steps[:limit] * dt, Q=Q[:limit], M=M[:limit],
                       a=A[:limit], P=Ws @ Ws.T / d, a_star=np.asarray(a_star, dtype=float),
                       wall=time.perf_counter() - t0, chunk=chunk, test_samples=test_samples,
                       risk_test=None if R is None else R[:limit],
                       risk_test_var=None if V is None else V[:limit])
    if failure is not None:
        failure.partial = raw  # the output times before the failure, for every seed
        raise failure
    return raw


def first_blown(blown: np.ndarray) -> int | None:
    """The earliest step at which some seed's preactivations exploded (`advance`'s third
    output, −1 where none did), or None."""
    hit = blown[blown >= 0]
    return int(hit.min()) if hit.size else None


def _measured(measure: Callable, W: Any, Ws: Any, a: Any, idx: np.ndarray, good: int,
              now: int, dt: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, NumericalError | None]:
    """The overlaps (Q, M) and readouts of the seeds `idx` at step `now`, and `divergence` of
    them (`good`: the last step at which they were checked sound)."""
    q, m = measure(W, Ws)
    q, m, a_now = np.asarray(q), np.asarray(m), np.asarray(a)
    times = np.array([good, now] if 0 <= good < now else [now]) * dt
    return q, m, a_now, divergence(q, m, a_now, idx, times)


def divergence(Q: np.ndarray, M: np.ndarray, a: np.ndarray, idx: np.ndarray,
               times: np.ndarray) -> NumericalError | None:
    """The `NumericalError` to raise when a seed's measured overlaps (Q: (S, p, p), M, a)
    at the last of `times` are non-finite or above `BLOW_UP`, else None. The error's time is
    that of the measurement; the last good time (where every seed was checked sound) is the
    one before it."""
    size = np.concatenate([np.abs(x).reshape(len(idx), -1) for x in (Q, M, a)], axis=1)
    bad = ~(size.max(axis=1) < BLOW_UP)  # NaN compares false: caught too
    if not bad.any():
        return None
    before = f"; last good time t = {times[-2]:.6g}" if len(times) > 1 else ""
    return NumericalError(
        f"the simulation diverged: the weights of seed {int(idx[bad][0])} became non-finite "
        f"or exploded (an overlap above {BLOW_UP:.0e}){before}", t=float(times[-1]),
        hint="lower the learning rate (e.g. --set gamma=...): at finite d, SGD diverges when "
        "γ c_p is too large")


# ---------------------------------------------------------------------------------------------
# the whole simulation of a model


def simulate(model: Any, r: Resolved, explicit: set[str], *, d: int, seeds: int, seed: int,
             times: np.ndarray, progress: bool | None = None, test_samples: int = 0) -> Any:
    """Simulate `model` (an `eqgen.Model` of the committee family) with numbers `r` and return
    a `Solution`: the seed means of the observables and of the states at the simulated times
    nearest to `times`, each followed by its standard error over seeds (`<name>_stderr`; for
    states, only those that evolve).

    `explicit` names the initial states given explicitly by the caller (they take precedence
    over the spec's `init random(...)`). With `test_samples = N > 0` the observables also hold
    `risk_test` (and `risk_test_stderr`), right after `risk`: the mean loss on N fresh held-out
    samples per seed and output time.
    """
    from eqgen.runtime.solution import Solution

    module = model.module
    params = {k: float(v) for k, v in r.params.items()}
    s = {k: float(v) for k, v in module.scalars(params).items()}
    batch = int(s["batch"])
    if batch != r.batch:  # the generated module and the resolved spec must agree
        raise NumericalError(f"internal error: batch {batch} in the generated module, "
                             f"{r.batch} in the spec")
    dt = time_per_step(module.REGIME, s["gamma"], s["c_p"], d, batch)
    steps = output_steps(times, dt)
    W0, Ws, how = initial_weights(model.spec, r, d, seed, explicit)
    trained = "a" in module.EVOLVING
    label = f"simulating {model.name} (d = {d}, {seeds} seed{'s' if seeds != 1 else ''})"
    check_duration(int(steps[-1]) * seeds, d, batch, r.p + r.k)

    def solution(raw: Trajectories) -> Solution:
        return _solution(model, module, r, raw, d=d, seed=seed, batch=batch, dt=dt, how=how)

    try:
        raw = run(module, s, W0, Ws, r.init["a"], r.init["a_star"], steps=steps, dt=dt,
                  batch=batch, trained=trained, seeds=seeds, seed=seed, progress=progress,
                  label=label, test_samples=test_samples)
    except NumericalError as e:  # the seed means up to the last good time, marked partial
        if isinstance(e.partial, Trajectories):
            e.partial = solution(e.partial).mark_partial(e) if len(e.partial.steps) else None
        raise
    return solution(raw)


def _solution(model: Any, module: ModuleType, r: Resolved, raw: Trajectories, *, d: int,
              seed: int, batch: int, dt: float, how: str) -> Any:
    """The `Solution` of `simulate` from the raw trajectories (module doc of `simulate`)."""
    import eqgen
    from eqgen.runtime.solution import Solution

    params = {k: float(v) for k, v in r.params.items()}
    test_samples = raw.test_samples
    per_seed_obs = per_seed_observables(module, raw, params)
    if raw.risk_test is not None:  # the held-out estimate right after the analytic risk
        per_seed_obs = _insert_after(per_seed_obs, "risk", "risk_test", raw.risk_test)
    observables: dict[str, np.ndarray] = {}
    for name, v in per_seed_obs.items():
        observables[name] = v.mean(axis=1)
        observables[f"{name}_stderr"] = standard_error(v, axis=1)
    states: dict[str, np.ndarray] = {}
    for name, v in per_seed_states(module, raw).items():
        states[name] = v.mean(axis=1)
        if name in module.EVOLVING:
            states[f"{name}_stderr"] = standard_error(v, axis=1)
    S = raw.Q.shape[1]
    total = int(raw.steps[-1]) * S
    meta = {
        "model": model.name, "title": model.title, "family": model.family,
        "kind": "simulation", "parameters": params, "p": r.p, "k": r.k,
        "regime": module.REGIME, "d": d, "seeds": S, "seed": seed, "batch": batch,
        "time_per_step": dt, "steps": int(raw.steps[-1]), "initial_weights": how,
        "seeds_share_initial_weights": True, "chunk": raw.chunk,
        "wall_seconds": raw.wall, "steps_per_second": total / raw.wall if raw.wall else None,
        "test_samples": test_samples,
        "spec_sha256": model.spec.hash, "eqgen": eqgen.__version__,
    }
    if raw.risk_test is not None:
        meta["risk_test"] = (f"mean loss on {test_samples} fresh held-out samples per seed and "
                             "output time (labels with their noise); risk_test_mc_error is the "
                             "largest Monte Carlo standard error of one seed's value, "
                             "√(var ℓ / N)")
        meta["risk_test_mc_error"] = float(np.sqrt(np.nanmax(raw.risk_test_var)
                                                   / test_samples))
    return Solution(raw.t, observables, states, meta)


def per_seed_states(module: ModuleType, raw: Trajectories) -> dict[str, np.ndarray]:
    """The measured states of every seed, (T, S, ...) each, in the module's order."""
    T, S = raw.Q.shape[:2]
    every = {"Q": raw.Q, "M": raw.M, "a": raw.a,
             "P": np.broadcast_to(raw.P, (T, S, *raw.P.shape)),
             "a_star": np.broadcast_to(raw.a_star, (T, S, *raw.a_star.shape))}
    return {name: every[name] for name in module.STATES}


def per_seed_observables(module: ModuleType, raw: Trajectories, params: Mapping[str, float]
                         ) -> dict[str, np.ndarray]:
    """The module's observables (risk, excess risk) evaluated analytically from the overlaps
    measured on every seed: (T, S) each, in the module's order."""
    import jax
    import jax.numpy as jnp

    T, S = raw.Q.shape[:2]
    flat = {k: jnp.asarray(np.reshape(v, (T * S, *v.shape[2:])))
            for k, v in per_seed_states(module, raw).items()}
    pj = {k: jnp.asarray(float(v)) for k, v in params.items()}
    obs = jax.jit(jax.vmap(module.observables, in_axes=(0, None)))(flat, pj)
    return {name: np.asarray(obs[name]).reshape(T, S) for name in module.OBSERVABLES}


def _insert_after(items: dict[str, np.ndarray], after: str, name: str, value: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """`items` with `name: value` placed right after `after` (at the end without it)."""
    out: dict[str, np.ndarray] = {}
    for key, v in items.items():
        out[key] = v
        if key == after:
            out[name] = value
    out.setdefault(name, value)
    return out


def standard_error(v: np.ndarray, axis: int) -> np.ndarray:
    """Standard error of the mean along `axis` (NaN with a single sample: it is unknown)."""
    n = v.shape[axis]
    if n < 2:
        return np.full(np.delete(v.shape, axis), np.nan)
    return v.std(axis=axis, ddof=1) / np.sqrt(n)
