"""Writes the JAX module of a committee model from its derived equations.

The generated code is in index form: one function per Gaussian-integral family, evaluated on
broadcast slices of Ω = [[Q, M], [Mᵀ, P]], so a single module serves every p and k. The I4
variance term, the dominant cost (p²(p+k)² arcsin evaluations), is evaluated only on index
pairs j ≤ l and c ≤ e (it is symmetric in both), which divides its cost by about four.
"""

from __future__ import annotations

import functools
import textwrap

import numpy as np
import sympy as sp

from eqgen.codegen.printer import jax_code, special_imports
from eqgen.symbolic import convert
from eqgen.theories.committee import (
    JOINT_ORDER,
    PRODUCT_RULE_NESTING,
    CommitteeEquations,
    Integral,
)
from eqgen.theories.stein import LinearI3, split_i3

INDENT = "    "


def _slice(cls: str) -> str:
    return {"student": ":p", "teacher": "p:", "units": ":"}[cls]


def _function(name: str, args: list[str], doc: str, body: list[str]) -> str:
    """A function definition: signature, raw docstring (it holds LaTeX), indented body."""
    doc = textwrap.indent(doc.strip(), INDENT)
    lines = [f"def {name}({', '.join(args)}):", f'{INDENT}r"""' + doc.strip() + f'\n{INDENT}"""']
    lines += [INDENT + b if b else "" for b in body]
    return "\n".join(lines)


def _expr_body(expr: sp.Expr) -> list[str]:
    """Common subexpressions as named temporaries, then the result."""
    temps, (reduced,) = sp.cse(expr, symbols=sp.numbered_symbols("x"), optimizations="basic")
    body = [f"{s} = {jax_code(e)}" for s, e in temps]
    body.append(f"return {jax_code(reduced)}")
    return body


def _integral_function(eq: CommitteeEquations, it: Integral) -> str:
    if it.parts is not None:
        return _stein_function(eq, it)
    args = [str(a) for a in it.args]
    fields = " ".join(_describe_factor(eq, f, i + 1) for i, f in enumerate(it.factors))
    head = f"{it.kind}: E[{fields}] over h ~ N(0, C); {it.method}."
    if it.exact:
        doc = head + "\n\n" + sp.latex(it.expr).replace("\n", " ")
        return _function(it.name, args, doc, _expr_body(it.expr))
    nodes = it.order ** it.dim
    cov = f"cov = covariance_matrix({', '.join(args)}, dim={it.dim})"
    nesting = PRODUCT_RULE_NESTING.get(it.dim)
    if nesting is not None:
        outer = ", ".join(f"h{i + 1}" for i in nesting)
        doc = (head + f"\n\nNo closed form is used: Gauss–Hermite quadrature nested over a "
               f"Cholesky factor of C\n(fields {outer}, outermost first), order {it.order} "
               f"per dimension ({nodes} nodes). Error estimate:\nsee the model's LaTeX and "
               "docs/numerics.md.")
        fns = ", ".join(_factor_fn(eq, f) for f in it.factors)
        body = [cov, f"return gaussian_product_expectation(({fns}), cov, order={it.order}, "
                f"nesting={nesting})"]
        return _function(it.name, args, doc, body)
    doc = (head + f"\n\nNo closed form is used: Gauss–Hermite quadrature on a symmetric square "
           f"root of C,\norder {it.order} per dimension ({nodes} nodes). Error estimate: see "
           "the model's LaTeX and docs/numerics.md.")
    lam = " * ".join(f"{_factor_fn(eq, f)}(h[..., {i}])" for i, f in enumerate(it.factors))
    body = [cov, f"return gaussian_expectation(lambda h: {lam}, cov, order={it.order})"]
    return _function(it.name, args, doc, body)


def quadrature_imports(numerical: list[Integral]) -> list[str]:
    """The runtime quadrature functions that the numerical integrals `numerical` call."""
    rules = {"gaussian_product_expectation" if it.dim in PRODUCT_RULE_NESTING
             else "gaussian_expectation" for it in numerical}
    return sorted(rules)


