"""The ODE driver: an adaptive step (PID controller), float64, exact save times; Tsit5 in
eqgen's own loop (eqgen.runtime.rk), every other solver through diffrax.

Solvers compiled here are cached per generated module, solver and array shapes, so solving the
same model again in a process (a sweep, a notebook) costs only the integration itself.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from eqgen.environment import positive_int  # noqa: E402
from eqgen.errors import Interrupted, NumericalError, UsageError  # noqa: E402
from eqgen.runtime import rk  # noqa: E402

# Tsit5, the default, runs in eqgen's own loop (eqgen.runtime.rk: same tableau, controller and
# save times as diffrax's Tsit5, a fraction of its tracing and compile time); the others, and
# `diffrax-tsit5` (the same method through diffrax, kept as a reference), run through diffrax,
# imported only then. Tsit5 was the fastest of the explicit solvers on the committee models even
# at rtol = 1e-10 (docs/performance.md); Dopri8 is more accurate per tolerance.
SOLVERS = ("tsit5", "dopri5", "dopri8", "kvaerno5", "diffrax-tsit5")
_DIFFRAX_CLASSES = {"dopri5": "Dopri5", "dopri8": "Dopri8", "kvaerno5": "Kvaerno5",
                    "diffrax-tsit5": "Tsit5"}
DEFAULT_MAX_STEPS = 1_000_000
BLOW_UP = 1e12  # an overlap this large means the dynamics diverged
FAST_COMPILE_JAX = "0.10."  # the JAX series the solver's compiler option was measured on


def _compiler_options() -> dict[str, Any]:
    """XLA options for the solver programs. XLA's legacy elemental CPU emitters compile them
    30–40 % faster than the newer fusion emitters (0.53 s against 0.75–0.89 s for the p = 10
    committee solver) at the same run time (docs/performance.md), and a solver is often
    compiled once and run once. Only for the jaxlib series this was measured on (XLA rejects
    an option it does not know) and unless EQGEN_XLA_DEFAULTS is set; set per program, so the
    rest of the process keeps XLA's defaults."""
    if os.environ.get("EQGEN_XLA_DEFAULTS") or not jax.__version__.startswith(FAST_COMPILE_JAX):
        return {}
    return {"xla_cpu_use_fusion_emitters": False}


def choose_solver(name: str, rtol: float) -> str:
    """Check a solver name (`auto` means Tsit5)."""
    if name == "auto":
        return "tsit5"
    if name not in SOLVERS:
        raise UsageError(f"unknown solver '{name}'; choose " + ", ".join(SOLVERS))
    return name


@dataclass(frozen=True)
class RawSolution:
    """What the driver returns: save times, states and observables as numpy arrays."""

    t: np.ndarray
    states: dict[str, np.ndarray]
    observables: dict[str, np.ndarray]
    num_steps: int
    solver: str


def _flat_field(vector_field: Callable, evolving: tuple[str, ...]) -> Callable:
    """The generated field on one flat float64 vector (fewer, larger operations per
    Runge–Kutta stage than a dict of matrices); the generated field sees named matrices."""
    def rhs(t, y, args):  # noqa: ANN001, ANN202
        params, consts, unravel = args
        d = vector_field(t, {**unravel(y), **consts}, params)
        return ravel_pytree({name: d[name] for name in evolving})[0]

    return rhs


def _blown_up(y: jax.Array) -> jax.Array:
    """Stop at once on non-finite or exploding overlaps instead of shrinking the step (NaN
    compares false, so one reduction also catches non-finite entries)."""
    return ~(jnp.max(jnp.abs(y)) <= BLOW_UP)


def _diverged(t, y, args, **kwargs):  # noqa: ANN001, ANN003, ANN202
    """`_blown_up` as a diffrax event condition."""
    return _blown_up(y)


