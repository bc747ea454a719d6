"""Pytree helpers shared by every layer: the site name of a leaf, ``{site: array}`` and back, ``|z|^2``.

A parameter pytree's leaves are named by their paths, joined with ``_``:
``(DictKey('hidden'), SequenceKey(0), DictKey('W')) -> 'hidden_0_W'``.  These are the
NumPyro site names of :mod:`reprior.inference.models`, the variables of a result's
``posterior`` group and the parameter names of the Flax and Equinox adapters
(:mod:`reprior.core.architectures.adapters`), so they are written once, here.

(The chains' final kernel states are stored under other names, dotted and sanitised:
``reprior.inference.inference_data`` names those, and they are not site names.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["flatten_params", "site_name", "squared_norm", "unflatten_params"]


def site_name(path) -> str:
    """``(DictKey('hidden'), SequenceKey(0), DictKey('W')) -> 'hidden_0_W'``: a leaf's path as a site name.

    Each key gives its ``key`` (dicts), else its ``idx`` (sequences), else its ``name``
    (attributes), else itself, as text.
    """
    return "_".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def flatten_params(params) -> dict:
    """Pytree of arrays -> ``{site_name: array}``, in pytree order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return {site_name(path): leaf for path, leaf in flat}


def unflatten_params(sites: dict, template):
    """Inverse of :func:`flatten_params`, given a template with the same structure."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(treedef, [sites[site_name(path)] for path, _ in paths])


def squared_norm(tree) -> jax.Array:
    """:math:`|z|^2` summed over every leaf of a pytree."""
    return sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(tree))
