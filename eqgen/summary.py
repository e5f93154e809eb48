"""Readable text and LaTeX forms of models, solutions and sweeps (for the terminal and
notebooks).

`Model.__repr__`, `Solution.__repr__` and `SweepResult.__repr__` print a short table (name,
family, states or axes, parameters, regime, time unit, observables); `_repr_latex_` gives a
notebook the model's equations of motion, or a solution's or a sweep's summary as a small table
that MathJax renders.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np


def _rows(title: str, rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return title + "\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def _number(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return f"{v:g}"


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {_number(v)}" for k, v in params.items())


def model_text(model: Any) -> str:
    """What a model is, in a few lines: nothing is derived or compiled to print it."""
    if model.family == "dmft":
        spec = model.spec
        rows = [("family", "DMFT: multi-pass SGD on n = αd reused samples (forward sweep)"),
                ("states", "m (overlap with the teacher), Q = |w|²/d; kernels ν̂, M_C, M_R and "
                           "responses χ, R of the effective process"),
                ("parameters", _params(model.parameters)),
                ("regime", "continuous time (η → 0), solved at step η" if spec.continuous
                 else "discrete SGD at step η (exact in η)"),
                ("time unit", "t = k · η after k steps"),
                ("observables", ", ".join(_dmft_observables()))]
    else:
        from eqgen.theories.checks import regime_of

        regime = regime_of(model.spec)
        states = ["Q (p×p)", "M (p×k)", "P (k×k, constant)"]
        summary = regime.summary
        if getattr(model.spec.regime, "reduction", None) == "mean_field":
            states = ["M (p×k)", "q⊥ (p), with Q = MMᵀ + diag(q⊥) and P = I"]
            summary += "; mean-field reduction"
        if model.spec.student.trained:
            states.append("a (p, trained second layer)")
        rows = [("family", "committee: online SGD, order-parameter ODEs"),
                ("states", ", ".join(states)),
                ("parameters", _params(model.parameters)),
                ("regime", summary),
                ("time unit", regime.time_unit + " (d: input dimension)"),
                ("observables", "risk, excess_risk")]
    head = f"Model {model.name}" + (f": {model.title}" if model.title else "")
    return _rows(head, [*rows, ("spec", str(model.path))])


def _dmft_observables() -> tuple[str, ...]:
    from eqgen.dmft_model import OBSERVABLES

    return OBSERVABLES


def model_latex(model: Any) -> str:
    """The model's equations of motion as display math (for Jupyter and MathJax)."""
    from eqgen.latex import equations_latex

    title = model.title or model.name
    return f"{_latex_text(title)}\n" + equations_latex(model.equations)


def _latex_text(s: str) -> str:
    for a, b in (("\\", ""), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("$", r"\$"), ("{", ""), ("}", "")):
        s = s.replace(a, b)
    return s


def _span(sol: Any) -> str:
    if len(sol.t) == 0:
        return "no times"
    return f"{len(sol.t)} times, t = {sol.t[0]:g} … {sol.t[-1]:g}"


def solution_text(sol: Any) -> str:
    """A solution in a few lines: model, times, parameters, and each observable at the start
    and the end."""
    meta = sol.metadata
    rows = [("times", _span(sol))]
    if meta.get("parameters"):
        rows.append(("parameters", _params(dict(meta["parameters"]))))
    if meta.get("family") == "dmft":
        rows.append(("regime", dmft_regime(meta)))
    elif meta.get("regime"):
        rows.append(("regime", str(meta["regime"])))
    unit = _time_unit(meta)
    if unit:
        rows.append(("time unit", unit))
    if meta.get("method"):
        rows.append(("method", str(meta["method"])))
    if sol.states:
        rows.append(("states", ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in
                                         sol.states.items())))
    for name, v in sol.observables.items():
        if len(v):
            rows.append((name, f"{_number(v[0])} → {_number(v[-1])}"))
    return _rows(f"Solution of {meta.get('model', '?')}", rows)


