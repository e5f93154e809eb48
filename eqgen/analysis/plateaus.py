"""Plateaus of a solved learning curve: where the risk stalls before learning resumes.

**Criterion.** Learning curves are read on a logarithmic time axis, so flatness is measured by
the logarithmic slope s(t) = d ln ε / d ln t (finite differences on the saved times t > 0): a
point is *flat* when |s| < `flatness` (default 0.05: less than 5 % change per e-fold of time).
A plateau is a maximal run of flat points that

- lasts at least a factor `min_span` in time (default 3: t_end ≥ 3 t_start),
- is entered from above: somewhere before it the curve was at least a factor (1 + `drop`)
  above the plateau level (default drop 0.1). This excludes the initial flat stretch of every
  curve at t ≪ 1, when nothing has happened yet; and
- is left by a fall below level/(1 + `drop`) (`open: false`), or lasts to the last saved time
  (`open: true`: still on the plateau at t_max; on a finite horizon a long plateau cannot be told
  from a final level).

The level is the curve's value at the flattest point of the run (closest to the fixed point the
dynamics passes near). Runs separated by a single non-flat point are merged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FLATNESS = 0.05
MIN_SPAN = 3.0
DROP = 0.1


@dataclass(frozen=True)
class Plateau:
    """One plateau: [start, end] in time, the level (value at the flattest point, at
    `t_level`), the observable it was found on, and whether it is still open at the end."""

    start: float
    end: float
    level: float
    t_level: float
    observable: str
    open: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def log_slope(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, y, d ln y / d ln t) on the points with t > 0 and y > 0."""
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = (t > 0) & (y > 0) & np.isfinite(y)
    t, y = t[keep], y[keep]
    if t.size < 3:
        return t, y, np.full(t.size, np.nan)
    return t, y, np.gradient(np.log(y), np.log(t))


def _runs(flat: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs [i, j] of True, merging runs split by one False."""
    idx = np.flatnonzero(flat)
    if idx.size == 0:
        return []
    runs = [[int(idx[0]), int(idx[0])]]
    for i in idx[1:]:
        if i - runs[-1][1] <= 2:
            runs[-1][1] = int(i)
        else:
            runs.append([int(i), int(i)])
    return [(a, b) for a, b in runs]


def find_plateaus(t: np.ndarray, y: np.ndarray, observable: str = "excess_risk",
                  flatness: float = FLATNESS, min_span: float = MIN_SPAN,
                  drop: float = DROP) -> list[Plateau]:
    """Plateaus of the curve y(t) by the criterion of the module docstring."""
    t0 = np.asarray(t, dtype=float)
    y0 = np.asarray(y, dtype=float)
    ts, ys, s = log_slope(t0, y0)
    out: list[Plateau] = []
    for a, b in _runs(np.abs(s) < flatness):
        if b == a or ts[b] < min_span * ts[a]:
            continue
        i = a + int(np.argmin(np.abs(s[a:b + 1])))
        level = float(ys[i])
        before = y0[t0 <= ts[a]]
        if not (before.size and np.nanmax(before) >= (1 + drop) * level):
            continue
        after = ys[b:]
        escaped = bool(np.nanmin(after) <= level / (1 + drop))
        at_end = b == ts.size - 1
        if not (escaped or at_end):
            continue
        out.append(Plateau(float(ts[a]), float(ts[b]), level, float(ts[i]), observable,
                           not escaped))
    return out


def default_observable(sol: Any) -> str | None:
    """The curve plateaus are looked for on: excess risk (committee), else training loss."""
    for name in ("excess_risk", "risk", "train_loss"):
        if name in sol.observables:
            return name
    return None


def solution_plateaus(sol: Any, observable: str | None = None,
                      **criterion: float) -> list[Plateau]:
    """Plateaus of a `Solution` (observable: `default_observable` unless given)."""
    name = observable or default_observable(sol)
    if name is None:
        return []
    return find_plateaus(sol.t, sol[name], name, **criterion)


def annotate(sol: Any) -> Any:
    """Store the plateaus of `sol` in `sol.metadata["plateaus"]` (a list of dicts, written
    with the CSV's `.meta.json` and in JSON output) with the criterion used; returns `sol`."""
    sol.metadata["plateaus"] = [p.to_dict() for p in solution_plateaus(sol)]
    sol.metadata["plateau_criterion"] = {"flatness": FLATNESS, "min_span": MIN_SPAN,
                                         "drop": DROP}
    return sol
