"""Tests for reprior.core.architectures (MLP and the shared readout): layout, forward pass, init, validation.

The ResNet has its own file, ``tests/test_resnet.py``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import float_dtype
from scipy.special import erf as np_erf

import reprior
from reprior.core.architectures import ACTIVATIONS, MLP, readout_matrix, split_readout, with_readout

NP_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0.0),
    "erf": np_erf,
    "gelu": lambda z: 0.5 * z * (1.0 + np_erf(z / math.sqrt(2.0))),
    "tanh": np.tanh,
}


def numpy_forward(net: MLP, params, x):
    """The NTK-parameterised MLP written out in NumPy, from the docstring's formula."""
    act = NP_ACTIVATIONS[net.activation]
    h = np.asarray(x, np.float64)
    for layer in params["hidden"]:
        W, b = np.asarray(layer["W"], np.float64), np.asarray(layer["b"], np.float64)
        h = act(h @ W * net.w_std / math.sqrt(W.shape[0]) + net.b_std * b)
    psi = np.concatenate([net.out_w_std * h / math.sqrt(h.shape[1]), np.full((len(h), 1), net.out_b_std)], axis=1)
    theta_out = np.concatenate([params["readout"]["W"], params["readout"]["b"][None]], axis=0)
    return psi, psi @ theta_out


def test_activations_registry():
    assert set(ACTIVATIONS) >= {"relu", "erf", "gelu", "tanh"}


@pytest.mark.parametrize(
    "width, depth, activation, in_dim, out_dim, x64",
    [
        (1, 1, "relu", 1, 1, False),
        (7, 1, "erf", 3, 2, True),
        (16, 2, "gelu", 5, 3, False),
        (5, 3, "tanh", 2, 1, True),
        (9, 2, "relu", 4, 2, True),
    ],
)
def test_mlp_layout_shapes_and_dtypes(width, depth, activation, in_dim, out_dim, x64):
    net = MLP(width, depth=depth, activation=activation)
    x = np.random.default_rng(1).standard_normal((4, in_dim))
    with jax.enable_x64(x64):
        dtype = float_dtype()
        xj = jnp.asarray(x, dtype)

        @jax.jit
        def init_and_apply(key, x):
            params = net.init(key, x, out_dim)
            return params, net.features(params, x), net.apply(params, x)

        params, psi, f = init_and_apply(jax.random.key(0), xj)
        assert len(params["hidden"]) == depth
        fan_ins = [in_dim] + [width] * (depth - 1)
        for layer, fan_in in zip(params["hidden"], fan_ins, strict=True):
            assert layer["W"].shape == (fan_in, width) and layer["b"].shape == (width,)
            assert layer["W"].dtype == dtype and layer["b"].dtype == dtype
        assert params["readout"]["W"].shape == (width, out_dim)
        assert params["readout"]["b"].shape == (out_dim,)
        assert net.num_features(x.shape) == width + 1
        assert psi.shape == (4, width + 1) and psi.dtype == dtype
        assert f.shape == (4, out_dim) and f.dtype == dtype
        # The bias column is last and constant.
        np.testing.assert_array_equal(np.asarray(psi[:, -1]), np.full(4, net.out_b_std, dtype))
        # apply == features @ readout, and both match the formula written out in NumPy.
        tol = 1e-12 if x64 else 2e-5  # float32: a few ulp per layer against a float64 reference
        np.testing.assert_allclose(f, np.asarray(psi, np.float64) @ readout_matrix(params), rtol=tol, atol=tol)
        psi_np, f_np = numpy_forward(net, jax.tree_util.tree_map(np.asarray, params), x)
        np.testing.assert_allclose(psi, psi_np, rtol=tol, atol=tol)
        np.testing.assert_allclose(f, f_np, rtol=tol, atol=tol)


def test_mlp_hyperparameters_enter_the_forward_pass():
    x = np.random.default_rng(2).standard_normal((3, 2))
    base = dict(width=4, depth=2, activation="tanh")
    params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), MLP(**base).init(jax.random.key(0), x, 1))
    _, f_base = numpy_forward(MLP(**base), params, x)
    for variant in [dict(w_std=0.7), dict(b_std=1.3), dict(out_w_std=2.0), dict(out_b_std=0.5)]:
        net = MLP(**base, **variant)
        _, f_np = numpy_forward(net, params, x)
        with jax.enable_x64(True):
            np.testing.assert_allclose(jax.jit(net.apply)(params, x), f_np, rtol=1e-12)
        assert not np.allclose(f_np, f_base)


def test_mlp_init_is_standard_normal_and_keyed():
    """Every leaf i.i.d. N(0, 1): moments of a large draw, within a few standard errors."""
    net = MLP(256, depth=2)
    x = np.zeros((1, 64))
    init = jax.jit(net.init, static_argnums=2)
    params = init(jax.random.key(0), x, 8)
    leaves = np.concatenate([np.ravel(leaf) for leaf in jax.tree_util.tree_leaves(params)])
    num = leaves.size  # 64*256 + 256 + 256*256 + 256 + 256*8 + 8 = 84 232
    assert abs(leaves.mean()) < 5 / math.sqrt(num)
    assert abs(leaves.var() - 1) < 5 * math.sqrt(2 / num)
    assert abs(np.mean(leaves**4) - 3) < 5 * math.sqrt(96 / num)  # Var(z^4) = 105 - 9
    # Different leaves are different draws, and the key decides everything.
    assert not np.allclose(params["hidden"][1]["W"][:, :8], params["readout"]["W"][:256])
    again = init(jax.random.key(0), x, 8)
    other = init(jax.random.key(1), x, 8)
    np.testing.assert_array_equal(leaves, np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(again)]))
    assert not np.allclose(params["readout"]["W"], other["readout"]["W"])


