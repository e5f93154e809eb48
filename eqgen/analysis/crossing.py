"""Times at which a learning curve first reaches a level: the time to reach a given training
loss (or any observable), and the interpolation time of a DMFT model (training error zero).

Between saved times the curve is interpolated linearly; for DMFT models the saved times are
the steps of the discrete dynamics, so this is exact up to one step η.

**The interpolation time is a finite-N estimate.** A DMFT solve by sampled trajectories
estimates the training error as the fraction of its N sampled trajectories that are
misclassified, so the sampled error is a multiple of 1/N and reaches exactly 0 at the first
step at which *none* of the N is misclassified. That step depends on N (more samples, more
chances that one is still wrong: it grows with N) and on the seed: for
`gmm_two_cluster_logistic` at α = 0.5, λ = 0, seeds 0, 1, 2 with N = 2000 give 11.8, 11.8,
14.0, and N = 6000 gives 12.3. It is the time at which the *sampled* training error reaches
0; `interpolation_spread` summarises several seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def first_time_below(t: np.ndarray, y: np.ndarray, level: float) -> float | None:
    """The first time at which y(t) ≤ level, linearly interpolated between the saved times
    around the first crossing; None if the curve stays above `level` up to the last time."""
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    below = np.flatnonzero(y <= level)
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(t[0])
    y0, y1 = y[i - 1], y[i]
    frac = (y0 - level) / (y0 - y1) if y0 != y1 else 1.0
    return float(t[i - 1] + frac * (t[i] - t[i - 1]))


def time_to(sol: Any, level: float, observable: str = "train_loss") -> float | None:
    """First time the observable of a `Solution` reaches `level` or below (None if never)."""
    return first_time_below(sol.t, sol[observable], level)


def interpolation_time(sol: Any, tol: float = 0.0) -> float | None:
    """The first saved time from which the training error is ≤ `tol` (0: exactly zero, all
    sampled trajectories classified correctly) at every later saved time; None if the error
    is above `tol` at the last time. A sampled error can touch 0 and come back: only the
    final run of zeros counts.

    No interpolation between times here: the training error is a count, and the first step
    of that run is the answer. With sampled trajectories it is a finite-N estimate (module
    docstring)."""
    err = np.asarray(sol["train_error"], dtype=float)
    above = np.flatnonzero(~(err <= tol))
    if above.size == 0:
        return float(sol.t[0])
    last = int(above[-1])
    return float(sol.t[last + 1]) if last + 1 < err.size else None


@dataclass(frozen=True)
class InterpolationSpread:
    """Interpolation times of solves that differ only in their seed (same N)."""

    seeds: tuple[int, ...]
    times: tuple[float | None, ...]  # one per seed; None: not reached within t_max
    samples: int  # N, the sampled trajectories of each solve (0: exact propagation)

    @property
    def reached(self) -> list[float]:
        return [t for t in self.times if t is not None]

    def summary(self) -> dict[str, Any]:
        """Median, min, max over the seeds that reached it, and how many did."""
        r = self.reached
        return {"samples": self.samples, "seeds": list(self.seeds), "times": list(self.times),
                "n_reached": len(r),
                "median": float(np.median(r)) if r else None,
                "min": min(r) if r else None, "max": max(r) if r else None}


def interpolation_spread(sols: list[Any], seeds: list[int],
                         tol: float = 0.0) -> InterpolationSpread:
    """`interpolation_time` of each solve (one per seed), with N from the solves' metadata."""
    samples = int(sols[0].metadata.get("samples", 0)) if sols else 0
    return InterpolationSpread(tuple(seeds), tuple(interpolation_time(s, tol) for s in sols),
                               samples)
