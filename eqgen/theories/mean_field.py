"""The mean-field (large-p) reduction of the committee ODEs (docs/theory.md, Regimes).

With P = I in high dimension the student weights stay close to the teacher subspace, apart from
one private direction each: Q ≈ MMᵀ + diag(q⊥). The reduced state is M (p×k) and q⊥ (p), O(pk)
numbers instead of O(p²), and every quantity of the full ODE is evaluated on that manifold.

**Derivation** (gradient flow, square loss; u_j = −c_p a_j, u_r = c_k a*_r). Stein's lemma makes
I3 linear in the covariances of its linear field h2:

    I3(1, 2, 3) = C12 · A(C11, C13, C33) + C23 · B(C11, C13, C33),
    A = E[σ''(h1) φ(h3)] = ∂I3/∂C12,     B = E[σ'(h1) φ'(h3)] = ∂I3/∂C23.

- dM_jr/dt = a_j Σ_c u_c I3(j, r, c) is the full expression with Q = MMᵀ + diag(q⊥):
  a_j [ M_jr Σ_c u_c A_jc + Σ_l u_l B_jl M_lr + u_r B_jr ]   (c over students l and teachers r).
- q⊥_j = Q_jj − Σ_r M_jr² (P = I), so dq⊥_j/dt = dQ_jj/dt − 2 Σ_r M_jr dM_jr/dt
  = 2 a_j Σ_c u_c E[σ'(λ_j) λ⊥_j φ_c(h_c)] with λ⊥_j = λ_j − Σ_r M_jr ν_r, whose covariances
  are q⊥_j with λ_j, Q_jl − (MMᵀ)_jl = 0 with λ_l (l ≠ j) on the manifold, and 0 with the teacher
  fields. Hence dq⊥_j/dt = 2 a_j q⊥_j [ Σ_c u_c A_jc + u_j B_jj ].

On the manifold these are exactly the full right-hand sides of M and diag(Q). **Neglected**: the
off-teacher student–student overlaps Q⊥_jl = Q_jl − (MMᵀ)_jl, j ≠ l, are held at 0. The full ODE
creates them at rate dQ⊥_jl/dt = −c_p a_j a_l (q⊥_j + q⊥_l) E[σ'(λ_j) σ'(λ_l)] = O(c_p), and
they act back on unit j through p terms each weighted by u_l = O(c_p): with c_p = 1/p the
reduced trajectory is off by O(t/p). Random initial weights at dimension d add Q⊥_jl = O(d^{−1/2})
entries (and P − I = O(d^{−1/2}) for a Gaussian teacher), which the reduction drops too. Only the
gradient-flow regime is reduced: the SGD variance term (γ c_p / B) a_j a_l [...] is O(γ c_p / B),
the order mean-field scaling (c_p = 1/p, γ c_p → 0) sends to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from eqgen.errors import SpecError
from eqgen.spec.committee import CommitteeSpec
from eqgen.theories.committee import CommitteeEquations, Integral, derive
from eqgen.theories.stein import LinearI3, split_i3

REDUCTIONS = ("mean_field",)


@dataclass(frozen=True)
class MeanFieldEquations:
    """The reduced system: the full equations (for the integrals and activations) plus the
    linear split of each I3."""

    full: CommitteeEquations
    i3: tuple[LinearI3, ...]

    @property
    def spec(self) -> CommitteeSpec:
        return self.full.spec

    @property
    def integrals(self) -> tuple[Integral, ...]:
        """The integrals the reduced module evaluates: I2 (risk) and I3."""
        return (*self.full.integrals_of("I2"), *(lin.integral for lin in self.i3))

    def i3_of(self, cls: str) -> LinearI3:
        return next(x for x in self.i3 if x.cls == cls)


def check_reducible(spec: CommitteeSpec, eq: CommitteeEquations) -> None:
    """Refuse, with the reason, a model the mean-field reduction does not describe."""
    pos = spec.regime.pos if spec.regime.pos.line else spec.pos
    problems = []
    if eq.regime.name != "gradient_flow":
        problems.append(spec.diagnostic(
            f"the mean-field reduction holds in gradient flow, but this model's regime is "
            f"{eq.regime.name}: its SGD variance term (γ c_p / B) would be dropped",
            pos, "write `regime mean_field` (gradient flow, reduced) or `regime gradient_flow`, "
            "or solve the full ODE"))
    if not eq.square_loss:
        problems.append(spec.diagnostic(
            "the mean-field reduction needs the square loss (index form of the ODE)",
            spec.loss.pos if spec.loss is not None else pos, "use `loss square`"))
    if eq.trained:
        problems.append(spec.diagnostic(
            "the mean-field reduction is derived for a fixed second layer", spec.student.pos,
            "use second_layer = fixed(...), or solve the full ODE"))
    if problems:
        raise SpecError(problems)


def derive_mean_field(spec: CommitteeSpec, full: CommitteeEquations | None = None
                      ) -> MeanFieldEquations:
    """The reduced equations of `spec` (see the module docstring); `SpecError` if it does not
    apply."""
    eq = full if full is not None else derive(spec)
    check_reducible(spec, eq)
    parts = []
    for it in eq.integrals_of("I3"):
        lin = split_i3(it)
        if lin is None:
            raise SpecError(spec.diagnostic(
                f"no exact form of {it.kind} ({', '.join(it.classes)}) is known, and the "
                "mean-field reduction needs its split by Stein's lemma", spec.student.pos,
                "use smooth activations or ones with closed forms (erf, relu, polynomials)"))
        parts.append(lin)
    return MeanFieldEquations(eq, tuple(parts))
