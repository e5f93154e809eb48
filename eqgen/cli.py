"""The `eqgen` command (contract in docs/index.md, Write your first model): check, latex,
generate, solve, simulate, compare.

Exit codes: 0 success; 1 bad spec or input; 2 usage; 3 numerical failure. Errors are printed
as messages, never as Python tracebacks (set EQGEN_DEBUG=1 to see one for internal errors).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from eqgen.errors import Diagnostic, EqgenError, Interrupted, NumericalError, SpecError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: exit 2 with a one-line hint
        raise UsageError(f"{message}\n  hint: {_usage_hint(self, message)}")


def _usage_hint(parser: argparse.ArgumentParser, message: str) -> str:
    """For options argparse did not recognise: the closest option of the command (a typo such
    as --tmax) or how to write `--set NAME=VALUE`; else where the options are listed."""
    import difflib

    argv = getattr(parser, "argv", None)
    command = next((a for a in (sys.argv[1:] if argv is None else argv)
                    if not a.startswith("-")), None)
    sub = next((a.choices.get(command) for a in parser._actions  # noqa: SLF001
                if isinstance(a, argparse._SubParsersAction)), None)  # noqa: SLF001
    where = f"`{parser.prog} {command} --help`" if sub is not None else f"`{parser.prog} --help`"
    if not message.startswith("unrecognized arguments:"):
        return f"see {where}"
    words = message.split(":", 1)[1].split()
    if "=" in words or any(w.endswith("=") or w.startswith("=") for w in words):
        return "write --set NAME=VALUE (and --grid NAME=VALUES) without spaces around '='"
    options = [o for a in (sub or parser)._actions for o in a.option_strings]
    for word in words:
        if word.startswith("-"):
            close = difflib.get_close_matches(word.split("=")[0], options, n=1, cutoff=0.7)
            if close:
                return f"did you mean {close[0]}? See {where}"
    return f"see {where}"


class Progress:
    """Stage messages on a terminal; silent in pipes and CI."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.t0:6.1f}s] {message}", file=sys.stderr,
                  flush=True)


MAX_SEED = 2**32  # seeds are 32-bit (JAX's PRNG keys, the DMFT sweep's uint32): 0 ≤ seed < this


