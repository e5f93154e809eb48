"""Run the README's Python example as written and refresh what the README shows of it.

The example block is taken from README.md itself (the first ```python block), run in a
scratch folder that sees models/, and its figure is copied to docs/figures/readme_example.png.
What it printed is written to standard output; tests/test_docs.py checks that the README's
```text block below the example still matches it.

    .venv/bin/python scripts/readme_example.py
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE = ROOT / "docs" / "figures" / "readme_example.png"


def example_code(readme: str) -> str:
    """The first ```python block of the README."""
    match = re.search(r"```python\n(.*?)```", readme, re.S)
    if match is None:
        raise SystemExit("README.md has no ```python block")
    return match.group(1)


def shown_output(readme: str) -> str:
    """The ```text block that follows the example: what the README says it prints."""
    after = readme.split("```python\n", 1)[1]
    match = re.search(r"```text\n(.*?)```", after, re.S)
    if match is None:
        raise SystemExit("README.md has no ```text block after the example")
    return match.group(1)


def run_example(code: str, where: Path) -> str:
    """Execute `code` with `where` as the working folder (models/ linked into it); return
    what it printed."""
    (where / "models").symlink_to(ROOT / "models")
    old = Path.cwd()
    out = io.StringIO()
    try:
        os.chdir(where)
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    finally:
        os.chdir(old)
    return out.getvalue()


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    sys.path.insert(0, str(ROOT))
    code = example_code((ROOT / "README.md").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        printed = run_example(code, Path(tmp))
        figures = sorted(Path(tmp).glob("*.png"))
        if len(figures) != 1:
            raise SystemExit(f"the example wrote {len(figures)} figures, expected one")
        shutil.copyfile(figures[0], FIGURE)
    print(printed, end="")
    print(f"figure -> {FIGURE.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
