"""Sweep grids: axes written `NAME=a:b:n`, `NAME=log:a:b:n` or `NAME=a,b,c`, and their
Cartesian product (the first axis varies slowest)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from eqgen.environment import positive_int
from eqgen.errors import UsageError

SYNTAX = "NAME=a:b:n (n values from a to b), NAME=log:a:b:n (geometric) or NAME=a,b,c"
MAX_POINTS = 100_000  # grid points a sweep accepts unless EQGEN_MAX_GRID_POINTS says more


def max_points() -> int:
    """The largest number of grid points accepted: $EQGEN_MAX_GRID_POINTS, else `MAX_POINTS`.
    A limit, so that a typo such as `gamma=1:2:100000000` is refused at once instead of
    building, resolving and solving 10⁸ points."""
    value = positive_int("EQGEN_MAX_GRID_POINTS")
    return MAX_POINTS if value is None else value


def _too_many(count: float, what: str) -> UsageError:
    return UsageError(f"{what} has {count:,.0f} grid points, more than the {max_points():,} a "
                      "sweep accepts\n  hint: use fewer values (a coarse grid first, then a "
                      "finer one where it matters), or set EQGEN_MAX_GRID_POINTS to allow more")


@dataclass(frozen=True)
class Axis:
    """One swept parameter: its values, and whether they were asked for on a log scale."""

    name: str
    values: np.ndarray
    log: bool = False


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise UsageError(f"--grid {what}: {text.strip()!r} is not a number") from None
    if not math.isfinite(v):
        raise UsageError(f"--grid {what}: values must be finite")
    return v


def _count(text: str, what: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"--grid {what}: the number of points {text.strip()!r} must be a "
                         "whole number") from None
    if n < 1:
        raise UsageError(f"--grid {what}: the number of points must be at least 1")
    return n


def parse_axis(item: str) -> Axis:
    """Read one `--grid` item; `UsageError` (exit 2) with the accepted forms when malformed."""
    if "=" not in item:
        raise UsageError(f"--grid expects {SYNTAX}; got {item!r}")
    name, spec = (s.strip() for s in item.split("=", 1))
    if not name.isidentifier():
        raise UsageError(f"--grid: {name!r} is not a parameter name; expected {SYNTAX}")
    if not spec:
        raise UsageError(f"--grid {name}: no values; expected {SYNTAX}")
    log = spec.startswith("log:")
    parts = spec[4:].split(":") if log else spec.split(":")
    if log or len(parts) > 1:
        if len(parts) != 3:
            raise UsageError(f"--grid {name}: a range needs three fields, start:stop:count; "
                             f"got {spec!r} (forms: {SYNTAX})")
        a, b = _number(parts[0], name), _number(parts[1], name)
        n = _count(parts[2], name)
        if n > max_points():  # before building the values: 10⁸ of them would take minutes
            raise _too_many(n, f"--grid {name}")
        if log:
            if a <= 0 or b <= 0:
                raise UsageError(f"--grid {name}: a log range needs positive ends; got {spec!r}")
            values = np.geomspace(a, b, n)
        else:
            values = np.linspace(a, b, n)
        return Axis(name, _tidy(values), log)
    values = np.array([_number(v, name) for v in spec.split(",") if v.strip()])
    if values.size == 0:
        raise UsageError(f"--grid {name}: no values; expected {SYNTAX}")
    return Axis(name, values)


def _tidy(values: np.ndarray) -> np.ndarray:
    """Round grid values to 12 significant digits, so that `0:1:11` gives 0.3, not
    0.30000000000000004 (the value is then written and classified as typed)."""
    return np.array([float(f"{v:.12g}") for v in values])


def axes_from(grid: Mapping[str, Sequence[float] | np.ndarray | str | float]
              | Iterable[str]) -> list[Axis]:
    """Axes from the command line (`["gamma=0.1:2:20", ...]`) or from Python
    (`{"gamma": [0.1, 0.5], "Delta": "log:1e-3:1e-1:5"}`); names must be distinct."""
    axes: list[Axis] = []
    if isinstance(grid, Mapping):
        for name, values in grid.items():
            if isinstance(values, str):
                axes.append(parse_axis(f"{name}={values}"))
                continue
            if np.size(values) > max_points():
                raise _too_many(np.size(values), f"grid {name}")
            arr = np.atleast_1d(np.asarray(values, dtype=float))
            if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
                raise UsageError(f"grid {name}: give a non-empty list of finite numbers")
            axes.append(Axis(str(name), arr))
    else:
        axes = [parse_axis(item) for item in grid]
    if not axes:
        raise UsageError(f"a sweep needs at least one --grid {SYNTAX}")
    names = [a.name for a in axes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"--grid: {', '.join(dup)} given more than once; put all values of a "
                         "parameter in one --grid")
    count = math.prod(len(a.values) for a in axes)
    if count > max_points():
        raise _too_many(count, "the grid " + " × ".join(f"{a.name} ({len(a.values)})"
                                                        for a in axes))
    return axes


def points(axes: Sequence[Axis]) -> list[dict[str, float]]:
    """The Cartesian product of the axes, one dict per grid point (first axis slowest)."""
    return [dict(zip([a.name for a in axes], map(float, combo), strict=True))
            for combo in itertools.product(*(a.values for a in axes))]