def _stein_function(eq: CommitteeEquations, it: Integral) -> str:
    """I3 as C12 · E[σ''(h1) φ(h3)] + C23 · E[σ'(h1) φ'(h3)] (Stein's lemma), each part its
    own generated function over the 2-D covariance (C11, C13, C33)."""
    curvature, slope = it.parts
    out = [_integral_function(eq, curvature), _integral_function(eq, slope)]
    args = [str(a) for a in it.args]
    doc = (f"I3: E[σ'(h1) h2 φ(h3)] by Stein's lemma (h2 linear):\n"
           f"C12 · E[σ''(h1) φ(h3)] + C23 · E[σ'(h1) φ'(h3)], see {curvature.name} and "
           f"{slope.name}.")
    body = [f"return (C12 * {curvature.name}(C11=C11, C12=C13, C22=C33)",
            f"        + C23 * {slope.name}(C11=C11, C12=C13, C22=C33))"]
    out.append(_function(it.name, args, doc, body))
    return "\n\n\n".join(out)


def stein_split_functions(lin: LinearI3) -> list[str]:
    """`<i3>_curvature(C11, C13, C33)` = ∂I3/∂C12 and `<i3>_slope(...)` = ∂I3/∂C23."""
    it = lin.integral
    args = ["C11", "C13", "C33"]
    out = []
    if lin.curvature is not None:
        for part, expr, what in (("curvature", lin.curvature, "E[σ''(h1) φ(h3)] = ∂I3/∂C12"),
                                 ("slope", lin.slope, "E[σ'(h1) φ'(h3)] = ∂I3/∂C23")):
            doc = (f"{what} of {it.name} (Stein's lemma), a function of (C11, C13, C33);\n"
                   f"derived by sympy from {it.name}; {it.method}.\n\n"
                   + sp.latex(expr).replace("\n", " "))
            out.append(_function(f"{it.name}_{part}", args, doc, _expr_body(expr)))
        return out
    curvature, slope = it.parts
    for part, sub in (("curvature", curvature), ("slope", slope)):
        doc = f"∂{it.name}/∂C{'12' if part == 'curvature' else '23'}: see {sub.name}."
        out.append(_function(f"{it.name}_{part}", args, doc,
                             [f"return {sub.name}(C11=C11, C12=C13, C22=C33)"]))
    return out


def _describe_factor(eq: CommitteeEquations, f: sp.Expr, i: int) -> str:
    name = {"_identity": "", "sigma_prime": "σ'", "sigma": "σ", "g": "g",
            "sigma_second": "σ''", "g_prime": "g'"}[_factor_fn(eq, f)]
    return f"{name}(h{i})" if name else f"h{i}"


def _factor_fn(eq: CommitteeEquations, f: sp.Expr) -> str:
    if f == convert.Z:
        return "_identity"
    if f == eq.sigma_prime:
        return "sigma_prime"
    if f == eq.sigma_second:
        return "sigma_second"
    if f == eq.g_prime:
        return "g_prime"
    if f == eq.sigma:
        return "sigma"
    if f == eq.g:
        return "g"
    raise ValueError(f"no generated function for factor {f}")


def _activation_functions(eq: CommitteeEquations) -> list[str]:
    out = [
        _function("sigma", ["z"], f"Student activation σ(z) = {sp.latex(eq.sigma)}.",
                  [f"return {jax_code(eq.sigma)}"]),
        _function("sigma_prime", ["z"], f"σ'(z) = {sp.latex(eq.sigma_prime)} (derived by sympy).",
                  [f"return {jax_code(eq.sigma_prime)}"]),
        _function("g", ["z"], f"Teacher activation g(z) = {sp.latex(eq.g)}.",
                  [f"return {jax_code(eq.g)}"]),
    ]
    if any(it.parts for it in eq.integrals):
        out += [
            _function("sigma_second", ["z"], f"σ''(z) = {sp.latex(eq.sigma_second)}.",
                      [f"return {jax_code(eq.sigma_second)}"]),
            _function("g_prime", ["z"], f"g'(z) = {sp.latex(eq.g_prime)}.",
                      [f"return {jax_code(eq.g_prime)}"]),
        ]
    out += [
        _function("_identity", ["z"], "The linear factor h of I3.", ["return z"]),
    ]
    return out


