"""`eqgen latex`: for every shipped model, a standalone document with one numbered `align` block
per state, the spec's LaTeX names, fractions rather than slashes, the closed form of every
Gaussian integral used; it compiles with pdflatex where TeX is installed. Its Markdown form
(`to_markdown`, used by the documentation) has only MathJax-friendly environments."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import eqgen
from eqgen.latex import equations_latex, tex, to_markdown

ROOT = Path(__file__).resolve().parent.parent
MODELS = sorted((ROOT / "models").glob("*.eqg"))
COMMITTEE = [p for p in MODELS if not p.stem.startswith(("gmm", "glm"))]
DMFT = [p for p in MODELS if p.stem.startswith(("gmm", "glm"))]
# the packages a document may use: MathJax has no geometry, but it is preamble-only
ALLOWED_PACKAGES = {"geometry", "amsmath", "amssymb"}


@pytest.fixture(scope="module")
def documents() -> dict[str, str]:
    return {p.stem: eqgen.load(p).latex() for p in MODELS}


def _environments(doc: str, name: str) -> list[str]:
    env = re.escape(name)
    return re.findall(rf"\\begin\{{{env}\}}\n(.*?)\n\\end\{{{env}\}}", doc, re.S)


def check_structure(doc: str) -> None:
    """What every document must have, whatever the model."""
    assert doc.startswith("\\documentclass")
    assert doc.rstrip().endswith("\\end{document}")
    packages = set()
    for group in re.findall(r"\\usepackage(?:\[[^]]*\])?\{([^}]*)\}", doc):
        packages |= {p.strip() for p in group.split(",")}
    assert packages <= ALLOWED_PACKAGES, packages
    for env in ("align", "align*", "equation", "equation*"):
        n_begin = doc.count(f"\\begin{{{env}}}")
        assert n_begin == doc.count(f"\\end{{{env}}}"), env
    assert doc.count("{") == doc.count("}") + doc.count("\\{") - doc.count("\\}")
    assert "$$" not in doc  # display math only in environments
    assert "\\operatorname{asin}" not in doc  # printed as \arcsin
    body = doc.split("\\begin{document}")[1]
    math = re.findall(r"\$[^$]+\$", body) + re.findall(r"\\begin\{(?:align|equation)\*?\}"
                                                       r"(.*?)\\end", body, re.S)
    # a slash between operands is a fraction to write with \\frac (exponents like d^{-1/2}
    # are left alone)
    slashes = [m for m in math if re.search(r"[\w})]\s*/\s*[\w\\({]",
                                            re.sub(r"\^\{[^{}]*\}", "", m))]
    assert not slashes, f"fractions written with a slash: {slashes[:3]}"


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_document_structure(path: Path, documents: dict[str, str]) -> None:
    check_structure(documents[path.stem])


@pytest.mark.parametrize("path", COMMITTEE, ids=lambda p: p.stem)
def test_one_align_block_per_state(path: Path, documents: dict[str, str]) -> None:
    doc = documents[path.stem]
    model = eqgen.load(path)
    blocks = _environments(doc, "align")
    states = ["M", "Q"] + (["a"] if model.spec.student.trained else [])
    if type(model) is eqgen.Model:  # reductions append a section of their own
        assert len(blocks) == len(states)
    for state, block in zip(states, blocks[:len(states)], strict=True):
        assert re.search(rf"\\frac\{{d{state}_\{{?[jrl]+\}}?\}}\{{dt\}}", block), block
        assert f"\\paragraph{{${state}$}}" in doc


@pytest.mark.parametrize("path", COMMITTEE, ids=lambda p: p.stem)
def test_closed_form_of_every_integral(path: Path, documents: dict[str, str]) -> None:
    """Each Gaussian integral of the derivation appears with its formula (or, for the few
    without one, the quadrature that replaces it)."""
    doc = documents[path.stem]
    model = eqgen.load(path)
    eq = getattr(model, "full_equations", None) or model.equations  # reductions: the full ODE
    if not eq.square_loss:
        assert "Gauss--Hermite" in doc
        return

    def leaves(it):  # noqa: ANN001, ANN202
        return [x for part in it.parts for x in leaves(part)] if it.parts else [it]

    n_exact = sum(1 for it in eq.integrals for leaf in leaves(it) if leaf.exact)
    n_numeric = sum(1 for it in eq.integrals for leaf in leaves(it) if not leaf.exact)
    formulas = _environments(doc, "equation*") + _environments(doc, "align*")
    assert len(formulas) - 1 == n_exact  # one align* is the model block
    assert doc.count("No closed form is known to eqgen") == n_numeric
    assert n_exact > 0


def test_closed_form_is_the_derived_one() -> None:
    """The printed I2 of erf units is the arcsine formula of docs/numerics.md, The expectation
    engine."""
    doc = eqgen.load(ROOT / "models" / "committee_erf.eqg").latex()
    assert (r"\frac{2 \arcsin{\left(\frac{C_{12}}{\sqrt{C_{11} + 1} \sqrt{C_{22} + 1}} "
            r"\right)}}{\pi}") in doc


def test_user_latex_names_everywhere(documents: dict[str, str]) -> None:
    """saad_solla declares `latex eta = "\\eta"`: the learning rate is η in the variance term,
    the regime and the time unit, and no raw parameter name leaks into the math."""
    doc = documents["saad_solla"]
    q_block = _environments(doc, "align")[1]
    assert r"\eta\; a_j a_l" in q_block
    assert r"\frac{\nu\, \eta\, c_p}{d}" in doc
    assert "In this model $\\gamma = \\eta$" in doc
    math = " ".join(re.findall(r"\$[^$]+\$", doc))
    assert "eta" not in math.replace("\\eta", "").replace("\\beta", "").replace("theta", "")


def test_user_latex_names_follow_the_spec(tmp_path: Path) -> None:
    """A name declared in the spec replaces the parameter's in every equation it enters."""
    text = (ROOT / "models" / "committee_erf.eqg").read_text()
    text = text.replace('latex gamma = "\\gamma", Delta = "\\Delta"',
                        'latex gamma = "\\varrho", Delta = "\\sigma_\\star^2"')
    spec = tmp_path / "renamed.eqg"
    spec.write_text(text)
    doc = eqgen.load(spec).latex()
    q_block = _environments(doc, "align")[1]
    assert r"\frac{\varrho}{p}\; a_j a_l" in q_block
    assert r"\sigma_\star^2\, J_2(j, l)" in q_block
    assert "\\gamma = \\varrho" in doc
    check_structure(doc)


