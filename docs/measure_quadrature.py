"""Measure the accuracy of eqgen's Gauss–Hermite quadrature at the orders eqgen uses.

eqgen integrates the Gaussian integrals that have no closed form at the orders of
`eqgen.theories.committee.QUADRATURE_ORDER` (per dimension: 1-D 128, 2-D 96, 3-D 40, 4-D 24):
up to three fields with `eqgen.runtime.quadrature.gaussian_expectation` (the symmetric-root
rule), four fields with `gaussian_product_expectation` (the nested rule on a Cholesky factor,
nested as `PRODUCT_RULE_NESTING` says). For the four-field integrals the symmetric rule at
order 20 (what eqgen used before) is measured as well, in rows marked "sym".
This script compares those results with independent references:

- closed forms (erf I2, I3, J2, I4; ReLU I2, I3, J2), exact to round-off;
- a Monte Carlo average over `--samples` draws (default 10^7) for the ReLU I4, which has no
  closed form; its standard error is printed with it;
- a much higher quadrature order for smooth activations without closed forms (tanh, softplus);
  two high orders are compared to show that the reference itself has converged.

Covariances are taken from Ω = [[Q, M], [Mᵀ, P]] of a p = k = 2 model at three stages
("early": small overlaps, "learned": M ≈ P, nearly singular, "large": student norms of 3-4 as
ReLU networks reach), with fields (λ1, λ2, ν1, ν2) in that order. The I4 rows include the
diagonal pair c = e of the variance term, where two of the four fields coincide.

With `--relu-model` it also measures what the ReLU I4 error does to a whole model: the SGD
variance term of `models/committee_relu.eqg` (run in the high-dimensional regime, whatever regime
the file states), Σ_ce u_c u_e I4(j, l, c, e) (+ Δ J2), as the generated code computes it,
against a Monte Carlo average of E[𝓔² σ'(λ_j) σ'(λ_l)] over the joint fields, at the spec's
initial overlaps and at a nearly learned state. The module it needs is generated into a
temporary folder.

Run from the repository root:

    .venv/bin/python docs/measure_quadrature.py              # 1-2 minutes
    .venv/bin/python docs/measure_quadrature.py --samples 1000000 --seed 1
    .venv/bin/python docs/measure_quadrature.py --relu-model

It prints Markdown tables (those in docs/numerics.md were made this way).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate

from eqgen.runtime.quadrature import gaussian_expectation, gaussian_product_expectation
from eqgen.theories.committee import PRODUCT_RULE_NESTING, QUADRATURE_ORDER

jax.config.update("jax_enable_x64", True)

# --------------------------------------------------------------------------------------------
# covariances


def omega(q: list[list[float]], m: list[list[float]]) -> np.ndarray:
    """Ω for p = k = 2 with P = I."""
    q_, m_ = np.array(q), np.array(m)
    return np.block([[q_, m_], [m_.T, np.eye(2)]])


OMEGAS = {
    "early": omega([[0.5, 0.05], [0.05, 0.6]], [[0.1, 0.05], [0.02, 0.08]]),
    "learned": omega([[1.0, 0.02], [0.02, 1.0]], [[0.98, 0.01], [0.01, 0.97]]),
    "large": omega([[4.0, 1.0], [1.0, 3.0]], [[1.5, 0.3], [0.2, 1.2]]),
}
for _name, _om in OMEGAS.items():
    assert np.linalg.eigvalsh(_om).min() > -1e-12, _name

# fields of each integral, as indices into (λ1, λ2, ν1, ν2)
FIELDS = {
    "I2": (0, 2),  # E[φ(λ1) φ(ν1)]
    "J2": (0, 1),  # E[σ'(λ1) σ'(λ2)]
    "I3": (0, 1, 2),  # E[σ'(λ1) λ2 φ(ν1)]
    "I4": (0, 1, 2, 3),  # E[σ'(λ1) σ'(λ2) φ(ν1) φ(ν2)]
    "I4 (c = e)": (0, 1, 2, 2),  # E[σ'(λ1) σ'(λ2) φ(ν1)²]: a singular 4 × 4 covariance
}


def sub(om: np.ndarray, idx: tuple[int, ...]) -> np.ndarray:
    return om[np.ix_(idx, idx)]


# --------------------------------------------------------------------------------------------
# activations (JAX for quadrature, numpy for Monte Carlo), as the generated code writes them

ACT = {
    "erf": (lambda z: jax.scipy.special.erf(z / math.sqrt(2)),
            lambda z: math.sqrt(2 / math.pi) * jnp.exp(-z * z / 2)),
    "relu": (lambda z: jnp.maximum(0.0, z), lambda z: jnp.heaviside(z, 0.5)),
    "tanh": (jnp.tanh, lambda z: 1 - jnp.tanh(z) ** 2),
    "softplus": (lambda z: jnp.log1p(jnp.exp(z)), jax.nn.sigmoid),
}
ACT_NP = {"relu": (lambda z: np.maximum(0.0, z), lambda z: np.heaviside(z, 0.5))}


def integrand(kind: str, act: str, backend: str = "jax") -> Callable:
    phi, dphi = ACT[act] if backend == "jax" else ACT_NP[act]
    if kind == "I2":
        return lambda h: phi(h[..., 0]) * phi(h[..., 1])
    if kind == "J2":
        return lambda h: dphi(h[..., 0]) * dphi(h[..., 1])
    if kind == "I3":
        return lambda h: dphi(h[..., 0]) * h[..., 1] * phi(h[..., 2])
    return lambda h: dphi(h[..., 0]) * dphi(h[..., 1]) * phi(h[..., 2]) * phi(h[..., 3])


def factors(kind: str, act: str) -> tuple[Callable, ...]:
    """The integrand of `kind` as one function per field (I3's middle field is linear)."""
    phi, dphi = ACT[act]
    return {"I2": (phi, phi), "J2": (dphi, dphi), "I3": (dphi, lambda z: z, phi),
            "I4": (dphi, dphi, phi, phi)}[kind]


def quad(kind: str, act: str, cov: np.ndarray, order: int, symmetric: bool = False) -> float:
    """The integral by eqgen's rule for its number of fields, or (`symmetric`) by the
    symmetric-root rule whatever the number."""
    dim = cov.shape[0]
    nesting = PRODUCT_RULE_NESTING.get(dim)
    if nesting is not None and not symmetric:
        return float(gaussian_product_expectation(factors(kind.split()[0], act),
                                                  jnp.asarray(cov), order=order,
                                                  nesting=nesting))
    chunk = 200_000 if order**dim > 200_000 else None
    f = integrand(kind.split()[0], act)
    return float(gaussian_expectation(f, jnp.asarray(cov), order=order, chunk=chunk))


# --------------------------------------------------------------------------------------------
# closed forms (docs/numerics.md, The expectation engine; Saad & Solla 1995, Goldt et al. 2019,
# Cho & Saul 2009)


def erf_closed(kind: str, c: np.ndarray) -> float:
    if kind == "I2":
        return 2 / np.pi * np.arcsin(c[0, 1] / np.sqrt((1 + c[0, 0]) * (1 + c[1, 1])))
    if kind == "J2":
        return 2 / np.pi / np.sqrt((1 + c[0, 0]) * (1 + c[1, 1]) - c[0, 1] ** 2)
    if kind == "I3":
        a = 1 + c[0, 0]
        return (2 / np.pi * (c[1, 2] * a - c[0, 1] * c[0, 2])
                / (a * np.sqrt(a * (1 + c[2, 2]) - c[0, 2] ** 2)))
    l4 = (1 + c[0, 0]) * (1 + c[1, 1]) - c[0, 1] ** 2

    def lam(i: int, j: int) -> float:  # Λ0 for (i, j) = (3, 4); Λ1 for (3, 3); Λ2 for (4, 4)
        return (l4 * (c[i, j] + (i == j)) - c[1, i] * c[1, j] * (1 + c[0, 0])
                - c[0, i] * c[0, j] * (1 + c[1, 1])
                + c[0, 1] * c[0, i] * c[1, j] + c[0, 1] * c[0, j] * c[1, i])

    ratio = np.clip(lam(2, 3) / np.sqrt(lam(2, 2) * lam(3, 3)), -1.0, 1.0)
    return 4 / (np.pi**2 * np.sqrt(l4)) * np.arcsin(ratio)


def relu_closed(kind: str, c: np.ndarray) -> float:
    if kind == "I2":
        rho = c[0, 1] / np.sqrt(c[0, 0] * c[1, 1])
        return (np.sqrt(c[0, 0] * c[1, 1] - c[0, 1] ** 2)
                + c[0, 1] * (np.pi / 2 + np.arcsin(rho))) / (2 * np.pi)
    if kind == "J2":
        return 0.25 + np.arcsin(c[0, 1] / np.sqrt(c[0, 0] * c[1, 1])) / (2 * np.pi)
    if kind == "I3":
        return (c[0, 1] * np.sqrt(c[0, 0] * c[2, 2] - c[0, 2] ** 2) / (2 * np.pi * c[0, 0])
                + c[1, 2] / (2 * np.pi) * np.arcsin(c[0, 2] / np.sqrt(c[0, 0] * c[2, 2]))
                + c[1, 2] / 4)
    raise ValueError(kind)


# --------------------------------------------------------------------------------------------
# Monte Carlo


def monte_carlo(kind: str, act: str, cov: np.ndarray, samples: int, seed: int
                ) -> tuple[float, float]:
    """Mean and standard error of the integrand over `samples` draws of N(0, cov)."""
    evals, evecs = np.linalg.eigh(cov)
    root = (evecs * np.sqrt(np.clip(evals, 0, None))) @ evecs.T
    f = integrand(kind.split()[0], act, backend="numpy")
    rng = np.random.default_rng(seed)
    total = total_sq = 0.0
    done = 0
    while done < samples:
        n = min(1_000_000, samples - done)
        v = f(rng.standard_normal((n, cov.shape[0])) @ root)
        total += float(v.sum())
        total_sq += float((v * v).sum())
        done += n
    mean = total / samples
    var = total_sq / samples - mean**2
    return mean, math.sqrt(max(var, 0.0) / samples)


def one_dim_reference(v: float) -> float:
    """E[tanh(h)²], h ~ N(0, v), by adaptive quadrature (scipy)."""
    s = math.sqrt(v)
    with warnings.catch_warnings():  # it warns that 1e-15 is out of reach; 1e-14 is reached
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        val, _ = integrate.quad(lambda x: math.tanh(s * x) ** 2 * math.exp(-x * x / 2)
                                / math.sqrt(2 * math.pi), -40, 40, epsabs=1e-15, epsrel=1e-14,
                                limit=500)
    return val


# --------------------------------------------------------------------------------------------
# the variance term of committee_relu


def relu_model_variance(samples: int, seed: int) -> None:
    """Print the variance term of models/committee_relu.eqg: generated code vs Monte Carlo."""
    import eqgen
    import eqgen.theories.committee as committee

    # eqgen refuses this model (a step function without closed form): lift the refusal here,
    # and only here, to measure the error that motivates it
    committee._refuse_kinked_quadrature = lambda spec, integrals: None
    text = (Path(__file__).resolve().parent.parent / "models" / "committee_relu.eqg").read_text()
    text, n = re.subn(r"^regime .*$", "regime high_dimensional", text, flags=re.M)
    if n == 0:
        text += "\nregime high_dimensional\n"
    tmp = Path(tempfile.mkdtemp(prefix="eqgen-measure-"))
    os.environ["EQGEN_CACHE_DIR"] = str(tmp / "cache")  # keep the user's cache clean
    spec = tmp / "models" / "committee_relu.eqg"
    spec.parent.mkdir()
    spec.write_text(text)
    model = eqgen.load(spec)
    r = model.resolve()
    p, k = r.p, r.k
    scale = r.gamma * r.c_p / r.batch  # the prefactor γ c_p / B of the variance term
    # dQ/dt is affine in γ: the difference of two learning rates isolates the variance term
    full = model.vector_field()
    half = model.vector_field({"gamma": r.gamma / 2})
    P = r.init["P"]
    states = {
        "spec init": (r.init["Q"], r.init["M"]),
        "learned": (0.98 * P[:p, :p] + 0.02 * np.eye(p), 0.97 * P[:p, :k]),
    }
    a, a_star = r.init["a"], r.init["a_star"]
    u = np.concatenate([-r.c_p * a, r.c_k * a_star])
    print("\n| state | entry | generated code | Monte Carlo | MC s.e. | rel. error |")
    print("|---|---|---|---|---|---|")
    for label, (Q, M) in states.items():
        state = {"Q": Q, "M": M, "P": P, "a": a, "a_star": a_star}
        dq = np.asarray(full(0.0, state)["Q"]) - np.asarray(half(0.0, state)["Q"])
        V = dq / (0.5 * scale * np.outer(a, a))
        omega = np.block([[Q, M], [M.T, P]])
        evals, evecs = np.linalg.eigh(omega)
        root = (evecs * np.sqrt(np.clip(evals, 0, None))) @ evecs.T
        rng = np.random.default_rng(seed)
        acc = np.zeros((p, p))
        acc_sq = np.zeros((p, p))
        done = 0
        while done < samples:
            n = min(1_000_000, samples - done)
            h = rng.standard_normal((n, p + k)) @ root
            err2 = (np.maximum(h, 0.0) @ u) ** 2 + r.Delta  # E over ξ of 𝓔², given h
            step = (h[:, :p] > 0).astype(float)
            v = err2[:, None, None] * step[:, :, None] * step[:, None, :]
            acc += v.sum(axis=0)
            acc_sq += (v * v).sum(axis=0)
            done += n
        mean = acc / samples
        se = np.sqrt(np.clip(acc_sq / samples - mean**2, 0, None) / samples)
        for j in range(p):
            for l in range(j, p):
                print(f"| {label} | V[{j},{l}] | {V[j, l]:.6f} | {mean[j, l]:.6f} | "
                      f"{se[j, l]:.1e} | {(V[j, l] - mean[j, l]) / mean[j, l]:+.1%} |")


# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--relu-model", action="store_true",
                    help="also measure the variance term of models/committee_relu.eqg")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows: list[tuple[str, ...]] = []

    def row(integral: str, act: str, cov: str, order: int, value: float, ref: float,
            ref_text: str, dim: int | None = None, rule: str = "") -> None:
        err = abs(value - ref)
        rel = err / abs(ref) if ref else float("nan")
        dim = dim or len(FIELDS[integral])
        rows.append((integral, act, cov, f"{order}^{dim}{rule}", f"{value:.10f}",
                     f"{ref:.10f}", ref_text, f"{err:.1e}", f"{rel:.1e}"))

    def rows_of(kind: str, act: str, cname: str, c: np.ndarray, ref: float,
                ref_text: str) -> None:
        """eqgen's rule at eqgen's order; for four fields also the symmetric rule at 20."""
        order = QUADRATURE_ORDER[c.shape[0]]
        row(kind, act, cname, order, quad(kind, act, c, order), ref, ref_text)
        if c.shape[0] in PRODUCT_RULE_NESTING:
            row(kind, act, cname, 20, quad(kind, act, c, 20, symmetric=True), ref, ref_text,
                rule=" sym")

    # closed forms: erf and ReLU at eqgen's orders
    for act, closed in (("erf", erf_closed), ("relu", relu_closed)):
        kinds = ("I2", "J2", "I3", "I4", "I4 (c = e)") if act == "erf" else ("I2", "J2", "I3")
        for kind in kinds:
            for cname, om in OMEGAS.items():
                c = sub(om, FIELDS[kind])
                rows_of(kind, act, cname, c, closed(kind.split()[0], c), "closed form")

    # ReLU I4: Monte Carlo, and the quadrature at several orders
    for kind in ("I4", "I4 (c = e)"):
        for cname, om in OMEGAS.items():
            c = sub(om, FIELDS[kind])
            mean, se = monte_carlo(kind, "relu", c, args.samples, args.seed)
            for order in (QUADRATURE_ORDER[4], 30):
                row(kind, "relu", cname, order, quad(kind, "relu", c, order), mean,
                    f"MC {args.samples:.0e} ± {se:.1e}")
            row(kind, "relu", cname, 20, quad(kind, "relu", c, 20, symmetric=True), mean,
                f"MC {args.samples:.0e} ± {se:.1e}", rule=" sym")

    # smooth activations without closed forms: a much higher order as the reference
    high = {2: (160, 200), 3: (48, 60), 4: (28, 34)}
    for act, kinds in (("tanh", ("I2", "J2", "I3", "I4", "I4 (c = e)")),
                       ("softplus", ("I2", "I4"))):
        for kind in kinds:
            for cname, om in OMEGAS.items():
                c = sub(om, FIELDS[kind])
                dim = c.shape[0]
                lo, hi = high[dim]
                # the reference by the symmetric rule, independent of the nested one
                r1 = quad(kind, act, c, lo, symmetric=True)
                r2 = quad(kind, act, c, hi, symmetric=True)
                rows_of(kind, act, cname, c, r2,
                        f"GH {hi}^{dim} (vs {lo}^{dim}: {abs(r1 - r2):.0e})")

    # 1-D (no committee integral is 1-D; the order is defined for completeness)
    for v in (0.5, 4.0):
        order = QUADRATURE_ORDER[1]
        val = float(gaussian_expectation(lambda h: jnp.tanh(h[..., 0]) ** 2,
                                         jnp.array([[v]]), order=order))
        row("E[tanh²(h)]", "tanh", f"var {v:g}", order, val, one_dim_reference(v),
            "scipy quad", dim=1)

    head = ("integral", "activation", "Ω", "order^dim", "quadrature", "reference",
            "reference by", "abs. error", "rel. error")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if args.relu_model:
        relu_model_variance(args.samples, args.seed)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
