"""`DmftProblem`: one perceptron-on-reused-samples model as numbers and per-sample functions.

This is what the DMFT forward sweep, the finite-d simulator and the numpy baseline share
(docs/dmft.md, Theory): the data distribution, the loss and its h-derivatives, the label rule, the
selection
process and the initial overlaps. It knows nothing of the spec language or of sympy: the model
layer builds it from a generated module and resolved parameters.

Conventions (docs/dmft.md, Setting): per sample a cluster c with probability `cluster_probs`, the
field
along the signal a = c + √Δ ξ, and the label y = `cluster_labels[c]` (mixtures) or y = f(a)
(teacher–student GLM, where c = 0 and Δ = 1). The error of a prediction is 1{ŷ(h) ≠ y} for
mixtures and 1{ŷ(h) ≠ ŷ(y)} for a GLM (the sign agreement, for regression targets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr

Elementwise = Callable[..., jax.Array]


@dataclass(frozen=True)
class DmftProblem:
    """A DMFT model with numbers.

    **Arguments**
    - `data`: "mixture" or "glm".
    - `cluster_values`, `cluster_probs`, `cluster_labels`: c, P(c) and y(c) per cluster
      (a GLM has the single cluster c = 0, whose label is unused).
    - `alpha` (samples per dimension), `Delta` (cluster variance), `lam` (ridge λ), `eta`
      (step), `b` (batch fraction), `tau` (persistence time), `kappa` (normalisation),
      `m0`, `q0` (initial overlap and orthogonal norm), `t_max`.
    - `loss`, `dloss`, `d2loss`: ℓ(y, h), ∂ℓ/∂h, ∂²ℓ/∂h², elementwise JAX functions.
    - `label`: the predicted label ŷ(h); `target`: y = f(a) for a GLM (None for mixtures).
    - `label_breakpoints`: the h where ŷ changes (sorted), for exact test errors; None if
      unknown. `target_breakpoints`: the a where ŷ(f(a)) changes (GLM), likewise.
    """

    data: str
    cluster_values: tuple[float, ...]
    cluster_probs: tuple[float, ...]
    cluster_labels: tuple[float, ...]
    alpha: float
    Delta: float
    lam: float
    eta: float
    b: float
    tau: float
    kappa: float
    m0: float
    q0: float
    t_max: float
    loss: Elementwise
    dloss: Elementwise
    d2loss: Elementwise
    label: Elementwise
    target: Elementwise | None = None
    label_breakpoints: tuple[float, ...] | None = (0.0,)
    target_breakpoints: tuple[float, ...] | None = (0.0,)

    # -- time and selection ---------------------------------------------------------------------
    @property
    def steps(self) -> int:
        """Number of steps K = t_max / η (rounded)."""
        return max(1, int(round(self.t_max / self.eta)))

    @property
    def times(self) -> np.ndarray:
        """t_k = k η for k = 0..K."""
        return self.eta * np.arange(self.steps + 1)

    @property
    def p_on(self) -> float:
        """P(s: 0 → 1) per step: η/τ (docs/dmft.md, Setting)."""
        return 1.0 if self.b >= 1 else self.eta / self.tau

    @property
    def p_off(self) -> float:
        """P(s: 1 → 0) per step: (1 − b)η/(bτ); zero for GD."""
        return 0.0 if self.b >= 1 else (1 - self.b) * self.eta / (self.b * self.tau)

    @property
    def is_gd(self) -> bool:
        return self.b >= 1

    def selection_start(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """s(0) ~ Bernoulli(b), as 0/1 floats."""
        if self.is_gd:
            return jnp.ones(shape)
        return jax.random.bernoulli(key, self.b, shape).astype(jnp.float64)

    def selection_next(self, key: jax.Array, s: jax.Array) -> jax.Array:
        """One step of the selection Markov chain (GD: always 1; SGD: τ = η/b is memoryless)."""
        if self.is_gd:
            return s
        u = jax.random.uniform(key, s.shape)
        return jnp.where(s > 0, (u >= self.p_off).astype(s.dtype), (u < self.p_on).astype(s.dtype))

    # -- samples --------------------------------------------------------------------------------
    def draw_samples(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(c, ξ, y) for n samples: cluster value, the standard normal ξ, and the label."""
        kc, kx = jax.random.split(key)
        which = jax.random.choice(kc, len(self.cluster_probs), (n,),
                                  p=jnp.asarray(self.cluster_probs))
        c = jnp.asarray(self.cluster_values)[which]
        xi = jax.random.normal(kx, (n,))
        return c, xi, self.labels(which, c + jnp.sqrt(self.Delta) * xi)

    def labels(self, which: jax.Array, a: jax.Array) -> jax.Array:
        """y per sample from its cluster index (mixture) or from a = field along the signal."""
        if self.data == "glm":
            assert self.target is not None
            return self.target(a)
        return jnp.asarray(self.cluster_labels)[which]

    def errors(self, y: jax.Array, h: jax.Array) -> jax.Array:
        """1 where the prediction ŷ(h) is wrong, else 0 (see the module docstring)."""
        truth = self.label(y) if self.data == "glm" else y
        return (self.label(h) != truth).astype(jnp.float64)

    # -- test metrics from overlaps ---------------------------------------------------------------
    def test_metrics(self, m: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Test error and test loss at overlaps (m, Q) for a fresh sample (docs/dmft.md, Theory).

        Mixtures: h | c ~ N(c m, ΔQ). GLM: h = m a + √(Q − m²) ζ with a, ζ ~ N(0, 1).
        """
        m = np.atleast_1d(np.asarray(m, dtype=float))
        Q = np.atleast_1d(np.asarray(Q, dtype=float))
        if self.data == "glm":
            return _glm_test_metrics(self, m, Q)
        err = np.zeros_like(m)
        loss = np.zeros_like(m)
        x, w = _gh(96)
        s = np.sqrt(np.maximum(self.Delta * Q, 0.0))
        for c, pc, yc in zip(self.cluster_values, self.cluster_probs, self.cluster_labels,
                             strict=True):
            mu = c * m
            err += pc * _wrong_probability(self, mu, s, yc)
            h = mu[:, None] + s[:, None] * x[None, :]
            ell = np.asarray(self.loss(jnp.full(h.shape, yc), jnp.asarray(h)))
            loss += pc * (ell @ w)
        return err, loss


def _gh(order: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite_e.hermegauss(order)
    return x, w / w.sum()


def _wrong_probability(problem: DmftProblem, mu: np.ndarray, s: np.ndarray,
                       truth: float | np.ndarray) -> np.ndarray:
    """P[ŷ(μ + s ζ) ≠ truth] for ζ ~ N(0, 1), exact when the label's breakpoints are known."""
    mu, s = np.broadcast_arrays(mu, s)
    truth = np.broadcast_to(np.asarray(truth, dtype=float), mu.shape)
    bps = problem.label_breakpoints
    if bps is None:  # unknown breakpoints: a fine midpoint rule in ζ
        z = np.linspace(-10, 10, 20001)
        dens = np.exp(-z**2 / 2) / np.sqrt(2 * np.pi) * (z[1] - z[0])
        h = mu[..., None] + s[..., None] * z
        wrong = np.asarray(problem.label(jnp.asarray(h))) != truth[..., None]
        return (wrong * dens).sum(-1)
    edges = np.array([-np.inf, *bps, np.inf])
    inner = [(lo + hi) / 2 for lo, hi in zip(bps[:-1], bps[1:], strict=True)]
    mids = np.array([bps[0] - 1.0, *inner, bps[-1] + 1.0]) if bps else np.array([0.0])
    yhat = np.asarray(problem.label(jnp.asarray(mids)))
    out = np.zeros(mu.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        for lo, hi, yh in zip(edges[:-1], edges[1:], yhat, strict=False):
            zlo = np.where(s > 0, (lo - mu) / s, np.where(lo < mu, -np.inf, np.inf))
            zhi = np.where(s > 0, (hi - mu) / s, np.where(hi <= mu, -np.inf, np.inf))
            out += (yh != truth) * (ndtr(zhi) - ndtr(zlo))
    return out


def _glm_test_metrics(problem: DmftProblem, m: np.ndarray, Q: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """GLM: integrate over a ~ N(0, 1) piecewise (split where ŷ(f(a)) jumps), exact in ζ."""
    assert problem.target is not None
    bps = problem.target_breakpoints if problem.target_breakpoints is not None else ()
    edges = [-12.0, *[b for b in bps if -12 < b < 12], 12.0]
    xs, ws = np.polynomial.legendre.leggauss(64)
    a_nodes, a_w = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=False):
        a_nodes.append((hi - lo) / 2 * xs + (hi + lo) / 2)
        a_w.append((hi - lo) / 2 * ws)
    a = np.concatenate(a_nodes)
    wa = np.concatenate(a_w) * np.exp(-a**2 / 2) / np.sqrt(2 * np.pi)
    y = np.asarray(problem.target(jnp.asarray(a)))
    truth = np.asarray(problem.label(jnp.asarray(y)))
    s = np.sqrt(np.maximum(Q - m**2, 0.0))
    mu = m[:, None] * a[None, :]
    wrong = _wrong_probability(problem, mu, np.broadcast_to(s[:, None], mu.shape),
                               np.broadcast_to(truth[None, :], mu.shape))
    err = wrong @ wa
    z, wz = _gh(48)
    h = mu[:, :, None] + s[:, None, None] * z[None, None, :]
    ell = np.asarray(problem.loss(jnp.asarray(np.broadcast_to(y[None, :, None], h.shape)),
                                  jnp.asarray(h)))
    loss = (ell @ wz) @ wa
    return err, loss
