"""eqgen's own Tsit5 loop (eqgen.runtime.rk): against closed-form solutions, against diffrax's
Tsit5 on a committee model, and its outcomes (divergence, step underflow, step limit, batches)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from eqgen.runtime import ode, rk

jax.config.update("jax_enable_x64", True)

# A damped rotation coupled to a decaying mode: y' = L y, y(t) = expm(L t) y0.
L = np.array([[-0.1, 2.0, 0.0], [-2.0, -0.1, 0.3], [0.0, 0.0, -0.5]])
Y0 = np.array([1.0, 0.0, 2.0])
TS = np.concatenate([[0.0], np.geomspace(1e-3, 20.0, 40)])


def never(y: jax.Array) -> jax.Array:
    return jnp.asarray(False)


def solve_linear(rtol: float, atol: float, max_steps: int = 100_000) -> tuple:
    run = jax.jit(lambda y0, ts: rk.integrate(lambda t, y: jnp.asarray(L) @ y, y0, ts, rtol,
                                              atol, max_steps, never))
    out, status, steps = run(jnp.asarray(Y0), jnp.asarray(TS))
    return np.asarray(out), int(status), int(steps)


def exact() -> np.ndarray:
    return np.stack([scipy.linalg.expm(L * t) @ Y0 for t in TS])


def test_linear_system_matches_the_matrix_exponential_at_every_save_time() -> None:
    out, status, steps = solve_linear(1e-11, 1e-13)
    assert status == rk.SUCCESS
    assert np.max(np.abs(out - exact())) < 1e-9
    assert 0 < steps < 5_000


def test_error_falls_with_the_tolerance_as_a_fifth_order_method() -> None:
    """Tightening rtol by 10⁴ cuts the error by a large factor and costs about 10^(4/5)× the
    steps (the step-size rule of an order-5 pair)."""
    (loose, _, n_loose), (tight, _, n_tight) = solve_linear(1e-6, 1e-8), solve_linear(1e-10,
                                                                                      1e-12)
    e_loose = np.max(np.abs(loose - exact()))
    e_tight = np.max(np.abs(tight - exact()))
    assert e_tight < e_loose / 300
    assert 3 < n_tight / n_loose < 10


def test_a_wrong_tableau_coefficient_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The closed-form check can fail: one 5th-order weight off by 10⁻⁶ (the error estimate
    does not see it) breaks it at this tolerance."""
    bad_b = rk._B.copy()
    bad_b[3] += 1e-6
    monkeypatch.setattr(rk, "_B", bad_b)
    out, status, _ = solve_linear(1e-11, 1e-13)
    assert status == rk.SUCCESS
    assert np.max(np.abs(out - exact())) > 1e-7


def test_tableau_satisfies_the_order_conditions_it_relies_on() -> None:
    a, b, c = rk._A, rk._B, rk._C
    np.testing.assert_allclose(a.sum(axis=1), c, atol=1e-15)
    for q in range(1, 6):  # Σ b c^(q-1) = 1/q (bushy trees up to order 5)
        assert abs(b @ c ** (q - 1) - 1 / q) < 1e-14
    assert abs(b @ (a @ c) - 1 / 6) < 1e-14
    assert abs(rk._E.sum()) < 1e-15  # the embedded pair is consistent too
    np.testing.assert_array_equal(a[6, :6], b[:6])  # the last stage is the new solution


def test_tableau_is_diffrax_tsit5s() -> None:
    """The coefficients written out in rk.py are those diffrax's Tsit5 uses (an independent
    transcription of Tsitouras' table)."""
    import diffrax

    tab = diffrax.Tsit5.tableau
    a = np.zeros((7, 7))
    for i, row in enumerate(tab.a_lower):
        a[i + 1, :len(row)] = row
    np.testing.assert_allclose(rk._A, a, rtol=0, atol=1e-15)
    np.testing.assert_allclose(rk._C[1:], tab.c, rtol=0, atol=1e-15)
    np.testing.assert_allclose(rk._B, tab.b_sol, rtol=0, atol=1e-15)
    np.testing.assert_allclose(rk._E, tab.b_error, rtol=0, atol=1e-15)


def test_same_solution_and_steps_as_diffrax_tsit5_on_a_committee_model() -> None:
    from eqgen.model import load

    model = load("models/committee_erf.eqg")
    kw = dict(t_max=200.0, rtol=1e-9, atol=1e-11)
    ours = model.solve(**kw)
    theirs = model.solve(**kw, solver="diffrax-tsit5")
    for name in ("risk", "excess_risk"):
        np.testing.assert_allclose(ours.observables[name], theirs.observables[name],
                                   rtol=1e-7, atol=1e-13)
    np.testing.assert_allclose(ours.states["Q"], theirs.states["Q"], rtol=1e-7, atol=1e-12)
    assert abs(ours.metadata["steps"] - theirs.metadata["steps"]) <= 0.02 * theirs.metadata[
        "steps"] + 2


def test_blow_up_stops_with_diverged_and_inf_rows_after() -> None:
    """y' = y² from y(0) = 1 is 1/(1 − t): it exceeds 10¹² just before t = 1."""
    ts = jnp.linspace(0.0, 2.0, 20)  # t = 1 itself is not a save time
    out, status, _ = jax.jit(lambda y0: rk.integrate(
        lambda t, y: y * y, y0, ts, 1e-8, 1e-10, 100_000,
        lambda y: ~(jnp.max(jnp.abs(y)) <= 1e12)))(jnp.ones(1))
    out = np.asarray(out)[:, 0]
    assert int(status) == rk.DIVERGED
    np.testing.assert_allclose(out[:10], 1 / (1 - np.asarray(ts[:10])), rtol=1e-6)
    assert np.all(np.isinf(out[10:]))


