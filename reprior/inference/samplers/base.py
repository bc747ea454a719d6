"""What every kernel of this package shares: the density it is handed and the Metropolis step.

Targets here have an N(0, I) prior on every sampled scalar (see
:mod:`reprior.core.target`), and kernels are handed the two functions of a
:class:`Density` on flat arrays:

* ``log_likelihood_fn(z)``: :math:`\\ell(z)`, the log likelihood without the
  prior and without additive constants (Gaussian-reference kernels need no
  more, and get it without any cancellation);
* ``logdensity_fn(z)``: :math:`\\ell(z) - \\tfrac12|z|^2`, the log posterior up to
  a constant (gradient-based kernels with an identity metric).

Every kernel's info records ``nonfinite``: the proposal's log likelihood (or
its gradient) was not finite, e.g. a Cholesky factorisation failed in float32.
Such a proposal is rejected; it is counted apart from an energy-error
divergence (``is_divergent``), whose value is finite but too far off.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from reprior.core.pytrees import squared_norm


class Density(NamedTuple):
    """A target with an N(0, I) prior, as the kernels use it (pytree positions).

    Attributes:
        log_likelihood_fn: ``z -> l(z)``, no prior, no constants.
        logdensity_fn: ``z -> l(z) - |z|^2 / 2``.
        evaluate_fn: optional ``z -> (l(z), evaluation)``: the log likelihood and a pytree of what
            its computation leaves behind (a target's features and factorisation,
            :meth:`reprior.core.target.Target.evaluate`).  Kernels that carry it keep the
            evaluation of their current point in their state (field ``evaluation``), so the
            per-draw work of :func:`reprior.sample` reuses it instead of recomputing it.
    """

    log_likelihood_fn: Callable
    logdensity_fn: Callable
    evaluate_fn: Callable | None = None

    @property
    def potential_fn(self) -> Callable:
        """``z -> -logdensity(z)``: NumPyro's potential energy."""
        fn = self.logdensity_fn
        return lambda z: -fn(z)

    @classmethod
    def of(cls, target) -> "Density":
        """From a :class:`reprior.core.target.Target`, a ``Density`` or a ``potential_fn``."""
        if isinstance(target, Density):
            return target
        if hasattr(target, "log_likelihood") and hasattr(target, "logdensity"):
            return cls(target.log_likelihood, target.logdensity, getattr(target, "evaluate", None))
        if callable(target):
            def log_likelihood_fn(z, potential_fn=target):
                return 0.5 * squared_norm(z) - potential_fn(z)

            return cls(log_likelihood_fn, lambda z, potential_fn=target: -potential_fn(z))
        from reprior._util import checks as _checks

        raise _checks.fail("target", "a reprior Target, a Density or a callable potential_fn", target)

    def on_flat(self, unravel, reference_std: float = 1.0) -> "FlatDensity":
        """The same functions on flat vectors, for a Gaussian reference N(0, s^2 I).

        With ``reference_std = s != 1`` the likelihood relative to that reference is
        :math:`\\ell(z) - \\tfrac12|z|^2 + |z|^2/(2s^2)`; with ``s = 1`` it is :math:`\\ell`
        itself, untouched.
        """
        log_likelihood, logdensity, evaluate = self.log_likelihood_fn, self.logdensity_fn, self.evaluate_fn
        reference_evaluate = None
        if evaluate is not None:  # one formula: the value and the log likelihood are the same function
            def reference_evaluate(flat):
                value, evaluation = evaluate(unravel(flat))
                if reference_std != 1.0:
                    value = value - 0.5 * (flat @ flat) * (1.0 - 1.0 / reference_std**2)
                return value, evaluation

            def reference_loglik(flat):
                return reference_evaluate(flat)[0]
        elif reference_std == 1.0:
            def reference_loglik(flat):
                return log_likelihood(unravel(flat))
        else:  # from the log density: a potential_fn's l = |z|^2/2 - U would cancel the |z|^2 terms
            def reference_loglik(flat):
                return logdensity(unravel(flat)) + 0.5 * (flat @ flat) / reference_std**2
        return FlatDensity(reference_loglik, lambda flat: logdensity(unravel(flat)), reference_std,
                           reference_evaluate)


class FlatDensity(NamedTuple):
    """:class:`Density` on flat vectors, relative to a Gaussian reference of std ``reference_std``.

    :meth:`value` and :meth:`value_and_grad` are what the kernels call: they return the
    evaluation of :attr:`Density.evaluate_fn` beside the value (``None`` without one).
    """

    log_likelihood_fn: Callable  # flat -> log likelihood relative to N(0, s^2 I)
    logdensity_fn: Callable  # flat -> l - |z|^2/2
    reference_std: float
    evaluate_fn: Callable | None = None  # flat -> (log likelihood relative to the reference, evaluation)

    def log_prior(self, flat) -> jax.Array:
        """The reference's log density without its constant, :math:`-|z|^2/(2s^2)`."""
        return -0.5 * (flat @ flat) / self.reference_std**2

    def value(self, flat):
        """``(log likelihood, evaluation or None)`` at ``flat``."""
        if self.evaluate_fn is None:
            return self.log_likelihood_fn(flat), None
        return self.evaluate_fn(flat)

    def value_and_grad(self, flat):
        """``((log likelihood, evaluation or None), gradient)`` at ``flat``, JAX's ``has_aux`` layout."""
        if self.evaluate_fn is None:
            value, grad = jax.value_and_grad(self.log_likelihood_fn)(flat)
            return (value, None), grad
        return jax.value_and_grad(self.evaluate_fn, has_aux=True)(flat)


def is_finite(value, grad=None) -> jax.Array:
    """Whether a log likelihood (and its gradient, if given) is finite."""
    ok = jnp.isfinite(value)
    if grad is not None:
        ok = ok & jnp.all(jnp.isfinite(grad))
    return ok


class MetropolisResult(NamedTuple):
    """Outcome of :func:`metropolis`: which point was kept, and the statistics of the step."""

    accepted: jax.Array  # () bool
    accept_prob: jax.Array  # () min(1, exp(log_accept)), 0 when non-finite
    is_divergent: jax.Array  # () finite log ratio below -max_delta_energy
    nonfinite: jax.Array  # () the proposal was not finite


def metropolis(rng_key, log_accept, proposal_finite, max_delta_energy: float) -> MetropolisResult:
    """The Metropolis decision for a log acceptance ratio ``log_accept``.

    A non-finite proposal (``proposal_finite`` false, or a NaN ratio) is
    rejected and flagged ``nonfinite``; a finite ratio below
    ``-max_delta_energy`` is flagged ``is_divergent`` (and almost surely rejected).
    """
    nonfinite = ~proposal_finite | jnp.isnan(log_accept)
    log_accept = jnp.where(nonfinite, -jnp.inf, log_accept)
    accept_prob = jnp.minimum(1.0, jnp.exp(log_accept))
    accepted = jax.random.uniform(rng_key, (), accept_prob.dtype) < accept_prob
    return MetropolisResult(accepted, accept_prob, ~nonfinite & (-log_accept > max_delta_energy), nonfinite)


def select(pred, on_true, on_false):
    """``jnp.where`` over matching pytrees (``pred`` a scalar boolean); ``None`` leaves stay ``None``."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def flatten(position):
    """``(flat, unravel)`` of a pytree position."""
    return ravel_pytree(position)
