"""Flax NNX and Equinox modules as architectures: their parameters are the hidden weights.

:func:`from_flax` and :func:`from_equinox` return a
:class:`~reprior.core.architectures.user.FeatureArchitecture` whose hidden pytree
is a flat dict with one standard normal array ``z`` per parameter of the
module, named by its path (``"layers_0_kernel"``; NumPyro and ArviZ call it
``hidden_layers_0_kernel``).  The features are the module's output with every
parameter replaced by

.. math:: w = s\\, z, \\qquad z \\sim \\mathcal N(0, I),

a fixed prior scale ``s`` per parameter: the module with these scales is a
network in NTK parameterisation in ``z`` (Jacot et al. 2018), whatever the
module's own initialisers.  The module's initial values are not used, only
the shapes of its parameters.  ``scales`` chooses ``s``:

* a number (default 1.0): every parameter is ``s z``; with 1.0 the module
  must scale its own layers (``x @ W * w_std / sqrt(fan_in)``);
* ``"fan_in"``: biases (parameters named ``bias``) get ``b_std``, the other
  parameters with two or more axes (weights, kernels) ``w_std / sqrt(fan_in)``,
  and any other (a layer norm's scale, say) 1.0, so that stock layers
  (``nnx.Linear``, ``nnx.Conv``, ``eqx.nn.Linear``, ``eqx.nn.Conv2d``) become
  NTK layers; ``fan_in`` is the product of every axis but the last for Flax
  (kernels ``(..., in, out)``) and of every axis but the first for Equinox
  (weights ``(out, in, ...)``);
* a dict ``{parameter name: s}`` (names not in it get 1.0), or a function
  ``(name, shape) -> s``.

The module maps inputs to the last hidden layer ``(n, d)``; reprior adds the
readout.  ``apply(module, x)`` says how to call it (default: ``module(x)``
for Flax, ``jax.vmap(module)(x)`` for Equinox, whose layers take one
unbatched input).  Only parameters are sampled (Flax ``nnx.Param``, Equinox's
floating arrays); other state (batch statistics, random number streams) is
held fixed, so the module must be deterministic at call time.

Flax and Equinox are optional: ``pip install reprior[flax]`` or
``reprior[equinox]``; they are imported when an adapter is called.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from reprior._util import checks as _checks
from reprior.core.architectures.user import FeatureArchitecture
from reprior.core.pytrees import site_name

__all__ = ["from_equinox", "from_flax"]


def _import(module: str, extra: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as err:
        raise ImportError(f"{module} is needed here and not installed: pip install 'reprior[{extra}]' "
                          f"({type(err).__name__}: {err})") from err


def _names(paths, argument: str) -> list[str]:
    names = [site_name(path) for path in paths]
    if len(set(names)) != len(names):
        clash = sorted({n for n in names if names.count(n) > 1})
        raise _checks.fail(argument, "parameters whose paths give distinct names", f"clashing names {clash}")
    return names


def _fan_in_scale(name: str, shape, w_std, b_std, layout: str) -> float:
    if name == "bias" or name.endswith("_bias"):
        return b_std
    if len(shape) < 2:
        return 1.0
    fan_in = math.prod(shape[:-1]) if layout == "flax" else math.prod(shape[1:])
    return w_std / math.sqrt(fan_in)


def _scales(scales, names, shapes, *, w_std, b_std, layout: str) -> tuple[float, ...]:
    """One positive prior scale per parameter (see the module docstring)."""
    if isinstance(scales, str):
        _checks.one_of("scales", scales, ("fan_in",))
        w_std = _checks.positive_float("w_std", w_std)
        b_std = _checks.nonnegative_float("b_std", b_std)
        values = [_fan_in_scale(n, s, w_std, b_std, layout) for n, s in zip(names, shapes)]
    elif isinstance(scales, dict):
        unknown = sorted(set(scales) - set(names))
        if unknown:
            raise _checks.fail("scales", f"parameter names among {names}", f"unknown names {unknown}")
        values = [scales.get(n, 1.0) for n in names]
    elif callable(scales):
        values = [scales(n, tuple(s)) for n, s in zip(names, shapes)]
    else:
        values = [scales] * len(names)
    checked = []
    for name, value in zip(names, values):
        try:
            checked.append(_checks.nonnegative_float(f"scales[{name!r}]", value))
        except ValueError:
            raise _checks.fail("scales", "a number >= 0, 'fan_in', a dict of parameter names to numbers or a "
                               "function (name, shape) -> number", f"{value!r} for parameter {name!r}") from None
    return tuple(checked)


def _flat_structure(names, shapes, label: str):
    """``init`` of the architecture: zeros of the default float dtype, one per parameter (shapes only)."""
    items = tuple(zip(names, (tuple(s) for s in shapes)))

    def init(rng_key, x):
        return {name: jnp.zeros(shape) for name, shape in items}

    init.__qualname__ = f"{label}.init"
    return init


def _module_name(module, framework: str, name: str | None) -> str:
    return name if name is not None else f"{framework}:{type(module).__name__}"


def from_flax(module, *, scales=1.0, apply: Callable | None = None, name: str | None = None,
              w_std: float = 2**0.5, b_std: float = 0.1, out_w_std: float = 1.0,
              out_b_std: float = 0.1, **architecture) -> FeatureArchitecture:
    """A Flax NNX module as an architecture: its ``nnx.Param`` leaves are the hidden weights.

    Args:
        module: an ``flax.nnx.Module`` mapping inputs ``(n, ...)`` to features ``(n, d)``.
        scales: the prior scale of each parameter (module docstring): a number,
            ``"fan_in"``, a dict or a function ``(name, shape) -> scale``.
        apply: ``apply(module, x) -> (n, d)``; default ``module(x)``.
        name: the architecture's name (default ``"flax:<class name>"``).
        w_std, b_std: the weight and bias scales of ``scales="fan_in"``.
        out_w_std, out_b_std: the readout scales.
        architecture: ``width``, ``depth``, ``settings`` of :class:`FeatureArchitecture`.

    Returns:
        A :class:`FeatureArchitecture` whose hidden pytree is ``{name: z}``,
        one standard normal array per parameter.
    """
    nnx = _import("flax.nnx", "flax")
    if not isinstance(module, nnx.Module):
        raise _checks.fail("module", "a flax.nnx.Module", type(module).__name__)
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    if not paths:
        raise _checks.fail("module", "a Flax module with at least one nnx.Param", type(module).__name__)
    # the path of a parameter ends in the Variable's own field ("value"): not part of its name
    names = _names([p[:-1] if p and getattr(p[-1], "name", None) == "value" else p for p, _ in paths], "module")
    shapes = [tuple(np.shape(leaf)) for _, leaf in paths]
    factors = _scales(scales, names, shapes, w_std=w_std, b_std=b_std, layout="flax")
    call = apply if apply is not None else (lambda m, x: m(x))
    if not callable(call):
        raise _checks.fail("apply", "a function apply(module, x) -> (n, d)", apply)

    def features(hidden, x):
        leaves = [jnp.asarray(s, hidden[n].dtype) * hidden[n] for n, s in zip(names, factors)]
        return call(nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, leaves), rest), x)

    label = f"from_flax({type(module).__qualname__}, scales={scales!r})"
    features.__qualname__ = f"{label}.features"
    return FeatureArchitecture(init=_flat_structure(names, shapes, label), features=features,
                               name=_module_name(module, "flax", name), out_w_std=out_w_std,
                               out_b_std=out_b_std, **architecture)


def from_equinox(module, *, scales=1.0, apply: Callable | None = None, name: str | None = None,
                 w_std: float = 2**0.5, b_std: float = 0.1, out_w_std: float = 1.0,
                 out_b_std: float = 0.1, **architecture) -> FeatureArchitecture:
    """An Equinox module as an architecture: its floating arrays are the hidden weights.

    Args:
        module: an ``equinox.Module`` whose call maps one input to a feature
            vector ``(d,)`` (the default ``apply`` vmaps it over rows), or any
            module with an ``apply`` that maps ``(n, ...)`` to ``(n, d)``.
        scales, name, w_std, b_std, out_w_std, out_b_std, architecture: as
            :func:`from_flax` (``fan_in`` of Equinox's ``(out, in, ...)`` weights).
        apply: ``apply(module, x) -> (n, d)``; default ``jax.vmap(module)(x)``.
    """
    eqx = _import("equinox", "equinox")
    if not isinstance(module, eqx.Module):
        raise _checks.fail("module", "an equinox.Module", type(module).__name__)
    params, static = eqx.partition(module, eqx.is_inexact_array)
    paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    if not paths:
        raise _checks.fail("module", "an Equinox module with at least one floating array", type(module).__name__)
    names = _names([p for p, _ in paths], "module")
    shapes = [tuple(np.shape(leaf)) for _, leaf in paths]
    factors = _scales(scales, names, shapes, w_std=w_std, b_std=b_std, layout="equinox")
    call = apply if apply is not None else (lambda m, x: jax.vmap(m)(x))
    if not callable(call):
        raise _checks.fail("apply", "a function apply(module, x) -> (n, d)", apply)

    def features(hidden, x):
        leaves = [jnp.asarray(s, hidden[n].dtype) * hidden[n] for n, s in zip(names, factors)]
        return call(eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static), x)

    label = f"from_equinox({type(module).__qualname__}, scales={scales!r})"
    features.__qualname__ = f"{label}.features"
    return FeatureArchitecture(init=_flat_structure(names, shapes, label), features=features,
                               name=_module_name(module, "equinox", name), out_w_std=out_w_std,
                               out_b_std=out_b_std, **architecture)
