"""Tests for reprior.core.architectures.resnet: layout, forward pass, scales, init, validation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reprior.core.architectures import ResNet

RNG = np.random.default_rng(0)
# N(0, 1) images of the size of sklearn's digits, 8x8x1.
X8 = RNG.standard_normal((3, 8, 8, 1)).astype(np.float32)
# 32x32 (CIFAR-sized) images made by upsampling the 8x8 ones: spatially smooth, like real images.
X32 = np.kron(X8[:1], np.ones((1, 4, 4, 1), np.float32))

FLOAT = jax.dtypes.canonicalize_dtype(jnp.float64)  # float32, or float64 under JAX_ENABLE_X64=1


def num_blocks(depth):
    return 3 * ((depth - 2) // 6)


def param_shapes(net, x, out_dim):
    """The parameter pytree of ``net.init`` as ShapeDtypeStructs (traced, not compiled)."""
    return jax.eval_shape(lambda key: net.init(key, x, out_dim), jax.random.key(0))


def draw_params(net, x, out_dim, seed, num_draws=None):
    """i.i.d. N(0, 1) parameters in ``net.init``'s layout, drawn with NumPy.

    ``net.init`` itself is tested below; drawing here avoids compiling
    ``jax.random.normal`` for every 4-D kernel shape (seconds each on CPU), which
    keeps this file fast.  ``num_draws`` adds a leading axis of independent draws.
    """
    rng = np.random.default_rng(seed)
    lead = () if num_draws is None else (num_draws,)

    def draw(s):
        return jnp.asarray(rng.standard_normal(lead + s.shape, dtype=np.float32), s.dtype)

    return jax.tree_util.tree_map(draw, param_shapes(net, x, out_dim))


# -- layout, shapes and dtypes -----------------------------------------------------------


@pytest.mark.parametrize("depth", [8, 14])
@pytest.mark.parametrize("width", [2, 4])
def test_shapes_and_dtypes(width, depth):
    net = ResNet(width, depth)
    out_dim = 2
    shapes = param_shapes(net, X8, out_dim)
    hidden = shapes["hidden"]
    assert hidden["stem"]["W"].shape == (3, 3, 1, width)
    assert hidden["stem"]["b"].shape == (width,)
    blocks = hidden["blocks"]
    assert isinstance(blocks, list) and len(blocks) == num_blocks(depth)
    per_group = (depth - 2) // 6
    c_in = width
    for group in range(3):
        c_out = width * 2**group
        for i in range(per_group):
            block = blocks[group * per_group + i]
            first = i == 0
            assert set(block) == ({"conv1", "conv2", "shortcut"} if first else {"conv1", "conv2"})
            assert block["conv1"]["W"].shape == (3, 3, c_in, c_out)
            assert block["conv2"]["W"].shape == (3, 3, c_out, c_out)
            assert block["conv1"]["b"].shape == block["conv2"]["b"].shape == (c_out,)
            if first:
                assert block["shortcut"]["W"].shape == (3, 3, c_in, c_out)
                assert block["shortcut"]["b"].shape == (c_out,)
            c_in = c_out
    p = 4 * width + 1
    assert net.num_features(X8.shape) == p
    assert shapes["readout"]["W"].shape == (p - 1, out_dim)
    assert shapes["readout"]["b"].shape == (out_dim,)
    assert all(leaf.dtype == FLOAT for leaf in jax.tree_util.tree_leaves(shapes))

    params = draw_params(net, X8, out_dim, seed=1)
    psi = net.features(params, X8)
    assert psi.shape == (len(X8), p) and psi.dtype == FLOAT
    np.testing.assert_array_equal(psi[:, -1], np.full(len(X8), net.out_b_std, FLOAT))
    f = net.apply(params, X8)
    assert f.shape == (len(X8), out_dim) and f.dtype == FLOAT
    assert np.all(np.isfinite(f))


def test_block_specs_follow_groups():
    w = 3
    specs = ResNet(w, 14).block_specs()
    got = [(s.c_in, s.c_out, s.stride, s.has_shortcut) for s in specs]
    assert got == [
        (w, w, 1, True), (w, w, 1, False),
        (w, 2 * w, 2, True), (2 * w, 2 * w, 1, False),
        (2 * w, 4 * w, 2, True), (4 * w, 4 * w, 1, False),
    ]


@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 1, 1, 2)])
def test_odd_and_tiny_images(shape):
    """'SAME' padding with stride 2 handles odd sizes and 1x1 images."""
    net = ResNet(2, 8)
    x = RNG.standard_normal(shape)  # float64 in; cast to the parameter dtype
    params = draw_params(net, x, 1, seed=2)
    psi = net.features(params, x)
    assert psi.shape == (shape[0], 9) and psi.dtype == FLOAT
    assert np.all(np.isfinite(psi))


def test_jit_matches_eager():
    net = ResNet(2, 8, residual_scaling="progressive")
    params = draw_params(net, X8, 2, seed=3)
    np.testing.assert_allclose(jax.jit(net.apply)(params, X8), net.apply(params, X8), rtol=1e-5, atol=1e-6)


# -- forward pass against an independent NumPy reference -------------------------------


def np_conv(layer, x, w_std, b_std, stride=1):
    """NumPy 'SAME' convolution (XLA convention: pad_lo = total // 2), NTK scaled."""
    w = np.asarray(layer["W"], np.float64)
    kh, kw, c_in, _ = w.shape
    n, h, wd, _ = x.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - wd, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((n, oh, ow, w.shape[-1]))
    for a in range(kh):
        for c in range(kw):
            rows = slice(a, a + stride * (oh - 1) + 1, stride)
            cols = slice(c, c + stride * (ow - 1) + 1, stride)
            out += xp[:, rows, cols] @ w[a, c]
    return out * w_std / math.sqrt(kh * kw * c_in) + b_std * np.asarray(layer["b"], np.float64)


@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("height, width", [(8, 8), (7, 6), (1, 1), (2, 5)])
def test_conv_matches_xla_convolution_and_numpy(kernel, stride, height, width):
    """The im2col convolution equals XLA's own 'SAME' convolution and the loop reference."""
    from reprior.core.architectures.layers import conv

    rng = np.random.default_rng(height * 100 + width * 10 + stride + kernel)
    x = rng.standard_normal((2, height, width, 3))
    layer = {"W": rng.standard_normal((kernel, kernel, 3, 4)), "b": rng.standard_normal(4)}
    with jax.enable_x64(True):
        got = np.asarray(conv(jax.tree_util.tree_map(jnp.asarray, layer), jnp.asarray(x), 1.3, 0.2, stride))
        xla = jax.lax.conv_general_dilated(jnp.asarray(x), jnp.asarray(layer["W"]), (stride, stride), "SAME",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
        xla = np.asarray(xla) * 1.3 / math.sqrt(kernel * kernel * 3) + 0.2 * layer["b"]
    np.testing.assert_allclose(got, xla, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, np_conv(layer, x, 1.3, 0.2, stride), rtol=1e-12, atol=1e-12)


def test_same_padding_is_xlas():
    """The one 'SAME' padding rule (the convolution's and the NNGP recursion's) is jax.lax's."""
    from reprior.core.architectures.layers import same_padding

    for size in range(1, 10):
        for kernel in (1, 2, 3, 5):
            for stride in (1, 2, 3):
                out, pads = same_padding(size, kernel, stride)
                assert out == -(-size // stride)
                assert pads == tuple(jax.lax.padtype_to_pads((size,), (kernel,), (stride,), "SAME")[0])


def np_resnet_features(net, hidden, x, act):
    """The wide ResNet spelled out block by block, in float64."""
    per_group = (net.depth - 2) // 6
    scales = net.residual_scales()
    z = np_conv(hidden["stem"], np.asarray(x, np.float64), net.w_std, net.b_std)
    k = 0
    for group in range(3):
        for i in range(per_group):
            block, (alpha, beta) = hidden["blocks"][k], scales[k]
            stride = 2 if (group > 0 and i == 0) else 1
            u = np_conv(block["conv1"], act(z), net.w_std, net.b_std, stride)
            branch = np_conv(block["conv2"], act(u), net.w_std, net.b_std)
            skip = np_conv(block["shortcut"], z, net.w_std, net.b_std, stride) if i == 0 else z
            z = alpha * skip + beta * branch
            k += 1
    return act(z).mean(axis=(1, 2))


@pytest.mark.parametrize(
    "depth, activation, scaling",
    [(8, "relu", "progressive"), (14, "tanh", "uniform")],
)
def test_matches_numpy_reference(depth, activation, scaling):
    net = ResNet(2, depth, activation=activation, b_std=0.3, residual_scaling=scaling, residual_c=0.5)
    x = RNG.standard_normal((2, 7, 6, 2)).astype(np.float32)  # odd sizes exercise the stride-2 padding
    params = draw_params(net, x, 1, seed=4)
    act = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh}[activation]
    expected = np_resnet_features(net, params["hidden"], x, act)
    # float32 network against a float64 reference: ~20 layers of float32 rounding.
    np.testing.assert_allclose(net.hidden_features(params["hidden"], x), expected, rtol=1e-4, atol=1e-5)


# -- residual scales -----------------------------------------------------------------------


def test_uniform_scales():
    scales = ResNet(2, 20).residual_scales()
    assert len(scales) == 9
    np.testing.assert_allclose(scales, np.full((9, 2), 1 / math.sqrt(2)), rtol=1e-12)


@pytest.mark.parametrize("c", [0.5, 1.0, 3.0])
def test_progressive_scales(c):
    scales = np.array(ResNet(2, 20, residual_scaling="progressive", residual_c=c).residual_scales())
    k = np.arange(1, 10)
    np.testing.assert_allclose(scales[:, 1], 1 / np.sqrt(k + c), rtol=1e-12)
    np.testing.assert_allclose(scales[:, 0], np.sqrt(1 - 1 / (k + c)), rtol=1e-12)
    np.testing.assert_allclose((scales**2).sum(axis=1), 1.0, rtol=1e-12)  # variance preserving
    assert np.all(np.diff(scales[:, 1]) < 0)  # later branches contribute less


def _zero(params, name):
    """Copy of ``params`` with every ``name`` conv in the blocks set to zero (W and b)."""
    def zero(key, conv):
        return jax.tree_util.tree_map(jnp.zeros_like, conv) if key == name else conv

    blocks = [{key: zero(key, conv) for key, conv in block.items()} for block in params["hidden"]["blocks"]]
    return {**params, "hidden": {**params["hidden"], "blocks": blocks}}


@pytest.mark.parametrize(
    "depth, zeroed, which",
    [(14, "conv2", 0), (8, "shortcut", 1)],  # depth 8: every block has a shortcut conv
)
def test_scales_enter_the_forward_pass(depth, zeroed, which):
    """With ``b_std = 0`` and ReLU the network is positively homogeneous in each block.

    Zeroing every branch (``conv2``) leaves ``z_K = prod_k alpha_k * (net with alpha = 1)``;
    zeroing every shortcut conv in a depth-8 net (all blocks have one) leaves
    ``prod_k beta_k * (...)``.  So the features of the progressive and uniform nets
    differ exactly by the ratio of those products.
    """
    uniform = ResNet(2, depth, b_std=0.0)
    progressive = ResNet(2, depth, b_std=0.0, residual_scaling="progressive", residual_c=0.7)
    params = _zero(draw_params(uniform, X8, 1, seed=5), zeroed)
    h_u = uniform.hidden_features(params["hidden"], X8)
    h_p = progressive.hidden_features(params["hidden"], X8)
    ratio = np.prod([s[which] for s in progressive.residual_scales()]) / np.prod(
        [s[which] for s in uniform.residual_scales()]
    )
    assert np.linalg.norm(h_u) > 0
    np.testing.assert_allclose(h_p, ratio * h_u, rtol=1e-5, atol=1e-7)


# -- initialisation ----------------------------------------------------------------------


# ``net.init`` compiles ``jax.random.normal`` once per kernel shape (~1 s each on CPU): with as
# many input channels as the width, this net has five distinct 4-D shapes.
INIT_NET = ResNet(2, 14)
X_INIT = RNG.standard_normal((3, 8, 8, 2)).astype(np.float32)


def test_init_matches_documented_layout():
    params = INIT_NET.init(jax.random.key(6), X_INIT, 3)
    shapes = param_shapes(INIT_NET, X_INIT, 3)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(shapes)
    for leaf, s in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(shapes), strict=True):
        assert leaf.shape == s.shape and leaf.dtype == s.dtype == FLOAT


def test_init_leaves_are_iid_standard_normal():
    params = INIT_NET.init(jax.random.key(6), X_INIT, 3)
    leaves = [np.asarray(leaf, np.float64).ravel() for leaf in jax.tree_util.tree_leaves(params)]
    allv = np.concatenate(leaves)
    n = allv.size
    # mean has sd 1/sqrt(N), sample variance has sd sqrt(2/N): allow 5 sd.
    assert abs(allv.mean()) < 5 / math.sqrt(n)
    assert abs(allv.var() - 1) < 5 * math.sqrt(2 / n)
    for v in leaves:
        if v.size >= 100:  # the same bounds per leaf of 100+ entries (~15 of them: 5 sd each)
            assert abs(v.mean()) < 5 / math.sqrt(v.size)
            assert abs(v.var() - 1) < 5 * math.sqrt(2 / v.size)
    # independent keys per leaf: no two leaves of the same size share their draws
    for i, a in enumerate(leaves):
        for b in leaves[i + 1 :]:
            if a.size == b.size:
                assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(a.size)


def test_init_is_deterministic_in_the_key():
    a, b = INIT_NET.init(jax.random.key(7), X_INIT, 3), INIT_NET.init(jax.random.key(7), X_INIT, 3)
    c = INIT_NET.init(jax.random.key(8), X_INIT, 3)
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    assert not np.allclose(a["hidden"]["stem"]["W"], c["hidden"]["stem"]["W"])


# -- output variance at init ---------------------------------------------------------------

NUM_INITS = 128


def _second_moment(net, x, seed):
    """``E[f(x)^2 | hidden] = |Psi(x)|^2: (NUM_INITS, n)`` over i.i.d. N(0, 1) hidden layers.

    The readout is N(0, 1) and independent of the hidden layers, so integrating it
    out is exact; the Monte Carlo is over the hidden layers only.
    """
    params = draw_params(net, x, 1, seed=seed, num_draws=NUM_INITS)
    second_moment = jax.jit(lambda p: jax.lax.map(lambda q: jnp.sum(net.features(q, x) ** 2, axis=1), p))
    return np.asarray(second_moment(params), np.float64)


@pytest.mark.parametrize(
    "scaling, x",
    [("uniform", X32), ("progressive", X8)],
    ids=["uniform-32x32", "progressive-8x8"],
)
def test_output_variance_is_order_one_and_preserved_with_depth(scaling, x):
    """``E[f(x)^2]`` over random inits stays O(1) from depth 8 to depth 20.

    In the infinite-width limit ``alpha_k^2 + beta_k^2 = 1`` and ``w_std^2 = 2``
    with ReLU keep the per-pixel second moment fixed through each block, except
    for (a) zero padding at image borders, which shrinks it, and (b) the shortcut
    conv of each group (it reads the pre-activation, so it multiplies by ~2 on
    its path: ~1.5 per group, independent of depth).  At width 16 with 128 inits
    the measured values are 1.05, 1.06, 1.17 (uniform, 32x32) and 0.93, 0.78,
    0.80 (progressive, 8x8), with standard errors 0.02 - 0.09 (finite width makes
    |Psi|^2 heavy tailed, more so with depth).  The bands below, [0.25, 4] and a
    factor 2 against depth 8, are more than 5 standard errors from every value.

    Uniform scaling is checked on 32x32 images only: on 8x8 images the last group
    runs at 2x2, where every 3x3 'SAME' conv sees at most 4 of its 9 taps, and the
    uniform net loses more than half its output variance per extra block per group
    (0.63, 0.27, 0.14).  Progressive scaling shrinks the late branches, so its
    output variance holds even there.
    """
    moments, std_errors = {}, {}
    for depth in (8, 14, 20):
        per_init = _second_moment(ResNet(16, depth, residual_scaling=scaling), x, seed=depth).mean(axis=1)
        moments[depth] = per_init.mean()
        std_errors[depth] = per_init.std() / math.sqrt(NUM_INITS)
        assert 0.25 < moments[depth] < 4.0, (depth, moments, std_errors)
    for depth in (14, 20):
        assert 0.5 < moments[depth] / moments[8] < 2.0, (moments, std_errors)


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"width": 4, "depth": 7}, "depth"),
        ({"width": 4, "depth": 9}, "depth"),
        ({"width": 4, "depth": 2}, "depth"),
        ({"width": 4, "depth": 0}, "depth"),
        ({"width": 4, "depth": 8.0}, "depth"),
        ({"width": 4, "depth": True}, "depth"),
        ({"width": 0}, "width"),
        ({"width": -2}, "width"),
        ({"width": 2.5}, "width"),
        ({"width": 4, "activation": "sigmoid"}, "activation"),
        ({"width": 4, "residual_scaling": "fixup"}, "residual_scaling"),
        ({"width": 4, "residual_c": 0.0}, "residual_c"),
        ({"width": 4, "residual_c": -1.0}, "residual_c"),
        ({"width": 4, "w_std": 0.0}, "w_std"),
        ({"width": 4, "b_std": -0.1}, "b_std"),
        ({"width": 4, "out_w_std": float("nan")}, "out_w_std"),
        ({"width": 4, "out_b_std": -1.0}, "out_b_std"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        ResNet(**kwargs)


def test_depth_error_says_what_is_expected():
    with pytest.raises(ValueError, match=r"6k \+ 2") as err:
        ResNet(4, 10)
    assert "10" in str(err.value)


@pytest.mark.parametrize("shape", [(3, 64), (3, 8, 8), (3,), (0, 8, 8, 1), (3, 0, 8, 1)])
def test_bad_inputs(shape):
    net = ResNet(2, 8)
    x = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match="`x`") as err:
        net.init(jax.random.key(0), x, 1)
    if len(shape) != 4:
        assert "(n, H, W, C)" in str(err.value)


def test_flat_input_to_features_is_refused():
    net = ResNet(2, 8)
    params = draw_params(net, X8, 1, seed=0)
    with pytest.raises(ValueError, match=r"images of shape \(n, H, W, C\)"):
        net.features(params, X8.reshape(len(X8), -1))
