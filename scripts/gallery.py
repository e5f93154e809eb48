"""The gallery of the documentation: one page per shipped model, and the famous curves.

For every `models/*.eqg` it writes `docs/gallery/<model>.md` with the spec, the derived
equations (`Model.latex()` turned into MathJax-friendly Markdown by `eqgen.latex.to_markdown`),
the solved curves (`Model.solve` + `Solution.plot`) and the theory-against-simulation plot;
then `docs/gallery/index.md` with the curves that made these models known:

- the Saad–Solla plateau and its escape (K = 3, near-symmetric starts, log time);
- the effect of the learning-rate/width scaling regime (gradient flow against high-dimensional
  SGD at a few learning rates);
- DMFT training loss and test error for GD, SGD and persistent SGD (two-cluster mixture).

Solves are cheap and always redone. Simulations are expensive: a theory-against-simulation
figure is reused when it exists (docs/figures/compare_<model>.png from
scripts/compare_plots.py, or docs/gallery/figures/compare_<model>.png from an earlier run) and
computed only with `--simulate`; the DMFT famous-curves figure is reused unless `--refresh`.

    .venv/bin/python scripts/gallery.py [--only MODEL ...] [--simulate] [--refresh]
                                        [--samples N]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOCS = ROOT / "docs"
GALLERY = DOCS / "gallery"
FIGURES = GALLERY / "figures"

# parameters of the simulation behind a missing theory-against-simulation figure
SIMULATION = {"committee": {"d": 500, "seeds": 2}, "dmft": {"d": 1000, "seeds": 2}}
# committee t_max for the comparison (the spec's own horizon can take many SGD steps)
COMPARE_T_MAX = 50.0


def _solver_words(solver: str) -> str:
    """How a committee solve ran: eqgen's own Tsit5 loop, or the diffrax method by name."""
    if solver == "tsit5":
        return "Tsit5, eqgen.runtime.rk"
    return f"diffrax {solver.removeprefix('diffrax-')}".strip()


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def spec_comment(text: str) -> str:
    """The leading comment block of a spec, as one paragraph of prose."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def _solve(model, samples: int):  # noqa: ANN001, ANN202
    if model.family == "dmft":
        exact = model.can_solve_exactly()
        return model.solve() if exact else model.solve(samples=samples, seed=0)
    return model.solve()


def _compare_figure(model, name: str, simulate: bool, refresh: bool,  # noqa: ANN001
                    samples: int) -> str | None:
    """The path (relative to docs/gallery) of the theory-against-simulation figure, computing
    it only when asked to."""
    shared = DOCS / "figures" / f"compare_{name}.png"
    own = FIGURES / f"compare_{name}.png"
    if shared.exists() and not refresh:
        return f"../figures/{shared.name}"
    if own.exists() and not refresh:
        return f"figures/{own.name}"
    if not simulate:
        return None
    from eqgen.compare import plot_comparison

    cfg = SIMULATION["dmft" if model.family == "dmft" else "committee"]
    t0 = time.perf_counter()
    if model.family == "dmft":
        kw = {} if model.can_solve_exactly() else {"samples": samples}
        cmp = model.compare(d=cfg["d"], seeds=cfg["seeds"], seed=0, progress=False, **kw)
    else:
        t_max = min(COMPARE_T_MAX, model.defaults.t_max)
        cmp = model.compare(d=cfg["d"], seeds=cfg["seeds"], seed=0, t_max=t_max,
                            progress=False)
    plot_comparison(cmp, own, title=f"{name}: theory (lines) and SGD at d = {cfg['d']} "
                    f"({cfg['seeds']} seeds, points)")
    print(f"  simulated {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return f"figures/{own.name}"


def model_page(path: Path, simulate: bool, refresh: bool, samples: int) -> tuple[str, str]:
    """Write docs/gallery/<model>.md and its figures; return (name, title)."""
    import eqgen
    from eqgen.latex import to_markdown

    model = eqgen.load(path)
    name = model.name
    text = path.read_text()
    t0 = time.perf_counter()
    sol = _solve(model, samples)
    solve_s = time.perf_counter() - t0
    curves = FIGURES / f"{name}.png"
    sol.plot(curves, title=f"{name}: solved with the spec's defaults")
    equations = to_markdown(model.latex(), heading_level=3)
    equations = equations.split("\n", 1)[1]  # the document's title is the page's title
    compare = _compare_figure(model, name, simulate, refresh, samples)
    rel = path.relative_to(ROOT)
    final = ", ".join(f"{k} = {v:.4g}" for k, v in sol.final().items())
    how = sol.metadata.get("method") or _solver_words(sol.metadata.get("solver", ""))
    page = [f"# {name}\n", f"*{model.title}*\n" if model.title else "",
            spec_comment(text) + "\n",
            "<!-- generated by scripts/gallery.py (make gallery): do not edit by hand -->\n",
            f"## The spec (`{rel}`)\n", "```text\n" + text.rstrip() + "\n```\n",
            "## Commands\n",
            "```bash\n"
            f"eqgen check {rel}\n"
            f"eqgen latex {rel} -o {name}.tex       # the equations below, as a document\n"
            f"eqgen solve {rel} -o {name}.csv --plot {name}.png\n"
            "```\n",
            "In Python, `eqgen.load(...)` gives the model; in a notebook it displays its "
            "equations of motion, and `print(model)` its states, parameters, regime, time unit "
            "and observables:\n",
            "```text\n" + repr(model).replace(f"{ROOT}/", "") + "\n```\n",  # no machine paths
            "## Derived equations\n",
            "What `eqgen latex` writes (rendered here by MathJax; the standalone document "
            "numbers the equations).\n", equations,
            "## Solved curves\n",
            f"With the spec's default parameters and initial state ({how}; "
            f"{solve_s:.1f} s including compilation on the machine that made this page). "
            f"At the last time: {final}.\n",
            f"![{name}: solved curves](figures/{curves.name})\n",
            "## Theory against simulation\n"]
    if compare:
        page.append(f"![{name}: theory against finite-d SGD]({compare})\n")
        page.append("Lines: the theory; points: finite-d SGD (mean over seeds, one standard "
                    "error). How these figures are made and how close they are is in "
                    "[Theory against simulation](../comparison.md).\n")
    else:
        page.append("Not generated yet: `make gallery GALLERY_ARGS=--simulate` runs the "
                    "simulation (see [Theory against simulation](../comparison.md)).\n")
    (GALLERY / f"{name}.md").write_text("\n".join(p for p in page if p))
    return name, model.title


# -- famous curves ------------------------------------------------------------------------------
def plateau_figure(out: Path) -> str:
    """Saad–Solla plateau and escape: K = 3, unit readouts, starts that break the student
    symmetry by ε₀ = 1e-2, 1e-4, 1e-6; the plateau height is docs/theory.md, Facts's ε*."""
    import eqgen

    k = 3
    model = eqgen.load(ROOT / "models" / "saad_solla.eqg")
    plateau = k / np.pi * (np.pi / 6 - k * np.arcsin(1 / (2 * k)))
    plt = _plt()
    fig, (ax, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    pattern = np.array([[1.0, -0.5, 0.2], [-0.3, 0.8, -0.6], [0.4, -0.9, 0.5]])
    times = np.geomspace(1e-1, 3e3, 400)
    lengths = []
    for eps, color in ((1e-2, "C0"), (1e-4, "C1"), (1e-6, "C2")):
        init = {"P": np.eye(k), "Q": 0.2 * np.eye(k), "M": 0.01 + eps * pattern}
        sol = model.solve(params={"p": k, "k": k, "eta": 0.5}, init=init, save_at=times,
                          rtol=1e-10, atol=1e-12)
        risk = sol["excess_risk"]
        ax.loglog(sol.t[1:], risk[1:], color=color, label=f"asymmetry {eps:g}")
        below = np.nonzero(risk < plateau / 2)[0]
        lengths.append((eps, float(sol.t[below[0]]) if below.size else float("nan")))
        if eps == 1e-4:
            for j in range(k):
                ax_m.semilogx(sol.t[1:], sol["M"][1:, j, 0], label=f"$M_{{{j + 1}1}}$")
    ax.axhline(plateau, color="k", ls=":", lw=1,
               label=r"gradient-flow plateau $\varepsilon^*$")
    ax.set_xlabel("t (Saad–Solla units, t = steps · η / d)")
    ax.set_ylabel("excess risk ε")
    ax.set_title(f"Saad–Solla, K = {k}, η = 0.5: plateau and escape")
    ax.legend(fontsize=8)
    ax_m.set_xlabel("t")
    ax_m.set_title("overlaps with teacher unit 1 (asymmetry 1e-4): specialisation")
    ax_m.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    rows = "\n".join(f"| {e:g} | {t:.0f} |" for e, t in lengths)
    return (f"The plateau height is $\\varepsilon^* = \\frac{{K}}{{\\pi}}\\big(\\frac{{\\pi}}"
            f"{{6}} - K \\arcsin\\frac{{1}}{{2K}}\\big) = {plateau:.5f}$ for $K = {k}$ in "
            "gradient flow; at $\\eta = 0.5$ the SGD variance term lifts the plateau a little "
            "above it. The escape time grows like the logarithm of the inverse asymmetry "
            "(first time the risk is below $\\varepsilon^*/2$):\n\n"
            "| asymmetry | escape at t ≈ |\n|---|---|\n"
            + rows + "\n")


def _with_regime(text: str, regime: str) -> str:
    return re.sub(r"^regime .*$", f"regime {regime}", text, count=1, flags=re.M)


def regime_figure(out: Path) -> str:
    """committee_erf (p = k = 2, label noise Δ = 0.01) in the gradient-flow regime and in the
    high-dimensional regime at γ = 0.5, 1, 2, 4: same time unit t = steps · γ c_p / d."""
    import eqgen

    base = (ROOT / "models" / "committee_erf.eqg").read_text()
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    times = np.geomspace(1e-1, 1e3, 300)
    finals = []
    with tempfile.TemporaryDirectory() as tmp:
        for regime in ("gradient_flow", "high_dimensional"):
            path = Path(tmp) / f"{regime}.eqg"
            path.write_text(_with_regime(base, regime))
            model = eqgen.load(path)
            gammas = (1.0,) if regime == "gradient_flow" else (0.5, 1.0, 2.0, 4.0)
            for i, gamma in enumerate(gammas):
                sol = model.solve(params={"gamma": gamma, "Delta": 0.01}, save_at=times)
                label = ("gradient flow (any γ)" if regime == "gradient_flow"
                         else f"high-dimensional, γ = {gamma:g}")
                style = {"color": "k", "lw": 2.2} if regime == "gradient_flow" \
                    else {"color": f"C{i}"}
                ax.loglog(sol.t[1:], sol["excess_risk"][1:], label=label, **style)
                finals.append((label, float(sol["excess_risk"][-1])))
    ax.set_xlabel("t = steps · γ c_p / d")
    ax.set_ylabel("excess risk ε")
    ax.set_title("committee_erf, p = k = 2, Δ = 0.01: the regime decides the floor")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    rows = "\n".join(f"| {label} | {v:.3g} |" for label, v in finals)
    return ("| regime | excess risk at t = 1000 |\n|---|---|\n" + rows + "\n")


def dmft_figure(out: Path, samples: int) -> str:
    """gmm_two_cluster_logistic: GD (b = 1), SGD (b = 0.3, τ = η/b), persistent SGD
    (b = 0.3, τ = 2); training loss and test error against t."""
    import eqgen

    model = eqgen.load(ROOT / "models" / "gmm_two_cluster_logistic.eqg")
    eta = model.parameters["eta"]
    cases = [("GD (b = 1)", {"b": 1.0}),
             ("SGD (b = 0.3, τ = η/b)", {"b": 0.3, "tau": eta / 0.3}),
             ("persistent SGD (b = 0.3, τ = 2)", {"b": 0.3, "tau": 2.0})]
    plt = _plt()
    fig, (ax_l, ax_e) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = []
    for i, (label, params) in enumerate(cases):
        t0 = time.perf_counter()
        sol = model.solve(params=params, t_max=10.0, samples=samples, seed=0)
        wall = time.perf_counter() - t0
        ax_l.plot(sol.t, sol["train_loss"], color=f"C{i}", label=label)
        ax_e.plot(sol.t, sol["test_error"], color=f"C{i}", label=label)
        ax_e.plot(sol.t, sol["train_error"], color=f"C{i}", ls=":", lw=1)
        rows.append(f"| {label} | {sol['train_loss'][-1]:.4f} | {sol['test_error'][-1]:.4f} "
                    f"| {wall:.0f} s |")
    ax_l.set_xlabel("t = steps · η")
    ax_l.set_title("training loss")
    ax_e.set_xlabel("t = steps · η")
    ax_e.set_title("test error (solid), training error (dotted)")
    ax_l.legend(fontsize=8)
    fig.suptitle(f"gmm_two_cluster_logistic, α = 3, Δ = 0.5, λ = 0.1, η = {eta:g}: DMFT with "
                 f"{samples} sampled trajectories", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return ("| dynamics | training loss at t = 10 | test error at t = 10 | solve |\n"
            "|---|---|---|---|\n" + "\n".join(rows) + "\n")


def index_page(models: list[tuple[str, str]], famous: dict[str, str]) -> None:
    rows = "\n".join(f"| [{n}]({n}.md) | {t} |" for n, t in models)
    (GALLERY / "index.md").write_text(f"""# Gallery

<!-- generated by scripts/gallery.py (make gallery): do not edit by hand -->

Every figure and equation on these pages is produced by `scripts/gallery.py` (`make gallery`)
from the shipped specs, so that none of it goes stale: change a model, run `make gallery`, and
the page follows. Simulations are cached as figures (`make gallery GALLERY_ARGS=--simulate`
computes the missing ones, `--refresh` all of them).

## The shipped models

| model | what |
|---|---|
{rows}

Each page shows the spec, the derived equations (rendered from `eqgen latex`), the solved
curves and the theory against a finite-d SGD simulation.

## The famous curves

### The Saad–Solla plateau and its escape

![Saad–Solla plateau](figures/famous_plateau.png)

Online SGD of a soft committee machine (`models/saad_solla.eqg`, $K = p = k = 3$, erf units,
unit readouts, $\\eta = 0.5$) from small overlaps $M_{{jr}} = 0.01 + \\epsilon_0 A_{{jr}}$ with a
fixed pattern $A$. The students first learn the teacher *subspace* symmetrically and get stuck
on the symmetric fixed point; only the asymmetry $\\epsilon_0$ of the start (at finite $d$: the
$O(d^{{-1/2}})$ fluctuations) lets them specialise, each student unit to one teacher unit
(right panel), and the risk drops to zero.

{famous.get("plateau", "")}
### Learning rate and width: the scaling regime

![regimes](figures/famous_regimes.png)

The same model (`models/committee_erf.eqg`, label noise $\\Delta = 0.01$) compiled in the
`gradient_flow` regime (the SGD variance term is dropped: one curve for every $\\gamma$ in the
time unit $t = \\text{{steps}}\\cdot\\gamma c_p/d$) and in the `high_dimensional` regime
($\\gamma c_p = O(1)$: the variance term $\\frac{{\\gamma c_p}}{{B}}(\\dots)$ stays). In high
dimension the noise of single-sample gradients sets a floor on the risk that grows with
$\\gamma$, and large learning rates slow learning down; as $\\gamma \\to 0$ the curves approach
gradient flow. See [the regimes](../theory.md#regimes).

{famous.get("regimes", "")}
Width and learning rate together: with $p \\sim d^\\kappa$ and $\\gamma = \\gamma_0
d^{{-\\delta}}$ the (κ, δ) plane splits into gradient flow, high-dimensional SGD, a
noise-dominated phase and a region with no ODE limit (Veiga et al. 2022). `eqgen sweep` over
κ and δ classifies every point and solves each class
([sweeps: the phase diagram](../sweeps.md)):

![phase diagram](../figures/phase_diagram.png)

### DMFT: GD, SGD and persistent SGD on a Gaussian mixture

![DMFT](figures/famous_dmft.png)

A perceptron on $n = \\alpha d$ reused samples of a two-cluster mixture with the logistic
loss (`models/gmm_two_cluster_logistic.eqg`), solved by the dynamical mean-field theory:
full-batch gradient descent, plain SGD with batch fraction $b = 0.3$ (a new batch every step,
$\\tau = \\eta/b$) and persistent SGD with the same $b$ but batches kept for a time
$\\tau = 2$. At equal time $t$ the stochastic variants see fewer samples per step and descend
more slowly on the training loss; see [the DMFT page](../dmft.md).

{famous.get("dmft", "")}""")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="model names (default: every models/*.eqg)")
    ap.add_argument("--simulate", action="store_true",
                    help="compute missing theory-against-simulation figures")
    ap.add_argument("--refresh", action="store_true",
                    help="recompute every cached figure (simulations, DMFT curves)")
    ap.add_argument("--samples", type=int, default=4000,
                    help="sampled DMFT trajectories (default 4000)")
    ap.add_argument("--no-famous", action="store_true", help="skip the famous curves")
    args = ap.parse_args()

    FIGURES.mkdir(parents=True, exist_ok=True)
    models = []
    for path in sorted((ROOT / "models").glob("*.eqg")):
        if args.only and path.stem not in args.only:
            if (GALLERY / f"{path.stem}.md").exists():
                import eqgen

                m = eqgen.load(path)
                models.append((m.name, m.title))
            continue
        t0 = time.perf_counter()
        models.append(model_page(path, args.simulate, args.refresh, args.samples))
        print(f"{path.stem:28s} page in {time.perf_counter() - t0:5.1f} s", flush=True)
    famous: dict[str, str] = {}
    notes = FIGURES / "famous_tables.txt"
    cached = _read_notes(notes)
    if not args.no_famous:
        famous["plateau"] = plateau_figure(FIGURES / "famous_plateau.png")
        famous["regimes"] = regime_figure(FIGURES / "famous_regimes.png")
        if args.refresh or not (FIGURES / "famous_dmft.png").exists() or "dmft" not in cached:
            famous["dmft"] = dmft_figure(FIGURES / "famous_dmft.png", args.samples)
        else:
            famous["dmft"] = cached["dmft"]
        _write_notes(notes, famous)
    else:
        famous = cached
    index_page(models, famous)
    print(f"wrote {GALLERY}")
    return 0


def _read_notes(path: Path) -> dict[str, str]:
    """The tables written beside the famous figures by an earlier run (a cache)."""
    if not path.exists():
        return {}
    parts = re.split(r"^<!-- (\w+) -->\n", path.read_text(), flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _write_notes(path: Path, notes: dict[str, str]) -> None:
    path.write_text("".join(f"<!-- {k} -->\n{v}" for k, v in notes.items()))


if __name__ == "__main__":
    sys.exit(main())
