"""`eqgen time-to SPEC --loss L`: solve the model, then report when a learning curve first
reaches given levels (eqgen.analysis.crossing) and, for DMFT models, the interpolation time
(training error zero) or that it is not reached within t_max.

The curve is `train_loss` for DMFT models and `excess_risk` for committee models unless
`--observable` says otherwise. With sampled trajectories the interpolation time is the time at
which the *sampled* training error reaches 0, a finite-N estimate that grows with N and varies
with the seed; `--seeds S` solves with S seeds (seed, seed + 1, ...) and reports each time and
their spread.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from eqgen.errors import UsageError

HELP = "time to reach a training loss (and the interpolation time of DMFT models)"
DIGITS = 6  # significant digits of printed times (DMFT: exact to one step η)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--loss", action="append", default=[], type=float, metavar="L",
                   help="a level to reach (repeatable)")
    p.add_argument("--observable", metavar="NAME",
                   help="the curve (default: train_loss for DMFT, excess_risk for committee)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets")
    p.add_argument("--init", metavar="FILE.json")
    p.add_argument("--t-max", type=float)
    from eqgen.cli import seed_arg, whole_number

    p.add_argument("--samples", type=whole_number, help="Monte Carlo samples N (DMFT models)")
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed (DMFT models)")
    p.add_argument("--seeds", type=whole_number, default=1, metavar="S",
                   help="DMFT models: solve with S seeds (seed, seed+1, ...) and report the "
                   "spread of the times over them (default 1)")
    p.add_argument("--error-tol", type=float, default=0.0,
                   help="interpolation: training error ≤ this counts as zero (default 0)")
    p.add_argument("-o", "--output", metavar="FILE.json")


def _time(t: float | None) -> str:
    return f"{t:.{DIGITS}g}"


def _spread(values: list[float | None], t_max: float) -> str:
    """One time, or for several seeds the median, range and how many reached it."""
    reached = [v for v in values if v is not None]
    if len(values) == 1:
        return f"t = {_time(reached[0])}" if reached else f"not reached within t_max = {t_max:g}"
    if not reached:
        return f"not reached within t_max = {t_max:g} for any of the {len(values)} seeds"
    text = (f"t = {_time(float(np.median(reached)))} (median; range {_time(min(reached))} to "
            f"{_time(max(reached))}")
    if len(reached) < len(values):
        text += f"; reached for {len(reached)} of {len(values)} seeds"
    return text + ")"


def _check(args: argparse.Namespace, dmft: bool) -> None:
    from eqgen.cli import MAX_SEED

    if not dmft and args.samples is not None:
        raise UsageError("--samples applies to DMFT models only")
    if not dmft and args.seeds != 1:
        raise UsageError("--seeds applies to DMFT models only (committee ODEs are "
                         "deterministic)")
    if args.seeds < 1:
        raise UsageError("--seeds must be at least 1")
    if args.seed + args.seeds > MAX_SEED:
        raise UsageError(f"--seed {args.seed} with --seeds {args.seeds} runs past the largest "
                         f"seed, {MAX_SEED - 1}\n  hint: seeds are 32-bit; start lower, e.g. "
                         "--seed 0")
    bad = [level for level in args.loss if not math.isfinite(level)]
    if bad:
        raise UsageError(f"--loss must be a finite number, got {bad[0]:g}\n  hint: a level of "
                         "the curve to reach, e.g. --loss 0.1")
    if not 0 <= args.error_tol < 1:
        raise UsageError(f"--error-tol must be in [0, 1), got {args.error_tol:g}\n  hint: the "
                         "training error is a fraction of misclassified samples; 0 (the "
                         "default) asks for none, e.g. 0.01 for at most 1 %")


def _interpolation(sols: list[Any], seeds: list[int], tol: float,
                   t_max: float) -> tuple[dict[str, Any], str, str]:
    """JSON entries, the printed line and a note (or "") for the interpolation time."""
    from eqgen.analysis.crossing import interpolation_spread

    spread = interpolation_spread(sols, seeds, tol)
    what = "= 0" if tol == 0 else f"≤ {tol:g}"
    n = spread.samples
    basis = (f"N = {n} sampled trajectories" if n else "exact propagation")
    line = f"interpolation (train_error {what} from then on, {basis}): " \
        + _spread(list(spread.times), t_max)
    note = ""
    if n and spread.reached:
        note = ("note: the interpolation time is when none of the N sampled trajectories is "
                "misclassified: a finite-N estimate that grows with N and depends on the seed"
                + ("" if len(seeds) > 1 else "; --seeds S shows its spread"))
    doc: dict[str, Any] = {"interpolation_time": spread.times[0] if len(seeds) == 1
                           else spread.summary()["median"],
                           "error_tol": tol, "samples": n,
                           "interpolation": spread.summary()}
    return doc, line, note


def report(model: Any, sols: list[Any], seeds: list[int], levels: list[float],
           observable: str | None = None,
           error_tol: float = 0.0) -> tuple[dict[str, Any], list[str], list[str]]:
    """What `time-to` reports for solves of `model` that differ only in their seed: the JSON
    document, the printed lines and the notes (for stderr)."""
    from eqgen.analysis.crossing import time_to

    dmft = model.family == "dmft"
    sol = sols[0]
    name = observable or ("train_loss" if dmft else "excess_risk")
    if name not in sol.observables:
        raise UsageError(f"no observable '{name}'; this model has " + ", ".join(sol.observables))
    t_max = float(sol.t[-1])
    result: dict[str, Any] = {"model": model.name,
                              "parameters": sol.metadata.get("parameters", {}),
                              "observable": name, "t_max": t_max, "times": []}
    if len(seeds) > 1:
        result["seeds"] = seeds
    lines, notes = [], []
    for level in levels:
        ts = [time_to(s, level, name) for s in sols]
        entry: dict[str, Any] = {"level": level, "t": ts[0] if len(ts) == 1 else None}
        if len(ts) > 1:
            reached = [t for t in ts if t is not None]
            entry.update({"t": float(np.median(reached)) if reached else None,
                          "t_per_seed": ts})
        result["times"].append(entry)
        lines.append(f"{name} ≤ {level:g}: " + _spread(ts, t_max))
    if dmft:
        doc, line, note = _interpolation(sols, seeds, error_tol, t_max)
        result.update(doc)
        lines.append(line)
        notes += [note] if note else []
    elif not levels:
        notes.append("note: give --loss L to ask when the curve reaches L")
    return result, lines, notes


def run(args: argparse.Namespace) -> int:
    from eqgen.cli import Progress, _parse_sets, _read_init
    from eqgen.model import load
    from eqgen.output_paths import check_outputs

    check_outputs([("-o", args.output, "file")],
                  [("the spec", args.spec), ("the --init file", args.init)], example="out.json")
    progress = Progress()
    model = load(args.spec)
    dmft = model.family == "dmft"
    _check(args, dmft)
    params = _parse_sets(args.sets)
    init = _read_init(args.init) if args.init else None
    model.resolve(params, init, args.init or "init")
    seeds = [args.seed + i for i in range(args.seeds)]
    sols = []
    for seed in seeds:
        progress(f"solving {model.name}" + (f" (seed {seed})" if len(seeds) > 1 else ""))
        extra = {"samples": args.samples, "seed": seed} if dmft else {}
        sols.append(model.solve(params=params, init=init, t_max=args.t_max,
                                init_source=args.init or "init", **extra))
    result, lines, notes = report(model, sols, seeds, args.loss, args.observable,
                                  args.error_tol)
    result["parameters"] = params
    print("\n".join(lines))
    for note in notes:
        print(note, file=sys.stderr)
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    return 0
