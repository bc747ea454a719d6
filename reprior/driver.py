"""The chain loop: warm-up and sampling of any NumPyro ``MCMCKernel``, in compiled chunks.

NumPyro's kernels do the transitions and the adaptation; this module only
drives them, so that

* compilation is done ahead of time (``jit(...).lower(...).compile()``) and
  timed apart from warm-up and sampling;
* a recorded draw is post-processed (``collect_fn``) as soon as it is made,
  inside the compiled chunk, so raw high-dimensional states are never stored;
* progress is reported between chunks, and every chain reuses the same
  compiled executables (no recompilation between chains or chunks).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .interrupts import deferring

CHAIN_METHODS = ("sequential", "vectorized", "parallel")


@dataclass
class ChainRun:
    """Output of :func:`run_chains`; arrays have leading ``(chain, draw)`` axes."""

    draws: dict
    stats: dict
    warmup_stats: dict
    timings: dict = field(default_factory=dict)
    num_traces: int = 0


def _chunk_size(total: int, target_chunks: int = 20) -> int:
    return max(1, math.ceil(total / target_chunks)) if total else 1


def _build_chunk_fns(kernel, stats_fn, collect_fn, warmup_len, sample_len, thinning, trace_counter):
    """Two pure functions: ``warmup(state) -> (state, stats)`` and
    ``draw(state, consts, key, start) -> (state, (outputs, stats))``."""

    def step(state):
        return kernel.sample(state, (), {})

    def warmup(state):
        trace_counter.append("warmup")

        def body(carry, _):
            carry = step(carry)
            return carry, stats_fn(carry)

        return jax.lax.scan(body, state, None, length=warmup_len)

    def draw(state, consts, key, start):
        trace_counter.append("draw")

        def thin(carry, _):
            carry = step(carry)
            s = stats_fn(carry)
            return carry, (s["num_grad_evals"], s["num_logdensity_evals"])

        def body(carry, index):
            carry, (grads, evals) = jax.lax.scan(thin, carry, None, length=thinning)
            stats = stats_fn(carry)
            stats["num_grad_evals"] = jnp.sum(grads)
            stats["num_logdensity_evals"] = jnp.sum(evals)
            sample = getattr(carry, kernel.sample_field)
            out = collect_fn(consts, jax.random.fold_in(key, index), sample)
            return carry, (out, stats)

        return jax.lax.scan(body, state, start + jnp.arange(sample_len))

    return warmup, draw


def _concat(chunks, keep: int, axis: int):
    """Concatenate chunk outputs along the draw axis and cut to ``keep`` draws."""
    joined = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=axis), *chunks)
    return jax.tree_util.tree_map(lambda a: np.take(a, np.arange(keep), axis=axis), joined)


@deferring  # Ctrl-C/SIGTERM stop between chunks, never inside XLA (reprior.interrupts)
def run_chains(kernel, stats_fn, collect_fn, init_params, *, rng_key, consts=(), num_warmup: int,
               num_samples: int, num_chains: int, thinning: int = 1, chain_method: str = "sequential",
               progress=None) -> ChainRun:
    """Warm up and sample ``num_chains`` chains of ``kernel``.

    Args:
        kernel: a NumPyro ``MCMCKernel`` built on a ``potential_fn``.
        stats_fn: ``state -> dict`` of per-iteration statistics, with
            ``num_grad_evals`` and ``num_logdensity_evals``.
        collect_fn: ``(consts, key, position) -> dict`` applied to each recorded draw.
        init_params: initial positions, each leaf with a leading ``(num_chains,)`` axis.
        consts: arrays passed to ``collect_fn`` (kept out of the compiled constants).
        progress: optional ``callable(num_iterations_done, phase)`` called between chunks.
    """
    warmup_len = _chunk_size(num_warmup)
    sample_len = _chunk_size(num_samples)
    traces: list[str] = []
    warmup_fn, draw_fn = _build_chunk_fns(kernel, stats_fn, collect_fn, warmup_len, sample_len, thinning, traces)
    init_key, collect_key = jax.random.split(rng_key)
    init_keys = jax.random.split(init_key, num_chains)
    collect_keys = jax.random.split(collect_key, num_chains)
    timings = {"compile_seconds": 0.0, "warmup_seconds": 0.0, "sample_seconds": 0.0}

    # Sequential chains run one at a time through the same batch-of-one executable.
    if chain_method == "sequential":
        groups = [np.array([c]) for c in range(num_chains)]
    else:
        groups = [np.arange(num_chains)]
    if chain_method == "parallel" and jax.local_device_count() < num_chains:
        raise ValueError(
            f"argument `chain_method`: 'parallel' needs at least {num_chains} local devices, "
            f"received {jax.local_device_count()} (use 'vectorized' or 'sequential')")
    if chain_method == "sequential":
        # One chain at a time, unbatched: NUTS under vmap evaluates both branches
        # of every lax.cond, which costs several times more even with a batch of one.
        def batch(fn, in_axes=0):
            return fn

        def select(a, idx):
            return a[int(idx[0])]
    else:
        batch = jax.pmap if chain_method == "parallel" else jax.vmap

        def select(a, idx):
            return a[idx]

    def init_state(idx):
        params = jax.tree_util.tree_map(lambda a: select(a, idx), init_params)
        return batch(lambda k, p: kernel.init(k, num_warmup, p, (), {}))(select(init_keys, idx), params)

    compiled = {}
    draws, stats, warm_stats = [], [], []
    done = 0
    for idx in groups:
        state = init_state(idx)
        if not compiled:
            start = time.perf_counter()
            w = jax.jit(batch(warmup_fn)) if chain_method != "parallel" else batch(warmup_fn)
            d_fn = batch(draw_fn, in_axes=(0, None, 0, None))
            d = jax.jit(d_fn) if chain_method != "parallel" else d_fn
            compiled["warmup"] = w.lower(state).compile() if num_warmup else None
            compiled["draw"] = d.lower(state, consts, select(collect_keys, idx), 0).compile()
            timings["compile_seconds"] = time.perf_counter() - start
        chain_warm, chain_draws, chain_stats = [], [], []
        start = time.perf_counter()
        for _ in range(math.ceil(num_warmup / warmup_len) if num_warmup else 0):
            state, s = compiled["warmup"](state)
            chain_warm.append(jax.device_get(s))
            done += warmup_len * len(idx)
            if progress:
                progress(done, "warmup")
        jax.block_until_ready(state)
        timings["warmup_seconds"] += time.perf_counter() - start
        start = time.perf_counter()
        for chunk in range(math.ceil(num_samples / sample_len)):
            state, (out, s) = compiled["draw"](state, consts, select(collect_keys, idx), chunk * sample_len)
            chain_draws.append(jax.device_get(out))
            chain_stats.append(jax.device_get(s))
            done += sample_len * len(idx)
            if progress:
                progress(done, "sampling")
        timings["sample_seconds"] += time.perf_counter() - start
        axis = 0 if chain_method == "sequential" else 1
        parts = [_concat(chain_draws, num_samples, axis), _concat(chain_stats, num_samples, axis)]
        if chain_warm:
            parts.append(_concat(chain_warm, num_warmup, axis))
        if axis == 0:  # add the chain axis of a single unbatched chain
            parts = [jax.tree_util.tree_map(lambda a: a[None], part) for part in parts]
        draws.append(parts[0])
        stats.append(parts[1])
        if chain_warm:
            warm_stats.append(parts[2])

    def stack(parts):
        return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *parts)

    return ChainRun(
        draws=stack(draws),
        stats=stack(stats),
        warmup_stats=stack(warm_stats) if warm_stats else {},
        timings=timings,
        num_traces=len(traces),
    )
