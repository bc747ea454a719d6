"""The documentation site: every page in the navigation, every module in the reference, a strict build."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HAVE_MKDOCS = importlib.util.find_spec("mkdocs") is not None
needs_mkdocs = pytest.mark.skipif(not HAVE_MKDOCS, reason='mkdocs is not installed: pip install -e ".[docs]"')


def _nav_pages(nav) -> list[str]:
    """Every page path of an mkdocs ``nav`` (nested lists of pages, ``{title: page}`` and sections)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return [page for item in nav for page in _nav_pages(item)]


@needs_mkdocs
def test_every_page_is_in_the_navigation():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = _nav_pages(config["nav"])
    twice = sorted({page for page in listed if listed.count(page) > 1})
    assert not twice, f"pages listed twice in mkdocs.yml's `nav`: {twice}"
    nav = set(listed)
    pages = {p.relative_to(DOCS).as_posix() for p in [*DOCS.rglob("*.md"), *DOCS.glob("notebooks/*.ipynb")]}
    missing, dangling = sorted(pages - nav), sorted(nav - pages)
    assert not missing, f"add these pages to `nav` in mkdocs.yml: {missing}"
    assert not dangling, f"mkdocs.yml's `nav` names pages that do not exist: {dangling}"


def _public_modules() -> list[str]:
    """Every public module and package of the layers (``reprior.core.nngp``, ``reprior.inference.samplers``,
    ...): the layer folders' own modules, not the private ``_util`` helpers or ``_``-names."""
    names = []
    for layer in ("core", "inference", "evaluation", "experiments"):
        for path in sorted((ROOT / "reprior" / layer).iterdir()):
            if path.name.startswith("_"):
                continue
            if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()):
                names.append(f"reprior.{layer}.{path.stem}")
    return names


def test_every_public_module_has_a_reference_entry():
    # Packages are documented with their submodules (`show_submodules: true`), so listing them is enough.
    documented = set()
    for page in (DOCS / "reference").glob("*.md"):
        documented |= set(re.findall(r"^::: (reprior(?:\.\w+){0,2})\s*$", page.read_text(), flags=re.M))
    missing = [name for name in _public_modules() if name not in documented]
    assert not missing, f"add `::: <module>` blocks for {missing} to a page of docs/reference/"


def _converter():
    spec = importlib.util.spec_from_file_location("_griffe_rest", DOCS / "reference" / "_griffe_rest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rest_to_markdown


@pytest.mark.skipif(importlib.util.find_spec("griffe") is None, reason='griffe is not installed: pip install -e ".[docs]"')
def test_rest_markup_becomes_markdown():
    convert = _converter()
    doc = "\n".join([
        "Sum :math:`a + b`, see :func:`~reprior.sample` and :mod:`reprior.core.nngp`.",
        "",
        ".. math::",
        "",
        "    x = \\frac{1}{2}",
        "        + y",
        "",
        "1. an item",
        "",
        "   .. math:: m \\leftarrow -m",
        "",
        "=====  =====",
        "name   cost",
        "=====  =====",
        "nuts   many",
        "=====  =====",
        "",
        "Example::",
        "",
        "    z = f(x)",
        "",
        "End.",
    ])
    assert convert(doc).split("\n") == [
        "Sum $a + b$, see `reprior.sample` and `reprior.core.nngp`.",
        "",
        "$$", "x = \\frac{1}{2}", "+ y", "$$",
        "",
        "1. an item",
        "",
        "   $\\displaystyle m \\leftarrow -m$",
        "",
        "```text", "=====  =====", "name   cost", "=====  =====", "nuts   many", "=====  =====", "```",
        "",
        "Example:", "", "```", "z = f(x)", "```",
        "",
        "End.",
    ]


@needs_mkdocs
def test_strict_build(tmp_path):
    # Warnings are errors: broken links, pages missing from the navigation, docstrings mkdocstrings
    # cannot parse.  No network is needed to build (MathJax is loaded by the browser).
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    html = (tmp_path / "site" / "reference" / "analysis" / "index.html").read_text()
    assert 'id="reprior.core.projections.project"' in html  # the reference is generated from the code
    assert 'class="arithmatex"' in html  # maths from the docstrings reaches MathJax
