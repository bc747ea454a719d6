"""The module paths of the first layout, kept importable.

Until version 0.1 every module sat at the top of the package (``reprior.nngp``, ``reprior.data``,
``reprior.samplers.pcn``, ...); they now live in the layer folders (``reprior.core.nngp``, ...).  A
finder on :data:`sys.meta_path` answers an old path with the module at its new one, the *same* module
object (no second import: a kernel registered once, one class per type), so ``import reprior.nngp``,
``from reprior.data import load_dataset`` and ``monkeypatch.setattr("reprior.sampling.x", ...)`` keep
working.  Pure Python: it imports nothing until an old path is asked for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys

#: Old path -> new path (a package maps its submodules by prefix).
MOVED = {
    "reprior._arviz": "reprior.inference.arviz_compat",
    "reprior._arviz_version": "reprior._util.arviz_version",
    "reprior._checks": "reprior._util.checks",
    "reprior._files": "reprior._util.files",
    "reprior._memory": "reprior.inference.memory",
    "reprior.accuracy": "reprior.evaluation.accuracy",
    "reprior.architectures": "reprior.core.architectures",
    "reprior.blas": "reprior._util.blas",
    "reprior.bnn": "reprior.core.bnn",
    "reprior.chains": "reprior.inference.chains",
    "reprior.checkpoint": "reprior.inference.checkpoint",
    "reprior.choices": "reprior._util.choices",
    "reprior.cli": "reprior.experiments.cli",
    "reprior.comparison": "reprior.evaluation.comparison",
    "reprior.data": "reprior.experiments.data",
    "reprior.diagnostics": "reprior.evaluation.diagnostics",
    "reprior.driver": "reprior.inference.driver",
    "reprior.health": "reprior.inference.health",
    "reprior.inference_data": "reprior.inference.inference_data",
    "reprior.interrupts": "reprior._util.interrupts",
    "reprior.kernels": "reprior.inference.kernels",
    "reprior.kl_bound": "reprior.evaluation.kl_bound",
    "reprior.limits": "reprior.evaluation.limits",
    "reprior.models": "reprior.inference.models",
    "reprior.nngp": "reprior.core.nngp",
    "reprior.plots": "reprior.experiments.plots",
    "reprior.preflight": "reprior.experiments.preflight",
    "reprior.progress": "reprior.inference.progress",
    "reprior.projections": "reprior.core.projections",
    "reprior.reference": "reprior.evaluation.reference",
    "reprior.report": "reprior.experiments.report",
    "reprior.report_accuracy": "reprior.experiments.report_accuracy",
    "reprior.report_limits": "reprior.experiments.report_limits",
    "reprior.repriorise": "reprior.core.repriorise",
    "reprior.runner": "reprior.experiments.runner",
    "reprior.samplers": "reprior.inference.samplers",
    "reprior.sampling": "reprior.inference.sampling",
    "reprior.sbc": "reprior.experiments.sbc",  # SBC with its figure (plot_ranks)
    "reprior.sbc.runner": "reprior.evaluation.sbc.runner",
    "reprior.sbc.statistics": "reprior.evaluation.sbc.statistics",
    "reprior.target": "reprior.core.target",
}


def new_path(name: str) -> str | None:
    """The new path of the old module path ``name``, or None if ``name`` did not move."""
    head = name
    while head.count(".") >= 1:
        if head in MOVED:
            return MOVED[head] + name[len(head):]
        head = head.rsplit(".", 1)[0]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:  # the module ran under its own name already
        pass


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds an old module path and hands back the module at its new path."""

    def find_spec(self, fullname, path=None, target=None):
        new = new_path(fullname) if fullname.startswith("reprior.") else None
        if new is None or importlib.util.find_spec(new) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    """Put the finder first on :data:`sys.meta_path` (once): before the path finder, which would
    otherwise import a file of a moved package a second time under its old name."""
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())
