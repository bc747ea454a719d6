"""Microcanonical Langevin samplers, from BlackJAX: MCLMC and its Metropolis-adjusted form.

MCLMC (Robnik, De Luca, Silverstein and Seljak 2023, "Microcanonical
Hamiltonian Monte Carlo") moves with the isokinetic dynamics

.. math::

    \\dot z = u, \\qquad \\dot u = (I - u u^\\top)\\,\\frac{\\nabla\\log\\pi(z)}{d - 1},
    \\qquad |u| = 1,

with partial refreshes of the direction :math:`u` (Langevin noise on the
sphere, decoherence length :math:`L`).  It has no Metropolis step: its draws are
**biased by the step size** (the bias shrinks as the step size does; BlackJAX
tunes it so that the energy error per dimension has variance ``5e-4``).  The
adjusted form (Robnik, Cohn-Gordon and Seljak 2025, "Metropolis adjusted
microcanonical Hamiltonian Monte Carlo") integrates the same dynamics for a
random number of steps with mean :math:`L/\\epsilon` and accepts or rejects
the end point, so it is exact.

Both are BlackJAX's kernels (``blackjax.mcmc.mclmc`` and
``blackjax.mcmc.adjusted_mclmc_dynamic``), tuned by BlackJAX's own
``mclmc_find_L_and_step_size`` and ``adjusted_mclmc_find_L_and_step_size``
(step size, :math:`L` and a diagonal preconditioner), run once at ``init`` with
a budget of ``num_warmup`` steps (BlackJAX spends about a third of it, in its
three phases), followed by the ``num_warmup`` warm-up iterations with the tuned
parameters.  The tuner's gradient evaluations are counted in the first
warm-up iteration's ``num_grad_evals``.

They target :math:`\\ell(z) - |z|^2/2` (:class:`~reprior.inference.samplers.base.Density`)
in any parameterisation, which makes them the strongest baseline on the
*standard* parameterisation the repriorised kernels are compared with.

Cost per iteration: MCLMC 2 gradient evaluations (one McLachlan step);
adjusted MCLMC 2 per integration step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.adaptation.adjusted_mclmc_adaptation import adjusted_mclmc_find_L_and_step_size
from blackjax.adaptation.mclmc_adaptation import mclmc_find_L_and_step_size
from blackjax.mcmc import adjusted_mclmc_dynamic
from blackjax.mcmc import integrators as blackjax_integrators
from blackjax.mcmc import mclmc as blackjax_mclmc

from reprior._util import checks as _checks
from reprior.inference.samplers import integrators
from reprior.inference.samplers.adapter import AdaptedKernel, Algorithm, make_stats_fn
from reprior.inference.samplers.base import Density



class MCLMCParams(NamedTuple):
    """Tuned quantities: decoherence length ``L``, ``step_size`` and the diagonal ``inverse_mass_matrix``."""

    L: jax.Array
    step_size: jax.Array
    inverse_mass_matrix: jax.Array


class MCLMCInfo(NamedTuple):
    """What one iteration reports.

    Fields: ``accept_prob`` (unadjusted: 1, or 0 when BlackJAX reverted a
    non-finite step), ``is_accepted``, ``is_divergent``, ``nonfinite``,
    ``step_size``, ``L``, ``energy_change``, ``num_integration_steps``,
    ``num_grad_evals``, ``num_logdensity_evals``.
    """

    accept_prob: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    nonfinite: jax.Array
    step_size: jax.Array
    L: jax.Array
    energy_change: jax.Array
    num_integration_steps: jax.Array
    num_grad_evals: jax.Array
    num_logdensity_evals: jax.Array


def _integrator(name):
    """``(BlackJAX integrator, gradients per step)`` of an isokinetic integrator of the shared registry."""
    spec = integrators.resolve(name, "isokinetic")
    return getattr(blackjax_integrators, spec.scheme), spec.grads_per_step


def _default_params(state, dim: int):
    """BlackJAX's starting values: ``L = sqrt(d)``, ``step_size = sqrt(d)/4``, unit preconditioner."""
    dtype = state.position.dtype
    root = jnp.sqrt(jnp.asarray(dim, dtype))
    return MCLMCParams(root, 0.25 * root, jnp.ones((dim,), dtype))


def _as_params(tuned, dtype) -> MCLMCParams:
    return MCLMCParams(jnp.asarray(tuned.L, dtype), jnp.asarray(tuned.step_size, dtype),
                       jnp.asarray(tuned.inverse_mass_matrix, dtype) * jnp.ones((), dtype))


