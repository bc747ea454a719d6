"""One thin adapter that turns any kernel of this package into a NumPyro ``MCMCKernel``.

A kernel is written in BlackJAX's layers (:class:`Algorithm`):

* ``init(flat_position, rng_key) -> State``: pure, a documented ``NamedTuple``;
* ``step(rng_key, state, params) -> (State, Info)``: one transition with the
  tuned quantities ``params`` (a ``NamedTuple``, e.g. the step size) passed
  in, never stored in the state;
* ``initial_params(rng_key, state) -> params``: the starting values (e.g. a
  step-size search);
* adaptation, separate and reusable: either ``adaptation``, an
  ``(init, update, final)`` triple that tunes ``params.step_size`` from each
  iteration's ``Info.accept_prob`` during warm-up
  (:func:`reprior.inference.samplers.adaptation.step_size_adaptation`), or ``tune``, a
  one-shot tuner run at ``init`` (BlackJAX's MCLMC tuners), returning the
  state, the params and the gradient evaluations it spent.

:class:`AdaptedKernel` runs them under NumPyro's ``MCMCKernel`` interface, so
they work with :class:`numpyro.infer.MCMC` (any ``chain_method``,
``extra_fields``, ``arviz.from_numpyro``) and with :func:`reprior.sample`.
Positions are pytrees outside and flat vectors inside.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import is_prng_key

from reprior._util import checks as _checks
from reprior.inference.samplers import adaptation as adapt
from reprior.inference.samplers.base import flatten


class Algorithm(NamedTuple):
    """A kernel in BlackJAX's layering, as :class:`AdaptedKernel` drives it."""

    init: Callable  # (flat_position, rng_key) -> State
    step: Callable  # (rng_key, State, params) -> (State, Info)
    initial_params: Callable  # (rng_key, State) -> params
    adaptation: adapt.StepSizeAdaptation | None = None  # per-iteration step-size adaptation
    tune: Callable | None = None  # (rng_key, State, params, num_warmup) -> (State, params, num_grad_evals)
    stats: Callable | None = None  # (State, Info, params) -> dict of kernel-specific statistics


class AdaptedState(NamedTuple):
    """State of :class:`AdaptedKernel`.

    Fields:
        i: ``()`` iteration index, warm-up included.
        z: the position, a pytree like ``init_params`` (the ``sample_field``).
        kernel_state: the kernel's own state (flat position inside).
        params: the tuned quantities used by the *next* iteration.
        info: the kernel's ``Info`` of the last iteration.
        adapt_state: the adaptation's state (``()`` when there is none).
        mean_accept_prob: ``()`` running mean of ``info.accept_prob`` (restarted after warm-up).
        num_warmup: ``()`` warm-up iterations.
        pending_grad_evals: ``()`` gradient evaluations spent by a one-shot tuner at
            ``init``, added to the cost counts of the first iteration.
        rng_key: PRNG key of the next iteration.
    """

    i: jax.Array
    z: object
    kernel_state: object
    params: object
    info: object
    adapt_state: object
    mean_accept_prob: jax.Array
    num_warmup: jax.Array
    pending_grad_evals: jax.Array
    rng_key: jax.Array

    # NumPyro's names, for ``MCMC.run(extra_fields=...)`` and ``arviz.from_numpyro``
    @property
    def potential_energy(self):
        """:math:`-(\\ell(z) - |z|^2/2)`, without constants."""
        return -self.kernel_state.logdensity

    @property
    def evaluation(self):
        """The density's evaluation at ``z`` that the kernel carries (``None`` when it carries none)."""
        return getattr(self.kernel_state, "evaluation", None)

    @property
    def accept_prob(self):
        return self.info.accept_prob

    @property
    def diverging(self):
        return self.info.is_divergent


