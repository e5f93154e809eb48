"""`make demo`: compile and solve the shipped models (committee ODEs and DMFT); write plots and
LaTeX to out/.

For each model: check, derive, generate (reusing generated/ when fresh), solve with the spec's
defaults, then write `out/<model>.csv`, `out/<model>.png` and `out/<model>.tex`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGSHIP = [
    "committee_erf",
    "saad_solla",
    "committee_trained_readout",
    "committee_hermite",
    "committee_square",
    "committee_relu",
    "glm_ridge_square",
    "gmm_two_cluster_logistic",
    "gmm_three_cluster",
    "gmm_two_cluster_hinge",
    "committee_mean_field",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out")
    ap.add_argument("--models", nargs="*", default=FLAGSHIP)
    args = ap.parse_args()
    import eqgen

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        t0 = time.perf_counter()
        model = eqgen.load(ROOT / "models" / f"{name}.eqg")
        (out / f"{name}.tex").write_text(model.latex())
        sol = model.solve()
        sol.to_csv(out / f"{name}.csv")
        sol.plot(out / f"{name}.png")
        final = ", ".join(f"{k} = {v:.4g}" for k, v in sol.final().items())
        print(f"{name:28s} {time.perf_counter() - t0:6.1f} s   t = {sol.t[-1]:g}: {final}")
    print(f"wrote CSV, PNG and LaTeX for {len(args.models)} models to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
