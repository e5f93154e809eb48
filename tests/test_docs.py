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
