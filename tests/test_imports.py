"""The package's layers and what ``import reprior`` loads.

The layers are folders (``docs/architecture.md``): ``experiments > evaluation > inference > core >
_util``, each importing only those below it.  import-linter's contracts in ``pyproject.toml`` say so,
function-level imports included (grimp reads every import statement of every module); here they are
run, and shown able to fail.  The package loads lazily, and the first layout's module paths
(``reprior.nngp``, ``reprior.data``, ...) still import, as the same module objects.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import reprior
from reprior import _moved

ROOT = Path(reprior.__file__).parent.parent
LINT = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def _lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--config", str(config), "--no-cache"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_the_layer_contracts_hold():
    result = _lint(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout, result.stdout


def test_the_layer_check_can_fail(tmp_path):
    """The same layers upside down are broken, and import-linter names a function-level import among the
    culprits (the command line imports the runner inside its functions)."""
    config = tmp_path / "upside_down.toml"
    config.write_text('[tool.importlinter]\nroot_package = "reprior"\n\n[[tool.importlinter.contracts]]\n'
                      'name = "upside down"\ntype = "layers"\n'
                      'layers = ["reprior._util", "reprior.core", "reprior.inference", "reprior.evaluation", '
                      '"reprior.experiments"]\n')
    result = _lint(config)
    assert result.returncode == 1 and "BROKEN" in result.stdout, result.stdout + result.stderr
    assert "reprior.experiments.cli -> reprior.experiments.runner" not in result.stdout  # same layer: allowed
    assert "reprior.core" in result.stdout and "reprior._util" in result.stdout


def test_nothing_but_the_namespace_and_the_layers_at_the_top():
    top = sorted(p.name for p in (ROOT / "reprior").iterdir() if not p.name.startswith("__pycache__"))
    assert top == ["__init__.py", "__main__.py", "_moved.py", "_util", "core", "evaluation", "experiments",
                   "inference"]


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_each_old_module_path_is_the_module_at_its_new_path(old):
    assert importlib.import_module(old) is importlib.import_module(_moved.MOVED[old])


def test_old_paths_of_submodules_and_their_names_still_work():
    from reprior.data import load_dataset  # the documented paths of the first layout
    from reprior.experiments.data import load_dataset as new_load
    from reprior.samplers.pcn import pcnl
    from reprior.inference.samplers.pcn import pcnl as new_pcnl
    from reprior.sbc import plot_ranks, run_sbc  # noqa: F401

    assert load_dataset is new_load and pcnl is new_pcnl
    assert _moved.new_path("reprior.samplers.pcn") == "reprior.inference.samplers.pcn"
    assert _moved.new_path("reprior.sample") is None and _moved.new_path("numpy.linalg") is None
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("reprior.samplers.no_such_kernel")


def test_importing_reprior_does_not_import_arviz_or_matplotlib():
    code = ("import sys, reprior; print([m for m in ('arviz', 'matplotlib', 'reprior.experiments', "
            "'reprior.inference', 'reprior.core') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_core_imports_nothing_above_it_at_run_time():
    """Importing the whole maths core loads neither NumPyro's inference, ArviZ, matplotlib nor any layer
    above the core (a check at run time, beside the static contracts)."""
    code = ("import sys, pkgutil, importlib, reprior.core as c\n"
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(c.__path__, 'reprior.core.')]\n"
            "print([m for m in ('arviz', 'matplotlib', 'numpyro.infer', 'reprior.inference', 'reprior.evaluation', "
            "'reprior.experiments') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_package_and_the_command_line_load_lazily():
    """``import reprior`` and ``import reprior.cli`` load neither NumPy nor JAX (a Ctrl-C at start-up is
    then handled by the CLI, see docs/reliability.md); the first public name loads the library, kernels
    registered, and ``reprior.sample`` is the function of ``reprior.inference.sampling``."""
    code = ("import sys, reprior, reprior.cli; heavy = [m for m in ('numpy', 'jax', 'numpyro', 'arviz') "
            "if m in sys.modules]; sample = reprior.sample; import reprior.inference.sampling as s, "
            "reprior.inference.kernels as k; "
            "print(heavy, sample is s.sample, 'pcnl' in k.kernel_names(), 'sample' in dir(reprior))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] True True True"
    missing = subprocess.run([sys.executable, "-c", "import reprior; reprior.no_such_name"], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and "AttributeError: module 'reprior' has no attribute 'no_such_name'" in missing.stderr


def test_python_dash_m_reprior_is_the_command_line():
    result = subprocess.run([sys.executable, "-m", "reprior", "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and reprior.__version__ in result.stdout + result.stderr, result.stderr
