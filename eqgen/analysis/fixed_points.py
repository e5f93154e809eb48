"""Fixed points of a committee model's ODEs: Newton-type search, Jacobian spectrum and
classification (the Saad–Solla plateau of docs/theory.md, Facts the implementation is tested
against, is one).

**Method.** On the independent coordinates x (upper triangle of Q, all of M, a if trained; see
`eqgen.analysis.coordinates`), solve F(x) = 0 by Levenberg–Marquardt (optimistix) from each
start, then polish:

- where the Jacobian J is regular, a few plain Newton steps bring |F| to round-off;
- where J is singular (a non-hyperbolic point, such as the Saad–Solla plateau, whose approach is
  algebraic, ~1/t), the root is multiple: |F| ~ |x − x*|², so the residual alone locates x* only
  to ~√ε ≈ 1e-8. We then solve the bordered system
  [U_rᵀ F(x); Lᵀ J(x) N] = 0 by Gauss–Newton, with N, L the right and left null vectors of J
  and U_r the rest of its left singular vectors, refreshed at each step: it uses J (accurate to
  round-off, linear in the distance along the null directions), which restores full precision.

Each point is classified by the eigenvalues of J on the independent coordinates (unconstrained:
no symmetry is imposed): `stable` (all real parts < 0), `saddle` (some > 0, some ≤ 0),
`unstable` (all > 0) or `marginal` (none > 0, some zero: linearisation inconclusive). A fixed
point where the field has no Jacobian (a kink, `eqgen.analysis.system`) is kept,
with its state and observables, as `not differentiable`, without eigenvalues.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
import numpy as np

from eqgen.analysis.coordinates import as_params
from eqgen.analysis.system import CommitteeSystem, NotDifferentiableError, linear_algebra
from eqgen.errors import UsageError

NAMED_STARTS = ("spec", "symmetric", "perfect")
ZERO_TOL = 1e-7  # eigenvalues with |Re| ≤ ZERO_TOL · max(1, |λ|max) count as zero
NULL_TOL = 1e-5  # singular values ≤ NULL_TOL · σmax span the (numerical) null space
MAX_BORDERED = 300  # the bordered polish needs d²F (n³ numbers): only for n up to this
NOT_DIFFERENTIABLE = "not differentiable"
NONNEGATIVE = ("risk", "excess_risk")  # observables that round-off may push just below 0
ROUND_OFF = 1e-14  # ... by at most this much


@dataclass
class FixedPoint:
    """One fixed point: where it is, what it is worth, and how the dynamics behaves near it."""

    state: dict[str, np.ndarray]
    observables: dict[str, float]
    eigenvalues: np.ndarray  # complex, sorted by decreasing real part
    classification: str  # stable | saddle | unstable | marginal
    n_unstable: int
    n_zero: int
    n_stable: int
    residual: float  # max |dx/dt| at the point
    start: str
    steps: int
    escape_directions: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""  # why it is `not differentiable`

    def describe(self) -> str:
        """One line: the classification with its counts."""
        if self.classification == NOT_DIFFERENTIABLE:
            return f"not differentiable here: {self.reason}; not classified"
        zeros = f", {self.n_zero} zero eigenvalue(s)" if self.n_zero else ""
        if self.classification == "saddle":
            return f"saddle with {self.n_unstable} unstable direction(s){zeros}"
        if self.classification == "marginal":
            return f"marginal: no unstable direction{zeros} (linearisation inconclusive)"
        return self.classification + zeros

    def to_dict(self) -> dict[str, Any]:
        return {
            "classification": self.classification, "description": self.describe(),
            "n_unstable": self.n_unstable, "n_zero": self.n_zero, "n_stable": self.n_stable,
            "residual": self.residual, "start": self.start, "steps": self.steps,
            "observables": self.observables,
            "state": {k: np.asarray(v).tolist() for k, v in self.state.items()},
            "eigenvalues": [[float(e.real), float(e.imag)] for e in self.eigenvalues],
            "escape_directions": self.escape_directions,
            **({"reason": self.reason} if self.reason else {}),
        }


def classify(eigenvalues: np.ndarray) -> tuple[str, int, int, int]:
    """(classification, n_unstable, n_zero, n_stable) from Jacobian eigenvalues."""
    ev = np.asarray(eigenvalues)
    scale = max(1.0, float(np.abs(ev).max())) if ev.size else 1.0
    tol = ZERO_TOL * scale
    n_unstable = int(np.sum(ev.real > tol))
    n_stable = int(np.sum(ev.real < -tol))
    n_zero = ev.size - n_unstable - n_stable
    if n_unstable == 0:
        kind = "stable" if n_zero == 0 else "marginal"
    else:
        kind = "unstable" if n_unstable == ev.size else "saddle"
    return kind, n_unstable, n_zero, n_stable


# -- starts -----------------------------------------------------------------------------------
def named_start(system: CommitteeSystem, name: str) -> dict[str, np.ndarray]:
    """A start by name: `spec` (the spec's init), `symmetric` (every student unit the same:
    w_j = ½ Σ_r w*_r/√k + ½ e_j, so M_jr = (P·1)_r/(2√k) and Q = (1ᵀP1)/(4k) + I/4; the
    symmetric manifold is invariant, so Newton stays on it), `perfect` (student = teacher:
    Q = M = P, needs p = k)."""
    r = system.resolved
    P = np.asarray(system.constants.get("P", r.init["P"]))
    p, k = r.p, r.k
    if name == "spec":
        return {n: np.asarray(r.init[n]) for n in system.coords.evolving}
    if name == "symmetric":
        col = P @ np.ones(k) / (2 * np.sqrt(k))
        M = np.tile(col, (p, 1))
        Q = np.full((p, p), float(np.ones(k) @ P @ np.ones(k)) / (4 * k)) + 0.25 * np.eye(p)
        return {"Q": Q, "M": M, **({"a": np.asarray(r.init["a"])} if "a" in
                                   system.coords.evolving else {})}
    if name == "perfect":
        if p != k:
            raise UsageError(f"the perfect-learning start needs p = k (here p = {p}, k = {k})")
        start = {"Q": P.copy(), "M": P.copy()}
        if "a" in system.coords.evolving:
            start["a"] = np.asarray(r.init["a_star"])
        return start
    raise UsageError(f"unknown start '{name}'; choose " + ", ".join(NAMED_STARTS)
                     + " (or give --init FILE.json, or --random N)")


def random_starts(system: CommitteeSystem, n: int, seed: int = 0,
                  d: int = 64) -> list[dict[str, np.ndarray]]:
    """n starts from random student weights of random scale (0.3 to 1.5) against a teacher
    with the model's P, at a small dimension d: each a valid (Ω ⪰ 0) generic state."""
    r = system.resolved
    P = np.asarray(system.constants.get("P", r.init["P"]))
    p, k = r.p, r.k
    rng = np.random.default_rng(seed)
    w, V = np.linalg.eigh(P)
    L = V * np.sqrt(np.clip(w, 0, None))  # P = L Lᵀ, P may be singular
    out = []
    for _ in range(int(n)):
        basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
        Wt = (L @ basis[:k]) * np.sqrt(d)  # P = Wt Wtᵀ / d
        W = rng.standard_normal((p, d)) * rng.uniform(0.3, 1.5)
        start = {"Q": W @ W.T / d, "M": W @ Wt.T / d}
        if "a" in system.coords.evolving:
            start["a"] = np.asarray(r.init["a"])
        out.append(start)
    return out