@functools.cache
def _compiled(vector_field: Callable, observables: Callable, solver: str, max_steps: int,
              evolving: tuple[str, ...]) -> Callable:
    rhs = _flat_field(vector_field, evolving)

    if solver == "tsit5":
        @functools.partial(jax.jit, compiler_options=_compiler_options())
        def advance(carry, y0, consts, params, ts, rtol, atol, until):  # noqa: ANN001, ANN202
            unravel = ravel_pytree(y0)[1]
            args = (params, consts, unravel)
            return rk.advance(lambda t, y: rhs(t, y, args), carry, ts, rtol, atol, max_steps,
                              _blown_up, until)

        @functools.partial(jax.jit, compiler_options=_compiler_options())
        def finish(carry, y0, consts, params, ts):  # noqa: ANN001, ANN202
            state, flat_ys = carry
            ys = jax.vmap(ravel_pytree(y0)[1])(flat_ys)
            full = {**ys, **{k: jnp.broadcast_to(v, (ts.shape[0], *v.shape))
                             for k, v in consts.items()}}
            obs = _observables_saved(observables, full, params, state.i_next)
            return ys, obs, state.status, state.steps

        return Pieces(advance, finish)

    import diffrax  # the general engine: other solvers, and the reference Tsit5

    term = diffrax.ODETerm(rhs)
    solver_obj = getattr(diffrax, _DIFFRAX_CLASSES[solver])()
    if solver == "kvaerno5":
        import optimistix  # noqa: F401  (root finder used by implicit solvers)
    # Forward solves only: a plain while loop traces and compiles faster than the default
    # recursive-checkpointing adjoint, which exists for reverse-mode differentiation.
    adjoint = diffrax.ForwardMode() if hasattr(diffrax, "ForwardMode") else diffrax.DirectAdjoint()
    codes = {int(diffrax.RESULTS.successful._value): rk.SUCCESS,
             int(diffrax.RESULTS.max_steps_reached._value): rk.MAX_STEPS,
             int(diffrax.RESULTS.event_occurred._value): rk.DIVERGED}

    @functools.partial(jax.jit, compiler_options=_compiler_options())
    def run(y0, consts, params, ts, rtol, atol):  # noqa: ANN001, ANN202
        flat, unravel = ravel_pytree(y0)
        controller = diffrax.PIDController(rtol=rtol, atol=atol, step_ts=ts)
        sol = diffrax.diffeqsolve(
            term, solver_obj, t0=ts[0], t1=ts[-1], dt0=None, y0=flat,
            args=(params, consts, unravel), saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller, max_steps=max_steps, throw=False,
            event=diffrax.Event(_diverged), adjoint=adjoint)
        value = sol.result._value
        result = rk.STEP_TOO_SMALL
        for theirs, ours in codes.items():
            result = jnp.where(value == theirs, ours, result)
        return _with_observables(jax.vmap(unravel)(sol.ys), consts, params, ts, observables,
                                 result, sol.stats["num_steps"])

    return run


_COMPILED_NOW: dict[tuple, Callable] = {}


def _compiled_now(fn: Callable, args: tuple, shapes: Any) -> Callable:
    """`fn` compiled now for `args`, whose shapes and dtypes `shapes` determines (kept per
    function and shapes, like jit's own cache)."""
    key = (fn, shapes)
    if key not in _COMPILED_NOW:
        _COMPILED_NOW[key] = fn.lower(*args).compile()
    return _COMPILED_NOW[key]


class Pieces(NamedTuple):
    """eqgen's Tsit5 solver as two compiled programs: `advance` steps a carry (`rk.Carry`) on
    by at most a number of steps, `finish` computes the observables at the save times. A long
    solve is taken in pieces of about PIECE_SECONDS, between which it reports its progress and
    can be stopped; the pieces take exactly the steps of one uninterrupted loop."""

    advance: Callable
    finish: Callable


PIECE_SECONDS = 0.25  # wall time of one piece of a long solve (after a first of FIRST_PIECE)
FIRST_PIECE = 2  # steps: a step of a quadrature model can take a fifth of a second


OBSERVABLE_BLOCK = 32  # save times per block of `_observables_saved`


