"""A committee model at fixed parameters, seen as a dynamical system dx/dt = F(x) on the
independent coordinates of its evolving order parameters (`eqgen.analysis.coordinates`).

Everything the fixed-point and stability analyses need: F, its Jacobian (`jax.jacfwd`, exact
to round-off: the generated vector field is differentiable JAX), the full state and the
observables at a point, and the learning-rate parameter of the spec.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from eqgen.analysis.coordinates import Coordinates, as_params, reduced_field
from eqgen.errors import SpecError, UsageError
from eqgen.spec import ast
from eqgen.spec.committee import resolve


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


@dataclass
class CommitteeSystem:
    """dx/dt = F(x, params) for one committee model, sizes and constant states.

    **Arguments** (of `build`)
    - `model`: a committee `eqgen.Model`.
    - `params`: parameter overrides (as `--set`).
    - `init`: state overrides; the non-evolving states (P, a*, a when fixed) are taken from
      the resolved initial state and held constant.
    - `gradient_flow`: set the learning-rate parameter to 0 in the right-hand side, which drops
      the SGD variance term (THEORY §1.2) and leaves population gradient flow.
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
    def _own(self) -> tuple:
        # params are an argument of the compiled functions: one compilation serves every
        # parameter value (the η_max search evaluates many)
        key = tuple((k, v.shape, np.ascontiguousarray(v, dtype=np.float64).tobytes())
                    for k, v in sorted(self.constants.items()))
        return _compiled(self.model.module.vector_field, self.coords, key)

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

    def omega_min_eigenvalue(self, x: Any) -> float:
        """Smallest eigenvalue of Ω = [[Q, M], [Mᵀ, P]]: a point with Ω not positive
        semi-definite is not a state any pair of networks can have."""
        st = self.state(x)
        omega = np.block([[st["Q"], st["M"]], [st["M"].T, st["P"]]])
        return float(np.linalg.eigvalsh(omega).min())