# -- the search -------------------------------------------------------------------------------
def _least_squares(system: CommitteeSystem, x0: np.ndarray, max_steps: int,
                   tol: float) -> tuple[np.ndarray, int]:
    import optimistix as optx

    fn = system._own[0]
    params = as_params(system.params)
    solver = optx.LevenbergMarquardt(rtol=tol, atol=tol * 1e-2)
    sol = optx.least_squares(lambda x, args: fn(x, args), solver, jnp.asarray(x0), args=params,
                             throw=False, max_steps=max_steps)
    return np.asarray(sol.value), int(sol.stats["num_steps"])


def _newton_polish(system: CommitteeSystem, x: np.ndarray, iters: int = 6) -> np.ndarray:
    """Plain Newton steps, each kept only if it lowers |F| (regular roots)."""
    best = np.abs(system.field(x)).max()
    for _ in range(iters):
        step = np.linalg.lstsq(system.jacobian(x), -system.field(x), rcond=None)[0]
        trial = x + step
        res = np.abs(system.field(trial)).max()
        if not res < best:
            break
        x, best = trial, res
    return x


def _bordered_polish(system: CommitteeSystem, x: np.ndarray, iters: int = 6) -> np.ndarray:
    """Gauss–Newton on [U_rᵀ F(x); Lᵀ J(x) N] = 0 (module docstring): full precision at a
    multiple root. Keeps the best iterate by the bordered residual."""
    best_x, best_r = x, np.inf
    for _ in range(iters):
        J = system.jacobian(x)
        U, S, Vt = np.linalg.svd(J)
        m = int(np.sum(NULL_TOL * S[0] >= S)) if S[0] > 0 else 0
        if m == 0 or m == len(S):
            return _newton_polish(system, x)
        N, L, Ur = Vt[-m:].T, U[:, -m:], U[:, :-m]
        F = system.field(x)
        r = np.concatenate([Ur.T @ F, (L.T @ J @ N).ravel()])
        size = np.abs(r).max()
        if size < best_r:
            best_x, best_r = x, size
        if size == 0:
            break
        H = system.hessian(x)
        D = np.vstack([Ur.T @ J, np.einsum("ia,ijk,jb->abk", L, H, N).reshape(m * m, -1)])
        step = np.linalg.lstsq(D, -r, rcond=None)[0]
        if np.abs(step).max() < 1e-15 * max(1.0, np.abs(x).max()):
            break
        x = x + step
    return best_x


