"""Generated code: equal to a direct sympy lambdify, deterministic to the byte under any hash
seed, readable (no index soup, no float32, no tabs), and `generated/` up to date."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import sympy as sp

import eqgen
from tests.helpers import MODELS, ROOT, model_path

MODEL_NAMES = sorted(p.stem for p in MODELS.glob("*.eqg"))
DMFT_NAMES = [n for n in MODEL_NAMES if "perceptron" in model_path(n).read_text()]
COMMITTEE_NAMES = [n for n in MODEL_NAMES if n not in DMFT_NAMES]


@pytest.mark.parametrize("name", DMFT_NAMES)
def test_generated_dmft_functions_equal_sympy_lambdify(name: str) -> None:
    """ℓ, ℓ', ℓ'' and ŷ of the generated module against lambdify of the derived expressions
    (away from the tails, where the module's stable forms and plain exp agree)."""
    import sympy as sp

    from eqgen.symbolic.convert import Y
    from eqgen.symbolic.stable import Sigmoid, Softplus
    from eqgen.theories.dmft import H

    model = eqgen.load(model_path(name))
    module, eq = model.module, model.equations
    params = model.parameters
    rng = np.random.default_rng(1)
    y = rng.choice([-1.0, 1.0], 50) if eq.data != "glm" else rng.normal(size=50)
    h = rng.normal(scale=2.0, size=50)
    plain = {Softplus: lambda u: sp.log(1 + sp.exp(u)), Sigmoid: lambda u: 1 / (1 + sp.exp(-u))}
    subs = {s: params[n] for n, s in eq.params.items()}
    for fn, expr in ((module.loss, eq.loss), (module.loss_h, eq.dloss),
                     (module.loss_hh, eq.d2loss)):
        e = expr.replace(lambda x: type(x) in plain, lambda x: plain[type(x)](x.args[0]))
        want = sp.lambdify((Y, H), e.subs(subs), "numpy")(y, h) * np.ones_like(h)
        np.testing.assert_allclose(np.asarray(fn(y, h, params)), want, rtol=1e-12, atol=1e-14)
    want = sp.lambdify(H, eq.label.subs(subs), "numpy")(h)
    np.testing.assert_array_equal(np.asarray(module.label(h, params)), want)


@pytest.mark.parametrize("name", COMMITTEE_NAMES)
def test_generated_integrals_equal_sympy_lambdify(name: str) -> None:
    """Every exact integral function of the module against lambdify of the same expression,
    at random covariance entries of a positive-definite matrix."""
    model = eqgen.load(model_path(name))
    module = model.module
    rng = np.random.default_rng(0)
    checked = 0
    pieces = [part for it in model.equations.integrals for part in (it.parts or (it,))]
    for it in pieces:
        if it.expr is None:
            continue
        ref = sp.lambdify(it.args, it.expr, modules=[{"erf": scipy.special.erf}, "numpy"])
        gen = getattr(module, it.name)
        for _ in range(5):
            vecs = rng.standard_normal((it.dim, it.dim + 3))
            C = vecs @ vecs.T / (it.dim + 3)
            vals = [C[i, j] for i in range(it.dim) for j in range(i, it.dim)]
            want = float(ref(*vals))
            got = float(gen(**{str(a): jnp.float64(v) for a, v in zip(it.args, vals,
                                                                        strict=True)}))
            assert got == pytest.approx(want, rel=1e-12, abs=1e-13), it.name
            checked += 1
    assert checked > 0


def _generate_all(out_dir: Path, hashseed: str) -> dict[str, bytes]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    subprocess.run([sys.executable, "-m", "eqgen", "generate", *map(str, MODELS.glob("*.eqg")),
                    "--out-dir", str(out_dir)], check=True, env=env, capture_output=True,
                   timeout=600)
    return {p.name: p.read_bytes() for p in sorted(out_dir.glob("*.py"))}


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> tuple[dict[str, bytes], dict[str, bytes]]:
    a = _generate_all(tmp_path_factory.mktemp("gen0"), "0")
    b = _generate_all(tmp_path_factory.mktemp("gen1"), "12345")
    return a, b


def test_generation_is_byte_identical_across_hash_seeds(regenerated) -> None:
    a, b = regenerated
    assert a.keys() == b.keys() and len(a) == len(MODEL_NAMES)
    for name in a:
        assert a[name] == b[name], f"{name} differs between PYTHONHASHSEED values"


def test_generated_folder_is_up_to_date(regenerated) -> None:
    a, _ = regenerated
    shipped = {p.name: p.read_bytes() for p in sorted((ROOT / "generated").glob("*.py"))
               if p.name != "__init__.py"}
    assert shipped.keys() == a.keys(), "generated/ and models/ list different models"
    stale = [n for n in a if a[n] != shipped[n]]
    assert not stale, f"generated/ is stale for {stale}: run `make generate`"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_generated_code_reads_like_code_a_person_wrote(name: str) -> None:
    text = (ROOT / "generated" / f"{name}.py").read_text()
    assert "\t" not in text
    assert "float32" not in text
    assert "math.erf" not in text and "math." not in text.replace("jnp.", "")
    assert "Generated by eqgen" in text and "sympy 1.14.0" in text
    if name in DMFT_NAMES:
        assert "def loss_hh(y, h, params):" in text
    else:
        assert "def vector_field(t, state, params):" in text
    for line in text.splitlines():
        assert "[24]" not in line  # no index soup
    compile(text, name, "exec")


def test_header_records_spec_hash() -> None:
    model = eqgen.load(model_path("committee_erf"))
    text = (ROOT / "generated" / "committee_erf.py").read_text()
    assert model.spec.hash in text
