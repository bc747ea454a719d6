"""Fixed random projections for summarising high-dimensional draws (Hron et al. 2022, section 5).

A posterior over millions of weights is summarised by its projections onto a
fixed set of unit-norm random directions; ESS and R-hat of those scalars stand
for mixing of the whole vector.

The directions are random sign vectors (Achlioptas 2003):

.. math::

    d_j[i] = \\frac{s_{ij}}{\\sqrt{D}}, \\qquad s_{ij} \\in \\{-1, +1\\},
    \\qquad \\|d_j\\|_2 = 1 \\text{ exactly},

where the sign :math:`s_{ij}` is bit ``j mod 32`` of a 32-bit integer hash of
``(seed, i, j // 32)``.  Three consequences:

- **fixed**: a direction depends only on ``(dim, seed)`` and its index ``j``
  (the first ``k`` of ``num`` directions do not depend on ``num``).  The hash is
  integer arithmetic modulo :math:`2^{32}`, written here once for NumPy and JAX,
  so the directions are bit-identical on every machine, device and JAX version
  (no dependence on JAX's PRNG implementation, whose bits have changed between
  versions);
- **O(dim) memory**: :func:`project` and :func:`project_tree` generate the signs
  block by block inside a ``lax.scan``, so no ``(dim, num)`` array exists on
  host or device; only :func:`projection_matrix`, the small-dimension helper
  and reference, builds the full matrix;
- **cheap**: one hash of three integer mixes per weight covers 32 directions,
  and unit norm needs no normalisation pass.  Per recorded draw the cost is
  about ``dim`` hashes and ``dim * num`` additions, a small multiple of a
  product with a stored ``(dim, num)`` matrix (docs/performance.md), without
  that matrix's ``num`` times the network's memory.

Example::

    z = project(flat, num=10, seed=0)               # (10,), jit-compatible
    z = project_tree(params, num=10, seed=0)        # == project(ravel_pytree(params)[0], 10, 0)
    P = projection_matrix(flat.shape[0], 10, 0)     # (dim, 10) NumPy reference: flat @ P == z
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from reprior._util import checks as _checks

__all__ = ["DEFAULT_BLOCK_SIZE", "MAX_DIM", "project", "project_leaves", "project_tree", "projection_matrix",
           "projection_words"]

#: Rows of signs generated at once by :func:`project`: memory ``block_size * num``.
DEFAULT_BLOCK_SIZE = 2**14
#: Largest supported dimension (indices are hashed as 32-bit integers).
MAX_DIM = 2**32 - 2**20
_MAX_SEED = 2**32
_BITS = 32  # directions per hashed word
# Constants of the "lowbias32" integer hash (C. Wellons, hash-prospector) and the golden ratio.
_M1, _M2, _GOLDEN = 0x7FEB352D, 0x846CA68B, 0x9E3779B9


def _mix(x, xp):
    """A bijective 32-bit integer hash with full avalanche ("lowbias32"); ``x`` is a uint32 array."""
    x = x ^ (x >> xp.uint32(16))
    x = x * xp.uint32(_M1)
    x = x ^ (x >> xp.uint32(15))
    x = x * xp.uint32(_M2)
    return x ^ (x >> xp.uint32(16))


def _words(rows, words, seed: int, xp):
    """uint32 hash words ``(len(rows), len(words))`` of (seed, row index, word index)."""
    key = _mix(xp.asarray([seed ^ _GOLDEN], dtype=xp.uint32), xp)
    row_part = _mix(_mix(rows, xp) ^ key, xp)
    return _mix(row_part[:, None] + words[None, :] * xp.uint32(_GOLDEN), xp)


def _bits_of_words(words, num: int, xp):
    """``(num, rows)`` uint32 array of 0/1 from hash words ``(rows, num_words)``: bit 1 means sign -1."""
    j = np.arange(num)
    return (words.T[j // _BITS, :] >> xp.asarray(j % _BITS, dtype=xp.uint32)[:, None]) & xp.uint32(1)


def _sign_bits(rows, num: int, seed: int, xp):
    """``(num, len(rows))`` uint32 array of 0/1: bit 1 means sign -1 (the transposed directions)."""
    return _bits_of_words(_words(rows, xp.arange(-(-num // _BITS), dtype=xp.uint32), seed, xp), num, xp)


def projection_words(dim: int, num: int, seed: int = 0) -> np.ndarray:
    """The hash words of the first ``num`` directions, ``(dim, ceil(num / 32))`` uint32 (NumPy).

    4 bytes per weight for up to 32 directions: a table that a run projecting many
    draws builds once and passes to :func:`project_leaves` (``words=``) instead of
    hashing every weight again at every draw.  The directions are the same.
    """
    _check(dim, num, seed)
    return _words(np.arange(dim, dtype=np.uint32), np.arange(-(-num // _BITS), dtype=np.uint32), seed, np)


def _check(dim: int, num: int, seed: int, block_size: int = DEFAULT_BLOCK_SIZE):
    for name, value, low, high in (("dim", dim, 0, MAX_DIM), ("num", num, 0, None),
                                   ("seed", seed, 0, _MAX_SEED - 1), ("block_size", block_size, 1, None)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
                high is not None and value > high):
            bound = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
            raise _checks.fail(name, bound, value)


def projection_matrix(dim: int, num: int, seed: int = 0) -> np.ndarray:
    """The ``(dim, num)`` matrix of unit-norm random sign directions, as a float64 NumPy array.

    The small-dimension helper and the reference for :func:`project`: it holds
    ``dim * num`` numbers, so use it for short vectors (test predictions) and
    tests; project the weights of a network with :func:`project` or
    :func:`project_tree`, which never build it.

    Args:
        dim: length of the vectors to project.
        num: number of directions.
        seed: seed of the directions, ``0 <= seed < 2**32``.

    Returns:
        ``(dim, num)`` float64 array whose columns have unit norm;
        ``flat @ projection_matrix(dim, num, seed)`` equals ``project(flat, num, seed)``.
    """
    _check(dim, num, seed)
    if dim == 0:
        return np.zeros((0, num))
    bits = _sign_bits(np.arange(dim, dtype=np.uint32), num, seed, np)
    return (1.0 - 2.0 * bits.T) / math.sqrt(dim)


def _project_unscaled(flat, offset: int, num: int, seed: int, block_size: int, words=None):
    """``sum_i flat[i] * s_{offset + i, j}`` for ``flat: (n,)``; generates ``block_size`` rows at a time,
    or reads their signs from ``words`` (rows ``offset .. offset + n`` of :func:`projection_words`)."""
    n = flat.shape[0]
    table = None if words is None else jnp.asarray(words[offset:offset + n])

    def block(values, start, block_words):
        if block_words is None:
            bits = _sign_bits(start + jnp.arange(values.shape[0], dtype=jnp.uint32), num, seed, jnp)
        else:
            bits = _bits_of_words(block_words, num, jnp)
        # A fused select-and-sum: no TF32 rounding on GPUs, about 2x faster than a dot on CPU.
        return jnp.sum(jnp.where(bits == 1, -values[None, :], values[None, :]), axis=1)

    if n <= block_size:
        return block(flat, jnp.uint32(offset), table)
    num_blocks = -(-n // block_size)
    pad = num_blocks * block_size - n
    blocks = jnp.pad(flat, (0, pad)).reshape(num_blocks, block_size)
    starts = jnp.uint32(offset) + jnp.arange(num_blocks, dtype=jnp.uint32) * jnp.uint32(block_size)
    if table is not None:
        table = jnp.pad(table, ((0, pad), (0, 0))).reshape(num_blocks, block_size, table.shape[1])

    def step(total, xs):
        return total + block(*xs), None

    total, _ = jax.lax.scan(step, jnp.zeros((num,), flat.dtype), (blocks, starts, table))
    return total


def project_leaves(leaves, num: int, seed: int = 0, *, offset: int = 0, words=None,
                   block_size: int = DEFAULT_BLOCK_SIZE):
    """The *unscaled* projection of consecutive leaves of a flattened vector, and where they end.

    ``(sum_i v_i s_ij, offset + len(v))`` for ``v`` the leaves raveled and concatenated,
    starting at row ``offset`` of the directions: the pieces of :func:`project_tree`
    (which divides the sum over all leaves by :math:`\\sqrt{D}`), for callers that share a
    part of several trees (theta and phi share their hidden weights). ``words``: the table
    of :func:`projection_words`, read instead of hashing.
    """
    total = None
    for leaf in leaves:
        if leaf.size:
            part = _project_unscaled(leaf.reshape(-1), offset, num, seed, block_size, words)
            total = part if total is None else total + part
        offset += leaf.size
    return total, offset


def project(flat, num: int, seed: int = 0, *, block_size: int = DEFAULT_BLOCK_SIZE):
    """Project ``flat: (dim,)`` on ``num`` fixed unit-norm random directions, in O(dim) memory.

    Equal, to float rounding, to ``flat @ projection_matrix(dim, num, seed)``,
    but the directions are generated ``block_size`` rows at a time inside a
    ``lax.scan``, so memory is ``O(dim + block_size * num)`` and no ``(dim, num)``
    array is created.  Pure JAX: works under ``jit`` and ``vmap`` (a batch of
    vectors shares the generated directions); ``num``, ``seed`` and
    ``block_size`` are static Python integers.

    Args:
        flat: ``(dim,)`` floating array.
        num: number of directions.
        seed: seed of the directions, ``0 <= seed < 2**32``.
        block_size: rows of directions generated at once.

    Returns:
        ``(num,)`` array of ``flat``'s dtype.
    """
    flat = jnp.asarray(flat)
    if flat.ndim != 1 or not jnp.issubdtype(flat.dtype, jnp.floating):
        raise _checks.fail("flat", "a 1-D floating array", f"{flat.dtype} array of shape {flat.shape}")
    _check(flat.shape[0], num, seed, block_size)
    if flat.shape[0] == 0 or num == 0:
        return jnp.zeros((num,), flat.dtype)
    return _project_unscaled(flat, 0, num, seed, block_size) / math.sqrt(flat.shape[0])


def project_tree(tree, num: int, seed: int = 0, *, block_size: int = DEFAULT_BLOCK_SIZE):
    """:func:`project` of ``ravel_pytree(tree)[0]`` without concatenating the leaves.

    Each leaf is projected with its offset in the flattened vector (leaves in
    ``jax.tree_util.tree_leaves`` order, each raveled in C order, as
    ``jax.flatten_util.ravel_pytree`` does), so the result equals
    ``project(ravel_pytree(tree)[0], num, seed)``.

    Args:
        tree: a pytree of floating arrays (all of one dtype).
        num, seed, block_size: as in :func:`project`.

    Returns:
        ``(num,)`` array of the leaves' dtype.
    """
    leaves = [jnp.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]
    if not leaves:
        raise _checks.fail("tree", "a pytree with at least one array leaf", tree)
    dtype = jnp.result_type(*leaves)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise _checks.fail("tree", "a pytree of floating leaves", f"leaves of dtype {dtype}")
    dim = sum(leaf.size for leaf in leaves)
    _check(dim, num, seed, block_size)
    if dim == 0 or num == 0:
        return jnp.zeros((num,), dtype)
    total, _ = project_leaves([leaf.astype(dtype) for leaf in leaves], num, seed, block_size=block_size)
    return total / math.sqrt(dim)
