"""`SweepResult`: every grid point of a sweep, its trajectory and its success flag, with a
tidy CSV (one row per grid point and save time) and plots."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eqgen.runtime.solution import Solution, _jsonable, entry_names
from eqgen.sweep.grid import Axis


@dataclass
class SweepResult:
    """A solved grid.

    - `axes`: the swept parameters; `points[i]`: the values of grid point i (a dict).
    - `t`: the save times (shared by every point).
    - `observables[name]`: shape (n_points, n_times); `states[i]`: the state arrays of point i,
      shape (n_times, *shape) (shapes differ between points when p or k is swept).
    - `success[i]`, `messages[i]`: whether point i was solved to the end, and if not why
      (its rows are NaN from the failure time on); `steps[i]`: its solver steps.
    - `extra[name]`: per-point columns added by a specialised sweep (e.g. the regime of a
      phase-diagram point), written to the CSV after the grid parameters.
    """

    axes: list[Axis]
    points: list[dict[str, float]]
    t: np.ndarray
    observables: dict[str, np.ndarray]
    states: list[dict[str, np.ndarray]]
    success: np.ndarray
    messages: list[str | None]
    steps: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, name: str) -> np.ndarray:
        """An observable over the grid, shape (n_points, n_times)."""
        return self.observables[name]

    def __repr__(self) -> str:
        """Model, axes (values or range, count), points solved and failed (named briefly),
        save times, fixed parameters and observables."""
        from eqgen.summary import sweep_text

        return sweep_text(self)

    def _repr_latex_(self) -> str:
        """A table of the grid points and the main observable at the last time, for
        notebooks (long grids cut short)."""
        from eqgen.summary import sweep_latex

        return sweep_latex(self)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.axes]

    @property
    def failed(self) -> list[tuple[int, dict[str, float], str]]:
        """(index, point, message) of every point that failed."""
        return [(i, self.points[i], self.messages[i] or "failed")
                for i in np.flatnonzero(~self.success)]

    def final(self, name: str = "excess_risk") -> np.ndarray:
        """The observable at the last save time, one value per point (NaN where it failed)."""
        return self.observables[name][:, -1]

    def solution(self, i: int) -> Solution:
        """Grid point i as a `Solution` (for plotting or saving one point alone)."""
        meta = {**self.metadata, "parameters": {**self.metadata.get("parameters", {}),
                                                **self.points[i]},
                "steps": int(self.steps[i]), "success": bool(self.success[i])}
        return Solution(self.t, {k: v[i] for k, v in self.observables.items()},
                        dict(self.states[i]), meta)

    # -- output ---------------------------------------------------------------------------------
    def _state_columns(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """(column, state, index) over the union of every point's state entries, in order of
        first appearance (a column absent at a point, for another p or k, is left empty)."""
        seen: dict[str, tuple[str, tuple[int, ...]]] = {}
        for st in self.states:
            for name, arr in st.items():
                for col, idx in entry_names(name, arr.shape[1:]):
                    seen.setdefault(col, (name, idx))
        return [(col, name, idx) for col, (name, idx) in seen.items()]

    def to_csv(self, path: str | Path, states: bool = True) -> None:
        """Tidy CSV: one row per (grid point, save time); columns: the grid parameters, any
        per-point extras, `t`, the observables, the state entries (unless `states=False`) and
        `success` (1 or 0). Metadata, with the failed points and why, goes to `.meta.json`."""
        state_cols = self._state_columns() if states else []
        header = [*self.names, *self.extra, "t", *self.observables,
                  *(c for c, _, _ in state_cols), "success"]
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for i, point in enumerate(self.points):
                fixed = [repr(point[n]) for n in self.names]
                fixed += [_cell(self.extra[n][i]) for n in self.extra]
                ok = "1" if self.success[i] else "0"
                st = self.states[i]
                for j, tj in enumerate(self.t):
                    row = [*fixed, repr(float(tj))]
                    row += [repr(float(v[i, j])) for v in self.observables.values()]
                    row += [_entry(st.get(name), j, idx) for _, name, idx in state_cols]
                    row.append(ok)
                    w.writerow(row)
        Path(str(path) + ".meta.json").write_text(
            json.dumps(_jsonable(self._meta()), indent=2) + "\n")

    def _meta(self) -> dict[str, Any]:
        return {**self.metadata,
                "grid": {a.name: a.values.tolist() for a in self.axes},
                "points": len(self.points), "failed": [
                    {"index": int(i), **p, "message": m} for i, p, m in self.failed]}

    def to_json(self, path: str | Path) -> None:
        """Everything as JSON: metadata, grid, points, times, observables, success."""
        doc = {"metadata": self._meta(), "points": self.points, "t": self.t.tolist(),
               "observables": {k: _nulls(v) for k, v in self.observables.items()},
               "success": self.success.tolist(), "messages": self.messages,
               "steps": self.steps.tolist(), **{k: list(v) for k, v in self.extra.items()}}
        Path(path).write_text(json.dumps(_jsonable(doc)) + "\n")

    def save(self, path: str | Path) -> None:
        """`to_csv` or `to_json` by the file's extension."""
        if str(path).endswith(".json"):
            self.to_json(path)
        else:
            self.to_csv(path)

    def plot(self, path: str | Path, observable: str = "excess_risk") -> None:
        """The final value of `observable` over the grid (see `eqgen.sweep.plot`)."""
        from eqgen.sweep.plot import plot_sweep

        plot_sweep(self, path, observable)


def _entry(arr: np.ndarray | None, j: int, idx: tuple[int, ...]) -> str:
    """One state entry at save time j, or empty where this point has no such entry."""
    if arr is None or len(idx) != arr.ndim - 1 or any(
            n >= s for n, s in zip(idx, arr.shape[1:], strict=True)):
        return ""
    return repr(float(arr[(j, *idx)]))


def _nulls(v: np.ndarray) -> list[Any]:
    """Nested lists with NaN as None (JSON has no NaN)."""
    return np.where(np.isnan(v), None, v.astype(object)).tolist()


def _cell(v: Any) -> str:
    return repr(float(v)) if isinstance(v, float | np.floating) else str(v)
