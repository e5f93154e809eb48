"""The full ODE sums Σ_c u_c I3(j, β, c) through Stein's split I3 = C12 A + C23 B (two matrix
products over functions of (j, c)). Checked here against the unsplit sum over the whole
p × (p+k) × (p+k) grid of the module's own I3 function, for closed forms, polynomial (Wick) and
quadrature (Stein-reduced) integrals and for p + k on both sides of the written-out/matmul
threshold; and a planted error (curvature and slope swapped) must be caught by the Monte Carlo
check of the right-hand side."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqgen
from eqgen.codegen import module as modfile
from eqgen.codegen.committee import module_source
from tests.helpers import committee_spec, model_path
from tests.test_vector_field import _assert_close, _evaluate, _state, monte_carlo

SHIPPED = ["committee_erf", "committee_relu", "committee_hermite", "committee_square"]


def _unsplit_drift(module, state, params) -> np.ndarray:
    """T_jβ = Σ_c u_c I3(j, β, c) evaluated entry by entry on the full grid (no split)."""
    Q, M, P, a, a_s = (np.asarray(state[k]) for k in ("Q", "M", "P", "a", "a_star"))
    p, k = M.shape
    s = module.scalars({k_: jnp.float64(v) for k_, v in params.items()})
    omega = np.block([[Q, M], [M.T, P]])
    diag = np.diag(omega)
    u = np.concatenate([-float(s["c_p"]) * a, float(s["c_k"]) * a_s])
    names = [n for n in dir(module) if n.startswith("i3_") and n.count("_") == 1]
    T = np.zeros((p, p + k))
    for name in names:
        cls = name.split("_")[1]
        cs = {"units": slice(None), "student": slice(0, p), "teacher": slice(p, p + k)}[cls]
        i3 = np.asarray(jax.jit(getattr(module, name))(  # I3(j, β, c) on the broadcast grid
            C11=diag[:p, None, None], C12=omega[:p, :, None], C13=omega[:p, None, cs],
            C22=diag[None, :, None], C23=omega[None, :, cs], C33=diag[None, None, cs]))
        T += np.einsum("jbc,c->jb", np.broadcast_to(i3, (p, p + k, len(u[cs]))), u[cs])
    return T


def _check_split(model) -> None:
    module = model.module
    assert any(n.endswith("_curvature") for n in dir(module)), "split not generated"
    for p, k in ((2, 1), (7, 3)):  # below and above the written-out/matmul threshold
        state = _state(p, k, seed=3, trained=True)
        params = {**model.parameters, "p": p, "k": k, "gamma": 0.0}  # drift only
        st = {k_: jnp.asarray(v, dtype=jnp.float64) for k_, v in state.items()}
        pr = {k_: jnp.float64(v) for k_, v in params.items()}
        d = {k_: np.asarray(v) for k_, v in jax.jit(module.vector_field)(0.0, st, pr).items()}
        T = _unsplit_drift(module, state, params)
        a = state["a"]
        np.testing.assert_allclose(d["M"], a[:, None] * T[:, p:], rtol=1e-10, atol=1e-13)
        drift = a[:, None] * T[:, :p]
        np.testing.assert_allclose(d["Q"], drift + drift.T, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", SHIPPED)
def test_split_sum_equals_the_full_grid(name):
    """Closed forms (erf, ReLU), a Wick polynomial teacher (He₃) and square activations."""
    _check_split(eqgen.load(model_path(name)))


def test_split_sum_equals_the_full_grid_for_quadrature(tmp_path):
    """tanh has no closed form: the split's parts are the Stein-reduced 2-D quadratures."""
    _check_split(eqgen.load(committee_spec(tmp_path, sigma="tanh(z)", regime="gradient_flow")))


def test_swapped_curvature_and_slope_is_detected(tmp_path):
    """Planted error: A and B exchanged in the generated sum. The Monte Carlo check of dM/dt and
    dQ/dt (docs/theory.md, The ODEs as sample averages) must fail, while the correct module
    passes."""
    path = committee_spec(tmp_path, p=2, k=2, gamma=0.5, Delta=0.0)
    model = eqgen.load(path)
    eq = model.equations
    text = module_source(eq, header="planted error", defaults=model.parameters)
    assert "i3_units_curvature(C11=dq[:, None]" in text
    a_line, b_line = "A = jnp.broadcast_to(i3_units_", "B = jnp.broadcast_to(i3_units_"
    planted = (text.replace(a_line + "curvature", "@A").replace(b_line + "slope", "@B")
               .replace("@A", a_line + "slope").replace("@B", b_line + "curvature"))
    assert planted != text
    bad_path = tmp_path / "planted.py"
    bad_path.write_text(planted)
    bad = modfile.load_module(bad_path)

    state = _state(2, 2, seed=5)
    mc = monte_carlo(state, sigma="erf(z / sqrt(2))", g="erf(z / sqrt(2))", c_p=0.5, c_k=0.5,
                     gamma=0.5, batch=1, Delta=0.0, rate=0.0)
    good, _ = _evaluate(model, state, model.parameters)
    _assert_close(good["M"], mc["M"], "dM/dt")
    _assert_close(good["Q"], mc["Q"], "dQ/dt")

    class Planted:
        module = bad

    wrong, _ = _evaluate(Planted, state, model.parameters)
    with pytest.raises(AssertionError):
        _assert_close(wrong["M"], mc["M"], "dM/dt")
