"""Derivation of the order-parameter ODEs of online SGD in two-layer networks (docs/theory.md).

The result, `CommitteeEquations`, is symbolic and in index form: it says which Gaussian
integrals (I2, I3, I4, J2) appear, between which classes of units, with their closed forms (or a
statement that they are integrated numerically), and how the ODE combines them. It is valid for
every p and k; the code generator turns it into vectorised JAX.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from eqgen.errors import SpecError
from eqgen.spec.ast import Pos
from eqgen.spec.committee import CommitteeSpec
from eqgen.symbolic import convert
from eqgen.symbolic.domain import real_singularity
from eqgen.symbolic.expectations import expectation
from eqgen.theories.checks import (  # noqa: F401  (re-exported)
    JOINT_MAX_NODES,
    JOINT_ORDER,
    check_joint_size,
    joint_nodes,
    regime_of,
)
from eqgen.theories.regimes import RegimeInfo

Z = convert.Z

# Quadrature orders (per dimension) for integrals without a closed form.
QUADRATURE_ORDER = {1: 128, 2: 96, 3: 40, 4: 28}
# Integrals of this many fields use the nested product rule
# (`eqgen.runtime.quadrature.gaussian_product_expectation`), with the fields nested in this
# order, outermost first: the two φ fields (ν_c, ν_e) outside the two σ' fields. Measured on
# the covariances of docs/numerics.md, order 28 nested this way is more accurate than the
# symmetric-root rule at order 20 (eqgen's rule before) at large variances and for kinks, less
# accurate on nearly singular covariances, 10 times better in the worst case, and about 12 times
# faster (docs/numerics.md). Fewer fields keep the symmetric rule: cheap enough, and more
# accurate there.
PRODUCT_RULE_NESTING = {4: (2, 3, 0, 1)}
# Discontinuous factors (the derivative of ReLU, sign, ...) make Gauss–Hermite quadrature
# inaccurate (errors of 1–30 % measured for the ReLU I4, not cured by raising the order) and a
# discontinuous function of the overlaps. Continuous kinks (a ReLU teacher) converge, slowly.
NON_SMOOTH = (sp.Heaviside, sp.sign, sp.DiracDelta)


@dataclass(frozen=True)
class UnitClass:
    """Units sharing one activation: `student`, `teacher`, or `units` when both coincide."""

    name: str
    activation: sp.Expr
    members: tuple[str, ...]


@dataclass(frozen=True)
class Integral:
    """One Gaussian integral family, e.g. I3 with the third unit in class `teacher`."""

    name: str  # python identifier of the generated function, e.g. "i3_teacher"
    kind: str  # I2 | I3 | I4 | J2
    classes: tuple[str, ...]
    factors: tuple[sp.Expr, ...]  # one function of z per field
    args: tuple[sp.Symbol, ...]  # covariance entries C11, C12, ..., upper triangle, row-major
    expr: sp.Expr | None  # closed form in `args`, or None: numerical
    method: str
    order: int | None = None  # Gauss–Hermite order per dimension when numerical
    # I3 by Stein's lemma: C12 · parts[0] + C23 · parts[1], two 2-D integrals over (h1, h3)
    parts: tuple[Integral, Integral] | None = None

    @property
    def dim(self) -> int:
        return len(self.factors)

    @property
    def exact(self) -> bool:
        return self.expr is not None or (
            self.parts is not None and all(part.exact for part in self.parts))


@dataclass(frozen=True)
class CommitteeEquations:
    """The derived ODE system of a committee model (symbolic, index form)."""

    spec: CommitteeSpec
    regime: RegimeInfo
    sigma: sp.Expr
    sigma_prime: sp.Expr
    sigma_second: sp.Expr
    g_prime: sp.Expr
    g: sp.Expr
    classes: tuple[UnitClass, ...]
    square_loss: bool
    loss: sp.Expr  # ℓ(y, ŷ)
    error_signal: sp.Expr  # 𝓔 = −∂ℓ/∂ŷ
    integrals: tuple[Integral, ...]
    trained: bool
    scalars: dict[str, sp.Expr]  # c_p, c_k, gamma, batch, Delta, rate as expressions of params
    param_symbols: dict[str, sp.Symbol]

    def integral(self, name: str) -> Integral:
        return next(i for i in self.integrals if i.name == name)

    def integrals_of(self, kind: str) -> list[Integral]:
        return [i for i in self.integrals if i.kind == kind]


def cov_symbols(n: int) -> tuple[sp.Matrix, tuple[sp.Symbol, ...]]:
    """A symmetric symbolic covariance of n fields and its upper-triangle entries C11, C12, ..."""
    entries: dict[tuple[int, int], sp.Symbol] = {}
    for i in range(n):
        for j in range(i, n):
            entries[i, j] = sp.Symbol(f"C{i + 1}{j + 1}", positive=True) if i == j else \
                sp.Symbol(f"C{i + 1}{j + 1}", real=True)
    mat = sp.Matrix(n, n, lambda i, j: entries[min(i, j), max(i, j)])
    return mat, tuple(entries[k] for k in sorted(entries))


# Fields that coincide when the index form meets equal unit indices (j = l, c = e, c = j, ...).
COINCIDENCES = {
    "I2": [(0, 1)],
    "J2": [(0, 1)],
    "I3": [(0, 1), (0, 2), (1, 2)],
    "I4": [(0, 1), (2, 3), (0, 2), (0, 3), (1, 2), (1, 3), (0, 1, 2, 3)],
}


def finite_at_coincidences(kind: str, expr: sp.Expr, args: tuple[sp.Symbol, ...], n: int
                           ) -> bool:
    """Whether a closed form stays finite when fields coincide (singular covariance).

    Formulas obtained by conditioning or tilting can divide by a determinant that vanishes
    when two fields are the same unit; such a formula cannot serve the index form as is.
    """
    import scipy.special

    # evaluate as the generated code does: arcsin arguments clipped to [-1, 1] and square
    # roots of round-off negatives clamped at 0 (eqgen.codegen.printer)
    safe = {"erf": scipy.special.erf, "asin": lambda x: np.arcsin(np.clip(x, -1.0, 1.0)),
            "sqrt": lambda x: np.sqrt(np.maximum(x, 0.0))}
    fn = sp.lambdify(args, expr, modules=[safe, "numpy"])
    rng = np.random.default_rng(0)
    for group in COINCIDENCES[kind]:
        for _ in range(3):
            vecs = rng.standard_normal((n, n + 2))
            if len(group) == 4:  # 1 = 2 and 3 = 4
                vecs[1], vecs[3] = vecs[0], vecs[2]
            else:
                vecs[group[1]] = vecs[group[0]]
            C = vecs @ vecs.T / (n + 2)
            vals = [C[i, j] for i in range(n) for j in range(i, n)]
            with np.errstate(all="ignore"):
                try:
                    v = complex(fn(*vals))
                except (ZeroDivisionError, ValueError, OverflowError):
                    return False
            if not np.isfinite(v.real) or abs(v.imag) > 1e-9 * max(1.0, abs(v.real)):
                return False
    return True


def _expect(name: str, kind: str, classes: tuple[str, ...], factors: tuple[sp.Expr, ...]
            ) -> Integral:
    cov, args = cov_symbols(len(factors))
    res = expectation(list(factors), cov, Z)
    expr, method = res.expr, res.method
    if expr is not None and not method.startswith("closed form") and not \
            finite_at_coincidences(kind, expr, args, len(factors)):
        expr = None
        method = ("numerical (Gauss-Hermite; the exact form by " + method +
                  " is singular when units coincide)")
    order = None if expr is not None else QUADRATURE_ORDER[len(factors)]
    return Integral(name, kind, classes, factors, args, expr, method, order)


def _check_differentiable(spec: CommitteeSpec, sigma: sp.Expr) -> None:
    d1 = sp.diff(sigma, Z)
    if d1.has(sp.DiracDelta) or d1.has(sp.Derivative) or d1.has(sp.Subs):
        raise SpecError(spec.diagnostic(
            "the student activation is not differentiable, but SGD needs σ'",
            spec.student.activation.pos,
            "use a differentiable activation (erf, tanh, relu, polynomials, ...)"))


# An activation whose log grows faster than GROWTH_LIMIT·z² has Gaussian expectations that
# diverge once a field's variance reaches about 1/(2·GROWTH_LIMIT) = 10: quadrature would then
# return a finite, wrong number. Probed at |z| = GROWTH_PROBE.
GROWTH_LIMIT = 0.05
GROWTH_PROBE = 32.0


def _check_growth(spec: CommitteeSpec, f: sp.Expr, who: str, pos: Pos) -> None:
    """Refuse an activation that grows like exp(c z²) (c ≥ GROWTH_LIMIT) or faster."""
    try:
        fn = sp.lambdify(Z, f, modules=["scipy", "numpy"])
        with np.errstate(all="ignore"):
            values = [abs(complex(fn(z))) for z in (-GROWTH_PROBE, GROWTH_PROBE)]
    except Exception:  # noqa: BLE001 - a probe only: functions numpy cannot evaluate pass
        return
    log_size = max(np.log1p(v) if np.isfinite(v) else np.inf for v in values)
    if log_size > GROWTH_LIMIT * GROWTH_PROBE**2:
        raise SpecError(spec.diagnostic(
            f"the {who} activation grows too fast: |f(±{GROWTH_PROBE:g})| is about "
            f"e^{log_size:.0f}" if np.isfinite(log_size) else
            f"the {who} activation overflows at z = ±{GROWTH_PROBE:g}", pos,
            "its Gaussian expectations diverge for large overlaps (like E[exp(c z²)] for "
            "variance ≥ 1/(2c)); use an activation that grows at most like exp(|z|) or a "
            "polynomial"))


def _undefined_constant(f: sp.Expr) -> str | None:
    """How `f` contains an infinite or undefined constant (a division by zero written in the
    spec, such as z/0, becomes sympy's complex infinity), or None."""
    if f.has(sp.zoo) or f.has(sp.oo) or f.has(sp.S.NegativeInfinity):
        return "contains an infinite constant (a division by zero such as z/0?)"
    if f.has(sp.nan):
        return "contains an undefined constant (such as 0/0)"
    return None


def _check_depends(spec: CommitteeSpec, f: sp.Expr, who: str, pos: Pos) -> None:
    """Refuse an activation that does not depend on z once simplified (0*z, z - z): the
    literal test of the spec checker sees a z in it."""
    if Z not in f.free_symbols:
        raise SpecError(spec.diagnostic(
            f"the {who} activation does not depend on z: it simplifies to {f}", pos,
            "write the activation as a function of z, e.g. erf(z / sqrt(2))"))


def _check_finite(spec: CommitteeSpec, f: sp.Expr, who: str, pos: Pos,
                  derivative: bool = False) -> None:
    """Refuse an activation (or, with `derivative`, the student's σ') that is not a finite real
    number at some real z: a pole, a log singularity, a root of a negative number, an infinite
    constant."""
    reason = _undefined_constant(f) or real_singularity(f, Z)
    if reason is None:
        return
    if derivative:
        raise SpecError(spec.diagnostic(
            f"the derivative of the student activation is singular: σ'(z) {reason}", pos,
            "SGD needs σ' finite at every real z (E[σ'(λ)²] diverges otherwise): use a smooth "
            "activation such as erf, tanh, softplus or a polynomial"))
    raise SpecError(spec.diagnostic(
        f"the {who} activation is singular: it {reason}", pos,
        "an activation must be a finite real number at every real z, since its Gaussian "
        "expectations run over the whole line: use e.g. erf, tanh, relu or a polynomial"))


def _check_finite_loss(spec: CommitteeSpec, loss: sp.Expr, error_signal: sp.Expr) -> None:
    """Refuse a loss ℓ(y, ŷ) that, or whose error signal −∂ℓ/∂ŷ, is not a finite real number
    at some real ŷ for labels y of either sign or 0 (the teacher's outputs cover the line)."""
    cases = [{convert.Y: sp.Integer(v)} for v in (-1, 0, 1)]
    for expr, what in ((loss, "the loss"), (error_signal, "the error signal −∂ℓ/∂ŷ")):
        reason = _undefined_constant(expr) or real_singularity(expr, convert.YHAT, cases,
                                                               named=(convert.Y,))
        if reason is not None:
            raise SpecError(spec.diagnostic(
                f"{what} is singular: it {reason}", spec.loss.pos,
                "the ODEs average the loss over Gaussian outputs on the whole real line: use "
                "a loss that is smooth and finite for every ŷ, e.g. (y - yhat)**2 / 2"))


def _check_loss_shape(spec: CommitteeSpec, error_signal: sp.Expr) -> None:
    """Refuse a loss whose error signal −∂ℓ/∂ŷ vanishes identically (the loss does not depend
    on ŷ once simplified: `0*yhat + y`), or has a step (`abs(y - yhat)` gives sign(y − ŷ)).
    A general loss is averaged by Gauss–Hermite quadrature over the joint fields, which is off
    by percents on a step (measured: Q 0.999 against 0.87 ± 0.007 simulated for abs at
    p = k = 1), and the result would look plausible."""
    if sp.simplify(error_signal) == 0:
        raise SpecError(spec.diagnostic(
            "the loss does not depend on the prediction 'yhat': its derivative in yhat "
            "simplifies to 0", spec.loss.pos,
            "SGD follows −∂ℓ/∂ŷ; write a loss of y and yhat such as (y - yhat)**2 / 2"))
    if error_signal.has(*NON_SMOOTH):
        raise SpecError(spec.diagnostic(
            f"the loss has a kink: its error signal −∂ℓ/∂ŷ = {error_signal} has a step, and "
            "a non-square loss is averaged by Gauss-Hermite quadrature, which is off by "
            "percents on a step, so eqgen refuses it", spec.loss.pos,
            "use a smooth loss, e.g. log(cosh(y - yhat)) instead of abs(y - yhat), or the "
            "square loss"))


def student_activation(spec: CommitteeSpec) -> sp.Expr:
    """σ(z) of the student, checked to be finite on the real line and to have a usable
    derivative."""
    sigma = convert.activation(spec.student.activation)
    pos = spec.student.activation.pos
    _check_depends(spec, sigma, "student", pos)
    _check_finite(spec, sigma, "student", pos)
    _check_differentiable(spec, sigma)
    _check_finite(spec, sp.diff(sigma, Z), "student", pos, derivative=True)
    return sigma


def _i3(name: str, cls: str, sigma_prime: sp.Expr, phi: sp.Expr) -> Integral:
    """I3 = E[σ'(h1) h2 φ(h3)]: exact if the engine finds it; otherwise, for smooth σ and φ,
    Stein's lemma C12 E[σ''(h1) φ(h3)] + C23 E[σ'(h1) φ'(h3)] (two 2-D integrals instead of
    one 3-D quadrature); otherwise 3-D quadrature."""
    full = _expect(name, "I3", (cls,), (sigma_prime, Z, phi))
    if full.exact:
        return full
    sigma_second, dphi = sp.diff(sigma_prime, Z), sp.diff(phi, Z)
    if sigma_second.has(*NON_SMOOTH) or dphi.has(*NON_SMOOTH):
        return full
    curvature = _expect(f"{name}_stein_curvature", "I2", (cls,), (sigma_second, phi))
    slope = _expect(f"{name}_stein_slope", "I2", (cls,), (sigma_prime, dphi))
    methods = sorted({curvature.method, slope.method})
    return Integral(name, "I3", (cls,), full.factors, full.args, None,
                    "Stein reduction to two 2-D integrals: " + "; ".join(methods),
                    parts=(curvature, slope))


def _refuse_kinked_quadrature(spec: CommitteeSpec, integrals: list[Integral]) -> None:
    """No plausible-looking wrong curves: a kinked integrand without a closed form is refused."""
    pieces = [part for it in integrals for part in (it.parts or (it,))]
    bad = [it for it in pieces if not it.exact
           and any(f.has(*NON_SMOOTH) for f in it.factors)]
    if not bad:
        return
    names = ", ".join(f"{it.kind} ({', '.join(it.classes) or 'student'})" for it in bad)
    raise SpecError(spec.diagnostic(
        f"no closed form is known for {names}, and "
        + ("its integrand has a jump" if len(bad) == 1 else "their integrands have jumps")
        + " (a step such as the derivative of ReLU, or sign): Gauss-Hermite quadrature is off "
        "by up to 30 % there, so eqgen refuses " + ("it" if len(bad) == 1 else "them"),
        spec.student.activation.pos,
        "use `regime gradient_flow` (no I4 term), a smooth activation (erf, tanh, "
        "softplus, polynomials), or a teacher eqgen has exact forms for"))


def derive(spec: CommitteeSpec) -> CommitteeEquations:
    """Derive the ODEs of docs/theory.md, The ODEs for `spec` (square loss: index form with closed
    forms)."""
    regime = regime_of(spec)
    sigma = student_activation(spec)
    g = convert.activation(spec.teacher.activation)
    _check_depends(spec, g, "teacher", spec.teacher.activation.pos)
    _check_finite(spec, g, "teacher", spec.teacher.activation.pos)
    _check_growth(spec, sigma, "student", spec.student.activation.pos)
    _check_growth(spec, g, "teacher", spec.teacher.activation.pos)
    sigma_prime = sp.diff(sigma, Z)
    same = sp.simplify(sigma - g) == 0
    if same:
        classes = (UnitClass("units", sigma, ("student", "teacher")),)
    else:
        classes = (UnitClass("student", sigma, ("student",)),
                   UnitClass("teacher", g, ("teacher",)))
    loss = convert.loss(spec.loss)
    y, yhat = convert.Y, convert.YHAT
    error_signal = sp.simplify(-sp.diff(loss, yhat))
    if spec.loss is not None:
        _check_finite_loss(spec, loss, error_signal)
        _check_loss_shape(spec, error_signal)
    square = sp.expand(error_signal - (y - yhat)) == 0

    integrals: list[Integral] = []
    if square:
        names = [c.name for c in classes]
        act = {c.name: c.activation for c in classes}
        for i, a in enumerate(names):
            for b in names[i:]:
                integrals.append(_expect(f"i2_{a}_{b}", "I2", (a, b), (act[a], act[b])))
        for c in names:
            integrals.append(_i3(f"i3_{c}", c, sigma_prime, act[c]))
        integrals.append(_expect("j2", "J2", (), (sigma_prime, sigma_prime)))
        if regime.variance:
            for i, a in enumerate(names):
                for b in names[i:]:
                    integrals.append(_expect(f"i4_{a}_{b}", "I4", (a, b),
                                             (sigma_prime, sigma_prime, act[a], act[b])))

    _refuse_kinked_quadrature(spec, integrals)
    syms = {p.name: sp.Symbol(p.name, real=True) for p in spec.params}
    scalars = {
        "c_p": convert.to_sympy(spec.student.readout, syms),
        "c_k": convert.to_sympy(spec.teacher.readout, syms),
        "gamma": convert.to_sympy(spec.learning_rate, syms),
        "batch": convert.to_sympy(spec.batch, syms),
        "Delta": convert.to_sympy(spec.teacher.noise, syms),
        "rate": convert.to_sympy(spec.student.rate, syms) if spec.student.rate is not None
        else sp.Integer(1),
    }
    return CommitteeEquations(
        spec=spec, regime=regime, sigma=sigma, sigma_prime=sigma_prime,
        sigma_second=sp.diff(sigma_prime, Z), g_prime=sp.diff(g, Z), g=g,
        classes=classes, square_loss=square, loss=loss, error_signal=error_signal,
        integrals=tuple(integrals), trained=spec.student.trained, scalars=scalars,
        param_symbols=syms)