def dmft_regime(meta: dict[str, Any]) -> str:
    """The algorithm and time of a DMFT solution: GD, plain or persistent SGD (from the
    batch fraction `b` and persistence `tau` where the metadata has them), discrete steps or
    the continuous-time limit, and the step η."""
    eta = meta.get("eta")
    step = f"η = {_number(eta)}" if eta is not None else "η"
    time = (f"continuous time (η → 0), solved at step {step}" if meta.get("continuous")
            else f"discrete steps, {step}")
    algorithm = _dmft_algorithm(meta)
    return f"{algorithm}; {time}" if algorithm else time


def _dmft_algorithm(meta: dict[str, Any]) -> str | None:
    """GD (b = 1), plain SGD (τ = η/b) or persistent SGD (b, τ); None where the metadata
    does not say (exact Gaussian propagation is full-batch by construction)."""
    b, tau, eta = meta.get("b"), meta.get("tau"), meta.get("eta")
    if b is None:
        if str(meta.get("method", "")).startswith("exact Gaussian propagation"):
            return "gradient descent (b = 1)"
        return None
    if float(b) >= 1:
        return "gradient descent (b = 1)"
    if tau is None or eta is None or np.isclose(float(tau), float(eta) / float(b)):
        return f"plain SGD (b = {_number(b)}, τ = η/b)"
    return f"persistent SGD (b = {_number(b)}, τ = {_number(tau)})"


def _time_unit(meta: dict[str, Any]) -> str | None:
    if meta.get("family") == "dmft" and "eta" in meta:
        return f"t = k · η after k steps, η = {_number(meta['eta'])}"
    from eqgen.theories import regimes

    for info in (regimes.GRADIENT_FLOW, regimes.HIGH_DIMENSIONAL, regimes.NOISE_DOMINATED):
        if meta.get("regime") == info.name:
            return info.time_unit
    return None


def solution_latex(sol: Any) -> str:
    """A small table (observable, at t₀, at the final time) that MathJax and Jupyter render."""
    model = _latex_text(str(sol.metadata.get("model", "?")))
    if len(sol.t) == 0:
        return f"$\\text{{{model}: empty solution}}$"
    t0, t1 = _number(sol.t[0]), _number(sol.t[-1])
    lines = [f"\\text{{observable}} & t = {t0} & t = {t1} \\\\ \\hline"]
    for name, v in sol.observables.items():
        if np.ndim(v) == 1 and len(v):
            lines.append(f"\\text{{{_latex_text(name)}}} & {_tex_number(v[0])} & "
                         f"{_tex_number(v[-1])} \\\\")
    body = "\n".join(lines)
    return (f"$$\\begin{{array}}{{lrr}}\n\\multicolumn{{3}}{{l}}{{\\text{{{model}, "
            f"{len(sol.t)} times}}}} \\\\\n{body}\n\\end{{array}}$$")


def _tex_number(x: float) -> str:
    s = f"{float(x):.4g}"
    if "e" in s:
        mant, exp = s.split("e")
        return f"{mant} \\times 10^{{{int(exp)}}}"
    return s


# -- sweeps -------------------------------------------------------------------------------------
MAX_FAILED_LISTED = 5  # failed points named in a sweep's text; the rest are counted
MAX_VALUES_LISTED = 6  # axis values written out; longer axes are given as a range
MAX_LATEX_ROWS = 12  # grid points in a sweep's table; the rest are counted
MAX_MESSAGE = 70  # characters of a failed point's message


def _axis_text(axis: Any) -> str:
    """`gamma: 0.5, 2 (2 values)`, or for a long axis `q0: 0.1 … 10, 50 values (log)`."""
    values = np.asarray(axis.values)
    n = len(values)
    count = f"{n} value{'s' if n != 1 else ''}" + (", log" if axis.log else "")
    if n <= MAX_VALUES_LISTED:
        return f"{axis.name}: {', '.join(_number(v) for v in values)} ({count})"
    return f"{axis.name}: {_number(values[0])} … {_number(values[-1])} ({count})"


def _point_text(point: dict[str, float]) -> str:
    return ", ".join(f"{k} = {_number(v)}" for k, v in point.items())


