"""`eqgen sweep SPEC --grid NAME=a:b:n ...`: solve a grid of parameter values in one compiled,
vectorised solve; write a tidy CSV and a plot. With `--grid kappa=... --grid delta=...` (regime
exponents, not parameters of the spec) it draws the (κ, δ) phase diagram instead.

Exit codes: 0 when at least one point was solved (failed points are listed on stderr, flagged
in the CSV's `success` column and in the `.meta.json`); 3 when every solved point failed; 1 and
2 for bad input as everywhere else.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from eqgen.errors import NumericalError, UsageError

HELP = "solve a grid of parameter values (vmapped) or the (κ, δ) phase diagram"
MAX_LISTED = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=VALUES",
                   help="a:b:n (linear, inclusive), log:a:b:n (geometric) or a,b,c; several "
                   "--grid make the Cartesian product; kappa and delta sweep the regime")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets")
    p.add_argument("--init", metavar="FILE.json")
    p.add_argument("--t-max", type=float)
    p.add_argument("--save-at", metavar="T1,T2,...")
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--atol", type=float, default=1e-10)
    p.add_argument("--solver", default="tsit5")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--d-ref", type=float, default=None, metavar="D",
                   help="phase diagram at a finite reference dimension D (γ_eff = γ D^−(κ+δ), "
                   "full ODE) instead of each class's limiting ODE")
    p.add_argument("--observable", default="excess_risk", help="what the plot shows")
    p.add_argument("--no-states", action="store_true",
                   help="CSV without the state entries (grid parameters, t, observables)")
    p.add_argument("-o", "--output", metavar="FILE.csv|FILE.json")
    p.add_argument("--plot", metavar="FILE.png")


def run(args: argparse.Namespace) -> int:
    from eqgen.cli import Progress, _parse_sets, _parse_times, _read_init
    from eqgen.model import load
    from eqgen.output_paths import check_outputs
    from eqgen.phase_diagram import is_phase_grid, phase_sweep, plot_phase_diagram
    from eqgen.sweep import axes_from, sweep

    check_outputs([("-o", args.output, "data"), ("--plot", args.plot, "plot")],
                  [("the spec", args.spec), ("the --init file", args.init)])
    progress = Progress()
    model = load(args.spec)
    if model.family != "committee":
        raise UsageError(f"eqgen sweep solves committee (ODE) models; {model.name} is a "
                         f"{model.family} model")
    axes_from(args.grid)  # malformed --grid: usage error before any work
    params = _parse_sets(args.sets)
    init = _read_init(args.init) if args.init else None
    save_at = _parse_times(args.save_at) if args.save_at else None
    model.resolve(params, init, args.init or "init")
    phase = is_phase_grid(model, args.grid)
    if args.d_ref is not None and not phase:
        raise UsageError("--d-ref applies to a phase-diagram sweep (--grid kappa=... "
                         "--grid delta=...)")
    common = dict(params=params, init=init, save_at=save_at, t_max=args.t_max,
                  rtol=args.rtol, atol=args.atol, solver=args.solver,
                  max_steps=args.max_steps, init_source=args.init or "init", progress=progress)
    progress(f"compiling {model.name}")
    if phase:
        res = phase_sweep(model, args.grid, d_ref=args.d_ref, **common)
    else:
        res = sweep(model, args.grid, **common)
    if args.observable not in res.observables:
        raise UsageError(f"--observable {args.observable}: not an observable of "
                         f"{model.name}; have " + ", ".join(res.observables))
    progress(f"solved {len(res)} points")
    _report_failures(res, phase)
    if args.output:
        if args.output.endswith(".json"):
            res.to_json(args.output)
        else:
            res.to_csv(args.output, states=not args.no_states)
    else:
        _print_table(res, args.observable)
    if args.plot:
        if phase:
            plot_phase_diagram(res, args.plot, args.observable)
        else:
            res.plot(args.plot, args.observable)
    attempted = [i for i, m in enumerate(res.messages) if not (m or "").startswith("no ODE")]
    if attempted and not np.any(res.success[attempted]):
        raise NumericalError(f"every one of the {len(attempted)} solved grid points failed",
                             hint="see the messages above; lower the learning rate or "
                             "shorten --t-max")
    return 0


def _report_failures(res, phase: bool) -> None:  # noqa: ANN001
    failed = [(i, p, m) for i, p, m in res.failed if not (phase and m.startswith("no ODE"))]
    if phase:
        n_none = len(res.failed) - len(failed)
        if n_none:
            print(f"{n_none} point(s) have no ODE limit (−δ ≥ (κ + 1)/2): classified, not "
                  "solved", file=sys.stderr)
    if not failed:
        return
    print(f"{len(failed)} of {len(res)} grid points failed (rows NaN after the failure, "
          "success = 0):", file=sys.stderr)
    for i, point, message in failed[:MAX_LISTED]:
        where = ", ".join(f"{k} = {v:g}" for k, v in point.items())
        print(f"  point {i} ({where}): {message.splitlines()[0]}", file=sys.stderr)
    if len(failed) > MAX_LISTED:
        print(f"  ... and {len(failed) - MAX_LISTED} more (see the .meta.json)",
              file=sys.stderr)


def _print_table(res, observable: str) -> None:  # noqa: ANN001
    extra = list(res.extra)
    print(",".join([*res.names, *extra, f"{observable}_final", "success"]))
    final = res.final(observable)
    for i, point in enumerate(res.points):
        cells = [f"{point[n]:.10g}" for n in res.names] + [str(res.extra[n][i]) for n in extra]
        cells += [f"{final[i]:.10g}", "1" if res.success[i] else "0"]
        print(",".join(cells))