def _scalars_function(eq: CommitteeEquations) -> str:
    used = set()
    for e in eq.scalars.values():
        used |= {s.name for s in e.free_symbols}
    body = [f'{name} = params["{name}"]' for name in eq.param_symbols if name in used]
    body.append("return {")
    for key, e in eq.scalars.items():
        body.append(f'    "{key}": {jax_code(e)},')
    body.append("}")
    doc = ("Readout scales c_p, c_k, learning rate γ, batch size B, label noise Δ and the\n"
           "second-layer rate (γ_a d / γ), as the spec defines them from the parameters.")
    return _function("scalars", ["params"], doc, body)


def _i3_block(eq: CommitteeEquations, it: Integral) -> list[str]:
    (cls,) = it.classes
    sl = _slice(cls)
    if _split(it) is not None:
        return [
            f"# Σ_c u_c I3(j, β, c) over the {_units(cls)} c. I3 is linear in C12 and C23 "
            "(Stein):",
            "# I3(j, β, c) = Ω_jβ A_jc + Ω_βc B_jc, so the sum is two matrix products",
            f"C13 = Omega[:p, {sl}]",
            f"A = jnp.broadcast_to({it.name}_curvature(C11=dq[:, None], C13=C13, "
            f"C33=diag[None, {sl}]), C13.shape)",
            f"B = jnp.broadcast_to({it.name}_slope(C11=dq[:, None], C13=C13, "
            f"C33=diag[None, {sl}]), C13.shape)",
            f"T = T + Omega[:p, :] * jnp.sum(A * u[{sl}], axis=1)[:, None] "
            f"+ _matmul(B * u[{sl}], Omega[{sl}, :])",
        ]
    return [
        f"# Σ_c u_c I3(j, β, c) over the {_units(cls)} c",
        f"T = T + jnp.sum({it.name}(",
        "    C11=dq[:, None, None], C12=Omega[:p, :, None], "
        f"C13=Omega[:p, None, {sl}],",
        f"    C22=diag[None, :, None], C23=Omega[None, :, {sl}], C33=diag[None, None, {sl}],",
        f") * u[{sl}], axis=-1)",
    ]


def _units(cls: str) -> str:
    return "units" if cls == "units" else f"{cls} units"


@functools.cache
def _split(it: Integral) -> LinearI3 | None:
    """The Stein split of an I3 (None if its closed form is not verifiably linear); cached,
    since the module's functions and its vector field both ask, and sympy's check is slow."""
    return split_i3(it, numerical_parts=True)


def _i4_block(eq: CommitteeEquations, it: Integral) -> list[str]:
    a, b = it.classes
    sa, sb = _slice(a), _slice(b)
    if a == b:
        pairs = f"ci, ei = _pairs(u[{sa}].shape[0])"
        weights = f"w = jnp.where(ci == ei, 1.0, 2.0) * u[{sa}][ci] * u[{sa}][ei]"
    else:
        pairs = f"ci, ei = _product(u[{sa}].shape[0], u[{sb}].shape[0])"
        weights = f"w = 2.0 * u[{sa}][ci] * u[{sb}][ei]"
    c_idx, e_idx = f"{_offset(a)}ci", f"{_offset(b)}ei"
    if it.exact:
        # terms that involve only one of c, e are computed once per unit, then placed onto
        # the (c, e) terms: the full grid while it is small, the pairs c ≤ e above
        both = "1.0" if a == b else "2.0"  # the grid holds both orders of a same-class pair
        return [
            f"# Σ_(c,e) u_c u_e I4(j, l, c, e), c in {a}, e in {b}",
            f"if u[{sa}].shape[0] * u[{sb}].shape[0] <= GRID_I4:",
            "    # the full (c, e) grid, axes (j ≤ l, c, e): broadcasts, which XLA vectorises",
            f"    w = {both} * u[{sa}][:, None] * u[{sb}][None, :]",
            f"    V = V + jnp.sum({it.name}_on_terms(",
            "        C11=dq[ji][:, None, None], C12=Q[ji, li][:, None, None],",
            "        C22=dq[li][:, None, None],",
            f"        C13=Omega[ji][:, {sa}, None], C23=Omega[li][:, {sa}, None],",
            f"        C33=diag[{sa}][None, :, None],",
            f"        C14=Omega[ji][:, None, {sb}], C24=Omega[li][:, None, {sb}],",
            f"        C44=diag[{sb}][None, None, :],",
            f"        C34=Omega[{sa}, {sb}][None], ci=..., ei=...,",
            "    ) * w[None], axis=(1, 2))",
            "else:",
            "    # pairs c ≤ e only (symmetric): half the terms, gathered",
            "    " + pairs,
            "    " + weights,
            f"    V = V + jnp.sum({it.name}_on_terms(",
            "        C11=dq[ji][:, None], C12=Q[ji, li][:, None], C22=dq[li][:, None],",
            f"        C13=Omega[ji][:, {sa}], C23=Omega[li][:, {sa}], C33=diag[{sa}][None, :],",
            f"        C14=Omega[ji][:, {sb}], C24=Omega[li][:, {sb}], C44=diag[{sb}][None, :],",
            f"        C34=Omega[{c_idx}, {e_idx}][None, :], ci=(slice(None), ci),",
            "        ei=(slice(None), ei),",
            "    ) * w[None, :], axis=-1)",
        ]
    return [
        f"# Σ_(c,e) u_c u_e I4(j, l, c, e), c in {a}, e in {b}: pairs c ≤ e only (symmetric)",
        pairs,
        weights,
        f"V = V + jnp.sum({it.name}(",
        "    C11=dq[ji][:, None], C12=Q[ji, li][:, None], C22=dq[li][:, None],",
        f"    C13=Omega[ji][:, {c_idx}], C14=Omega[ji][:, {e_idx}],",
        f"    C23=Omega[li][:, {c_idx}], C24=Omega[li][:, {e_idx}],",
        f"    C33=diag[{c_idx}][None, :], C34=Omega[{c_idx}, {e_idx}][None, :], "
        f"C44=diag[{e_idx}][None, :],",
        ") * w[None, :], axis=-1)",
    ]


