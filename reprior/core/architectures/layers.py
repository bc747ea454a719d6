"""Building blocks in NTK parameterisation: N(0, 1) weights, scale in the forward pass."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "erf": erf,
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "tanh": jnp.tanh,
}


def dense(layer, x, w_std: float, b_std: float) -> jax.Array:
    """``z = x @ W * w_std / sqrt(fan_in) + b_std * b``.

    Shapes: ``x: (n, fan_in)``, ``W: (fan_in, fan_out)``, ``b: (fan_out,)``.
    """
    fan_in = layer["W"].shape[0]
    return (x @ layer["W"]) * (w_std / math.sqrt(fan_in)) + b_std * layer["b"]


def init_dense(rng_key, fan_in: int, fan_out: int) -> dict:
    w_key, b_key = jax.random.split(rng_key)
    return {"W": jax.random.normal(w_key, (fan_in, fan_out)), "b": jax.random.normal(b_key, (fan_out,))}


def conv(layer, x, w_std: float, b_std: float, stride: int = 1) -> jax.Array:
    """3x3 (or any) 'SAME' convolution in NTK parameterisation, NHWC layout.

    ``W: (kh, kw, c_in, c_out)``, scaled by ``w_std / sqrt(kh * kw * c_in)``:

    .. math::

        z_{b,i,j,c'} = \\frac{\\sigma_w}{\\sqrt{k_h k_w c_{\\mathrm{in}}}}
            \\sum_{u,v,c} \\tilde x_{b,\\, s i + u,\\, s j + v,\\, c}\\, W_{u,v,c,c'} + \\sigma_b b_{c'},

    with :math:`\\tilde x` the input zero-padded as XLA's 'SAME' pads it (``pad_lo = total // 2``).

    Computed as one matrix product of the ``kh * kw`` shifted copies of the input
    (im2col), not by ``lax.conv_general_dilated``: the same numbers, but XLA's CPU
    convolution runs 3-5x slower inside a loop body (``lax.scan``, ``while_loop``, so
    every MCMC kernel) than outside one, while a matrix product does not (the
    measured gradients of a ResNet are in docs/performance.md).  The patches take
    ``kh * kw`` times the input's memory.
    """
    kh, kw, c_in, c_out = layer["W"].shape
    _, height, width, _ = x.shape
    out_h, pad_h = same_padding(height, kh, stride)
    out_w, pad_w = same_padding(width, kw, stride)
    padded = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    shifted = [padded[:, u:u + (out_h - 1) * stride + 1:stride, v:v + (out_w - 1) * stride + 1:stride, :]
               for u in range(kh) for v in range(kw)]
    z = jnp.concatenate(shifted, axis=-1) @ layer["W"].reshape(kh * kw * c_in, c_out)
    return z * (w_std / math.sqrt(kh * kw * c_in)) + b_std * layer["b"]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, tuple[int, int]]:
    """Output size and ``(low, high)`` zero padding of a 'SAME' convolution along one axis, as in ``jax.lax``.

    Used by :func:`conv` and by the ResNet's NNGP recursion (:mod:`reprior.core.architectures.resnet`).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, (total // 2, total - total // 2)


def init_conv(rng_key, c_in: int, c_out: int, size: int = 3) -> dict:
    w_key, b_key = jax.random.split(rng_key)
    # Drawn flat and reshaped: same values, far cheaper to compile than a 4-D draw.
    return {
        "W": jax.random.normal(w_key, (size * size * c_in * c_out,)).reshape(size, size, c_in, c_out),
        "b": jax.random.normal(b_key, (c_out,)),
    }
