"""Kernels built for repriorised coordinates, registered with :mod:`reprior.kernels`.

Importing this package registers

=====================  =========================================  ==========================
name                   kernel                                     cost per iteration
=====================  =========================================  ==========================
``underdamped_hmc``    :class:`~.underdamped.UnderdampedHMC`      ``num_steps`` gradients
``pcn``                :class:`~.pcn.PCN`                         1 density, no gradient
``pcnl``               :class:`~.pcn.PCNL`                        1 gradient
``elliptical_slice``   :class:`~.elliptical.EllipticalSlice`      ``1 + num_shrinks`` densities
=====================  =========================================  ==========================

beside NumPyro's ``nuts`` and ``hmc``.  pCN, pCNL and elliptical slice sampling
treat N(0, ``reference_std``^2 I) as the prior part of the target and the rest
of the density as the likelihood; every target of :func:`reprior.sample`
(theta, phi, collapsed phi_hidden) has exactly the N(0, I) prior, the default.
"""

from __future__ import annotations

from ..kernels import KernelSpec, register_kernel
from .adaptation import StepSizeState, find_reasonable_step_size, step_size_adaptation
from .elliptical import EllipticalSlice, EllipticalSliceState, elliptical_stats
from .pcn import PCN, PCNL, PCNState, pcn_stats
from .underdamped import UnderdampedHMC, UnderdampedHMCState, underdamped_stats

_UNDERDAMPED_OPTIONS = ("step_size", "num_steps", "momentum_refresh", "target_accept_prob", "adapt_step_size",
                        "max_delta_energy")
_PCN_OPTIONS = ("step_size", "target_accept_prob", "adapt_step_size", "reference_std", "max_delta_energy")
_ELLIPTICAL_OPTIONS = ("max_shrinks", "reference_std")

register_kernel("underdamped_hmc", KernelSpec(
    UnderdampedHMC, underdamped_stats, _UNDERDAMPED_OPTIONS,
    "the paper's sampler: num_steps leapfrog steps (default 1, Langevin) with partial momentum "
    "refresh (momentum_refresh=0.01), step size tuned to 0.8 acceptance"))
register_kernel("pcn", KernelSpec(
    PCN, pcn_stats, _PCN_OPTIONS,
    "preconditioned Crank-Nicolson, gradient-free, N(0, I) reference; b tuned to 0.25 acceptance"))
register_kernel("pcnl", KernelSpec(
    PCNL, pcn_stats, _PCN_OPTIONS,
    "pCN-Langevin (one gradient per iteration), N(0, I) reference; b tuned to 0.6 acceptance"))
register_kernel("elliptical_slice", KernelSpec(
    EllipticalSlice, elliptical_stats, _ELLIPTICAL_OPTIONS,
    "elliptical slice sampling, N(0, I) prior, no tuning, gradient-free, always moves"))

__all__ = [
    "PCN", "PCNL", "EllipticalSlice", "EllipticalSliceState", "PCNState", "StepSizeState", "UnderdampedHMC",
    "UnderdampedHMCState", "elliptical_stats", "find_reasonable_step_size", "pcn_stats", "step_size_adaptation",
    "underdamped_stats",
]
