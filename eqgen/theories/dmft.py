"""The DMFT family (docs/dmft.md, Theory): what sympy derives from a perceptron spec.

The DMFT closure itself (the effective process, kernels ν̂, M_C, M_R, the responses χ and R,
the m-equation) is the same for every model of the family; what changes from spec to spec is
the per-sample part, derived here: the loss ℓ(y, h) and its h-derivatives ℓ' and ℓ'', the label
rule ŷ(h) with the points where it jumps (for exact test errors), the target f(z) of a
teacher–student GLM, the clusters, and whether the process is exactly Gaussian (square-type
loss: ℓ'' constant and ℓ' affine), in which case it can be propagated without sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from eqgen.errors import Diagnostic, SpecError
from eqgen.spec.dmft import DmftSpec
from eqgen.spec.values import EvalError, evaluate
from eqgen.symbolic.convert import Y, Z, to_sympy
from eqgen.symbolic.domain import real_singularity, super_exponential_growth
from eqgen.symbolic.stable import Sigmoid, Softplus, stabilise

H = sp.Symbol("h", real=True)
JUMPS = (sp.sign, sp.Heaviside)


@dataclass(frozen=True)
class Cluster:
    """One cluster of the data: its centre c, probability P(c) and label y(c)."""

    value: sp.Expr
    prob: sp.Expr
    label: sp.Expr


@dataclass(frozen=True)
class DmftEquations:
    """The per-sample functions of a DMFT model, symbolic (with their LaTeX)."""

    spec: DmftSpec
    params: dict[str, sp.Symbol]
    loss: sp.Expr
    dloss: sp.Expr
    d2loss: sp.Expr
    label: sp.Expr
    target: sp.Expr | None
    clusters: tuple[Cluster, ...]
    label_breakpoints: tuple[sp.Expr, ...] | None
    target_breakpoints: tuple[sp.Expr, ...] | None
    gaussian_exact: bool

    @property
    def data(self) -> str:
        return self.spec.data


def _tidy(expr: sp.Expr) -> sp.Expr:
    """Simplified where that keeps the stable logistic functions, else as differentiated."""
    if expr.has(Sigmoid, Softplus):
        return sp.factor_terms(sp.expand(expr))
    return sp.simplify(expr)


def _without_null_deltas(expr: sp.Expr) -> sp.Expr:
    """`expr` without its terms c·δ(a) whose coefficient c vanishes where a = 0.

    sympy differentiates a continuous ℓ' such as the squared hinge's −y·max(0, 1 − yh) into
    ℓ'' = y²[δ(hy − 1)·max(0, 1 − yh) + θ(1 − yh)²]: the delta multiplies a factor that is
    zero on its support, so ℓ'' is a step with no delta, which the DMFT averages like any
    other function. A delta whose coefficient does not vanish (a jump in ℓ', as for the hinge
    itself) is kept, and so is one eqgen cannot decide about (solving a = 0 fails).
    """
    deltas = [d for d in expr.atoms(sp.DiracDelta) if len(d.args) == 1]
    if not deltas:
        return expr
    expanded = sp.expand(expr)
    for delta in deltas:
        try:
            roots = sp.solve(delta.args[0], H)
        except (NotImplementedError, ValueError, TypeError):
            continue
        coefficient = expanded.coeff(delta)
        if roots and all(sp.simplify(coefficient.subs(H, r)) == 0 for r in roots):
            expanded = expanded.subs(delta, 0)
    return sp.simplify(expanded) if expanded.has(sp.DiracDelta) else expanded


def _symbols(spec: DmftSpec) -> dict[str, sp.Symbol]:
    return {name: sp.Symbol(name, real=True) for name in spec.param_names}


def _jump_points(expr: sp.Expr, var: sp.Symbol) -> tuple[sp.Expr, ...] | None:
    """Where a piecewise-constant expression of `var` can jump: the real roots of the
    arguments of its sign/Heaviside functions (None when they cannot be found)."""
    points: list[sp.Expr] = []
    for f in sorted(expr.atoms(*JUMPS), key=sp.default_sort_key):
        arg = f.args[0]
        try:
            roots = sp.solve(sp.Eq(arg, 0), var)
        except (NotImplementedError, TypeError):
            return None
        for r in roots:
            if r.is_real is False:
                continue
            points.append(sp.simplify(r))
    uniq = sorted(set(points), key=sp.default_sort_key)
    return tuple(uniq)


def _piecewise_constant(expr: sp.Expr, var: sp.Symbol) -> bool:
    """Whether `expr` depends on `var` only through sign/Heaviside (takes finitely many values)."""
    dummies = {f: sp.Dummy() for f in expr.atoms(*JUMPS)}
    return var not in expr.xreplace(dummies).free_symbols


def _clusters(spec: DmftSpec, params: dict[str, sp.Symbol]) -> tuple[Cluster, ...]:
    if spec.data == "glm":
        return (Cluster(sp.Integer(0), sp.Integer(1), sp.Integer(0)),)
    if spec.clusters == 2:
        half = sp.Rational(1, 2)
        return (Cluster(sp.Integer(-1), half, sp.Integer(-1)),
                Cluster(sp.Integer(1), half, sp.Integer(1)))
    assert spec.rho is not None
    rho = to_sympy(spec.rho, params)
    return (Cluster(sp.Integer(-1), rho / 2, sp.Integer(1)),
            Cluster(sp.Integer(0), 1 - rho, sp.Integer(-1)),
            Cluster(sp.Integer(1), rho / 2, sp.Integer(1)))


def _spec_values(spec: DmftSpec, params: dict[str, sp.Symbol]) -> dict[sp.Symbol, sp.Expr]:
    """The parameters' values as the spec sets them (exact decimals), where they evaluate."""
    env: dict[str, float] = {}
    for p in spec.params:
        try:
            env[p.name] = float(evaluate(p.value, env))
        except (EvalError, TypeError, ValueError):
            continue
    return {params[name]: sp.Rational(repr(v)) for name, v in env.items()}