def _whole(text: str) -> int | None:
    """`text` as an int: an integer, or an integral float written like 1e3 (exact, ≤ 2⁵³)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        v = float(text)
    except ValueError:
        return None
    return int(v) if math.isfinite(v) and v.is_integer() and abs(v) <= 2**53 else None


def whole_number(text: str) -> int:
    """argparse type of counts (--d, --seeds, --samples, --test-samples): an int, also
    written like 1e3; argparse reports anything else as an `invalid int value`."""
    value = _whole(text)
    if value is None:
        raise ValueError(text)
    return value


whole_number.__name__ = "int"  # argparse names the type in its message: "invalid int value"


def seed_arg(text: str) -> int:
    """argparse type of every --seed: a whole number 0 ≤ seed < 2**32, else a `UsageError`
    (exit 2) with a hint, raised while parsing, before any work."""
    value = _whole(text)
    if value is None or not 0 <= value < MAX_SEED:
        raise UsageError(f"argument --seed: must be a whole number from 0 to {MAX_SEED - 1}, "
                         f"got {text!r}\n  hint: seeds are 32-bit; any value in that range "
                         "will do, e.g. --seed 0")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="eqgen", description="Compile learning-dynamics model specs into solvers.")
    p.add_argument("--version", action="version", version=f"eqgen {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("check", help="check specs; print every problem")
    c.add_argument("specs", nargs="+", metavar="SPEC")

    lt = sub.add_parser("latex", help="the derived equations as a LaTeX document")
    lt.add_argument("spec", metavar="SPEC")
    lt.add_argument("-o", "--output", metavar="FILE.tex")

    g = sub.add_parser("generate", help="write generated/<model>.py")
    g.add_argument("specs", nargs="+", metavar="SPEC")
    g.add_argument("--out-dir", default="generated", metavar="DIR")

    s = sub.add_parser("solve", help="integrate the model and write CSV/JSON and a plot")
    s.add_argument("spec", metavar="SPEC")
    s.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets")
    s.add_argument("--init", metavar="FILE.json")
    s.add_argument("--t-max", type=float)
    s.add_argument("--save-at", metavar="T1,T2,...")
    s.add_argument("--rtol", type=float, default=1e-8)
    s.add_argument("--atol", type=float, default=1e-10)
    s.add_argument("--solver", default="tsit5",
                   help="tsit5 (default), dopri5, dopri8 (8th order), "
                   "kvaerno5 (stiff), diffrax-tsit5 (Tsit5 through diffrax)")
    s.add_argument("--max-steps", type=int, default=None)
    s.add_argument("--reduction", choices=["mean_field"],
                   help="solve the large-p reduction (state M, q_perp; docs/scale.md)")
    s.add_argument("--samples", type=whole_number, help="Monte Carlo samples (DMFT models)")
    s.add_argument("--seed", type=seed_arg, help="random seed (DMFT models)")
    s.add_argument("--extrapolate", action="store_true",
                   help="Richardson extrapolation in the step (continuous-time DMFT models)")
    s.add_argument("--replicas", type=int, metavar="R",
                   help="sampled DMFT models: add <name>_stderr, the Monte Carlo error, from R "
                   "more solves of N/R samples (default: none)")
    s.add_argument("-o", "--output", metavar="FILE.csv|FILE.json")
    s.add_argument("--plot", metavar="FILE.png")

    sm = sub.add_parser("simulate", help="finite-d SGD: seed means and standard errors")
    cp = sub.add_parser("compare", help="theory against finite-d simulation: CSV and plot")
    for q in (sm, cp):
        _add_simulation_options(q)
    cp.add_argument("--replicas", type=int, metavar="R",
                    help="sampled DMFT models: the theory's Monte Carlo error from R solves of "
                    "N/R samples, added to the simulation's (default 8; 0: none)")
    for name, module in EXTRA_COMMANDS.items():
        mod = importlib.import_module(module)
        mod.add_arguments(sub.add_parser(name, help=mod.HELP))
    return p


def _add_simulation_options(q: argparse.ArgumentParser) -> None:
    """`simulate` and `compare`: the options of `solve`, plus --d and --seeds."""
    q.add_argument("spec", metavar="SPEC")
    q.add_argument("--d", type=whole_number, required=True, metavar="D",
                   help="input dimension of the simulated networks")
    q.add_argument("--seeds", type=whole_number, default=4, metavar="N",
                   help="independent SGD runs to average (default 4)")
    q.add_argument("--seed", type=seed_arg, default=0, help="base random seed (default 0)")
    q.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets")
    q.add_argument("--init", metavar="FILE.json")
    q.add_argument("--t-max", type=float)
    q.add_argument("--save-at", metavar="T1,T2,...")
    q.add_argument("--rtol", type=float, default=1e-8, help="theory side of compare")
    q.add_argument("--atol", type=float, default=1e-10, help="theory side of compare")
    q.add_argument("--solver", default="tsit5", help="theory side of compare")
    q.add_argument("--max-steps", type=int, default=None, help="theory side of compare")
    q.add_argument("--samples", type=whole_number, help="Monte Carlo samples (DMFT models)")
    q.add_argument("--test-samples", type=whole_number, default=0, metavar="N",
                   help="committee models: also estimate the risk on N fresh held-out samples "
                   "per seed and output time (column risk_test; default 0: off)")
    q.add_argument("-o", "--output", metavar="FILE.csv|FILE.json")
    q.add_argument("--plot", metavar="FILE.png")


def _version() -> str:
    from eqgen import __version__

    return __version__


def _parse_sets(items: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for it in items:
        if "=" not in it:
            raise UsageError(f"--set expects NAME=VALUE, got {it!r}")
        name, value = it.split("=", 1)
        try:
            v = float(value)
        except ValueError:
            raise UsageError(f"--set {name}: {value!r} is not a number") from None
        if not math.isfinite(v):
            raise UsageError(f"--set {name}: the value must be finite")
        out[name.strip()] = v
    return out


def _parse_times(text: str) -> list[float]:
    try:
        ts = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--save-at expects comma-separated numbers, got {text!r}") from None
    if not ts or any(not math.isfinite(t) or t < 0 for t in ts):
        raise UsageError("--save-at needs finite times ≥ 0")
    return ts


MAX_INIT_BYTES = 50_000_000  # an initial-condition file larger than this is refused unread


def _read_init(path: str) -> dict[str, Any]:
    """The initial overlaps of an --init JSON file, as arrays; every problem a located
    `SpecError` (a file too large or too deeply nested is refused, not read whole)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_INIT_BYTES + 1)
        text = raw.decode()
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(Diagnostic(f"cannot read initial-condition file: {e}", path)) from None
    if len(raw) > MAX_INIT_BYTES:
        raise SpecError(Diagnostic(f"the initial-condition file is too large (more than "
                                   f"{MAX_INIT_BYTES} bytes)", path,
                                   hint="it should hold a few matrices: Q, M, P, a, a_star"))
    try:
        data = json.loads(text)
    except RecursionError:
        raise SpecError(Diagnostic("the initial-condition file is nested too deeply", path,
                                   hint="matrices are lists of lists: two levels")) from None
    except json.JSONDecodeError as e:
        lines = text.splitlines()
        raise SpecError(Diagnostic(f"invalid JSON: {e.msg}", path, e.lineno, e.colno, 1,
                                   lines[e.lineno - 1] if 0 < e.lineno <= len(lines) else None,
                                   'expected e.g. {"Q": [[1, 0], [0, 1]], "M": [[0, 0], [0, 0]]}'
                                   )) from None
    if not isinstance(data, dict):
        raise SpecError(Diagnostic("the initial-condition file must hold a JSON object", path,
                                   hint='e.g. {"Q": [[...]], "M": [[...]]}'))
    import numpy as np

    out = {}
    for k, v in data.items():
        try:
            arr = np.asarray(v, dtype=float)
        except (TypeError, ValueError, RecursionError):
            raise SpecError(Diagnostic(f"'{k}' must be a number or a (nested) list of numbers",
                                       path)) from None
        out[k] = arr
    return out


