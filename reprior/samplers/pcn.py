"""Preconditioned Crank-Nicolson (pCN) and its Langevin variant (pCNL).

Both kernels split the target into a Gaussian *reference* and a likelihood,

.. math::

    \\pi(z) \\propto \\exp(-\\Phi(z))\\,\\mathcal N(z; 0, s^2 I), \\qquad
    \\Phi(z) = U(z) - \\frac{|z|^2}{2 s^2} + \\mathrm{const},

where :math:`U` is the ``potential_fn`` and :math:`s` is ``reference_std``.
Every target of :func:`reprior.sample` has the N(0, I) prior on every sampled
variable (theta; phi; phi_hidden), so the default ``s = 1`` makes
:math:`\\exp(-\\Phi)` exactly the likelihood.  Cotter, Roberts, Stuart and White
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
from jax.flatten_util import ravel_pytree
from numpyro.infer.mcmc import MCMCKernel

from .. import _checks
from .init_checks import batched_init
from . import adaptation as adapt


class PCNState(NamedTuple):
    """State of :class:`PCN` and :class:`PCNL`; ``dim`` is the number of sampled scalars.

    Fields:
        i: ``()`` iteration index, warm-up included.
        z: position, a pytree like ``init_params`` (the ``sample_field``).
        z_grad: ``(dim,)`` gradient of the potential at ``z`` (pCNL), ``None`` for pCN.
        potential_energy: ``()`` potential :math:`U(z)`.
        step_size: ``()`` the ``b`` used this iteration.
        accept_prob: ``()`` Metropolis acceptance probability of this iteration.
        mean_accept_prob: ``()`` running mean of ``accept_prob`` (restarted after warm-up).
        diverging: ``()`` whether :math:`-\\log\\alpha` exceeded ``max_delta_energy`` or was not finite.
        adapt_state: :class:`~reprior.samplers.adaptation.StepSizeState` (next iteration's ``b``).
        num_warmup: ``()`` number of warm-up (adaptation) iterations.
        rng_key: PRNG key of the next iteration.
    """

    i: jax.Array
    z: object
    z_grad: jax.Array | None
    potential_energy: jax.Array
    step_size: jax.Array
    accept_prob: jax.Array
    mean_accept_prob: jax.Array
    diverging: jax.Array
    adapt_state: adapt.StepSizeState
    num_warmup: jax.Array
    rng_key: jax.Array


def pcnl_log_accept(z, z_new, phi, phi_new, grad, grad_new, a, one_minus_a, reference_var):
    """:math:`\\rho(z, z') - \\rho(z', z)` for pCNL on flat arrays.

    ``phi``/``phi_new`` are :math:`\\Phi` and ``grad``/``grad_new`` are
    :math:`\\nabla\\Phi` at ``z``/``z_new``; ``one_minus_a`` is :math:`1 - a`
    computed without cancellation.
    """

    def rho(u, v, phi_u, g_u):
        return (phi_u + (v - a * u) @ g_u / (1.0 + a)
                + one_minus_a / (2.0 * (1.0 + a)) * reference_var * (g_u @ g_u))

    return rho(z, z_new, phi, grad) - rho(z_new, z, phi_new, grad_new)


class PCN(MCMCKernel):
    """Preconditioned Crank-Nicolson on ``potential_fn`` with reference N(0, reference_std^2 I).

    Args:
        potential_fn: ``z -> -log pi(z)`` on a pytree ``z``, including the reference's
            :math:`|z|^2/(2 s^2)` (as every :func:`reprior.sample` target does).
        step_size: initial :math:`b \\in (0, 1]` (searched and adapted when
            ``adapt_step_size``; used as is otherwise).
        target_accept_prob: acceptance targeted during warm-up (pCN 0.25, pCNL 0.6).
        adapt_step_size: tune ``b`` during warm-up (dual averaging, capped at 1).
        reference_std: :math:`s`, the standard deviation of the Gaussian reference.
        max_delta_energy: :math:`-\\log\\alpha` above which an iteration is flagged ``diverging``.
    """

    sample_field = "z"
    model = None  # built on a potential_fn, not a NumPyro model (read by arviz.from_numpyro)
    langevin = False
    default_target_accept_prob = 0.25

    def __init__(self, potential_fn, *, step_size: float = 0.5, target_accept_prob: float | None = None,
                 adapt_step_size: bool = True, reference_std: float = 1.0, max_delta_energy: float = 1000.0):
        if not callable(potential_fn):
            raise _checks.fail("potential_fn", "a callable z -> -log density", potential_fn)
        self.potential_fn = potential_fn
        self.step_size = _checks.probability("step_size", step_size, open_interval=False)
        if self.step_size == 0:
            raise _checks.fail("step_size", "a number in (0, 1]", step_size)
        if target_accept_prob is None:
            target_accept_prob = self.default_target_accept_prob
        self.target_accept_prob = _checks.probability("target_accept_prob", target_accept_prob)
        if not isinstance(adapt_step_size, bool):
            raise _checks.fail("adapt_step_size", "True or False", adapt_step_size)
        self.adapt_step_size = adapt_step_size
        self.reference_std = _checks.positive_float("reference_std", reference_std)
        self.max_delta_energy = _checks.positive_float("max_delta_energy", max_delta_energy)
        self._adaptation = (adapt.step_size_adaptation(self.target_accept_prob, max_step_size=1.0)
                            if adapt_step_size else None)

    @property
    def default_fields(self):
        return ("z", "diverging")

    # -- the likelihood part Phi and its gradient, on flat arrays -------------------------
    def _phi(self, z, potential):
        return potential - 0.5 * (z @ z) / self.reference_std**2

    def _grad_phi(self, z, z_grad):
        return z_grad - z / self.reference_std**2

    def _evaluate(self, unravel, z):
        """``(potential, grad or None)`` at flat ``z``."""
        fn = lambda flat: self.potential_fn(unravel(flat))  # noqa: E731
        if self.langevin:
            return jax.value_and_grad(fn)(z)
        return fn(z), None

    def _propose(self, unravel, z, potential, z_grad, b, key):
        """One proposal: ``(z_new, potential_new, grad_new, log_accept)``."""
        s = self.reference_std
        a = jnp.sqrt(1.0 - b**2)
        xi = jax.random.normal(key, z.shape, z.dtype)
        phi = self._phi(z, potential)
        if not self.langevin:
            z_new = a * z + b * s * xi
            potential_new, _ = self._evaluate(unravel, z_new)
            return z_new, potential_new, None, phi - self._phi(z_new, potential_new)
        grad_phi = self._grad_phi(z, z_grad)
        one_minus_a = b**2 / (1.0 + a)
        z_new = a * z - one_minus_a * s**2 * grad_phi + b * s * xi
        potential_new, grad_new = self._evaluate(unravel, z_new)
        log_accept = pcnl_log_accept(z, z_new, phi, self._phi(z_new, potential_new), grad_phi,
                                     self._grad_phi(z_new, grad_new), a, one_minus_a, s**2)
        return z_new, potential_new, grad_new, log_accept

    def init(self, rng_key, num_warmup, init_params, model_args=(), model_kwargs=None):
        batched = batched_init(self, rng_key, num_warmup, init_params)
        if batched is not None:  # one key per chain: NumPyro's vectorized chains
            return batched
        z, unravel = ravel_pytree(init_params)
        potential, z_grad = self._evaluate(unravel, z)
        step_key, rng_key = jax.random.split(rng_key)
        step_size = jnp.asarray(self.step_size, z.dtype)
        if self.adapt_step_size:
            def log_accept(b, key):
                return self._propose(unravel, z, potential, z_grad, b, key)[3]

            step_size = adapt.find_reasonable_step_size(log_accept, step_key, step_size, self.target_accept_prob,
                                                        max_step_size=1.0)
        adapt_state = (self._adaptation.init(step_size) if self._adaptation
                       else adapt.StepSizeState(step_size, ()))
        zero = jnp.zeros((), z.dtype)
        return PCNState(i=jnp.zeros((), jnp.int32), z=init_params, z_grad=z_grad, potential_energy=potential,
                        step_size=step_size, accept_prob=zero, mean_accept_prob=zero,
                        diverging=jnp.zeros((), bool), adapt_state=adapt_state,
                        num_warmup=jnp.asarray(num_warmup, jnp.int32), rng_key=rng_key)

    def sample(self, state, model_args=(), model_kwargs=None):
        if jnp.ndim(state.i):  # a batch of chains (see init)
            return jax.vmap(self.sample)(state)
        proposal_key, accept_key, rng_key = jax.random.split(state.rng_key, 3)
        z, unravel = ravel_pytree(state.z)
        b = state.adapt_state.step_size
        z_new, potential_new, grad_new, log_accept = self._propose(
            unravel, z, state.potential_energy, state.z_grad, b, proposal_key)
        log_accept = jnp.where(jnp.isnan(log_accept), -jnp.inf, log_accept)
        accept_prob = jnp.minimum(1.0, jnp.exp(log_accept))
        accept = jax.random.uniform(accept_key, (), z.dtype) < accept_prob
        z_grad = None if grad_new is None else jnp.where(accept, grad_new, state.z_grad)
        return PCNState(
            i=state.i + 1, z=unravel(jnp.where(accept, z_new, z)), z_grad=z_grad,
            potential_energy=jnp.where(accept, potential_new, state.potential_energy),
            step_size=b, accept_prob=accept_prob,
            mean_accept_prob=adapt.running_mean_accept(state.mean_accept_prob, accept_prob, state.i, state.num_warmup),
            diverging=-log_accept > self.max_delta_energy,
            adapt_state=adapt.warmup_update(self._adaptation, state.adapt_state, accept_prob, state.i,
                                            state.num_warmup),
            num_warmup=state.num_warmup, rng_key=rng_key)

    def get_diagnostics_str(self, state):
        return f"b {float(state.step_size):.2e}. acc. prob={float(state.mean_accept_prob):.2f}"


class PCNL(PCN):
    """pCN-Langevin (Cotter et al. 2013, section 4.3): pCN with a likelihood-gradient drift.

    Same arguments as :class:`PCN`; ``target_accept_prob`` defaults to 0.6.
    """

    langevin = True
    default_target_accept_prob = 0.6


def pcn_stats(state: PCNState) -> dict:
    """Per-iteration sample statistics of :class:`PCN` and :class:`PCNL` (the registry's ``stats_fn``)."""
    one = jnp.ones_like(state.i)
    return {
        "accept_prob": state.accept_prob,
        "diverging": state.diverging,
        "lp": -state.potential_energy,
        "step_size": state.step_size,
        "num_grad_evals": one if state.z_grad is not None else jnp.zeros_like(state.i),
        "num_logdensity_evals": one,
    }