def test_ntk_scaling_keeps_the_prior_output_variance_width_independent():
    """E[f(x)^2] = out_w_std^2 E[relu(z)^2] + out_b_std^2 with z ~ N(0, w_std^2 |x|^2 / in_dim + b_std^2),
    at every width (NTK parameterisation: the 1/sqrt(fan_in) is in the forward pass)."""
    x = np.full((1, 3), 0.8)
    num_draws = 2000
    for width in (8, 512):
        net = MLP(width, out_b_std=0.3)
        keys = jax.random.split(jax.random.key(width), num_draws)
        f = np.asarray(jax.jit(jax.vmap(lambda k: net.apply(net.init(k, x, 1), x)[0, 0]))(keys), np.float64)
        var_z = net.w_std**2 * np.sum(x**2) / x.shape[1] + net.b_std**2
        expected = net.out_w_std**2 * var_z / 2 + net.out_b_std**2  # E[relu(z)^2] = Var z / 2
        stderr = np.std(f**2) / math.sqrt(num_draws)  # i.i.d. draws
        assert abs(np.mean(f**2) - expected) < 4 * stderr, (width, np.mean(f**2), expected, stderr)


def test_readout_helpers_round_trip():
    theta_out = jnp.arange(12.0).reshape(4, 3)
    parts = split_readout(theta_out)
    assert parts["W"].shape == (3, 3) and parts["b"].shape == (3,)
    params = with_readout({"hidden": [1], "readout": None}, theta_out)
    assert params["hidden"] == [1]
    np.testing.assert_array_equal(readout_matrix(params), theta_out)


def test_mlp_is_hashable_and_has_a_useful_repr():
    net = MLP(8, depth=2, activation="erf")
    assert net == MLP(8, depth=2, activation="erf") and hash(net) == hash(MLP(8, depth=2, activation="erf"))
    assert "width=8" in repr(net) and "erf" in repr(net)
    assert reprior.MLP is MLP


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(width=0), "width"),
        (dict(width=-3), "width"),
        (dict(width=2.5), "width"),
        (dict(width=True), "width"),
        (dict(width=4, depth=0), "depth"),
        (dict(width=4, activation="sigmoid"), "activation"),
        (dict(width=4, w_std=0.0), "w_std"),
        (dict(width=4, b_std=-1.0), "b_std"),
        (dict(width=4, out_w_std=float("nan")), "out_w_std"),
        (dict(width=4, out_b_std=-0.1), "out_b_std"),
    ],
)
def test_mlp_rejects_bad_hyperparameters(kwargs, name):
    with pytest.raises(ValueError, match=rf"`{name}`: expected .* received"):
        MLP(**kwargs)


@pytest.mark.parametrize(
    "shape, hint",
    [((5, 8, 8, 1), "flatten"), ((5,), "in_dim"), ((0, 3), "at least one row"), ((5, 0), "at least one row")],
)
def test_mlp_rejects_bad_input_shapes(shape, hint):
    net = MLP(4)
    with pytest.raises(ValueError, match=rf"`x`: expected .*{hint}.* received .*{re_shape(shape)}"):
        net.init(jax.random.key(0), np.zeros(shape), 1)
    with pytest.raises(ValueError, match=r"`x_test`"):
        net.check_inputs(np.zeros(shape), "x_test")


def re_shape(shape) -> str:
    """A regex matching ``str(shape)`` literally."""
    import re

    return re.escape(str(tuple(shape)))


def test_init_rejects_bad_out_dim():
    with pytest.raises(ValueError, match=r"`out_dim`: expected a positive integer, received 0"):
        MLP(4).init(jax.random.key(0), np.zeros((2, 3)), 0)


# -- dataclass fields, validated once in Architecture.__post_init__ --------------------------
@pytest.mark.parametrize("cls, extra", [(MLP, {}), (reprior.ResNet, {"depth": 8})])
def test_post_init_validates_every_constructor_path(cls, extra):
    """Positional, keyword and dataclasses.replace all run the one validation, naming the argument."""
    net = cls(4, **extra)
    assert net.out_w_std == 1.0 and net.out_b_std == 0.1 and net.activation == "relu"  # the field defaults
    with pytest.raises(ValueError, match=r"argument `width`: expected a positive integer, received 0"):
        dataclasses.replace(net, width=0)
    with pytest.raises(ValueError, match=r"argument `activation`: expected one of 'relu', .*, received 'swish'"):
        cls(4, **extra, activation="swish")
    # the readout scales have one rule for every architecture: sigma_w,out > 0, sigma_b,out >= 0
    with pytest.raises(ValueError, match=r"argument `out_w_std`: expected a positive finite number, received 0.0"):
        cls(4, **extra, out_w_std=0.0)
    assert cls(4, **extra, out_b_std=0.0).out_b_std == 0.0


def test_post_init_normalises_numbers():
    net = MLP(np.int64(6), depth=np.int32(2), w_std=1)
    assert type(net.width) is int and type(net.depth) is int and type(net.w_std) is float
    assert net == MLP(6, depth=2, w_std=1.0) and hash(net) == hash(MLP(6, depth=2, w_std=1.0))
