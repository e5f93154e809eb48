"""Independent coordinates of a committee model's evolving order parameters.

The ODE state holds Q (p × p, symmetric), M (p × k) and, when the second layer is trained, a.
A fixed-point or stability analysis must work on the *independent* entries: treating Q[0,1] and
Q[1,0] as two unknowns would give the Newton system a redundant equation and the Jacobian a
spurious direction (perturbing Q[0,1] alone leaves the symmetric manifold, which the dynamics
never visits). We keep the upper triangle of Q (entries i ≤ j, each off-diagonal pair once) and
every entry of the other evolving states; this is a linear isomorphism of the space of
symmetric matrices, so the Jacobian's eigenvalues are those of the ODE itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from eqgen.runtime import ode  # noqa: F401  (float64 before any array exists)

SYMMETRIC = ("Q",)  # evolving states that are symmetric matrices


@dataclass(frozen=True)
class Coordinates:
    """The map between evolving states (a dict of arrays) and one flat vector of independent
    entries: the upper triangle of each symmetric state (row by row), then the other states'
    entries in C order, states in the module's `EVOLVING` order."""

    shapes: tuple[tuple[str, tuple[int, ...]], ...]

    @classmethod
    def of(cls, state: Mapping[str, Any], evolving: tuple[str, ...]) -> Coordinates:
        """Coordinates for the evolving states of `state` (only their shapes are used)."""
        return cls(tuple((name, tuple(np.shape(state[name]))) for name in evolving))

    def _entries(self, name: str, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        if name in SYMMETRIC:
            i, j = np.triu_indices(shape[0])
            return list(zip(i.tolist(), j.tolist(), strict=True))
        return [tuple(ix) for ix in np.ndindex(*shape)]

    @property
    def evolving(self) -> tuple[str, ...]:
        """Names of the evolving states, in order."""
        return tuple(name for name, _ in self.shapes)

    @property
    def size(self) -> int:
        return sum(len(self._entries(n, s)) for n, s in self.shapes)

    def names(self) -> list[str]:
        """Names of the coordinates, like the CSV columns: `Q[0,1]`, `M[1,0]`, `a[2]`."""
        out = []
        for name, shape in self.shapes:
            for ix in self._entries(name, shape):
                out.append(f"{name}[{','.join(map(str, ix))}]" if ix else name)
        return out

    def flatten(self, state: Mapping[str, Any]) -> jnp.ndarray:
        """The independent entries of the evolving states, as one float64 vector."""
        parts = []
        for name, shape in self.shapes:
            arr = jnp.asarray(state[name], dtype=jnp.float64)
            if name in SYMMETRIC:
                i, j = np.triu_indices(shape[0])
                parts.append(arr[i, j])
            else:
                parts.append(arr.reshape(-1))
        return jnp.concatenate(parts) if parts else jnp.zeros(0)

    def unflatten(self, x: jnp.ndarray) -> dict[str, jnp.ndarray]:
        """The evolving states from a flat vector (symmetric states mirrored)."""
        out: dict[str, jnp.ndarray] = {}
        start = 0
        for name, shape in self.shapes:
            if name in SYMMETRIC:
                i, j = np.triu_indices(shape[0])
                n = i.size
                v = x[start:start + n]
                out[name] = jnp.zeros(shape, dtype=x.dtype).at[i, j].set(v).at[j, i].set(v)
            else:
                n = int(np.prod(shape, dtype=int))
                out[name] = x[start:start + n].reshape(shape)
            start += n
        return out


def reduced_field(vector_field: Callable, coords: Coordinates,
                  constants: Mapping[str, Any]) -> Callable[[jnp.ndarray, Any], jnp.ndarray]:
    """F(x, params): the time derivative of the independent coordinates at coordinates x, with
    the non-evolving states (P, a*, a when fixed) held at `constants`. `params` is a dict of
    float64 scalars, an argument (not a closure) so that one compilation serves every value."""
    consts = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in constants.items()}

    def F(x: jnp.ndarray, params: Any) -> jnp.ndarray:
        d = vector_field(0.0, {**consts, **coords.unflatten(x)}, params)
        return coords.flatten(d)

    return F


def as_params(params: Mapping[str, float]) -> dict[str, jnp.ndarray]:
    """Parameters as float64 scalars for a generated module."""
    return {k: jnp.asarray(float(v), dtype=jnp.float64) for k, v in params.items()}
