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
        if page.name not in {"index.md", "benchmarks.md"}:
            assert BLOCK.search(page.read_text()), f"{page.name} has no runnable example"
