"""Normaliser-free wide ResNet in NTK parameterisation (Hron et al. 2022)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from .base import Architecture
from .layers import ACTIVATIONS, conv, init_conv

RESIDUAL_SCALINGS = ("uniform", "progressive")


class BlockSpec(NamedTuple):
    """Static description of one residual block (no arrays)."""

    c_in: int
    c_out: int
    stride: int
    has_shortcut: bool
    skip_scale: float
    branch_scale: float


@dataclasses.dataclass(frozen=True)
class ResNet(Architecture):
    """Wide ResNet without normalisation layers, for images ``x: (n, H, W, C)``.

    Every convolution is 3x3 with 'SAME' padding in NTK parameterisation,

    .. math::

        \\mathrm{conv}(z)_{i, c'} = \\frac{\\sigma_w}{\\sqrt{9\\, c_{\\mathrm{in}}}}
            \\sum_{a \\in 3 \\times 3} \\sum_{c} W_{a, c, c'}\\, z_{s i + a, c}
            + \\sigma_b\\, b_{c'}, \\qquad W, b \\sim \\mathcal N(0, 1),

    with stride ``s``.  A stem convolution ``z_0 = conv_0(x)`` (``width``
    channels) is followed by ``K = 3 (depth - 2) / 6`` residual blocks in three
    groups of ``(depth - 2) / 6`` blocks, of ``width``, ``2 width`` and
    ``4 width`` channels.  Block ``k = 1, ..., K`` computes

    .. math::

        z_k = \\alpha_k\\, S_k(z_{k-1})
              + \\beta_k\\, \\mathrm{conv}_{k,2}\\big(\\phi(\\mathrm{conv}_{k,1}(\\phi(z_{k-1})))\\big),

    where ``conv_{k,1}`` has stride 2 in the first block of groups two and three
    (stride 1 otherwise), and the shortcut ``S_k`` is the identity except in the
    first block of each group, where it is a 3x3 convolution of ``z_{k-1}``
    with that same stride, from ``c_in`` to ``c_out`` channels (as in the
    ``WideResnet`` of Neural Tangents used by Hron et al. 2022).  The branch
    scales are

    .. math::

        \\text{uniform:}\\quad \\alpha_k = \\beta_k = 1/\\sqrt{2}, \\qquad
        \\text{progressive:}\\quad \\beta_k = \\frac{1}{\\sqrt{k + c}},\\;
        \\alpha_k = \\sqrt{1 - \\frac{1}{k + c}},

    the latter from Shao et al. 2020 with ``c = residual_c``; in both cases
    ``alpha_k**2 + beta_k**2 = 1``, so the second moment of ``z_k`` stays
    O(1) with depth.  The features are the global average pool

    .. math::

        h(x)_{c} = \\frac{1}{H_K W_K} \\sum_{i, j} \\phi(z_K)_{i, j, c}
        \\in \\mathbb{R}^{4\\, \\mathrm{width}},

    then the linear readout of :class:`~reprior.architectures.base.Architecture`
    (``p = 4 width + 1``).  Parameter layout of ``params["hidden"]``::

        {"stem": {"W": (3, 3, C, width), "b": (width,)},
         "blocks": [{"conv1": {"W": (3, 3, c_in, c_out), "b": (c_out,)},
                     "conv2": {"W": (3, 3, c_out, c_out), "b": (c_out,)},
                     "shortcut": {"W": (3, 3, c_in, c_out), "b": (c_out,)}},  # first block of a group only
                    ...]}                                                         # K blocks, in order

    Inputs keep their spatial layout, ``x: (n, H, W, C)`` (NHWC); the last
    group runs at ``ceil(H / 4) x ceil(W / 4)``.  On very small images zero
    padding matters: for 8x8 inputs (sklearn digits) every 3x3 conv of the last
    group sees at most 4 of its 9 taps, and with ``"uniform"`` scaling the output
    variance at init roughly halves per extra block per group; ``"progressive"``
    scaling keeps it O(1) there (see ``tests/test_resnet.py``).
    """

    width: int = 16
    depth: int = 8
    activation: str = "relu"
    w_std: float = 2**0.5
    b_std: float = 0.1
    out_w_std: float = 1.0
    out_b_std: float = 0.1
    residual_scaling: str = "uniform"
    residual_c: float = 1.0

    def __init__(self, width: int, depth: int = 8, activation: str = "relu", w_std: float = 2**0.5,
                 b_std: float = 0.1, out_w_std: float = 1.0, out_b_std: float = 0.1,
                 residual_scaling: str = "uniform", residual_c: float = 1.0):
        set_ = object.__setattr__
        set_(self, "width", _checks.positive_int("width", width))
        set_(self, "depth", _check_depth(depth))
        set_(self, "activation", _checks.one_of("activation", activation, tuple(ACTIVATIONS)))
        set_(self, "w_std", _checks.positive_float("w_std", w_std))
        set_(self, "b_std", _checks.nonnegative_float("b_std", b_std))
        set_(self, "out_w_std", _checks.positive_float("out_w_std", out_w_std))
        set_(self, "out_b_std", _checks.nonnegative_float("out_b_std", out_b_std))
        scaling = _checks.one_of("residual_scaling", residual_scaling, RESIDUAL_SCALINGS)
        set_(self, "residual_scaling", scaling)
        set_(self, "residual_c", _checks.positive_float("residual_c", residual_c))

    # -- static structure -----------------------------------------------------------
    @property
    def blocks_per_group(self) -> int:
        """``(depth - 2) / 6``."""
        return (self.depth - 2) // 6

    def residual_scales(self) -> list[tuple[float, float]]:
        """``[(alpha_k, beta_k)]`` for ``k = 1, ..., K``: skip and branch scales."""
        num_blocks = 3 * self.blocks_per_group
        if self.residual_scaling == "uniform":
            return [(math.sqrt(0.5), math.sqrt(0.5))] * num_blocks
        ks = [k + self.residual_c for k in range(1, num_blocks + 1)]
        return [(math.sqrt(1.0 - 1.0 / kc), 1.0 / math.sqrt(kc)) for kc in ks]

    def block_specs(self) -> list[BlockSpec]:
        """Channels, stride, shortcut and scales of every block, in order."""
        scales = iter(self.residual_scales())
        specs, c_in = [], self.width
        for group, stride in enumerate((1, 2, 2)):
            c_out = self.width * 2**group
            for i in range(self.blocks_per_group):
                first = i == 0
                specs.append(BlockSpec(c_in, c_out, stride if first else 1, first, *next(scales)))
                c_in = c_out
        return specs

    # -- Architecture interface -----------------------------------------------------
    def check_inputs(self, x, name: str = "x"):
        shape = np.shape(x)
        if len(shape) != 4:
            hint = " (reshape flat inputs, e.g. x.reshape(n, H, W, C))" if len(shape) == 2 else ""
            expected = "images of shape (n, H, W, C) for a ResNet" + hint
            raise _checks.fail(name, expected, f"array of shape {shape}")
        if min(shape) < 1:
            raise _checks.fail(name, "n, H, W, C >= 1", f"array of shape {shape}")

    def feature_dim(self, x_shape) -> int:
        return 4 * self.width

    def _init_hidden(self, rng_key, x):
        specs = self.block_specs()
        stem_key, *block_keys = jax.random.split(rng_key, len(specs) + 1)
        return {
            "stem": init_conv(stem_key, np.shape(x)[-1], self.width),
            "blocks": [_init_block(key, spec) for key, spec in zip(block_keys, specs, strict=True)],
        }

    def hidden_features(self, hidden, x) -> jax.Array:
        self.check_inputs(x)  # shapes only, so also safe under jit
        act = ACTIVATIONS[self.activation]
        stem = hidden["stem"]
        z = conv(stem, jnp.asarray(x, stem["W"].dtype), self.w_std, self.b_std)
        for block, spec in zip(hidden["blocks"], self.block_specs(), strict=True):
            z = self._block(block, spec, z, act)
        return jnp.mean(act(z), axis=(1, 2))

    def _block(self, block, spec: BlockSpec, z, act) -> jax.Array:
        """``z: (n, H, W, c_in) -> (n, H / stride, W / stride, c_out)`` (rounded up)."""
        u = conv(block["conv1"], act(z), self.w_std, self.b_std, stride=spec.stride)
        branch = conv(block["conv2"], act(u), self.w_std, self.b_std)
        skip = z
        if spec.has_shortcut:
            skip = conv(block["shortcut"], z, self.w_std, self.b_std, stride=spec.stride)
        return spec.skip_scale * skip + spec.branch_scale * branch


def _check_depth(depth) -> int:
    is_int = isinstance(depth, numbers.Integral) and not isinstance(depth, bool)
    if not (is_int and depth >= 8 and (depth - 2) % 6 == 0):
        raise _checks.fail("depth", "an integer 6k + 2 with k >= 1 (8, 14, 20, ...)", depth)
    return int(depth)


def _init_block(rng_key, spec: BlockSpec) -> dict:
    k1, k2, k_sc = jax.random.split(rng_key, 3)
    block = {"conv1": init_conv(k1, spec.c_in, spec.c_out), "conv2": init_conv(k2, spec.c_out, spec.c_out)}
    if spec.has_shortcut:
        block["shortcut"] = init_conv(k_sc, spec.c_in, spec.c_out)
    return block
