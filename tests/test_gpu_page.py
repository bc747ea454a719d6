"""docs/gpu.md's memory table is what examples/gpu_memory.py prints from the library's own estimator."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_memory_table_is_the_estimators():
    spec = importlib.util.spec_from_file_location("gpu_memory", ROOT / "examples" / "gpu_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        module.main()
    printed = out.getvalue().strip().splitlines()
    assert len(printed) == 7 and printed[0].startswith("| width | weights |")
    page = (ROOT / "docs" / "gpu.md").read_text().splitlines()
    start = page.index(printed[0])
    assert page[start:start + len(printed)] == printed
