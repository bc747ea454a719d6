"""Normaliser-free wide ResNet in NTK parameterisation (Hron et al. 2022)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from reprior._util import checks as _checks
from reprior.core.architectures.base import Architecture, check_activation, hyperparameter, readout_b_std, readout_w_std
from reprior.core.architectures.layers import ACTIVATIONS, conv, init_conv, same_padding
from reprior.core.architectures.registry import ArchitectureSpec, register_architecture

RESIDUAL_SCALINGS = ("uniform", "progressive")


def _check_depth(name: str, depth) -> int:
    is_int = isinstance(depth, numbers.Integral) and not isinstance(depth, bool)
    if not (is_int and depth >= 8 and (depth - 2) % 6 == 0):
        raise _checks.fail(name, "an integer 6k + 2 with k >= 1 (8, 14, 20, ...)", depth)
    return int(depth)


def _check_scaling(name: str, value) -> str:
    return _checks.one_of(name, value, RESIDUAL_SCALINGS)


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

    then the linear readout of :class:`~reprior.core.architectures.base.Architecture`
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

    width: int = hyperparameter(_checks.positive_int)
    depth: int = hyperparameter(_check_depth, 8)
    activation: str = hyperparameter(check_activation, "relu")
    w_std: float = hyperparameter(_checks.positive_float, 2**0.5)
    b_std: float = hyperparameter(_checks.nonnegative_float, 0.1)
    out_w_std: float = readout_w_std()
    out_b_std: float = readout_b_std()
    residual_scaling: str = hyperparameter(_check_scaling, "uniform")
    residual_c: float = hyperparameter(_checks.positive_float, 1.0)

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

    def init_hidden(self, rng_key, x):
        """``params["hidden"]``: ``{"stem": conv, "blocks": [{"conv1", "conv2"[, "shortcut"]} per block]}``
        (each conv ``{"W", "b"}``), every leaf i.i.d. N(0, 1)."""
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


def _init_block(rng_key, spec: BlockSpec) -> dict:
    k1, k2, k_sc = jax.random.split(rng_key, 3)
    block = {"conv1": init_conv(k1, spec.c_in, spec.c_out), "conv2": init_conv(k2, spec.c_out, spec.c_out)}
    if spec.has_shortcut:
        block["shortcut"] = init_conv(k_sc, spec.c_in, spec.c_out)
    return block


# -- the NNGP limit: the convolutional recursion -------------------------------------------
# Covariances of feature maps are tensors ``(..., H, W, H, W)``: entry
# ``[..., i, j, k, l]`` is the covariance of one channel at pixel (i, j) of the
# first input and pixel (k, l) of the second.  Leading axes are ``(n1,)`` for
# an input with itself and ``(n1, n2)`` across inputs.  A network is followed
# as a triple ``(S11, S22, S12)``: the self-covariances give the pixel variances
# the dual activation needs.
def _spatial_diag(cov) -> jax.Array:
    """``(..., H, W, H, W) -> (..., H, W)``: the variance of every pixel."""
    h, w = cov.shape[-2:]
    flat = cov.reshape(cov.shape[:-4] + (h * w, h * w))
    return jnp.diagonal(flat, axis1=-2, axis2=-1).reshape(cov.shape[:-4] + (h, w))


def conv_cov(cov, stride: int, w_std: float, b_std: float) -> jax.Array:
    """Covariance after a 3x3 'SAME' convolution in NTK parameterisation.

    ``cov``: the covariance ``(..., H, W, H, W)`` of the inputs between pixels, averaged over their
    channels (entry ``[..., i, j, k, l]`` for pixel ``(i, j)`` of one input and ``(k, l)`` of the
    other); returns that of one output channel of :func:`reprior.core.architectures.layers.conv`
    (weights and biases i.i.d. N(0, 1), scaled by ``w_std`` and ``b_std``), ``(..., H', W', H', W')``
    with ``H' = ceil(H / stride)``.  A building block of NNGP recursions for convolutional networks
    (:func:`nngp_kernel_parts`):

    .. math::

        \\Sigma'_{(i, j), (k, l)} = \\frac{\\sigma_w^2}{9} \\sum_{a, b = 0}^{2}
            \\Sigma_{(s i + a - p,\\, s j + b - p), (s k + a - p,\\, s l + b - p)}
            + \\sigma_b^2,

    with stride ``s``, zero padding ``p`` (out-of-range terms vanish) and the
    same offset ``(a, b)`` on both sides, since different taps have independent
    weights (Novak et al. 2019; Garriga-Alonso et al. 2019).
    """
    h, w = cov.shape[-2:]
    h_out, (h_lo, h_hi) = same_padding(h, 3, stride)
    w_out, (w_lo, w_hi) = same_padding(w, 3, stride)
    pads = [(0, 0)] * (cov.ndim - 4) + [(h_lo, h_hi), (w_lo, w_hi)] * 2
    padded = jnp.pad(cov, pads)
    rows = [slice(a, a + stride * (h_out - 1) + 1, stride) for a in range(3)]
    cols = [slice(b, b + stride * (w_out - 1) + 1, stride) for b in range(3)]
    total = sum(padded[..., r, c, r, c] for r in rows for c in cols)
    return w_std**2 / 9 * total + b_std**2


def _dual_triple(expect, s11, s22, s12):
    """``E[phi(u) phi(v)]`` for the three covariance tensors, in one call to ``expect``."""
    v1, v2 = _spatial_diag(s11), _spatial_diag(s22)  # (n1, H, W), (n2, H, W)
    pairs = [
        (v1[:, :, :, None, None], v1[:, None, None, :, :], s11),
        (v2[:, :, :, None, None], v2[:, None, None, :, :], s22),
        (v1[:, None, :, :, None, None], v2[None, :, None, None, :, :], s12),
    ]
    flat = [jnp.concatenate([jnp.broadcast_to(p[i], p[2].shape).reshape(-1) for p in pairs]) for i in range(3)]
    out = expect(*flat)
    sizes = np.cumsum([p[2].size for p in pairs])[:-1]
    return tuple(part.reshape(p[2].shape) for part, p in zip(jnp.split(out, sizes), pairs, strict=True))


def nngp_kernel_parts(arch: ResNet, x1, x2, expect):
    """The NNGP recursion of :class:`~reprior.core.architectures.ResNet` (no validation).

    Stem :math:`\\Sigma_0 = \\mathcal C(\\Sigma_x)` with
    :math:`\\Sigma_x = x x'^\\top / C` per pixel pair and :math:`\\mathcal C` the
    convolution map of :func:`conv_cov`; block ``k``

    .. math::

        \\Sigma_k = \\alpha_k^2\\, S_k(\\Sigma_{k-1})
            + \\beta_k^2\\, \\mathcal C\\big(\\mathcal D(\\mathcal C_s(\\mathcal D(\\Sigma_{k-1})))\\big),

    where :math:`\\mathcal D` applies the dual activation entrywise, ``S_k`` is
    the identity or the strided shortcut convolution :math:`\\mathcal C_s`
    (skip and branch have independent weights, so they add in covariance); the
    readout averages over both pixel grids,
    :math:`K = \\sigma_{w,\\mathrm{out}}^2\\, \\overline{\\mathcal D(\\Sigma_K)}
    + \\sigma_{b,\\mathrm{out}}^2`.
    """
    channels = x1.shape[-1]
    state = (jnp.einsum("aijc,aklc->aijkl", x1, x1) / channels,
             jnp.einsum("aijc,aklc->aijkl", x2, x2) / channels,
             jnp.einsum("aijc,bklc->abijkl", x1, x2) / channels)

    def conv(triple, stride):
        return tuple(conv_cov(c, stride, arch.w_std, arch.b_std) for c in triple)

    state = conv(state, 1)
    for spec in arch.block_specs():
        branch = conv(_dual_triple(expect, *conv(_dual_triple(expect, *state), spec.stride)), 1)
        skip = conv(state, spec.stride) if spec.has_shortcut else state
        state = tuple(spec.skip_scale**2 * s + spec.branch_scale**2 * b for s, b in zip(skip, branch, strict=True))
    d11, d22, d12 = _dual_triple(expect, *state)
    readout = lambda d: arch.out_w_std**2 * jnp.mean(d, axis=(-4, -3, -2, -1)) + arch.out_b_std**2  # noqa: E731
    return readout(d11), readout(d22), readout(d12)


def _from_settings(settings: dict) -> ResNet:
    """The ResNet of a sweep cell (NTK scales at their defaults)."""
    return ResNet(settings["width"], settings["depth"], settings["activation"],
                  residual_scaling=settings["residual_scaling"])


register_architecture(ArchitectureSpec(
    name="resnet", cls=ResNet, default_depth=8, from_settings=_from_settings, nngp_kernel_parts=nngp_kernel_parts,
    image_inputs=True, settings=("residual_scaling",), help="wide ResNet on images; depth 6k + 2 (default 8)"))
