"""Writes the JAX module of the mean-field (large-p) reduction of a committee model.

State M (p×k) and q⊥ (p); P = I. Every right-hand side is a sum over the p student units of
functions of Q_jl = M_j·M_l (l ≠ j), so one evaluation costs O(p²k) time. The rows j are
processed in blocks of ROW_BLOCK with `jax.lax.map`, so memory stays O(ROW_BLOCK · p): no p×p
array is ever formed (p = 10⁴ would need 800 MB per such array in float64).
"""

from __future__ import annotations

from eqgen.codegen.committee import (
    _activation_functions,
    _function,
    _integral_function,
    _scalars_function,
    quadrature_imports,
    stein_split_functions,
)
from eqgen.codegen.printer import special_imports
from eqgen.theories.mean_field import MeanFieldEquations

ROW_BLOCK = 256

NEGLECTED = """\
Neglected (docs/theory.md, Mean-field reduction; eqgen.theories.mean_field): the off-teacher
student–student overlaps Q⊥_jl = Q_jl − (MMᵀ)_jl (j ≠ l) are held at 0. The full ODE creates
them at rate −c_p a_j a_l (q⊥_j + q⊥_l) E[σ'(λ_j)σ'(λ_l)] = O(c_p) and they act back through p
terms weighted by c_p: with c_p = 1/p the reduced trajectory is off by O(t/p). Random initial
weights at dimension d add Q⊥_jl = O(d^{-1/2}), also dropped. Gradient flow only: the SGD
variance term O(γ c_p / B) is absent."""


def _classes(eq: MeanFieldEquations) -> tuple[str, str]:
    """Class names of the student units and of the teacher units."""
    names = [c.name for c in eq.full.classes]
    return ("units", "units") if names == ["units"] else ("student", "teacher")


def _vector_field(eq: MeanFieldEquations) -> str:
    s_cls, t_cls = _classes(eq)
    i3s, i3t = eq.i3_of(s_cls).integral.name, eq.i3_of(t_cls).integral.name
    body = [
        "M, q_perp, a, a_star = (jnp.asarray(state[name]) for name in STATES)",
        "p, k = M.shape",
        "s = scalars(params)",
        'u = -s["c_p"] * a  # signed student readouts',
        'u_star = s["c_k"] * a_star  # signed teacher readouts',
        "q_diag = jnp.sum(M**2, axis=1) + q_perp  # Q_jj",
        "",
        "def row(j):",
        "    Mj, qj = M[j], q_diag[j]",
        "    Qj = (M @ Mj).at[j].set(qj)  # Q_jl = M_j·M_l (l ≠ j) and Q_jj",
        f"    A = {i3s}_curvature(C11=qj, C13=Qj, C33=q_diag)  # ∂I3(j, ·, l)/∂C12",
        f"    B = {i3s}_slope(C11=qj, C13=Qj, C33=q_diag)  # ∂I3(j, ·, l)/∂C23",
        f"    A_star = {i3t}_curvature(C11=qj, C13=Mj, C33=1.0)  # teacher units, P = I",
        f"    B_star = {i3t}_slope(C11=qj, C13=Mj, C33=1.0)",
        "    drive = u @ A + u_star @ A_star  # Σ_c u_c ∂I3(j, ·, c)/∂C12",
        "    dM = a[j] * (Mj * drive + (u * B) @ M + u_star * B_star)",
        "    dq = 2 * a[j] * q_perp[j] * (drive + u[j] * B[j])",
        "    return dM, dq",
        "",
        "dM, dq = jax.lax.map(row, jnp.arange(p), batch_size=ROW_BLOCK)",
        'return {"M": dM, "q_perp": dq, "a": jnp.zeros_like(a), '
        '"a_star": jnp.zeros_like(a_star)}',
    ]
    doc = "\n".join([
        "Time derivatives of the mean-field reduced state (M, q⊥), P = I, any p and k.",
        "",
        f"Regime: {eq.full.regime.summary}.",
        f"Time: {eq.full.regime.time_unit}.",
        "",
        r"Q_{jl} = (MM^\top)_{jl} + \delta_{jl} q^\perp_j,\quad "
        r"I_3(1,2,3) = C_{12} A(C_{11},C_{13},C_{33}) + C_{23} B(C_{11},C_{13},C_{33})",
        r"\frac{dM_{jr}}{dt} = a_j \Big[ M_{jr} \sum_c u_c A_{jc} + \sum_l u_l B_{jl} M_{lr} "
        r"+ u_r B_{jr} \Big]",
        r"\frac{dq^\perp_j}{dt} = 2 a_j q^\perp_j \Big[ \sum_c u_c A_{jc} + u_j B_{jj} \Big]",
        "",
        NEGLECTED,
    ])
    return _function("vector_field", ["t", "state", "params"], doc, body)


