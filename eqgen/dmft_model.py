"""`DmftModel`: a checked DMFT spec (docs/dmft.md) and what eqgen does with it.

The same interface as the committee `Model` (check, latex, generate, solve, simulate); solving
runs the DMFT forward sweep (`eqgen.runtime.dmft`) on the generated per-sample functions, or,
for square-type losses at b = 1, the exact Gaussian propagation (`eqgen.runtime.dmft_exact`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import eqgen
from eqgen.codegen import module as modfile
from eqgen.errors import Diagnostic, EqgenError, NumericalError, SpecError, UsageError
from eqgen.model import Model
from eqgen.replicas import (
    DEFAULT_COMPARE_REPLICAS,
    check_replicas,
    replica_seed,
    replica_stderr,
    with_stderr,
)
from eqgen.spec.dmft import DmftResolved, DmftSpec, build_dmft, resolve_dmft

DEFAULT_SAMPLES = 20_000
MAX_STEPS = 5000  # DMFT steps t_max/η: the sweep's cost grows as K³
# A smoothed hinge is simulated at this temperature: the hinge itself to round-off
# (sigmoid(u/T) is a step function for every |u| above 1e-7).
HINGE_SIMULATION_TEMPERATURE = 1e-9
OBSERVABLES = ("m", "Q", "train_loss", "train_error", "test_error", "test_loss")


@dataclass(frozen=True)
class _Bound:
    """A generated per-sample function with its parameters bound; equal (and hashing equal)
    for equal parameters, so that compiled sweeps are reused across solves."""

    fn: Callable[..., Any]
    params: tuple[tuple[str, float], ...]

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args, dict(self.params))


class DmftModel(Model):
    """A DMFT spec, checked; see `eqgen.load`."""

    def __init__(self, path: str | Path, file: Any = None):  # noqa: D107
        from eqgen.spec.parser import parse_file

        self.path = Path(path)
        self.file = file if file is not None else parse_file(path)
        self.spec: DmftSpec = build_dmft(self.file)  # type: ignore[assignment]
        self.defaults: DmftResolved = resolve_dmft(self.spec)  # type: ignore[assignment]
        self.equations  # noqa: B018  (the loss must be twice differentiable, ...: spec errors)
        self._module: ModuleType | None = None

    def _check_theory(self, r: Any) -> None:  # the derivation checks everything, once
        return None

    def resolve(self, params: Mapping[str, float] | None = None,  # type: ignore[override]
                init: Mapping[str, Any] | None = None, init_source: str = "init"
                ) -> DmftResolved:
        """Numbers for this model with `params` overrides and `init` (m, q) overrides."""
        r = resolve_dmft(self.spec, params)
        unknown = [k for k in (init or {}) if k not in ("m", "q")]
        if unknown:
            raise SpecError(Diagnostic(f"unknown initial state(s) {', '.join(unknown)}",
                                       init_source, hint="a DMFT model starts from m and q"))
        if init:
            try:
                m0 = float(init.get("m", r.m0))
                q0 = float(init.get("q", r.q0))
            except (TypeError, ValueError):
                raise SpecError(Diagnostic("m and q must be numbers", init_source)) from None
            if not (np.isfinite(m0) and np.isfinite(q0) and q0 >= 0):
                raise SpecError(Diagnostic("m must be finite and q ≥ 0", init_source))
            r = DmftResolved(**{**r.__dict__, "m0": m0, "q0": q0})
        return r

    @functools.cached_property
    def equations(self) -> Any:
        from eqgen.theories.dmft import derive

        return derive(self.spec)

    def generated_source(self) -> str:
        from eqgen.codegen.dmft import module_source

        extra = ("Family: DMFT for SGD on reused samples (docs/dmft.md); the forward sweep is in "
                 "eqgen.runtime.dmft.")
        if self.title:
            extra = self.title.replace('"', "'") + "\n\n" + extra
        head = modfile.header(self.name, "", str(self.path), self.spec.hash, self._key, extra)
        return module_source(self.equations, header=head, defaults=self.parameters)

    def _smoke_test(self, module: ModuleType, evaluate: bool = False) -> None:
        problem = self.problem(module=module)
        import jax.numpy as jnp

        h = jnp.linspace(-2.0, 2.0, 5)
        y = jnp.ones(5)
        vals = [problem.loss(y, h), problem.dloss(y, h), problem.d2loss(y, h), problem.label(h)]
        if evaluate and not all(bool(jnp.all(jnp.isfinite(v))) for v in vals):
            raise EqgenError(f"internal error: generated module {module.__name__} gives "
                             "non-finite values")

    def vector_field(self, params: Mapping[str, float] | None = None) -> Callable:
        raise UsageError("a DMFT model has no vector field: it is solved by a forward sweep "
                         "over its history (model.solve)")

    # -- numerics -------------------------------------------------------------------------------
    def problem(self, params: Mapping[str, float] | None = None,
                init: Mapping[str, Any] | None = None, t_max: float | None = None,
                eta: float | None = None, module: ModuleType | None = None) -> Any:
        """The runtime `DmftProblem` at these parameters (`eta` overrides the step)."""
        from eqgen.runtime.dmft_problem import DmftProblem

        r = self.resolve(params, init)
        mod = module or self.module
        pitems = tuple(sorted(r.params.items()))
        pd = dict(pitems)
        values, probs, labels = mod.clusters(pd)
        bps = mod.label_breakpoints(pd)
        tbps = mod.target_breakpoints(pd) if hasattr(mod, "target_breakpoints") else None
        step = float(eta) if eta is not None else r.eta
        horizon = float(t_max) if t_max is not None else r.t_max
        tau = r.tau
        if self.spec.persistence is None and r.b < 1:  # plain SGD: τ = η/b at this step
            tau = step / r.b
        return DmftProblem(
            data=mod.DATA, cluster_values=tuple(values), cluster_probs=tuple(probs),
            cluster_labels=tuple(labels), alpha=r.alpha, Delta=r.Delta, lam=r.lam, eta=step,
            b=r.b, tau=tau, kappa=r.kappa, m0=r.m0, q0=r.q0, t_max=horizon,
            loss=_Bound(mod.loss, pitems), dloss=_Bound(mod.loss_h, pitems),
            d2loss=_Bound(mod.loss_hh, pitems), label=_Bound(mod.label, pitems),
            target=_Bound(mod.target, pitems) if hasattr(mod, "target") else None,
            label_breakpoints=bps, target_breakpoints=tbps)

    def can_solve_exactly(self, params: Mapping[str, float] | None = None) -> bool:
        """Square-type loss with every sample used at every step: no sampling needed."""
        return bool(self.equations.gaussian_exact) and self.resolve(params).b >= 1

    def solve(self, params: Mapping[str, float] | None = None,  # type: ignore[override]
              init: Mapping[str, Any] | None = None, save_at: Sequence[float] | None = None,
              t_max: float | None = None, samples: int | None = None, seed: int = 0,
              exact: bool | None = None, extrapolate: bool = False,
              response_samples: int | None = None, init_source: str = "init",
              replicas: int = 0, **ignored: Any) -> eqgen.Solution:
        """Solve the DMFT (docs/dmft.md, The discrete recursion); see docs/dmft.md, Running it.

        **Arguments**
        - `samples`, `seed`: Monte Carlo trajectories of the effective process (default
          20 000); giving `samples` forces sampling even where exact propagation is possible.
        - `exact`: force (True) or forbid (False) exact Gaussian propagation; by default it is
          used when the loss allows it and `samples` is not given.
        - `extrapolate`: continuous-time models: Richardson extrapolation in η (solves at η
          and η/2 and returns 2 x(η/2) − x(η) on the η grid).
        - `replicas`: R ≥ 2 adds `<name>_stderr`, the Monte Carlo standard error of each
          sampled observable, from R more solves of samples/R trajectories on independent
          streams (eqgen.replicas); 0 (default): none.
        `rtol`, `atol`, `solver` of the ODE family are accepted and ignored.
        """
        from eqgen.runtime.solution import Solution

        r = self.resolve(params, init, init_source)
        if samples is not None and samples < 2:
            raise UsageError("--samples must be at least 2")
        horizon = float(t_max) if t_max is not None else r.t_max
        if not (horizon > 0 and np.isfinite(horizon)):
            raise UsageError("--t-max must be a positive, finite time")
        hinge = self.spec.smoothing
        if extrapolate and not (self.spec.continuous or hinge):
            raise UsageError("--extrapolate applies to continuous-time models (regime "
                             "continuous) and to smoothed hinge losses; a discrete model at "
                             "step η is exact in η")
        use_exact = self.can_solve_exactly(params) and samples is None if exact is None \
            else bool(exact)
        if use_exact and not self.can_solve_exactly(params):
            raise UsageError("exact Gaussian propagation needs a square-type loss (ℓ'' "
                             "constant) and b = 1")
        n = int(samples or DEFAULT_SAMPLES)
        check_replicas(int(replicas), n, use_exact)
        self._check_start(r)
        self._warn_step(r)
        self._warn_horizon(horizon, r.eta)

        def run(eta: float, temperature: float = 1.0) -> Any:
            # `temperature` scales the hinge's smoothing parameter (1: as given)
            at = dict(params or {})
            if hinge and temperature != 1.0:
                at[hinge] = r.params[hinge] * temperature
            problem = self.problem(at, init, horizon, eta)
            self.check_sweep(problem, None if use_exact else n, response_samples)
            if use_exact:
                from eqgen.runtime.dmft_exact import sweep_exact

                with np.errstate(over="ignore", invalid="ignore"):  # reported by _check_finite
                    return sweep_exact(problem)
            from eqgen.runtime.dmft import sweep

            with np.errstate(over="ignore", invalid="ignore"):  # reported by _check_finite
                return sweep(problem, n, seed, response_samples=response_samples)

        def observables(eta: float, res: Any = None) -> dict[str, np.ndarray]:
            """At step η; for a smoothed hinge, extrapolated to T → 0 when asked (the
            smoothing error is O(T²): x₀ ≈ (4 x(T/2) − x(T))/3, common random numbers)."""
            obs = (res if res is not None else run(eta)).observables()
            if hinge and extrapolate:
                half = run(eta, 0.5).observables()
                return {k: (4 * half[k] - obs[k]) / 3 for k in obs}
            return obs

        try:
            res = run(r.eta)
        except (OverflowError, FloatingPointError, ZeroDivisionError) as e:
            # Python arithmetic on the parameters (η², Δ², ...) out of float range: the checks
            # bound every value, so this is a last line of defence, reported like a divergence
            raise NumericalError(f"the parameters overflow floating point ({e})", t=0.0,
                                 hint="check the sizes of alpha, Delta, lambda, eta, m0 and "
                                 "q0") from None
        meta: dict[str, Any] = {
            "model": self.name, "title": self.title, "family": "dmft",
            "parameters": r.params, "method": "exact Gaussian propagation" if use_exact
            else "sampled trajectories", "samples": 0 if use_exact else n, "seed": seed,
            "eta": r.eta, "b": r.b, "tau": r.tau, "steps": len(res.t) - 1,
            "continuous": self.spec.continuous, "spec_sha256": self.spec.hash,
            "eqgen": eqgen.__version__,
        }
        if not use_exact:
            meta["response_samples"] = res.response_samples
        obs = observables(r.eta, res)
        if hinge:
            meta["smoothing"] = {"parameter": hinge, "temperature": r.params[hinge]}
            if extrapolate:
                plain = res.observables()
                meta["smoothing_error"] = {k: float(np.max(np.abs(obs[k] - plain[k])))
                                           for k in obs}
                meta["method"] += (f", Richardson-extrapolated to the hinge ({hinge} and "
                                   f"{hinge}/2, second order)")
            else:
                coarse = run(r.eta, 2.0).observables()
                meta["smoothing_error"] = {k: float(np.max(np.abs(coarse[k] - obs[k])))
                                           for k in obs}
            meta["smoothing_note"] = (
                f"the hinge is smoothed as {hinge}·softplus((1 − yh)/{hinge}); smoothing_error "
                f"is |x(2{hinge}) − x({hinge})| per observable (a bound while the error is first "
                "order), or with --extrapolate the size of the correction (second order once "
                f"{hinge} is well below the per-step jump ηΔ of a sample at the margin)")
        if self.spec.continuous:
            if extrapolate:
                fobs = {k: v[::2] for k, v in observables(r.eta / 2).items()}
                meta["discretisation_error"] = {k: float(np.max(np.abs(fobs[k] - obs[k])))
                                                for k in obs}
                obs = {k: 2 * fobs[k] - obs[k] for k in obs}
                meta["method"] += ", Richardson-extrapolated in η (η and η/2)"
            elif len(res.t) >= 5 and (len(res.t) - 1) % 2 == 0:
                coarse = observables(2 * r.eta)
                meta["discretisation_error"] = {
                    k: float(np.max(np.abs(coarse[k] - obs[k][::2]))) for k in obs}
                meta["discretisation_note"] = ("first order in η: the error of these values is "
                                               "about |x(2η) − x(η)|, given per observable")
        idx = self._save_indices(res.t, save_at)
        t = res.t[idx]
        sol = Solution(t, {k: np.asarray(v)[idx] for k, v in obs.items()}, {}, meta)
        self._check_finite(sol, r)
        if replicas:
            self._add_replica_stderr(sol, int(replicas), dict(
                params=params, init=init, save_at=save_at, t_max=horizon, samples=n // replicas,
                exact=False, extrapolate=extrapolate, response_samples=response_samples,
                init_source=init_source), seed)
        return sol

    def _add_replica_stderr(self, sol: eqgen.Solution, replicas: int,
                            kwargs: dict[str, Any], seed: int) -> None:
        """Put `<name>_stderr` beside each observable of `sol`, from `replicas` solves with
        `kwargs` on independent seeds (eqgen.replicas). A replica that fails leaves the
        errors unknown (NaN), with the reason in the metadata; the solve itself stands."""
        runs = []
        for i in range(replicas):
            try:
                rep = self.solve(seed=replica_seed(seed, i), **kwargs)
            except NumericalError as e:
                sol.metadata["replica_failure"] = f"replica {i}: {e}"
                break
            runs.append({k: rep.observables[k] for k in sol.observables})
        if len(runs) == replicas:
            errors = replica_stderr(runs)
        else:
            errors = {k: np.full(len(sol.t), np.nan) for k in sol.observables}
        sol.observables = with_stderr(sol.observables, errors)
        sol.metadata.update(
            replicas=replicas, replica_samples=int(kwargs["samples"]),
            stderr_note=(f"<name>_stderr: Monte Carlo standard error of this sampled DMFT, "
                         f"the spread of {replicas} independent solves of "
                         f"{kwargs['samples']} trajectories each divided by √{replicas}"))

    def check_sweep(self, problem: Any, samples: int | None,
                    response_samples: int | None = None) -> None:
        """Refuse (`UsageError`, exit 2) a DMFT sweep of `problem` that is too long (more than
        `MAX_STEPS` steps: its cost grows as K³) or, sampled with `samples` trajectories (None:
        exact propagation), too large for the memory; before any heavy work."""
        if problem.steps > MAX_STEPS:
            raise UsageError(f"{problem.steps} steps: the DMFT's cost grows as K³; use at "
                             f"most {MAX_STEPS} (raise η or lower t_max)")
        if samples is None:
            return
        from eqgen.runtime.dmft import response_capacity
        from eqgen.runtime.health import check_dmft_sweep

        check_dmft_sweep(problem.steps, samples,
                         response_samples or response_capacity(problem, samples))

    def step_limit(self, r: DmftResolved) -> float | None:
        """The step above which gradient descent on this model diverges, where it is known in
        closed form: a square-type loss (ℓ'' = c > 0, a constant) at b = 1. The iteration
        w ← w − η[λw + (c/κ) XᵀX w/d + ...] is then linear, and diverges when
        η (λ + c s_max/κ) > 2, with s_max the top eigenvalue of XᵀX/d: Δ(1 + √α)², the edge
        of the Marchenko–Pastur spectrum of n = αd samples of covariance Δ I (Δ = 1 for a
        teacher–student GLM). For a mixture, the cluster means add outliers above the bulk,
        which can only lower the limit: the value returned is then an upper bound on the
        stable steps. None where no such limit is known (other losses, b < 1)."""
        eq = self.equations
        if not eq.gaussian_exact or r.b < 1:
            return None
        values = {sym: r.params[name] for name, sym in eq.params.items() if name in r.params}
        try:
            curvature = float(eq.d2loss.subs(values))
        except (TypeError, ValueError):
            return None
        if not (curvature > 0 and np.isfinite(curvature)):
            return None
        top = r.Delta * (1.0 + np.sqrt(r.alpha)) ** 2
        return float(2.0 / (r.lam + curvature * top / r.kappa))

    def check_warnings(self) -> list[str]:
        """What `eqgen check` says of a valid spec: the step-size warnings at its values, and
        a horizon that is not a whole number of steps."""
        r = self.resolve()
        return self.stability_warnings() + [w for w in [horizon_warning(r.t_max, r.eta)] if w]

    @staticmethod
    def _warn_horizon(horizon: float, eta: float) -> None:
        """`warnings.warn` `horizon_warning`."""
        import warnings

        text = horizon_warning(horizon, eta)
        if text:
            warnings.warn(text, UserWarning, stacklevel=1)

    def stability_warnings(self, params: Mapping[str, float] | None = None) -> list[str]:
        """What is known to go wrong at these parameters without being an error: a step past
        the stability limit of gradient descent (`step_limit`). The numbers are still an
        exact prediction of the diverging dynamics until they overflow (exit 3), so such a
        step is not refused: studying the onset of a divergence, or a short horizon past
        the limit, is legitimate."""
        r = self.resolve(params)
        limit = self.step_limit(r)
        if limit is None or not r.eta > limit:
            return []
        bound = "" if self.spec.data == "glm" else (" at most (the cluster means can only "
                                                    "lower it)")
        return [f"the step η = {r.eta:g} is past the stability limit of gradient descent on "
                f"this model, 2/(λ + ℓ''·Δ(1 + √α)²/κ) = {limit:.4g}{bound}, set by the top "
                "of the Marchenko–Pastur spectrum of the sample covariance: |w|² grows "
                "exponentially, and the solve stops (exit 3) once it passes 1e12; lower η "
                f"below {limit:.4g} for a converging run"]

    def _warn_step(self, r: DmftResolved) -> None:
        """`warnings.warn` each of `stability_warnings` (once per message and process under
        Python's default filter)."""
        import warnings

        for text in self.stability_warnings(r.params):
            warnings.warn(text, UserWarning, stacklevel=1)

    @staticmethod
    def _warn_few_selected(problem: Any, n: int, d: int) -> None:
        """Warn when an SGD step selects less than one sample on average (b·n < 1): the
        simulation is then far from the large-n limit the DMFT describes."""
        import warnings

        if problem.b < 1 and problem.b * n < 1:
            warnings.warn(f"batch fraction b = {problem.b:g} with n = {n} samples (d = {d}) "
                          f"selects b·n = {problem.b * n:.3g} samples per step on average, "
                          "fewer than one: the simulation is far from the large-n limit the "
                          "DMFT describes (raise --d or b)",
                          UserWarning, stacklevel=2)

    def _check_start(self, r: DmftResolved) -> None:
        """A start with |w|²/d = m0² + q0 not finite or above `BLOW_UP` fails at t = 0
        (exit 3) before any work: every later value would be non-finite too."""
        from eqgen.runtime.health import BLOW_UP

        size = r.m0 * r.m0 + r.q0  # a product, not **: no OverflowError
        if not size <= BLOW_UP:
            raise NumericalError(f"the initial state has |w|²/d = m0² + q0 = {size:.3g}, "
                                 f"above the {BLOW_UP:.0e} at which a run counts as diverged",
                                 t=0.0, hint=self._divergence_hint(r, at_start=True))

    def _divergence_hint(self, r: DmftResolved, at_start: bool) -> str:
        """What to try after a diverged DMFT solve or simulation: the initial state when the
        failure is at t = 0, else the step (with its stability limit where known)."""
        if at_start:
            return (f"check the initial state: m0 = {r.m0:g} and q0 = {r.q0:g} give "
                    "|w|²/d = m0² + q0 at t = 0 (set them with --set or --init); the step η "
                    "plays no part yet")
        limit = self.step_limit(r)
        if limit is not None and r.eta > limit:
            return (f"lower the step η = {r.eta:g} below {limit:.4g}, the stability limit of "
                    "gradient descent here (2/(λ + ℓ''·Δ(1 + √α)²/κ))")
        return "lower the step η or the horizon"

    def _save_indices(self, t: np.ndarray, save_at: Sequence[float] | None) -> np.ndarray:
        if save_at is None:
            return np.arange(len(t))
        want = np.asarray(list(save_at), dtype=float)
        if want.size == 0 or not np.all(np.isfinite(want)) or want.min() < 0:
            raise UsageError("--save-at needs finite times ≥ 0")
        eta = t[1] - t[0] if len(t) > 1 else 1.0
        k = np.rint(want / eta).astype(int)
        off = np.abs(k * eta - want) > 1e-9 * max(1.0, float(want.max()))
        if off.any() or k.max() >= len(t):
            bad = want[off | (k >= len(t))][0]
            raise UsageError(f"--save-at time {bad:g} is not a step of this model: DMFT times "
                             f"are multiples of η = {eta:g} up to t_max = {t[-1]:g}")
        return np.unique(np.concatenate([[0], k]))

    def _check_finite(self, sol: Any, r: DmftResolved,
                      what_failed: str = "the DMFT sweep") -> None:
        """Raise `NumericalError` (exit 3) at the first time where an observable of `sol` (not
        a standard error) is not finite or Q = |w|²/d exceeds `BLOW_UP`; its partial result
        holds the times before it, marked partial."""
        from eqgen.runtime.health import BLOW_UP

        bad = np.zeros(len(sol.t), dtype=bool)
        for name, v in sol.observables.items():
            if not name.endswith("_stderr"):  # NaN with a single seed: unknown, not bad
                bad |= ~np.isfinite(v)
        big = np.abs(np.nan_to_num(sol.observables["Q"], nan=0.0)) > BLOW_UP
        if not (bad | big).any():
            return
        i = int(np.argmax(bad | big))
        names = [n for n, v in sol.observables.items()
                 if not n.endswith("_stderr") and not np.isfinite(v[i])]
        what = (f"non-finite values ({', '.join(names)})" if bad[i]
                else f"|w|²/d above {BLOW_UP:.0e} (diverged)")
        before = f"; last good time t = {sol.t[i - 1]:.6g}" if i > 0 else ""
        start_ok = i == 0 and all(np.isfinite(sol.observables[n][0]) for n in ("m", "Q"))
        hint = ("m and Q are finite at t = 0, so the loss itself overflows at the initial "
                "fields h = m a + r (its value or its derivatives in h): use a loss that stays "
                "finite for moderate |h|, e.g. log(1 + exp(-y * h)) rather than a high power of "
                "exp(-y * h)") if start_ok else self._divergence_hint(r, at_start=i == 0)
        error = NumericalError(f"{what_failed} produced {what}{before}", t=float(sol.t[i]),
                               hint=hint)
        error.partial = sol.rows(slice(0, i)).mark_partial(error)
        raise error

    def simulate(self, params: Mapping[str, float] | None = None,  # type: ignore[override]
                 init: Mapping[str, Any] | None = None, d: int = 1000, seeds: int = 4,
                 seed: int = 0, t_max: float | None = None,
                 save_at: Sequence[float] | None = None,
                 progress: bool | None = None, init_source: str = "init",
                 test_samples: int = 0, **ignored: Any) -> eqgen.Solution:
        """Simulate the finite-d dynamics (docs/dmft.md, Setting) over `seeds` seeds: seed
        means of the observables, each followed by its standard error (`<name>_stderr`).

        `progress` draws a bar over the steps of all seeds (None: only on a terminal), as for
        committee models. The simulation is built to start at the spec's (m₀, q₀): w(0) = m₀ v*
        plus an orthogonal part of norm² q₀ d; the metadata's `measured_start` holds the seed
        means of the measured m(0), Q(0) and q(0) = Q(0) − m(0)² (C⊥(0,0) of docs/dmft.md), which
        `compare` starts the theory from. `test_samples` is refused: the test error and loss
        of a DMFT model are exact functions of the measured (m, Q)."""
        from eqgen.runtime.health import check_dmft_simulation
        from eqgen.runtime.solution import Solution
        from eqgen.simulate.dmft import n_samples, simulate_dmft
        from eqgen.simulate.progress import ProgressBar

        if int(d) < 2:
            raise UsageError("--d must be at least 2")
        if int(seeds) < 1:
            raise UsageError("--seeds must be at least 1")
        if test_samples:
            raise UsageError("--test-samples applies to committee models: a DMFT model's test "
                             "error and test loss are computed exactly from the measured m, Q")
        r = self.resolve(params, init, init_source)
        at = dict(params or {})
        if self.spec.smoothing:  # simulate the hinge itself, not its smoothed version
            at[self.spec.smoothing] = HINGE_SIMULATION_TEMPERATURE
        problem = self.problem(at, init, t_max)
        t_all = np.asarray(problem.times)
        idx = self._save_indices(t_all, save_at)  # a bad --save-at before any work
        check_dmft_simulation(n_samples(problem, int(d)), int(d))
        self._check_start(r)
        self._warn_step(r)
        self._warn_horizon(problem.t_max, problem.eta)
        self._warn_few_selected(problem, n_samples(problem, int(d)), int(d))
        total = problem.steps * int(seeds)
        with ProgressBar(f"simulating {self.name} (d = {int(d)}, {int(seeds)} seeds)", total,
                         unit="steps", enabled=progress) as bar:
            raw = simulate_dmft(problem, int(d), int(seeds), int(seed), progress=bar.update)
            bar.close(total)
        obs: dict[str, np.ndarray] = {}
        with np.errstate(over="ignore", invalid="ignore"):  # a divergence: reported below
            for k in OBSERVABLES:  # each mean next to its standard error, as committee models
                runs = np.asarray(raw[k])[:, idx]
                obs[k] = runs.mean(axis=0)
                obs[k + "_stderr"] = (runs.std(axis=0, ddof=1) / np.sqrt(runs.shape[0])
                                      if runs.shape[0] > 1 else np.full(len(idx), np.nan))
            m0, Q0 = np.asarray(raw["m"])[:, 0], np.asarray(raw["Q"])[:, 0]
            start = {"m": float(m0.mean()), "Q": float(Q0.mean()),
                     "q": float(np.mean(Q0 - m0**2))}
        meta = {"model": self.name, "title": self.title, "family": "dmft", "simulation": True,
                "parameters": r.params, "d": int(d), "seeds": int(seeds), "seed": int(seed),
                "eta": problem.eta, "samples_n": n_samples(problem, int(d)),
                "measured_start": start, "spec_start": {"m": r.m0, "q": r.q0}}
        sol = Solution(np.asarray(raw["t"])[idx], obs, {}, meta)
        self._check_simulation(sol, raw, r, int(idx[-1]))
        return sol

    def _check_simulation(self, sol: Any, raw: Mapping[str, np.ndarray], r: DmftResolved,
                          last: int) -> None:
        """Raise `NumericalError` (exit 3) when a seed of the simulation diverged (|w|²/d
        above `BLOW_UP` or not finite, at any step up to the last saved one, `last`, saved
        or not): at the step where it first did, with the saved times before it as the
        partial result."""
        from eqgen.runtime.health import BLOW_UP
        from eqgen.simulate.dmft import first_blow_up

        found = (first_blow_up(q[:last + 1]) for q in np.asarray(raw["Q"]))
        bad = [k for k in found if k is not None]
        if not bad:
            self._check_finite(sol, r, "the simulation")  # e.g. a non-finite loss
            return
        k = min(bad)
        t = np.asarray(raw["t"])
        before = f"; last good time t = {t[k - 1]:.6g}" if k > 0 else ""
        error = NumericalError(f"the simulation diverged: |w|²/d of a seed became non-finite "
                               f"or exceeded {BLOW_UP:.0e}{before}", t=float(t[k]),
                               hint=self._divergence_hint(r, at_start=k == 0))
        keep = sol.t < t[k] - 1e-12 * max(1.0, abs(float(t[k])))
        error.partial = sol.rows(keep).mark_partial(error) if keep.any() else None
        raise error

    def compare(self, params: Mapping[str, float] | None = None,  # type: ignore[override]
                init: Mapping[str, Any] | None = None, *, d: int, seeds: int = 4,
                seed: int = 0, t_max: float | None = None,
                save_at: Sequence[float] | None = None, samples: int | None = None,
                progress: bool | None = None, init_source: str = "init",
                test_samples: int = 0, replicas: int | None = None,
                **ignored: Any) -> eqgen.Solution:
        """Simulate at dimension `d`, then solve the DMFT at the simulated times from the
        simulation's *measured* start, and put both side by side (`eqgen.compare.compare`).

        The theory starts from the seed means of the measured m(0) and q(0) = Q(0) − m(0)²
        (the simulation's `measured_start`, also recorded in the comparison's metadata as
        `theory_start`), not from the spec's (m₀, q₀) that the simulation is built to hit:
        the two agree to round-off, and any difference would show. `samples` and `seed` are
        those of the DMFT's Monte Carlo (exact propagation where the loss allows it and
        `samples` is not given). A sampled theory carries its own Monte Carlo error
        (`<name>_stderr`, from `replicas` independent solves; default 8, 0: none; see
        `solve`), which `eqgen.compare.deviations` adds to the simulation's. `rtol`, `atol`,
        `solver` of the ODE family are accepted and ignored."""
        from eqgen.compare import simulate_and_compare

        r = self.resolve(params, init, init_source)  # every input problem before heavy work
        if samples is not None and samples < 2:
            raise UsageError("--samples must be at least 2")
        horizon = float(t_max) if t_max is not None else r.t_max
        if not (horizon > 0 and np.isfinite(horizon)):
            raise UsageError("--t-max must be a positive, finite time")
        exact = self.can_solve_exactly(params) and samples is None
        n_theory = int(samples or DEFAULT_SAMPLES)
        if replicas is None:
            replicas = 0 if exact else DEFAULT_COMPARE_REPLICAS
        check_replicas(int(replicas), n_theory, exact)
        self.check_sweep(self.problem(params, init, horizon),  # the theory, before simulating
                         None if exact else n_theory)
        start: dict[str, Any] = {}

        def simulate() -> eqgen.Solution:
            return self.simulate(params, init, d=d, seeds=seeds, seed=seed, t_max=t_max,
                                 save_at=save_at, progress=progress, init_source=init_source,
                                 test_samples=test_samples)

        def solve(sim: eqgen.Solution) -> eqgen.Solution:
            measured = sim.metadata["measured_start"]
            start.update(m=measured["m"], q=max(measured["q"], 0.0))
            horizon = max(float(sim.t[-1]), r.eta)  # a simulation that failed at once: t = 0
            return self.solve(params, dict(start), save_at=sim.t, t_max=horizon,
                              samples=samples, seed=seed, replicas=int(replicas or 0),
                              init_source="the simulation's measured initial overlaps")

        try:
            cmp = simulate_and_compare(simulate, solve)
        except NumericalError as e:
            if e.partial is not None and start:
                e.partial.metadata["theory_start"] = {**start, "source": "simulation, seed "
                                                      "means at t = 0"}
            raise
        cmp.metadata["theory_start"] = {**start, "source": "simulation, seed means at t = 0"}
        return cmp

    def latex(self) -> str:
        from eqgen.latex import dmft_document

        return dmft_document(self.equations)


__all__ = ["DmftModel", "DmftSpec", "SpecError"]


def horizon_warning(horizon: float, eta: float) -> str | None:
    """The DMFT runs K = round(t_max/η) steps (time is kη, `DmftProblem.steps`): say so when
    t_max is not a whole number of steps, since the last time is then not the one asked for."""
    steps = max(1, int(round(horizon / eta)))
    if abs(steps * eta - horizon) <= 1e-9 * max(1.0, horizon):
        return None
    return (f"t_max = {horizon:g} is not a whole number of steps η = {eta:g}: the DMFT runs "
            f"{steps} steps, to t = {steps * eta:g} (give a multiple of η)")
