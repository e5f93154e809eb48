"""Theory against finite-d simulation for the shipped models: docs/figures/*.png.

For each committee model: `Model.compare` (simulate at dimension d with a few seeds, then solve
the ODE from the simulation's measured initial overlaps at the simulated times), a plot of one
over the other (`eqgen.compare.plot_comparison`) and a row of the summary table of
docs/comparison.md (largest deviation, throughput). For each DMFT case (GD, SGD and persistent
SGD on the two-cluster mixture, the three-cluster mixture, the ridge GLM): the same with the
DMFT forward sweep as the theory. The numbers also go to docs/figures/comparison.json.

    .venv/bin/python scripts/compare_plots.py [--only committee_erf ...] [--seeds 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# name, spec, parameter overrides, d, t_max, what the figure shows
CASES = [
    ("committee_erf", "committee_erf", {}, 1000, 300.0,
     "erf, p = k = 2, γ c_p = 0.5: through the plateau to perfect learning"),
    ("saad_solla", "saad_solla", {}, 1000, 300.0,
     "Saad–Solla units, η = 0.5, small random initial weights: a long plateau whose end "
     "depends on O(d^-1/2) fluctuations"),
    ("committee_relu", "committee_relu", {"p": 10, "gamma": 0.05}, 3, 30.0,
     "ReLU, gradient-flow regime at d = 3, p = 10, k = 2, γ c_p = 0.005"),
    ("committee_square", "committee_square", {}, 1000, 50.0,
     "σ = z², p = 2, k = 1, γ c_p = 0.1: which unit wins is decided by fluctuations"),
    ("committee_hermite", "committee_hermite", {}, 2000, 50.0,
     "erf student, He₃ teacher, γ c_p = 0.05: the plateau of a target of information "
     "exponent 3"),
    ("committee_hermite_d500", "committee_hermite", {}, 500, 50.0,
     "the same at d = 500: finite-d fluctuations end the plateau early"),
    ("committee_trained_readout", "committee_trained_readout", {}, 1000, 200.0,
     "trained second layer, γ c_p = 0.25"),
    ("committee_mean_field", "committee_mean_field", {"p": 32}, 2000, 20.0,
     "mean-field reduction at p = 32 (its O(1/p) error is visible)"),
]

# DMFT cases: name, spec, parameter overrides, d, what the figure shows (t_max from the spec)
DMFT_CASES = [
    ("gmm_two_cluster_logistic", "gmm_two_cluster_logistic", {"b": 1.0},
     "two clusters, logistic loss, full-batch GD (η = 0.1)"),
    ("gmm_sgd", "gmm_two_cluster_logistic", {"b": 0.3, "tau": 0.1 / 0.3},
     "two clusters, logistic loss, SGD with batch fraction b = 0.3"),
    ("gmm_psgd", "gmm_two_cluster_logistic", {"b": 0.3, "tau": 2.0},
     "two clusters, logistic loss, persistent SGD (b = 0.3, τ = 2)"),
    ("gmm_three_cluster", "gmm_three_cluster", {},
     "three clusters (ρ = 0.6), even readout, GD from m₀ = 0.5"),
    ("glm_ridge_square", "glm_ridge_square", {},
     "teacher–student GLM, square loss, ridge: exact Gaussian propagation"),
    ("gmm_two_cluster_hinge", "gmm_two_cluster_hinge", {},
     "two clusters, hinge loss: DMFT smoothed at T = ηΔ/4, simulation of the hinge itself"),
]
DMFT_D = 4000
DMFT_SAMPLES = 20000


def grid(t_max: float) -> np.ndarray:
    """Output times: geometric over three decades below t_max, plus a linear grid."""
    return np.unique(np.round(np.concatenate([np.geomspace(t_max * 1e-3, t_max, 36),
                                              np.linspace(0, t_max, 13)]), 10))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="case names to run (default: all)")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    args = ap.parse_args()

    import eqgen
    from eqgen.compare import deviations, plot_comparison

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "comparison.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name, spec, params, d, t_max, what in CASES:
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        model = eqgen.load(ROOT / "models" / f"{spec}.eqg")
        cmp = model.compare(params=params, d=d, seeds=args.seeds, seed=0, save_at=grid(t_max))
        wall = time.perf_counter() - t0
        plot_comparison(cmp, out / f"compare_{name}.png",
                        title=f"{spec}: {what}\nd = {d}, {args.seeds} seeds")
        sim = cmp.metadata["simulation"]
        dev = deviations(cmp)["excess_risk"]
        th, sm = cmp["excess_risk"], cmp["excess_risk_sim"]
        row = {
            "spec": spec, "parameters": params, "d": d, "seeds": args.seeds, "t_max": t_max,
            "what": what, "steps_per_seed": sim["steps"],
            "simulation_s": round(sim["wall_seconds"], 1), "total_s": round(wall, 1),
            "steps_per_s": round(sim["steps_per_second"]),
            "excess_risk_start": float(th[0]), "excess_risk_end_theory": float(th[-1]),
            "excess_risk_end_simulation": float(sm[-1]),
            "max_abs_deviation": dev["max_abs"],
            "max_deviation_rel_to_range": dev["max_rel_to_range"],
            "max_deviation_in_stderr": dev["max_in_stderr"],
            "series": {"t": cmp.t.tolist(), "excess_risk": th.tolist(),
                       "excess_risk_sim": sm.tolist(),
                       "excess_risk_sim_stderr": cmp["excess_risk_sim_stderr"].tolist()},
        }
        summary[name] = row
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"{name:28s} d = {d:5d}: {sim['steps']:>9,} steps × {args.seeds} seeds in "
              f"{sim['wall_seconds']:6.1f} s ({sim['steps_per_second']:,.0f} steps/s); "
              f"max |Δε| = {dev['max_abs']:.2e} ({100 * dev['max_rel_to_range']:.1f} % of "
              "the range)", flush=True)
    for name, spec, params, what in DMFT_CASES:
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        model = eqgen.load(ROOT / "models" / f"{spec}.eqg")
        samples = None if model.can_solve_exactly(params) else DMFT_SAMPLES
        cmp = model.compare(params=params, d=DMFT_D, seeds=args.seeds, seed=0,
                            samples=samples)
        wall = time.perf_counter() - t0
        plot_comparison(cmp, out / f"compare_{name}.png",
                        title=f"{spec}: {what}\nd = {DMFT_D}, {args.seeds} seeds; DMFT "
                        + (f"with {samples} samples" if samples else "exact"))
        dev = deviations(cmp)
        summary[name] = {
            "spec": spec, "parameters": params, "d": DMFT_D, "seeds": args.seeds,
            "samples": samples, "what": what, "total_s": round(wall, 1),
            "deviations": dev,
            "final": {k: [float(cmp[k][-1]), float(cmp[f"{k}_sim"][-1]),
                          float(cmp[f"{k}_sim_stderr"][-1])] for k in dev},
        }
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"{name:28s} d = {DMFT_D:5d}: " + ", ".join(
            f"{k} max |Δ| {v['max_abs']:.3g} ({v['max_in_stderr']:.1f} s.e.)"
            for k, v in dev.items()) + f"; {wall:.0f} s", flush=True)
    print(f"wrote figures and {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
