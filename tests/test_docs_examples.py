"""The documentation's code runs: every python block of the core doc pages, and examples/quickstart.py.

The example and the pages run as scripts (``__name__ == "__main__"``, the example
with tiny arguments) in fresh interpreters, one per CPU core, each job in its own
namespace and temporary directory, a page's blocks in order
(``conftest.run_in_fresh_interpreters``): JAX starts once per core, not once per
page, and the package is never imported into the test process's state by them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run_in_fresh_interpreters

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
KERNEL_PAGES = ["samplers/underdamped_hmc.md", "samplers/pcn.md", "samplers/pcnl.md", "samplers/elliptical_slice.md",
                "samplers/mclmc.md", "samplers/adjusted_mclmc.md"]
PAGES = ["index.md", "maths.md", "quickstart.md", "samplers.md", *KERNEL_PAGES, "api.md", "architecture.md"]
LINKED_PAGES = ["quickstart.md", "maths.md", "api.md", "data.md", "nngp.md", "cli.md", "tutorial_width_sweep.md",
                "diagnostics.md", "performance.md", "samplers.md", "sbc.md"]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

EXAMPLE = "examples/quickstart.py"
EXAMPLE_ARGS = ["--width", "16", "--n-train", "24", "--n-test", "8", "--num-warmup", "10", "--num-samples", "10",
                "--num-chains", "2", "--max-tree-depth", "3"]

def python_blocks(page: str) -> list[str]:
    return PYTHON_BLOCK.findall((DOCS / page).read_text())


@pytest.fixture(scope="module")
def page_results(tmp_path_factory):
    """``{page or EXAMPLE: {"error": traceback or None, "stdout": text}}``."""
    jobs = {EXAMPLE: ((ROOT / EXAMPLE).read_text(), [str(ROOT / EXAMPLE), *EXAMPLE_ARGS])}
    for page in PAGES:  # api.md, which registers a sampler, is last: it runs last in its interpreter
        jobs[page] = ("\n".join(f"# --- block {i}\n{block}" for i, block in enumerate(python_blocks(page))), [page])
    return run_in_fresh_interpreters(jobs, tmp_path_factory.mktemp("docs"))


@pytest.mark.e2e  # every page's code in fresh interpreters: about a minute
@pytest.mark.parametrize("page", PAGES)
def test_doc_page_code_runs(page, page_results):
    assert python_blocks(page), f"{page} has no python code block"
    assert page_results[page]["error"] is None, f"{page} failed:\n{page_results[page]['error']}"


def test_index_links_every_page():
    text = (DOCS / "index.md").read_text()
    links = set(re.findall(r"\]\(([\w./-]+\.md)(?:#[\w-]+)?\)", text))
    assert set(LINKED_PAGES) <= links, set(LINKED_PAGES) - links
    for page in PAGES:  # the pages of this issue exist; the others are written alongside
        assert (DOCS / page).is_file(), page


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    text = (DOCS / page).read_text()
    for target, anchor in re.findall(r"\]\(([\w./-]+\.md)(?:#([\w-]+))?\)", text):
        path = (DOCS / page).parent / target
        if not path.exists():
            if target in LINKED_PAGES and target not in PAGES:
                continue  # another page of the docs set, written in its own issue
            pytest.fail(f"{page} links to missing {target}")
        if anchor:
            headings = re.findall(r"^#+ (.*)$", path.read_text(), re.M)
            slugs = {re.sub(r"[^\w -]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert anchor in slugs, (page, target, anchor, sorted(slugs))


@pytest.mark.e2e  # shares the pages' run
def test_quickstart_example_runs_with_tiny_settings(page_results):
    """examples/quickstart.py end to end, shrunk by its own arguments (the README's two-minute taste)."""
    result = page_results[EXAMPLE]
    assert result["error"] is None, result["error"]
    out = result["stdout"]
    for row in ("ESS theta_proj", "ESS f_test", "per 1000 grads", "grad evals"):
        assert row in out, out
    header = next(line for line in out.splitlines() if "standard" in line and "reprior" in line and "ratio" in line)
    assert header.split() == ["standard", "reprior", "ratio"]
