"""Times at which a learning curve first reaches a level: the time to reach a given training
loss (or any observable), and the interpolation time of a DMFT model (training error zero).

Between saved times the curve is interpolated linearly; for DMFT models the saved times are
the steps of the discrete dynamics, so this is exact up to one step η.
"""

from __future__ import annotations

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
    """The first saved time at which the training error is ≤ `tol` (0: exactly zero, all
    training samples classified correctly); None if it is not reached by the last time.

    No interpolation between times here: the training error is a count, and the first step at
    which it is zero is the answer."""
    err = np.asarray(sol["train_error"], dtype=float)
    hit = np.flatnonzero(err <= tol)
    return float(sol.t[int(hit[0])]) if hit.size else None
