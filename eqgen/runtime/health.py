"""Guards around a solve: is there memory enough before it, and are its overlaps those of a
network after it.

- Before: `committee_memory` and `dmft_memory` estimate the peak memory of a solve from the
  sizes alone (no derivation, no compilation), and `check_memory` refuses one that would not
  fit in the memory available (a `UsageError` that gives the estimate and what to change).
  The committee estimate is dominated by the SGD variance term, whose four-field integrals
  I4(j, l, c, e) are evaluated on p(p+1)/2 × (p+k)(p+k+1)/2 pairs of units, and by the saved
  trajectory (one (p+k)² block per output time). Its constants were measured with
  `jax.jit(...).lower(...).compile().memory_analysis()` on the shipped models (the generated
  I4 code needs 1.0–4.4 float64 temporaries per pair; see docs/robustness.md). A sweep
  (`check_committee_sweep`) needs the working memory once per point solved at the same time
  and keeps every point's trajectory; a DMFT simulation (`check_dmft_simulation`) is
  dominated by its n × d data matrix.
- After: `check_overlaps` finds the first output time at which Ω = [[Q, M], [Mᵀ, P]] is no
  longer positive semi-definite. Ω is the covariance of the pre-activations of student and
  teacher, so a negative eigenvalue means the order parameters no longer belong to any pair
  of networks: the numbers after that time are not a prediction of anything.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eqgen.errors import NumericalError, UsageError

I4_TEMPORARIES = 5.0  # float64 temporaries per (j, l) × (c, e) pair (measured at most 4.4)
I3_TEMPORARIES = 4.0  # per (j, β, c) triple of the drift terms
SAVED_COPIES = 4.0  # copies of the state per output time (states, observables' Ω, output)
BASELINE_BYTES = 300e6  # JAX, XLA and the compiled solver themselves
USABLE_FRACTION = 0.8  # of the memory reported available
DMFT_PER_SAMPLE_STEP = 14.0  # float64 per trajectory and step, responses included (measured 8–11)
MAX_CHECKED_TIMES = 64  # Ω eigenvalues at this many output times at most (large p only)
SIMULATION_MATRIX_COPIES = 3.0  # n × d float64 matrices at the peak of a DMFT simulation
BLOW_UP = 1e12  # an overlap (|w|²/d, Q, M) this large means the dynamics diverged


def committee_parts(p: int, k: int, n_times: int, variance: bool = True,
                    reduced: bool = False) -> tuple[float, float]:
    """(working, saved) float64 counts of one committee solve: the temporaries of the
    vector field while it runs, and the trajectory kept at `n_times` output times (see
    `committee_memory`)."""
    n = p + k
    if reduced:
        return 64.0 * n * k, float(n_times * n * k)
    pairs_jl, pairs_ce = p * (p + 1) / 2, n * (n + 1) / 2
    i4 = I4_TEMPORARIES * pairs_jl * pairs_ce if variance else 0.0
    i3 = I3_TEMPORARIES * p * n * n
    return i4 + i3, SAVED_COPIES * n_times * n * n


def committee_memory(p: int, k: int, n_times: int, variance: bool = True,
                     reduced: bool = False) -> float:
    """Estimated peak bytes of solving a committee model with widths p, k at `n_times`
    output times (`variance`: the regime keeps the SGD variance term with its I4 integrals;
    `reduced`: a mean-field state of size O(pk), without p × p matrices)."""
    return BASELINE_BYTES + 8.0 * sum(committee_parts(p, k, n_times, variance, reduced))


def committee_sweep_memory(groups: Sequence[tuple[int, int, int]], n_times: int,
                           variance: bool = True, reduced: bool = False) -> float:
    """Estimated peak bytes of a sweep whose points fall into `groups` of (p, k, number of
    points). The points of a group are solved at once (one vmapped solve, or its parts on
    concurrent threads), so the working memory of the largest group counts n times over;
    groups are solved one after another, but every point's trajectory is kept to the end."""
    parts = [(n, *committee_parts(p, k, n_times, variance, reduced)) for p, k, n in groups]
    working = max((n * w for n, w, _ in parts), default=0.0)
    saved = sum(n * s for n, _, s in parts)
    return BASELINE_BYTES + 8.0 * (working + saved)


def check_committee_solve(spec: Any, p: int, k: int, n_times: int) -> None:
    """`check_memory` for solving the committee `spec` at widths p, k (before any
    derivation or compilation)."""
    from eqgen.theories.checks import regime_of

    reduced = getattr(spec.regime, "reduction", None) is not None
    estimate = committee_memory(p, k, n_times, regime_of(spec).variance, reduced)
    check_memory(estimate, f"solving {spec.name} with p = {p}, k = {k} at {n_times} times",
                 "lower p or k (the SGD variance term grows as p²(p+k)²/4), use regime "
                 "gradient_flow, or save fewer times with --save-at")