DMFT_RENAMED = {'lambda = "\\lambda"': 'lambda = "\\lambda_{\\mathrm{ridge}}"',
                'eta = "\\eta"': 'eta = "\\varepsilon"',
                'Delta = "\\Delta"': 'Delta = "\\sigma_\\star^2"'}


def _renamed_dmft(tmp_path: Path, replace: dict[str, str] = DMFT_RENAMED) -> eqgen.Model:
    text = (ROOT / "models" / "gmm_two_cluster_logistic.eqg").read_text()
    for a, b in replace.items():
        assert a in text, a
        text = text.replace(a, b)
    spec = tmp_path / "renamed.eqg"
    spec.write_text(text)
    return eqgen.load(spec)


def _has_symbol(math: str, symbol: str) -> bool:
    """Whether `symbol` (a control word) occurs in `math` as a whole token."""
    return re.search(re.escape(symbol) + r"(?![A-Za-z])", math) is not None


def test_dmft_parameters_in_user_names(tmp_path: Path) -> None:
    """The spec's LaTeX names replace the DMFT's symbols λ, η, Δ in every equation: the
    declared names appear, the default symbols do not, and no sentence maps one to the other."""
    doc = _renamed_dmft(tmp_path).latex()
    blocks = _environments(doc, "align")
    m_block = next(b for b in blocks if "\\frac{dm}{dt}" in b)
    assert "-{\\lambda_{\\mathrm{ridge}}} m" in m_block
    kernels = next(b for b in blocks if "\\hat\\nu(t) &=" in b)
    assert "\\left(\\sigma_\\star^2\\right)^2" in kernels  # Δ² with Δ = σ⋆²
    body = doc.split("\\begin{document}")[1]
    math = " ".join(blocks + re.findall(r"\$[^$]+\$", body))
    math = math.replace("\\lambda_{\\mathrm{ridge}}", "")  # the declared name itself
    for default in ("\\lambda", "\\eta", "\\Delta"):
        assert not _has_symbol(math, default), default
    assert "$t = k\\varepsilon$" in doc and "\\frac{t_{\\max}}{\\varepsilon}" in doc
    assert "In this model $\\lambda" not in doc and "$\\eta = " not in doc
    assert "\\alpha" in m_block  # not renamed: declared as itself
    check_structure(doc)