def _split_square_roots(it: Integral) -> sp.Expr:
    """√(ab) → √a √b where that is an identity for this integral (checked numerically at
    random positive-definite covariances), so that √a and √b can be hoisted separately."""
    import scipy.special

    split = sp.expand_power_base(it.expr, force=True)
    if split == it.expr:
        return it.expr
    mods = [{"erf": scipy.special.erf}, "numpy"]
    f0 = sp.lambdify(it.args, it.expr, modules=mods)
    f1 = sp.lambdify(it.args, split, modules=mods)
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = rng.standard_normal((4, 6))
        C = v @ v.T / 6
        vals = [C[i, j] for i in range(4) for j in range(i, 4)]
        a, b = complex(f0(*vals)), complex(f1(*vals))
        if not abs(a - b) <= 1e-12 * max(1.0, abs(a)):
            return it.expr
    return split


def _staged_i4_function(it: Integral) -> str:
    """I4 on the (c, e) terms of a sum, hoisting what depends on c or on e alone.

    Subexpressions of the closed form are sorted by the covariance entries they involve:
    (j, l) only; (j, l, c) only (C13, C23, C33); (j, l, e) only (C14, C24, C44); or all. The
    single-unit ones are evaluated per unit (shape (pairs_jl, n)) and placed onto the (c, e)
    terms, instead of evaluated once per term: for the erf I4 this removes two of the three
    square-root-and-quadratic-form evaluations from the inner loop. The terms are the full
    (c, e) grid for narrow committees (broadcasts, which XLA vectorises: at p = 10 a right-hand
    side 1.3–1.6 × faster than on the pairs, though the grid has twice the terms) and the pairs
    c ≤ e above GRID_I4 terms (half the work, but gathers; faster from p ≈ 56 on).
    """
    names = {str(a): a for a in it.args}
    base_level = {names[n]: "c" for n in ("C13", "C23", "C33")}
    base_level.update({names[n]: "e" for n in ("C14", "C24", "C44")})
    base_level[names["C34"]] = "ce"
    expr = _split_square_roots(it)

    def level_of(e: sp.Expr) -> str:
        used = {base_level.get(sym, "jl") for sym in e.free_symbols}
        if "ce" in used or {"c", "e"} <= used:
            return "ce"
        return "c" if "c" in used else "e" if "e" in used else "jl"

    # hoist every maximal subexpression that does not involve both c and e
    hoisted: dict[sp.Expr, sp.Symbol] = {}
    order: list[tuple[sp.Symbol, sp.Expr, str]] = []

    def hoist(e: sp.Expr) -> sp.Expr:
        if not e.free_symbols:
            return e
        if e.is_Symbol and base_level.get(e) not in ("c", "e"):
            return e
        lv = level_of(e)
        if lv != "ce":
            if e not in hoisted:
                sym = sp.Symbol(f"{e}_g" if e.is_Symbol else f"t{len(hoisted)}")
                hoisted[e] = sym
                order.append((sym, e, lv))
            return hoisted[e]
        if isinstance(e, sp.Mul | sp.Add):
            # regroup the arguments: those involving (j, l) and c only, and those involving
            # (j, l) and e only, become two hoistable factors (or terms)
            groups: dict[str, list[sp.Expr]] = {"c": [], "e": [], "jl": [], "ce": []}
            for a in e.args:
                groups[level_of(a)].append(a)
            side = "c" if groups["c"] else "e"
            groups[side] += groups.pop("jl")
            parts = [e.func(*groups[lv]) for lv in ("c", "e") if groups[lv]]
            if len(parts) + len(groups["ce"]) > 1 and any(len(groups[lv]) > 1
                                                          for lv in ("c", "e")):
                return e.func(*[hoist(x) for x in parts], *[hoist(a) for a in groups["ce"]],
                              evaluate=False)
        return e.func(*[hoist(a) for a in e.args])

    reduced = hoist(expr)
    body: list[str] = []
    for sym, e, lv in order:
        temps, (red,) = sp.cse(e, symbols=sp.numbered_symbols(f"{sym}_"), optimizations="basic")
        body += [f"{t} = {jax_code(v)}" for t, v in temps]
        value = jax_code(red)
        if lv == "c":
            value = f"({value})[ci]"
        elif lv == "e":
            value = f"({value})[ei]"
        body.append(f"{sym} = {value}  # depends on (j, l{', ' + lv if lv != 'jl' else ''})")
    temps, (red,) = sp.cse(reduced, symbols=sp.numbered_symbols("x"), optimizations="basic")
    body += [f"{t} = {jax_code(v)}" for t, v in temps]
    body.append(f"return {jax_code(red)}")
    args = ["C11", "C12", "C22", "C13", "C23", "C33", "C14", "C24", "C44", "C34", "ci", "ei"]
    doc = (f"{it.name} on the (c, e) terms of a sum: C13, C23, C33 are given for every unit c\n"
           "and C14, C24, C44 for every unit e, C34 on the terms; terms involving only c or\n"
           "only e are computed per unit and placed onto the terms by the indexers ci, ei:\n"
           "on the full grid the units already lie on their own axes (ci = ei = ...), on index\n"
           f"pairs they are gathered. Same value as {it.name} on those entries, at a fraction\n"
           "of the cost.")
    return _function(f"{it.name}_on_terms", args, doc, body)


