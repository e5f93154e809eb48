"""Theory against simulation: one `Solution` with both, and a plot of one over the other.

Generic over model families: every observable the theory has and the simulation has too
(`<name>`, with its standard error `<name>_stderr` when the simulation gives one) becomes three
columns, `<name>` (theory), `<name>_sim` and `<name>_sim_stderr` — four where the theory has a
Monte Carlo error of its own (a sampled DMFT with replicas, eqgen.replicas): `<name>`,
`<name>_stderr` (the theory's), `<name>_sim`, `<name>_sim_stderr`; an observable only the
simulation has (the held-out `risk_test`) becomes `<name>_sim` and `<name>_sim_stderr`, right
after the three columns of the theory observable its name extends (`risk`). States shared by
both become `<name>` and `<name>_sim` (and `<name>_sim_stderr` when the simulation has a state
`<name>_stderr`). The CSV therefore reads: t, the observables in threes (held-out estimates in
twos beside them), then state entries.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eqgen.errors import EqgenError, NumericalError

if TYPE_CHECKING:
    from eqgen.runtime.solution import Solution


# A standard error below this times the value is round-off, not a measured spread.
ROUND_OFF = 1e-12

# Observables that are order parameters rather than losses or errors (DMFT: m and Q).
ORDER_OBSERVABLES = ("m", "Q")


def compare(theory: Solution, sim: Solution) -> Solution:
    """Theory and simulation side by side, at the simulation's times.

    The theory is normally solved at exactly those times (`Model.compare` does so); otherwise it
    is interpolated linearly onto them, which the metadata records. Raises `EqgenError` when the
    two have no observable in common or the theory does not cover the simulated times.
    """
    from eqgen.runtime.solution import Solution

    t = np.asarray(sim.t, dtype=float)
    th_t = np.asarray(theory.t, dtype=float)
    exact = th_t.shape == t.shape and np.allclose(th_t, t, rtol=1e-12, atol=1e-12)
    if not exact and (th_t.size == 0 or t.min() < th_t.min() - 1e-12 * max(1.0, abs(th_t.min()))
                      or t.max() > th_t.max() * (1 + 1e-12) + 1e-12):
        raise EqgenError("the theory does not cover the simulated times "
                         f"[{t.min():g}, {t.max():g}]")

    def at(v: np.ndarray) -> np.ndarray:
        if exact:
            return np.asarray(v)
        flat = np.asarray(v).reshape(len(th_t), -1)
        cols = [np.interp(t, th_t, flat[:, i]) for i in range(flat.shape[1])]
        return np.stack(cols, axis=-1).reshape(len(t), *np.asarray(v).shape[1:])

    observables: dict[str, np.ndarray] = {}
    extra = _simulation_only(theory, sim)
    for name, v in theory.observables.items():
        if name.endswith("_stderr") or name not in sim.observables:
            continue
        observables[name] = at(v)
        if f"{name}_stderr" in theory.observables:  # the theory's own Monte Carlo error
            observables[f"{name}_stderr"] = at(theory.observables[f"{name}_stderr"])
        for own in (name, *extra.get(name, [])):
            observables[f"{own}_sim"] = np.asarray(sim.observables[own])
            err = sim.observables.get(f"{own}_stderr")
            observables[f"{own}_sim_stderr"] = (np.asarray(err) if err is not None
                                                else np.full(len(t), np.nan))
    if not observables:
        raise EqgenError("theory and simulation have no observable in common: theory has "
                         + ", ".join(theory.observables) + "; simulation has "
                         + ", ".join(sim.observables))
    states: dict[str, np.ndarray] = {}
    for name, v in theory.states.items():
        if name not in sim.states:
            continue
        states[name] = at(v)
        states[f"{name}_sim"] = np.asarray(sim.states[name])
        if f"{name}_stderr" in sim.states:
            states[f"{name}_sim_stderr"] = np.asarray(sim.states[f"{name}_stderr"])
    meta: dict[str, Any] = {
        key: sim.metadata[key] for key in ("model", "title", "family", "d", "seeds", "seed")
        if key in sim.metadata
    }
    meta.update(kind="comparison", theory_interpolated=not exact,
                theory=theory.metadata, simulation=sim.metadata)
    return Solution(t, observables, states, meta)


def simulate_and_compare(simulate: Callable[[], Solution],
                         solve: Callable[[Solution], Solution]) -> Solution:
    """`compare(solve(sim), sim)` with `sim = simulate()`, keeping what exists when either
    fails (`NumericalError`).

    A simulation that diverges still has its seed means up to the last good time (its
    `partial`): the theory is solved at those times, and the comparison of the two is the
    partial result of the simulation's error, which is raised. A theory that fails keeps its
    values up to the failure, NaN after it, beside the whole simulation; the theory's error is
    raised with that comparison as its partial result. Either way the comparison's metadata
    says `partial: true` and which stage failed (`failure`), and a theory failure after a
    failed simulation is recorded as `theory_failure`.
    """
    failure: NumericalError | None = None
    try:
        sim = simulate()
    except NumericalError as e:
        if not _has_rows(e.partial):
            raise
        failure, sim = e, e.partial
    theory_failure: NumericalError | None = None
    try:
        theory = solve(sim)
    except NumericalError as e:
        if e.partial is None:  # nothing of the theory: the simulation alone is kept
            if failure is None:
                e.partial = sim.mark_partial(e, stage="theory")
            raise (failure or e) from None
        theory_failure, theory = e, e.partial
    cmp = compare(_padded(theory, sim.t), sim)
    if failure is not None:
        cmp.mark_partial(failure, stage="simulation")
        if theory_failure is not None:
            cmp.metadata["theory_failure"] = {"message": str(theory_failure),
                                              "t": theory_failure.t}
    elif theory_failure is not None:
        cmp.mark_partial(theory_failure, stage="theory")
        failure = theory_failure
    if failure is not None:
        failure.partial = cmp
        raise failure
    return cmp


def _has_rows(partial: Any) -> bool:
    """Whether a failure's partial result is a `Solution` with at least one time."""
    return partial is not None and hasattr(partial, "observables") and len(partial.t) > 0


