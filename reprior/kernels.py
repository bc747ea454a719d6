"""The kernel registry under its first public name; it lives in :mod:`reprior.samplers.registry`.

``from reprior.kernels import register_kernel, make_kernel, kernel_names, get_kernel,
KernelSpec, hmc_stats`` keeps working.
"""

from __future__ import annotations

from .samplers.numpyro_hmc import hmc_stats
from .samplers.registry import KernelSpec, check_options, get_kernel, kernel_names, make_kernel, register_kernel

__all__ = ["KernelSpec", "check_options", "get_kernel", "hmc_stats", "kernel_names", "make_kernel",
           "register_kernel"]