def _observables_saved(observables: Callable, states: dict, params: dict, saved: jax.Array
                       ) -> dict:
    """The observables at the first `saved` save times (NaN after them), in blocks of save
    times of which those past `saved` are skipped: after a Ctrl-C early in a long solve,
    the risk of a model integrated by quadrature is not computed at the times never
    reached (0.7 s for 200 save times of a tanh committee)."""
    n = jax.tree_util.tree_leaves(states)[0].shape[0]
    blocks = -(-n // OBSERVABLE_BLOCK)
    pad = blocks * OBSERVABLE_BLOCK - n
    blocked = jax.tree_util.tree_map(lambda v: jnp.concatenate(
        [v, jnp.repeat(v[-1:], pad, axis=0)]).reshape(blocks, OBSERVABLE_BLOCK, *v.shape[1:]),
        states)
    per_block = jax.vmap(lambda y: observables(y, params))
    shapes = jax.eval_shape(per_block, jax.tree_util.tree_map(lambda v: v[0], blocked))

    def block(i: jax.Array, rows: dict) -> dict:
        return jax.lax.cond(i * OBSERVABLE_BLOCK < saved, per_block,
                            lambda _: jax.tree_util.tree_map(
                                lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes), rows)

    out = jax.lax.map(lambda a: block(*a), (jnp.arange(blocks), blocked))
    return jax.tree_util.tree_map(lambda v: v.reshape(blocks * OBSERVABLE_BLOCK,
                                                      *v.shape[2:])[:n], out)


def _with_observables(ys: dict, consts: dict, params: dict, ts: jax.Array,
                      observables: Callable, result: jax.Array, steps: jax.Array) -> tuple:
    """The solver's outputs: states at the save times, observables on them, outcome, steps."""
    full = {**ys, **{k: jnp.broadcast_to(v, (ts.shape[0], *v.shape)) for k, v in consts.items()}}
    obs = jax.vmap(lambda y: observables(y, params))(full)
    return ys, obs, result, steps


_EXPORTED: dict[str, Callable] = {}


def _exported_dir() -> Path | None:
    """Where traced solvers are kept across processes: only with EQGEN_JAX_CACHE (opt-in)."""
    value = os.environ.get("EQGEN_JAX_CACHE", "")
    if not value or value == "0":
        return None
    if value == "1":
        from eqgen.codegen.module import cache_dir

        return cache_dir() / "exported"
    return Path(value) / "exported"


@functools.cache
def _driver_fingerprint() -> str:
    """The solver code a serialised solver was traced from: diffrax's version and this driver's
    own source, so that a changed integrator is never replaced by a stale artefact."""
    from importlib.metadata import version

    own = hashlib.sha256()
    for path in (Path(__file__), Path(rk.__file__)):
        own.update(path.read_bytes())
    return f"{version('diffrax')}|{own.hexdigest()[:16]}"


def _exported(run: Callable, args: tuple, folder: Path, key: str) -> Callable:
    """The solver as a serialised `jax.export` artefact, so that a later process skips tracing
    it in Python (about 1.5 s for diffrax's loop, 0.1–0.2 s for eqgen's); its compilation then
    comes from JAX's persistent cache.
    Any failure falls back to the traced solver."""
    shapes = jax.tree_util.tree_map(lambda a: (a.shape, str(a.dtype)), args)
    digest = hashlib.sha256(f"{key}|{shapes}|{jax.__version__}|{_driver_fingerprint()}".encode())
    name = digest.hexdigest()
    if name in _EXPORTED:
        return _EXPORTED[name]
    path = folder / f"{name}.jaxexport"
    try:
        if path.exists():
            exp = jax.export.deserialize(bytearray(path.read_bytes()))
        else:
            exp = jax.export.export(run)(*args)
            from eqgen.codegen.module import write_atomic_bytes

            write_atomic_bytes(path, bytes(exp.serialize()))
        fn = jax.jit(exp.call)
    except Exception:  # noqa: BLE001 - an optimisation only: never fail a solve for it
        return run
    _EXPORTED[name] = fn
    return fn


def _run(run: Callable, y0: Mapping[str, np.ndarray], params: Mapping[str, Any],
         ts: np.ndarray, evolving: tuple[str, ...], rtol: float, atol: float,
         export_key: str | None) -> tuple[dict[str, Any], Any]:
    """Call a compiled solver (the serialised one with EQGEN_JAX_CACHE) on float64 arrays:
    the states held constant, and the solver's outputs."""
    y = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in y0.items() if k in evolving}
    consts = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in y0.items() if k not in evolving}
    p = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
    args = (y, consts, p, jnp.asarray(ts, dtype=jnp.float64), jnp.float64(rtol),
            jnp.float64(atol))
    exported_dir = _exported_dir()
    if export_key is not None and exported_dir is not None:
        run = _exported(run, args, exported_dir, export_key)
    return consts, run(*args)


