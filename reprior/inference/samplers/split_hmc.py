"""Hamiltonian Monte Carlo split at the Gaussian prior: dimension-free HMC.

Every target here is :math:`\\pi(z) \\propto e^{\\ell(z)}\\,\\mathcal N(z; 0, I)`
(:class:`~reprior.inference.samplers.base.Density` hands the kernel :math:`\\ell`, the log
likelihood without the prior).  With a momentum :math:`v \\sim \\mathcal N(0, I)`
the Hamiltonian splits into the likelihood and a Gaussian part,

.. math::

    H(z, v) = -\\ell(z) + \\tfrac12 |z|^2 + \\tfrac12 |v|^2,

and the Gaussian part's flow is an exact rotation of :math:`(z, v)`.  One
step of size :math:`h` of the integrator (Beskos, Pinski, Sanz-Serna and
Stuart 2011, "Hybrid Monte Carlo on Hilbert spaces", section 5; Shahbaba,
Lan, Johnson and Neal 2014, "Split Hamiltonian Monte Carlo", section 3) is a
half kick, a rotation by the angle :math:`h` and a half kick:

.. math::

    v \\leftarrow v + \\tfrac h2 \\nabla\\ell(z), \\qquad
    \\begin{pmatrix} z \\\\ v \\end{pmatrix} \\leftarrow
    \\begin{pmatrix} \\cos h & \\sin h \\\\ -\\sin h & \\cos h \\end{pmatrix}
    \\begin{pmatrix} z \\\\ v \\end{pmatrix}, \\qquad
    v \\leftarrow v + \\tfrac h2 \\nabla\\ell(z).

It is symplectic and reversible; other symmetric compositions of kicks and
rotations are data (:class:`~reprior.inference.samplers.integrators.GaussianSplitting`).
Since the rotation leaves :math:`\\mathcal N(0, I)` invariant exactly, the
energy error comes from the likelihood alone: it does not grow with the
dimension, nor must the step shrink with it (leapfrog's must, like
:math:`d^{-1/4}`), and with :math:`\\ell = 0` a trajectory of total angle
:math:`\\pi/2` (a quarter turn, the default) maps :math:`(z, v)` to
:math:`(v, -z)`: an independent draw, accepted with probability 1.  The closer
the posterior is to the prior (repriorised coordinates of a wide network), the
closer a quarter turn comes to that.

One iteration, with :math:`\\beta` = ``momentum_refresh`` and
:math:`\\xi, u` fresh:

1. momentum refresh :math:`v \\leftarrow \\sqrt{1 - \\beta}\\, v + \\sqrt\\beta\\, \\xi`,
   :math:`\\xi \\sim \\mathcal N(0, I)` (:math:`\\beta = 1`, the default, draws
   it afresh; :math:`\\beta < 1` keeps part of it, as
   :mod:`reprior.inference.samplers.underdamped` does);
2. ``num_steps`` steps of size :math:`h(1 + j(2u - 1))`, :math:`u \\sim U(0, 1)`,
   :math:`j` = ``step_size_jitter``: a random trajectory length, drawn
   independently of the state, against resonances of trajectories of one fixed
   length;
3. Metropolis: accept :math:`(z', v')` with probability
   :math:`\\min(1, e^{-\\Delta H})`; on rejection keep :math:`z` and flip the
   momentum, :math:`v \\leftarrow -v`.

Steps 2-3 are a Metropolis step with the involution "integrate, then flip",
followed by a flip, and step 1 leaves :math:`\\mathcal N(0, I)` invariant, so
:math:`\\pi(z)\\,\\mathcal N(v; 0, I)` is preserved exactly.

**The energy error without cancellation.**  A kick :math:`\\Delta` changes
:math:`\\tfrac12|v|^2` by :math:`\\Delta\\cdot(v + \\Delta/2)`, and a rotation
changes :math:`\\tfrac12(|z|^2 + |v|^2)` not at all, so over a trajectory

.. math::

    \\Delta H = -\\big(\\ell(z') - \\ell(z)\\big)
        + \\sum_{\\text{kicks}} \\Delta_k\\cdot\\big(v_k + \\tfrac12\\Delta_k\\big),

with :math:`v_k` the momentum before kick :math:`k`.  No term of size
:math:`|z|^2/2` (about :math:`5\\times10^5` at a million weights) enters: the
acceptance ratio carries only the rounding of the likelihood and of the
kicks.  (The rotation, computed as three shears
(:func:`~reprior.inference.samplers.integrators.rotate`), conserves volume and
:math:`|z|^2 + |v|^2` up to the rounding of each coordinate: independent
errors whose effect grows like :math:`\\sqrt d`, not like :math:`d`.)

**Tuning.**  The step size :math:`h` is tuned during warm-up by the package's
dual averaging (:mod:`reprior.inference.samplers.adaptation`) toward
``target_accept_prob``, starting from ``integration_time / num_steps`` (a
quarter turn in ``num_steps`` steps) and never exceeding it: the adaptation
shortens the trajectory where the likelihood needs a smaller step, and never
lengthens it past ``integration_time``, beyond which the rotation turns back
toward its start.  With partial refresh the step is held fixed over blocks of
:data:`ADAPT_BLOCK_SIZE` iterations, as for underdamped HMC.

Cost: ``num_steps * grads_per_step`` gradient evaluations per iteration (one
per step for the default ``"strang"`` splitting; the gradient at the current
point is cached), reported as ``num_grad_evals`` and ``num_logdensity_evals``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from reprior._util import checks as _checks
from reprior.inference.samplers import adaptation as adapt
from reprior.inference.samplers import integrators
from reprior.inference.samplers.adapter import AdaptedKernel, Algorithm, make_stats_fn, with_step_size_adaptation
from reprior.inference.samplers.base import Density, FlatDensity, is_finite, metropolis, select
from reprior.inference.samplers.integrators import STRANG, GaussianSplitting


class SplitHMCState(NamedTuple):
    """State of split HMC; ``dim`` is the number of sampled scalars.

    Fields:
        position: ``(dim,)`` :math:`z`.
        momentum: ``(dim,)`` :math:`v` after the iteration (flipped on rejection).
        log_likelihood: ``()`` :math:`\\ell(z)`.
        logdensity: ``()`` :math:`\\ell(z) - |z|^2/2` (reported as ``lp``).
        grad: ``(dim,)`` :math:`\\nabla\\ell(z)`, the likelihood's gradient (cached).
        evaluation: what the density's evaluation left behind at ``position``
            (:attr:`~reprior.inference.samplers.base.Density.evaluate_fn`), ``None`` without one.
    """

    position: jax.Array
    momentum: jax.Array
    log_likelihood: jax.Array
    logdensity: jax.Array
    grad: jax.Array
    evaluation: object = None


class SplitHMCInfo(NamedTuple):
    """What one iteration reports.

    Fields: ``accept_prob``, ``is_accepted``, ``is_divergent`` (finite energy
    error above ``max_delta_energy``), ``nonfinite`` (the proposal's likelihood
    or gradient was not finite), ``step_size`` (the tuned :math:`h`, before
    jitter), ``integration_time`` (the jittered trajectory length
    ``num_steps * h_jittered``), ``energy`` (:math:`H` after the iteration,
    without constants), ``delta_energy`` (:math:`\\Delta H` of the proposal),
    ``num_steps``, ``num_grad_evals``, ``num_logdensity_evals``.
    """

    accept_prob: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    nonfinite: jax.Array
    step_size: jax.Array
    integration_time: jax.Array
    energy: jax.Array
    delta_energy: jax.Array
    num_steps: jax.Array
    num_grad_evals: jax.Array
    num_logdensity_evals: jax.Array


class SplitHMCParams(NamedTuple):
    """Tuned quantities: the step size :math:`h` (an angle of rotation per step)."""

    step_size: jax.Array


def init(position, momentum, density: FlatDensity) -> SplitHMCState:
    """The state at a flat ``position`` with the given ``momentum``."""
    (log_likelihood, evaluation), grad = density.value_and_grad(position)
    return SplitHMCState(position, momentum, log_likelihood, log_likelihood - 0.5 * position @ position, grad,
                         evaluation)


def propose(state: SplitHMCState, momentum, step_size, density: FlatDensity, splitting: GaussianSplitting,
            num_steps: int) -> tuple[SplitHMCState, jax.Array]:
    """Integrate from ``(state.position, momentum)``: ``(proposed state, Delta H)`` (module docstring)."""
    end = integrators.gaussian_split(splitting, density.value_and_grad, state.position, momentum, state.grad,
                                     step_size, num_steps, state.evaluation, has_aux=True)
    z = end.position
    new = SplitHMCState(z, end.momentum, end.log_likelihood, end.log_likelihood - 0.5 * z @ z, end.grad,
                        end.evaluation)
    return new, -(end.log_likelihood - state.log_likelihood) + end.kinetic_change


def build_kernel(density: FlatDensity, *, num_steps: int, momentum_refresh: float = 1.0,
                 step_size_jitter: float = 0.0, integrator: GaussianSplitting = STRANG,
                 max_delta_energy: float = 1000.0):
    """``step(rng_key, state, params) -> (state, info)``: refresh, integrate, accept or flip."""
    beta, jitter = momentum_refresh, step_size_jitter
    cost = jnp.int32(num_steps * integrator.grads_per_step)

    def step(rng_key, state: SplitHMCState, params: SplitHMCParams):
        refresh_key, jitter_key, accept_key = jax.random.split(rng_key, 3)
        z = state.position
        xi = jax.random.normal(refresh_key, z.shape, z.dtype)
        momentum = xi if beta == 1.0 else jnp.sqrt(1.0 - beta) * state.momentum + jnp.sqrt(beta) * xi
        h = params.step_size
        if jitter > 0:
            h = h * (1.0 + jitter * (2.0 * jax.random.uniform(jitter_key, (), z.dtype) - 1.0))
        new, delta = propose(state, momentum, h, density, integrator, num_steps)
        decision = metropolis(accept_key, -delta, is_finite(new.log_likelihood, new.grad), max_delta_energy)
        kept = select(decision.accepted, new, state._replace(momentum=-momentum))
        energy = -kept.logdensity + 0.5 * kept.momentum @ kept.momentum
        info = SplitHMCInfo(decision.accept_prob, decision.accepted, decision.is_divergent, decision.nonfinite,
                            params.step_size, num_steps * h, energy, delta, jnp.int32(num_steps), cost, cost)
        return kept, info

    return step


def initial_params(rng_key, state: SplitHMCState, density: FlatDensity, step_size: float,
                   max_step_size: float | None, target_accept_prob: float | None, splitting: GaussianSplitting,
                   num_steps: int) -> SplitHMCParams:
    """The step size as given, or searched from it (capped at ``max_step_size``) when ``target_accept_prob`` is set.

    The search (:func:`~reprior.inference.samplers.adaptation.find_reasonable_step_size`)
    scores whole trajectories of ``num_steps`` steps with fresh momenta.
    """
    eps = jnp.asarray(step_size, state.position.dtype)
    if target_accept_prob is None:
        return SplitHMCParams(eps)

    def log_accept(eps, key):
        v = jax.random.normal(key, state.position.shape, state.position.dtype)
        return -propose(state, v, eps, density, splitting, num_steps)[1]

    return SplitHMCParams(adapt.find_reasonable_step_size(log_accept, rng_key, eps, target_accept_prob,
                                                          max_step_size=max_step_size))


#: Iterations per dual-averaging update with partial momentum refresh (``momentum_refresh < 1``; see
#: :func:`~reprior.inference.samplers.adaptation.step_size_adaptation`); with a full refresh every iteration counts.
ADAPT_BLOCK_SIZE = 10

#: A quarter turn: the default integration time.
QUARTER_TURN = math.pi / 2


def _step_sizes(num_steps: int, step_size, integration_time, adapt_step_size: bool) -> tuple[float, float | None]:
    """``(initial step size, cap of the adapted step size)`` from the options (see :func:`split_hmc`)."""
    if step_size is not None:
        step_size = _checks.positive_float("step_size", step_size)
    if integration_time is None:
        integration_time = QUARTER_TURN if step_size is None else num_steps * step_size
    integration_time = _checks.positive_float("integration_time", integration_time)
    longest = integration_time / num_steps
    if step_size is None:
        step_size = longest
    elif step_size > longest * (1 + 1e-12):
        raise _checks.fail("step_size", f"at most integration_time / num_steps = {longest:.6g} "
                           "(the integration time bounds the trajectory; raise integration_time)", step_size)
    return step_size, longest if adapt_step_size else None


def split_hmc(density, *, num_steps: int = 6, step_size: float | None = None, integration_time: float | None = None,
              step_size_jitter: float = 0.2, momentum_refresh: float = 1.0, target_accept_prob: float = 0.8,
              adapt_step_size: bool = True, max_delta_energy: float = 1000.0,
              integrator: str | GaussianSplitting = "strang") -> AdaptedKernel:
    """HMC split at the N(0, I) prior (module docstring) as a NumPyro ``MCMCKernel``.

    Args:
        density: a Target, :class:`~reprior.inference.samplers.base.Density` or ``potential_fn``.
        num_steps: integrator steps per iteration.
        step_size: the step :math:`h` (an angle); default ``integration_time / num_steps``.
            The initial value when ``adapt_step_size``, else used as is.
        integration_time: the longest trajectory, ``num_steps * step_size`` at most (the
            adapted step never exceeds ``integration_time / num_steps``); default a quarter
            turn, :math:`\\pi/2`, or ``num_steps * step_size`` when only ``step_size`` is given.
        step_size_jitter: :math:`j \\in [0, 1)`: each iteration's step is
            :math:`h(1 + j(2u - 1))`, :math:`u \\sim U(0, 1)` (0 turns it off).
        momentum_refresh: :math:`\\beta \\in (0, 1]`, the fraction of momentum variance
            refreshed per iteration (1: a fresh momentum, plain split HMC).
        target_accept_prob: acceptance probability targeted during warm-up.
        adapt_step_size: tune the step size during warm-up (dual averaging).
        max_delta_energy: energy error above which a finite proposal counts as divergent.
        integrator: ``"strang"`` (kick, rotate, kick; 1 gradient per step), ``"mclachlan"``
            (2 per step) or a :class:`~reprior.inference.samplers.integrators.GaussianSplitting`.

    Example::

        kernel = split_hmc(lambda z: 0.5 * jnp.sum(z**2) + 0.5 * (jnp.sum(z) - 1.0) ** 2)
        mcmc = numpyro.infer.MCMC(kernel, num_warmup=500, num_samples=1000)
        mcmc.run(jax.random.key(0), init_params=jnp.zeros(3))
    """
    density = Density.of(density)
    num_steps = _checks.positive_int("num_steps", num_steps)
    _checks.flag("adapt_step_size", adapt_step_size)
    eps, cap = _step_sizes(num_steps, step_size, integration_time, adapt_step_size)
    jitter = _checks.nonnegative_float("step_size_jitter", step_size_jitter)
    if jitter >= 1:
        raise _checks.fail("step_size_jitter", "a number in [0, 1)", step_size_jitter)
    largest = eps if cap is None else cap
    if largest * (1 + jitter) >= math.pi:  # the rotation's shears take tan(h/2): steps below half a turn
        raise _checks.fail("step_size", f"jittered steps below pi (half a turn): step_size (or integration_time / "
                           f"num_steps) below {math.pi / (1 + jitter):.6g} with step_size_jitter {jitter}", largest)
    beta = _checks.positive_fraction("momentum_refresh", momentum_refresh)
    target = _checks.probability("target_accept_prob", target_accept_prob)
    threshold = _checks.positive_float("max_delta_energy", max_delta_energy)
    splitting = integrators.resolve_splitting(integrator)
    block_size = 1 if beta == 1.0 else ADAPT_BLOCK_SIZE

    def build_algorithm(unravel):
        flat = density.on_flat(unravel)

        def init_state(position, key):
            return init(position, jax.random.normal(key, position.shape, position.dtype), flat)

        return Algorithm(
            init=init_state,
            step=build_kernel(flat, num_steps=num_steps, momentum_refresh=beta, step_size_jitter=jitter,
                              integrator=splitting, max_delta_energy=threshold),
            initial_params=lambda key, state: initial_params(key, state, flat, eps, cap,
                                                             target if adapt_step_size else None, splitting,
                                                             num_steps),
            adaptation=with_step_size_adaptation(target, adapt_step_size, max_step_size=cap,
                                                 block_size=block_size))

    return AdaptedKernel(build_algorithm, "split_hmc")


split_hmc_stats = make_stats_fn("step_size", "integration_time", "energy", "num_steps")

__all__ = ["SplitHMCInfo", "SplitHMCParams", "SplitHMCState", "build_kernel", "init", "initial_params", "propose",
           "split_hmc", "split_hmc_stats"]
