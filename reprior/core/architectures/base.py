"""The readout shared by every architecture, in NTK parameterisation.

An architecture maps inputs ``x`` to last-layer post-activations
``h(x): (n, d)``.  The readout is linear in the features

.. math::

    \\Psi(x) = \\big[\\sigma_{w,\\mathrm{out}}\\, h(x) / \\sqrt{d},\\; \\sigma_{b,\\mathrm{out}}\\big]
    \\in \\mathbb{R}^{n \\times p}, \\qquad p = d + 1,

    f(x) = \\Psi(x)\\, \\theta_{\\mathrm{out}}, \\qquad
    \\theta_{\\mathrm{out}} = \\begin{bmatrix} W \\\\ b^\\top \\end{bmatrix} \\in \\mathbb{R}^{p \\times k},

with every entry of ``W`` and ``b`` i.i.d. N(0, 1) a priori (Jacot et al. 2018;
Hron et al. 2022, section 2).  Parameter layout (public contract)::

    params = {"hidden": <architecture specific>,
              "readout": {"W": (p - 1, out_dim), "b": (out_dim,)}}
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from reprior._util import checks as _checks
from reprior.core.architectures.layers import ACTIVATIONS


def readout_matrix(params) -> jax.Array:
    """Stack the readout into ``theta_out: (p, out_dim)``, bias row last."""
    readout = params["readout"]
    return jnp.concatenate([readout["W"], readout["b"][None, :]], axis=0)


def split_readout(theta_out: jax.Array) -> dict:
    """Inverse of :func:`readout_matrix`: ``(p, k) -> {"W": (p-1, k), "b": (k,)}``."""
    return {"W": theta_out[:-1], "b": theta_out[-1]}


def with_readout(params, theta_out: jax.Array) -> dict:
    """Return a copy of ``params`` whose readout is ``theta_out: (p, k)``."""
    return {"hidden": params["hidden"], "readout": split_readout(theta_out)}


def hyperparameter(check, default=dataclasses.MISSING):
    """A dataclass field of an :class:`Architecture`, validated by its ``__post_init__``.

    Args:
        check: ``check(name, value) -> value``, raising :class:`ValueError`
            that names the argument, what was expected and what was received
            (the checks of :mod:`reprior._util.checks`); the value it returns (an
            ``int`` for a NumPy integer, say) is stored.
        default: the default value (none: a required argument).
    """
    return dataclasses.field(default=default, metadata={"check": check})


def check_activation(name: str, value) -> str:
    """One of the activations of :data:`reprior.core.architectures.layers.ACTIVATIONS`."""
    return _checks.one_of(name, value, tuple(ACTIVATIONS))


def readout_w_std(default: float = 1.0):
    """The readout weight scale :math:`\\sigma_{w,\\mathrm{out}} > 0` (at 0 every feature column would vanish)."""
    return hyperparameter(_checks.positive_float, default)


def readout_b_std(default: float = 0.1):
    """The readout bias scale :math:`\\sigma_{b,\\mathrm{out}} \\ge 0`."""
    return hyperparameter(_checks.nonnegative_float, default)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Base class: subclasses define the hidden layers; the readout lives here.

    Subclasses are frozen dataclasses whose fields are declared with
    :func:`hyperparameter`; :meth:`__post_init__` validates every field once,
    in field order, so constructing an architecture with a bad value fails
    before any tracing.  They implement ``init_hidden(rng_key, x)``,
    ``hidden_features(hidden, x) -> (n, d)``, ``feature_dim(x_shape) -> d``
    and ``check_inputs(x)``, and declare the readout scales as fields
    ``out_w_std: float = readout_w_std()`` and ``out_b_std: float = readout_b_std()``
    (one check and one default for every architecture).
    """

    def __post_init__(self):
        for field in dataclasses.fields(self):
            check = field.metadata.get("check")
            if check is not None:
                object.__setattr__(self, field.name, check(field.name, getattr(self, field.name)))

    # -- interface for subclasses -------------------------------------------------
    def init_hidden(self, rng_key, x):  # pragma: no cover - abstract
        """The hidden layers' parameters, ``params["hidden"]`` of :meth:`init`: a pytree with every leaf
        drawn i.i.d. N(0, 1) (only ``x.shape`` is used).  With :meth:`hidden_features` it is the pair
        that a :class:`~reprior.core.architectures.user.FeatureArchitecture` takes as ``init`` and
        ``features``."""
        raise NotImplementedError

    def hidden_features(self, hidden, x) -> jax.Array:  # pragma: no cover - abstract
        """The last hidden layer ``(n, d)`` at the hidden parameters ``hidden`` (of :meth:`init_hidden`)."""
        raise NotImplementedError

    def feature_dim(self, x_shape) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_inputs(self, x, name: str = "x"):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared readout -------------------------------------------------------------
    def num_features(self, x_shape) -> int:
        """``p = d + 1``: the number of readout rows, bias included."""
        return self.feature_dim(tuple(x_shape)) + 1

    def init(self, rng_key, x, out_dim: int) -> dict:
        """Draw every parameter i.i.d. N(0, 1).

        Args:
            rng_key: a JAX PRNG key.
            x: example inputs (only the shape is used).
            out_dim: number of outputs ``k``.
        """
        self.check_inputs(x)
        out_dim = _checks.positive_int("out_dim", out_dim)
        hidden_key, w_key, b_key = jax.random.split(rng_key, 3)
        p = self.num_features(jnp.shape(x))
        return {
            "hidden": self.init_hidden(hidden_key, x),
            "readout": {
                "W": jax.random.normal(w_key, (p - 1, out_dim)),
                "b": jax.random.normal(b_key, (out_dim,)),
            },
        }

    def features(self, params, x) -> jax.Array:
        """Readout features ``Psi: (n, p)``, the scaled bias column last."""
        h = self.hidden_features(params["hidden"], x)
        d = h.shape[-1]
        scale = jnp.asarray(self.out_w_std / d**0.5, h.dtype)
        bias = jnp.full((h.shape[0], 1), self.out_b_std, h.dtype)
        return jnp.concatenate([scale * h, bias], axis=1)

    def apply(self, params, x) -> jax.Array:
        """Network outputs ``f: (n, out_dim)``."""
        return self.features(params, x) @ readout_matrix(params)