def _offset(cls: str) -> str:
    return "p + " if cls == "teacher" else ""


def _i2_block(it: Integral, target: str) -> list[str]:
    a, b = it.classes
    sa, sb = _slice(a), _slice(b)
    res = (f"{it.name}(C11=diag[{sa}][:, None], C12=Omega[{sa}, {sb}], "
           f"C22=diag[{sb}][None, :])")
    if it.expr is not None and not it.expr.free_symbols:  # a constant (e.g. 0 by parity)
        res = f"jnp.broadcast_to({res}, Omega[{sa}, {sb}].shape)"
    factor = "" if a == b else "2 * "
    lines = [f"{target} = {target} + {factor}u[{sa}] @ {res} @ u[{sb}]"]
    return lines


def _square_vector_field(eq: CommitteeEquations) -> str:
    r = eq.regime
    body = [
        "Q, M, P, a, a_star = (state[name] for name in STATES)",
        "p, k = M.shape",
        "s = scalars(params)",
        "Omega = jnp.block([[Q, M], [M.T, P]])",
        "diag = jnp.diagonal(Omega)",
        "dq = diag[:p]",
        "# signed readouts: 𝓔 = Σ_c u_c φ_c(h_c) + √Δ ξ",
        'u = jnp.concatenate([-s["c_p"] * a, s["c_k"] * a_star])',
        "",
    ]
    if r.drift:
        body.append("T = jnp.zeros((p, p + k))")
        for it in eq.integrals_of("I3"):
            body += _i3_block(eq, it)
        body += [
            "dM = a[:, None] * T[:, p:]",
            "drift = a[:, None] * T[:, :p]",
            "dQ = drift + drift.T",
        ]
    else:
        body += ["dM = jnp.zeros_like(M)", "dQ = jnp.zeros_like(Q)"]
    if r.variance:
        coef = ('s["gamma"] * s["c_p"] / s["batch"]' if r.drift else "1.0")
        body += [
            "",
            "# SGD variance term: (γ c_p / B) a_j a_l [Σ_ce u_c u_e I4(j,l,c,e) + Δ J2(j,l)]",
            "ji, li = _pairs(p)",
            "V = jnp.zeros(ji.shape[0])",
        ]
        for it in eq.integrals_of("I4"):
            body += _i4_block(eq, it)
        body += [
            'V = V + s["Delta"] * j2(C11=dq[ji], C12=Q[ji, li], C22=dq[li])',
            "V = jnp.zeros((p, p)).at[ji, li].set(V).at[li, ji].set(V)",
            f"dQ = dQ + {coef} * (a[:, None] * a[None, :]) * V",
        ]
    if eq.trained and r.drift:
        body += [
            "",
            "# trained second layer: da_j/dt = rate · Σ_c u_c I2(j, c)",
            "E_sigma = jnp.zeros(p)",
        ]
        for it in eq.integrals_of("I2"):
            a_, b_ = it.classes
            if "student" not in (a_, b_) and a_ != "units":
                continue
            sa = _slice(a_)
            sb = _slice(b_)
            if a_ == "units":
                body.append(f"E_sigma = E_sigma + ({it.name}(C11=dq[:, None], "
                            f"C12=Omega[:p, :], C22=diag[None, :]) @ u)")
            elif a_ == b_:
                body.append(f"E_sigma = E_sigma + ({it.name}(C11=dq[:, None], C12=Q, "
                            f"C22=dq[None, :]) @ u[{sa}])")
            else:
                body.append(f"E_sigma = E_sigma + ({it.name}(C11=dq[:, None], "
                            f"C12=Omega[:p, {sb}], C22=diag[{sb}][None, :]) @ u[{sb}])")
        body.append('da = s["rate"] * E_sigma')
    else:
        body.append("da = jnp.zeros_like(a)")
    body += [
        "",
        'return {"Q": dQ, "M": dM, "P": jnp.zeros_like(P), "a": da, '
        '"a_star": jnp.zeros_like(a_star)}',
    ]
    return _function("vector_field", ["t", "state", "params"], _vf_doc(eq), body)


