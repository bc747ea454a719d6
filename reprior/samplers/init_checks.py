"""The argument checks and chain batching shared by the ``init`` of every kernel in this package."""

from __future__ import annotations

import jax
from numpyro.util import is_prng_key

from .. import _checks


def batched_init(kernel, rng_key, num_warmup, init_params):
    """Check ``init``'s arguments; for a batch of keys (NumPyro's vectorized chains) return
    ``kernel.init`` mapped over keys and initial positions, else None (one chain: go on).

    Raises ``ValueError`` naming ``init_params`` when it is missing (these kernels are built
    on a ``potential_fn``, so there is no model to draw a start from) and ``num_warmup`` when
    it is not a non-negative integer.
    """
    if init_params is None:
        raise _checks.fail("init_params", "initial positions (this kernel is built on a potential_fn)", None)
    _checks.nonnegative_int("num_warmup", num_warmup)
    if is_prng_key(rng_key):
        return None
    return jax.vmap(lambda key, params: kernel.init(key, num_warmup, params))(rng_key, init_params)
