"""The (κ, δ) phase diagram of online SGD (docs/theory.md, Regimes; Veiga et al. 2022, "Phase
diagram of
stochastic gradient descent in high-dimensional two-layer neural networks").

With p ~ d^κ and γ = γ₀ d^{−δ}, every point of the (κ, δ) plane is classified by
`eqgen.theories.regimes.classify`: gradient flow (κ + δ > 0), high-dimensional SGD (κ + δ = 0),
noise-dominated (κ < −δ < (κ + 1)/2), or no ODE limit (−δ ≥ (κ + 1)/2: classified, not solved).
Two numerical constructions give each solvable point a final excess risk:

- `limit` (default): the limiting ODE of the point's class, derived and compiled once per class
  (at most three models, each from the spec with its `regime` statement replaced). Within a
  class the limit does not depend on (κ, δ), so each class is solved once and its value shown
  on all of its points; every class keeps its own time unit (docs/theory.md, Regimes).
- `d_ref = D`: the crossover at a finite reference dimension D. Only γ c_p enters the ODE's
  right-hand side and it scales as d^{−(κ+δ)}, so every point is solved with the full
  high-dimensional ODE at γ_eff = γ · D^{−(κ+δ)} (one compiled model, one vmapped sweep; the
  solved width stays the spec's p, and time is t = steps · γ_eff c_p / D at every point).
  This shows how the classes of the limit emerge at finite d.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eqgen.errors import UsageError
from eqgen.sweep.grid import Axis, axes_from, points
from eqgen.sweep.result import SweepResult
from eqgen.theories.regimes import NoOdeLimit, classify

if TYPE_CHECKING:
    from eqgen.model import Model

EXPONENTS = ("kappa", "delta")
NO_LIMIT = "no_ode_limit"
CLASSES = ("gradient_flow", "high_dimensional", "noise_dominated", NO_LIMIT)
# The regime statement that compiles each class's limiting ODE.
REGIME_TEXT = {
    "gradient_flow": "regime gradient_flow",
    "high_dimensional": "regime high_dimensional",
    "noise_dominated": "regime exponents(kappa = 0, delta = -1/4)",
}


def exact(v: float) -> Fraction:
    """A grid value as the exact decimal it was written as (so that κ + δ = 0 is caught
    exactly on a decimal grid: 0.3 + (−0.3), not 0.30000000000000004 − 0.3)."""
    return Fraction(f"{v:.12g}")


def regime_class(kappa: float, delta: float) -> str:
    """The class of (κ, δ) by docs/theory.md, Regimes (`regimes.classify`), or `no_ode_limit`."""
    try:
        return classify("exponents", exact(kappa), exact(delta)).name
    except NoOdeLimit:
        return NO_LIMIT


def is_phase_grid(model: Model, grid: Any) -> bool:
    """Whether a grid sweeps the regime exponents (kappa/delta that are not parameters)."""
    names = [a.name for a in axes_from(grid)]
    return any(n in EXPONENTS and n not in model.parameters for n in names)


def regime_variant(model: Model, cls: str) -> Model:
    """The model with its `regime` statement replaced by the class's (derived, generated and
    cached by spec hash like any model; the file lives in the module cache)."""
    from eqgen.codegen.module import cache_dir, write_atomic
    from eqgen.model import Model as ModelClass
    from eqgen.theories.checks import regime_of

    if regime_of(model.spec).name == cls:
        return model
    lines = model.spec.source.text.split("\n")
    line = model.spec.regime.pos.line
    if line > 0:
        at = lines[line - 1].find("regime")
        lines[line - 1] = lines[line - 1][:at] + REGIME_TEXT[cls]
    else:
        lines.append(REGIME_TEXT[cls])
    path = Path(cache_dir()) / "variants" / f"{model.name}-{cls}.eqg"
    text = "\n".join(lines)
    if not path.exists() or path.read_text() != text:
        write_atomic(path, text)
    return ModelClass(path)


def phase_sweep(model: Model, grid: Any, params: Mapping[str, float] | None = None,
                init: Mapping[str, Any] | None = None, save_at: Sequence[float] | None = None,
                t_max: float | None = None, d_ref: float | None = None, rtol: float = 1e-8,
                atol: float = 1e-10, solver: str = "tsit5", max_steps: int | None = None,
                init_source: str = "init",
                progress: Callable[[str], None] | None = None) -> SweepResult:
    """Classify every (κ, δ) point of `grid` and give it a final excess risk (module doc).

    Returns a `SweepResult` with the per-point column `regime`; points without an ODE limit
    have `success` False, NaN rows and the reason as their message."""
    from eqgen.runtime import health
    from eqgen.sweep.run import resolve_points, save_times, shape_groups, solve_points

    if model.family != "committee":
        raise UsageError("the (κ, δ) phase diagram is defined for committee (ODE) models")
    axes = _phase_axes(axes_from(grid))
    params = dict(params or {})
    if d_ref is not None and not (d_ref > 1 and np.isfinite(d_ref)):
        raise UsageError("--d-ref must be a finite dimension > 1")
    if d_ref is not None and "gamma" not in model.parameters:
        raise UsageError(f"--d-ref scales the learning rate 'gamma', which {model.name} does "
                         "not declare")
    grid_points = points(axes)
    classes = [regime_class(pt["kappa"], pt["delta"]) for pt in grid_points]
    ts, keep = save_times(model, save_at, t_max)
    n = len(grid_points)
    obs: dict[str, np.ndarray] = {}
    states: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    failure: list[str | None] = [None] * n
    steps = np.zeros(n, dtype=int)
    solvable = [i for i, c in enumerate(classes) if c != NO_LIMIT]
    for i in set(range(n)) - set(solvable):
        failure[i] = ("no ODE limit: −δ ≥ (κ + 1)/2, the SGD noise grows faster than the "
                      "number of steps per unit time (classified, not solved)")
    if d_ref is not None:
        hd = regime_variant(model, "high_dimensional")
        base = hd.resolve(params, init, init_source).params["gamma"]
        scaled = [{**params, "gamma": base * d_ref ** -(grid_points[i]["kappa"]
                                                           + grid_points[i]["delta"])}
                  for i in solvable]
        jobs = [(hd, solvable, scaled)]
    else:
        jobs = []
        for cls in REGIME_TEXT:
            idx = [i for i in solvable if classes[i] == cls]
            if idx:  # the limit is the same at every point of a class: solve it once
                jobs.append((regime_variant(model, cls), idx, [params]))
    # every job resolved and its memory checked before the first is solved
    prepared = []
    for m, idx, point_params in jobs:
        resolved = resolve_points(m, point_params, {}, init, init_source)
        health.check_committee_sweep(m.spec, [(resolved[g[0]].p, resolved[g[0]].k, len(g))
                                              for g in shape_groups(resolved).values()],
                                     len(ts))
        prepared.append((m, idx, resolved))
    for m, idx, resolved in prepared:
        if progress:
            progress(f"solving {m.name} ({m.module.REGIME}) for {len(idx)} point(s)")
        out = solve_points(m, resolved, ts, rtol=rtol, atol=atol, solver=solver,
                           max_steps=max_steps)
        for name in out["observables"]:
            obs.setdefault(name, np.full((n, len(ts)), np.nan))
        for j, i in enumerate(idx):
            src = j if len(resolved) == len(idx) else 0
            for name, v in out["observables"].items():
                obs[name][i] = v[src]
            states[i] = out["states"][src]
            f = out["failure"][src]
            failure[i] = None if f is None else f.format().removeprefix("numerical failure: ")
            steps[i] = out["steps"][src]
    if not obs:
        obs = {"risk": np.full((n, len(ts)), np.nan), "excess_risk": np.full((n, len(ts)),
                                                                               np.nan)}
    import eqgen

    meta = {"model": model.name, "title": model.title, "family": model.family,
            "parameters": dict(model.resolve(params, init, init_source).params),
            "phase_diagram": "limit" if d_ref is None else f"finite d_ref = {d_ref:g}",
            "d_ref": d_ref, "rtol": rtol, "atol": atol, "spec_sha256": model.spec.hash,
            "eqgen": eqgen.__version__}
    return SweepResult(
        axes=axes, points=grid_points, t=ts[keep],
        observables={k: v[:, keep] for k, v in obs.items()},
        states=[{k: v[keep] for k, v in st.items()} for st in states],
        success=np.array([f is None for f in failure]), messages=failure, steps=steps,
        metadata=meta, extra={"regime": classes})


def _phase_axes(axes: list[Axis]) -> list[Axis]:
    """(δ, κ) axes in that order (δ rows, κ columns: κ on the x axis of the figure)."""
    names = [a.name for a in axes]
    others = [n for n in names if n not in EXPONENTS]
    if others:
        raise UsageError(f"a phase-diagram sweep has the axes kappa and delta only; fix "
                         f"{', '.join(others)} with --set")
    by = {a.name: a for a in axes}
    return [by.get("delta", Axis("delta", np.array([0.0]))),
            by.get("kappa", Axis("kappa", np.array([0.0])))]


def plot_phase_diagram(res: SweepResult, path: str | Path,
                       observable: str = "excess_risk") -> None:
    """Left: the regime classes (coloured regions) with the lines κ + δ = 0 and
    δ = −(κ + 1)/2; right: the final `observable` (log colour scale), no-limit points grey."""
    import matplotlib
    from matplotlib.colors import ListedColormap

    from eqgen.plot import _figure
    from eqgen.sweep.plot import _edges

    plt, fig, (ax_c, ax_r) = _figure(2)
    deltas, kappas = res.axes[0].values, res.axes[1].values
    ny, nx = len(deltas), len(kappas)
    ex, ey = _edges(kappas, False), _edges(deltas, False)
    codes = np.array([CLASSES.index(c) for c in res.extra["regime"]]).reshape(ny, nx)
    colours = ["#8fc9a8", "#f2c14e", "#e07a5f", "#bdbdbd"]
    ax_c.pcolormesh(ex, ey, codes, cmap=ListedColormap(colours), vmin=-0.5, vmax=3.5,
                    shading="flat")
    labels = ["gradient flow (κ+δ>0)", "high-dim. SGD (κ+δ=0)",
              "noise-dominated", "no ODE limit"]
    handles = [matplotlib.patches.Patch(color=c, label=lab)
               for c, lab, code in zip(colours, labels, range(4), strict=True)
               if np.any(codes == code)]
    z = res.final(observable).reshape(ny, nx)
    finite = z[np.isfinite(z) & (z > 0)]
    norm = (matplotlib.colors.LogNorm(finite.min(), finite.max())
            if finite.size and finite.max() > finite.min() else None)
    cmap = matplotlib.colormaps["viridis"].copy()
    cmap.set_bad("#d9d9d9")
    mesh = ax_r.pcolormesh(ex, ey, np.ma.masked_invalid(np.where(z > 0, z, np.nan)),
                           norm=norm, cmap=cmap, shading="flat")
    fig.colorbar(mesh, ax=ax_r, label=f"{observable} at t = {res.t[-1]:g}")
    k = np.linspace(ex[0], ex[-1], 200)
    for ax in (ax_c, ax_r):
        ax.plot(k, -k, "k-", lw=1.2)
        ax.plot(k, -(k + 1) / 2, "k--", lw=1.2)
        ax.set_xlim(ex[0], ex[-1])
        ax.set_ylim(ey[0], ey[-1])
        ax.set_xlabel("κ  (p ~ d^κ)")
        ax.set_ylabel("δ  (γ = γ₀ d^−δ)")
    ax_c.legend(handles=handles + [
        matplotlib.lines.Line2D([], [], color="k", lw=1.2, label="κ + δ = 0"),
        matplotlib.lines.Line2D([], [], color="k", ls="--", lw=1.2, label="δ = −(κ+1)/2")],
        fontsize=7, loc="upper right")
    ax_c.set_title("regime")
    how = res.metadata.get("phase_diagram", "limit")
    ax_r.set_title(f"final {observable} ({how})")
    fig.suptitle(f"{res.metadata.get('model', '')}: phase diagram of online SGD")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