def _vf_doc(eq: CommitteeEquations) -> str:
    r = eq.regime
    lines = [
        "Time derivatives of the order parameters (index form, any p and k).",
        "",
        f"Regime: {r.summary}.",
        f"Time: {r.time_unit}.",
        "",
    ]
    if eq.square_loss:
        if r.drift:
            lines += [r"\frac{dM_{jr}}{dt} = a_j \sum_c u_c I_3(j, r, c)",
                      r"\frac{dQ_{jl}}{dt} = a_j \sum_c u_c I_3(j, l, c) + a_l \sum_c u_c "
                      r"I_3(l, j, c)"]
        if r.variance:
            pre = r"\frac{\gamma c_p}{B}" if r.drift else ""
            lines.append(r"\quad + " + pre + r" a_j a_l \Big[\sum_{c,e} u_c u_e I_4(j,l,c,e) "
                         r"+ \Delta J_2(j,l)\Big]")
    else:
        lines += [r"\frac{dM_{jr}}{dt} = a_j E[\mathcal{E} \sigma'(\lambda_j) \nu_r]",
                  r"\frac{dQ_{jl}}{dt} = a_j E[\mathcal{E} \sigma'(\lambda_j) \lambda_l] + "
                  r"(j \leftrightarrow l) + \frac{\gamma c_p}{B} a_j a_l "
                  r"E[\mathcal{E}^2 \sigma'(\lambda_j) \sigma'(\lambda_l)]"]
    if eq.trained and r.drift:
        lines.append(r"\frac{da_j}{dt} = \mathrm{rate}\, E[\mathcal{E} \sigma(\lambda_j)]")
    return "\n".join(lines)