def check_committee_sweep(spec: Any, groups: Sequence[tuple[int, int, int]],
                          n_times: int) -> None:
    """`check_memory` for sweeping the committee `spec` over grid points that fall into
    `groups` of (p, k, number of points), before any compilation."""
    from eqgen.theories.checks import regime_of

    reduced = getattr(spec.regime, "reduction", None) is not None
    estimate = committee_sweep_memory(groups, n_times, regime_of(spec).variance, reduced)
    points = sum(n for _, _, n in groups)
    widths = ", ".join(sorted({f"p = {p}, k = {k}" for p, k, _ in groups}))
    check_memory(estimate, f"sweeping {spec.name} over {points} grid point(s) ({widths}) at "
                 f"{n_times} times", "fewer grid points (each point of a group is solved at "
                 "once, with its own copy of the working memory), lower p or k, use regime "
                 "gradient_flow, or save fewer times with --save-at")


def dmft_simulation_memory(n: int, d: int) -> float:
    """Estimated peak bytes of simulating a DMFT model at dimension d with n samples
    (eqgen.simulate.dmft): the n × d noise matrix of one seed, drawn as random bits and
    converted (XLA's measured peak of the draw is 2.5 n·d float64; the steps then need one
    n × d matrix and vectors), and a few vectors of length n and d."""
    return BASELINE_BYTES + 8.0 * (SIMULATION_MATRIX_COPIES * n * d + 16.0 * (n + d))


def check_dmft_simulation(n: int, d: int) -> None:
    """`check_memory` for a DMFT simulation with n = αd samples at dimension d."""
    check_memory(dmft_simulation_memory(n, d),
                 f"simulating n = {n:,} samples at d = {d:,} (an n × d data matrix of "
                 f"{_gib(8.0 * n * d)})",
                 "lower --d (n = αd, so the memory grows as αd²) or alpha")


def dmft_memory(steps: int, samples: int, response_samples: int) -> float:
    """Estimated peak bytes of the sampled DMFT sweep (eqgen.runtime.dmft): (K+2) × N arrays
    (fields, gradients, curvatures, noise normals, selections and the scan's temporaries), the
    response histories of N_χ trajectories (two (K+2) × N_χ arrays, and the response row with
    its temporaries: bounded by 6 (K+2) per trajectory) and six (K+2)² kernels. The constants
    bound XLA's measured peak (docs/robustness.md)."""
    t = steps + 2
    return BASELINE_BYTES + 8.0 * (DMFT_PER_SAMPLE_STEP * t * samples
                                   + 6.0 * response_samples * t + 6.0 * t * t)


def check_dmft_sweep(steps: int, samples: int, response_samples: int) -> None:
    """`check_memory` for a sampled DMFT sweep of `steps` steps and `samples` trajectories."""
    check_memory(dmft_memory(steps, samples, response_samples),
                 f"the DMFT sweep with {samples} trajectories over {steps} steps",
                 "lower --samples (the Monte Carlo error only shrinks as 1/√N) or the number "
                 "of steps t_max/η")


def available_memory() -> float:
    """Bytes this process may use: $EQGEN_MEMORY_LIMIT when set (e.g. `8e9`), else the
    accelerator's memory when JAX runs on one, else the host's available memory."""
    env = os.environ.get("EQGEN_MEMORY_LIMIT")
    if env:
        try:
            value = float(env)
        except ValueError:
            raise UsageError(f"EQGEN_MEMORY_LIMIT must be a number of bytes, got {env!r}"
                             ) from None
        if not (value > 0 and math.isfinite(value)):
            raise UsageError("EQGEN_MEMORY_LIMIT must be a positive number of bytes")
        return value
    device = _device_memory()
    if device is not None:
        return device
    return _host_memory()


def _device_memory() -> float | None:
    try:
        import jax

        dev = jax.devices()[0]
        if dev.platform == "cpu":
            return None
        stats = dev.memory_stats() or {}
        limit = stats.get("bytes_limit")
        return float(limit) if limit else None
    except Exception:  # noqa: BLE001 - no accelerator information: use the host's memory
        return None


def _host_memory() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return math.inf


def check_memory(estimate: float, what: str, hint: str) -> None:
    """Refuse (`UsageError`, exit 2) a solve whose estimated peak memory exceeds the usable
    part of the memory available; say the estimate, the limit and what to change."""
    limit = USABLE_FRACTION * available_memory()
    if estimate > limit:
        raise UsageError(f"{what} would need about {_gib(estimate)} of memory, more than the "
                         f"{_gib(limit)} available (set EQGEN_MEMORY_LIMIT to override)"
                         f"\n  hint: {hint}")


def _gib(x: float) -> str:
    return f"{x / 2**30:.3g} GiB"


def smallest_eigenvalues(Q: np.ndarray, M: np.ndarray, P: np.ndarray) -> np.ndarray:
    """The smallest eigenvalue of Ω = [[Q, M], [Mᵀ, P]] at each time (leading axis)."""
    omega = np.concatenate([np.concatenate([Q, M], axis=2),
                            np.concatenate([np.swapaxes(M, 1, 2), P], axis=2)], axis=1)
    omega = (omega + np.swapaxes(omega, 1, 2)) / 2
    return np.linalg.eigvalsh(omega)[:, 0]