class AdaptedKernel(MCMCKernel):
    """NumPyro ``MCMCKernel`` running an :class:`Algorithm` built on flat positions.

    Args:
        build_algorithm: ``unravel -> Algorithm``; called at ``init`` once the
            layout of the position is known.
        name: for messages and ``get_diagnostics_str``.
    """

    sample_field = "z"
    model = None  # built on a density, not a NumPyro model (read by arviz.from_numpyro)

    def __init__(self, build_algorithm: Callable, name: str):
        self._build_algorithm = build_algorithm
        self.name = name
        self._algorithm = None
        self._unravel = None

    @property
    def default_fields(self):
        return ("z", "diverging")

    @property
    def algorithm(self) -> Algorithm:
        if self._algorithm is None:
            raise RuntimeError(f"{self.name}: call init before sample")
        return self._algorithm

    def init(self, rng_key, num_warmup, init_params, model_args=(), model_kwargs=None):
        if init_params is None:
            raise _checks.fail("init_params", "initial positions (this kernel is built on a density)", None)
        _checks.nonnegative_int("num_warmup", num_warmup)
        if not is_prng_key(rng_key):  # one key per chain: NumPyro's vectorized chains
            return jax.vmap(lambda key, params: self.init(key, num_warmup, params))(rng_key, init_params)
        flat, unravel = flatten(init_params)
        self._unravel = unravel
        self._algorithm = algorithm = self._build_algorithm(unravel)
        init_key, params_key, tune_key, rng_key = jax.random.split(rng_key, 4)
        state = algorithm.init(flat, init_key)
        params = algorithm.initial_params(params_key, state)
        pending = jnp.zeros((), jnp.int32)
        if algorithm.tune is not None and num_warmup > 0:
            # one compiled program: run eagerly, a tuner's loops and glue are dispatched op by op
            state, params, pending = jax.jit(algorithm.tune, static_argnums=3)(tune_key, state, params, num_warmup)
            pending = jnp.asarray(pending, jnp.int32)
        adapt_state = algorithm.adaptation.init(params.step_size) if algorithm.adaptation else ()
        _, info = jax.eval_shape(algorithm.step, init_key, state, params)
        info = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), info)
        return AdaptedState(
            i=jnp.zeros((), jnp.int32), z=init_params, kernel_state=state, params=params, info=info,
            adapt_state=adapt_state, mean_accept_prob=jnp.zeros((), flat.dtype),
            num_warmup=jnp.asarray(num_warmup, jnp.int32), pending_grad_evals=pending, rng_key=rng_key)

    def sample(self, state, model_args=(), model_kwargs=None):
        if jnp.ndim(state.i):  # a batch of chains (see init)
            return jax.vmap(self.sample)(state)
        algorithm = self.algorithm
        step_key, rng_key = jax.random.split(state.rng_key)
        kernel_state, info = algorithm.step(step_key, state.kernel_state, state.params)
        params, adapt_state = state.params, state.adapt_state
        if algorithm.adaptation is not None:
            adapt_state = adapt.warmup_update(algorithm.adaptation, adapt_state, info.accept_prob, state.i,
                                              state.num_warmup)
            params = params._replace(step_size=adapt_state.step_size)
        info = info._replace(num_grad_evals=info.num_grad_evals + state.pending_grad_evals,
                             num_logdensity_evals=info.num_logdensity_evals + state.pending_grad_evals)
        return AdaptedState(
            i=state.i + 1, z=self._unravel(kernel_state.position), kernel_state=kernel_state, params=params,
            info=info, adapt_state=adapt_state,
            mean_accept_prob=adapt.running_mean_accept(state.mean_accept_prob, info.accept_prob, state.i,
                                                       state.num_warmup),
            num_warmup=state.num_warmup, pending_grad_evals=jnp.zeros_like(state.pending_grad_evals),
            rng_key=rng_key)

    def get_diagnostics_str(self, state):
        return f"acc. prob={float(jnp.mean(state.mean_accept_prob)):.2f}"


def make_stats_fn(*info_fields: str) -> Callable:
    """The registry's ``stats_fn`` for an adapted kernel: the shared statistics plus ``info_fields``.

    Shared: ``accept_prob``, ``diverging``, ``nonfinite``, ``lp``
    (:math:`\\ell(z) - |z|^2/2`, without constants; :func:`reprior.sample` adds
    them) and the cost counts ``num_grad_evals`` and ``num_logdensity_evals``.
    ``info_fields`` names the kernel's own fields of its ``Info`` to report
    too (``step_size``, ``energy``, ``num_shrinks``, ...).
    """

    def stats_fn(state: AdaptedState) -> dict:
        info = state.info
        stats = {
            "accept_prob": info.accept_prob,
            "diverging": info.is_divergent,
            "nonfinite": info.nonfinite,
            "lp": state.kernel_state.logdensity,
            "num_grad_evals": info.num_grad_evals,
            "num_logdensity_evals": info.num_logdensity_evals,
        }
        stats.update({name: getattr(info, name) for name in info_fields})
        return stats

    return stats_fn


def with_step_size_adaptation(target_accept_prob: float, adapt_step_size: bool, *, max_step_size=None,
                              block_size: int = 1):
    """The per-iteration adaptation of ``params.step_size``, or ``None`` when ``adapt_step_size`` is off."""
    if not adapt_step_size:
        return None
    return adapt.step_size_adaptation(target_accept_prob, max_step_size=max_step_size, block_size=block_size)


__all__ = ["AdaptedKernel", "AdaptedState", "Algorithm", "make_stats_fn", "with_step_size_adaptation"]