def _escape_directions(system: CommitteeSystem, ev: np.ndarray, vecs: np.ndarray,
                       n_unstable: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n_unstable):
        v = vecs[:, i]
        v = v / v[np.argmax(np.abs(v))]  # largest entry 1 (removes the arbitrary phase)
        ev_state = system.coords.unflatten(jnp.asarray(v.real))
        out.append({"eigenvalue": [float(ev[i].real), float(ev[i].imag)],
                    "direction": {k: np.asarray(a).tolist() for k, a in ev_state.items()}})
    return out


def _observables(system: CommitteeSystem, x: np.ndarray) -> dict[str, float]:
    """Observables at x, with a risk that round-off made slightly negative set to 0."""
    obs = system.observables(x)
    return {k: 0.0 if k in NONNEGATIVE and -ROUND_OFF < v < 0 else v for k, v in obs.items()}


def analyse_point(system: CommitteeSystem, x: np.ndarray, start: str = "",
                  steps: int = 0) -> FixedPoint:
    """Spectrum, classification, observables and escape directions at a point x (without the
    spectrum where the field is not differentiable)."""
    common = {"state": system.state(x), "observables": _observables(system, x),
              "residual": float(np.abs(system.field(x)).max()), "start": start,
              "steps": steps}
    try:
        J = system.checked_jacobian(x)
    except NotDifferentiableError as e:
        return FixedPoint(eigenvalues=np.zeros(0, dtype=complex),
                          classification=NOT_DIFFERENTIABLE, n_unstable=0, n_zero=0,
                          n_stable=0, reason=e.reason, **common)
    with linear_algebra("computing the Jacobian's eigenvalues"):
        ev, vecs = np.linalg.eig(J)
    order = np.argsort(-ev.real, kind="stable")
    ev, vecs = ev[order], vecs[:, order]
    kind, n_u, n_0, n_s = classify(ev)
    return FixedPoint(eigenvalues=ev, classification=kind, n_unstable=n_u, n_zero=n_0,
                      n_stable=n_s, escape_directions=_escape_directions(system, ev, vecs, n_u),
                      **common)