def test_a_field_that_turns_nan_stops_with_step_too_small() -> None:
    ts = jnp.linspace(0.0, 1.0, 5)
    out, status, steps = jax.jit(lambda y0: rk.integrate(
        lambda t, y: jnp.where(t > 0.6, jnp.nan, -y), y0, ts, 1e-8, 1e-10, 100_000,
        never))(jnp.ones(2))
    assert int(status) == rk.STEP_TOO_SMALL
    assert int(steps) < 100_000
    out = np.asarray(out)
    np.testing.assert_allclose(out[:3, 0], np.exp(-np.asarray(ts[:3])), rtol=1e-6)
    assert np.all(np.isinf(out[3:]))


def test_step_limit_stops_with_max_steps() -> None:
    out, status, steps = solve_linear(1e-11, 1e-13, max_steps=20)
    assert status == rk.MAX_STEPS and steps == 20
    assert np.isinf(out[-1]).all()


def test_a_single_save_time_returns_the_initial_state() -> None:
    out, status, steps = jax.jit(lambda y0: rk.integrate(
        lambda t, y: -y, y0, jnp.zeros(1), 1e-8, 1e-10, 10, never))(jnp.ones(2))
    assert int(status) == rk.SUCCESS and int(steps) == 0
    np.testing.assert_array_equal(np.asarray(out), [[1.0, 1.0]])


def test_vmapped_elements_keep_their_own_steps() -> None:
    """A batch of decay rates solved at once gives each element's separate solve (to round-off
    and the tolerance: the batched program may sum in another order, which can move a step)
    and each its own step count."""
    ts = jnp.linspace(0.0, 5.0, 11)

    def one(rate: jax.Array) -> tuple:
        return rk.integrate(lambda t, y: -rate * y, jnp.ones(2), ts, 1e-10, 1e-12, 100_000,
                            never)

    rates = jnp.asarray([0.1, 1.0, 10.0])
    out_b, status_b, steps_b = jax.jit(jax.vmap(one))(rates)
    for i, rate in enumerate(rates):
        out, status, steps = jax.jit(one)(rate)
        np.testing.assert_allclose(np.asarray(out_b[i]), np.asarray(out), rtol=1e-9, atol=1e-14)
        assert int(status_b[i]) == int(status) == rk.SUCCESS
        assert abs(int(steps_b[i]) - int(steps)) <= 1
    assert len(set(np.asarray(steps_b).tolist())) == 3


def test_solver_names() -> None:
    assert ode.choose_solver("auto", 1e-8) == "tsit5"
    assert "diffrax-tsit5" in ode.SOLVERS


def test_solver_compiler_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """The solver programs use XLA's legacy CPU emitters (faster to compile) only with the
    JAX series they were measured on, and never with EQGEN_XLA_DEFAULTS."""
    monkeypatch.delenv("EQGEN_XLA_DEFAULTS", raising=False)
    expected = ({"xla_cpu_use_fusion_emitters": False}
                if jax.__version__.startswith(ode.FAST_COMPILE_JAX) else {})
    assert ode._compiler_options() == expected
    monkeypatch.setenv("EQGEN_XLA_DEFAULTS", "1")
    assert ode._compiler_options() == {}


def test_integrate_batch_matches_separate_solves_and_keeps_failures_apart() -> None:
    """`integrate_batch` (the sweep's loop): each element as its own `integrate`, and an
    element that blows up stops alone (DIVERGED, inf rows after) while the others finish."""
    ts = jnp.linspace(0.0, 5.0, 11)
    rates = jnp.asarray([-0.5, -3.0, 40.0])  # the last one grows past 10¹² before t = 1

    def field(t: jax.Array, y: jax.Array, rate: jax.Array) -> jax.Array:
        return rate * y

    def blown(y: jax.Array) -> jax.Array:
        return ~(jnp.max(jnp.abs(y)) <= 1e12)

    out_b, status_b, steps_b = jax.jit(lambda y0, r: rk.integrate_batch(
        field, y0, r, ts, 1e-10, 1e-12, 100_000, blown))(jnp.ones((3, 2)), rates)
    for i, rate in enumerate(rates):
        out, status, steps = jax.jit(lambda y0, r: rk.integrate(
            lambda t, y: field(t, y, r), y0, ts, 1e-10, 1e-12, 100_000, blown))(
            jnp.ones(2), rate)
        np.testing.assert_allclose(np.asarray(out_b[i]), np.asarray(out), rtol=1e-9,
                                   atol=1e-14)
        assert int(status_b[i]) == int(status)
        assert abs(int(steps_b[i]) - int(steps)) <= 1
    assert [int(s) for s in status_b] == [rk.SUCCESS, rk.SUCCESS, rk.DIVERGED]
    np.testing.assert_allclose(np.asarray(out_b[0, :, 0]), np.exp(-0.5 * np.asarray(ts)),
                               rtol=1e-8)
    assert np.isinf(np.asarray(out_b[2, -1])).all()
