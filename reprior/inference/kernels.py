"""The kernel registry under its first public name; it lives in :mod:`reprior.inference.samplers.registry`.

``from reprior.inference.kernels import register_kernel, make_kernel, kernel_names, get_kernel,
KernelSpec, hmc_stats`` keeps working; ``validate_options`` (check a sampler's options before a run) is here too.
"""

from __future__ import annotations

from reprior.inference.samplers.numpyro_hmc import hmc_stats
from reprior.inference.samplers.registry import (KernelSpec, check_options, get_kernel, kernel_names, make_kernel,
                                                 register_kernel, validate_options)

__all__ = ["KernelSpec", "check_options", "get_kernel", "hmc_stats", "kernel_names", "make_kernel",
           "register_kernel", "validate_options"]
