"""Plots of solved models: risk against time (log axes where they help) and the overlaps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from eqgen.runtime.solution import Solution


def _figure(ncols: int):  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.0), squeeze=False)
    return plt, fig, axes[0]


def _log_x(t: np.ndarray) -> bool:
    pos = t[t > 0]
    return pos.size > 2 and pos.max() / pos.min() > 1e3


def plot_solution(sol: Solution, path: str | Path, title: str | None = None,
                  max_curves: int = 12) -> None:
    """Left: observables against t (log y when they span decades); right: order parameters.
    DMFT solutions (observables m, Q, losses and errors) get their own three panels."""
    if sol.metadata.get("family") == "dmft":
        plot_dmft(sol, path, title)
        return
    plt, fig, (ax_r, ax_o) = _figure(2)
    t = sol.t
    mask = t > 0 if _log_x(t) else np.ones_like(t, dtype=bool)
    for name, v in sol.observables.items():
        ax_r.plot(t[mask], v[mask], label=name)
    for i, pl in enumerate(sol.metadata.get("plateaus", [])):  # eqgen.analysis.plateaus
        ax_r.axvspan(pl["start"], pl["end"], color="0.88", zorder=0,
                     label="plateau" if i == 0 else None)
        ax_r.hlines(pl["level"], pl["start"], pl["end"], colors="k", linestyles=":", lw=1)
    vals = np.concatenate([v[mask] for v in sol.observables.values()])
    pos = vals[vals > 0]
    if pos.size and np.all(vals > 0) and pos.max() / pos.min() > 50:
        ax_r.set_yscale("log")
    if _log_x(t):
        ax_r.set_xscale("log")
        ax_o.set_xscale("log")
    ax_r.set_xlabel("t")
    ax_r.set_title("risk" if "excess_risk" in sol.observables else "observables")
    ax_r.legend(fontsize=8)
    n = 0
    for name in ("M", "Q", "m", "a"):
        if name not in sol.states or n >= max_curves:
            continue
        arr = sol.states[name]
        flat = arr.reshape(len(t), -1)
        if np.allclose(flat, flat[:1]) and name == "a":
            continue
        shape = arr.shape[1:]
        for idx in np.ndindex(*shape):
            if name == "Q" and idx[0] > idx[1]:
                continue
            if n >= max_curves:
                break
            label = f"{name}[{','.join(map(str, idx))}]" if shape else name
            ax_o.plot(t[mask], arr[(mask, *idx)], label=label,
                      ls="-" if name == "M" else "--" if name == "Q" else ":")
            n += 1
    ax_o.set_xlabel("t")
    ax_o.set_title("order parameters" + (" (first curves)" if n >= max_curves else ""))
    ax_o.legend(fontsize=7, ncol=2)
    fig.suptitle(title or sol.metadata.get("title") or sol.metadata.get("model", ""),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


DMFT_PANELS = (("overlaps", ("m", "Q")), ("losses", ("train_loss", "test_loss")),
               ("errors", ("train_error", "test_error")))


def plot_dmft(sol: Solution, path: str | Path, title: str | None = None) -> None:
    """A DMFT solution: m and Q, training and test loss, training and test error against t."""
    plt, fig, axes = _figure(3)
    for ax, (panel, names) in zip(axes, DMFT_PANELS, strict=False):
        for name in names:
            if name not in sol.observables:
                continue
            se = sol.observables.get(name + "_stderr")
            if se is not None and np.all(np.isfinite(se)):
                ax.errorbar(sol.t, sol.observables[name], yerr=se, fmt=".", ms=3, label=name)
            else:
                ax.plot(sol.t, sol.observables[name], label=name)
        ax.set_xlabel("t")
        ax.set_title(panel)
        ax.legend(fontsize=8)
    fig.suptitle(title or sol.metadata.get("title") or sol.metadata.get("model", ""),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_many(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
              ylabel: str, title: str = "", **kwargs: Any) -> None:
    """Several labelled curves (t, y) on one log–log or lin–log axis."""
    plt, fig, (ax,) = _figure(1)
    for label, (t, y) in curves.items():
        m = t > 0
        ax.plot(t[m], y[m], label=label, **kwargs)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
