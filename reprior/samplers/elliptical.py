"""Elliptical slice sampling (Murray, Adams and MacKay 2010): no tuning, always moves.

The target is split into a Gaussian prior and a likelihood,

.. math::

    \\pi(z) \\propto L(z)\\,\\mathcal N(z; 0, s^2 I), \\qquad
    \\log L(z) = -U(z) + \\frac{|z|^2}{2 s^2} + \\mathrm{const},

with :math:`U` the ``potential_fn`` and :math:`s` the ``reference_std`` (1 for
every target of :func:`reprior.sample`, whose sampled variables all have the
N(0, I) prior).  One iteration (their figure 2):

1. :math:`\\nu \\sim \\mathcal N(0, s^2 I)`, slice level
   :math:`\\log y = \\log L(z) + \\log u`, :math:`u \\sim U(0, 1)`;
2. :math:`\\theta \\sim U(0, 2\\pi)`, bracket :math:`[\\theta - 2\\pi, \\theta]`;
3. propose :math:`z' = z\\cos\\theta + \\nu\\sin\\theta`; if
   :math:`\\log L(z') > \\log y` accept, otherwise shrink the bracket toward 0
   (the current point) with :math:`\\theta` as the new end, draw a new
   :math:`\\theta` uniformly in it and repeat.

The ellipse through :math:`z` and :math:`\\nu` leaves the prior invariant and the
slice step the likelihood, so :math:`\\pi` is invariant.  Because the bracket
shrinks toward the current point, where :math:`\\log L > \\log y`, the loop ends
with probability one; it runs in :func:`jax.lax.while_loop` and is cut after
``max_shrinks`` shrinks (default 100, a bracket of :math:`2\\pi\\, 2^{-100}` in
expectation, only reached when the likelihood is NaN or discontinuous), in
which case the chain stays put and the iteration is flagged ``diverging``.

Cost per iteration: ``1 + num_shrinks`` log-density evaluations, no gradient.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro.infer.mcmc import MCMCKernel

from .. import _checks
from .init_checks import batched_init


class EllipticalSliceState(NamedTuple):
    """State of :class:`EllipticalSlice`.

    Fields:
        i: ``()`` iteration index (no warm-up adaptation; counted for uniformity).
        z: position, a pytree like ``init_params`` (the ``sample_field``).
        potential_energy: ``()`` potential :math:`U(z)`.
        num_evals: ``()`` log-density evaluations this iteration, ``1 + num_shrinks``.
        diverging: ``()`` whether the shrinkage loop hit ``max_shrinks`` (the chain stayed put).
        rng_key: PRNG key of the next iteration.
    """

    i: jax.Array
    z: object
    potential_energy: jax.Array
    num_evals: jax.Array
    diverging: jax.Array
    rng_key: jax.Array


class EllipticalSlice(MCMCKernel):
    """Elliptical slice sampling on ``potential_fn`` with prior N(0, reference_std^2 I).

    Args:
        potential_fn: ``z -> -log pi(z)`` on a pytree ``z``, including the prior's
            :math:`|z|^2/(2 s^2)` (as every :func:`reprior.sample` target does).
        max_shrinks: the most bracket shrinks per iteration before giving up.
        reference_std: :math:`s`, the prior standard deviation.
    """

    sample_field = "z"
    model = None  # built on a potential_fn, not a NumPyro model (read by arviz.from_numpyro)

    def __init__(self, potential_fn, *, max_shrinks: int = 100, reference_std: float = 1.0):
        if not callable(potential_fn):
            raise _checks.fail("potential_fn", "a callable z -> -log density", potential_fn)
        self.potential_fn = potential_fn
        self.max_shrinks = _checks.positive_int("max_shrinks", max_shrinks)
        self.reference_std = _checks.positive_float("reference_std", reference_std)

    @property
    def default_fields(self):
        return ("z", "diverging")

    def _log_likelihood(self, z, potential):
        return -potential + 0.5 * (z @ z) / self.reference_std**2

    def init(self, rng_key, num_warmup, init_params, model_args=(), model_kwargs=None):
        batched = batched_init(self, rng_key, num_warmup, init_params)
        if batched is not None:  # one key per chain: NumPyro's vectorized chains
            return batched
        potential = self.potential_fn(init_params)
        return EllipticalSliceState(i=jnp.zeros((), jnp.int32), z=init_params, potential_energy=potential,
                                    num_evals=jnp.zeros((), jnp.int32), diverging=jnp.zeros((), bool),
                                    rng_key=rng_key)

    def sample(self, state, model_args=(), model_kwargs=None):
        if jnp.ndim(state.i):  # a batch of chains (see init)
            return jax.vmap(self.sample)(state)
        nu_key, level_key, angle_key, loop_key, rng_key = jax.random.split(state.rng_key, 5)
        z, unravel = ravel_pytree(state.z)
        nu = self.reference_std * jax.random.normal(nu_key, z.shape, z.dtype)
        log_level = self._log_likelihood(z, state.potential_energy) + jnp.log(
            jax.random.uniform(level_key, (), z.dtype))

        def evaluate(theta):
            z_new = z * jnp.cos(theta) + nu * jnp.sin(theta)
            potential = self.potential_fn(unravel(z_new))
            return z_new, potential, self._log_likelihood(z_new, potential) > log_level

        def cond(carry):
            *_, accepted, num_evals, _ = carry
            return ~accepted & (num_evals <= self.max_shrinks)

        def body(carry):
            theta, low, high, _, _, _, num_evals, key = carry
            key, draw_key = jax.random.split(key)
            low, high = jnp.where(theta < 0, theta, low), jnp.where(theta < 0, high, theta)
            theta = jax.random.uniform(draw_key, (), z.dtype, low, high)
            z_new, potential, accepted = evaluate(theta)
            return theta, low, high, z_new, potential, accepted, num_evals + 1, key

        theta = jax.random.uniform(angle_key, (), z.dtype, 0.0, 2 * math.pi)
        z_new, potential, accepted = evaluate(theta)
        carry = (theta, theta - 2 * math.pi, theta, z_new, potential, accepted, jnp.ones((), jnp.int32), loop_key)
        _, _, _, z_new, potential, accepted, num_evals, _ = jax.lax.while_loop(cond, body, carry)
        return EllipticalSliceState(
            i=state.i + 1, z=unravel(jnp.where(accepted, z_new, z)),
            potential_energy=jnp.where(accepted, potential, state.potential_energy),
            num_evals=num_evals, diverging=~accepted, rng_key=rng_key)


def elliptical_stats(state: EllipticalSliceState) -> dict:
    """Per-iteration sample statistics (the registry's ``stats_fn``).

    ``accept_prob`` is 1 (the sampler always moves) unless the shrinkage loop
    gave up; ``num_shrinks = num_logdensity_evals - 1``.  No ``step_size``.
    """
    return {
        "accept_prob": jnp.where(state.diverging, 0.0, 1.0).astype(state.potential_energy.dtype),
        "diverging": state.diverging,
        "lp": -state.potential_energy,
        "num_shrinks": jnp.maximum(state.num_evals - 1, 0),
        "num_grad_evals": jnp.zeros_like(state.num_evals),
        "num_logdensity_evals": state.num_evals,
    }