def mclmc(density, *, integrator: str = "isokinetic_mclachlan", desired_energy_var: float = 5e-4,
          diagonal_preconditioning: bool = True) -> AdaptedKernel:
    """Unadjusted MCLMC (BlackJAX) as a NumPyro ``MCMCKernel``; biased by its step size.

    Args:
        density: a Target, :class:`~reprior.inference.samplers.base.Density` or ``potential_fn``.
        integrator: ``"isokinetic_mclachlan"`` (BlackJAX's default) or ``"isokinetic_velocity_verlet"``.
        desired_energy_var: the energy-error variance per dimension the step size is tuned to.
        diagonal_preconditioning: tune a diagonal preconditioner too.
    """
    density = Density.of(density)
    integrate, grads_per_step = _integrator(integrator)
    energy_var = _checks.positive_float("desired_energy_var", desired_energy_var)
    _checks.flag("diagonal_preconditioning", diagonal_preconditioning)
    kernel = blackjax_mclmc.build_kernel(integrator=integrate, desired_energy_var=energy_var)
    cost = jnp.int32(grads_per_step)

    def build_algorithm(unravel):
        logdensity = density.on_flat(unravel).logdensity_fn

        def step(rng_key, state, params: MCLMCParams):
            new, info = kernel(rng_key, state, logdensity, params.inverse_mass_matrix, params.L, params.step_size)
            ok = info.nonans
            return new, MCLMCInfo(jnp.where(ok, 1.0, 0.0).astype(new.logdensity.dtype), ok, jnp.zeros((), bool),
                                  ~ok, params.step_size, params.L, info.energy_change, jnp.int32(1), cost, cost)

        def tune(rng_key, state, params, num_warmup):
            state, tuned, num_steps = mclmc_find_L_and_step_size(
                kernel, num_warmup, state, rng_key, logdensity_fn=logdensity, desired_energy_var=energy_var,
                diagonal_preconditioning=diagonal_preconditioning)
            return state, _as_params(tuned, state.position.dtype), num_steps * grads_per_step

        return Algorithm(
            init=lambda position, key: blackjax_mclmc.init(position, logdensity, key),
            step=step,
            initial_params=lambda key, state: _default_params(state, state.position.size),
            tune=tune)

    return AdaptedKernel(build_algorithm, "mclmc")


def _num_steps_fn(random_key, average):
    """A uniformly random number of integration steps with mean about ``average`` (at least 1)."""
    draw = jnp.ceil(2.0 * average * jax.random.uniform(random_key, (), jnp.asarray(average).dtype))
    return jnp.maximum(draw, 1).astype(jnp.int32)


def adjusted_mclmc(density, *, integrator: str = "isokinetic_mclachlan", target_accept_prob: float = 0.9,
                   diagonal_preconditioning: bool = True, max_delta_energy: float = 1000.0) -> AdaptedKernel:
    """Metropolis-adjusted MCLMC (BlackJAX's dynamic kernel, random trajectory length) as an ``MCMCKernel``.

    Args:
        density: a Target, :class:`~reprior.inference.samplers.base.Density` or ``potential_fn``.
        integrator: ``"isokinetic_mclachlan"`` or ``"isokinetic_velocity_verlet"``.
        target_accept_prob: acceptance targeted by BlackJAX's step-size tuning.
        diagonal_preconditioning: tune a diagonal preconditioner too.
        max_delta_energy: energy error above which a transition counts as divergent.
    """
    density = Density.of(density)
    integrate, grads_per_step = _integrator(integrator)
    target = _checks.probability("target_accept_prob", target_accept_prob)
    threshold = _checks.positive_float("max_delta_energy", max_delta_energy)
    _checks.flag("diagonal_preconditioning", diagonal_preconditioning)
    dynamic = adjusted_mclmc_dynamic.build_kernel(integration_steps_fn=_num_steps_fn, integrator=integrate,
                                                  divergence_threshold=threshold)

    def kernel(rng_key, state, logdensity_fn, step_size, inverse_mass_matrix, integration_steps_params):
        """BlackJAX's dynamic kernel with the argument order its tuner calls."""
        return dynamic(rng_key, state, logdensity_fn, step_size, inverse_mass_matrix=inverse_mass_matrix,
                       integration_steps_params=integration_steps_params)

    def build_algorithm(unravel):
        logdensity = density.on_flat(unravel).logdensity_fn

        def step(rng_key, state, params: MCLMCParams):
            new, info = kernel(rng_key, state, logdensity, params.step_size, params.inverse_mass_matrix,
                               (params.L / params.step_size,))
            finite = jnp.isfinite(info.energy) & jnp.isfinite(new.logdensity)
            steps = jnp.asarray(info.num_integration_steps, jnp.int32)
            nan = jnp.full((), jnp.nan, new.logdensity.dtype)  # the dynamic kernel reports no energy change
            return new, MCLMCInfo(info.acceptance_rate, info.is_accepted, info.is_divergent & finite, ~finite,
                                  params.step_size, params.L, nan, steps, steps * grads_per_step,
                                  steps * grads_per_step)

        def tune(rng_key, state, params, num_warmup):
            state, tuned, num_steps = adjusted_mclmc_find_L_and_step_size(
                kernel, logdensity, num_warmup, state, rng_key, target,
                diagonal_preconditioning=diagonal_preconditioning)
            return state, _as_params(tuned, state.position.dtype), num_steps * grads_per_step

        return Algorithm(
            init=lambda position, key: adjusted_mclmc_dynamic.init(position, logdensity, key),
            step=step,
            initial_params=lambda key, state: _default_params(state, state.position.size),
            tune=tune)

    return AdaptedKernel(build_algorithm, "adjusted_mclmc")


mclmc_stats = make_stats_fn("step_size", "L", "energy_change")
adjusted_mclmc_stats = make_stats_fn("step_size", "L", "num_integration_steps")