def solve(vector_field: Callable, observables: Callable, y0: Mapping[str, np.ndarray],
          params: Mapping[str, float], ts: np.ndarray, *, evolving: tuple[str, ...],
          rtol: float = 1e-8, atol: float = 1e-10, solver: str = "tsit5",
          max_steps: int = DEFAULT_MAX_STEPS, state_order: tuple[str, ...] = (),
          observable_order: tuple[str, ...] = (), cache_key: str | None = None,
          progress: Callable[[float], None] | None = None) -> RawSolution:
    """Integrate from `ts[0]` to `ts[-1]`, stepping exactly onto every time in `ts`.

    Raises `NumericalError` (with the partial solution up to the last finite time) when the
    solve fails: non-finite values, the step-size controller giving up, or too many steps.
    With Tsit5 the solve runs in pieces: `progress(t)` is called between them, and a Ctrl-C
    stops it after the current piece with `Interrupted` (its partial solution up to then).
    """
    name = choose_solver(solver, rtol)
    state_order = tuple(state_order) or tuple(y0)
    compiled = _compiled(vector_field, observables, name, int(max_steps), tuple(evolving))
    key = None if cache_key is None else f"{cache_key}|{name}|{max_steps}|{','.join(evolving)}"
    stopped = None
    if isinstance(compiled, Pieces):
        consts, (ys, obs, result, steps), stopped = _run_in_pieces(
            compiled, y0, params, ts, evolving, rtol, atol, key, int(max_steps), progress)
    else:
        consts, (ys, obs, result, steps) = _run(compiled, y0, params, ts, evolving, rtol, atol,
                                                key)
    observable_order = tuple(observable_order) or tuple(obs)
    states = {k: np.asarray(v) for k, v in ys.items()}
    for k, v in consts.items():
        states[k] = np.broadcast_to(np.asarray(v), (len(ts), *v.shape)).copy()
    states = {k: states[k] for k in state_order if k in states}
    observables_np = {k: np.asarray(obs[k]) for k in observable_order}
    raw = RawSolution(np.asarray(ts), states, observables_np, int(steps), name)
    if stopped is not None:  # the rows saved before the Ctrl-C (those not reached are +inf)
        finite = np.all([np.isfinite(np.asarray(v).reshape(len(ts), -1)).all(axis=1)
                         for v in ys.values()], axis=0)
        reached = int(np.argmin(finite)) if not finite.all() else len(ts)
        raise Interrupted(f"interrupted at t = {stopped:.6g}", t=stopped,
                          partial=_truncate(raw, reached))
    _check(raw, int(result), int(max_steps))
    return raw


