"""Assemble broadcast covariance entries into (..., n, n) matrices, as quadrature needs them."""

from __future__ import annotations

import jax.numpy as jnp


def covariance_matrix(*entries: jnp.ndarray, dim: int) -> jnp.ndarray:
    """Stack upper-triangle entries C11, C12, ..., Cnn (row-major, broadcastable) into a
    symmetric matrix of shape (*broadcast_shape, dim, dim)."""
    entries = jnp.broadcast_arrays(*[jnp.asarray(e) for e in entries])
    shape = entries[0].shape
    idx = {}
    n = 0
    for i in range(dim):
        for j in range(i, dim):
            idx[i, j] = n
            n += 1
    if n != len(entries):
        raise ValueError(f"{dim} fields need {n} covariance entries, got {len(entries)}")
    rows = [jnp.stack([entries[idx[min(i, j), max(i, j)]] for j in range(dim)], axis=-1)
            for i in range(dim)]
    return jnp.stack(rows, axis=-2).reshape(*shape, dim, dim)
