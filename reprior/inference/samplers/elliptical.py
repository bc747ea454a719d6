"""Elliptical slice sampling (Murray, Adams and MacKay 2010): no tuning, always moves.

The target is split into a Gaussian prior and a likelihood,

.. math::

    \\pi(z) \\propto L(z)\\,\\mathcal N(z; 0, s^2 I),

with :math:`s` the ``reference_std`` (1 for every target of
:func:`reprior.sample`, whose sampled variables all have the N(0, I) prior, and
then :math:`\\log L = \\ell` is handed to the kernel directly, so slice levels
carry no cancellation error; see :class:`~reprior.inference.samplers.base.Density`).  One iteration (their figure 2):

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

from reprior._util import checks as _checks
from reprior.inference.samplers.adapter import AdaptedKernel, Algorithm, make_stats_fn
from reprior.inference.samplers.base import Density, FlatDensity, is_finite, select


class EllipticalSliceState(NamedTuple):
    """State of elliptical slice sampling.

    Fields:
        position: ``(dim,)`` the current point.
        log_likelihood: ``()`` :math:`\\log L` at ``position``.
        logdensity: ``()`` :math:`\\ell - |z|^2/2` at ``position`` (reported as ``lp``).
        evaluation: what the density's evaluation left behind at ``position``
            (:attr:`~reprior.inference.samplers.base.Density.evaluate_fn`), ``None`` without one.
    """

    position: jax.Array
    log_likelihood: jax.Array
    logdensity: jax.Array
    evaluation: object = None


class EllipticalSliceInfo(NamedTuple):
    """What one iteration reports.

    Fields: ``accept_prob`` (1, or 0 when the shrinkage loop gave up),
    ``is_accepted``, ``is_divergent`` (the loop hit ``max_shrinks``; the chain
    stayed put), ``nonfinite`` (some evaluation on the ellipse was not finite;
    the slice shrinks away from it), ``num_shrinks``, ``log_slice_level``,
    ``num_grad_evals`` (0), ``num_logdensity_evals`` (``1 + num_shrinks``).
    """

    accept_prob: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    nonfinite: jax.Array
    num_shrinks: jax.Array
    log_slice_level: jax.Array
    num_grad_evals: jax.Array
    num_logdensity_evals: jax.Array


class EllipticalSliceParams(NamedTuple):
    """No tuned quantities (elliptical slice sampling needs none)."""


def init(position, density: FlatDensity) -> EllipticalSliceState:
    """The state at a flat ``position``."""
    log_likelihood, evaluation = density.value(position)
    return EllipticalSliceState(position, log_likelihood, log_likelihood + density.log_prior(position), evaluation)


def build_kernel(density: FlatDensity, *, max_shrinks: int = 100):
    """``step(rng_key, state, params) -> (state, info)``: one elliptical slice iteration."""

    def step(rng_key, state: EllipticalSliceState, params=None):
        nu_key, level_key, angle_key, loop_key = jax.random.split(rng_key, 4)
        z = state.position
        nu = density.reference_std * jax.random.normal(nu_key, z.shape, z.dtype)
        log_level = state.log_likelihood + jnp.log(jax.random.uniform(level_key, (), z.dtype))

        def evaluate(theta):
            new = init(z * jnp.cos(theta) + nu * jnp.sin(theta), density)
            finite = is_finite(new.log_likelihood)
            return new, finite & (new.log_likelihood > log_level), ~finite

        def cond(carry):
            *_, accepted, _, num_evals, _ = carry
            return ~accepted & (num_evals <= max_shrinks)

        def body(carry):
            theta, low, high, _, _, nonfinite, num_evals, key = carry
            key, draw_key = jax.random.split(key)
            low, high = jnp.where(theta < 0, theta, low), jnp.where(theta < 0, high, theta)
            theta = jax.random.uniform(draw_key, (), z.dtype, low, high)
            new, accepted, bad = evaluate(theta)
            return theta, low, high, new, accepted, nonfinite | bad, num_evals + 1, key

        theta = jax.random.uniform(angle_key, (), z.dtype, 0.0, 2 * math.pi)
        new, accepted, bad = evaluate(theta)
        carry = (theta, theta - 2 * math.pi, theta, new, accepted, bad, jnp.ones((), jnp.int32), loop_key)
        _, _, _, new, accepted, nonfinite, num_evals, _ = jax.lax.while_loop(cond, body, carry)
        info = EllipticalSliceInfo(
            accept_prob=jnp.where(accepted, 1.0, 0.0).astype(z.dtype), is_accepted=accepted,
            is_divergent=~accepted, nonfinite=nonfinite, num_shrinks=num_evals - 1, log_slice_level=log_level,
            num_grad_evals=jnp.zeros((), jnp.int32), num_logdensity_evals=num_evals)
        return select(accepted, new, state), info

    return step


def elliptical_slice(density, *, max_shrinks: int = 100, reference_std: float = 1.0) -> AdaptedKernel:
    """Elliptical slice sampling as a NumPyro ``MCMCKernel`` on ``density`` (a Target, Density or potential_fn).

    Args:
        max_shrinks: the most bracket shrinks per iteration before giving up.
        reference_std: :math:`s`, the prior standard deviation.
    """
    density = Density.of(density)
    max_shrinks = _checks.positive_int("max_shrinks", max_shrinks)
    s = _checks.positive_float("reference_std", reference_std)

    def build_algorithm(unravel):
        flat = density.on_flat(unravel, s)
        return Algorithm(init=lambda position, key: init(position, flat),
                         step=build_kernel(flat, max_shrinks=max_shrinks),
                         initial_params=lambda key, state: EllipticalSliceParams())

    return AdaptedKernel(build_algorithm, "elliptical_slice")


#: Backward-compatible name.
EllipticalSlice = elliptical_slice
elliptical_stats = make_stats_fn("num_shrinks")
