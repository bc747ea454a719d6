"""The samplers: a registry of kernels, each in BlackJAX's layers, all runnable under NumPyro.

=====================  ==================================================  ==========================
name                   kernel                                              cost per iteration
=====================  ==================================================  ==========================
``nuts``               NumPyro's NUTS (:mod:`.numpyro_hmc`)                ``num_steps`` gradients
``hmc``                NumPyro's static HMC                                ``num_steps`` gradients
``underdamped_hmc``    :func:`.underdamped.underdamped_hmc`                ``num_steps`` gradients
``pcn``                :func:`.pcn.pcn`                                    1 density, no gradient
``pcnl``               :func:`.pcn.pcnl`                                   1 gradient
``split_hmc``          :func:`.split_hmc.split_hmc`                        ``num_steps`` gradients
``elliptical_slice``   :func:`.elliptical.elliptical_slice`                ``1 + num_shrinks`` densities
``mclmc``              BlackJAX's MCLMC (:func:`.mclmc.mclmc`), biased     2 gradients
``adjusted_mclmc``     BlackJAX's adjusted MCLMC (:func:`.mclmc.adjusted_mclmc`)  2 per integration step
=====================  ==================================================  ==========================

Layout: :mod:`.registry` (names, options from signatures), :mod:`.base` (the
density handed to kernels, the Metropolis step), :mod:`.adapter` (any kernel as
a NumPyro ``MCMCKernel``), :mod:`.adaptation` (step-size search and dual
averaging), :mod:`.integrators`, then one module per kernel.  To add a kernel,
add a module with ``init``/``build_kernel`` and a builder, and register it here.
"""

from __future__ import annotations

from reprior.inference.samplers.adaptation import StepSizeState, find_reasonable_step_size, step_size_adaptation
from reprior.inference.samplers.adapter import AdaptedKernel, AdaptedState, Algorithm, make_stats_fn
from reprior.inference.samplers.base import Density
from reprior.inference.samplers.elliptical import (EllipticalSlice, EllipticalSliceState, elliptical_slice,
                                                   elliptical_stats)
from reprior.inference.samplers.mclmc import adjusted_mclmc, adjusted_mclmc_stats, mclmc, mclmc_stats
from reprior.inference.samplers.numpyro_hmc import hmc, hmc_stats, nuts
from reprior.inference.samplers.pcn import PCN, PCNL, PCNState, pcn, pcn_stats, pcnl
from reprior.inference.samplers.registry import (KernelSpec, check_options, get_kernel, kernel_names, make_kernel,
                                                 register_kernel, validate_options)
from reprior.inference.samplers.split_hmc import split_hmc, split_hmc_stats
from reprior.inference.samplers.underdamped import (UnderdampedHMC, UnderdampedHMCState, underdamped_hmc,
                                                    underdamped_stats)

register_kernel("nuts", KernelSpec(nuts, hmc_stats, description=(
    "NumPyro's No-U-Turn sampler with step-size and diagonal mass adaptation")))
register_kernel("hmc", KernelSpec(hmc, hmc_stats, description=(
    "NumPyro's static HMC (16 leapfrog steps unless set) with its adaptation")))
register_kernel("underdamped_hmc", KernelSpec(underdamped_hmc, underdamped_stats, description=(
    "the paper's sampler: num_steps leapfrog steps (default 1, Langevin) with partial momentum "
    "refresh (momentum_refresh=0.01), step size tuned to 0.8 acceptance")))
register_kernel("pcn", KernelSpec(pcn, pcn_stats, description=(
    "preconditioned Crank-Nicolson, gradient-free, N(0, I) reference; b tuned to 0.25 acceptance")))
register_kernel("pcnl", KernelSpec(pcnl, pcn_stats, description=(
    "pCN-Langevin (one gradient per iteration), N(0, I) reference; b tuned to 0.6 acceptance")))
register_kernel("split_hmc", KernelSpec(split_hmc, split_hmc_stats, description=(
    "HMC split at the N(0, I) prior: kicks by the likelihood gradient and exact rotations, num_steps=6 "
    "steps of a quarter turn (step size tuned to 0.8 acceptance, never longer), dimension-free")))
register_kernel("elliptical_slice", KernelSpec(elliptical_slice, elliptical_stats, description=(
    "elliptical slice sampling, N(0, I) prior, no tuning, gradient-free, always moves")))
register_kernel("mclmc", KernelSpec(mclmc, mclmc_stats, description=(
    "BlackJAX's unadjusted microcanonical Langevin sampler, L and step size tuned by BlackJAX; "
    "biased by its step size")))
register_kernel("adjusted_mclmc", KernelSpec(adjusted_mclmc, adjusted_mclmc_stats, description=(
    "BlackJAX's Metropolis-adjusted MCLMC, random trajectory length, tuned to 0.9 acceptance")))

__all__ = [
    "PCN", "PCNL", "AdaptedKernel", "AdaptedState", "Algorithm", "Density", "EllipticalSlice",
    "EllipticalSliceState", "KernelSpec", "PCNState", "StepSizeState", "UnderdampedHMC", "UnderdampedHMCState",
    "adjusted_mclmc", "adjusted_mclmc_stats", "check_options", "elliptical_slice", "elliptical_stats",
    "find_reasonable_step_size", "get_kernel", "hmc", "hmc_stats", "kernel_names", "make_kernel",
    "make_stats_fn", "mclmc", "mclmc_stats", "nuts", "pcn", "pcn_stats", "pcnl", "register_kernel",
    "split_hmc", "split_hmc_stats", "step_size_adaptation", "underdamped_hmc", "underdamped_stats",
    "validate_options",
]
