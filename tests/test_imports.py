"""The maths core never imports ArviZ, matplotlib, the sampler front end, the runner, the CLI or plots.

Imports run one way (``shared/STYLE.md``): architectures and repriorise -> bnn
-> sampling -> diagnostics -> plots -> runner -> cli.  Each core module is
imported in a fresh interpreter *without* running ``reprior/__init__.py`` (which
re-exports :func:`reprior.sample` and so legitimately imports
``reprior.sampling``), and ``sys.modules`` is inspected afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import reprior

PACKAGE_DIR = Path(reprior.__file__).parent
CORE = ["architectures", "repriorise", "bnn", "target", "models", "data", "projections", "nngp", "limits", "_checks",
        "blas", "health"]
FORBIDDEN = ["arviz", "matplotlib", "reprior.sampling", "reprior.inference_data", "reprior.runner",
             "reprior.cli", "reprior.plots", "reprior.diagnostics", "reprior.report"]

SCRIPT = """
import importlib, json, sys, types
package = types.ModuleType("reprior")
package.__path__ = [{path!r}]
sys.modules["reprior"] = package  # a bare package: reprior/__init__.py does not run
importlib.import_module("reprior." + {module!r})
print(json.dumps([name for name in {forbidden!r} if name in sys.modules or any(
    m.startswith(name + ".") for m in sys.modules)]))
"""


def imported_forbidden(module: str) -> list[str]:
    code = SCRIPT.format(path=str(PACKAGE_DIR), module=module, forbidden=FORBIDDEN)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_check_can_fail():
    """The harness sees a forbidden import when there is one."""
    assert "arviz" in imported_forbidden("inference_data")


@pytest.mark.parametrize("module", [m for m in CORE if (PACKAGE_DIR / f"{m}.py").exists()
                                    or (PACKAGE_DIR / m).is_dir()])
def test_core_module_imports_stay_in_the_core(module):
    assert imported_forbidden(module) == []


def test_importing_reprior_does_not_import_arviz_or_matplotlib():
    code = ("import sys, reprior; print([m for m in ('arviz', 'matplotlib', 'reprior.runner', 'reprior.cli', "
            "'reprior.plots') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
