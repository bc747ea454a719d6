"""Step-size adaptation toward a target acceptance probability, shared by the kernels.

Two pieces, both pure and jit-able:

* :func:`find_reasonable_step_size`: the doubling/halving search of Hoffman and
  Gelman (2014, algorithm 4), run once at ``init``;
* :func:`step_size_adaptation`: dual averaging (Nesterov 2009; Hoffman and
  Gelman 2014, section 3.2) of the log step size during warm-up, built on
  :func:`numpyro.infer.hmc_util.dual_averaging` with NumPyro's defaults
  (``t0=10``, ``kappa=0.75``, ``gamma=0.05``, proximal centre
  :math:`\\log(10\\,\\epsilon_0)`).  Given the acceptance probability
  :math:`\\alpha_t` of iteration :math:`t` and the target :math:`\\delta`,

  .. math::

      \\bar g_t = \\Big(1 - \\frac{1}{t + t_0}\\Big)\\bar g_{t-1} + \\frac{\\delta - \\alpha_t}{t + t_0},
      \\qquad \\log\\epsilon_t = \\mu - \\frac{\\sqrt t}{\\gamma}\\,\\bar g_t,
      \\qquad \\log\\bar\\epsilon_t = t^{-\\kappa}\\log\\epsilon_t + (1 - t^{-\\kappa})\\log\\bar\\epsilon_{t-1},

  and after warm-up the step size is frozen at :math:`\\bar\\epsilon`.  With
  ``block_size > 1`` the step size is held for a block of iterations and
  :math:`\\alpha_t` is the block's mean acceptance (underdamped HMC uses 10).

Step sizes may be capped (``max_step_size``): the pCN family's step is a
fraction :math:`b \\in (0, 1]`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from numpyro.infer.hmc_util import dual_averaging

from reprior.inference.samplers.base import select  # noqa: F401 (re-exported: adaptation.select)


class StepSizeState(NamedTuple):
    """State of :func:`step_size_adaptation`.

    ``step_size``: ``()``, the step size of the *next* iteration.
    ``dual_averaging``: NumPyro's ``(x_t, x_avg, g_avg, t, prox_center)`` with
    ``x`` the log step size.
    ``accept_sum``, ``count``: ``()`` running sum and number of acceptance
    probabilities in the current block.
    """

    step_size: jax.Array
    dual_averaging: tuple
    accept_sum: jax.Array = None
    count: jax.Array = None


class StepSizeAdaptation(NamedTuple):
    """``(init, update, final)`` triple returned by :func:`step_size_adaptation`."""

    init: Callable  # step_size -> StepSizeState
    update: Callable  # (StepSizeState, accept_prob) -> StepSizeState
    final: Callable  # StepSizeState -> StepSizeState with the averaged step size


def _cap(step_size, max_step_size):
    return step_size if max_step_size is None else jnp.minimum(step_size, max_step_size)


def step_size_adaptation(target_accept_prob: float, *, max_step_size: float | None = None, block_size: int = 1,
                         t0: float = 10, kappa: float = 0.75, gamma: float = 0.05) -> StepSizeAdaptation:
    """Dual averaging of ``log(step_size)`` toward ``target_accept_prob``.

    Args:
        target_accept_prob: the acceptance probability to aim for, in ``(0, 1)``.
        max_step_size: optional upper bound on the step size (``1`` for pCN's ``b``).
        block_size: hold the step size for this many iterations and feed dual
            averaging their mean acceptance.  Kernels with persistent momentum
            need it: a step size that jumps every iteration breaks the
            near-conservation of the leapfrog's shadow Hamiltonian along the
            persistent trajectory, so acceptance during such adaptation is lower
            than at the same *fixed* step size, and per-iteration dual averaging
            settles on too small a step (stationary acceptance about 0.93 for a
            0.8 target in our tests).
        t0, kappa, gamma: dual-averaging constants (NumPyro's defaults).
    """
    da_init, da_update = dual_averaging(t0=t0, kappa=kappa, gamma=gamma)

    def init(step_size) -> StepSizeState:
        step_size = jnp.asarray(step_size)
        zero = jnp.zeros((), step_size.dtype)
        return StepSizeState(step_size, da_init(jnp.log(10.0 * step_size)), zero, jnp.zeros((), jnp.int32))

    def update(state: StepSizeState, accept_prob) -> StepSizeState:
        accept_sum, count = state.accept_sum + accept_prob, state.count + 1
        da_state = da_update(target_accept_prob - accept_sum / count, state.dual_averaging)
        step_size = _cap(jnp.exp(da_state[0]), max_step_size).astype(state.step_size.dtype)
        updated = StepSizeState(step_size, da_state, jnp.zeros_like(accept_sum), jnp.zeros_like(count))
        return select(count >= block_size, updated, state._replace(accept_sum=accept_sum, count=count))

    def final(state: StepSizeState) -> StepSizeState:
        step_size = _cap(jnp.exp(state.dual_averaging[1]), max_step_size).astype(state.step_size.dtype)
        return state._replace(step_size=step_size)

    return StepSizeAdaptation(init, update, final)


def warmup_update(adaptation: StepSizeAdaptation | None, state: StepSizeState, accept_prob, i, num_warmup):
    """Adapt while ``i < num_warmup``; freeze at the averaged step size after iteration ``num_warmup - 1``.

    ``i`` is the index of the iteration that produced ``accept_prob``.  With
    ``adaptation=None`` the state is returned unchanged (fixed step size).
    """
    if adaptation is None:
        return state
    new = adaptation.update(state, accept_prob)
    new = select(i == num_warmup - 1, adaptation.final(new), new)
    return select(i < num_warmup, new, state)


def running_mean_accept(mean_accept_prob, accept_prob, i, num_warmup):
    """Running mean of the acceptance probability, restarted when sampling starts (as NumPyro's)."""
    count = jnp.where(i < num_warmup, i + 1, i - num_warmup + 1)
    return mean_accept_prob + (accept_prob - mean_accept_prob) / count


def find_reasonable_step_size(log_accept_fn: Callable, rng_key, init_step_size, target_accept_prob: float,
                              max_step_size: float | None = None):
    """Double or halve ``init_step_size`` until the log acceptance ratio crosses ``log(target_accept_prob)``.

    Hoffman and Gelman (2014), algorithm 4, as in
    :func:`numpyro.infer.hmc_util.find_reasonable_step_size`, but generic:
    ``log_accept_fn(step_size, rng_key) -> ()`` is the log Metropolis ratio of
    one proposal made with ``step_size`` (NaN counts as a rejection).  Stops at
    ``max_step_size`` when increasing, and at the smallest and largest floats.
    """
    init_step_size = jnp.asarray(init_step_size)
    finfo = jnp.finfo(init_step_size.dtype)
    log_target = jnp.log(target_accept_prob)
    cap = finfo.max if max_step_size is None else max_step_size

    def body(carry):
        step_size, _, direction, key = carry
        key, proposal_key = jax.random.split(key)
        step_size = jnp.minimum((2.0**direction) * step_size, cap).astype(init_step_size.dtype)
        log_accept = log_accept_fn(step_size, proposal_key)
        new_direction = jnp.where(log_accept > log_target, 1, -1)
        return step_size, direction, new_direction, key

    def cond(carry):
        step_size, last_direction, direction, _ = carry
        small_ok = (step_size > finfo.tiny) | (direction >= 0)
        large_ok = (step_size < cap) | (direction <= 0)
        return small_ok & large_ok & ((last_direction == 0) | (direction == last_direction))

    step_size, _, _, _ = jax.lax.while_loop(cond, body, (init_step_size, 0, 0, rng_key))
    return step_size
