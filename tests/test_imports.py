"""The maths core never imports ArviZ, matplotlib, the sampler front end, the runner, the CLI or plots.

Imports run one way (``shared/STYLE.md``): architectures and repriorise -> bnn
-> sampling -> diagnostics -> plots -> runner -> cli.  Each core module is
imported in a fresh interpreter *without* running ``reprior/__init__.py`` (which
re-exports :func:`reprior.sample` and so legitimately imports
``reprior.sampling``), and ``sys.modules`` is inspected afterwards.  The library
modules above the core (sampling, diagnostics, comparison, SBC) are checked the
same way against the output layer, the runner and the command line
(``docs/architecture.md``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import reprior

PACKAGE_DIR = Path(reprior.__file__).parent
CORE = ["architectures", "architectures.registry", "repriorise", "bnn", "target", "models", "data", "projections",
        "nngp", "limits", "_checks", "blas", "health", "choices"]
FORBIDDEN = ["arviz", "matplotlib", "reprior.sampling", "reprior.inference_data", "reprior.runner",
             "reprior.cli", "reprior.plots", "reprior.diagnostics", "reprior.report"]

#: Library modules above the core (they may use the samplers and ArviZ) and what each must never import:
#: the output layer (report, plots), the runner and the command line.  (ArviZ itself loads matplotlib,
#: so matplotlib is checked only where ArviZ is too.)
ABOVE_CORE = ["reprior.runner", "reprior.cli", "reprior.plots", "reprior.report"]
NO_ARVIZ = ["arviz", "matplotlib", "reprior.sampling"]
LIBRARY = {
    "comparison": ABOVE_CORE + NO_ARVIZ + ["reprior.diagnostics"],  # plain rows: NumPy only
    "diagnostics": ABOVE_CORE,
    "sbc": ABOVE_CORE + NO_ARVIZ,
    "sbc.statistics": ABOVE_CORE + NO_ARVIZ,
    "sampling": ABOVE_CORE,
    "kl_bound": ABOVE_CORE + ["reprior.sampling"],  # ArviZ's MCSE of |grad l|^2, nothing of the chains
}

SCRIPT = """
import importlib, json, sys, types
package = types.ModuleType("reprior")
package.__path__ = [{path!r}]
sys.modules["reprior"] = package  # a bare package: reprior/__init__.py does not run
importlib.import_module("reprior." + {module!r})
print(json.dumps([name for name in {forbidden!r} if name in sys.modules or any(
    m.startswith(name + ".") for m in sys.modules)]))
"""


def imported_forbidden(module: str, forbidden=FORBIDDEN) -> list[str]:
    code = SCRIPT.format(path=str(PACKAGE_DIR), module=module, forbidden=forbidden)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_check_can_fail():
    """The harness sees a forbidden import when there is one."""
    assert "arviz" in imported_forbidden("inference_data")


def _exists(module: str) -> bool:
    path = PACKAGE_DIR / module.replace(".", "/")
    return path.with_suffix(".py").exists() or path.is_dir()


@pytest.mark.parametrize("module", [m for m in CORE if _exists(m)])
def test_core_module_imports_stay_in_the_core(module):
    assert imported_forbidden(module) == []


def test_every_listed_module_exists():
    assert all(_exists(m) for m in [*CORE, *LIBRARY])


@pytest.mark.parametrize("module", sorted(LIBRARY))
def test_library_modules_never_import_the_output_runner_or_cli(module):
    assert imported_forbidden(module, LIBRARY[module]) == []


def test_importing_reprior_does_not_import_arviz_or_matplotlib():
    code = ("import sys, reprior; print([m for m in ('arviz', 'matplotlib', 'reprior.runner', 'reprior.cli', "
            "'reprior.plots') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_package_and_the_command_line_load_lazily():
    """``import reprior`` and ``import reprior.cli`` load neither NumPy nor JAX (a Ctrl-C at start-up is
    then handled by the CLI, see docs/reliability.md); the first public name loads the library, kernels
    registered, and ``reprior.sample`` is the function of ``reprior.sampling``."""
    code = ("import sys, reprior, reprior.cli; heavy = [m for m in ('numpy', 'jax', 'numpyro', 'arviz') "
            "if m in sys.modules]; sample = reprior.sample; import reprior.sampling as s, reprior.kernels as k; "
            "print(heavy, sample is s.sample, 'pcnl' in k.kernel_names(), 'sample' in dir(reprior))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] True True True"
    missing = subprocess.run([sys.executable, "-c", "import reprior; reprior.no_such_name"], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and "AttributeError: module 'reprior' has no attribute 'no_such_name'" in missing.stderr
