"""Numerical Gaussian expectations in JAX: tensor-product Gauss–Hermite quadrature.

Used for the integrals the symbolic engine cannot close (generic activations, ReLU I4, non-square
losses): `E[F(h)]` for `h ~ N(0, C)` is approximated by `Σ_n w_n F(S x_n)`, where `(x_n, w_n)` are
the tensor-product probabilists' Gauss–Hermite nodes and weights for `N(0, I_dim)` and `S` is the
symmetric square root of `C`.

Why a symmetric square root (via `eigh`, eigenvalues clipped at 0) and not Cholesky: covariances of
order parameters are often singular (e.g. `Q = M = P` when the student has learnt the teacher, or
two copies of the same field), where Cholesky fails and the eigen-decomposition does not.
Caveat: the derivative of `eigh` is undefined at repeated eigenvalues (e.g. `C = I`), so do not
differentiate through this function with respect to `cov`.

**Accuracy** (measured in float64): an `order`-point rule per dimension is *exact* for
polynomials of degree ≤ `2·order − 1` in the fields. Smooth (entire) integrands converge
geometrically, at a rate set by the variances: for `E[erf(h1/√2) erf(h2/√2)]` with variances
(0.1, 0.75) the error is 1e-4 at order 5, 2e-7 at order 10, 2e-13 at order 20 and round-off at
order 30; with variances (1.9, 5.7) it is 2e-3 at order 10, 4e-5 at 20, 7e-7 at 30, 1e-8 at 40.
Kinks and jumps (ReLU, Heaviside) converge only slowly and erratically: `E[relu(h1) relu(h2)]`
has errors of 1e-5 to 1e-3 for orders 10 to 40. The cost is `order**dim` evaluations per
covariance, so use modest orders in 4-D (order 20 → 160 000 nodes) and the `chunk` option to
bound memory.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial.hermite_e import hermegauss

__all__ = ["gauss_hermite_nodes", "gaussian_expectation", "gaussian_product_expectation",
           "psd_cholesky", "symmetric_sqrt"]


@functools.lru_cache(maxsize=64)
def _nodes(dim: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = hermegauss(order)
    w = w / w.sum()  # the weight function exp(-x²/2) integrates to √(2π): normalise to N(0, 1)
    grids = np.meshgrid(*([x] * dim), indexing="ij")
    wgrids = np.meshgrid(*([w] * dim), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=-1)
    weights = np.prod(np.stack([g.ravel() for g in wgrids], axis=-1), axis=-1)
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def gauss_hermite_nodes(dim: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor-product Gauss–Hermite rule for the standard normal `N(0, I_dim)`.

    **Arguments**
    - `dim`: number of dimensions (≥ 1).
    - `order`: number of nodes per dimension (≥ 1).

    **Returns**
    `(nodes, weights)`: float64 arrays of shapes `(order**dim, dim)` and `(order**dim,)`;
    the weights are positive and sum to 1, so `Σ w f(x)` approximates `E[f(x)]`. The arrays
    are cached and read-only.
    """
    if dim < 1 or order < 1:
        raise ValueError(f"need dim >= 1 and order >= 1, got dim={dim}, order={order}")
    return _nodes(int(dim), int(order))


def symmetric_sqrt(cov: jax.Array) -> jax.Array:
    """Symmetric PSD square root `S` (`S S = cov`) of a batch of covariances `(..., d, d)`.

    Negative eigenvalues (round-off on singular matrices) are clipped at 0.
    """
    sym = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    evals, evecs = jnp.linalg.eigh(sym)
    root_evals = jnp.sqrt(jnp.clip(evals, 0.0, None))
    return (evecs * root_evals[..., None, :]) @ jnp.swapaxes(evecs, -1, -2)


