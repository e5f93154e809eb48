"""`MeanFieldModel`: a committee model solved in its mean-field (large-p) reduction.

The state is M (p×k) and q⊥ (p) with Q = MMᵀ + diag(q⊥) and P = I (docs/theory.md, Regimes;
derivation and
what it neglects in `eqgen.theories.mean_field`). A model is reduced when its spec says
`regime mean_field`, or on request: `model.solve(..., reduction="mean_field")` and
`eqgen solve SPEC --reduction mean_field` for a gradient-flow spec. Nothing here forms a p×p
matrix, so p = 10⁴ fits in a few hundred MB.

Initial state, in order of precedence: `init` given to `solve` (`M` and `q_perp`, or `Q` of the
reduced form with `P = I`), the spec's `init` (same), or the spec's `init random(d, seed)` (the
same weights as the full model draws, reduced row by row: M = W W*ᵀ/d,
q⊥_j = |w_j|²/d − |M_j|²).

Output: observables risk and excess_risk; states `M` and `q_perp` (CSV columns `M[j,r]`,
`q_perp[j]`). Above `STATE_COLUMNS` state entries the states are left out of the Solution
unless `keep_states=True` (the CSV of p = 10⁴, k = 2 would have 30 000 columns).
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
from eqgen.errors import Diagnostic, SpecError, UsageError
from eqgen.model import Model, solve_times
from eqgen.spec.committee import Resolved, build_committee, resolve
from eqgen.spec.parser import parse_file
from eqgen.spec.values import EvalError, evaluate

STATE_COLUMNS = 4096  # default limit on state entries kept in a Solution (CSV columns)
INIT_NAMES = ("M", "q_perp", "Q", "P", "a", "a_star")
REDUCED_FORM_TOL = 1e-8  # |Q_jl − (MMᵀ)_jl| allowed off the diagonal (relative to max |Q|)


def _no_observables(state: Any, params: Any) -> dict:
    """Observables are evaluated after the solve, one save time at a time (see `solve`)."""
    return {}


@functools.cache
def _observables_over_time(observables: Callable) -> Callable:
    import jax

    @jax.jit
    def run(states, params):  # noqa: ANN001, ANN202
        # one time after another (lax.map), so memory stays that of a single evaluation
        return jax.lax.map(lambda s: observables(s, params), states)

    return run


class MeanFieldModel(Model):
    """A committee model in its mean-field reduction (state M, q⊥); see the module doc."""

    reduction = "mean_field"

    def __init__(self, path: str | Path, file: Any = None):
        self.path = Path(path)
        self.file = file if file is not None else parse_file(path)
        self.spec = build_committee(self.file)
        self.defaults: Resolved = resolve(self.spec, overlaps=False)
        self._check_theory(self.defaults)
        self._module: ModuleType | None = None
        from eqgen.theories.checks import regime_of

        if regime_of(self.spec).name != "gradient_flow" or self.spec.student.trained:
            from eqgen.theories.mean_field import check_reducible

            check_reducible(self.spec, self.full_equations)
        if self.own and self.spec.random_init is None:
            self.resolve()  # the spec's own initial state is of the reduced form: `eqgen check`

    @property
    def own(self) -> bool:
        """Whether the spec itself asks for the reduction (`regime mean_field`)."""
        return self.spec.regime.reduction == "mean_field"

    # -- compilation ----------------------------------------------------------------------------
    @functools.cached_property
    def full_equations(self) -> Any:
        from eqgen.theories.committee import derive

        return derive(self.spec)

    @functools.cached_property
    def equations(self) -> Any:
        """The reduced equations (`eqgen.theories.mean_field.MeanFieldEquations`)."""
        from eqgen.theories.mean_field import derive_mean_field

        return derive_mean_field(self.spec, self.full_equations)

    def generated_source(self) -> str:
        from eqgen.codegen.mean_field import module_source

        eq = self.equations
        r = eq.full.regime
        extra = (f"Mean-field reduction: state M, q_perp; Q = MMᵀ + diag(q⊥), "
                 f"P = I.\nRegime: {r.summary}.\nTime: {r.time_unit}.")
        if self.title:
            extra = self.title.replace('"', "'") + "\n\n" + extra
        head = modfile.header(self.name, "", str(self.path), self.spec.hash, self._key, extra)
        return module_source(eq, header=head, defaults=self.parameters)

    @functools.cached_property
    def _key(self) -> str:
        text = self.spec.source.text
        return modfile.freshness_key(text if self.own else text + "\n# reduction mean_field")

    def _candidates(self) -> list[Path]:
        cached = modfile.cache_dir() / f"{self.name}-mean_field-{self._key[:16]}.py"
        if not self.own:
            return [cached]
        shipped = self.path.resolve().parent.parent / "generated" / f"{self.name}.py"
        return [shipped, cached]

    def _smoke_state(self) -> Resolved:
        """The reduced state (M, q⊥) of the spec: what the reduced module is evaluated at."""
        return self.resolve()

    # -- initial state --------------------------------------------------------------------------
    def resolve(self, params: Mapping[str, float] | None = None,
                init: Mapping[str, Any] | None = None, init_source: str = "init") -> Resolved:
        """Numbers for this model: parameters and the reduced initial state M, q_perp, a,
        a_star (see the module doc). Raises `SpecError` for a state that is not of the reduced
        form, P ≠ I, negative q⊥ or wrong shapes."""
        unknown = [k for k in (init or {}) if k not in INIT_NAMES]
        if unknown:
            raise SpecError(Diagnostic(
                f"unknown initial state(s) {', '.join(unknown)}", init_source,
                hint="the mean-field state is M and q_perp (or Q of the form MMᵀ + diag(q⊥)); "
                "also P (must be the identity), a and a_star"))
        try:
            given = {k: np.asarray(v, dtype=float) for k, v in (init or {}).items()}
        except (TypeError, ValueError):
            raise SpecError(Diagnostic("initial states must be numbers or nested lists of "
                                       "numbers", init_source)) from None
        r = resolve(self.spec, params, overlaps=False)
        if params:
            self._check_theory(r)
        spec, p, k = self.spec, r.p, r.k
        errors: list[Diagnostic] = []

        def from_spec(name: str) -> np.ndarray | None:
            if name not in spec.init:
                return None
            try:
                return np.asarray(evaluate(spec.init[name], r.params), dtype=float)
            except EvalError as e:
                errors.append(e.diagnostic(spec.source))
                return None

        where: dict[str, str | None] = {}
        values: dict[str, np.ndarray] = {}
        # Q and q_perp are alternatives: one given to solve() replaces the spec's other one
        # (which is then not evaluated: a p × p identity(p) is refused at p = 10⁴).
        alternative = {"Q": "q_perp", "q_perp": "Q"}
        for name in INIT_NAMES:
            if name in given:
                values[name], where[name] = given[name], init_source
            elif alternative.get(name) in given:
                continue
            elif (v := from_spec(name)) is not None:
                values[name], where[name] = v, None
        if errors:
            raise SpecError(errors)
        if "M" not in values or not {"q_perp", "Q"} & set(values):
            if spec.random_init is None:
                raise SpecError(Diagnostic("the mean-field state needs M and q_perp (or Q)",
                                           init_source, hint='e.g. {"M": [[...]], '
                                           '"q_perp": [...]}, or `init random(d = 1000, '
                                           'seed = 0)` in the spec'))
            M, q = self._random_state(r)
            values.setdefault("M", M)
            if "Q" not in values:
                values.setdefault("q_perp", q)

        def fail(msg: str, name: str, hint: str) -> None:
            src = where.get(name)
            if src is None:
                pos = spec.init[name].pos if name in spec.init else spec.pos
                errors.append(spec.diagnostic(msg, pos, hint))
            else:
                errors.append(Diagnostic(msg, src, hint=hint))

        def shaped(name: str, shape: tuple[int, ...], scalar_ok: bool) -> np.ndarray | None:
            v = values[name]
            if v.ndim == 0 and scalar_ok:
                v = np.full(shape, float(v))
            if v.shape != shape:
                fail(f"initial {name} has shape {'×'.join(map(str, v.shape)) or 'scalar'}, but "
                     f"p = {p} and k = {k} need {'×'.join(map(str, shape))}", name,
                     "fix the initial value")
                return None
            if not np.all(np.isfinite(v)):
                fail(f"initial {name} has non-finite entries", name, "check the initial value")
                return None
            return v

        M = shaped("M", (p, k), True)
        if "P" in values:
            P = shaped("P", (k, k), False)
            if P is not None and not np.allclose(P, np.eye(k), atol=1e-8, rtol=0):
                fail("the mean-field reduction assumes P = I (orthonormal teacher)", "P",
                     "drop P, or solve the full ODE for a general teacher overlap")
        q = None
        if "q_perp" in values:
            q = shaped("q_perp", (p,), True)
        elif M is not None:
            Q = values["Q"]
            if Q.ndim == 0:
                Q = float(Q) * np.eye(p)
            values["Q"] = Q
            Q = shaped("Q", (p, p), False)
            if Q is not None:
                off = Q - M @ M.T
                np.fill_diagonal(off, 0.0)
                dev = float(np.abs(off).max()) if p > 1 else 0.0
                if dev > REDUCED_FORM_TOL * max(1.0, float(np.abs(Q).max())):
                    fail(f"initial Q is not of the reduced form MMᵀ + diag(q⊥): an off-diagonal "
                         f"entry differs from (MMᵀ)_jl by {dev:.3g}", "Q",
                         "give q_perp instead of Q (the reduction sets Q_jl = M_j·M_l for "
                         "j ≠ l), or solve the full ODE")
                q = np.diagonal(Q) - np.sum(M**2, axis=1)
        if q is not None:
            lo = float(q.min())
            if lo < -1e-10:
                fail(f"q_perp must be ≥ 0 (Q_jj ≥ |M_j|²), got {lo:.3g}",
                     "q_perp" if "q_perp" in values else "Q",
                     "q⊥_j = Q_jj − Σ_r M_jr² is a squared norm")
            q = np.maximum(q, 0.0)
        a = self._readout(values, "a", p, r, errors, fail)
        a_star = self._readout(values, "a_star", k, r, errors, fail)
        if errors:
            raise SpecError(errors)
        init = {"M": M, "q_perp": q, "a": a, "a_star": a_star}
        return Resolved(r.params, p, k, r.c_p, r.c_k, r.gamma, r.batch, r.Delta, r.rate,
                        r.t_max, init)

    def _readout(self, values: dict[str, np.ndarray], name: str, n: int, r: Resolved,
                 errors: list[Diagnostic], fail: Callable) -> np.ndarray | None:
        v = values.get(name)
        if v is None and name == "a" and self.spec.student.second_layer is not None:
            try:
                v = np.asarray(evaluate(self.spec.student.second_layer, r.params), dtype=float)
            except EvalError as e:
                errors.append(e.diagnostic(self.spec.source))
                return None
        v = np.asarray(1.0 if v is None else v, dtype=float)
        if v.ndim == 0:
            v = np.full(n, float(v))
        if v.shape != (n,):
            fail(f"initial {name} must have {n} entries, got shape {v.shape}", name,
                 "one number per unit, or a single number for all")
            return None
        return v

    def _random_state(self, r: Resolved) -> tuple[np.ndarray, np.ndarray]:
        """M and q⊥ of the weights `init random(d, seed)` draws (same stream as the full
        model's `random_weights`), row block by row block: no p×d or p×p array."""
        ri = self.spec.random_init
        try:
            d = float(evaluate(ri.d, r.params))
            seed = float(evaluate(ri.seed, r.params))
            scale = float(evaluate(ri.scale, r.params)) if ri.scale is not None else 1.0
        except EvalError as e:
            raise SpecError(e.diagnostic(self.spec.source)) from None
        if not (d.is_integer() and r.k <= d <= 10**6 and seed.is_integer() and seed >= 0):
            raise SpecError(self.spec.diagnostic(
                f"random init needs a whole d with k ≤ d ≤ 10⁶ and a whole seed ≥ 0 (got d = "
                f"{d:g}, seed = {seed:g})", ri.pos, "e.g. init random(d = 1000, seed = 0)"))
        if ri.teacher != "orthonormal":
            raise SpecError(self.spec.diagnostic(
                "the mean-field reduction assumes P = I: a Gaussian teacher has P ≠ I at "
                "finite d", ri.pos, "use init random(..., teacher = orthonormal)"))
        d, p, k = int(d), r.p, r.k
        rng = np.random.default_rng(int(seed))
        Ws = rng.standard_normal((k, d))
        qr, _ = np.linalg.qr(Ws.T)
        Ws = qr.T * np.sqrt(d)
        M = np.empty((p, k))
        norms = np.empty(p)
        rows = max(1, 2**22 // d)
        for start in range(0, p, rows):
            W = scale * rng.standard_normal((min(rows, p - start), d))
            M[start:start + len(W)] = W @ Ws.T / d
            norms[start:start + len(W)] = np.sum(W**2, axis=1) / d
        return M, norms - np.sum(M**2, axis=1)

    # -- numerics -------------------------------------------------------------------------------
    def vector_field(self, params: Mapping[str, float] | None = None) -> Callable:
        """The jitted reduced right-hand side `f(t, state)`, state {M, q_perp[, a, a_star]}."""
        import jax
        import jax.numpy as jnp

        from eqgen.runtime import ode  # noqa: F401  (float64)

        r = resolve(self.spec, params, overlaps=False)
        pj = {k: jnp.asarray(v) for k, v in r.params.items()}
        vf = jax.jit(self.module.vector_field)
        a0 = {"a": np.ones(r.p), "a_star": np.ones(r.k)}

        def f(t: float, state: Mapping[str, Any]) -> dict[str, Any]:
            full = {**a0, **state}
            return vf(t, {k: jnp.asarray(v, dtype=jnp.float64) for k, v in full.items()}, pj)

        return f

    def solve(self, params: Mapping[str, float] | None = None,
              init: Mapping[str, Any] | None = None, save_at: Sequence[float] | None = None,
              t_max: float | None = None, rtol: float = 1e-8, atol: float = 1e-10,
              solver: str = "tsit5", max_steps: int | None = None,
              init_source: str = "init", reduction: str | None = "mean_field",
              progress: bool | None = None, keep_states: bool | None = None
              ) -> eqgen.Solution:
        """Integrate the reduced ODE; the arguments are those of `Model.solve`, plus
        `keep_states` (None: keep M and q_perp when they have at most `STATE_COLUMNS`
        entries)."""
        import jax.numpy as jnp

        from eqgen.runtime import ode
        from eqgen.runtime.solution import Solution

        if reduction not in (None, "mean_field"):
            raise UsageError(f"unknown reduction {reduction!r}; the only one is mean_field")
        r = self.resolve(params, init, init_source)
        if max_steps is not None and max_steps < 1:
            raise UsageError("--max-steps must be at least 1")
        ts, keep = solve_times(save_at, t_max, r.t_max)
        if not (rtol > 0 and atol > 0):
            raise UsageError("--rtol and --atol must be positive")
        module = self.module
        params_j = {k: jnp.asarray(v) for k, v in r.params.items()}
        entries = r.p * (r.k + 1)
        kept = keep_states if keep_states is not None else entries <= STATE_COLUMNS
        meta = {
            "model": self.name, "title": self.title, "family": self.family,
            "reduction": "mean_field", "parameters": r.params, "p": r.p, "k": r.k,
            "regime": module.REGIME, "rtol": rtol, "atol": atol, "spec_sha256": self.spec.hash,
            "eqgen": eqgen.__version__,
        }
        if not kept:
            meta["states_left_out"] = (f"{entries} state entries (M, q_perp) exceed "
                                       f"{STATE_COLUMNS}: pass keep_states=True to keep them")

        def solution(raw: ode.RawSolution) -> Solution:
            """The risk evaluated after the solve, one save time at a time (no p×p array);
            also on the times before a failure."""
            sel = keep[:len(raw.t)]
            states_j = {k: jnp.asarray(v) for k, v in raw.states.items()}
            obs = _observables_over_time(module.observables)(states_j, params_j)
            obs = {k: np.asarray(obs[k])[sel] for k in module.OBSERVABLES}
            states = {k: raw.states[k][sel] for k in module.EVOLVING} if kept else {}
            return Solution(raw.t[sel], obs, states,
                            {**meta, "solver": raw.solver, "steps": raw.num_steps})

        from eqgen.simulate.progress import over_time

        try:
            with over_time(f"solving {self.name} (mean field)", ts[0], ts[-1],
                           progress) as report:
                raw = ode.solve(module.vector_field, _no_observables, r.init, r.params, ts,
                                evolving=module.EVOLVING, rtol=rtol, atol=atol, solver=solver,
                                max_steps=max_steps or ode.DEFAULT_MAX_STEPS,
                                state_order=module.STATES, observable_order=(),
                                progress=report)
        except (eqgen.NumericalError, eqgen.Interrupted) as e:
            if isinstance(e.partial, ode.RawSolution):
                e.partial = solution(e.partial).mark_partial(e)
            raise
        return solution(raw)

    def simulate(self, params: Mapping[str, float] | None = None,
                 init: Mapping[str, Any] | None = None, **kwargs: Any) -> eqgen.Solution:
        """Finite-d SGD of the same network (the full model's simulator: it measures Q, M,
        P from the weights); see `Model.simulate`."""
        return _FullModel(self.path, self.file).simulate(params, init, **kwargs)

    def compare(self, params: Mapping[str, float] | None = None,
                init: Mapping[str, Any] | None = None, *, d: int, seeds: int = 4,
                seed: int = 0, t_max: float | None = None,
                save_at: Sequence[float] | None = None, rtol: float = 1e-8,
                atol: float = 1e-10, solver: str = "tsit5", max_steps: int | None = None,
                progress: bool | None = None, init_source: str = "init",
                test_samples: int = 0) -> eqgen.Solution:
        """Simulate, then solve the reduced ODE from the simulation's measured M and
        q⊥_j = Q_jj − |M_j|² (its O(d^{-1/2}) off-diagonal Q⊥ is dropped, as the reduction
        does); see `Model.compare`."""
        from eqgen.compare import simulate_and_compare
        from eqgen.runtime.ode import choose_solver

        if not (rtol > 0 and atol > 0):  # the theory's inputs, before the simulation
            raise UsageError("--rtol and --atol must be positive")
        if max_steps is not None and max_steps < 1:
            raise UsageError("--max-steps must be at least 1")
        choose_solver(solver, rtol)

        def simulate() -> eqgen.Solution:
            return self.simulate(params, init, d=d, seeds=seeds, seed=seed, t_max=t_max,
                                 save_at=save_at, progress=progress, init_source=init_source,
                                 test_samples=test_samples)

        def solve(sim: eqgen.Solution) -> eqgen.Solution:
            M, Q = sim.states["M"][0], sim.states["Q"][0]
            start = {"M": M, "q_perp": np.diagonal(Q) - np.sum(M**2, axis=1),
                     "a": sim.states["a"][0] if "a" in sim.states else 1.0}
            return self.solve(params, start, save_at=sim.t, rtol=rtol, atol=atol,
                              solver=solver, max_steps=max_steps, keep_states=True,
                              init_source="the simulation's measured initial overlaps")

        return simulate_and_compare(simulate, solve)

    def latex(self) -> str:
        """The full equations' document with a section on the reduction."""
        from eqgen.latex import committee_document

        doc = committee_document(self.full_equations)
        section = "\n".join([
            "\\subsection*{Mean-field reduction}",
            "State $M$ ($p\\times k$) and $q^\\perp$ ($p$), with $Q = MM^\\top + "
            "\\mathrm{diag}(q^\\perp)$ and $P = I$. By Stein's lemma $I_3(1,2,3) = C_{12} "
            "A(C_{11}, C_{13}, C_{33}) + C_{23} B(C_{11}, C_{13}, C_{33})$, and",
            "\\begin{align}",
            "\\frac{dM_{jr}}{dt} &= a_j \\Big[ M_{jr} \\sum_c u_c A_{jc} + \\sum_l u_l B_{jl} "
            "M_{lr} + u_r B_{jr} \\Big] \\\\",
            "\\frac{dq^\\perp_j}{dt} &= 2 a_j\\, \\mathbb{E}[\\mathcal{E}\\, \\sigma'(\\lambda_j)"
            "\\, \\lambda^\\perp_j] = 2 a_j q^\\perp_j \\Big[ \\sum_c u_c A_{jc} + u_j B_{jj} "
            "\\Big]",
            "\\end{align}",
            "where $\\lambda^\\perp_j = \\lambda_j - \\sum_r M_{jr}\\nu_r$ has covariance "
            "$q^\\perp_j$ with $\\lambda_j$ and none with the other fields. "
            + NEGLECTED_LATEX,
            "",
        ])
        return doc.replace("\\end{document}", section + "\\end{document}")


class _FullModel(Model):
    """The full committee ODE of a `regime mean_field` spec: what its simulator drives. Its
    generated module is kept apart from the shipped reduced one (another freshness key)."""

    @functools.cached_property
    def _key(self) -> str:
        from eqgen.codegen import module as modfile

        return modfile.freshness_key(self.spec.source.text + "\n# full ODE (not reduced)")


# What the reduction neglects (the text of eqgen.codegen.mean_field.NEGLECTED, in LaTeX).
NEGLECTED_LATEX = (
    "Neglected: the off-teacher student--student overlaps "
    "$Q^\\perp_{jl} = Q_{jl} - (MM^\\top)_{jl}$ ($j \\neq l$) are held at 0. The full ODE creates "
    "them at rate $-c_p a_j a_l (q^\\perp_j + q^\\perp_l)\\, \\mathbb{E}[\\sigma'(\\lambda_j)"
    "\\sigma'(\\lambda_l)] = O(c_p)$ and they act back through $p$ terms weighted by $c_p$: with "
    "$c_p = \\frac{1}{p}$ the reduced trajectory is off by $O(\\frac{t}{p})$. Random initial "
    "weights at dimension $d$ add $Q^\\perp_{jl} = O(d^{-1/2})$, also dropped. Gradient flow "
    "only: the SGD variance term $O(\\frac{\\gamma c_p}{B})$ is absent.")



def reduced(model: Model, reduction: str) -> MeanFieldModel:
    """`model` in the named reduction (only `mean_field`); `UsageError` for another name."""
    if reduction != "mean_field":
        raise UsageError(f"unknown reduction {reduction!r}; the only one is mean_field")
    if isinstance(model, MeanFieldModel):
        return model
    return MeanFieldModel(model.path, model.file)