def first_non_psd(t: np.ndarray, states: Mapping[str, np.ndarray], rtol: float
                  ) -> tuple[int, float] | None:
    """The first output index where Ω has an eigenvalue below −tol·max(1, max|Ω|), with
    tol = max(1e-6, 1000 rtol) (Ω is singular, not indefinite, when the student matches the
    teacher, so integration errors of size rtol must not count), and that eigenvalue;
    None when Ω stays positive semi-definite. For large widths only `MAX_CHECKED_TIMES`
    evenly spaced times (and the last) are checked."""
    if not all(name in states for name in ("Q", "M", "P")) or len(t) == 0:
        return None
    Q, M, P = (np.asarray(states[n], dtype=float) for n in ("Q", "M", "P"))
    n = Q.shape[1] + P.shape[1]
    idx = np.arange(len(t))
    if n > 256 and len(t) > MAX_CHECKED_TIMES:
        idx = np.unique(np.linspace(0, len(t) - 1, MAX_CHECKED_TIMES).round().astype(int))
    finite = np.all(np.isfinite(Q[idx].reshape(len(idx), -1)), axis=1) \
        & np.all(np.isfinite(M[idx].reshape(len(idx), -1)), axis=1)
    idx = idx[finite]  # non-finite values are the ODE driver's to report
    if idx.size == 0:
        return None
    lo = smallest_eigenvalues(Q[idx], M[idx], P[idx])
    scale = np.maximum(1.0, np.max(np.abs(np.concatenate(
        [Q[idx].reshape(len(idx), -1), M[idx].reshape(len(idx), -1),
         P[idx].reshape(len(idx), -1)], axis=1)), axis=1))
    tol = max(1e-6, 1e3 * rtol)
    bad = np.flatnonzero(lo < -tol * scale)
    if bad.size == 0:
        return None
    return int(idx[bad[0]]), float(lo[bad[0]])


def check_overlaps(raw: Any, rtol: float) -> None:
    """Raise `NumericalError` (exit 3) at the first output time where Ω of the solved
    trajectory `raw` (an `ode.RawSolution`) is not positive semi-definite; the partial
    solution holds the times before it."""
    found = first_non_psd(raw.t, raw.states, rtol)
    if found is None:
        return
    i, lo = found
    before = f"; last good time t = {raw.t[i - 1]:.6g}" if i > 0 else ""
    raise NumericalError(
        f"the covariance Ω = [[Q, M], [Mᵀ, P]] lost positive semi-definiteness (smallest "
        f"eigenvalue {lo:.3g}): the overlaps no longer belong to any network{before}",
        t=float(raw.t[i]),
        hint="lower the learning rate (the variance term may be past its stability limit), "
             "tighten --rtol/--atol, or check the initial overlaps",
        partial=dataclasses.replace(raw, t=raw.t[:i],
                                    states={k: v[:i] for k, v in raw.states.items()},
                                    observables={k: v[:i] for k, v in raw.observables.items()}))


# What else to try after a failure that `explain_growth` attributes to a divergence, by the
# failure's message (the other alternatives of the driver's hint, without its own guess).
OTHERWISE = (("maximum number of steps", "; if they are not, loosen --rtol/--atol or shorten "
              "--t-max"),
             ("step size too small", "; if they are not, try --solver kvaerno5 (stiff problems)"),
             ("positive semi-definite", "; if they are not, tighten --rtol/--atol or check the "
              "initial overlaps"),
             ("overlaps diverged", "; or check the regime (the SGD noise term grows with "
              "γ c_p)"))
DIVERGING = ("the dynamics are probably diverging: lower the learning rate (`eqgen stability "
             "SPEC` gives the largest stable learning rate of perfect learning, for p = k and "
             "Δ = 0)")


def explain_growth(error: NumericalError, growth: float = 4.0) -> None:
    """When the overlaps of `error.partial` (an `ode.RawSolution`) grew more than `growth`
    times between the first and the last good time, say so in the message and the hint: a
    solver that runs out of steps or of step size while the overlaps explode is following a
    divergence. The hint then says that once, followed by what else to try (`OTHERWISE`)."""
    raw = error.partial
    states = getattr(raw, "states", None)
    if not states or len(raw.t) < 2:
        return
    moving = [v for k, v in states.items() if k in ("Q", "M")] or list(states.values())
    size = np.max(np.abs(np.concatenate([np.asarray(v).reshape(len(raw.t), -1)
                                         for v in moving], axis=1)), axis=1)
    if not (np.all(np.isfinite(size[[0, -1]])) and size[-1] > growth * max(size[0], 1e-12)):
        return
    message = str(error)
    if "probably diverging" not in (error.hint or ""):
        error.hint = DIVERGING + next((text for key, text in OTHERWISE if key in message), "")
    if not message.startswith(("the overlaps diverged", "the overlaps grew")):
        error.args = (f"the overlaps grew from {size[0]:.3g} to {size[-1]:.3g} (largest entry "
                      f"of Q, M), and then {message}",)