def _label_cases(spec: DmftSpec, values: dict[sp.Symbol, sp.Expr], target: sp.Expr | None
                 ) -> list[dict[sp.Symbol, sp.Expr]]:
    """Substitutions for the loss's other symbols: each label y the data produces (±1 for the
    mixtures; the target at a few z for a teacher–student GLM), with the parameters."""
    if target is None:
        ys = [sp.Integer(-1), sp.Integer(1)]
    else:
        ys = []
        for z in (-1.5, -0.5, 0.5, 1.5):
            v = target.xreplace(values).subs(Z, sp.Rational(repr(z))).evalf()
            if v.is_real and v.is_finite:
                ys.append(sp.Rational(repr(float(v))))
    return [{Y: y, **values} for y in ys]


def _domain_problems(spec: DmftSpec, params: dict[str, sp.Symbol],
                     losses: tuple[sp.Expr, sp.Expr, sp.Expr], label: sp.Expr,
                     target: sp.Expr | None) -> list[Diagnostic]:
    """Diagnostics for a loss ℓ (with ℓ', ℓ''), label rule or target that is not finite at
    some real point, and for a loss that grows faster than exponentially in h."""
    values = _spec_values(spec, params)
    cases = _label_cases(spec, values, target)
    where = spec.loss.pos if spec.loss_name is None else spec.pos
    out = []
    for expr, what in zip(losses, ("the loss", "ℓ' (the loss's derivative)",
                                   "ℓ'' (the loss's second derivative)"), strict=True):
        reason = real_singularity(expr, H, cases, named=(Y,))
        if reason is not None:
            out.append(spec.diagnostic(
                f"{what} is singular: it {reason}", where,
                "the DMFT averages ℓ, ℓ' and ℓ'' over Gaussian fields on the whole real line: "
                "use a loss that is smooth and finite for every h, e.g. log(1 + exp(-y * h))"))
            break
    else:
        radius = super_exponential_growth(losses[0], H, cases)
        if radius is not None:
            out.append(spec.diagnostic(
                f"the loss grows faster than exp(c|h|) for any c (seen at |h| ≈ {radius:g})",
                where, "its averages over the Gaussian fields diverge once their variance is "
                "large enough (like E[exp(c h²)]): use a loss that grows at most like a "
                "polynomial times exp(c|h|), e.g. log(1 + exp(-y * h)) or (y - h)**2 / 2"))
    for expr, e, var, what in ((label, spec.label, H, "the label rule"),
                               (target, spec.target, Z, "the target")):
        reason = real_singularity(expr, var, [values]) if expr is not None else None
        if reason is not None and e is not None:
            out.append(spec.diagnostic(
                f"{what} is singular: it {reason}", e.pos,
                f"{what} must be defined at every real {var}: e.g. "
                + ("sign(h)" if var == H else "z or sign(z)")))
        elif expr is not None and e is not None and var == Z and \
                (radius := super_exponential_growth(expr, Z, [values])) is not None:
            out.append(spec.diagnostic(
                f"the target grows faster than exp(c|z|) for any c (seen at |z| ≈ {radius:g})",
                e.pos, "the labels' moments over z ~ N(0, 1) diverge for growth like "
                "exp(z²/4) or faster (the test loss came out as 1e91 for exp(z**2)): use a "
                "target that grows at most like a polynomial times exp(c|z|)"))
    return out


