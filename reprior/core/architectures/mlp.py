"""Fully connected network in NTK parameterisation."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from reprior._util import checks as _checks
from reprior.core.architectures.base import Architecture, check_activation, hyperparameter, readout_b_std, readout_w_std
from reprior.core.architectures.layers import ACTIVATIONS, dense, init_dense
from reprior.core.architectures.registry import ArchitectureSpec, register_architecture


@dataclasses.dataclass(frozen=True)
class MLP(Architecture):
    """Multi-layer perceptron with ``depth`` hidden layers of ``width`` units.

    Hidden layer ``l`` computes

    .. math::

        h_l = \\phi\\big(h_{l-1} W_l\\, \\sigma_w / \\sqrt{d_{l-1}} + \\sigma_b\\, b_l\\big),
        \\qquad W_l, b_l \\sim \\mathcal N(0, 1)

    (NTK parameterisation, Jacot et al. 2018), then the linear readout of
    :class:`~reprior.core.architectures.base.Architecture`.  ``params["hidden"]`` is
    a list with one ``{"W": (fan_in, fan_out), "b": (fan_out,)}`` per layer.

    Inputs are ``x: (n, in_dim)``; images must be flattened first.
    """

    width: int = hyperparameter(_checks.positive_int)
    depth: int = hyperparameter(_checks.positive_int, 1)
    activation: str = hyperparameter(check_activation, "relu")
    w_std: float = hyperparameter(_checks.positive_float, 2**0.5)
    b_std: float = hyperparameter(_checks.nonnegative_float, 0.1)
    out_w_std: float = readout_w_std()
    out_b_std: float = readout_b_std()

    def check_inputs(self, x, name: str = "x"):
        shape = np.shape(x)
        if len(shape) != 2:
            hint = " (flatten images first, e.g. x.reshape(len(x), -1))" if len(shape) > 2 else ""
            raise _checks.fail(name, "inputs of shape (n, in_dim) for an MLP" + hint, f"array of shape {shape}")
        if shape[0] < 1 or shape[1] < 1:
            raise _checks.fail(name, "at least one row and one column", f"array of shape {shape}")

    def feature_dim(self, x_shape) -> int:
        return self.width

    def init_hidden(self, rng_key, x):
        """``params["hidden"]``: one ``{"W": (fan_in, width), "b": (width,)}`` per layer, i.i.d. N(0, 1)."""
        dims = [np.shape(x)[1]] + [self.width] * self.depth
        keys = jax.random.split(rng_key, self.depth)
        return [init_dense(k, dims[i], dims[i + 1]) for i, k in enumerate(keys)]

    def hidden_features(self, hidden, x) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        h = x
        for layer in hidden:
            h = act(dense(layer, h, self.w_std, self.b_std))
        return h


def nngp_kernel_parts(arch: MLP, x1, x2, expect):
    """The NNGP recursion of an MLP (Lee et al. 2018, eq. 4; see :mod:`reprior.core.nngp`), without validation.

    ``x1: (n1, in_dim)``, ``x2: (n2, in_dim)``; ``expect(k11, k22, k12)`` is the
    dual activation :math:`\\mathbb E[\\phi(u)\\phi(v)]`.  Returns
    ``(K(x1, x1) diagonal: (n1,), K(x2, x2) diagonal: (n2,), K(x1, x2): (n1, n2))``.
    The ``L`` layers (``L - 1`` hidden maps and the readout) are one
    ``lax.scan`` over their scales, and each step makes one call to the dual
    activation on the diagonals and the cross terms together, so the
    quadrature is compiled once whatever the depth.
    """
    n1, n2 = x1.shape[0], x2.shape[0]
    scale = arch.w_std**2 / x1.shape[1]
    var1 = scale * jnp.sum(x1**2, axis=1) + arch.b_std**2  # Sigma^1(x, x): (n1,)
    var2 = scale * jnp.sum(x2**2, axis=1) + arch.b_std**2  # (n2,)
    cross = scale * (x1 @ x2.T) + arch.b_std**2  # Sigma^1(x, x'): (n1, n2)
    state = jnp.concatenate([var1, var2, cross.reshape(-1)])
    left = jnp.concatenate([var1, var2, jnp.repeat(var1, n2)])  # variance of u per entry
    right = jnp.concatenate([var1, var2, jnp.tile(var2, n1)])  # variance of v per entry
    dtype = state.dtype
    w_vars = jnp.asarray([arch.w_std**2] * (arch.depth - 1) + [arch.out_w_std**2], dtype)
    b_vars = jnp.asarray([arch.b_std**2] * (arch.depth - 1) + [arch.out_b_std**2], dtype)

    def layer(carry, scales):
        state, left, right = carry
        w_var, b_var = scales
        state = w_var * expect(left, right, state) + b_var
        variances = state[: n1 + n2]
        left = jnp.concatenate([variances, jnp.repeat(variances[:n1], n2)])
        right = jnp.concatenate([variances, jnp.tile(variances[n1:], n1)])
        return (state, left, right), None

    (state, _, _), _ = jax.lax.scan(layer, (state, left, right), (w_vars, b_vars))
    return state[:n1], state[n1 : n1 + n2], state[n1 + n2 :].reshape(n1, n2)


def _from_settings(settings: dict) -> MLP:
    """The MLP of a sweep cell (NTK scales at their defaults)."""
    return MLP(settings["width"], settings["depth"], settings["activation"])


register_architecture(ArchitectureSpec(
    name="mlp", cls=MLP, default_depth=1, from_settings=_from_settings, nngp_kernel_parts=nngp_kernel_parts,
    image_inputs=False, help="fully connected; depth = hidden layers (default 1)"))
