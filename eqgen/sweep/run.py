"""Solving a grid of parameter values: one compiled, vmapped solve per group of equal shapes.

Every point is resolved like a single solve (`Model.resolve`: derived parameters, an initial
state that uses swept parameters, range checks). Points are then grouped by the shapes of
their states — a grid over p or k changes them, and JAX compiles one program per shape — and
each group is solved by `eqgen.runtime.ode.solve_batch` in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

import eqgen
from eqgen.errors import EqgenError, SpecError, UsageError
from eqgen.sweep.grid import Axis, axes_from, points
from eqgen.sweep.result import SweepResult

if TYPE_CHECKING:
    from eqgen.model import Model
    from eqgen.spec.committee import Resolved


def save_times(model: Model, save_at: Sequence[float] | None, t_max: float | None
               ) -> tuple[np.ndarray, np.ndarray]:
    """The integration times (0 first) and which of them to report, as `Model.solve` does."""
    from eqgen.model import solve_times

    return solve_times(save_at, t_max, model.defaults.t_max)


def check_names(model: Model, axes: Sequence[Axis], params: Mapping[str, float]) -> None:
    """Swept names must be parameters of the model and must not also be fixed by --set."""
    declared = list(model.parameters)
    unknown = [a.name for a in axes if a.name not in declared]
    if unknown:
        raise UsageError(f"unknown parameter(s) {', '.join(unknown)} in --grid; this model "
                         "has: " + ", ".join(declared))
    both = [a.name for a in axes if a.name in params]
    if both:
        raise UsageError(f"{', '.join(both)} both swept (--grid) and fixed (--set); "
                         "give each parameter one or the other")


def resolve_points(model: Model, grid_points: Sequence[Mapping[str, float]],
                   params: Mapping[str, float], init: Mapping[str, Any] | None,
                   init_source: str = "init") -> list[Resolved]:
    """`Model.resolve` at every point; a point the model refuses is a usage error that names
    the point (nothing is solved)."""
    return [_resolve_one(model, point, params, init, init_source) for point in grid_points]


def _resolve_one(model: Model, point: Mapping[str, float], params: Mapping[str, float],
                 init: Mapping[str, Any] | None, init_source: str) -> Resolved:
    try:
        return model.resolve({**params, **point}, init, init_source)
    except EqgenError as e:
        where = ", ".join(f"{k} = {v:g}" for k, v in point.items())
        if isinstance(e, SpecError):  # each located problem, without a second "error:"
            text = "\n".join(d.format().replace(": error: ", ": ", 1) for d in e.diagnostics)
            raise UsageError(f"grid point {where} is refused:\n{text}") from None
        raise UsageError(f"grid point {where}: {e}") from None


def _same(a: Resolved, b: Resolved, skip: str) -> bool:
    """Equal initial state and parameters, apart from the parameter `skip` itself."""
    return (a.init.keys() == b.init.keys()
            and all(np.array_equal(a.init[k], b.init[k]) for k in a.init)
            and all(a.params[k] == b.params[k] for k in a.params if k != skip))


def plain_axes(model: Model, axes: Sequence[Axis]) -> set[str]:
    """The swept parameters that change nothing but their own value at a grid point: not used
    by another parameter, a width, the initial state or t_max, and not range-checked together
    with another swept parameter. Each value of such an axis needs one resolution, not one
    per combination with the other axes."""
    swept = {a.name for a in axes}
    spec = model.spec
    state = spec.state_names()
    joint = set().union(*(names & swept for names in spec.checked_names()
                          if len(names & swept) > 1))
    return {n for n in swept if n not in state and n not in joint}


def resolve_grid(model: Model, axes: Sequence[Axis], params: Mapping[str, float],
                 init: Mapping[str, Any] | None, init_source: str = "init") -> list[Resolved]:
    """`resolve_points` over the Cartesian product, resolving each value of a plain axis
    (`plain_axes`) once — for its range checks, and to confirm that only its own value
    changed — and the full product only over the other axes: a γ × Δ grid of 64 points
    costs 15 resolutions, not 64."""
    import dataclasses

    first = {a.name: float(a.values[0]) for a in axes}
    ref = _resolve_one(model, first, params, init, init_source)
    plain = plain_axes(model, axes)
    for a in axes:
        if a.name not in plain:
            continue
        for v in a.values[1:]:
            r = _resolve_one(model, {**first, a.name: float(v)}, params, init, init_source)
            if not _same(r, ref, a.name):  # a dependency the static test missed: resolve all
                plain.discard(a.name)
                break
    coupled = [a for a in axes if a.name not in plain]
    cache: dict[tuple, Resolved] = {(): ref}
    out = []
    for point in points(axes):
        key = tuple(point[a.name] for a in coupled)
        if key not in cache:
            cache[key] = _resolve_one(model, {**first, **dict(zip(
                [a.name for a in coupled], key, strict=True))}, params, init, init_source)
        base = cache[key]
        out.append(dataclasses.replace(base, params={**base.params, **{
            n: point[n] for n in plain}}))
    return out


def shape_groups(resolved: Sequence[Resolved]) -> dict[tuple, list[int]]:
    """Indices of the points, grouped by the shapes of their states (in grid order)."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(resolved):
        key = tuple((k, np.shape(v)) for k, v in r.init.items())
        groups.setdefault(key, []).append(i)
    return groups