def _short(message: str) -> str:
    """A failure message on one line: its first line (not the hint), without parenthesised
    asides other than the time, cut at `MAX_MESSAGE` characters."""
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    first = " ".join(re.sub(r"\s*\((?!at t\b)[^()]*\)", "", first).split())
    return first if len(first) <= MAX_MESSAGE else first[:MAX_MESSAGE - 1] + "…"


def _failed_rows(res: Any) -> list[tuple[str, str]]:
    """One row per failed point (index, values, why), at most `MAX_FAILED_LISTED`."""
    failed = res.failed
    rows = [("failed" if j == 0 else "", f"#{i} {_point_text(point)}: {_short(message)}")
            for j, (i, point, message) in enumerate(failed[:MAX_FAILED_LISTED])]
    if len(failed) > MAX_FAILED_LISTED:
        rows.append(("", f"… and {len(failed) - MAX_FAILED_LISTED} more (see .failed)"))
    return rows


def sweep_text(res: Any) -> str:
    """A sweep in a few lines: model, axes (values or range, count), points solved and failed
    (the failed ones named, briefly), save times, fixed parameters, regime, observables."""
    meta = res.metadata
    n_failed = int(np.sum(~np.asarray(res.success, dtype=bool)))
    rows = [("axes" if j == 0 else "", _axis_text(a)) for j, a in enumerate(res.axes)]
    rows.append(("points", f"{len(res)} ({len(res) - n_failed} solved, {n_failed} failed)"))
    rows += _failed_rows(res)
    rows.append(("times", _span(res)))
    if meta.get("parameters"):
        rows.append(("parameters", _params(dict(meta["parameters"]))))
    if meta.get("regime"):
        rows.append(("regime", str(meta["regime"])))
    if meta.get("phase_diagram"):
        rows.append(("phase diagram", str(meta["phase_diagram"])))
    rows.append(("observables", ", ".join(res.observables)))
    if res.extra:
        rows.append(("per point", ", ".join(res.extra)))
    return _rows(f"SweepResult of {meta.get('model', '?')}", rows)


def main_observable(res: Any) -> str | None:
    """The observable a sweep's table shows: the excess risk where there is one."""
    names = list(res.observables)
    return "excess_risk" if "excess_risk" in names else (names[0] if names else None)


def sweep_latex(res: Any) -> str:
    """A table of the grid points (axis values, the main observable at the last save time,
    `failed` where a point failed); long grids are cut at `MAX_LATEX_ROWS` rows."""
    model = _latex_text(str(res.metadata.get("model", "?")))
    name = main_observable(res)
    n_failed = int(np.sum(~np.asarray(res.success, dtype=bool)))
    cols = [_latex_text(a.name) for a in res.axes]
    t_end = f"t = {_number(res.t[-1])}" if len(res.t) else "end"
    header = " & ".join([*(f"\\text{{{c}}}" for c in cols),
                         f"\\text{{{_latex_text(name or 'value')}}},\\ {t_end}"])
    lines = [header + " \\\\ \\hline"]
    final = res.observables[name][:, -1] if name is not None and len(res.t) else None
    for i, point in enumerate(res.points[:MAX_LATEX_ROWS]):
        value = ("\\text{failed}" if not res.success[i] else
                 _tex_number(final[i]) if final is not None else "")
        lines.append(" & ".join([*(_tex_number(point[a.name]) for a in res.axes), value])
                     + " \\\\")
    n_cols = len(cols) + 1
    if len(res) > MAX_LATEX_ROWS:
        lines.append(f"\\multicolumn{{{n_cols}}}{{l}}{{\\dots\\ \\text{{and "
                     f"{len(res) - MAX_LATEX_ROWS} more points}}}} \\\\")
    title = (f"{model}: {len(res)} points, {n_failed} failed, {len(res.t)} times")
    body = "\n".join(lines)
    return (f"$$\\begin{{array}}{{{'r' * n_cols}}}\n\\multicolumn{{{n_cols}}}{{l}}"
            f"{{\\text{{{title}}}}} \\\\\n{body}\n\\end{{array}}$$")