def _run_in_pieces(pieces: Pieces, y0: Mapping[str, np.ndarray], params: Mapping[str, Any],
                   ts: np.ndarray, evolving: tuple[str, ...], rtol: float, atol: float,
                   export_key: str | None, max_steps: int,
                   progress: Callable[[float], None] | None
                   ) -> tuple[dict[str, Any], Any, float | None]:
    """`_run` for eqgen's Tsit5 loop, in pieces: `progress(t)` after each piece, and a Ctrl-C
    (a `KeyboardInterrupt`, which Python raises only once the running piece has returned, or
    which the CLI's `eqgen.interrupt` sends to its worker thread) stops the solve there.
    Returns the constant states, the solver's outputs (rows not reached are +inf) and the
    time at which a Ctrl-C stopped it, or None.

    A first piece of FIRST_PIECE steps measures the speed; each later piece runs about
    PIECE_SECONDS, so a quick solve is two calls and a long one reports a few times a second
    and stops well within the CLI's grace time (`eqgen.interrupt.GRACE_S`)."""
    y = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in y0.items() if k in evolving}
    consts = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in y0.items() if k not in evolving}
    p = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
    ts_j, rtol_j, atol_j = (jnp.asarray(ts, dtype=jnp.float64), jnp.float64(rtol),
                            jnp.float64(atol))
    # ravel_pytree's order (sorted keys), without a compiled call
    flat0 = np.concatenate([np.ravel(np.asarray(y0[k], dtype=np.float64)) for k in sorted(y)])
    carry = rk.begin_host(flat0, len(ts), float(ts[0]))
    advance, finish = pieces
    exported_dir = _exported_dir()
    if export_key is not None and exported_dir is not None:
        advance = _exported(advance, (carry, y, consts, p, ts_j, rtol_j, atol_j,
                                      np.int32(1)), exported_dir, export_key + "|advance")
        finish = _exported(finish, (carry, y, consts, p, ts_j), exported_dir,
                           export_key + "|finish")
    # compiled before the first step, so that a Ctrl-C is answered with the partial solution
    # at once, not after compiling the observables (seconds for a model with quadrature)
    shapes = tuple((k, np.shape(v)) for part in (y, consts, p) for k, v in part.items())
    finish = _compiled_now(finish, (carry, y, consts, p, ts_j), (len(ts), shapes))
    limit = min(max_steps, 2**31 - 1)
    until, stopped, steps = min(FIRST_PIECE, limit), None, 0
    try:
        while True:
            start, before = time.perf_counter(), steps
            # not donated: whichever carry a Ctrl-C leaves here is whole
            carry = advance(carry, y, consts, p, ts_j, rtol_j, atol_j, np.int32(until))
            status, steps, t = jax.device_get((carry[0].status, carry[0].steps, carry[0].t))
            steps, t = int(steps), float(t)
            if status >= 0 or steps >= limit:
                break
            if progress is not None:
                progress(t)
            rate = (steps - before) / max(time.perf_counter() - start, 1e-9)
            until = min(limit, steps + max(1, int(rate * PIECE_SECONDS)))
    except KeyboardInterrupt:  # seen between two pieces: the last one is kept
        stopped = float(carry[0].t)
    return consts, finish(carry, y, consts, p, ts_j), stopped


def _check(raw: RawSolution, result: int, max_steps: int) -> None:
    finite = np.ones(len(raw.t), dtype=bool)
    for v in (*raw.states.values(), *raw.observables.values()):
        finite &= np.all(np.isfinite(v.reshape(len(raw.t), -1)), axis=1)
    bad = np.flatnonzero(~finite)
    if result == 0 and bad.size == 0:
        return
    last = int(bad[0]) - 1 if bad.size else _last_good(raw)
    t_fail = float(raw.t[last + 1]) if last + 1 < len(raw.t) else float(raw.t[-1])
    t_ok = float(raw.t[last]) if last >= 0 else None
    partial = _truncate(raw, last + 1)
    if result in (rk.SUCCESS, rk.DIVERGED) and bad.size:
        msg = (f"the overlaps diverged (an entry exceeded {BLOW_UP:.0e} or became NaN or "
               "infinite)")
        hint = "lower the learning rate (the SGD noise term grows with γ c_p), or check the regime"
    elif result == rk.MAX_STEPS or raw.num_steps >= max_steps:
        msg = f"the solver took the maximum number of steps ({max_steps})"
        hint = "loosen --rtol/--atol, shorten --t-max, or try --solver kvaerno5 if stiff"
    else:
        msg = "the step-size controller gave up (step size too small)"
        hint = ("lower the learning rate if the overlaps are diverging; if the problem is stiff, "
                "try --solver kvaerno5")
    after = f"; last good time t = {t_ok:.6g}" if t_ok is not None else ""
    raise NumericalError(msg + after, t=t_fail, hint=hint, partial=partial)


