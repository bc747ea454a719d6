"""The user's own network as an architecture: a feature function of a Gaussian hidden pytree.

Repriorisation needs only last-layer features :math:`\\Psi(x)` of hidden
weights with an N(0, I) prior and the linear Gaussian readout of
:class:`~reprior.core.architectures.base.Architecture`.  :class:`FeatureArchitecture`
makes one from two plain JAX functions::

    init(rng_key, x) -> hidden            # a pytree of floating arrays
    features(hidden, x) -> h: (n, d)      # the last hidden layer, NTK scales inside

and everything that takes an architecture (:class:`reprior.BNN`,
:func:`reprior.sample`, :func:`reprior.bnn_model`, SBC, the reports) takes it
unchanged.  The adapters of :mod:`reprior.core.architectures.adapters` build one
from a Flax NNX or an Equinox module.

The prior is N(0, I) by construction: ``init`` gives the *structure* of the
hidden pytree (its tree, shapes and dtypes, read with :func:`jax.eval_shape`),
and reprior draws every leaf i.i.d. N(0, 1) itself, so a network is
in NTK parameterisation when ``features`` carries the scales, e.g.
``x @ W * w_std / sqrt(fan_in) + b_std * b`` (Jacot et al. 2018).

Validation runs before any sampling, on the first inputs of each shape: the
hidden pytree must have at least one leaf, every leaf a floating array of the
default float dtype (float64 with x64 on, else float32, as the readout);
``features`` must return a floating ``(n, d)`` array with ``d >= 1`` rows
matching ``x``, and finite values on one prior draw (for concrete inputs).
A failure is a :class:`ValueError` naming the function, the architecture and
what was expected and received.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from reprior._util import checks as _checks
from reprior.core.architectures.base import Architecture, hyperparameter, readout_b_std, readout_w_std

__all__ = ["FeatureArchitecture"]


def _callable(name: str, value):
    if not callable(value):
        raise _checks.fail(name, "a function", value)
    return value


def _name(name: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _checks.fail(name, "a non-empty string naming the architecture", value)
    return value


def _settings(name: str, value) -> tuple:
    """Further settings the network was built with: ``(("activation", "relu"), ...)``, sorted by name."""
    pairs = value.items() if isinstance(value, dict) else value
    try:
        pairs = tuple(sorted((str(k), v) for k, v in pairs))
    except (TypeError, ValueError):
        raise _checks.fail(name, "a dict or pairs of setting name and value", value) from None
    for key, v in pairs:
        if not isinstance(v, (str, bool, numbers.Number, type(None))):
            raise _checks.fail(name, "settings with string, number or boolean values", f"{key}={v!r}")
    return pairs


def _qualname(fn) -> str:
    """``module.qualname`` of a function (stable across processes, unlike its default repr)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{qualname}" if module else qualname


