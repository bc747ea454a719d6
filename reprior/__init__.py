"""reprior: fast exact posterior sampling of wide Bayesian neural networks.

Repriorisation (Hron et al., ICML 2022) changes the coordinates of the readout
weights so that the posterior approaches the prior N(0, I) as width grows.
"""

__version__ = "0.1.0"

from . import interrupts as _interrupts  # noqa: E402  (pure Python: first, before JAX loads)

# A Ctrl-C or SIGTERM that lands while JAX and XLA load can crash the interpreter
# (a segmentation fault); deferred, it is raised once the imports are done.
with _interrupts.deferred():
    from . import samplers  # noqa: E402,F401  (registers the kernels)
    from .architectures import MLP, ResNet  # noqa: E402
    from .blas import blas_threads  # noqa: E402
    from .bnn import BNN  # noqa: E402
    from .models import bnn_model  # noqa: E402
    from .sampling import sample  # noqa: E402

__all__ = ["BNN", "MLP", "blas_threads", "ResNet", "bnn_model", "sample", "__version__"]
