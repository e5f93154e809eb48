"""`eqgen time-to SPEC --loss L`: solve the model, then report when a learning curve first
reaches given levels (eqgen.analysis.crossing) and, for DMFT models, the interpolation time
(training error zero) or that it is not reached within t_max.

The curve is `train_loss` for DMFT models and `excess_risk` for committee models unless
`--observable` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eqgen.errors import UsageError

HELP = "time to reach a training loss (and the interpolation time of DMFT models)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--loss", action="append", default=[], type=float, metavar="L",
                   help="a level to reach (repeatable)")
    p.add_argument("--observable", metavar="NAME",
                   help="the curve (default: train_loss for DMFT, excess_risk for committee)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets")
    p.add_argument("--init", metavar="FILE.json")
    p.add_argument("--t-max", type=float)
    p.add_argument("--samples", type=int, help="Monte Carlo samples (DMFT models)")
    p.add_argument("--seed", type=int, default=0, help="random seed (DMFT models)")
    p.add_argument("--error-tol", type=float, default=0.0,
                   help="interpolation: training error ≤ this counts as zero (default 0)")
    p.add_argument("-o", "--output", metavar="FILE.json")


def run(args: argparse.Namespace) -> int:
    from eqgen.analysis.crossing import interpolation_time, time_to
    from eqgen.cli import Progress, _parse_sets, _read_init
    from eqgen.model import load

    progress = Progress()
    model = load(args.spec)
    dmft = model.family == "dmft"
    if not dmft and args.samples is not None:
        raise UsageError("--samples applies to DMFT models only")
    params = _parse_sets(args.sets)
    init = _read_init(args.init) if args.init else None
    model.resolve(params, init, args.init or "init")
    name = args.observable or ("train_loss" if dmft else "excess_risk")
    progress(f"solving {model.name}")
    extra = {"samples": args.samples, "seed": args.seed} if dmft else {}
    sol = model.solve(params=params, init=init, t_max=args.t_max,
                      init_source=args.init or "init", **extra)
    if name not in sol.observables:
        raise UsageError(f"no observable '{name}'; this model has " + ", ".join(sol.observables))
    result: dict = {"model": model.name, "parameters": params, "observable": name,
                    "t_max": float(sol.t[-1]), "times": []}
    for level in args.loss:
        t = time_to(sol, level, name)
        result["times"].append({"level": level, "t": t})
        print(f"{name} ≤ {level:g}: " + (f"t = {t:.10g}" if t is not None
                                          else f"not reached within t_max = {sol.t[-1]:g}"))
    if dmft:
        t = interpolation_time(sol, args.error_tol)
        result["interpolation_time"] = t
        result["error_tol"] = args.error_tol
        print("interpolation (train_error " + ("= 0" if args.error_tol == 0 else
                                                f"≤ {args.error_tol:g}") + "): "
              + (f"t = {t:.10g}" if t is not None else f"none within t_max = {sol.t[-1]:g}"))
    elif not args.loss:
        print("note: give --loss L to ask when the curve reaches L", file=sys.stderr)
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    return 0
