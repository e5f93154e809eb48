"""`Model`: a checked spec and everything eqgen can do with it (derive, generate, solve).

Construction checks the whole spec (syntax, names, shapes, ranges, regime, initial Ω) without
any heavy work; derivation, code generation and JIT compilation happen on first use and are
cached (generated modules on disk by freshness key, compiled solvers in the process).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import eqgen
from eqgen.codegen import module as modfile
from eqgen.errors import Diagnostic, EqgenError, Interrupted, NumericalError, SpecError, UsageError
from eqgen.spec.committee import CommitteeSpec, Resolved, build_committee, resolve
from eqgen.spec.parser import parse_file


def load(path: str | Path) -> Model:
    """Parse and check a spec file; raises `SpecError` listing every problem found.

    Committee (two-layer ODE) specs give a `Model`; perceptron-on-mixture specs a `DmftModel`
    (the same interface, solved by the DMFT forward sweep)."""
    from eqgen.spec.dmft import is_dmft

    file = parse_file(path)
    if is_dmft(file):
        from eqgen.dmft_model import DmftModel

        return DmftModel(path, file)
    if build_committee(file).regime.reduction == "mean_field":  # `regime mean_field`
        from eqgen.mean_field import MeanFieldModel

        return MeanFieldModel(path, file)
    return Model(path, file)


def default_save_times(t_max: float, n_log: int = 160, n_lin: int = 41) -> np.ndarray:
    """0, a geometric grid over four decades below t_max, and a linear grid: good on log and
    linear axes alike."""
    lo = t_max * 1e-4
    grid = np.concatenate([[0.0], np.geomspace(lo, t_max, n_log), np.linspace(0, t_max, n_lin)])
    return np.unique(np.round(grid, 12))


def solve_times(save_at: Sequence[float] | None, t_max: float | None, default_t_max: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """The integration times (0 first) and which of them to report: the requested `save_at`
    times exactly, or the default grid up to `t_max` (else `default_t_max`); checked."""
    if save_at is not None:
        asked = np.asarray(list(save_at), dtype=float)
        ts = np.unique(asked)
        if ts.size == 0 or ts[0] < 0 or not np.all(np.isfinite(ts)):
            raise UsageError("--save-at needs finite times ≥ 0")
        check_save_at_within(ts, t_max)
        if ts[0] > 0:
            ts = np.concatenate([[0.0], ts])
        return ts, np.isin(ts, asked)
    horizon = float(t_max) if t_max is not None else default_t_max
    if not (horizon > 0 and np.isfinite(horizon)):
        raise UsageError("--t-max must be a positive, finite time")
    ts = default_save_times(horizon)
    return ts, np.ones_like(ts, dtype=bool)


def check_save_at_within(times: np.ndarray, t_max: float | None) -> None:
    """Refuse --save-at times beyond an explicit --t-max: one of the two would be ignored."""
    if t_max is not None and times.size and times.max() > float(t_max) * (1 + 1e-12):
        raise UsageError(f"--save-at time {times.max():g} is beyond --t-max {float(t_max):g}"
                         "\n  hint: leave out --t-max (the last --save-at time is the horizon), "
                         "or drop the later times")


@functools.cache
def _load_once(path: Path, key: str) -> ModuleType:
    """One module object per (file, freshness key) in a process, so that compiled solvers,
    cached by the identity of the module's functions, are reused by every `Model`."""
    return modfile.load_module(path)