def _last_good(raw: RawSolution) -> int:
    # both solver paths fill the unreached save times with inf; the last finite one is the
    # last good.
    return len(raw.t) - 1


def _truncate(raw: RawSolution, n: int) -> RawSolution:
    return RawSolution(raw.t[:n], {k: v[:n] for k, v in raw.states.items()},
                       {k: v[:n] for k, v in raw.observables.items()}, raw.num_steps, raw.solver)


# -- many solves at once (parameter sweeps) -----------------------------------------------------

@dataclass(frozen=True)
class BatchSolution:
    """What `solve_batch` returns: one row per grid point (leading axis), shared save times.

    `failure[i]` is None where point i succeeded, else the `NumericalError` that a single solve
    of that point would have raised (its message, time and hint); the rows of a failed point
    are NaN from its first bad save time on.
    """

    t: np.ndarray
    states: dict[str, np.ndarray]  # (n_points, n_times, *shape)
    observables: dict[str, np.ndarray]  # (n_points, n_times)
    num_steps: np.ndarray  # (n_points,)
    failure: list[NumericalError | None]
    solver: str


@functools.cache
def _compiled_batch(vector_field: Callable, observables: Callable, solver: str, max_steps: int,
                    evolving: tuple[str, ...]) -> Callable:
    """The single-point solver of `_compiled` for a batch: the initial states, constant states
    and parameters have a leading batch axis (times and tolerances are shared).

    Tsit5 runs `rk.integrate_batch` (one loop, each element keeps its own steps and result;
    finished elements are carried unchanged); diffrax's solvers run under `jax.vmap`, whose
    adaptive loop likewise runs until the slowest element is done."""
    if solver != "tsit5":
        run = _compiled(vector_field, observables, solver, max_steps, evolving)
        return jax.jit(jax.vmap(run, in_axes=(0, 0, 0, None, None, None)),
                       compiler_options=_compiler_options())
    rhs = _flat_field(vector_field, evolving)

    @functools.partial(jax.jit, compiler_options=_compiler_options())
    def run_batch(y0, consts, params, ts, rtol, atol):  # noqa: ANN001, ANN202
        flat = jax.vmap(lambda y: ravel_pytree(y)[0])(y0)
        unravel = ravel_pytree(jax.tree_util.tree_map(lambda v: v[0], y0))[1]
        flat_ys, result, steps = rk.integrate_batch(
            lambda t, y, arg: rhs(t, y, (arg[0], arg[1], unravel)), flat, (params, consts),
            ts, rtol, atol, max_steps, _blown_up)
        return jax.vmap(lambda ys, c, p, r, n: _with_observables(
            jax.vmap(unravel)(ys), c, p, ts, observables, r, n))(flat_ys, consts, params,
                                                                  result, steps)

    return run_batch


