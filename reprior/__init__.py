"""reprior: fast exact posterior sampling of wide Bayesian neural networks.

Repriorisation (Hron et al., ICML 2022) changes the coordinates of the readout
weights so that the posterior approaches the prior N(0, I) as width grows.
"""

__version__ = "0.1.0"

from .architectures import MLP  # noqa: E402
from .blas import blas_threads  # noqa: E402
from .bnn import BNN  # noqa: E402
from .models import bnn_model  # noqa: E402
from .sampling import sample  # noqa: E402
from . import samplers  # noqa: E402,F401  (registers the Gaussian-reference kernels)

try:  # the ResNet lives in its own module
    from .architectures import ResNet  # noqa: F401
except ImportError:  # pragma: no cover
    pass

__all__ = ["BNN", "MLP", "blas_threads", "ResNet", "bnn_model", "sample", "__version__"]