def _check(args: argparse.Namespace) -> int:
    from eqgen.model import load

    failed = 0
    for spec in args.specs:
        try:
            model = load(spec)
            model.equations  # noqa: B018  (derivation problems are spec problems too)
            for text in model.check_warnings():
                print(f"{spec}: warning: {text}", file=sys.stderr)
            print(f"{spec}: ok")
        except EqgenError as e:
            print(e.format(), file=sys.stderr)
            failed += 1
        except Exception as e:  # noqa: BLE001 - keep checking the other files
            if os.environ.get("EQGEN_DEBUG"):
                raise
            print(f"{spec}: internal error: {type(e).__name__}: {e}\n  hint: this is a bug in "
                  "eqgen; rerun with EQGEN_DEBUG=1 for details", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _check_solve_outputs(args: argparse.Namespace) -> None:
    """`-o` and `--plot` of solve, simulate and compare: writable, and neither the spec, the
    --init file nor each other (eqgen.output_paths), before any work."""
    from eqgen.output_paths import check_outputs

    check_outputs([("-o", args.output, "data"), ("--plot", args.plot, "plot")],
                  [("the spec", args.spec), ("the --init file", args.init)])


def _latex(args: argparse.Namespace) -> int:
    from eqgen.model import load
    from eqgen.output_paths import check_outputs

    check_outputs([("-o", args.output, "file")], [("the spec", args.spec)], example="out.tex")
    model = load(args.spec)
    text = model.latex()
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from eqgen.model import load
    from eqgen.output_paths import check_out_dir

    check_out_dir(args.out_dir)
    progress = Progress()
    models = [load(s) for s in args.specs]  # check all before writing any
    check_out_dir(args.out_dir, [f"{m.name}.py" for m in models])  # before deriving any
    for m in models:
        progress(f"deriving and generating {m.name}")
        path = m.generate(args.out_dir)
        print(f"wrote {path}")
    return 0


def _solve(args: argparse.Namespace) -> int:
    from eqgen.model import load

    _check_solve_outputs(args)
    progress = Progress()
    model = load(args.spec)
    if args.reduction:
        if model.family != "committee":
            raise UsageError("--reduction applies to committee (ODE) models only")
        model = model.reduced(args.reduction)
    dmft = model.family == "dmft"
    if not dmft and (args.samples is not None or args.seed is not None or args.extrapolate
                     or args.replicas is not None):
        raise UsageError("--samples, --seed, --extrapolate and --replicas apply to DMFT models "
                         "only; "
                         f"{model.name} is a committee (ODE) model")
    extra = {"samples": args.samples, "seed": args.seed or 0, "extrapolate": args.extrapolate,
             "replicas": args.replicas or 0} if dmft else {}
    params = _parse_sets(args.sets)
    init = _read_init(args.init) if args.init else None
    save_at = _parse_times(args.save_at) if args.save_at else None
    model.resolve(params, init, args.init or "init")  # every input problem before heavy work
    progress(f"compiling {model.name}")
    with partial_results(args):
        sol = model.solve(params=params, init=init, save_at=save_at, t_max=args.t_max,
                          rtol=args.rtol, atol=args.atol, solver=args.solver,
                          max_steps=args.max_steps, init_source=args.init or "init", **extra)
    progress(f"solved: {sol.metadata['steps']} steps")
    if "discretisation_error" in sol.metadata:
        err = ", ".join(f"{k} {v:.2g}" for k, v in sol.metadata["discretisation_error"].items())
        print(f"discretisation error in η (max over t): {err}", file=sys.stderr)
    return _write(sol, args)


@contextlib.contextmanager
def partial_results(args: argparse.Namespace) -> Iterator[None]:
    """On a `NumericalError` inside, write its partial result (what was computed up to the
    failure) to `-o`, with `partial: true`, the message and the time in its metadata, say
    so on stderr, and let the error go on (exit 3). A failure before the first time (a
    start that is already non-finite) writes a result with no rows, so that `-o` never keeps
    a file of an earlier run that would pass for this one's."""
    try:
        yield
    except (NumericalError, Interrupted) as e:
        part = e.partial
        if not (part is not None and hasattr(part, "save")) and args.output:
            import numpy as np

            from eqgen.runtime.solution import Solution

            part = Solution(np.zeros(0), {}, {}, {"command": args.command})
            part.mark_partial(e)
        if part is not None and hasattr(part, "save") and args.output:
            if not part.metadata.get("partial"):
                part.mark_partial(e)
            part.save(args.output)
            n = len(part.t)
            before = "the interruption" if isinstance(e, Interrupted) else "the failure"
            print(f"partial results ({n} time{'s' if n != 1 else ''} before {before}) "
                  f"written to {args.output}", file=sys.stderr)
        raise


def _simulation_inputs(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The model and the keyword arguments shared by `simulate` and `compare`, all checked
    before any heavy work."""
    from eqgen.model import load

    _check_solve_outputs(args)
    model = load(args.spec)
    if args.samples is not None and model.family == "committee":
        raise UsageError("--samples applies to DMFT models only")
    replicas = getattr(args, "replicas", None)  # compare only
    if replicas is not None and model.family == "committee":
        raise UsageError("--replicas applies to DMFT models only: a committee model's theory "
                         "has no Monte Carlo error")
    params = _parse_sets(args.sets)
    init = _read_init(args.init) if args.init else None
    save_at = _parse_times(args.save_at) if args.save_at else None
    model.resolve(params, init, args.init or "init")
    kwargs: dict[str, Any] = dict(params=params, init=init, d=args.d, seeds=args.seeds,
                                  seed=args.seed, t_max=args.t_max, save_at=save_at,
                                  init_source=args.init or "init")
    if args.samples is not None:
        kwargs["samples"] = args.samples
    if args.test_samples:  # off by default; checked (and refused for DMFT models) by the model
        kwargs["test_samples"] = args.test_samples
    if replicas is not None:
        kwargs["replicas"] = replicas
    return model, kwargs


def _simulate(args: argparse.Namespace) -> int:
    progress = Progress()
    model, kwargs = _simulation_inputs(args)
    progress(f"compiling the simulation of {model.name}")
    with partial_results(args):
        sol = model.simulate(**kwargs)
    meta = sol.metadata
    progress(f"simulated: {meta.get('steps')} steps × {meta.get('seeds')} seeds")
    return _write(sol, args)


def _compare(args: argparse.Namespace) -> int:
    progress = Progress()
    model, kwargs = _simulation_inputs(args)
    progress(f"simulating {model.name}, then solving its theory from the measured start")
    with partial_results(args):
        cmp = model.compare(rtol=args.rtol, atol=args.atol, solver=args.solver,
                            max_steps=args.max_steps, **kwargs)
    progress("compared")
    if args.output:
        cmp.save(args.output)
    else:
        _print_summary(cmp)
    if args.plot:
        from eqgen.compare import plot_comparison

        plot_comparison(cmp, args.plot)
    return 0


def _write(sol: Any, args: argparse.Namespace) -> int:
    """`-o` output (else a summary on stdout) and `--plot`, as every solving command does."""
    if args.output:
        sol.save(args.output)
    else:
        _print_summary(sol)
    if args.plot:
        sol.plot(args.plot)
    return 0


def _print_summary(sol: Any) -> None:
    names = ["t", *sol.observables]
    print(",".join(names))
    stride = max(1, len(sol.t) // 20)
    for i in list(range(0, len(sol.t), stride))[:-1] + [len(sol.t) - 1]:
        print(",".join(f"{v:.10g}" for v in [sol.t[i], *(o[i] for o in
                                                         sol.observables.values())]))


# Commands that live in their own modules under eqgen/commands/: each module exposes HELP,
# add_arguments(parser) and run(args) -> exit code.
EXTRA_COMMANDS: dict[str, str] = {"sweep": "eqgen.commands.sweep",
                                  "fixed-points": "eqgen.commands.fixed_points",
                                  "stability": "eqgen.commands.stability",
                                  "time-to": "eqgen.commands.time_to"}

COMMANDS = {"check": _check, "latex": _latex, "generate": _generate, "solve": _solve,
            "simulate": _simulate, "compare": _compare}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (also used by `python -m eqgen`)."""
    from eqgen.interrupt import run_interruptibly

    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)  # each once, as `warning: ...`
        warnings.showwarning = _show_warning
        return run_interruptibly(lambda: _main(argv))  # Ctrl-C at once, even mid-solve


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: Any = None, line: str | None = None) -> None:
    """Python warnings as one line each, `warning: ...`, without the source location."""
    print(f"warning: {message}", file=sys.stderr)


def _main(argv: Sequence[str] | None) -> int:
    try:
        parser = _parser()
        parser.argv = list(argv) if argv is not None else None  # for the usage hints
        args = parser.parse_args(argv)
        if args.command in EXTRA_COMMANDS:
            return importlib.import_module(EXTRA_COMMANDS[args.command]).run(args)
        return COMMANDS[args.command](args)
    except EqgenError as e:
        print(e.format(), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:  # Interrupted says when: "interrupted at t = ..."
        print(str(e) or "interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # argparse --help / --version
        return int(e.code or 0)
    except Exception as e:  # noqa: BLE001 - never show a traceback to a user
        if os.environ.get("EQGEN_DEBUG"):
            raise
        print(f"internal error: {type(e).__name__}: {e}\n  hint: this is a bug in eqgen; "
              "rerun with EQGEN_DEBUG=1 for details and report it", file=sys.stderr)
        return 4


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