def test_dmft_values_that_are_not_parameters(tmp_path: Path) -> None:
    """A role filled by a number or an expression keeps its symbol, whose value is stated."""
    model = _renamed_dmft(tmp_path, {"ridge lambda": "ridge 2 * lambda", **DMFT_RENAMED})
    doc = model.latex()
    m_block = next(b for b in _environments(doc, "align") if "\\frac{dm}{dt}" in b)
    assert "-\\lambda m" in m_block
    assert "$\\lambda = 2 \\lambda_{\\mathrm{ridge}}$" in doc
    assert "$\\kappa = 1$" in doc  # the default normalisation
    check_structure(doc)


def test_dmft_shipped_documents_keep_their_symbols(documents: dict[str, str]) -> None:
    """The shipped DMFT models name their parameters after the symbols: nothing changes."""
    doc = documents["gmm_two_cluster_logistic"]
    assert "\\frac{dm}{dt} &= -\\lambda m - \\alpha" in doc
    assert "\\hat\\nu(t) &= \\alpha\\Delta\\," in doc
    assert "$t = k\\eta$" in doc


def test_dmft_notebook_equations_in_user_names(tmp_path: Path) -> None:
    text = equations_latex(_renamed_dmft(tmp_path).equations)
    assert "-{\\lambda_{\\mathrm{ridge}}} m" in text and "{\\sigma_\\star^2}\\, \\bar s" in text
    text = text.replace("\\lambda_{\\mathrm{ridge}}", "")
    assert not _has_symbol(text, "\\lambda") and not _has_symbol(text, "\\Delta")


def test_markdown_section_sign(documents: dict[str, str]) -> None:
    """LaTeX's \\S becomes § in Markdown headings and text (MathJax does not typeset text)."""
    doc = documents["committee_mean_field"].replace(
        "\\subsection*{Mean-field reduction}", "\\subsection*{Mean-field reduction (see \\S1.3)}")
    md = to_markdown(doc)
    assert "(see §1.3)" in md
    assert "\\S" not in md.replace("\\Sigma", "")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_renamed_dmft_compiles_with_pdflatex(tmp_path: Path) -> None:
    _pdflatex(_renamed_dmft(tmp_path).latex(), tmp_path, "renamed")


def test_readable_expressions() -> None:
    import sympy as sp

    z = sp.Symbol("z")
    assert tex(sp.erf(z / sp.sqrt(2))) == r"\operatorname{erf}{\left(\frac{z}{\sqrt{2}} \right)}"
    assert tex(sp.asin(z)) == r"\arcsin{\left(z \right)}"


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_markdown_for_mathjax(path: Path, documents: dict[str, str]) -> None:
    md = to_markdown(documents[path.stem])
    for bad in ("\\begin{align}", "\\begin{align*}", "\\begin{equation", "\\nonumber",
                "\\paragraph", "\\section", "\\documentclass", "\\usepackage"):
        assert bad not in md, bad
    blocks = re.findall(r"^\$\$\n(.*?)\n\$\$$", md, re.S | re.M)
    assert blocks
    assert md.count("$$") == 2 * len(blocks)
    for b in blocks:
        assert b.count("\\begin{aligned}") == b.count("\\end{aligned}")


def test_equations_latex_for_notebooks() -> None:
    eq = eqgen.load(ROOT / "models" / "committee_trained_readout.eqg").equations
    text = equations_latex(eq)
    assert text.count("$$\\begin{aligned}") == 3  # M, Q, a
    assert "\\nonumber" not in text


def _pdflatex(doc: str, folder: Path, stem: str) -> None:
    """Compile `doc` and check that a PDF came out, with no undefined control sequence."""
    tex_file = folder / f"{stem}.tex"
    tex_file.write_text(doc)
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                          tex_file.name], cwd=folder, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]
    assert (folder / f"{stem}.pdf").stat().st_size > 1000
    log = (folder / f"{stem}.log").read_text(errors="replace")
    assert "Undefined control sequence" not in log


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_compiles_with_pdflatex(path: Path, documents: dict[str, str], tmp_path: Path) -> None:
    _pdflatex(documents[path.stem], tmp_path, path.stem)
