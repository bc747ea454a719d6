"""NumPyro's NUTS and HMC, registered as ``nuts`` and ``hmc``, on the target's potential.

They get the potential :math:`-(\\ell(z) - |z|^2/2)` of :class:`~reprior.inference.samplers.base.Density`,
without the additive constants (which enter only the reported ``lp``).
NumPyro folds a non-finite point of a trajectory into ``diverging`` and does
not say which points they were, so ``nonfinite`` here flags only a non-finite
current state (which a run started from finite points never reaches): for
these two kernels a failed factorisation shows as a divergence.
"""

from __future__ import annotations

import jax.numpy as jnp
from numpyro.infer import HMC, NUTS

from reprior._util import checks as _checks


def hmc_stats(state) -> dict:
    """Statistics of NumPyro's ``HMCState`` (NUTS and HMC); ``lp`` is minus the potential."""
    steps = state.num_steps
    return {
        "num_steps": steps,
        "accept_prob": state.accept_prob,
        "diverging": state.diverging,
        "nonfinite": ~jnp.isfinite(state.potential_energy),
        "energy": state.energy,
        "lp": -state.potential_energy,
        "step_size": state.adapt_state.step_size,
        "num_grad_evals": steps,
        "num_logdensity_evals": steps,
    }


def _check_common(target_accept_prob, dense_mass, step_size):
    _checks.probability("target_accept_prob", target_accept_prob)
    _checks.flag("dense_mass", dense_mass)
    _checks.positive_float("step_size", step_size)


def nuts(potential_fn, *, target_accept_prob: float = 0.8, max_tree_depth: int = 10, dense_mass: bool = False,
         step_size: float = 1.0):
    """NumPyro's No-U-Turn sampler with step-size and diagonal mass adaptation."""
    _check_common(target_accept_prob, dense_mass, step_size)
    _checks.positive_int("max_tree_depth", max_tree_depth)
    return NUTS(potential_fn=potential_fn, target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                dense_mass=dense_mass, step_size=step_size)


def hmc(potential_fn, *, target_accept_prob: float = 0.8, num_steps: int | None = None,
        trajectory_length: float | None = None, dense_mass: bool = False, step_size: float = 1.0):
    """NumPyro's static HMC (16 leapfrog steps unless ``num_steps`` or ``trajectory_length`` is set)."""
    _check_common(target_accept_prob, dense_mass, step_size)
    if num_steps is not None:
        _checks.positive_int("num_steps", num_steps)
    if trajectory_length is not None:
        _checks.positive_float("trajectory_length", trajectory_length)
    if num_steps is None and trajectory_length is None:
        num_steps = 16
    return HMC(potential_fn=potential_fn, target_accept_prob=target_accept_prob, num_steps=num_steps,
               trajectory_length=trajectory_length, dense_mass=dense_mass, step_size=step_size)
