"""The notebook of the docs (docs/notebooks/quickstart.ipynb) runs from top to bottom on its tiny
settings and shows what it says it shows: both runs, their ArviZ summary and LOO, a sweep that
exits 0 and whose report opens with the cost-to-accuracy verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "quickstart.ipynb"


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


@pytest.mark.e2e
def test_the_notebook_runs_and_reaches_the_verdict(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), "stored with outputs"
    nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on a failing cell
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    outputs = [_text(c) for c in code]
    metrics = next(text for text in outputs if "ESS theta" in text)
    assert metrics.splitlines()[1].startswith("standard") and metrics.splitlines()[2].startswith("reprior")
    assert any("theta_proj" in text and "r_hat" in text for text in outputs)  # az.summary's table
    assert any("elpd" in text.lower() for text in outputs)  # az.loo's result
    assert any(text.strip() == "exit status 0" for text in outputs)
    rows = [line for text in outputs for line in text.splitlines() if line.startswith("{'width'")]
    assert len(rows) == 4 and all("'grads_to_b2'" in row for row in rows)
    assert outputs[-1].startswith("## Cost to accuracy")
    assert (tmp_path / "notebook_sweep" / "report.html").is_file()
