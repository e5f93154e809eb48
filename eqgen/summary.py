"""Readable text and LaTeX forms of models and solutions (for the terminal and notebooks).

`Model.__repr__` and `Solution.__repr__` print a short table (name, family, states, parameters,
regime, time unit, observables); `_repr_latex_` gives a notebook the model's equations of
motion, or a solution's summary as a small table that MathJax renders.
"""

from __future__ import annotations

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
    if meta.get("regime"):
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
