"""The fast arcsin used by generated code (eqgen.runtime.special): accuracy against numpy, and
its written-out coefficients against the fit they come from."""

from __future__ import annotations

import jax
import numpy as np

from eqgen.runtime import special


def test_written_coefficients_are_the_fit() -> None:
    even, odd = special._fit()
    np.testing.assert_allclose(special._EVEN, even, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(special._ODD, odd, rtol=1e-13, atol=1e-16)


def test_arcsin_matches_numpy_on_the_whole_interval() -> None:
    x = np.concatenate([np.linspace(-1.0, 1.0, 200_001), [-1.0, -0.5, 0.0, 0.5, 1.0],
                        np.nextafter(0.5, [0.0, 1.0]), 1 - np.logspace(-16, -1, 50)])
    got = np.asarray(jax.jit(special.arcsin)(x))
    assert np.max(np.abs(got - np.arcsin(x))) <= 6e-16


def test_a_wrong_coefficient_is_caught(monkeypatch) -> None:  # noqa: ANN001
    """The accuracy test can fail: one coefficient off in its 12th digit breaks it."""
    bad = list(special._EVEN)
    bad[1] *= 1 + 1e-12
    monkeypatch.setattr(special, "_EVEN", tuple(bad))
    x = np.linspace(-1.0, 1.0, 20_001)
    assert np.max(np.abs(np.asarray(special.arcsin(x)) - np.arcsin(x))) > 6e-16