class Model:
    """A model spec, checked; see `load`."""

    def __init__(self, path: str | Path, file: Any = None):
        self.path = Path(path)
        self.file = file if file is not None else parse_file(path)
        self.spec: CommitteeSpec = build_committee(self.file)
        self.defaults: Resolved = resolve(self.spec)
        self._check_theory(self.defaults)
        self._module: ModuleType | None = None

    # -- description --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def parameters(self) -> dict[str, float]:
        """Declared parameters with their default values, in declaration order."""
        return dict(self.defaults.params)

    def __repr__(self) -> str:
        """Name, family, states, parameters, regime, time unit and observables."""
        from eqgen.summary import model_text

        return model_text(self)

    def _repr_latex_(self) -> str:
        """The equations of motion, for notebooks (derives them on first use)."""
        from eqgen.summary import model_latex

        return model_latex(self)

    # -- checks ---------------------------------------------------------------------------------
    def _check_theory(self, r: Resolved) -> None:
        from eqgen.theories.checks import check_joint_size, regime_of

        checks = [lambda: regime_of(self.spec), lambda: check_joint_size(self.spec, r.p, r.k)]
        if not self._fresh_module_exists():
            # the symbolic checks (σ differentiable, ...) already passed when a fresh module
            # was generated from this very text; otherwise run them now (imports sympy)
            from eqgen.theories.committee import student_activation

            checks.append(lambda: student_activation(self.spec))
        problems = []  # every problem, not just the first
        for check in checks:
            try:
                check()
            except SpecError as e:
                problems += e.diagnostics
        if problems:
            raise SpecError(problems)

    def resolve(self, params: Mapping[str, float] | None = None,
                init: Mapping[str, Any] | None = None, init_source: str = "init") -> Resolved:
        """Numbers for this model with `params` overrides and `init` overrides, all checked.

        `init_source` names where `init` came from (e.g. the --init file) in error messages.
        """
        unknown = [k for k in (init or {}) if k not in ("Q", "M", "P", "a", "a_star")]
        if unknown:
            raise SpecError(Diagnostic(
                f"unknown initial state(s) {', '.join(unknown)}", init_source,
                hint="initial states are Q, M, P, a and a_star"))
        try:
            arrays = {k: np.asarray(v, dtype=float) for k, v in (init or {}).items()}
        except (TypeError, ValueError):
            raise SpecError(Diagnostic("initial states must be numbers or nested lists of "
                                       "numbers", init_source)) from None
        r = resolve(self.spec, params, arrays, init_source=init_source)
        if params:
            self._check_theory(r)
        return r

    # -- compilation ----------------------------------------------------------------------------
    @functools.cached_property
    def equations(self) -> Any:
        """The derived equations (sympy), computed on first use."""
        from eqgen.theories.committee import derive

        return derive(self.spec)

    def generated_source(self) -> str:
        """The text of the generated JAX module (deterministic)."""
        from eqgen.codegen.committee import module_source

        eq = self.equations
        key = self._key
        extra = f"Regime: {eq.regime.summary}.\nTime: {eq.regime.time_unit}."
        if self.title:
            extra = self.title.replace('"', "'") + "\n\n" + extra
        head = modfile.header(self.name, "", str(self.path), self.spec.hash, key, extra)
        return module_source(eq, header=head, defaults=self.parameters)

    def generate(self, out_dir: str | Path = "generated") -> Path:
        """Write `out_dir/<model>.py`, then import and evaluate it once as a check."""
        text = self.generated_source()
        path = Path(out_dir) / f"{self.name}.py"
        modfile.check_source(text, str(path))
        modfile.write_atomic(path, text)
        self._smoke_test(modfile.load_module(path), evaluate=True)
        return path

    @functools.cached_property
    def _key(self) -> str:
        """The freshness key of this spec's generated module."""
        return modfile.freshness_key(self.spec.source.text)

    def _fresh_module_exists(self) -> bool:
        if getattr(self, "_fresh_seen", False):  # once fresh, fresh for this process
            return True
        key = self._key
        self._fresh_seen = any(p.exists() and modfile.read_key(p) == key
                               for p in self._candidates())
        return self._fresh_seen

    def _candidates(self) -> list[Path]:
        key = self._key
        shipped = self.path.resolve().parent.parent / "generated" / f"{self.name}.py"
        cached = modfile.cache_dir() / f"{self.name}-{key[:16]}.py"
        return [shipped, cached]

    @property
    def module(self) -> ModuleType:
        """The generated module, reused from disk when its freshness key matches."""
        if self._module is None:
            import eqgen.runtime  # noqa: F401  (float64 and the optional compilation cache first)

            key = self._key
            for path in self._candidates():
                if path.exists() and modfile.read_key(path) == key:
                    # checked (traced and evaluated) when it was written
                    self._module = _load_once(path, key)
                    return self._module
            path = self._candidates()[-1]
            text = self.generated_source()
            modfile.check_source(text, str(path))
            modfile.write_atomic(path, text)
            module = _load_once(path, key)
            self._smoke_test(module)
            self._module = module
        return self._module

    def _smoke_test(self, module: ModuleType, evaluate: bool = False) -> None:
        """Trace the generated functions (and, with `evaluate`, run them once compiled), so a
        user never meets an error inside a solver."""
        import jax
        import jax.numpy as jnp

        r = self._smoke_state()
        state = {k: jnp.asarray(v) for k, v in r.init.items()}
        params = {k: jnp.asarray(v) for k, v in r.params.items()}
        if evaluate:
            d = jax.jit(module.vector_field)(0.0, state, params)
            obs = jax.jit(module.observables)(state, params)
        else:
            d = jax.eval_shape(module.vector_field, 0.0, state, params)
            obs = jax.eval_shape(module.observables, state, params)
        if evaluate and not all(bool(jnp.all(jnp.isfinite(v))) for v in
                                (*d.values(), *obs.values())):
            raise EqgenError(f"internal error: generated module {module.__name__} gives "
                             "non-finite values at the spec's initial state")
        if set(d) != set(module.STATES):
            raise EqgenError(f"internal error: generated module {module.__name__} returns "
                             f"{sorted(d)}")

    def _smoke_state(self) -> Resolved:
        """The state and parameters the smoke test evaluates the generated module at."""
        return self.defaults

    # -- numerics -------------------------------------------------------------------------------
    def vector_field(self, params: Mapping[str, float] | None = None) -> Callable:
        """The jitted right-hand side `f(t, state)` → dict of time derivatives.

        `state` maps Q, M, P (and optionally a, a_star) to arrays. States left out take neutral
        values, not the spec's `init`: Q = I, M = 0, P = I, a from `second_layer = fixed(...)`
        (else 1) and a* = 1.
        """
        import jax
        import jax.numpy as jnp

        from eqgen.runtime import ode  # noqa: F401  (enables float64)

        r = resolve(self.spec, params, use_spec_init=False)
        p = {k: jnp.asarray(v) for k, v in r.params.items()}
        base = {k: jnp.asarray(v) for k, v in r.init.items()}
        vf = jax.jit(self.module.vector_field)

        def f(t: float, state: Mapping[str, Any]) -> dict[str, Any]:
            full = {**base, **{k: jnp.asarray(v, dtype=jnp.float64) for k, v in state.items()}}
            return vf(t, full, p)

        return f

    def solve(self, params: Mapping[str, float] | None = None,
              init: Mapping[str, Any] | None = None, save_at: Sequence[float] | None = None,
              t_max: float | None = None, rtol: float = 1e-8, atol: float = 1e-10,
              solver: str = "tsit5", max_steps: int | None = None,
              init_source: str = "init", reduction: str | None = None,
              progress: bool | None = None) -> eqgen.Solution:
        """Integrate the ODEs; see docs/index.md, The Python API. Raises `NumericalError` on
        failure, and `eqgen.Interrupted` (a `KeyboardInterrupt` holding the solution up to
        then in `.partial`) on Ctrl-C. `reduction="mean_field"` solves the large-p reduction
        instead (`eqgen.mean_field`). `progress` draws a bar over t for a solve that takes
        more than a second (None: only on a terminal)."""
        from eqgen.analysis.plateaus import annotate as annotate_plateaus
        from eqgen.runtime import health, ode
        from eqgen.runtime.solution import Solution

        if reduction is not None:
            return self.reduced(reduction).solve(params, init, save_at, t_max, rtol, atol,
                                                 solver, max_steps, init_source,
                                                 progress=progress)
        sizes = self._sizes(params)  # memory before the Ω check (seconds at large widths)
        if sizes is not None:
            n_times = len(solve_times(save_at, t_max, sizes.t_max)[0])
            self.check_theory_inputs(sizes, n_times, rtol, atol, solver, max_steps)
        r = self.resolve(params, init, init_source)
        if max_steps is not None and max_steps < 1:
            raise UsageError("--max-steps must be at least 1")
        ts, keep = solve_times(save_at, t_max, r.t_max)
        if sizes is None:  # before heavy work: what the check on `sizes` would have said
            self.check_theory_inputs(r, len(ts), rtol, atol, solver, max_steps)
        module = self.module
        meta = {
            "model": self.name, "title": self.title, "family": self.family,
            "parameters": r.params, "p": r.p, "k": r.k, "regime": module.REGIME,
            "rtol": rtol, "atol": atol, "spec_sha256": self.spec.hash,
            "eqgen": eqgen.__version__,
        }

        def solution(raw: ode.RawSolution) -> Solution:
            n = len(raw.t)
            sel = keep[:n]
            info = {**meta, "solver": raw.solver, "steps": raw.num_steps}
            sol = Solution(raw.t[sel], {k: v[sel] for k, v in raw.observables.items()},
                           {k: v[sel] for k, v in raw.states.items()}, info)
            return annotate_plateaus(sol)  # metadata["plateaus"] (eqgen.analysis.plateaus)

        from eqgen.simulate.progress import over_time

        try:
            with over_time(f"solving {self.name}", ts[0], ts[-1], progress) as report:
                raw = ode.solve(module.vector_field, module.observables, r.init, r.params, ts,
                                evolving=module.EVOLVING, rtol=rtol, atol=atol, solver=solver,
                                max_steps=max_steps or ode.DEFAULT_MAX_STEPS,
                                state_order=module.STATES, observable_order=module.OBSERVABLES,
                                cache_key=self._key, progress=report)
            health.check_overlaps(raw, rtol)  # Ω must stay positive semi-definite
        except NumericalError as e:
            if isinstance(e.partial, ode.RawSolution):
                health.explain_growth(e)  # a divergence, whatever the solver ran out of
                e.partial = solution(e.partial).mark_partial(e)
            raise
        except Interrupted as e:
            e.partial = solution(e.partial).mark_partial(e)
            raise
        return solution(raw)

    def sweep(self, grid: Any, params: Mapping[str, float] | None = None,
              **kwargs: Any) -> Any:
        """Solve a grid of parameter values, e.g. `grid={"gamma": [0.5, 1], "Delta": [0, 0.1]}`,
        in one vmapped solve per shape group; a grid over `kappa` and `delta` (regime exponents)
        gives the phase diagram. Other arguments as `solve` (`d_ref` for the phase diagram).
        Returns an `eqgen.sweep.SweepResult`; see docs/sweeps.md."""
        from eqgen.phase_diagram import is_phase_grid, phase_sweep
        from eqgen.sweep import sweep

        if is_phase_grid(self, grid):
            return phase_sweep(self, grid, params, **kwargs)
        return sweep(self, grid, params, **kwargs)

    def reduced(self, reduction: str) -> Model:
        """This model in a reduction of its ODE: `mean_field` (docs/theory.md, Mean-field
        reduction)."""
        from eqgen.mean_field import reduced

        return reduced(self, reduction)

    def simulate(self, params: Mapping[str, float] | None = None,
                 init: Mapping[str, Any] | None = None, *, d: int, seeds: int = 4,
                 seed: int = 0, t_max: float | None = None,
                 save_at: Sequence[float] | None = None, progress: bool | None = None,
                 init_source: str = "init", test_samples: int = 0) -> eqgen.Solution:
        """Finite-d online SGD of this model (docs/theory.md, Setting), `seeds` trajectories at
        input dimension `d`; see `eqgen.simulate.committee`.

        Returns a `Solution` at the simulated times nearest to `save_at` (or on a default grid
        up to `t_max`): observables are seed means with `<name>_stderr` (standard error over
        seeds) beside them, states are the seed means of the measured overlaps (the evolving
        ones followed by `<name>_stderr`), and the metadata holds d, seeds, seed, the steps and
        the throughput. `test_samples = N > 0` adds `risk_test` (with `risk_test_stderr`): the
        loss on N fresh held-out samples per seed and output time, beside the analytic `risk`.
        `progress` draws a bar (None: only on a terminal). Raises `UsageError` for a bad d,
        seeds, test_samples or time grid and `NumericalError` when SGD diverges.
        """
        from eqgen.simulate import committee as sim

        d = sim.check_dimension(d)
        seeds, seed = sim.check_seeds(seeds, seed)
        test_samples = sim.check_test_samples(test_samples)
        r = self.resolve(params, init, init_source)
        times = self._output_times(r, save_at, t_max, n_log=40, n_lin=21)
        return sim.simulate(self, r, set(init or {}), d=d, seeds=seeds, seed=seed,
                            times=times, progress=progress, test_samples=test_samples)

    def compare(self, params: Mapping[str, float] | None = None,
                init: Mapping[str, Any] | None = None, *, d: int, seeds: int = 4,
                seed: int = 0, t_max: float | None = None,
                save_at: Sequence[float] | None = None, rtol: float = 1e-8,
                atol: float = 1e-10, solver: str = "tsit5", max_steps: int | None = None,
                progress: bool | None = None, init_source: str = "init",
                test_samples: int = 0) -> eqgen.Solution:
        """Simulate, then solve the ODE from the simulation's *measured* initial overlaps at
        the simulated times, and put both side by side (`eqgen.compare.compare`): columns
        `<name>` (theory), `<name>_sim` and `<name>_sim_stderr` for each observable, and with
        `test_samples = N > 0` the held-out `risk_test_sim` and `risk_test_sim_stderr` after
        the risk's."""
        from eqgen.compare import simulate_and_compare

        sizes = self._sizes(params)  # memory before the Ω check (seconds at large widths)
        if sizes is not None:
            n_times = len(self._output_times(sizes, save_at, t_max, n_log=40, n_lin=21)) + 1
            self.check_theory_inputs(sizes, n_times, rtol, atol, solver, max_steps)
        r = self.resolve(params, init, init_source)
        times = self._output_times(r, save_at, t_max, n_log=40, n_lin=21)
        if sizes is None:  # what the check on `sizes` would have said
            self.check_theory_inputs(r, len(times) + 1, rtol, atol, solver, max_steps)

        def simulate() -> eqgen.Solution:
            return self.simulate(params, init, d=d, seeds=seeds, seed=seed, t_max=t_max,
                                 save_at=save_at, progress=progress, init_source=init_source,
                                 test_samples=test_samples)

        def solve(sim: eqgen.Solution) -> eqgen.Solution:
            start = {name: sim.states[name][0] for name in self.module.STATES}
            return self.solve(params, start, save_at=sim.t, rtol=rtol, atol=atol,
                              solver=solver, max_steps=max_steps,
                              init_source="the simulation's measured initial overlaps")

        return simulate_and_compare(simulate, solve)

    def _sizes(self, params: Mapping[str, float] | None) -> Resolved | None:
        """The parameters, widths and horizon at `params` without the initial state (whose Ω
        check takes seconds at widths in the thousands), so that a solve too large for the
        memory is refused first; None when they have a problem, which the full `resolve`
        then reports together with any other."""
        try:
            return resolve(self.spec, params, overlaps=False)
        except (SpecError, UsageError):
            return None

    def check_warnings(self) -> list[str]:
        """What `eqgen check` says of a spec that is valid but cannot be solved as it stands
        on this machine: a memory estimate at the spec's own values above what is available."""
        from eqgen.runtime import health

        r = self._sizes(None)
        try:
            if r is not None:
                health.check_committee_solve(self.spec, r.p, r.k,
                                             len(default_save_times(r.t_max)))
        except UsageError as e:
            return [str(e).replace("\n  hint: ", "; ")]
        return []

    def check_theory_inputs(self, r: Resolved, n_times: int, rtol: float, atol: float,
                            solver: str, max_steps: int | None) -> None:
        """Everything about a solve of the ODE at the numbers `r` and `n_times` output times
        that can be checked before any heavy work: tolerances, solver, step limit and the
        memory estimate. `compare` calls it before simulating, so that a theory that would
        be refused is refused before the simulation, not after it."""
        from eqgen.runtime import health
        from eqgen.runtime.ode import choose_solver

        if not (rtol > 0 and atol > 0):
            raise UsageError("--rtol and --atol must be positive")
        if max_steps is not None and max_steps < 1:
            raise UsageError("--max-steps must be at least 1")
        choose_solver(solver, rtol)
        health.check_committee_solve(self.spec, r.p, r.k, n_times)

    def _output_times(self, r: Resolved, save_at: Sequence[float] | None,
                      t_max: float | None, **grid: int) -> np.ndarray:
        """The requested output times (checked), or a default grid up to t_max."""
        if save_at is not None:
            ts = np.asarray(list(save_at), dtype=float)
            if ts.size == 0 or not np.all(np.isfinite(ts)) or ts.min() < 0:
                raise UsageError("--save-at needs finite times ≥ 0")
            check_save_at_within(ts, t_max)
            return np.unique(ts)
        horizon = float(t_max) if t_max is not None else r.t_max
        if not (horizon > 0 and np.isfinite(horizon)):
            raise UsageError("--t-max must be a positive, finite time")
        return default_save_times(horizon, **grid)

    def latex(self) -> str:
        """The derived equations as a standalone LaTeX document."""
        from eqgen.latex import committee_document

        return committee_document(self.equations)