@dataclasses.dataclass(frozen=True, init=False, repr=False)
class FeatureArchitecture(Architecture):
    """An architecture from the user's feature function: ``FeatureArchitecture(init=..., features=..., name=...)``.

    Args:
        init: ``init(rng_key, x) -> hidden``, a pytree of floating arrays; only
            its structure (tree, shapes, dtypes) is used, for inputs of the
            shape of ``x`` (every leaf is then drawn i.i.d. N(0, 1) by reprior).
        features: ``features(hidden, x) -> (n, d)``, the last hidden layer,
            pure JAX (it is traced, jitted, vmapped and differentiated).  Put
            the NTK scales in it: every leaf of ``hidden`` is standard normal.
        name: a name for reports and ``repr``.
        width: the width the features were built for (0: not declared).  A
            sweep records the cell's width here; it keys caches and reports.
        depth: the depth, likewise (0: not declared).
        settings: further settings the network was built with (a dict or
            pairs), recorded for provenance and cache keys.
        out_w_std, out_b_std: the readout scales of
            :class:`~reprior.core.architectures.base.Architecture`.

    Inputs are arrays ``x: (n, ...)`` of any trailing shape the functions take.
    The attributes ``init_fn`` and ``features_fn`` hold the two functions
    (``init`` and ``features`` are the methods every architecture has).
    """

    init_fn: Callable = hyperparameter(lambda name, value: _callable("init", value))
    features_fn: Callable = hyperparameter(lambda name, value: _callable("features", value))
    name: str = hyperparameter(_name)
    width: int = hyperparameter(_checks.nonnegative_int, 0)
    depth: int = hyperparameter(_checks.nonnegative_int, 0)
    settings: tuple = hyperparameter(_settings, ())
    out_w_std: float = readout_w_std()
    out_b_std: float = readout_b_std()

    def __init__(self, init: Callable | None = None, features: Callable | None = None, name: str | None = None, *,
                 width: int = 0, depth: int = 0, settings=(), out_w_std: float = 1.0, out_b_std: float = 0.1,
                 init_fn: Callable | None = None, features_fn: Callable | None = None):
        # init_fn/features_fn: the field names, which dataclasses.replace passes
        values = {"init_fn": init if init is not None else init_fn,
                  "features_fn": features if features is not None else features_fn,
                  "name": name, "width": width, "depth": depth, "settings": settings,
                  "out_w_std": out_w_std, "out_b_std": out_b_std}
        for key, value in values.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_probed", {})  # (x shape, dtype) -> feature dim; not a field
        object.__setattr__(self, "_finite", set())  # input shapes whose prior draw was checked
        self.__post_init__()

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", f"init={_qualname(self.init_fn)}", f"features={_qualname(self.features_fn)}"]
        parts += [f"{key}={getattr(self, key)!r}" for key in ("width", "depth") if getattr(self, key)]
        if self.settings:
            parts.append(f"settings={dict(self.settings)!r}")
        parts += [f"out_w_std={self.out_w_std!r}", f"out_b_std={self.out_b_std!r}"]
        return f"FeatureArchitecture({', '.join(parts)})"

    def _label(self) -> str:
        return f"FeatureArchitecture {self.name!r}"

    # -- the architecture interface -------------------------------------------------
    def check_inputs(self, x, name: str = "x"):
        """``x: (n, ...)`` with ``n >= 1``; on the first inputs of each shape, the checks of the module docstring."""
        shape = tuple(np.shape(x))
        if len(shape) < 2 or shape[0] < 1 or 0 in shape:
            raise _checks.fail(name, f"inputs of shape (n, ...) with n >= 1 and no empty axis for {self._label()} "
                               "(one row per data point; scalars as (n, 1))", f"array of shape {shape}")
        self._probe(shape, jnp.result_type(float))
        if shape not in self._finite and _checks.is_concrete(x) and np.all(np.isfinite(np.asarray(x))):
            if self._check_prior_draw(jnp.asarray(x, jnp.result_type(float))):
                self._finite.add(shape)

    def feature_dim(self, x_shape) -> int:
        """``d``, read from :func:`jax.eval_shape` of ``features`` on inputs of shape ``x_shape``."""
        return self._probe(tuple(x_shape), jnp.result_type(float))

    def init_hidden(self, rng_key, x):
        """Every leaf of ``init``'s pytree drawn i.i.d. N(0, 1) (the structure of ``init(rng_key, x)``)."""
        structure = self._hidden_structure(tuple(np.shape(x)), jnp.result_type(float))
        leaves, treedef = jax.tree_util.tree_flatten(structure)
        keys = jax.random.split(rng_key, len(leaves))
        return jax.tree_util.tree_unflatten(
            treedef, [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)])

    def hidden_features(self, hidden, x) -> jax.Array:
        return self.features_fn(hidden, x)

    # -- validation -------------------------------------------------------------------
    def _hidden_structure(self, x_shape: tuple, dtype):
        """``jax.eval_shape`` of ``init`` on inputs of ``x_shape``, checked (the leaves' shapes and dtypes)."""
        x = jax.ShapeDtypeStruct(x_shape, dtype)
        try:
            structure = jax.eval_shape(lambda x: self.init_fn(jax.random.key(0), x), x)
        except Exception as err:
            raise _checks.fail("init", f"a function init(rng_key, x) of {self._label()} that takes inputs of "
                               f"shape {x_shape}", f"one that raised {type(err).__name__}: {err}") from err
        paths = jax.tree_util.tree_flatten_with_path(structure)[0]
        if not paths:
            raise _checks.fail("init", f"a hidden pytree with at least one array leaf from {self._label()} "
                               "(the weights to sample)", f"{structure!r}")
        for path, leaf in paths:
            where = f"leaf hidden{jax.tree_util.keystr(path)}"
            if not hasattr(leaf, "dtype") or not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise _checks.fail("init", f"floating array leaves in the hidden pytree of {self._label()}",
                                   f"{where} = {leaf!r}")
            if leaf.dtype != dtype:
                raise _checks.fail("init", f"leaves of the default float dtype {jnp.dtype(dtype).name} in the hidden "
                                   f"pytree of {self._label()} (let dtypes follow x64 mode, e.g. "
                                   "jnp.zeros(shape) or jax.random.normal(key, shape))",
                                   f"{where} of dtype {leaf.dtype}")
        return structure

    def _probe(self, x_shape: tuple, dtype) -> int:
        """Check ``init`` and ``features`` on inputs of ``x_shape`` (shapes only); return ``d``."""
        key = (x_shape, jnp.dtype(dtype).name)
        if key in self._probed:
            return self._probed[key]
        structure = self._hidden_structure(x_shape, dtype)
        x = jax.ShapeDtypeStruct(x_shape, dtype)
        try:
            out = jax.eval_shape(self.features_fn, structure, x)
        except Exception as err:
            raise _checks.fail("features", f"a function features(hidden, x) of {self._label()} that takes the "
                               f"hidden pytree of init and inputs of shape {x_shape}",
                               f"one that raised {type(err).__name__}: {err}") from err
        expected = f"an array of shape (n, d) = ({x_shape[0]}, d) with d >= 1 from {self._label()}"
        if not hasattr(out, "shape") or not hasattr(out, "dtype"):
            raise _checks.fail("features", expected, f"{type(out).__name__} {out!r}")
        if len(out.shape) != 2 or out.shape[0] != x_shape[0] or out.shape[1] < 1:
            hint = " (flatten the trailing axes, e.g. h.reshape(len(h), -1))" if len(out.shape) > 2 else ""
            raise _checks.fail("features", expected + hint, f"an array of shape {tuple(out.shape)} for inputs of "
                               f"shape {x_shape}")
        if not jnp.issubdtype(out.dtype, jnp.floating):
            raise _checks.fail("features", f"floating features from {self._label()}", f"dtype {out.dtype}")
        self._probed[key] = int(out.shape[1])
        return self._probed[key]

    def _check_prior_draw(self, x) -> bool:
        """Features at one prior draw of the hidden weights (key 0) are finite; False: not checked (traced)."""
        hidden = self.init_hidden(jax.random.key(0), x)
        try:
            h = np.asarray(jax.jit(self.features_fn)(hidden, x))
        except jax.errors.TracerArrayConversionError:  # inside another trace (a jitted model): shapes only
            return False
        if not np.all(np.isfinite(h)):
            bad = int(h.size - np.count_nonzero(np.isfinite(h)))
            raise _checks.fail("features", f"finite features from {self._label()} at a prior draw of the hidden "
                               "weights (every leaf N(0, 1))", f"{bad} non-finite values of {h.size} for inputs of "
                               f"shape {tuple(x.shape)}")
        return True
