"""Parameter sweeps: a grid of parameter values solved in one compiled, vectorised solve per
shape group, with per-point success flags, a tidy CSV and plots (docs/sweeps.md)."""

from eqgen.sweep.grid import Axis, axes_from, parse_axis, points
from eqgen.sweep.result import SweepResult
from eqgen.sweep.run import sweep

__all__ = ["Axis", "SweepResult", "axes_from", "parse_axis", "points", "sweep"]