def _padded(theory: Solution, t: np.ndarray) -> Solution:
    """`theory`, solved at the first times of `t` (a failed solve stops early), with NaN rows
    for the rest of `t`, so that it lines up with the simulation; unchanged when it already
    covers `t` or was solved at other times."""
    from eqgen.runtime.solution import Solution

    n = len(theory.t)
    if n >= len(t) or not np.allclose(theory.t, t[:n], rtol=1e-12, atol=1e-12):
        return theory

    def pad(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        return np.concatenate([v, np.full((len(t) - n, *v.shape[1:]), np.nan)])

    return Solution(np.asarray(t, dtype=float), {k: pad(v) for k, v in theory.observables.items()},
                    {k: pad(v) for k, v in theory.states.items()}, dict(theory.metadata))


def _simulation_only(theory: Solution, sim: Solution) -> dict[str, list[str]]:
    """Observables only the simulation has (not standard errors), keyed by the compared
    observable whose name they extend (`risk_test` → `risk`); the longest such name wins."""
    shared = [n for n in theory.observables if n in sim.observables]
    out: dict[str, list[str]] = {}
    for name in sim.observables:
        if name in theory.observables or name.endswith("_stderr"):
            continue
        bases = [b for b in shared if name.startswith(b + "_")]
        if bases:
            out.setdefault(max(bases, key=len), []).append(name)
    return out


def deviations(cmp: Solution) -> dict[str, dict[str, float]]:
    """For each compared observable: the largest |theory − simulation|, the same relative to
    the theory's range, and the largest deviation in units of the standard error of the
    difference — the simulation's, combined with the theory's own (`<name>_stderr`, a sampled
    DMFT's Monte Carlo error) where the theory has one (`theory_stderr_included`)."""
    out = {}
    for name in cmp.observables:
        if not (f"{name}_sim" in cmp.observables and f"{name}_sim_stderr" in cmp.observables):
            continue
        th, sm = cmp.observables[name], cmp.observables[f"{name}_sim"]
        err = np.asarray(cmp.observables[f"{name}_sim_stderr"], dtype=float)
        own = cmp.observables.get(f"{name}_stderr")
        if own is not None:
            err = np.hypot(err, np.asarray(own, dtype=float))
        diff = np.abs(th - sm)
        # a standard error at round-off level (a start that every seed or replica shares)
        # measures nothing: no z there, or a difference of 1e-16 would count as 10 errors
        floor = ROUND_OFF * np.maximum(np.abs(th), np.abs(sm))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(err > floor, diff / err, np.nan)
        out[name] = {
            "max_abs": float(diff.max()),
            "max_rel_to_range": float(diff.max() / max(np.ptp(th), 1e-300)),
            "max_in_stderr": float(np.nanmax(z)) if np.isfinite(z).any() else float("nan"),
            "theory_stderr_included": own is not None,
        }
    return out


def plot_comparison(cmp: Solution, path: str | Path, title: str | None = None,
                    max_points: int = 40, max_curves: int = 6) -> None:
    """Left: each observable, theory as a line and simulation as points with error bars (one
    standard error), held-out estimates (`risk_test_sim`) as crosses beside them; right: a few
    order parameters (theory lines, simulation points with error bars where the simulation
    gives standard errors).

    At most `max_points` simulation points are drawn per curve (spread evenly on the time axis
    the plot uses), so that error bars stay readable.
    """
    from eqgen.plot import _figure, _log_x

    plt, fig, (ax_r, ax_o) = _figure(2)
    t = cmp.t
    logx = _log_x(t)
    mask = t > 0 if logx else np.ones_like(t, dtype=bool)
    pick = _spread(t, mask, logx, max_points)
    names = [n for n in cmp.observables if f"{n}_sim" in cmp.observables]
    # Without compared states (DMFT), the order-parameter observables take the right panel.
    scalar_orders = [] if cmp.states else [n for n in names if n in ORDER_OBSERVABLES]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    values: list[np.ndarray] = []
    drawn: list[str] = []
    for name in names:
        th, sm = cmp.observables[name], cmp.observables[f"{name}_sim"]
        if any(np.array_equal(th, cmp.observables[o]) and
               np.array_equal(sm, cmp.observables[f"{o}_sim"]) for o in drawn):
            continue  # e.g. risk = excess_risk without label noise: draw it once
        c = colors[len(drawn) % len(colors)]
        drawn.append(name)
        err = np.nan_to_num(cmp.observables.get(f"{name}_sim_stderr", np.zeros_like(sm)))
        ax = ax_o if name in scalar_orders else ax_r
        ax.plot(t[mask], th[mask], color=c, label=f"{name} (theory)")
        own = cmp.observables.get(f"{name}_stderr")
        if own is not None:  # the theory's Monte Carlo error: a band of ± 1 s.e.
            band = np.nan_to_num(np.asarray(own)[mask])
            ax.fill_between(t[mask], th[mask] - band, th[mask] + band, color=c, alpha=0.2,
                            linewidth=0)
        ax.errorbar(t[pick], sm[pick], yerr=err[pick], fmt="o", ms=3.5, mfc="none",
                    color=c, elinewidth=1, capsize=2, label=f"{name} (simulation)")
        if ax is ax_r:
            values += [th[mask], sm[mask]]
        for held in _held_out_of(cmp, name):
            hv = cmp.observables[f"{held}_sim"]
            herr = np.nan_to_num(cmp.observables.get(f"{held}_sim_stderr", np.zeros_like(hv)))
            ax.errorbar(t[pick], hv[pick], yerr=herr[pick], fmt="x", ms=4, color=c,
                        elinewidth=1, capsize=2, label=f"{held} (held-out samples)")
    vals = np.concatenate(values) if values else np.zeros(0)
    if vals.size and np.all(vals > 0) and vals.max() / vals.min() > 50:
        ax_r.set_yscale("log")
    n = len(scalar_orders)
    for base in ("M", "Q", "m", "a"):
        if base not in cmp.states or f"{base}_sim" not in cmp.states:
            continue
        th, sm = cmp.states[base], cmp.states[f"{base}_sim"]
        if base == "a" and np.allclose(th, th[:1]):
            continue
        for idx in np.ndindex(*th.shape[1:]):
            if (base == "Q" and idx[0] != idx[1]) or n >= max_curves:
                continue
            c = colors[n % len(colors)]
            label = f"{base}[{','.join(map(str, idx))}]" if idx else base
            ax_o.plot(t[mask], th[(mask, *idx)], color=c, label=label)
            se = cmp.states.get(f"{base}_sim_stderr")
            yerr = None if se is None else np.nan_to_num(se[(pick, *idx)])
            ax_o.errorbar(t[pick], sm[(pick, *idx)], yerr=yerr, fmt="o", ms=3.5, mfc="none",
                          color=c, elinewidth=1, capsize=2)
            n += 1
    for ax in (ax_r, ax_o):
        ax.set_xlabel("t")
        if logx:
            ax.set_xscale("log")
    sampled = any(k.endswith("_stderr") and not k.endswith("_sim_stderr")
                  for k in cmp.observables)
    ax_r.set_title("theory (lines" + (", bands ± 1 s.e. of its Monte Carlo" if sampled else "")
                   + ") and simulation (points, ± 1 s.e.)", fontsize=9)
    ax_r.legend(fontsize=7)
    ax_o.set_title("order parameters: theory (lines), simulation (points, ± 1 s.e.)",
                   fontsize=9)
    if n:
        ax_o.legend(fontsize=7, ncol=2)
    meta = cmp.metadata
    if title is None:
        title = meta.get("title") or meta.get("model", "")
        if "d" in meta:
            title += f" — d = {meta['d']}, {meta.get('seeds', '?')} seeds"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _held_out_of(cmp: Solution, name: str) -> list[str]:
    """The simulation-only observables compared beside `name` (e.g. `risk_test` for `risk`)."""
    return [k[:-4] for k in cmp.observables
            if k.startswith(f"{name}_") and k.endswith("_sim") and k != f"{name}_sim"
            and k[:-4] not in cmp.observables]


def _spread(t: np.ndarray, mask: np.ndarray, logx: bool, n: int) -> np.ndarray:
    """Indices of at most n of the masked times, spread evenly on a linear or log axis."""
    idx = np.flatnonzero(mask)
    if idx.size <= n:
        return idx
    x = np.log(t[idx]) if logx else t[idx]
    targets = np.linspace(x[0], x[-1], n)
    chosen = np.unique(np.abs(x[None, :] - targets[:, None]).argmin(axis=1))
    return idx[chosen]
