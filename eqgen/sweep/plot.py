"""Plots of a sweep: one axis gives the trajectories and the final value against the swept
parameter; two axes a heat map of the final value; more axes one curve per combination of the
others. Failed points are marked, never silently left out."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from eqgen.plot import _figure, _log_x

if TYPE_CHECKING:
    from eqgen.sweep.result import SweepResult

MAX_CURVES = 12


def _log_values(v: np.ndarray, log: bool) -> bool:
    pos = v[v > 0]
    return log or (pos.size == v.size and v.size > 2 and pos.max() / pos.min() > 1e2)


def _log_colour(values: np.ndarray) -> bool:
    ok = values[np.isfinite(values)]
    return ok.size > 0 and bool(np.all(ok > 0)) and ok.max() / ok.min() > 1e2


def plot_sweep(res: SweepResult, path: str | Path, observable: str = "excess_risk") -> None:
    """Write a figure of `observable` over the grid (PNG, PDF or SVG by extension)."""
    if observable not in res.observables:
        from eqgen.errors import UsageError

        raise UsageError(f"unknown observable {observable!r}; have "
                         + ", ".join(res.observables))
    if len(res.axes) == 1:
        _one_axis(res, path, observable)
    elif len(res.axes) == 2:
        _heat_map(res, path, observable)
    else:
        _curves(res, path, observable)


def _title(res: SweepResult, observable: str) -> str:
    n_bad = int(np.sum(~res.success))
    bad = f", {n_bad} failed (×)" if n_bad else ""
    return f"{res.metadata.get('model', '')}: final {observable}{bad}"


def _one_axis(res: SweepResult, path: str | Path, observable: str) -> None:
    import matplotlib

    plt, fig, (ax_t, ax_f) = _figure(2)
    axis = res.axes[0]
    x = np.array([pt[axis.name] for pt in res.points])
    t = res.t
    mask = t > 0 if _log_x(t) else np.ones_like(t, dtype=bool)
    norm = matplotlib.colors.Normalize(x.min(), x.max() if x.max() > x.min() else x.min() + 1)
    cmap = matplotlib.colormaps["viridis"]
    for i in range(len(res)):
        ax_t.plot(t[mask], res[observable][i][mask], color=cmap(norm(x[i])), lw=1)
    if _log_x(t):
        ax_t.set_xscale("log")
    y = res[observable]
    if _log_colour(y.ravel()):
        ax_t.set_yscale("log")
    ax_t.set_xlabel("t")
    ax_t.set_ylabel(observable)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax_t, label=axis.name)
    final = res.final(observable)
    ok = res.success
    ax_f.plot(x[ok], final[ok], "o-", ms=3)
    if np.any(~ok):
        last = np.array([_last_finite(y[i]) for i in range(len(res))])
        ax_f.plot(x[~ok], last[~ok], "rx", label="failed (last finite value)")
        ax_f.legend()
    if _log_values(x, axis.log):
        ax_f.set_xscale("log")
    if _log_colour(final):
        ax_f.set_yscale("log")
    ax_f.set_xlabel(axis.name)
    ax_f.set_ylabel(f"{observable} at t = {t[-1]:g}")
    fig.suptitle(_title(res, observable))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _last_finite(v: np.ndarray) -> float:
    ok = np.flatnonzero(np.isfinite(v))
    return float(v[ok[-1]]) if ok.size else np.nan


def _edges(v: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around grid values (geometric midpoints on a log axis)."""
    if v.size == 1:
        return np.array([v[0] * 0.9, v[0] * 1.1]) if log else np.array([v[0] - 0.5, v[0] + 0.5])
    w = np.log(v) if log else v
    mid = (w[1:] + w[:-1]) / 2
    e = np.concatenate([[2 * w[0] - mid[0]], mid, [2 * w[-1] - mid[-1]]])
    return np.exp(e) if log else e


def _uneven(v: np.ndarray, log: bool) -> bool:
    """Whether grid values are too unevenly spaced for a linear (or log) axis: the widest gap
    over 10 × the narrowest, as in `Delta=0,1e-3,1e-2`, whose first two cells a linear axis
    would squash into a sliver. Such an axis is drawn with one equal cell per value."""
    if v.size < 3:
        return False
    gaps = np.diff(np.log(v) if log else v)
    return bool(gaps.min() <= 0 or gaps.max() > 10 * gaps.min())


def _cells(v: np.ndarray, log: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """(cell edges, cell centres, categorical?) of one heat-map axis."""
    if _uneven(v, log):
        centres = np.arange(v.size, dtype=float)
        return _edges(centres, False), centres, True
    return _edges(v, log), v, False


def _heat_map(res: SweepResult, path: str | Path, observable: str) -> None:
    import matplotlib

    plt, fig, (ax,) = _figure(1)
    ax_x, ax_y = res.axes[1], res.axes[0]
    nx, ny = len(ax_x.values), len(ax_y.values)
    z = res.final(observable).reshape(ny, nx)
    log_x, log_y = _log_values(ax_x.values, ax_x.log), _log_values(ax_y.values, ax_y.log)
    edges_x, at_x, cat_x = _cells(ax_x.values, log_x)
    edges_y, at_y, cat_y = _cells(ax_y.values, log_y)
    norm = matplotlib.colors.LogNorm() if _log_colour(z.ravel()) else None
    mesh = ax.pcolormesh(edges_x, edges_y, np.ma.masked_invalid(z), norm=norm, cmap="viridis",
                         shading="flat")
    fig.colorbar(mesh, ax=ax, label=f"{observable} at t = {res.t[-1]:g}")
    bad = ~res.success.reshape(ny, nx)
    if np.any(bad):
        yy, xx = np.nonzero(bad)
        ax.plot(at_x[xx], at_y[yy], "rx", label="failed")
        ax.legend(loc="upper right")
    if cat_x:
        ax.set_xticks(at_x, [f"{v:g}" for v in ax_x.values])
    elif log_x:
        ax.set_xscale("log")
    if cat_y:
        ax.set_yticks(at_y, [f"{v:g}" for v in ax_y.values])
    elif log_y:
        ax.set_yscale("log")
    ax.set_xlabel(ax_x.name)
    ax.set_ylabel(ax_y.name)
    ax.set_title(_title(res, observable))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _curves(res: SweepResult, path: str | Path, observable: str) -> None:
    plt, fig, (ax,) = _figure(1)
    first, rest = res.axes[0], res.axes[1:]
    final = res.final(observable)
    index = {tuple(pt[a.name] for a in res.axes): i for i, pt in enumerate(res.points)}
    combos = list(itertools.product(*(a.values for a in rest)))
    for combo in combos[:MAX_CURVES]:
        ii = [index[(float(x), *map(float, combo))] for x in first.values]
        label = ", ".join(f"{a.name}={v:g}" for a, v in zip(rest, combo, strict=True))
        ax.plot(first.values, final[ii], "o-", ms=3, label=label)
    if len(combos) > MAX_CURVES:
        ax.text(0.01, 0.01, f"first {MAX_CURVES} of {len(combos)} combinations",
                transform=ax.transAxes, fontsize=8)
    if _log_values(first.values, first.log):
        ax.set_xscale("log")
    if _log_colour(final):
        ax.set_yscale("log")
    ax.set_xlabel(first.name)
    ax.set_ylabel(f"{observable} at t = {res.t[-1]:g}")
    ax.legend(fontsize=7)
    ax.set_title(_title(res, observable))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
