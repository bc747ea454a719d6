"""Underdamped HMC (generalised HMC with partial momentum refresh): the paper's sampler.

One iteration (Horowitz 1991; Neal 2011, section 5.3; Hron et al. 2022,
section 5), with potential :math:`U = -\\log\\pi` and identity mass:

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
(:mod:`reprior.samplers.adaptation`) on the mean acceptance of blocks of 10
iterations with the step size held fixed within a block: a step size that
changes every iteration spoils the near-conservation of the shadow
Hamiltonian along the persistent trajectory and biases the tuned step low.

Cost: ``num_steps`` gradient evaluations per iteration (the gradient at the
current point is cached), reported as ``num_grad_evals`` and
``num_logdensity_evals``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro.infer.mcmc import MCMCKernel

from .. import _checks
from .init_checks import batched_init
from . import adaptation as adapt


class UnderdampedHMCState(NamedTuple):
    """State of :class:`UnderdampedHMC`; ``dim`` is the number of sampled scalars.

    Fields:
        i: ``()`` iteration index, warm-up included.
        z: position, a pytree like ``init_params`` (the ``sample_field``).
        momentum: ``(dim,)`` momentum after the iteration (flipped on rejection).
        z_grad: ``(dim,)`` gradient of the potential at ``z`` (cached).
        potential_energy: ``()`` potential :math:`U(z) = -\\log\\pi(z)`.
        energy: ``()`` :math:`U(z) + \\tfrac12|m|^2` after the iteration.
        num_steps: ``()`` leapfrog steps (= gradient evaluations) this iteration.
        step_size: ``()`` the step size used this iteration.
        accept_prob: ``()`` Metropolis acceptance probability of this iteration.
        mean_accept_prob: ``()`` running mean of ``accept_prob`` (restarted after warm-up).
        diverging: ``()`` whether the energy error exceeded ``max_delta_energy`` or was not finite.
        adapt_state: :class:`~reprior.samplers.adaptation.StepSizeState` (its
            ``step_size`` is the one of the next iteration).
        num_warmup: ``()`` number of warm-up (adaptation) iterations.
        rng_key: PRNG key of the next iteration.
    """

    i: jax.Array
    z: object
    momentum: jax.Array
    z_grad: jax.Array
    potential_energy: jax.Array
    energy: jax.Array
    num_steps: jax.Array
    step_size: jax.Array
    accept_prob: jax.Array
    mean_accept_prob: jax.Array
    diverging: jax.Array
    adapt_state: adapt.StepSizeState
    num_warmup: jax.Array
    rng_key: jax.Array


def _flat_potential(potential_fn, unravel):
    return jax.value_and_grad(lambda flat: potential_fn(unravel(flat)))


def leapfrog(value_and_grad_fn, z, momentum, z_grad, step_size, num_steps: int):
    """``num_steps`` velocity-Verlet steps on flat arrays; returns ``(z, momentum, potential, grad)``."""

    def step(carry, _):
        z, m, _, g = carry
        m = m - 0.5 * step_size * g
        z = z + step_size * m
        potential, g = value_and_grad_fn(z)
        m = m - 0.5 * step_size * g
        return (z, m, potential, g), None

    carry = (z, momentum, jnp.zeros((), z.dtype), z_grad)
    if num_steps == 1:  # the default: no loop, which also compiles several times faster
        carry, _ = step(carry, None)
    else:
        carry, _ = jax.lax.scan(step, carry, None, length=num_steps)
    return carry


class UnderdampedHMC(MCMCKernel):
    """Underdamped (generalised) HMC on ``potential_fn``, identity mass.

    Args:
        potential_fn: ``z -> -log pi(z)`` on a pytree ``z``.
        step_size: initial leapfrog step size (searched and adapted from there
            when ``adapt_step_size``; used as is otherwise).
        num_steps: leapfrog steps per iteration, ``L`` (``1`` is Langevin).
        momentum_refresh: :math:`\\beta \\in (0, 1]`, the fraction of momentum
            variance refreshed per iteration (paper: 0.01).
        target_accept_prob: acceptance probability targeted during warm-up.
        adapt_step_size: tune the step size during warm-up (dual averaging).
        max_delta_energy: energy error above which an iteration is flagged ``diverging``.

    Example::

        kernel = UnderdampedHMC(lambda z: 0.5 * jnp.sum(z**2))
        mcmc = numpyro.infer.MCMC(kernel, num_warmup=500, num_samples=1000)
        mcmc.run(jax.random.key(0), init_params=jnp.zeros(3))
    """

    sample_field = "z"
    model = None  # built on a potential_fn, not a NumPyro model (read by arviz.from_numpyro)
    #: iterations per dual-averaging update (see :func:`~reprior.samplers.adaptation.step_size_adaptation`)
    adapt_block_size = 10

    def __init__(self, potential_fn, *, step_size: float = 0.1, num_steps: int = 1,
                 momentum_refresh: float = 0.01, target_accept_prob: float = 0.8,
                 adapt_step_size: bool = True, max_delta_energy: float = 1000.0):
        if not callable(potential_fn):
            raise _checks.fail("potential_fn", "a callable z -> -log density", potential_fn)
        self.potential_fn = potential_fn
        self.step_size = _checks.positive_float("step_size", step_size)
        self.num_steps = _checks.positive_int("num_steps", num_steps)
        self.momentum_refresh = _checks.probability("momentum_refresh", momentum_refresh, open_interval=False)
        if self.momentum_refresh == 0:
            raise _checks.fail("momentum_refresh", "a number in (0, 1]", momentum_refresh)
        self.target_accept_prob = _checks.probability("target_accept_prob", target_accept_prob)
        if not isinstance(adapt_step_size, bool):
            raise _checks.fail("adapt_step_size", "True or False", adapt_step_size)
        self.adapt_step_size = adapt_step_size
        self.max_delta_energy = _checks.positive_float("max_delta_energy", max_delta_energy)
        self._adaptation = (adapt.step_size_adaptation(self.target_accept_prob, block_size=self.adapt_block_size)
                            if adapt_step_size else None)

    @property
    def default_fields(self):
        return ("z", "diverging")

    def _initial_step_size(self, rng_key, vg_fn, z, potential, z_grad):
        step_size = jnp.asarray(self.step_size, z.dtype)
        if not self.adapt_step_size:
            return step_size

        def log_accept(eps, key):
            m = jax.random.normal(key, z.shape, z.dtype)
            _, m_new, potential_new, _ = leapfrog(vg_fn, z, m, z_grad, eps, 1)
            return (potential + 0.5 * m @ m) - (potential_new + 0.5 * m_new @ m_new)

        return adapt.find_reasonable_step_size(log_accept, rng_key, step_size, self.target_accept_prob)

    def init(self, rng_key, num_warmup, init_params, model_args=(), model_kwargs=None):
        batched = batched_init(self, rng_key, num_warmup, init_params)
        if batched is not None:  # one key per chain: NumPyro's vectorized chains
            return batched
        z, unravel = ravel_pytree(init_params)
        vg_fn = _flat_potential(self.potential_fn, unravel)
        potential, z_grad = vg_fn(z)
        momentum_key, step_key, rng_key = jax.random.split(rng_key, 3)
        momentum = jax.random.normal(momentum_key, z.shape, z.dtype)
        step_size = self._initial_step_size(step_key, vg_fn, z, potential, z_grad)
        adapt_state = (self._adaptation.init(step_size) if self._adaptation
                       else adapt.StepSizeState(step_size, ()))
        zero = jnp.zeros((), z.dtype)
        return UnderdampedHMCState(
            i=jnp.zeros((), jnp.int32), z=init_params, momentum=momentum, z_grad=z_grad,
            potential_energy=potential, energy=potential + 0.5 * momentum @ momentum,
            num_steps=jnp.zeros((), jnp.int32), step_size=step_size, accept_prob=zero,
            mean_accept_prob=zero, diverging=jnp.zeros((), bool), adapt_state=adapt_state,
            num_warmup=jnp.asarray(num_warmup, jnp.int32), rng_key=rng_key)

    def sample(self, state, model_args=(), model_kwargs=None):
        if jnp.ndim(state.i):  # a batch of chains (see init)
            return jax.vmap(self.sample)(state)
        refresh_key, accept_key, rng_key = jax.random.split(state.rng_key, 3)
        z, unravel = ravel_pytree(state.z)
        vg_fn = _flat_potential(self.potential_fn, unravel)
        step_size = state.adapt_state.step_size
        beta = self.momentum_refresh
        xi = jax.random.normal(refresh_key, z.shape, z.dtype)
        momentum = jnp.sqrt(1.0 - beta) * state.momentum + jnp.sqrt(beta) * xi
        energy = state.potential_energy + 0.5 * momentum @ momentum
        z_new, m_new, potential_new, grad_new = leapfrog(vg_fn, z, momentum, state.z_grad, step_size, self.num_steps)
        energy_new = potential_new + 0.5 * m_new @ m_new
        delta = jnp.where(jnp.isnan(energy_new - energy), jnp.inf, energy_new - energy)
        accept_prob = jnp.minimum(1.0, jnp.exp(-delta))
        accept = jax.random.uniform(accept_key, (), z.dtype) < accept_prob
        z, momentum = jnp.where(accept, z_new, z), jnp.where(accept, m_new, -momentum)
        potential = jnp.where(accept, potential_new, state.potential_energy)
        z_grad = jnp.where(accept, grad_new, state.z_grad)
        return UnderdampedHMCState(
            i=state.i + 1, z=unravel(z), momentum=momentum, z_grad=z_grad, potential_energy=potential,
            energy=potential + 0.5 * momentum @ momentum,
            num_steps=jnp.asarray(self.num_steps, jnp.int32), step_size=step_size, accept_prob=accept_prob,
            mean_accept_prob=adapt.running_mean_accept(state.mean_accept_prob, accept_prob, state.i, state.num_warmup),
            diverging=delta > self.max_delta_energy,
            adapt_state=adapt.warmup_update(self._adaptation, state.adapt_state, accept_prob, state.i,
                                            state.num_warmup),
            num_warmup=state.num_warmup, rng_key=rng_key)

    def get_diagnostics_str(self, state):
        return f"step size {float(state.step_size):.2e}. acc. prob={float(state.mean_accept_prob):.2f}"


def underdamped_stats(state: UnderdampedHMCState) -> dict:
    """Per-iteration sample statistics (the registry's ``stats_fn``)."""
    return {
        "accept_prob": state.accept_prob,
        "diverging": state.diverging,
        "lp": -state.potential_energy,
        "energy": state.energy,
        "step_size": state.step_size,
        "num_steps": state.num_steps,
        "num_grad_evals": state.num_steps,
        "num_logdensity_evals": state.num_steps,
    }
