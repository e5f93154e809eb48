"""eqgen's own adaptive explicit Runge–Kutta loop: Tsitouras' 5(4) pair with diffrax's step-size
rule, written as one `lax.while_loop` whose stages are a `lax.fori_loop`.

Why not diffrax here: for the models eqgen solves, a cold `eqgen solve` is dominated by tracing
and compiling the solver, not by integrating. diffrax's general machinery (events, dense
interpolation, adjoints, checkpointed loops) costs about 1 s of tracing and 1–2 s of XLA
compilation around a vector field that compiles alone in 0.2 s. This loop contains the vector
field once (the stages share one call site) and nothing else a forward solve does not need, so
it traces and compiles in a fraction of that. It makes the same choices as the diffrax solve it
replaces: the Tsit5 tableau, the error estimate, the RMS norm, the step-size controller
(safety 0.9, factors 0.2–10, exponent 1/5), steps clipped to land exactly on every save time, and
Hairer's initial-step rule (its estimate of y'' taken from the first step's first stage).
diffrax remains the engine for every other solver (`--solver dopri5`, `dopri8`, `kvaerno5`, and
`diffrax-tsit5` for this same method); `tests/test_rk.py` checks this loop against diffrax's
Tsit5 (its tableau and its solutions) and against closed-form solutions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Outcome codes, shared with the diffrax path (eqgen.runtime.ode maps diffrax's onto these).
SUCCESS = 0
MAX_STEPS = 1
STEP_TOO_SMALL = 2
DIVERGED = 3

# Tsitouras, "Runge–Kutta pairs of order 5(4) satisfying only the first column simplifying
# assumption", Comput. Math. Appl. 62 (2011) 770–775, Table 1: nodes, stage matrix (lower
# triangle), 5th-order weights and the difference between the 5th- and 4th-order weights. The
# seventh stage is evaluated at the new solution (first same as last), so its row of the stage
# matrix equals the 5th-order weights.
_C = np.array([0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0])
_B = np.array([0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742,
               -3.290069515436081, 2.324710524099774, 0.0])
_A = np.zeros((7, 7))
_A[1, :1] = [0.161]
_A[2, :2] = [-0.008480655492356989, 0.335480655492357]
_A[3, :3] = [2.897153057105493, -6.359448489975075, 4.3622954328695815]
_A[4, :4] = [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525]
_A[5, :5] = [5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
             -0.028269050394068383]
_A[6, :6] = _B[:6]
_E = np.array([0.00178001105222577714, 0.0008164344596567469, -0.007880878010261995,
               0.1447110071732629, -0.5823571654525552, 0.45808210592918697,
               -1 / 66])  # b - b̂ (weights of the local error estimate)
ORDER = 5  # the exponent of the step-size rule is 1/ORDER (local error ~ h^5)

SAFETY = 0.9
FACTOR_MIN = 0.2
FACTOR_MAX = 10.0


_LAST = 6  # the stage evaluated at the new solution (first same as last)


Field = Callable[[jax.Array, jax.Array], jax.Array]
Check = Callable[[jax.Array], jax.Array]


class _State(NamedTuple):
    """Where one solve stands between two steps (the saved states are kept apart)."""

    t: jax.Array  # the accepted time
    y: jax.Array  # the accepted state
    k_first: jax.Array  # f(t, y), reused as the next step's first stage
    dt: jax.Array  # the step to attempt next, already clipped to the next save time
    lands: jax.Array  # whether that step ends exactly on the next save time
    n_pass: jax.Array  # 0: the zero pass that evaluates f(t0, y0); 1: the first step; 2: later
    i_next: jax.Array  # index of the next save time
    steps: jax.Array  # steps attempted (accepted and rejected)
    status: jax.Array  # -1 while running, else an outcome code


# the carry of a solve in pieces passes through serialised solvers (EQGEN_JAX_CACHE)
jax.export.register_namedtuple_serialization(_State, serialized_name="eqgen.rk.State")


def _start(y0: jax.Array, ts: jax.Array) -> _State:
    zero = jnp.zeros((), y0.dtype)
    return _State(ts[0], y0, jnp.zeros_like(y0), zero, jnp.asarray(False), jnp.int32(0),
                  jnp.int32(1), jnp.int32(0),
                  jnp.where(ts.shape[0] <= 1, SUCCESS, -1).astype(jnp.int32))


def _saved_rows(y0: jax.Array, n_ts: int) -> jax.Array:
    return jnp.full((n_ts, y0.shape[-1]), jnp.inf, dtype=y0.dtype).at[0].set(y0)


def _first_stage(zero_pass: jax.Array) -> jax.Array:
    return jnp.where(zero_pass, _LAST, 1).astype(jnp.int32)


def _step(f: Field, state: _State, ts: jax.Array, rtol: jax.Array, atol: jax.Array,
          max_steps: int, diverged: Check, first_stage: jax.Array) -> tuple[_State, jax.Array,
                                                                             jax.Array]:
    """One attempted step: the new state, the save row it fills and whether it fills it (the
    row's value is the new `y`). `first_stage` is 1, or 6 for the zero pass, which needs only
    the last stage (at y0, the step being zero)."""
    a, c, b, e = (jnp.asarray(v) for v in (_A, _C, _B, _E))
    n_ts = ts.shape[0]
    t, y, k_first, dt, lands, n_pass, i_next, steps, _ = state
    ks = jnp.zeros((7, y.shape[0]), y.dtype).at[0].set(k_first)

    def stage(i: jax.Array, ks: jax.Array) -> jax.Array:
        return ks.at[i].set(f(t + c[i] * dt, y + dt * (a[i] @ ks)))

    ks = lax.fori_loop(first_stage, 7, stage, ks)
    y_new = y + dt * (b @ ks)
    zero_pass, first_step = n_pass == 0, n_pass == 1

    # Norms, in one reduction: the sizes of y and y' (for h0, after the zero pass), y''
    # from the first step's first stage, and the step's scaled local error.
    scale = atol + jnp.abs(y) * rtol
    f0 = jnp.where(zero_pass, ks[_LAST], k_first)  # f(t0, y0): just computed, or kept
    d0, d1, d2, err = jnp.sqrt(jnp.mean(jnp.stack(
        [y / scale, f0 / scale, (ks[1] - ks[0]) / scale,
         dt * (e @ ks) / (atol + jnp.maximum(jnp.abs(y), jnp.abs(y_new)) * rtol)]) ** 2,
        axis=1))
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = jnp.where(small, 1e-6, 0.01 * d0 / jnp.where(small, 1.0, d1))
    d = jnp.maximum(d1, d2 / jnp.where(first_step, c[1] * dt, 1.0))
    h1 = jnp.minimum(100 * dt, jnp.where(d <= 1e-15, jnp.maximum(1e-6, dt * 1e-3),
                                         (0.01 / d) ** (1 / ORDER)))

    # Accept or reject, and the next step size: diffrax's PID rule with its defaults (an
    # integral controller). A NaN error rejects the step.
    ok = err < 1
    factor = jnp.clip(SAFETY * (1 / err) ** (1 / ORDER), jnp.where(ok, 1.0, FACTOR_MIN),
                      jnp.where(ok, FACTOR_MAX, SAFETY))
    factor = jnp.where(jnp.isnan(factor), FACTOR_MIN, factor)
    accept = ok & ~zero_pass
    row = jnp.minimum(i_next, n_ts - 1)
    t = jnp.where(accept, jnp.where(lands, ts[row], t + dt), t)
    y = jnp.where(accept, y_new, y)
    k_first = jnp.where(accept | zero_pass, ks[_LAST], k_first)  # first same as last
    saved = accept & lands
    i_next = i_next + saved.astype(jnp.int32)
    steps = steps + (~zero_pass).astype(jnp.int32)

    # The next step, clipped to land exactly on the next save time.
    h = jnp.where(zero_pass, h0, jnp.where(first_step & accept, h1, dt * factor))
    target = ts[jnp.minimum(i_next, n_ts - 1)]
    lands = h >= target - t
    dt = jnp.where(lands, target - t, h)
    n_pass = jnp.where(zero_pass | accept, jnp.minimum(n_pass + 1, 2), n_pass)

    status = jnp.where(i_next >= n_ts, SUCCESS, -1)
    status = jnp.where(accept & diverged(y), DIVERGED, status)
    status = jnp.where((status < 0) & (t + h <= t), STEP_TOO_SMALL, status)
    status = jnp.where((status < 0) & (steps >= max_steps), MAX_STEPS, status)
    return (_State(t, y, k_first, dt, lands, n_pass.astype(jnp.int32), i_next, steps,
                   status.astype(jnp.int32)), row, saved)


def integrate(f: Field, y0: jax.Array, ts: jax.Array, rtol: jax.Array, atol: jax.Array,
              max_steps: int, diverged: Check) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Solve y' = f(t, y) from ts[0] to ts[-1], stepping exactly onto every time in `ts`.

    Returns the states at `ts` (rows not reached are +inf), the outcome code and the number of
    steps attempted (accepted and rejected). The solve stops with DIVERGED as soon as an accepted
    state satisfies `diverged`, with STEP_TOO_SMALL when the step underflows the time's
    resolution (typically a field that is non-finite everywhere ahead), and with MAX_STEPS.

    The field appears once in the compiled program (its compile time is paid once, not once
    per stage): a `lax.while_loop` over steps whose stages 1–6 are an inner `lax.fori_loop`.
    The start needs no other call site: a first pass with a zero step evaluates f(t0, y0) (its
    last stage alone, which sits at y0), and the first real step, of Hairer's conservative size
    h0 = 0.01 ‖y0‖/‖f(y0)‖, also supplies the estimate of y'' from which the second step is
    sized (Hairer, Nørsett & Wanner, Solving ODEs I, §II.4).
    """

    final, out = advance(f, begin(y0, ts), ts, rtol, atol, max_steps, diverged, max_steps)
    return out, final.status, final.steps


Carry = tuple[_State, jax.Array]  # where a solve stands, and the states saved so far


def begin(y0: jax.Array, ts: jax.Array) -> Carry:
    """The carry of a solve that has not taken a step: `advance` takes it from there."""
    return _start(y0, ts), _saved_rows(y0, ts.shape[0])


def begin_host(y0: np.ndarray, n_ts: int, t0: float) -> Carry:
    """`begin` built with numpy, without a compiled call (the dtypes `advance` returns)."""
    y0 = np.asarray(y0, dtype=np.float64)
    out = np.full((n_ts, y0.shape[-1]), np.inf)
    out[0] = y0
    state = _State(np.float64(t0), y0, np.zeros_like(y0), np.float64(0.0), np.bool_(False),
                   np.int32(0), np.int32(1), np.int32(0),
                   np.int32(SUCCESS if n_ts <= 1 else -1))
    return state, out


def advance(f: Field, carry: Carry, ts: jax.Array, rtol: jax.Array, atol: jax.Array,
            max_steps: int, diverged: Check, until: jax.Array) -> Carry:
    """Step a solve on from `carry` until it ends (`carry[0].status` ≥ 0) or `until` steps
    have been attempted since its start.

    Why: a long solve taken in pieces can report its progress, and be stopped, between
    pieces. The carry holds everything the loop knows (the proposed step included), so a solve
    taken in any number of pieces takes exactly the steps of a solve taken in one."""

    def body(carry: Carry) -> Carry:
        state, out = carry
        state, row, saved = _step(f, state, ts, rtol, atol, max_steps, diverged,
                                  _first_stage(state.n_pass == 0))
        return state, out.at[row].set(jnp.where(saved, state.y, out[row]))

    return lax.while_loop(lambda c: (c[0].status < 0) & (c[0].steps < until), body, carry)


def integrate_batch(f: Callable[[jax.Array, jax.Array, Any], jax.Array], y0: jax.Array,
                    args: Any, ts: jax.Array, rtol: jax.Array, atol: jax.Array, max_steps: int,
                    diverged: Check) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`integrate` for a batch: y0 is (B, n), `args` a pytree with a leading axis B passed to
    f(t, y, args_i), the times and tolerances shared. Returns (B, n_ts, n) states and (B,)
    outcomes and step counts, each element as its own `integrate` would give them (to
    round-off: the batched field may sum in another order).

    Why not `jax.vmap(integrate)`: under vmap a while loop whose condition differs between
    elements re-selects every carried array at every step, the saved states included (B × n_ts
    × n numbers per step, which at p = k = 2 cost more than the field). Here the loop runs while
    any element runs; only the small per-element state is selected, and each step writes one
    row per element."""
    n_b = y0.shape[0]
    index = jnp.arange(n_b)
    step = jax.vmap(lambda state, arg, first: _step(lambda t, y: f(t, y, arg), state, ts, rtol,
                                                    atol, max_steps, diverged, first),
                    in_axes=(0, 0, None))

    def body(carry: tuple[_State, jax.Array]) -> tuple[_State, jax.Array]:
        state, out = carry
        running = state.status < 0
        # every point leaves the zero pass at the first iteration: one stage range for all
        new, row, saved = step(state, args, _first_stage(jnp.all(state.n_pass == 0)))
        state = jax.tree_util.tree_map(
            lambda n, o: jnp.where(running.reshape((n_b,) + (1,) * (n.ndim - 1)), n, o),
            new, state)
        saved = saved & running
        out = out.at[index, row].set(jnp.where(saved[:, None], state.y, out[index, row]))
        return state, out

    start = jax.vmap(lambda y: _start(y, ts))(y0)
    final, out = lax.while_loop(lambda carry: jnp.any(carry[0].status < 0), body,
                                (start, jax.vmap(lambda y: _saved_rows(y, ts.shape[0]))(y0)))
    return out, final.status, final.steps
