"""reprior: fast exact posterior sampling of wide Bayesian neural networks.

Repriorisation (Hron et al., ICML 2022) changes the coordinates of the readout
weights so that the posterior approaches the prior N(0, I) as width grows.

The package loads lazily (PEP 562): ``import reprior`` is pure Python and
fast, and JAX, NumPyro and the kernels load on the first use of a public name
(``reprior.sample``, ``reprior.BNN``, ...) or a submodule (``reprior.core.nngp``).
That first load runs with SIGINT and SIGTERM deferred (:mod:`reprior._util.interrupts`):
a Ctrl-C that lands while XLA's native libraries load could otherwise crash
the interpreter, so it is raised as :class:`~reprior._util.interrupts.Interrupted`
(a ``KeyboardInterrupt``) once the imports are done.  The command line imports
only this light layer before it installs its own handling, so an interrupt at
any moment ends it with one line and exit status 130 (143 for SIGTERM).

Importing the package checks, from the package metadata alone, that the
installed ArviZ is one reprior works with (0.20 to 0.23, or 1.x): another is
refused with an ImportError of one line naming the versions that work.
"""

from __future__ import annotations

import importlib
import importlib.util

from . import _moved
from ._util import arviz_version as _arviz_version
from ._util import interrupts as _interrupts  # pure Python

_arviz_version.check_version()
_moved.install()  # the first layout's module paths (reprior.core.nngp, reprior.experiments.data, ...) stay importable

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "BNN": ".core.bnn",
    "FeatureArchitecture": ".core.architectures",
    "MLP": ".core.architectures",
    "ReferencePosterior": ".evaluation.reference",
    "ReferenceNotCertified": ".evaluation.reference",
    "ResNet": ".core.architectures",
    "blas_threads": "._util.blas",
    "bnn_model": ".inference.models",
    "build_target": ".core.target",
    "cost_to_accuracy": ".evaluation.accuracy",
    "from_chains": ".inference.chains",
    "from_equinox": ".core.architectures",
    "from_flax": ".core.architectures",
    "reference_posterior": ".evaluation.reference",
    "sample": ".inference.sampling",
}

__all__ = ["BNN", "FeatureArchitecture", "MLP", "ReferenceNotCertified", "ReferencePosterior", "blas_threads",
           "ResNet", "bnn_model", "build_target", "cost_to_accuracy", "from_chains", "from_equinox", "from_flax",
           "reference_posterior", "sample", "__version__"]


def _load(module: str):
    """Import ``module`` (relative to the package) with signals deferred."""
    with _interrupts.deferred():
        return importlib.import_module(module, __name__)


def __getattr__(name: str):
    # ``from . import x`` inside the package asks here first for a submodule not yet imported:
    # a submodule is imported as itself, nothing more (no import cycles).
    if name in _EXPORTS:  # (reprior.inference.sampling imports reprior.inference.samplers, which registers the kernels)
        value = getattr(_load(_EXPORTS[name]), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = _load(f".{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
