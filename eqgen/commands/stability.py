"""`eqgen stability SPEC`: linear stability of the perfect-learning fixed point (Q = M = P):
the slowest decay rate of the overlaps and the decay rate of the excess risk (asymptotic, and
of its first-order part) at the model's learning rate, and the largest stable learning rate
η_max (eqgen.analysis.stability), optionally over a sweep of parameters.

`--sweep NAME=VALUES` (a:b:n linear, log:a:b:n geometric, or a,b,c) is repeatable; several
sweeps must have the same length and are taken together, row by row (e.g. `--sweep p=2,3,4
--sweep k=2,3,4`).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from eqgen.errors import UsageError

HELP = "perfect-learning stability: decay rates (overlaps, risk) and the largest stable " \
    "learning rate"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets")
    p.add_argument("--sweep", action="append", default=[], metavar="NAME=VALUES",
                   help="a:b:n (linear), log:a:b:n (geometric) or a,b,c; repeatable "
                   "(taken together row by row)")
    p.add_argument("--rate", metavar="NAME",
                   help="the parameter that is the learning rate (default: from the spec)")
    p.add_argument("-o", "--output", metavar="FILE.csv|FILE.json")


def parse_values(text: str) -> list[float]:
    """a:b:n, log:a:b:n or a,b,c (usage error otherwise)."""
    try:
        if text.startswith("log:"):
            a, b, n = text[4:].split(":")
            if float(a) <= 0 or float(b) <= 0:
                raise UsageError(f"--sweep log:{a}:{b}:{n} needs positive bounds")
            return np.geomspace(float(a), float(b), int(n)).tolist()
        if ":" in text:
            a, b, n = text.split(":")
            return np.linspace(float(a), float(b), int(n)).tolist()
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--sweep values {text!r}: use a:b:n, log:a:b:n or a,b,c") from None


def parse_sweeps(items: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for it in items:
        if "=" not in it:
            raise UsageError(f"--sweep expects NAME=VALUES, got {it!r}")
        name, text = it.split("=", 1)
        vals = parse_values(text)
        if not vals or not all(np.isfinite(vals)):
            raise UsageError(f"--sweep {name}: needs finite values")
        out[name.strip()] = vals
    lengths = {len(v) for v in out.values()}
    if len(lengths) > 1:
        raise UsageError("several --sweep options must have the same number of values "
                         "(they are taken together, row by row)")
    return out


def _rate(value: float | None) -> float:
    """A rate for the table: None (the risk does not decay at any order) as nan."""
    return float("nan") if value is None else value


def run(args: argparse.Namespace) -> int:
    from eqgen.analysis.stability import perfect_learning_stability
    from eqgen.cli import Progress, _parse_sets
    from eqgen.model import load
    from eqgen.output_paths import check_outputs

    check_outputs([("-o", args.output, "file")], [("the spec", args.spec)])
    progress = Progress()
    model = load(args.spec)
    params = _parse_sets(args.sets)
    sweeps = parse_sweeps(args.sweep)
    unknown = [n for n in sweeps if n not in model.parameters]
    if unknown:
        raise UsageError(f"unknown parameter(s) {', '.join(unknown)} in --sweep; this model "
                         "has: " + ", ".join(model.parameters))
    n = len(next(iter(sweeps.values()))) if sweeps else 1
    rows = []
    for i in range(n):
        point = {**params, **{k: v[i] for k, v in sweeps.items()}}
        progress(f"stability at {point}" if point else "stability")
        res = perfect_learning_stability(model, point, rate_name=args.rate)
        rows.append({**{k: v[i] for k, v in sweeps.items()}, res.rate_name: res.rate,
                     "slowest_decay": res.slowest_decay, "risk_decay": _rate(res.risk_decay),
                     "risk_decay_first_order": _rate(res.risk_decay_first_order),
                     "stable": res.stable,
                     "eta_max": res.eta_max if res.eta_max is not None else float("inf"),
                     "gradient_flow_decay": res.gradient_flow_decay,
                     "_result": res})
    cols = [c for c in rows[0] if c != "_result"]
    if args.output and str(args.output).endswith(".json"):
        doc = {"model": model.name, "parameters": params,
               "results": [r["_result"].to_dict() for r in rows]}
        Path(args.output).write_text(json.dumps(doc, indent=1) + "\n")
    elif args.output:
        with open(args.output, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in rows:
                w.writerow([repr(float(r[c])) if not isinstance(r[c], bool) else str(r[c])
                            for c in cols])
    else:
        print(",".join(cols))
        for r in rows:
            print(",".join(f"{r[c]:.12g}" if not isinstance(r[c], bool) else str(r[c])
                           for c in cols))
    for note in dict.fromkeys(n for r in rows for n in r["_result"].notes):
        print(f"note: {note}", file=sys.stderr)
    if any(not r["stable"] for r in rows):
        print("note: the perfect-learning point is unstable where stable = False (learning "
              "rate above η_max)", file=sys.stderr)
    return 0