def batch_workers(n: int) -> int:
    """Into how many equal parts a batch of n points is split, each solved on its own thread.

    On the CPU one vmapped solve runs on one core: the elements of a small ODE are too few for
    XLA to spread one program over several. Parts solved concurrently (JAX releases the GIL
    while a compiled program runs) use the other cores; on an accelerator the batch stays whole.
    $EQGEN_SWEEP_THREADS overrides the number of parts (1 keeps the batch whole)."""
    wanted = positive_int("EQGEN_SWEEP_THREADS")
    if wanted is not None:
        return min(wanted, n)
    if jax.default_backend() != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1
    return max(1, min(cores, n // MIN_POINTS_PER_WORKER))


MIN_POINTS_PER_WORKER = 4  # below this a part is not worth its thread


def _run_in_parts(call: Callable, y0: Mapping[str, np.ndarray], params: Mapping[str, Any]
                  ) -> tuple[dict[str, Any], Any]:
    """`call(y0, params)` on `batch_workers` equal parts of the batch at once, the outputs
    joined along the batch axis. The last part is padded with copies of the last point, so
    that every part has one shape (one compiled program) and the padding is dropped."""
    n = int(np.shape(next(iter(params.values())))[0]) if params else \
        int(np.shape(next(iter(y0.values())))[0])
    parts = batch_workers(n)
    if parts == 1:
        return call(y0, params)
    size = -(-n // parts)
    index = np.minimum(np.arange(parts * size), n - 1).reshape(parts, size)

    def take(tree: Mapping[str, Any], rows: np.ndarray) -> dict[str, np.ndarray]:
        return {k: np.asarray(v)[rows] for k, v in tree.items()}

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(parts) as pool:
        outs = list(pool.map(lambda rows: jax.block_until_ready(
            call(take(y0, rows), take(params, rows))), index))
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[:n], *outs)


def solve_batch(vector_field: Callable, observables: Callable,
                y0: Mapping[str, np.ndarray], params: Mapping[str, np.ndarray], ts: np.ndarray,
                *, evolving: tuple[str, ...], rtol: float = 1e-8, atol: float = 1e-10,
                solver: str = "tsit5", max_steps: int = DEFAULT_MAX_STEPS,
                state_order: tuple[str, ...] = (), observable_order: tuple[str, ...] = (),
                cache_key: str | None = None) -> BatchSolution:
    """Integrate a batch of problems of one shape in one compiled, vectorised solve.

    `y0` maps each state to an array with a leading batch axis (n, *shape) and `params` each
    parameter to an array of shape (n,). Every element is checked like a single `solve`; a
    failed element does not stop the others (see `BatchSolution.failure`).
    """
    name = choose_solver(solver, rtol)
    state_order = tuple(state_order) or tuple(y0)
    run = _compiled_batch(vector_field, observables, name, int(max_steps), tuple(evolving))
    key = (None if cache_key is None
           else f"{cache_key}|batch|{name}|{max_steps}|{','.join(evolving)}")
    consts, (ys, obs, result, steps) = _run_in_parts(
        lambda y, p: _run(run, y, p, ts, evolving, rtol, atol, key), y0, params)
    n_t = len(ts)
    states = {k: np.array(v) for k, v in ys.items()}
    for k, v in consts.items():
        arr = np.asarray(v)
        states[k] = np.broadcast_to(arr[:, None], (arr.shape[0], n_t, *arr.shape[1:])).copy()
    states = {k: states[k] for k in state_order if k in states}
    observable_order = tuple(observable_order) or tuple(obs)
    observables_np = {k: np.array(obs[k]) for k in observable_order}
    results = np.asarray(result).reshape(-1)
    num_steps = np.asarray(steps).reshape(-1).astype(int)
    n = results.shape[0]
    finite = np.ones(n, dtype=bool)  # one pass over the batch; only bad points are examined
    for arr in (*states.values(), *observables_np.values()):
        finite &= np.isfinite(arr.reshape(n, -1)).all(axis=1)
    failure: list[NumericalError | None] = []
    for i in range(n):
        if finite[i] and results[i] == rk.SUCCESS and num_steps[i] < max_steps:
            failure.append(None)
            continue
        raw = RawSolution(np.asarray(ts), {k: v[i] for k, v in states.items()},
                          {k: v[i] for k, v in observables_np.items()}, int(num_steps[i]), name)
        try:
            _check(raw, int(results[i]), int(max_steps))
            failure.append(None)
        except NumericalError as e:
            failure.append(e)
            n_good = len(e.partial.t) if isinstance(e.partial, RawSolution) else 0
            for arr in (*states.values(), *observables_np.values()):
                arr[i, n_good:] = np.nan
    return BatchSolution(np.asarray(ts), states, observables_np, num_steps, failure, name)