def solve_from(system: CommitteeSystem, start: Mapping[str, Any], label: str = "start",
               max_steps: int = 2000, tol: float = 1e-10) -> tuple[FixedPoint | None, str]:
    """Newton-type search from one start; (fixed point, "") or (None, why not). A start that
    is already a root (|F| ≤ tol/1000) is taken as it is (steps = 0)."""
    x0 = system.point(start)
    if np.abs(system.field(x0)).max() <= 1e-3 * tol:
        x, steps = x0, 0
    else:
        x, steps = _least_squares(system, x0, max_steps, tol)
    if not np.all(np.isfinite(x)):
        return None, f"{label}: the iteration left the valid region (non-finite values)"
    J = system.jacobian(x)
    with linear_algebra(f"polishing the root from {label}"):
        if np.all(np.isfinite(J)) and x.size <= MAX_BORDERED:
            x = _bordered_polish(system, x)
        elif np.all(np.isfinite(J)):
            x = _newton_polish(system, x)
    res = float(np.abs(system.field(x)).max())
    if not res <= 1e3 * tol:
        return None, f"{label}: no fixed point reached (residual {res:.2e} after {steps} steps)"
    if system.omega_min_eigenvalue(x) < -1e-9:
        return None, (f"{label}: converged to a root with Ω not positive semi-definite "
                      "(not a state of any networks); rejected")
    return analyse_point(system, x, label, steps), ""


def find_fixed_points(model: Any, params: Mapping[str, float] | None = None,
                      starts: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
                      named: Sequence[str] = (), n_random: int = 0, seed: int = 0,
                      gradient_flow: bool = False, tol: float = 1e-10,
                      max_steps: int = 2000) -> tuple[list[FixedPoint], list[str]]:
    """Fixed points of a committee model from the given starts.

    **Arguments**
    - `starts`: (label, state overrides) pairs, e.g. from `--init` files.
    - `named`: start names from `NAMED_STARTS`; `n_random`, `seed`: random starts.
      With no start at all, the spec's initial state is used.
    - `gradient_flow`: drop the SGD variance term (learning-rate parameter set to 0).
    - `tol`: Levenberg–Marquardt tolerance; a point counts as fixed when max|F| ≤ 1000 tol.

    **Returns** the distinct fixed points found (in the order found) and a list of notes on
    the starts that gave none.
    """
    system = CommitteeSystem.build(model, params, gradient_flow=gradient_flow)
    todo: list[tuple[str, Mapping[str, Any]]] = list(starts or [])
    for name in named:
        todo.append((name, named_start(system, name)))
    for i, st in enumerate(random_starts(system, n_random, seed)):
        todo.append((f"random {i}", st))
    if not todo:
        todo.append(("spec", named_start(system, "spec")))
    found: list[FixedPoint] = []
    notes: list[str] = []
    for label, start in todo:
        sys_start = CommitteeSystem.build(model, params, start, gradient_flow=gradient_flow,
                                          init_source=label)
        fp, why = solve_from(sys_start, start, label, max_steps, tol)
        if fp is None:
            notes.append(why)
            continue
        x = sys_start.point(fp.state)
        same = [f for f in found if np.abs(sys_start.point(f.state) - x).max()
                <= 1e-7 * max(1.0, np.abs(x).max())]
        if same:
            notes.append(f"{label}: the same fixed point as from {same[0].start}")
            continue
        found.append(fp)
    return found, notes
