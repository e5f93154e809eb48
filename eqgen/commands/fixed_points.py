"""`eqgen fixed-points SPEC`: fixed points of a committee model's ODEs, their observables,
Jacobian eigenvalues, classification and escape directions (eqgen.analysis.fixed_points).

Starts: `--init FILE.json` (repeatable; a file may hold one object or a list of objects),
`--start spec|symmetric|perfect` (repeatable), `--random N` (with `--seed`); with none, the
spec's initial state. `--gradient-flow` drops the SGD variance term (learning rate → 0 in the
right-hand side), where the Saad–Solla plateau has its closed form (docs/theory.md, Facts the
implementation is tested against).

Exit code 3 when no fixed point is found, or when one is found where the vector field is not
differentiable (it is still reported, without eigenvalues).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from eqgen.errors import Diagnostic, NumericalError, SpecError, UsageError

HELP = "fixed points (plateaus) of a committee model: state, risk, eigenvalues, stability"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets")
    p.add_argument("--init", action="append", default=[], metavar="FILE.json",
                   help="a start (Q, M, ... as for solve); repeatable; a JSON list gives "
                   "several starts")
    p.add_argument("--start", action="append", default=[], metavar="NAME",
                   help="named start: spec, symmetric (all student units equal), perfect "
                   "(student = teacher); repeatable")
    from eqgen.cli import seed_arg

    p.add_argument("--random", type=int, default=0, metavar="N",
                   help="N starts from random weights")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the random starts")
    p.add_argument("--gradient-flow", action="store_true",
                   help="drop the SGD variance term (learning rate set to 0 in the field)")
    p.add_argument("--tol", type=float, default=1e-10,
                   help="Levenberg–Marquardt tolerance (default 1e-10)")
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("-o", "--output", metavar="FILE.json")


def _read_starts(path: str) -> list[tuple[str, dict[str, Any]]]:
    from eqgen.cli import _read_init

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return [(path, _read_init(path))]  # _read_init reports the problem with position
    if isinstance(data, list):
        out = []
        for i, item in enumerate(data):
            if not isinstance(item, dict):
                raise SpecError(Diagnostic(f"start {i} is not a JSON object", path,
                                           hint='a list of objects like {"Q": [[...]]}'))
            out.append((f"{path}[{i}]", {k: np.asarray(v, dtype=float)
                                         for k, v in item.items()}))
        return out
    return [(path, _read_init(path))]


def _bound(residual: float) -> str:
    """The residual as the power of ten above it (`< 1e-15`): its digits are round-off and
    vary from run to run; the exact value is in the JSON output."""
    if residual == 0:
        return "= 0"
    return f"< 1e{math.floor(math.log10(residual)) + 1}"


def _eigenvalue(e: complex, tol: float) -> str:
    """An eigenvalue to 6 digits; parts within the zero tolerance of classification as 0."""
    real = 0.0 if abs(e.real) <= tol else e.real
    return f"{real:.6g}" + (f"{e.imag:+.3g}i" if abs(e.imag) > tol else "")


def _format(fp: Any, i: int) -> str:
    from eqgen.analysis.fixed_points import ZERO_TOL

    obs = ", ".join(f"{k} = {v:.10g}" for k, v in fp.observables.items())
    ev = fp.eigenvalues
    tol = ZERO_TOL * max(1.0, float(np.abs(ev).max())) if len(ev) else 0.0
    shown = ", ".join(_eigenvalue(e, tol) for e in ev[:8])
    lines = [f"fixed point {i} (from {fp.start}): {fp.describe()}",
             f"  {obs}",
             f"  residual max|dx/dt| {_bound(fp.residual)}"]
    if len(ev):
        lines.append(f"  eigenvalues (largest real parts first): {shown}"
                     + (f", ... ({len(ev)} in all)" if len(ev) > 8 else ""))
    for name, arr in fp.state.items():
        if name in ("Q", "M", "a"):
            text = np.array2string(np.asarray(arr), precision=10, suppress_small=True)
            lines.append(f"  {name} = {text}".replace("\n", "\n      "))
    return "\n".join(lines)


def _check_options(args: argparse.Namespace) -> None:
    """--random, --tol and --max-steps: usage errors (exit 2) before any work."""
    if args.random < 0:
        raise UsageError(f"--random must be at least 0, got {args.random}\n  hint: the number "
                         "of random starts, e.g. --random 4")
    if not (math.isfinite(args.tol) and args.tol > 0):
        raise UsageError(f"--tol must be a finite number > 0, got {args.tol:g}\n  hint: the "
                         "Levenberg–Marquardt tolerance, e.g. --tol 1e-10 (the default)")
    if args.max_steps < 1:
        raise UsageError("--max-steps must be at least 1\n  hint: Levenberg–Marquardt steps "
                         "per start, e.g. --max-steps 2000 (the default)")


def run(args: argparse.Namespace) -> int:
    from eqgen.analysis.fixed_points import NOT_DIFFERENTIABLE, find_fixed_points
    from eqgen.analysis.system import NotDifferentiableError
    from eqgen.cli import Progress, _parse_sets
    from eqgen.model import load
    from eqgen.output_paths import check_outputs

    _check_options(args)
    check_outputs([("-o", args.output, "file")],
                  [("the spec", args.spec), ("the --init file", args.init)], example="out.json")
    progress = Progress()
    model = load(args.spec)
    params = _parse_sets(args.sets)
    starts = [s for path in args.init for s in _read_starts(path)]
    for label, st in starts:
        model.resolve(params, st, label)  # bad starts: errors before any work
    progress(f"searching fixed points of {model.name}")
    found, notes = find_fixed_points(model, params, starts, named=args.start,
                                     n_random=args.random, seed=args.seed,
                                     gradient_flow=args.gradient_flow, tol=args.tol,
                                     max_steps=args.max_steps)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.output:
        doc = {"model": model.name, "parameters": params, "gradient_flow": args.gradient_flow,
               "coordinates": "upper triangle of Q (i <= j), then M, then a if trained",
               "fixed_points": [fp.to_dict() for fp in found], "notes": notes}
        Path(args.output).write_text(json.dumps(doc, indent=1) + "\n")
    else:
        print("\n\n".join(_format(fp, i) for i, fp in enumerate(found)))
    if not found:
        raise NumericalError("no fixed point found from any start", hint="try other starts "
                             "(--start symmetric, --start perfect, --random N)")
    for i, fp in enumerate(found):
        if fp.classification == NOT_DIFFERENTIABLE:
            raise NotDifferentiableError(fp.reason, f"at fixed point {i} (from {fp.start})")
    return 0