def gaussian_expectation(
    integrand: Callable[[jax.Array], jax.Array],
    cov: jax.Array,
    order: int = 20,
    chunk: int | None = None,
) -> jax.Array:
    """`E[integrand(h)]` for `h ~ N(0, cov)`, by tensor Gauss–Hermite quadrature.

    **Arguments**
    - `integrand`: maps `h` of shape `(..., n_nodes, dim)` to values of shape `(..., n_nodes)`
      (vectorised over nodes and over the batch dimensions of `cov`).
    - `cov`: covariance(s), shape `(..., dim, dim)`, symmetric positive *semi*-definite.
    - `order`: nodes per dimension; see the module docstring for the error vs order.
    - `chunk`: if given, evaluate at most `chunk` nodes at a time (a `lax.scan` over blocks),
      bounding memory to `(..., chunk, dim)` for large `order**dim`.

    **Returns**
    The expectations, shape `(...)` (the batch shape of `cov`), in the dtype of `cov`.
    Works under `jax.jit` (`order` and `chunk` must be static).
    """
    cov = jnp.asarray(cov)
    if not jnp.issubdtype(cov.dtype, jnp.floating):
        cov = cov.astype(jnp.result_type(float))
    dim = cov.shape[-1]
    nodes_np, weights_np = gauss_hermite_nodes(dim, order)
    nodes = jnp.asarray(nodes_np, dtype=cov.dtype)
    weights = jnp.asarray(weights_np, dtype=cov.dtype)
    root = symmetric_sqrt(cov)

    def block(x: jax.Array, w: jax.Array) -> jax.Array:
        h = jnp.einsum("nd,...ed->...ne", x, root)  # h_n = S x_n
        return jnp.sum(w * integrand(h), axis=-1)

    n = nodes.shape[0]
    if chunk is None or chunk >= n:
        return block(nodes, weights)
    n_blocks = -(-n // chunk)
    pad = n_blocks * chunk - n
    # padding: copies of a real node with zero weight, so the integrand is never fed junk
    nodes = jnp.concatenate([nodes, jnp.broadcast_to(nodes[:1], (pad, dim))])
    weights = jnp.concatenate([weights, jnp.zeros((pad,), dtype=weights.dtype)])
    xs = (nodes.reshape(n_blocks, chunk, dim), weights.reshape(n_blocks, chunk))

    def step(acc: jax.Array, xw: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        return acc + block(*xw), None

    init = jnp.zeros(cov.shape[:-2], dtype=cov.dtype)
    total, _ = jax.lax.scan(step, init, xs)
    return total


# A pivot below this fraction of its field's variance counts as zero in `psd_cholesky`: the
# field is then (to round-off) a combination of the earlier ones, as when c = e in I4.
PIVOT_TOL = 1e-12


def psd_cholesky(cov: jax.Array) -> list[list[jax.Array]]:
    """Lower-triangular `L` with `L Lᵀ = cov` for a batch of small covariances `(..., d, d)`
    that may be singular: as entries `L[i][j]` (each of the batch shape), `j ≤ i`.

    A pivot that is not above `PIVOT_TOL` times its field's variance is set to zero, with the
    rest of its column: the field adds nothing new to the earlier ones. Unrolled for the
    d ≤ 4 of the committee integrals (no matrix routine, so it vectorises over the batch).
    """
    sym = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    d = sym.shape[-1]
    L: list[list[jax.Array]] = [[jnp.zeros(sym.shape[:-2], sym.dtype)] * d for _ in range(d)]
    for j in range(d):
        pivot = sym[..., j, j] - sum((L[j][k] ** 2 for k in range(j)), jnp.zeros(()))
        kept = pivot > PIVOT_TOL * jnp.abs(sym[..., j, j])
        root = jnp.sqrt(jnp.where(kept, pivot, 1.0))
        L[j][j] = jnp.where(kept, root, 0.0)
        for i in range(j + 1, d):
            rest = sym[..., i, j] - sum((L[i][k] * L[j][k] for k in range(j)), jnp.zeros(()))
            L[i][j] = jnp.where(kept, rest / root, 0.0)
    return L


# Covariances integrated at once by `gaussian_product_expectation`: at most this many nodes of
# the last level in all (16 MB of float64, which stays in a CPU's last-level cache), a block at
# a time. The I4 terms of a tanh committee (p = k = 2, order 28) took 0.030 s per right-hand
# side in blocks of 2·10⁶ nodes, 0.035 s at 4·10⁶ and 0.11 s at 8·10⁶ (2-core CPU, 32 MB L3).
# The blocks also bound the memory of wide committees.
BLOCK_NODES = 2_000_000


def gaussian_product_expectation(factors: tuple[Callable[[jax.Array], jax.Array], ...],
                                 cov: jax.Array, order: int = 28,
                                 nesting: tuple[int, ...] | None = None) -> jax.Array:
    """`E[f_1(h_1) ⋯ f_d(h_d)]` for `h ~ N(0, cov)`: an integrand that is a product of one
    function per field, as every committee integral (I2, I3, I4, J2) is.

    The same tensor Gauss–Hermite rule as `gaussian_expectation`, but on a Cholesky factor
    (`h = L x`, `psd_cholesky`) instead of the symmetric root, so that the i-th field of the
    nesting depends on `x_1 … x_i` only and the sum nests: Σ_{x_1} w f(h) Σ_{x_2} w f(h) ⋯.
    The innermost factor is evaluated at `order^d` nodes, the one before at `order^(d−1)`,
    and so on: about one function evaluation per node instead of d, and no `order^d × d`
    array of fields. For I4 this is 20–70 times faster than `gaussian_expectation` at the
    same order. Both rules are exact for polynomials of degree ≤ 2·order − 1 in each field;
    on other integrands their errors differ with the rotation of the grid (docs/numerics.md
    measures both).

    **Arguments**
    - `factors`: `d` functions of one array, elementwise (e.g. `σ'`, `σ'`, `φ`, `φ`).
    - `cov`: covariance(s), shape `(..., d, d)`, symmetric positive semi-definite.
    - `order`: nodes per dimension (static).
    - `nesting`: the fields from the outermost sum to the innermost (default: as given). It
      changes the error, not the value being approximated.

    **Returns**
    The expectations, shape `(...)` (the batch shape of `cov`).
    """
    cov = jnp.asarray(cov)
    if not jnp.issubdtype(cov.dtype, jnp.floating):
        cov = cov.astype(jnp.result_type(float))
    d = cov.shape[-1]
    if len(factors) != d:
        raise ValueError(f"{len(factors)} factors for {d} fields")
    perm = tuple(range(d)) if nesting is None else tuple(nesting)
    if sorted(perm) != list(range(d)):
        raise ValueError(f"nesting {perm} is not an ordering of the {d} fields")
    factors = tuple(factors[i] for i in perm)
    cov = cov[..., perm, :][..., :, perm]
    x_np, w_np = hermegauss(order)
    x = jnp.asarray(x_np, dtype=cov.dtype)
    w = jnp.asarray(w_np / w_np.sum(), dtype=cov.dtype)
    batch = cov.shape[:-2]
    flat = cov.reshape((-1, d, d))
    n = flat.shape[0]
    block = max(1, BLOCK_NODES // order**d)
    if n <= block:
        return _nested_sum(factors, flat, x, w).reshape(batch)
    n_blocks = -(-n // block)
    # padding: copies of a real covariance, dropped afterwards
    padded = jnp.concatenate([flat, jnp.broadcast_to(flat[:1], (n_blocks * block - n, d, d))])
    values = jax.lax.map(lambda c: _nested_sum(factors, c, x, w),
                         padded.reshape((n_blocks, block, d, d)))
    return values.reshape(-1)[:n].reshape(batch)


def _nested_sum(factors: tuple[Callable[[jax.Array], jax.Array], ...], cov: jax.Array,
                x: jax.Array, w: jax.Array) -> jax.Array:
    """The nested Gauss–Hermite sum of `gaussian_product_expectation` for covariances
    `(n, d, d)`, innermost field first."""
    d, order = cov.shape[-1], x.shape[0]
    L = psd_cholesky(cov)

    def along(value: jax.Array, level: int) -> jax.Array:
        """A batch-shaped value broadcast against a grid of `level` node axes."""
        return value[(..., *([None] * level))]

    def axis(k: int, level: int) -> jax.Array:
        """The nodes along grid axis k of a grid of `level` axes."""
        return x.reshape((*([1] * k), order, *([1] * (level - k - 1))))

    inner = None  # Σ over the later fields, on the grid of the earlier nodes
    for i in reversed(range(d)):
        h = along(L[i][i], i + 1) * axis(i, i + 1)  # h_i = Σ_{k ≤ i} L_ik x_k
        for k in range(i):
            h = h + along(L[i][k], i + 1) * axis(k, i + 1)
        values = factors[i](h)
        if inner is not None:
            values = values * inner
        inner = jnp.sum(values * w, axis=-1)
    return inner
