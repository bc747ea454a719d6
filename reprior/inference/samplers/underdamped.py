"""Underdamped HMC (generalised HMC with partial momentum refresh): the paper's sampler.

One iteration (Horowitz 1991; Neal 2011, section 5.3; Hron et al. 2022,
section 5), with :math:`U = -\\log\\pi` and identity mass:

1. partial momentum refresh, :math:`\\xi \\sim \\mathcal N(0, I)`,

   .. math:: m \\leftarrow \\sqrt{1 - \\beta}\\, m + \\sqrt{\\beta}\\, \\xi;

2. ``num_steps`` leapfrog steps of size :math:`\\epsilon` from :math:`(z, m)`
   to :math:`(z', m')`;
3. Metropolis correction: accept :math:`(z', m')` with probability
   :math:`\\min(1, e^{-\\Delta H})`, :math:`H = U(z) + \\tfrac12|m|^2`;
   on rejection keep :math:`z` and flip the momentum, :math:`m \\leftarrow -m`.

Steps 2-3 are a Metropolis step with the involution "leapfrog, then flip"
followed by a flip, and step 1 leaves :math:`\\mathcal N(0, I)` invariant, so
the joint target :math:`\\pi(z)\\,\\mathcal N(m; 0, I)` is preserved exactly.
With ``num_steps=1`` this is Metropolis-adjusted underdamped Langevin dynamics;
with ``momentum_refresh=1`` it is plain HMC with a fixed number of steps.  The
momentum persists between iterations, so a small :math:`\\beta` gives long,
cheap trajectories, and a rejection reverses them: hence the high target
acceptance.  The step size is tuned by dual averaging during warm-up
(:mod:`reprior.inference.samplers.adaptation`) on the mean acceptance of blocks of 10
iterations with the step size held fixed within a block: a step size that
changes every iteration spoils the near-conservation of the shadow
Hamiltonian along the persistent trajectory and biases the tuned step low.

The energy error is formed without cancellation: with :math:`\\ell` the log
likelihood (:class:`~reprior.inference.samplers.base.Density`),

.. math::

    \\Delta H = -(\\ell' - \\ell) + \\tfrac12 (z' - z)\\cdot(z' + z)
        + \\tfrac12 (m' - m)\\cdot(m' + m),

so no term of size :math:`|z|^2/2` (about :math:`5\\times 10^5` at a million
weights) enters the acceptance ratio.  The integrator is passed in
(:mod:`reprior.inference.samplers.integrators`, velocity Verlet by default).

Cost: ``num_steps`` gradient evaluations per iteration (the gradient at the
current point is cached), reported as ``num_grad_evals`` and
``num_logdensity_evals``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from reprior._util import checks as _checks
from reprior.inference.samplers import adaptation as adapt
from reprior.inference.samplers.adapter import AdaptedKernel, Algorithm, make_stats_fn, with_step_size_adaptation
from reprior.inference.samplers.base import Density, FlatDensity, is_finite, metropolis, select
from reprior.inference.samplers import integrators
from reprior.inference.samplers.integrators import velocity_verlet


class UnderdampedHMCState(NamedTuple):
    """State of underdamped HMC; ``dim`` is the number of sampled scalars.

    Fields:
        position: ``(dim,)``.
        momentum: ``(dim,)`` after the iteration (flipped on rejection).
        log_likelihood: ``()`` :math:`\\ell` at ``position``.
        logdensity: ``()`` :math:`\\ell - |z|^2/2` (reported as ``lp``).
        grad: ``(dim,)`` :math:`\\nabla\\log\\pi` at ``position`` (cached).
    """

    position: jax.Array
    momentum: jax.Array
    log_likelihood: jax.Array
    logdensity: jax.Array
    grad: jax.Array


class UnderdampedHMCInfo(NamedTuple):
    """What one iteration reports: ``accept_prob``, ``is_accepted``, ``is_divergent``
    (finite energy error above ``max_delta_energy``), ``nonfinite``, ``step_size``,
    ``energy`` (:math:`-\\ell + |z|^2/2 + |m|^2/2` after the iteration, without
    constants), ``delta_energy``, ``num_steps``, ``num_grad_evals``, ``num_logdensity_evals``."""

    accept_prob: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    nonfinite: jax.Array
    step_size: jax.Array
    energy: jax.Array
    delta_energy: jax.Array
    num_steps: jax.Array
    num_grad_evals: jax.Array
    num_logdensity_evals: jax.Array


class UnderdampedHMCParams(NamedTuple):
    """Tuned quantities: the leapfrog ``step_size``."""

    step_size: jax.Array


def _value_and_force(density: FlatDensity):
    """``z -> (log likelihood, grad log density)``, the density's force for the integrator."""
    vg = jax.value_and_grad(density.log_likelihood_fn)

    def fn(z):
        value, grad = vg(z)
        return value, grad - z

    return fn


def init(position, momentum, density: FlatDensity) -> UnderdampedHMCState:
    """The state at a flat ``position`` with the given ``momentum``."""
    log_likelihood, force = _value_and_force(density)(position)
    return UnderdampedHMCState(position, momentum, log_likelihood, log_likelihood - 0.5 * position @ position, force)


def delta_energy(state: UnderdampedHMCState, new: UnderdampedHMCState, momentum) -> jax.Array:
    """:math:`H(z', m') - H(z, m)` without cancellation (see the module docstring)."""
    z, z_new, m_new = state.position, new.position, new.momentum
    return (-(new.log_likelihood - state.log_likelihood) + 0.5 * (z_new - z) @ (z_new + z)
            + 0.5 * (m_new - momentum) @ (m_new + momentum))


