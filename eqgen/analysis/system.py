"""A committee model at fixed parameters, seen as a dynamical system dx/dt = F(x) on the
independent coordinates of its evolving order parameters (`eqgen.analysis.coordinates`).

Everything the fixed-point and stability analyses need: F, its Jacobian (`jax.jacfwd`, exact
to round-off: the generated vector field is differentiable JAX), the full state and the
observables at a point, and the learning-rate parameter of the spec.

**Aligned units.** With ReLU units the closed forms contain √(C11 C22 − C12²) and
arcsin(C12/√(C11 C22)) for every pair of fields. For a unit paired with itself the block is
singular identically, and the generated code differentiates it exactly (eqgen.runtime.special).
For two *distinct* units with correlation ±1 (a student unit aligned with a teacher unit, as at
ReLU perfect learning) each of these terms has infinite slope, but in the combinations the ODEs
and the risk are made of the singular parts cancel: I3 ∝ √det · [C12/C11 − C23/√(C11 C33)] +
smooth, and the bracket vanishes at alignment too, so the field is ~ δ^{3/2} there — once
differentiable, not twice — and its Jacobian is what the derivative rules of
eqgen.runtime.special give (their singular parts, set to 0, contribute nothing in the limit).
`checked_jacobian` does not take that on trust: at aligned units of a module with such branch
points it compares one-sided difference quotients of F in every coordinate direction with the
Jacobian, and raises `NotDifferentiableError` naming the units if they do not approach it (a
kink that does not cancel: quotients ~ h^(-1/2)), as it does wherever the Jacobian is not
finite. `twice_differentiable` tells the analyses that need second derivatives (the risk's
asymptotic decay rate) to leave them out at such points.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from eqgen.analysis.coordinates import Coordinates, as_params, reduced_field
from eqgen.errors import NumericalError, SpecError, UsageError
from eqgen.runtime.special import has_branch_points
from eqgen.spec import ast
from eqgen.spec.committee import resolve

ALIGNED_TOL = 1e-10  # 1 − ρ² below this: two units count as aligned (correlation ±1)
ONE_SIDED_STEP = 1e-8  # relative step of the one-sided difference quotients
KINK_TOL = 1e-3  # their distance to J, × max(1, |J|), above which there is a kink


class NotDifferentiableError(NumericalError):
    """The vector field has no Jacobian at the point asked about (exit code 3); `reason` says
    why, `where` which point."""

    def __init__(self, reason: str, where: str = "at this point"):
        self.reason = reason
        super().__init__(
            f"the vector field is not differentiable {where}: {reason}; linear stability "
            "(eigenvalues, decay rates, η_max) is not defined there",
            hint="the field has a kink, not a linearisation, at such a point: study the "
            "approach to it by solving (eqgen solve, eqgen time-to), or use a smooth "
            "activation (e.g. erf)")


@contextlib.contextmanager
def linear_algebra(where: str) -> Iterator[None]:
    """Report a failure of numpy's linear algebra (e.g. an SVD that does not converge) as a
    `NumericalError` saying where, not as an internal error."""
    try:
        yield
    except np.linalg.LinAlgError as e:
        raise NumericalError(f"linear algebra failed {where}: {e}",
                             hint="try another start or other parameters") from None


def learning_rate_parameter(model: Any) -> str:
    """The declared parameter that the spec's `sgd learning_rate = ...` is made of.

    Raises `UsageError` when the learning rate is a number or uses several parameters (then
    there is no single knob to sweep or to solve for)."""
    names = sorted({n.id for n in ast.names_in(model.spec.learning_rate)}
                   & set(model.spec.param_names))
    if len(names) != 1:
        raise UsageError(f"{model.name}: the learning rate must be a single declared parameter "
                         "for this analysis (e.g. `sgd learning_rate = gamma`)")
    return names[0]


def _check_committee(model: Any) -> None:
    evolving = getattr(getattr(model, "module", None), "EVOLVING", ()) \
        if getattr(model, "family", None) == "committee" else ()
    if getattr(model, "family", None) == "committee" and not {"Q", "M"} <= set(evolving):
        raise UsageError(f"{model.name}: this analysis works on the full (Q, M) ODE; the "
                         "reduced systems are not supported")
    if getattr(model, "family", None) != "committee":
        raise UsageError(f"{model.name} is a {model.family} model: fixed points and linear "
                         "stability apply to committee (ODE) models; for DMFT models use "
                         "`eqgen time-to`")


@functools.cache
def _compiled(vector_field: Any, coords: Coordinates, constants: tuple) -> tuple:
    """F, dF/dx and d²F/dx² jitted, once per (generated field, coordinates, constant states)
    in a process; `constants` is a hashable (name, shape, bytes) tuple."""
    consts = {name: np.frombuffer(raw, dtype=np.float64).reshape(shape)
              for name, shape, raw in constants}
    F = reduced_field(vector_field, coords, consts)
    return jax.jit(F), jax.jit(jax.jacfwd(F)), jax.jit(jax.jacfwd(jax.jacfwd(F)))


@functools.cache
def _observable_derivatives(observables: Any, coords: Coordinates, constants: tuple,
                            name: str) -> tuple:
    """Gradient and Hessian of one observable on the independent coordinates, jitted once
    per (generated module, coordinates, constant states, observable) in a process."""
    consts = {k: jnp.asarray(np.frombuffer(raw, dtype=np.float64).reshape(shape))
              for k, shape, raw in constants}

    def f(x: jnp.ndarray, params: Any) -> jnp.ndarray:
        return observables({**consts, **coords.unflatten(x)}, params)[name]

    return jax.jit(jax.grad(f)), jax.jit(jax.hessian(f))


@dataclass
class CommitteeSystem:
    """dx/dt = F(x, params) for one committee model, sizes and constant states.

    **Arguments** (of `build`)
    - `model`: a committee `eqgen.Model`.
    - `params`: parameter overrides (as `--set`).
    - `init`: state overrides; the non-evolving states (P, a*, a when fixed) are taken from
      the resolved initial state and held constant.
    - `gradient_flow`: set the learning-rate parameter to 0 in the right-hand side, which drops
      the SGD variance term (docs/theory.md, The ODEs) and leaves population gradient flow.
    """

    model: Any
    resolved: Any
    coords: Coordinates
    constants: dict[str, np.ndarray]
    params: dict[str, float]
    rate_name: str | None

    @classmethod
    def build(cls, model: Any, params: Mapping[str, float] | None = None,
              init: Mapping[str, Any] | None = None, gradient_flow: bool = False,
              init_source: str = "init") -> CommitteeSystem:
        _check_committee(model)
        try:
            r = model.resolve(params, init, init_source)
        except SpecError:
            if init is not None:
                raise
            # the spec's own initial state does not fit these sizes (e.g. a 2×2 M at p = 3):
            # the analysis needs only the constant states, so take neutral ones (P = I,
            # a from the spec's second layer, a* = 1), as `Model.vector_field` does
            r = resolve(model.spec, params, use_spec_init=False)
        module = model.module
        coords = Coordinates.of(r.init, tuple(module.EVOLVING))
        consts = {k: np.asarray(v, dtype=float) for k, v in r.init.items()
                  if k not in module.EVOLVING}
        values = {k: float(v) for k, v in r.params.items()}
        try:
            rate = learning_rate_parameter(model)
        except UsageError:
            rate = None
        if gradient_flow:
            if rate is None:
                raise UsageError("--gradient-flow needs a learning rate that is one declared "
                                 "parameter (it is set to 0 in the right-hand side)")
            values[rate] = 0.0
        return cls(model, r, coords, consts, values, rate)

    # -- the field ------------------------------------------------------------------------------
    @property
    def _key(self) -> tuple:
        """The constant states as a hashable (name, shape, bytes) tuple."""
        return tuple((k, v.shape, np.ascontiguousarray(v, dtype=np.float64).tobytes())
                     for k, v in sorted(self.constants.items()))

    @property
    def _own(self) -> tuple:
        # params are an argument of the compiled functions: one compilation serves every
        # parameter value (the η_max search evaluates many)
        return _compiled(self.model.module.vector_field, self.coords, self._key)

    def with_params(self, **values: float) -> dict[str, jnp.ndarray]:
        """The parameters of this system with some values replaced, ready for F."""
        return as_params({**self.params, **values})

    def field(self, x: Any, params: Mapping[str, Any] | None = None) -> np.ndarray:
        """F(x): time derivatives of the independent coordinates."""
        p = params if params is not None else as_params(self.params)
        return np.asarray(self._own[0](jnp.asarray(x, dtype=jnp.float64), p))

    def jacobian(self, x: Any, params: Mapping[str, Any] | None = None) -> np.ndarray:
        """dF/dx at x (forward-mode automatic differentiation)."""
        p = params if params is not None else as_params(self.params)
        return np.asarray(self._own[1](jnp.asarray(x, dtype=jnp.float64), p))

    def checked_jacobian(self, x: Any, params: Mapping[str, Any] | None = None,
                         where: str = "at this point", one_sided: bool = True) -> np.ndarray:
        """dF/dx at x, or `NotDifferentiableError` where it is not finite or, at aligned units
        of a module with branch points (module docstring), where one-sided difference
        quotients do not approach it (skipped with `one_sided=False`, for repeated calls at
        one point)."""
        J = self.jacobian(x, params)
        if not np.all(np.isfinite(J)):
            raise NotDifferentiableError("its derivative is not finite", where)
        pairs = self.aligned_units(x) if has_branch_points(self.model.module) else []
        if pairs and one_sided and not self._quotients_approach(x, J, params):
            raise NotDifferentiableError(
                ", ".join(pairs) + f" (correlation ±1: 1 − ρ² ≤ {ALIGNED_TOL:g}), where the "
                "closed forms' square-root branch points do not cancel: one-sided difference "
                "quotients of the field do not approach a Jacobian", where)
        return J

    def _quotients_approach(self, x: Any, J: np.ndarray,
                            params: Mapping[str, Any] | None) -> bool:
        """Whether (F(x + s h e_k) − F(x))/(s h), s = ±1, h = ONE_SIDED_STEP (relative), is
        within KINK_TOL of J e_k for every coordinate k (a C¹ field with a δ^{3/2} remainder:
        error ~ √h = 1e-4 times a coefficient of order 1; an uncancelled √ kink: ~ h^(-1/2))."""
        x = np.asarray(x, dtype=float)
        f0 = self.field(x, params)
        tol = KINK_TOL * max(1.0, float(np.abs(J).max()))
        for k in range(x.size):
            step = ONE_SIDED_STEP * max(1.0, abs(x[k]))
            for sign in (1.0, -1.0):
                e = np.zeros_like(x)
                e[k] = sign * step
                quotient = (self.field(x + e, params) - f0) / (sign * step)
                if not np.abs(quotient - J[:, k]).max() <= tol:
                    return False
        return True

    def twice_differentiable(self, x: Any) -> bool:
        """False at aligned units of a module with branch points: the field is at best
        ~ δ^{3/2} there (module docstring), so second derivatives do not exist."""
        return not (has_branch_points(self.model.module) and self.aligned_units(x))

    def aligned_units(self, x: Any, tol: float = ALIGNED_TOL) -> list[str]:
        """Pairs of distinct units (students j, teachers r) whose pre-activations have
        correlation ±1 at x (1 − ρ² ≤ tol), as text: `student 0 and teacher 1`. Pairs of
        teacher units are left out: P is constant, so they do not make F non-smooth."""
        st = self.state(x)
        omega = np.block([[st["Q"], st["M"]], [st["M"].T, st["P"]]])
        p = st["Q"].shape[0]
        names = [f"student {j}" for j in range(p)] + [f"teacher {r}" for r in
                                                      range(omega.shape[0] - p)]
        out = []
        for a in range(p):
            for b in range(a + 1, omega.shape[0]):
                norm = omega[a, a] * omega[b, b]
                if norm > 0 and 1 - omega[a, b] ** 2 / norm <= tol:
                    out.append(f"{names[a]} and {names[b]} are aligned")
        return out

    def hessian(self, x: Any) -> np.ndarray:
        """d²F/dx² at x, shape (n, n, n): [i, j, k] = ∂²F_i/∂x_j∂x_k."""
        return np.asarray(self._own[2](jnp.asarray(x, dtype=jnp.float64),
                                       as_params(self.params)))

    # -- points ---------------------------------------------------------------------------------
    def point(self, state: Mapping[str, Any]) -> np.ndarray:
        """Independent coordinates of a state (evolving entries only are read)."""
        return np.asarray(self.coords.flatten(state))

    def state(self, x: Any) -> dict[str, np.ndarray]:
        """The full state (evolving and constant) at coordinates x, in the module's order."""
        ev = {k: np.asarray(v) for k, v in self.coords.unflatten(jnp.asarray(x)).items()}
        full = {**self.constants, **ev}
        return {k: full[k] for k in self.model.module.STATES if k in full}

    def observables(self, x: Any) -> dict[str, float]:
        st = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in self.state(x).items()}
        obs = self.model.module.observables(st, as_params(self.params))
        return {k: float(obs[k]) for k in self.model.module.OBSERVABLES}

    def observable_derivatives(self, x: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Gradient (n) and Hessian (n × n) of observable `name` at x."""
        grad, hess = _observable_derivatives(self.model.module.observables, self.coords,
                                             self._key, name)
        xj, p = jnp.asarray(x, dtype=jnp.float64), as_params(self.params)
        return np.asarray(grad(xj, p)), np.asarray(hess(xj, p))

    def omega_min_eigenvalue(self, x: Any) -> float:
        """Smallest eigenvalue of Ω = [[Q, M], [Mᵀ, P]]: a point with Ω not positive
        semi-definite is not a state any pair of networks can have."""
        st = self.state(x)
        omega = np.block([[st["Q"], st["M"]], [st["M"].T, st["P"]]])
        return float(np.linalg.eigvalsh(omega).min())