def _square_observables(eq: CommitteeEquations) -> str:
    body = [
        "Q, M, P, a, a_star = (state[name] for name in STATES)",
        "p = M.shape[0]",
        "s = scalars(params)",
        "Omega = jnp.block([[Q, M], [M.T, P]])",
        "diag = jnp.diagonal(Omega)",
        'u = jnp.concatenate([-s["c_p"] * a, s["c_k"] * a_star])',
        "twice_excess = 0.0",
    ]
    for it in eq.integrals_of("I2"):
        body += _i2_block(it, "twice_excess")
    body += [
        "excess_risk = twice_excess / 2",
        'return {"risk": excess_risk + s["Delta"] / 2, "excess_risk": excess_risk}',
    ]
    doc = ("Population risk E[ℓ] = ε + Δ/2 and excess risk ε = ½ E[(f* − f)²] = "
           "½ Σ_ce u_c u_e I2(c, e).")
    return _function("observables", ["state", "params"], doc, body)


def _joint_functions(eq: CommitteeEquations) -> list[str]:
    y, yhat = convert.Y, convert.YHAT
    plain = {y: sp.Symbol("y"), yhat: sp.Symbol("yhat")}
    loss = _function("loss", ["y", "yhat"], f"ℓ(y, ŷ) = {sp.latex(eq.loss)}.",
                     [f"return {jax_code(eq.loss.subs(plain))}"])
    err = _function("error_signal", ["y", "yhat"],
                    f"𝓔 = −∂ℓ/∂ŷ = {sp.latex(eq.error_signal)} (derived by sympy).",
                    [f"return {jax_code(eq.error_signal)}"])
    body = [
        "Q, M, P, a, a_star = (state[name] for name in STATES)",
        "p, k = M.shape",
        "s = scalars(params)",
        "Omega = jnp.block([[Q, M], [M.T, P]])",
        f"nodes, weights = gauss_hermite_nodes(p + k + 1, {JOINT_ORDER})",
        "root = symmetric_sqrt(Omega)",
        "h = nodes[:, :-1] @ root.T",
        "lam, nu, xi = h[:, :p], h[:, p:], nodes[:, -1]",
        'f = s["c_p"] * sigma(lam) @ a',
        'fstar = s["c_k"] * g(nu) @ a_star',
        'y = fstar + jnp.sqrt(s["Delta"]) * xi',
        "return lam, nu, f, fstar, y, weights, s",
    ]
    fields = _function("_fields", ["state", "params"],
                       "Joint Gauss–Hermite grid over (λ, ν, ξ) and the network outputs on it.",
                       body)
    return [loss, err, fields]


def _joint_vector_field(eq: CommitteeEquations) -> str:
    r = eq.regime
    body = [
        "lam, nu, f, _, y, w, s = _fields(state, params)",
        "a = state[\"a\"]",
        "E = error_signal(y, f)",
        "dsig = sigma_prime(lam)",
    ]
    if r.drift:
        body += [
            "dM = a[:, None] * jnp.einsum('n,nj,nr->jr', w * E, dsig, nu)",
            "drift = a[:, None] * jnp.einsum('n,nj,nl->jl', w * E, dsig, lam)",
            "dQ = drift + drift.T",
        ]
    else:
        body += ['dM = jnp.zeros_like(state["M"])', 'dQ = jnp.zeros_like(state["Q"])']
    if r.variance:
        coef = 's["gamma"] * s["c_p"] / s["batch"]' if r.drift else "1.0"
        body += [
            "V = jnp.einsum('n,nj,nl->jl', w * E**2, dsig, dsig)",
            f"dQ = dQ + {coef} * (a[:, None] * a[None, :]) * V",
        ]
    if eq.trained and r.drift:
        body.append("da = s[\"rate\"] * jnp.einsum('n,nj->j', w * E, sigma(lam))")
    else:
        body.append("da = jnp.zeros_like(a)")
    body.append('return {"Q": dQ, "M": dM, "P": jnp.zeros_like(state["P"]), "a": da, '
                '"a_star": jnp.zeros_like(state["a_star"])}')
    return _function("vector_field", ["t", "state", "params"], _vf_doc(eq), body)


def _joint_observables(eq: CommitteeEquations) -> str:
    body = [
        "_, _, f, fstar, y, w, _ = _fields(state, params)",
        "return {",
        '    "risk": jnp.sum(w * loss(y, f)),',
        '    "excess_risk": jnp.sum(w * (fstar - f) ** 2) / 2,',
        "}",
    ]
    doc = "Population risk E[ℓ(y, f)] and excess risk ½E[(f* − f)²], by the joint quadrature."
    return _function("observables", ["state", "params"], doc, body)