def derive(spec: DmftSpec) -> DmftEquations:
    """The per-sample functions of `spec`; raises `SpecError` for a loss the DMFT cannot use
    (not twice differentiable in h) or a label rule that is not piecewise constant."""
    params = _symbols(spec)
    loss = stabilise(to_sympy(spec.loss, {"y": Y, "h": H, **params}))
    dloss = _tidy(sp.diff(loss, H))
    d2loss = _without_null_deltas(_tidy(sp.diff(dloss, H)))
    problems = []
    if d2loss.has(sp.DiracDelta):  # ℓ' jumps (a continuous ℓ' with a kink is fine)
        problems.append(spec.diagnostic(
            "the loss is not twice differentiable in h: ℓ'' has a delta where ℓ' jumps",
            spec.loss.pos if spec.loss_name is None else spec.pos,
            "the DMFT averages ℓ'' over trajectories; smooth the kink, e.g. the hinge "
            "max(0, 1 - y*h) as T * softplus((1 - y*h)/T) with a small temperature T"))
    label = to_sympy(spec.label, {"h": H, **params})
    if d2loss.has(Softplus, Sigmoid) is False and loss.has(sp.exp):
        d2loss = stabilise(d2loss)
    if not _piecewise_constant(label, H):
        problems.append(spec.diagnostic(
            "the label rule must be piecewise constant in h (a class, not a number)",
            spec.label.pos, "use sign(...) or Heaviside-type rules, e.g. sign(h) or "
            "sign(h**2 - 1) for an even rule"))
    target = to_sympy(spec.target, {"z": Z, **params}) if spec.target is not None else None
    problems += _domain_problems(spec, params, (loss, dloss, d2loss), label, target)
    if problems:
        raise SpecError(problems)
    label_bps = _jump_points(label, H)
    target_bps = None
    if target is not None:
        target_bps = _jump_points(label.subs(H, target), Z)
    affine = (not d2loss.has(H, Y)) and sp.simplify(sp.diff(dloss, Y, 2)) == 0
    if target is not None:
        affine = affine and sp.simplify(sp.diff(target, Z, 2)) == 0
    return DmftEquations(spec, params, loss, dloss, d2loss, label, target,
                         _clusters(spec, params), label_bps, target_bps, bool(affine))


def latex_symbol(name: str, spec: DmftSpec) -> str:
    """The LaTeX of a parameter: the spec's `latex` name, a Greek letter, or the name."""
    if name in spec.latex_names:
        return spec.latex_names[name]
    greek = {"alpha", "beta", "gamma", "delta", "Delta", "eta", "lambda", "rho", "tau", "kappa"}
    return "\\" + name if name in greek else sp.latex(sp.Symbol(name))

