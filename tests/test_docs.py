"""Execute the documentation: every ```python block of docs/*.md (one namespace per
page, blocks in order, in a temporary folder) and every docstring example."""
import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import skkp

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(DOCS.glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_doc_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}"}
    for i, code in enumerate(BLOCK.findall(page.read_text())):
        exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)


MODULES = sorted(m.name for m in pkgutil.walk_packages(skkp.__path__, "skkp.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_every_page_has_an_example():
    assert PAGES, "docs/ has no pages"
    for page in PAGES:
        if page.name not in {"index.md", "benchmarks.md", "api.md"}:  # api.md: the docstrings, tested below
            assert BLOCK.search(page.read_text()), f"{page.name} has no runnable example"


def test_site_builds_strictly_with_the_api_reference(tmp_path):
    """`mkdocs build --strict`: every page in the nav, every link and image resolves, and the API
    reference is generated from the docstrings."""
    import subprocess
    import sys

    pytest.importorskip("mkdocstrings")
    root = DOCS.parent
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("NoseKeypointRegressor", "FaceParser", "MaskEdgeKeypoints", "get_schema"):
        assert name in api
    assert (tmp_path / "site" / "img" / "nose_predictions.png").is_file()