def _imports(eq: CommitteeEquations, body: str) -> list[str]:
    """The import lines of the module whose functions are `body`."""
    numerical = [part for i in eq.integrals for part in (i.parts or (i,)) if not part.exact]
    imports = ["import jax", "import jax.numpy as jnp", "import jax.scipy.special as jsp",
               "import numpy as np"]
    runtime = []
    helpers = special_imports(body)
    if helpers:
        imports.append("")
        imports.append(f"from eqgen.runtime.special import {', '.join(helpers)}")
    runtime += quadrature_imports(numerical)
    if not eq.square_loss:
        runtime += ["gauss_hermite_nodes", "symmetric_sqrt"]
    if runtime:
        imports.append("")
        imports.append(f"from eqgen.runtime.quadrature import {', '.join(sorted(runtime))}")
    if numerical:
        imports.append("from eqgen.runtime.covariance import covariance_matrix")
    return [*imports, "", 'jax.config.update("jax_enable_x64", True)  # float64 throughout']


def module_source(eq: CommitteeEquations, *, header: str, defaults: dict[str, float]) -> str:
    """The full text of the generated module for `eq` (deterministic)."""
    spec = eq.spec
    evolving = ["Q", "M"] + (["a"] if eq.trained else [])
    consts = [
        f'MODEL = "{spec.name}"',
        'FAMILY = "committee"',
        f"PARAMETERS = {_dict_text(defaults)}",
        'STATES = ("Q", "M", "P", "a", "a_star")',
        f"EVOLVING = {tuple(evolving)!r}",
        'OBSERVABLES = ("risk", "excess_risk")',
        f'REGIME = "{eq.regime.name}"',
        f"SQUARE_LOSS = {eq.square_loss}",
    ]
    split = eq.square_loss and any(_split(it) for it in eq.integrals_of("I3"))
    if split:
        consts.append("SMALL_PRODUCT = 512  # products with at most this many terms are written "
                      "out (_matmul)")
    if eq.square_loss and any(it.exact for it in eq.integrals_of("I4")):
        consts.append("GRID_I4 = 2704  # I4 sums of at most this many (c, e) terms use the full "
                      "grid")
    parts = _activation_functions(eq)
    parts.append(_scalars_function(eq))
    parts.append(_function("_pairs", ["n"], "Index pairs (i, j) with i ≤ j (static).",
                           ["i, j = np.triu_indices(n)", "return jnp.asarray(i), jnp.asarray(j)"]))
    parts.append(_function("_product", ["n", "m"], "All index pairs of an n × m block (static).",
                           ["i, j = np.indices((n, m)).reshape(2, -1)",
                            "return jnp.asarray(i), jnp.asarray(j)"]))
    if split:  # only the I3 split's sum uses it
        parts.append(_function(
            "_matmul", ["x", "y"],
            "x @ y. For the small matrices of a narrow committee, a broadcast product summed\n"
            "over the shared index: XLA fuses it with its neighbours, while a matrix-product call\n"
            "has a fixed cost that dominates tiny products (above all in a vmapped sweep).",
            ["if x.shape[0] * x.shape[1] * y.shape[1] <= SMALL_PRODUCT:",
             "    return jnp.sum(x[:, :, None] * y[None, :, :], axis=1)",
             "return x @ y"]))
    if eq.square_loss:
        for it in eq.integrals:
            parts.append(_integral_function(eq, it))
            if it.kind == "I3" and (lin := _split(it)) is not None:
                parts += stein_split_functions(lin)
            if it.kind == "I4" and it.exact:
                parts.append(_staged_i4_function(it))
        parts.append(_square_vector_field(eq))
        parts.append(_square_observables(eq))
    else:
        parts += _joint_functions(eq)
        parts.append(_joint_vector_field(eq))
        parts.append(_joint_observables(eq))
    body = "\n\n\n".join(parts)
    head = [f'r"""{header}\n"""', "\n".join(_imports(eq, body)), "\n".join(consts)]
    return "\n\n\n".join([*head, body]) + "\n"


def _dict_text(d: dict[str, float]) -> str:
    return "{" + ", ".join(f'"{k}": {float(v)!r}' for k, v in d.items()) + "}"
