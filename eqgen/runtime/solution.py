"""`Solution`: a solved trajectory (times, observables, order parameters) and its I/O."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def entry_names(name: str, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """Column names of a state's entries: `Q[0,1]`, `a[2]`, or the name itself for scalars."""
    if not shape:
        return [(name, ())]
    return [(f"{name}[{','.join(map(str, idx))}]", idx) for idx in np.ndindex(*shape)]


@dataclass
class Solution:
    """A solved model: `t`, observables by name (`sol["excess_risk"]`), states (`sol["Q"]`,
    shape (len(t), p, p)) and single entries (`sol["Q[0,1]"]`)."""

    t: np.ndarray
    observables: dict[str, np.ndarray]
    states: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self.observables:
            return self.observables[name]
        if name in self.states:
            return self.states[name]
        if "[" in name and name.endswith("]"):
            base, idx = name[:-1].split("[", 1)
            if base in self.states:
                ix = tuple(int(i) for i in idx.split(","))
                return self.states[base][(slice(None), *ix)]
        raise KeyError(f"{name!r}: not an observable or state of this solution; have "
                       + ", ".join([*self.observables, *self.states]))

    def __len__(self) -> int:
        return len(self.t)

    def __repr__(self) -> str:
        """Model, times, parameters, regime, states and each observable at start and end."""
        from eqgen.summary import solution_text

        return solution_text(self)

    def _repr_latex_(self) -> str:
        """A small table of the observables at the first and last time, for notebooks."""
        from eqgen.summary import solution_latex

        return solution_latex(self)

    def columns(self) -> list[tuple[str, np.ndarray]]:
        """The CSV columns in contract order: t, observables, then state entries."""
        cols: list[tuple[str, np.ndarray]] = [("t", self.t)]
        cols += list(self.observables.items())
        for name, arr in self.states.items():
            for col, idx in entry_names(name, arr.shape[1:]):
                cols.append((col, arr[(slice(None), *idx)]))
        return cols

    def to_csv(self, path: str | Path) -> None:
        """Write one row per time; the metadata goes in a JSON file beside it (`.meta.json`)."""
        cols = self.columns()
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([c for c, _ in cols])
            for i in range(len(self.t)):
                w.writerow([repr(float(v[i])) for _, v in cols])
        Path(str(path) + ".meta.json").write_text(json.dumps(_jsonable(self.metadata), indent=2)
                                                  + "\n")

    def to_json(self, path: str | Path) -> None:
        """Write everything (metadata, times, observables, full state arrays) as JSON."""
        doc = {
            "metadata": _jsonable(self.metadata),
            "t": self.t.tolist(),
            "observables": {k: v.tolist() for k, v in self.observables.items()},
            "states": {k: v.tolist() for k, v in self.states.items()},
        }
        Path(path).write_text(json.dumps(doc) + "\n")

    def save(self, path: str | Path) -> None:
        """`to_csv` or `to_json` by the file's extension."""
        if str(path).endswith(".json"):
            self.to_json(path)
        else:
            self.to_csv(path)

    def plot(self, path: str | Path, **kwargs: Any) -> None:
        """Risk and order parameters against time (see `eqgen.plot`)."""
        from eqgen.plot import plot_solution

        plot_solution(self, path, **kwargs)

    def final(self) -> dict[str, float]:
        return {k: float(v[-1]) for k, v in self.observables.items()}

    def rows(self, which: Any) -> Solution:
        """The solution at the times `which` selects (a slice, an index array or a boolean
        mask), states and observables alike, with a copy of the metadata."""
        return Solution(self.t[which], {k: v[which] for k, v in self.observables.items()},
                        {k: v[which] for k, v in self.states.items()}, dict(self.metadata))

    def mark_partial(self, error: Any, **extra: Any) -> Solution:
        """Record in the metadata that this solution stops at a failure: `partial` is true
        and `failure` holds the error's message, time and hint (and `extra`, e.g. the stage
        of a comparison that failed), so that a file written from it says it is incomplete.
        Returns the solution itself."""
        self.metadata["partial"] = True
        self.metadata["failure"] = {"message": str(error), "t": getattr(error, "t", None),
                                    "hint": getattr(error, "hint", None), **extra}
        return self


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x
