"""Registry of MCMC kernels: name -> factory building a NumPyro ``MCMCKernel``.

Every kernel is a NumPyro :class:`~numpyro.infer.mcmc.MCMCKernel` built on a
``potential_fn`` (the negative log density), so it also runs under
:class:`numpyro.infer.MCMC`.  A registered kernel comes with ``stats_fn(state)
-> dict`` giving per-iteration sample statistics, including the cost counts
``num_grad_evals`` and ``num_logdensity_evals`` (a gradient evaluation also
evaluates the density; a gradient-free evaluation counts only in the latter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from numpyro.infer import HMC, NUTS

from . import _checks


@dataclass(frozen=True)
class KernelSpec:
    """How to build one sampler and read its statistics."""

    build: Callable  # (potential_fn, **options) -> MCMCKernel
    stats_fn: Callable  # state -> dict of scalars
    options: tuple[str, ...]  # accepted option names
    description: str = ""


_REGISTRY: dict[str, KernelSpec] = {}


def register_kernel(name: str, spec: KernelSpec) -> None:
    """Make ``name`` available to :func:`reprior.sample` and the CLI's ``--sampler``."""
    _REGISTRY[name] = spec


def kernel_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get_kernel(name: str) -> KernelSpec:
    _checks.one_of("sampler", name, kernel_names())
    return _REGISTRY[name]


def make_kernel(name: str, potential_fn, options: dict | None = None):
    """Build the kernel ``name`` on ``potential_fn``, validating ``options`` first."""
    spec = get_kernel(name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise _checks.fail("sampler_options", f"options of {name!r} among {list(spec.options)}", unknown)
    return spec.build(potential_fn, **options)


def hmc_stats(state) -> dict:
    """Statistics of NumPyro's ``HMCState`` (NUTS and HMC)."""
    steps = state.num_steps
    return {
        "num_steps": steps,
        "accept_prob": state.accept_prob,
        "diverging": state.diverging,
        "energy": state.energy,
        "lp": -state.potential_energy,
        "step_size": state.adapt_state.step_size,
        "num_grad_evals": steps,
        "num_logdensity_evals": steps,
    }


def _build_nuts(potential_fn, target_accept_prob=0.8, max_tree_depth=10, dense_mass=False, step_size=1.0):
    _checks.probability("target_accept_prob", target_accept_prob)
    _checks.positive_int("max_tree_depth", max_tree_depth)
    return NUTS(potential_fn=potential_fn, target_accept_prob=target_accept_prob,
                max_tree_depth=max_tree_depth, dense_mass=dense_mass, step_size=step_size)


def _build_hmc(potential_fn, target_accept_prob=0.8, num_steps=None, trajectory_length=None,
               dense_mass=False, step_size=1.0):
    _checks.probability("target_accept_prob", target_accept_prob)
    if num_steps is not None:
        _checks.positive_int("num_steps", num_steps)
    if num_steps is None and trajectory_length is None:
        num_steps = 16
    return HMC(potential_fn=potential_fn, target_accept_prob=target_accept_prob, num_steps=num_steps,
               trajectory_length=trajectory_length, dense_mass=dense_mass, step_size=step_size)


register_kernel("nuts", KernelSpec(
    _build_nuts, hmc_stats, ("target_accept_prob", "max_tree_depth", "dense_mass", "step_size"),
    "NumPyro's No-U-Turn sampler with step-size and diagonal mass adaptation"))
register_kernel("hmc", KernelSpec(
    _build_hmc, hmc_stats, ("target_accept_prob", "num_steps", "trajectory_length", "dense_mass", "step_size"),
    "NumPyro's static HMC (16 leapfrog steps unless set) with its adaptation"))

__all__ = ["KernelSpec", "get_kernel", "hmc_stats", "kernel_names", "make_kernel", "register_kernel"]
