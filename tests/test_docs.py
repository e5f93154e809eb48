"""The documentation site: every page is in the navigation, every link and image resolves, the
gallery covers every shipped model, and `mkdocs build --strict` passes where MkDocs is
installed (`make docs` runs it in CI)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def nav_pages() -> list[str]:
    """The .md files named in mkdocs.yml's nav (relative to docs/)."""
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text.split("\nnav:", 1)[1]
    return re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, re.M)


def test_every_page_is_in_the_nav() -> None:
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    nav = nav_pages()
    assert len(nav) == len(set(nav))
    assert sorted(pages - set(nav)) == []
    assert sorted(set(nav) - pages) == []


def test_gallery_has_every_model() -> None:
    for spec in sorted((ROOT / "models").glob("*.eqg")):
        page = DOCS / "gallery" / f"{spec.stem}.md"
        assert page.exists(), f"make gallery: no page for {spec.name}"
        text = page.read_text()
        assert "```text\n" + spec.read_text().rstrip() + "\n```" in text, \
            f"{page.name} shows an old spec: run make gallery"
        assert "$$\n\\begin{aligned}" in text
        assert f"(figures/{spec.stem}.png)" in text


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.md")),
                         ids=lambda p: p.relative_to(DOCS).as_posix())
def test_links_and_images_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.name}: broken link {target}"


def test_readme_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        assert (ROOT / target.split("#", 1)[0]).exists(), target


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or
                    importlib.util.find_spec("pymdownx") is None,
                    reason="MkDocs is not installed (pip install -e '.[docs]')")
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    html = (tmp_path / "site" / "gallery" / "committee_erf.html").read_text()
    assert 'class="arithmatex"' in html  # math left for MathJax


def test_language_page_shows_the_grammar_verbatim() -> None:
    """docs/language.md includes eqgen/spec/grammar.lark as it is, so the reference cannot
    drift from the parser."""
    page = (ROOT / "docs" / "language.md").read_text()
    start = page.index("```lark\n") + len("```lark\n")
    grammar = (ROOT / "eqgen" / "spec" / "grammar.lark").read_text()
    assert page[start:page.index("```", start)] == grammar


def test_pages_hold_no_machine_paths() -> None:
    """Generated pages (the gallery) must not carry the absolute path of the machine that
    made them."""
    for page in (ROOT / "docs").rglob("*.md"):
        assert str(ROOT) not in page.read_text(), page


NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def test_readme_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    """The README's Python example, run as written, prints its ```text block (numbers to 1e-4
    relative: they come from an adaptive solver); `scripts/readme_example.py` refreshes both
    the block's source and the figure."""
    spec = importlib.util.spec_from_file_location("readme_example",
                                                  ROOT / "scripts" / "readme_example.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    readme = (ROOT / "README.md").read_text()
    printed = mod.run_example(mod.example_code(readme), tmp_path)
    shown = mod.shown_output(readme)
    assert NUMBER.sub("#", printed) == NUMBER.sub("#", shown), \
        "the README example's output changed: run scripts/readme_example.py"
    got = [float(x) for x in NUMBER.findall(printed)]
    want = [float(x) for x in NUMBER.findall(shown)]
    assert got == pytest.approx(want, rel=1e-4)
    assert (tmp_path / "plateau.png").stat().st_size > 10_000


# comparison figures whose theory starts from the spec's own overlaps (the others start from
# overlaps measured in their simulation at small d, which comparison.json does not keep)
SPEC_START_CASES = ["committee_erf", "saad_solla", "committee_square", "committee_hermite",
                    "committee_hermite_d500", "committee_trained_readout"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SPEC_START_CASES)
def test_comparison_figures_show_the_current_theory(name: str) -> None:
    """docs/figures/compare_*.png are made by scripts/compare_plots.py, which is too slow for
    every docs build; what they show of the theory is kept in comparison.json and must still be
    what eqgen solves today (else: `scripts/compare_plots.py --only NAME`)."""
    import json

    import numpy as np

    import eqgen

    spec = importlib.util.spec_from_file_location("compare_plots",
                                                  ROOT / "scripts" / "compare_plots.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    case = {c[0]: c for c in mod.CASES}[name]
    row = json.loads((DOCS / "figures" / "comparison.json").read_text())[name]
    t = np.array(row["series"]["t"])
    shown = np.array(row["series"]["excess_risk"])
    sol = eqgen.load(ROOT / "models" / f"{case[1]}.eqg").solve(params=case[2], save_at=t)
    np.testing.assert_allclose(sol["excess_risk"], shown, rtol=1e-4, atol=1e-9,
                               err_msg=f"stale: run scripts/compare_plots.py --only {name}")