def _i2_name(eq: MeanFieldEquations, a: str, b: str) -> str:
    names = [c.name for c in eq.full.classes]
    a, b = sorted((a, b), key=names.index)
    return f"i2_{a}_{b}"


def _observables(eq: MeanFieldEquations) -> str:
    s_cls, t_cls = _classes(eq)
    body = [
        "M, q_perp, a, a_star = (jnp.asarray(state[name]) for name in STATES)",
        "p, k = M.shape",
        "s = scalars(params)",
        'u = -s["c_p"] * a',
        'u_star = s["c_k"] * a_star',
        "q_diag = jnp.sum(M**2, axis=1) + q_perp",
        "",
        "def row(j):",
        "    Qj = (M @ M[j]).at[j].set(q_diag[j])",
        f"    student = u @ {_i2_name(eq, s_cls, s_cls)}(C11=q_diag[j], C12=Qj, C22=q_diag)",
        f"    cross = u_star @ {_i2_name(eq, s_cls, t_cls)}(C11=q_diag[j], C12=M[j], C22=1.0)",
        "    return student, cross",
        "",
        "student, cross = jax.lax.map(row, jnp.arange(p), batch_size=ROW_BLOCK)",
        "ones = jnp.ones(k)",
        f"teacher = u_star @ {_i2_name(eq, t_cls, t_cls)}(C11=ones[:, None], C12=jnp.eye(k), "
        "C22=ones[None, :]) @ u_star",
        "excess_risk = (u @ student + 2 * (u @ cross) + teacher) / 2",
        'return {"risk": excess_risk + s["Delta"] / 2, "excess_risk": excess_risk}',
    ]
    doc = ("Population risk ε + Δ/2 and excess risk ε = ½ Σ_ce u_c u_e I2(c, e) on the reduced\n"
           "manifold Q = MMᵀ + diag(q⊥), P = I (rows in blocks: no p×p array).")
    return _function("observables", ["state", "params"], doc, body)


def module_source(eq: MeanFieldEquations, *, header: str, defaults: dict[str, float]) -> str:
    """The full text of the reduced module (deterministic)."""
    full = eq.full
    integrals = [*full.integrals_of("I2"), *(lin.integral for lin in eq.i3)]
    functions = []
    for it in full.integrals_of("I2"):
        functions.append(_integral_function(full, it))
    for lin in eq.i3:  # I3 itself (with its Stein parts, if any), then its split
        functions.append(_integral_function(full, lin.integral))
        functions += stein_split_functions(lin)
    code = "\n".join(functions)
    numerical = [part for i in integrals for part in (i.parts or (i,)) if not part.exact]
    imports = ["import jax", "import jax.numpy as jnp", "import jax.scipy.special as jsp"]
    helpers = special_imports(code)
    if helpers:
        imports += ["", f"from eqgen.runtime.special import {', '.join(helpers)}"]
    if numerical:
        imports += ["", "from eqgen.runtime.covariance import covariance_matrix",
                    "from eqgen.runtime.quadrature import "
                    + ", ".join(quadrature_imports(numerical))]
    imports += ["", 'jax.config.update("jax_enable_x64", True)  # float64 throughout']
    params = "{" + ", ".join(f'"{k}": {float(v)!r}' for k, v in defaults.items()) + "}"
    consts = [
        f'MODEL = "{full.spec.name}"',
        'FAMILY = "committee"',
        'REDUCTION = "mean_field"',
        f"PARAMETERS = {params}",
        'STATES = ("M", "q_perp", "a", "a_star")',
        'EVOLVING = ("M", "q_perp")',
        'OBSERVABLES = ("risk", "excess_risk")',
        f'REGIME = "{full.regime.name}"',
        "SQUARE_LOSS = True",
        f"ROW_BLOCK = {ROW_BLOCK}  # rows j per block: memory O(ROW_BLOCK · p)",
    ]
    parts = [f'r"""{header}\n"""', "\n".join(imports), "\n".join(consts)]
    parts += _activation_functions(full)
    parts.append(_scalars_function(full))
    parts += functions
    parts.append(_vector_field(eq))
    parts.append(_observables(eq))
    return "\n\n\n".join(parts) + "\n"
