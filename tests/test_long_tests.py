"""``tests/long_tests.txt`` names tests that exist, so the `long` selection cannot go stale."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import _long_test_ids

TESTS = Path(__file__).parent


def test_every_listed_long_test_exists():
    missing = []
    for nodeid in sorted(_long_test_ids()):
        path, _, name = nodeid.partition("::")
        file = TESTS.parent / path
        function = name.partition("[")[0]
        defined = file.is_file() and function in {
            node.name for node in ast.walk(ast.parse(file.read_text()))
            if isinstance(node, ast.FunctionDef)}
        if not defined:
            missing.append(nodeid)
    assert not missing, f"tests/long_tests.txt names tests that do not exist: {missing}"
    assert len(_long_test_ids()) >= 10


def test_long_tests_leave_the_default_run():
    """The default selection excludes them and CI runs them in a step of their own."""
    import tomllib

    addopts = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert "not long" in addopts
    assert "python -m pytest -q -m long" in (TESTS.parent / ".ci" / "run").read_text()