def trajectory(state: UnderdampedHMCState, momentum, step_size, density: FlatDensity, integrator, num_steps: int):
    """Integrate from ``(state.position, momentum)``: the proposed state."""
    z, m, log_likelihood, force = integrator(_value_and_force(density), state.position, momentum, state.grad,
                                             step_size, num_steps)
    return UnderdampedHMCState(z, m, log_likelihood, log_likelihood - 0.5 * z @ z, force)


def build_kernel(density: FlatDensity, *, num_steps: int = 1, momentum_refresh: float = 0.01,
                 integrator=velocity_verlet, max_delta_energy: float = 1000.0):
    """``step(rng_key, state, params) -> (state, info)``: refresh, integrate, accept or flip."""
    beta = momentum_refresh
    spec = integrators.resolve(integrator, "euclidean")
    integrator = spec.scheme
    cost = jnp.int32(num_steps * spec.grads_per_step)

    def step(rng_key, state: UnderdampedHMCState, params: UnderdampedHMCParams):
        refresh_key, accept_key = jax.random.split(rng_key)
        xi = jax.random.normal(refresh_key, state.momentum.shape, state.momentum.dtype)
        momentum = jnp.sqrt(1.0 - beta) * state.momentum + jnp.sqrt(beta) * xi
        new = trajectory(state, momentum, params.step_size, density, integrator, num_steps)
        delta = delta_energy(state, new, momentum)
        decision = metropolis(accept_key, -delta, is_finite(new.log_likelihood, new.grad), max_delta_energy)
        kept = select(decision.accepted, new, state._replace(momentum=-momentum))
        energy = -kept.logdensity + 0.5 * kept.momentum @ kept.momentum
        info = UnderdampedHMCInfo(decision.accept_prob, decision.accepted, decision.is_divergent,
                                  decision.nonfinite, params.step_size, energy, delta, jnp.int32(num_steps), cost,
                                  cost)
        return kept, info

    return step


def initial_params(rng_key, state: UnderdampedHMCState, density: FlatDensity, step_size: float,
                   target_accept_prob: float | None, integrator):
    """The step size as given, or searched from it when ``target_accept_prob`` is set."""
    eps = jnp.asarray(step_size, state.position.dtype)
    if target_accept_prob is None:
        return UnderdampedHMCParams(eps)

    def log_accept(eps, key):
        m = jax.random.normal(key, state.position.shape, state.position.dtype)
        return -delta_energy(state, trajectory(state, m, eps, density, integrator, 1), m)

    return UnderdampedHMCParams(adapt.find_reasonable_step_size(log_accept, rng_key, eps, target_accept_prob))


#: Iterations per dual-averaging update (see :func:`~reprior.inference.samplers.adaptation.step_size_adaptation`).
ADAPT_BLOCK_SIZE = 10


def underdamped_hmc(density, *, step_size: float = 0.1, num_steps: int = 1, momentum_refresh: float = 0.01,
                    target_accept_prob: float = 0.8, adapt_step_size: bool = True,
                    max_delta_energy: float = 1000.0, integrator=velocity_verlet) -> AdaptedKernel:
    """Underdamped (generalised) HMC as a NumPyro ``MCMCKernel``, identity mass.

    Args:
        density: a Target, :class:`~reprior.inference.samplers.base.Density` or ``potential_fn``.
        step_size: initial step size (searched and adapted from there when
            ``adapt_step_size``; used as is otherwise).
        num_steps: integrator steps per iteration, ``L`` (``1`` is Langevin).
        momentum_refresh: :math:`\\beta \\in (0, 1]`, the fraction of momentum
            variance refreshed per iteration (paper: 0.01).
        target_accept_prob: acceptance probability targeted during warm-up.
        adapt_step_size: tune the step size during warm-up (dual averaging over
            blocks of :data:`ADAPT_BLOCK_SIZE` iterations).
        max_delta_energy: energy error above which a finite proposal counts as divergent.
        integrator: an integrator of :mod:`reprior.inference.samplers.integrators`, or its name.

    Example::

        kernel = underdamped_hmc(lambda z: 0.5 * jnp.sum(z**2))
        mcmc = numpyro.infer.MCMC(kernel, num_warmup=500, num_samples=1000)
        mcmc.run(jax.random.key(0), init_params=jnp.zeros(3))
    """
    density = Density.of(density)
    eps = _checks.positive_float("step_size", step_size)
    num_steps = _checks.positive_int("num_steps", num_steps)
    beta = _checks.positive_fraction("momentum_refresh", momentum_refresh)
    target = _checks.probability("target_accept_prob", target_accept_prob)
    _checks.flag("adapt_step_size", adapt_step_size)
    threshold = _checks.positive_float("max_delta_energy", max_delta_energy)
    integrator = integrators.resolve(integrator, "euclidean").scheme

    def build_algorithm(unravel):
        flat = density.on_flat(unravel)

        def init_state(position, key):
            return init(position, jax.random.normal(key, position.shape, position.dtype), flat)

        return Algorithm(
            init=init_state,
            step=build_kernel(flat, num_steps=num_steps, momentum_refresh=beta, integrator=integrator,
                              max_delta_energy=threshold),
            initial_params=lambda key, state: initial_params(key, state, flat, eps,
                                                             target if adapt_step_size else None, integrator),
            adaptation=with_step_size_adaptation(target, adapt_step_size, block_size=ADAPT_BLOCK_SIZE))

    return AdaptedKernel(build_algorithm, "underdamped_hmc")


#: Backward-compatible name.
UnderdampedHMC = underdamped_hmc
underdamped_stats = make_stats_fn("step_size", "energy", "num_steps")
