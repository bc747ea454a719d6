"""Preconditioned Crank-Nicolson (pCN) and its Langevin variant (pCNL).

Both kernels split the target into a Gaussian *reference* and a likelihood,

.. math::

    \\pi(z) \\propto \\exp(-\\Phi(z))\\,\\mathcal N(z; 0, s^2 I), \\qquad
    \\Phi(z) = -\\log \\pi(z) - \\frac{|z|^2}{2 s^2} + \\mathrm{const},

where :math:`s` is ``reference_std``.  Every target of :func:`reprior.sample`
has the N(0, I) prior on every sampled variable (theta; phi; phi_hidden), so
with the default ``s = 1`` the kernel is handed :math:`-\\Phi = \\ell`, the log
likelihood itself (:class:`~reprior.inference.samplers.base.Density`): nothing is
recovered by subtracting :math:`|z|^2/2` from a potential, so the acceptance
ratio carries no cancellation error even at millions of dimensions in float32.
Cotter, Roberts, Stuart and White
(2013, "MCMC methods for functions", sections 4.2-4.3):

**pCN.**  With :math:`b \\in (0, 1]` (``step_size``),
:math:`a = \\sqrt{1 - b^2}` and :math:`\\xi \\sim \\mathcal N(0, I)`,

.. math::

    z' = a z + b\\, s\\, \\xi, \\qquad
    \\alpha(z, z') = \\min\\big(1, \\exp(\\Phi(z) - \\Phi(z'))\\big).

The proposal leaves the reference invariant, so the acceptance depends on the
likelihood only and does not degrade with dimension.

**pCNL.**  The Crank-Nicolson discretisation (:math:`\\theta = 1/2`) of the
preconditioned Langevin equation, with :math:`\\delta = 2(1 - a)/(1 + a)`, i.e.
Cotter et al.'s equation (4.2) written in :math:`b`:

.. math::

    z' = a z - (1 - a)\\, s^2 \\nabla\\Phi(z) + b\\, s\\, \\xi,

accepted with :math:`\\min(1, \\exp(\\rho(z, z') - \\rho(z', z)))`,

.. math::

    \\rho(u, v) = \\Phi(u) + \\frac{\\langle v - a u, \\nabla\\Phi(u)\\rangle}{1 + a}
        + \\frac{1 - a}{2(1 + a)}\\, s^2 |\\nabla\\Phi(u)|^2,

which is the exact Metropolis-Hastings ratio of this Gaussian proposal
(the reference terms cancel, as in pCN).  :math:`1 - a` is computed as
:math:`b^2/(1 + a)` so that small steps lose no precision.

``b`` is tuned during warm-up by dual averaging of :math:`\\log b` (capped at 1)
toward ``target_accept_prob`` (0.25 for pCN, 0.6 for pCNL by default, the
usual optimal-scaling values of random-walk and Langevin proposals).

Cost per iteration: pCN one log-density evaluation, no gradient; pCNL one
gradient evaluation (value and gradient at the proposal; the current
gradient is cached).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from reprior._util import checks as _checks
from reprior.inference.samplers import adaptation as adapt
from reprior.inference.samplers.adapter import AdaptedKernel, Algorithm, make_stats_fn, with_step_size_adaptation
from reprior.inference.samplers.base import Density, FlatDensity, is_finite, metropolis, select


class PCNState(NamedTuple):
    """State of pCN and pCNL; ``dim`` is the number of sampled scalars.

    Fields:
        position: ``(dim,)`` the current point.
        log_likelihood: ``()`` :math:`-\\Phi` at ``position`` (relative to the reference).
        logdensity: ``()`` :math:`\\ell - |z|^2/2` at ``position`` (reported as ``lp``).
        grad: ``(dim,)`` :math:`\\nabla(-\\Phi)` at ``position`` (pCNL), ``None`` for pCN.
        evaluation: what the density's evaluation left behind at ``position``
            (:attr:`~reprior.inference.samplers.base.Density.evaluate_fn`), ``None`` without one.
    """

    position: jax.Array
    log_likelihood: jax.Array
    logdensity: jax.Array
    grad: jax.Array | None
    evaluation: object = None


class PCNInfo(NamedTuple):
    """What one pCN/pCNL transition reports.

    Fields: ``accept_prob``, ``is_accepted``, ``is_divergent`` (finite log ratio
    below ``-max_delta_energy``), ``nonfinite`` (the proposal's likelihood or
    gradient was not finite), ``step_size`` (the ``b`` used), ``log_accept_ratio``
    (the log Metropolis ratio computed), ``num_grad_evals``, ``num_logdensity_evals``.
    """

    accept_prob: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    nonfinite: jax.Array
    step_size: jax.Array
    log_accept_ratio: jax.Array
    num_grad_evals: jax.Array
    num_logdensity_evals: jax.Array


class PCNParams(NamedTuple):
    """Tuned quantities: ``step_size`` is :math:`b \\in (0, 1]`."""

    step_size: jax.Array


def pcnl_log_accept(z, z_new, phi, phi_new, grad, grad_new, a, one_minus_a, reference_var):
    """:math:`\\rho(z, z') - \\rho(z', z)` for pCNL on flat arrays.

    ``phi``/``phi_new`` are :math:`\\Phi` and ``grad``/``grad_new`` are
    :math:`\\nabla\\Phi` at ``z``/``z_new``; ``one_minus_a`` is :math:`1 - a`
    computed without cancellation.  The :math:`\\Phi` difference is formed
    first, so that two large likelihoods never meet a small correction term.
    """

    def correction(u, v, g_u):
        return (v - a * u) @ g_u / (1.0 + a) + one_minus_a / (2.0 * (1.0 + a)) * reference_var * (g_u @ g_u)

    return (phi - phi_new) + (correction(z, z_new, grad) - correction(z_new, z, grad_new))


def _evaluate(density: FlatDensity, langevin: bool, z):
    """``(log_likelihood, logdensity, grad or None, evaluation or None)`` at flat ``z``."""
    if langevin:
        (log_likelihood, evaluation), grad = density.value_and_grad(z)
    else:
        (log_likelihood, evaluation), grad = density.value(z), None
    logdensity = log_likelihood + density.log_prior(z) if density.reference_std == 1.0 else density.logdensity_fn(z)
    return log_likelihood, logdensity, grad, evaluation


def init(position, density: FlatDensity, *, langevin: bool) -> PCNState:
    """The state at a flat ``position``."""
    return PCNState(position, *_evaluate(density, langevin, position))


def propose(rng_key, state: PCNState, b, density: FlatDensity, langevin: bool):
    """One pCN/pCNL proposal: ``(proposed state, log Metropolis ratio, proposal finite)``."""
    z, s = state.position, density.reference_std
    a = jnp.sqrt(1.0 - b**2)
    xi = jax.random.normal(rng_key, z.shape, z.dtype)
    if not langevin:
        new = init(a * z + b * s * xi, density, langevin=False)
        return new, new.log_likelihood - state.log_likelihood, is_finite(new.log_likelihood)
    one_minus_a = b**2 / (1.0 + a)  # 1 - a without cancellation
    # grad Phi = -grad(log likelihood)
    z_new = a * z + one_minus_a * s**2 * state.grad + b * s * xi
    new = init(z_new, density, langevin=True)
    log_accept = pcnl_log_accept(z, z_new, -state.log_likelihood, -new.log_likelihood, -state.grad, -new.grad, a,
                                 one_minus_a, s**2)
    return new, log_accept, is_finite(new.log_likelihood, new.grad)


def build_kernel(density: FlatDensity, *, langevin: bool, max_delta_energy: float = 1000.0):
    """``step(rng_key, state, params) -> (state, info)``: one pCN (or pCNL) transition."""
    cost = jnp.int32(1)

    def step(rng_key, state: PCNState, params: PCNParams):
        proposal_key, accept_key = jax.random.split(rng_key)
        new, log_accept, finite = propose(proposal_key, state, params.step_size, density, langevin)
        decision = metropolis(accept_key, log_accept, finite, max_delta_energy)
        info = PCNInfo(decision.accept_prob, decision.accepted, decision.is_divergent, decision.nonfinite,
                       params.step_size, log_accept, cost if langevin else jnp.int32(0), cost)
        return select(decision.accepted, new, state), info

    return step


def initial_params(rng_key, state: PCNState, density: FlatDensity, langevin: bool, step_size: float,
                   target_accept_prob: float | None):
    """``b`` as given, or searched from it (doubling/halving, capped at 1) when ``target_accept_prob`` is set."""
    b = jnp.asarray(step_size, state.position.dtype)
    if target_accept_prob is None:
        return PCNParams(b)

    def log_accept(b, key):
        return propose(key, state, b, density, langevin)[1]

    return PCNParams(adapt.find_reasonable_step_size(log_accept, rng_key, b, target_accept_prob, max_step_size=1.0))


def _pcn_family(density: Density, langevin: bool, name: str, step_size, target_accept_prob, adapt_step_size,
                reference_std, max_delta_energy) -> AdaptedKernel:
    density = Density.of(density)
    b = _checks.positive_fraction("step_size", step_size)
    target = _checks.probability("target_accept_prob", target_accept_prob)
    _checks.flag("adapt_step_size", adapt_step_size)
    s = _checks.positive_float("reference_std", reference_std)
    threshold = _checks.positive_float("max_delta_energy", max_delta_energy)

    def build_algorithm(unravel):
        flat = density.on_flat(unravel, s)
        return Algorithm(
            init=lambda position, key: init(position, flat, langevin=langevin),
            step=build_kernel(flat, langevin=langevin, max_delta_energy=threshold),
            initial_params=lambda key, state: initial_params(key, state, flat, langevin, b,
                                                             target if adapt_step_size else None),
            adaptation=with_step_size_adaptation(target, adapt_step_size, max_step_size=1.0))

    return AdaptedKernel(build_algorithm, name)


def pcn(density, *, step_size: float = 0.5, target_accept_prob: float = 0.25, adapt_step_size: bool = True,
        reference_std: float = 1.0, max_delta_energy: float = 1000.0) -> AdaptedKernel:
    """pCN as a NumPyro ``MCMCKernel`` on ``density`` (a Target, Density or potential_fn).

    Args:
        step_size: initial :math:`b \\in (0, 1]` (searched and adapted when
            ``adapt_step_size``; used as is otherwise).
        target_accept_prob: acceptance targeted during warm-up.
        adapt_step_size: tune ``b`` during warm-up (dual averaging, capped at 1).
        reference_std: :math:`s`, the standard deviation of the Gaussian reference.
        max_delta_energy: :math:`-\\log\\alpha` above which a finite proposal counts as divergent.
    """
    return _pcn_family(density, False, "pcn", step_size, target_accept_prob, adapt_step_size, reference_std,
                       max_delta_energy)


def pcnl(density, *, step_size: float = 0.5, target_accept_prob: float = 0.6, adapt_step_size: bool = True,
         reference_std: float = 1.0, max_delta_energy: float = 1000.0) -> AdaptedKernel:
    """pCN-Langevin as a NumPyro ``MCMCKernel``; the same arguments as :func:`pcn` (target 0.6)."""
    return _pcn_family(density, True, "pcnl", step_size, target_accept_prob, adapt_step_size, reference_std,
                       max_delta_energy)


#: Backward-compatible names: ``PCN(potential_fn_or_target, ...)`` builds the kernel.
PCN, PCNL = pcn, pcnl
pcn_stats = make_stats_fn("step_size")
