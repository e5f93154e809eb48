"""Writes the JAX module of a DMFT model: its per-sample functions (docs/dmft.md, Theory).

The module holds what differs between DMFT models — ℓ, ℓ' and ℓ'' (derived by sympy), the label
rule ŷ, the GLM target, the clusters and the points where ŷ jumps — as plain elementwise JAX
functions of (y, h) and the parameters. The forward sweep that closes the DMFT is the same for
every model and lives in `eqgen.runtime.dmft`.
"""

from __future__ import annotations

import keyword

import sympy as sp

from eqgen.codegen.committee import _dict_text, _expr_body, _function
from eqgen.codegen.printer import jax_code
from eqgen.symbolic.convert import Y, Z
from eqgen.theories.dmft import DmftEquations, H


def _local(name: str) -> str:
    """A parameter's local variable name (Python keywords such as `lambda` get a `_`)."""
    return name + "_" if keyword.iskeyword(name) else name


def _unpack(eq: DmftEquations, *exprs: sp.Expr) -> list[str]:
    used = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
    return [f'{_local(n)} = params["{n}"]' for n, s in eq.params.items() if s in used]


def _renamed(eq: DmftEquations, expr: sp.Expr) -> sp.Expr:
    swap = {s: sp.Symbol(_local(n), real=True) for n, s in eq.params.items()
            if _local(n) != n}
    return expr.xreplace(swap) if swap else expr


def _elementwise(eq: DmftEquations, name: str, args: list[str], expr: sp.Expr, doc: str
                 ) -> str:
    body = _unpack(eq, expr) + _expr_body(_renamed(eq, expr))
    if not (expr.free_symbols & {H, Y, Z}):  # a constant: keep the shape of the input
        body[-1] = f"return jnp.full(jnp.shape({args[0]}), {jax_code(_renamed(eq, expr))}, " \
                   "dtype=jnp.float64)"
    return _function(name, [*args, "params"], doc, body)


def _points_function(eq: DmftEquations, name: str, points: tuple[sp.Expr, ...] | None,
                     doc: str) -> str:
    if points is None:
        return _function(name, ["params"], doc + "\n\nNot found symbolically: None (the runtime "
                         "then integrates the error numerically).", ["return None"])
    exprs = list(points)
    body = _unpack(eq, *exprs) if exprs else []
    items = ", ".join(f"float({jax_code(_renamed(eq, e))})" for e in exprs)
    body += [f"points = [{items}{',' if len(exprs) == 1 else ''}]",
             "return tuple(sorted(x for x in points if x == x))"]
    return _function(name, ["params"], doc, body)


def module_source(eq: DmftEquations, *, header: str, defaults: dict[str, float]) -> str:
    """The full text of the generated module for `eq` (deterministic)."""
    spec = eq.spec
    imports = ["import jax", "import jax.numpy as jnp", "import jax.scipy.special as jsp", "",
               'jax.config.update("jax_enable_x64", True)  # float64 throughout']
    consts = [
        f'MODEL = "{spec.name}"',
        'FAMILY = "dmft"',
        f"PARAMETERS = {_dict_text(defaults)}",
        f'DATA = "{eq.data}"',
        'OBSERVABLES = ("m", "Q", "train_loss", "train_error", "test_error", "test_loss")',
        f"GAUSSIAN_EXACT = {eq.gaussian_exact}  # ℓ'' constant and ℓ' affine: no sampling "
        "needed at b = 1",
        f"CONTINUOUS = {spec.continuous}",
    ]
    parts = [f'r"""{header}\n"""', "\n".join(imports), "\n".join(consts)]
    parts.append(_elementwise(eq, "loss", ["y", "h"], eq.loss,
                              f"Loss ℓ(y, h) = {sp.latex(eq.loss)}."))
    parts.append(_elementwise(eq, "loss_h", ["y", "h"], eq.dloss,
                              f"ℓ'(y, h) = ∂ℓ/∂h = {sp.latex(eq.dloss)} (derived by sympy)."))
    parts.append(_elementwise(eq, "loss_hh", ["y", "h"], eq.d2loss,
                              f"ℓ''(y, h) = ∂²ℓ/∂h² = {sp.latex(eq.d2loss)} (derived by sympy)."))
    parts.append(_elementwise(eq, "label", ["h"], eq.label,
                              f"Predicted label ŷ(h) = {sp.latex(eq.label)}."))
    if eq.target is not None:
        parts.append(_elementwise(eq, "target", ["z"], eq.target,
                                  f"Teacher target y = f(z) = {sp.latex(eq.target)}, z = h* "
                                  "~ N(0, 1)."))
    parts.append(_clusters_function(eq))
    parts.append(_points_function(eq, "label_breakpoints", eq.label_breakpoints,
                                  "The h where ŷ(h) jumps (sorted), for exact test errors."))
    if eq.target is not None:
        parts.append(_points_function(eq, "target_breakpoints", eq.target_breakpoints,
                                      "The z where ŷ(f(z)) jumps (sorted)."))
    return "\n\n\n".join(parts) + "\n"


def _clusters_function(eq: DmftEquations) -> str:
    exprs = [e for cl in eq.clusters for e in (cl.value, cl.prob, cl.label)]
    body = _unpack(eq, *exprs)

    def row(attr: str) -> str:
        vals = [f"float({jax_code(_renamed(eq, getattr(cl, attr)))})" for cl in eq.clusters]
        return "(" + ", ".join(vals) + ("," if len(vals) == 1 else "") + ")"

    body += [f"values = {row('value')}", f"probs = {row('prob')}", f"labels = {row('label')}",
             "return values, probs, labels"]
    desc = ("teacher–student GLM: a single cluster c = 0 (y = f(a), a = h*)" if eq.data == "glm"
            else f"{len(eq.clusters)} Gaussian clusters x = c v*/√d + √Δ z")
    return _function("clusters", ["params"],
                     f"Cluster centres c, probabilities P(c) and labels y(c): {desc}.", body)
