"""Helpers shared by the tests: model files, small specs, random covariances, Monte Carlo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


def model_path(name: str) -> Path:
    return MODELS / f"{name}.eqg"


def write_spec(tmp_path: Path, text: str, name: str = "m") -> Path:
    path = tmp_path / f"{name}.eqg"
    path.write_text(text)
    return path


COMMITTEE_TEMPLATE = """model {name} "test model"
param p = {p}, k = {k}, gamma = {gamma}, Delta = {Delta}
data gaussian
teacher committee(width = k, activation = {g}, readout = {c_k}, noise = Delta)
student committee(width = p, activation = {sigma}, readout = {c_p}, second_layer = {second})
loss {loss}
sgd learning_rate = gamma, batch = {batch}
regime {regime}
init Q = identity(p), M = zeros(p, k), P = identity(k)
time t_max = 10
"""


def committee_spec(tmp_path: Path, *, name: str = "m", p: int = 2, k: int = 2,
                   gamma: float = 1.0, Delta: float = 0.0, sigma: str = "erf(z / sqrt(2))",
                   g: str = "erf(z / sqrt(2))", c_p: str = "1/p", c_k: str = "1/k",
                   second: str = "fixed(1)", loss: str = "square", batch: int = 1,
                   regime: str = "high_dimensional") -> Path:
    text = COMMITTEE_TEMPLATE.format(**locals())
    return write_spec(tmp_path, text, name)


def random_overlaps(p: int, k: int, seed: int, d: int = 50) -> dict[str, np.ndarray]:
    """Q, M, P of random weights at small d: a generic positive-definite Ω."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((p, d)) * rng.uniform(0.5, 1.5, (p, 1))
    Ws = rng.standard_normal((k, d))
    return {"Q": W @ W.T / d, "M": W @ Ws.T / d, "P": Ws @ Ws.T / d}


def gaussian_fields(omega: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n samples of N(0, Ω), shape (n, dim)."""
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(omega)
    return rng.standard_normal((n, omega.shape[0])) @ L.T


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_quiet(*args: object) -> Run:
    """`eqgen ARGS` in-process, stdout and stderr captured (usable in module-scoped fixtures)."""
    import contextlib
    import io

    from eqgen.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Run(code, out.getvalue(), err.getvalue())
