"""The I4 sum Σ_(c,e) u_c u_e I4(j, l, c, e) of the variance term is laid out two ways in the
generated code: the full (c, e) grid for narrow committees (broadcasts) and the pairs c ≤ e
above GRID_I4 terms (gathers). Both must give the same right-hand side, for same-class sums
(units × units, student × student) and mixed ones (student × teacher, whose grid holds each
pair once and so carries the factor 2). A planted error in the grid's weights is caught."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqgen
from tests.helpers import model_path
from tests.test_vector_field import _state

GENERATED = model_path("committee_erf").parent.parent / "generated"
WITH_I4 = ["committee_erf", "committee_hermite", "committee_square", "saad_solla"]


def _module_from_source(source: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102
    sys.modules.pop(name, None)
    return module


def _dq(module: ModuleType, model, p: int, k: int) -> np.ndarray:
    state = _state(p, k, seed=5, trained=True)
    params = {**model.parameters, "p": p, "k": k, "Delta": 0.0}
    st = {n: jnp.asarray(v, dtype=jnp.float64) for n, v in state.items()}
    pr = {n: jnp.float64(v) for n, v in params.items()}
    return np.asarray(jax.jit(module.vector_field)(0.0, st, pr)["Q"])


def _both_layouts(name: str, source_edit=None) -> list[tuple[np.ndarray, np.ndarray]]:
    model = eqgen.load(model_path(name))
    source = (GENERATED / f"{name}.py").read_text()  # up to date: tests/test_codegen.py
    if source_edit is not None:
        source = source_edit(source)
    grid = _module_from_source(source, f"_layout_grid_{name}")
    pairs = _module_from_source(source.replace("GRID_I4 = 2704", "GRID_I4 = 0"),
                                f"_layout_pairs_{name}")
    assert grid.GRID_I4 > 0 and pairs.GRID_I4 == 0
    return [(_dq(grid, model, p, k), _dq(pairs, model, p, k)) for p, k in ((2, 1), (5, 3))]


@pytest.mark.parametrize("name", WITH_I4)
def test_grid_and_pairs_give_the_same_variance_term(name: str) -> None:
    for grid, pairs in _both_layouts(name):
        np.testing.assert_allclose(grid, pairs, rtol=1e-12, atol=1e-15)


def test_the_shipped_erf_module_uses_the_grid_at_small_width() -> None:
    source = (GENERATED / "committee_erf.py").read_text()
    assert "GRID_I4 = 2704" in source and "axis=(1, 2)" in source


def test_a_wrong_grid_weight_is_caught() -> None:
    """Counting each mixed (student, teacher) term once instead of twice on the grid changes
    the right-hand side, so the comparison above can fail."""
    def plant(source: str) -> str:
        assert "w = 2.0 * u[:p][:, None] * u[p:][None, :]" in source
        return source.replace("w = 2.0 * u[:p][:, None] * u[p:][None, :]",
                              "w = 1.0 * u[:p][:, None] * u[p:][None, :]")

    diffs = [np.max(np.abs(g - q)) for g, q in _both_layouts("committee_hermite", plant)]
    assert max(diffs) > 1e-6
