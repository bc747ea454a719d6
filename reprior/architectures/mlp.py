"""Fully connected network in NTK parameterisation."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from .. import _checks
from .base import Architecture
from .layers import ACTIVATIONS, dense, init_dense


@dataclasses.dataclass(frozen=True)
class MLP(Architecture):
    """Multi-layer perceptron with ``depth`` hidden layers of ``width`` units.

    Hidden layer ``l`` computes

    .. math::

        h_l = \\phi\\big(h_{l-1} W_l\\, \\sigma_w / \\sqrt{d_{l-1}} + \\sigma_b\\, b_l\\big),
        \\qquad W_l, b_l \\sim \\mathcal N(0, 1)

    (NTK parameterisation, Jacot et al. 2018), then the linear readout of
    :class:`~reprior.architectures.base.Architecture`.  ``params["hidden"]`` is
    a list with one ``{"W": (fan_in, fan_out), "b": (fan_out,)}`` per layer.

    Inputs are ``x: (n, in_dim)``; images must be flattened first.
    """

    width: int = 512
    depth: int = 1
    activation: str = "relu"
    w_std: float = 2**0.5
    b_std: float = 0.1
    out_w_std: float = 1.0
    out_b_std: float = 0.1

    def __init__(self, width: int, depth: int = 1, activation: str = "relu", w_std: float = 2**0.5,
                 b_std: float = 0.1, out_w_std: float = 1.0, out_b_std: float = 0.1):
        set_ = object.__setattr__
        set_(self, "width", _checks.positive_int("width", width))
        set_(self, "depth", _checks.positive_int("depth", depth))
        set_(self, "activation", _checks.one_of("activation", activation, tuple(ACTIVATIONS)))
        set_(self, "w_std", _checks.positive_float("w_std", w_std))
        set_(self, "b_std", _checks.nonnegative_float("b_std", b_std))
        set_(self, "out_w_std", _checks.positive_float("out_w_std", out_w_std))
        set_(self, "out_b_std", _checks.nonnegative_float("out_b_std", out_b_std))

    def check_inputs(self, x, name: str = "x"):
        shape = np.shape(x)
        if len(shape) != 2:
            hint = " (flatten images first, e.g. x.reshape(len(x), -1))" if len(shape) > 2 else ""
            raise _checks.fail(name, "inputs of shape (n, in_dim) for an MLP" + hint, f"array of shape {shape}")
        if shape[0] < 1 or shape[1] < 1:
            raise _checks.fail(name, "at least one row and one column", f"array of shape {shape}")

    def feature_dim(self, x_shape) -> int:
        return self.width

    def _init_hidden(self, rng_key, x):
        dims = [np.shape(x)[1]] + [self.width] * self.depth
        keys = jax.random.split(rng_key, self.depth)
        return [init_dense(k, dims[i], dims[i + 1]) for i, k in enumerate(keys)]

    def hidden_features(self, hidden, x) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        h = x
        for layer in hidden:
            h = act(dense(layer, h, self.w_std, self.b_std))
        return h