def solve_points(model: Model, resolved: Sequence[Resolved], ts: np.ndarray,
                 *, rtol: float, atol: float, solver: str, max_steps: int | None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Solve every resolved point (grouped by shape); per-point arrays in grid order.
    Refused before any compilation when the points would not fit in memory together
    (`eqgen.runtime.health.check_committee_sweep`)."""
    from eqgen.runtime import health, ode

    groups = shape_groups(resolved)
    health.check_committee_sweep(model.spec, [(resolved[idx[0]].p, resolved[idx[0]].k,
                                               len(idx)) for idx in groups.values()], len(ts))
    module = model.module
    n = len(resolved)
    obs = {name: np.full((n, len(ts)), np.nan) for name in module.OBSERVABLES}
    states: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    failure: list[Any] = [None] * n
    steps = np.zeros(n, dtype=int)
    for g, idx in enumerate(groups.values()):
        if progress:
            r0 = resolved[idx[0]]
            progress(f"solving {len(idx)} point(s) with p = {r0.p}, k = {r0.k} "
                     f"(group {g + 1} of {len(groups)})")
        y0 = {k: np.stack([resolved[i].init[k] for i in idx]) for k in resolved[idx[0]].init}
        par = {k: np.array([resolved[i].params[k] for i in idx]) for k in resolved[idx[0]].params}
        batch = ode.solve_batch(module.vector_field, module.observables, y0, par, ts,
                                evolving=module.EVOLVING, rtol=rtol, atol=atol, solver=solver,
                                max_steps=max_steps or ode.DEFAULT_MAX_STEPS,
                                state_order=module.STATES, observable_order=module.OBSERVABLES,
                                cache_key=model._key)
        for name in obs:
            obs[name][idx] = batch.observables[name]
        steps[idx] = batch.num_steps
        for j, i in enumerate(idx):
            states[i] = {k: v[j] for k, v in batch.states.items()}
            failure[i] = batch.failure[j]
    return {"observables": obs, "states": states, "failure": failure, "steps": steps,
            "solver": ode.choose_solver(solver, rtol), "regime": module.REGIME}


def sweep(model: Model, grid: Any, params: Mapping[str, float] | None = None,
          init: Mapping[str, Any] | None = None, save_at: Sequence[float] | None = None,
          t_max: float | None = None, rtol: float = 1e-8, atol: float = 1e-10,
          solver: str = "tsit5", max_steps: int | None = None, init_source: str = "init",
          progress: Callable[[str], None] | None = None) -> SweepResult:
    """Solve `model` at every point of `grid` (see `Model.sweep`)."""
    if model.family != "committee":
        raise UsageError(f"sweeps solve committee (ODE) models; {model.name} is a "
                         f"{model.family} model")
    params = dict(params or {})
    axes = axes_from(grid)
    check_names(model, axes, params)
    if not (rtol > 0 and atol > 0):
        raise UsageError("--rtol and --atol must be positive")
    if max_steps is not None and max_steps < 1:
        raise UsageError("--max-steps must be at least 1")
    ts, keep = save_times(model, save_at, t_max)
    grid_points = points(axes)
    resolved = resolve_grid(model, axes, params, init, init_source)
    out = solve_points(model, resolved, ts, rtol=rtol, atol=atol, solver=solver,
                       max_steps=max_steps, progress=progress)
    r0 = resolved[0]
    meta = {"model": model.name, "title": model.title, "family": model.family,
            "parameters": {k: v for k, v in r0.params.items() if k not in grid_points[0]},
            "regime": out["regime"], "rtol": rtol, "atol": atol, "solver": out["solver"],
            "spec_sha256": model.spec.hash, "eqgen": eqgen.__version__}
    return SweepResult(
        axes=axes, points=grid_points, t=ts[keep],
        observables={k: v[:, keep] for k, v in out["observables"].items()},
        states=out["states"] if keep.all() else [{k: v[keep] for k, v in st.items()}
                                                 for st in out["states"]],
        success=np.array([f is None for f in out["failure"]]),
        messages=[None if f is None else f.format().removeprefix("numerical failure: ")
                  for f in out["failure"]],
        steps=out["steps"], metadata=meta)
