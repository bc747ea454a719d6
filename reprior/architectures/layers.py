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

    ``W: (kh, kw, c_in, c_out)``, scaled by ``w_std / sqrt(kh * kw * c_in)``.
    """
    kh, kw, c_in, _ = layer["W"].shape
    z = jax.lax.conv_general_dilated(
        x,
        layer["W"],
        window_strides=(stride, stride),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return z * (w_std / math.sqrt(kh * kw * c_in)) + b_std * layer["b"]


def init_conv(rng_key, c_in: int, c_out: int, size: int = 3) -> dict:
    w_key, b_key = jax.random.split(rng_key)
    # Drawn flat and reshaped: same values, far cheaper to compile than a 4-D draw.
    return {
        "W": jax.random.normal(w_key, (size * size * c_in * c_out,)).reshape(size, size, c_in, c_out),
        "b": jax.random.normal(b_key, (c_out,)),
    }
