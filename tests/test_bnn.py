"""Tests for reprior.core.bnn: coordinate maps, log-Jacobian and log densities of whole networks.

The identities are checked to float64 precision (rtol 1e-10, 1e-9 for sums of
many terms) on small MLPs with p < n and p > n, so that both the primal (p x p)
and the dual (n x n) spectral paths run, and on a tiny ResNet.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_allclose, regression_data
from jax.flatten_util import ravel_pytree

import reprior
from reprior.core import repriorise as rp
from reprior.core.architectures import readout_matrix, with_readout

NOISE = 0.2

# name: (architecture, n, k).  p = width + 1 for the MLP, 4 width + 1 for the ResNet, against n.
CASES = {
    "mlp-w3-d1-relu-p4<n8": (reprior.MLP(3, depth=1, activation="relu"), 8, 1),
    "mlp-w6-d2-tanh-p7>n4": (reprior.MLP(6, depth=2, activation="tanh"), 4, 2),
    "mlp-w4-d3-erf-p5=n5": (reprior.MLP(4, depth=3, activation="erf"), 5, 3),
    # ResNet(width=1, depth=8) on 4x4x1 images: p = 5 features, about 450 parameters.
    "resnet-w1-d8-p5>n3": (reprior.ResNet(1, depth=8, activation="gelu"), 3, 2),
}


def make_problem(arch, n, k, seed=0):
    """A BNN, float64 data and float64 parameters drawn from the prior (call inside enable_x64)."""
    bnn = reprior.BNN(arch, noise_std=NOISE)
    if isinstance(arch, reprior.MLP):
        x, y = regression_data(n, 2, k, seed=seed)
    else:
        rng = np.random.default_rng(seed)
        x, y = rng.standard_normal((n, 4, 4, 1)), rng.standard_normal((n, k))
    params = jax.jit(bnn.init, static_argnums=2)(jax.random.key(seed), jnp.asarray(x), k)
    return bnn, jnp.asarray(x), jnp.asarray(y), params


def mlp_problem(width, depth, activation, n, k, seed=0):
    return make_problem(reprior.MLP(width, depth=depth, activation=activation), n, k, seed)


def density_forms(bnn, phi, x, y):
    """The four expressions of the repriorised log density."""
    log_prior_out = rp.log_standard_normal(phi["readout"])
    theta = bnn.to_theta(phi, x, y)
    return {
        "primal": bnn.log_density(phi, x, y, "reprior", form="primal"),
        "dual": bnn.log_density(phi, x, y, "reprior", form="dual"),
        "collapsed": bnn.collapsed_log_density(phi["hidden"], x, y) + log_prior_out,
        "standard+logdet": bnn.log_density(theta, x, y, "standard") + bnn.log_abs_det_jacobian(phi, x, y),
    }


@functools.lru_cache(maxsize=None)
def case_results(name):
    """Everything the identity tests compare, computed in float64 under one ``jit`` per case."""
    arch, n, k = CASES[name]
    with jax.enable_x64(True):
        bnn, x, y, phi = make_problem(arch, n, k)
        # Move off the prior draw so the readout is really changed by the transform.
        phi = jax.tree_util.tree_map(lambda a: 0.7 * a + 0.1, phi)
        flat, unravel = ravel_pytree(phi)

        @jax.jit
        def compute(flat):
            phi = unravel(flat)
            thetas = {form: bnn.to_theta(phi, x, y, form=form) for form in ("auto", "primal", "dual")}
            return {
                "phi": phi,
                "jacobian": jax.jacfwd(lambda z: ravel_pytree(bnn.to_theta(unravel(z), x, y))[0])(flat),
                "log_abs_det_jacobian": bnn.log_abs_det_jacobian(phi, x, y),
                "theta": thetas,
                "round_trip": {form: bnn.to_phi(thetas[form], x, y, form=form) for form in ("primal", "dual")},
                "other_way": bnn.to_theta(bnn.to_phi(phi, x, y), x, y),
                "densities": density_forms(bnn, phi, x, y),
            }

        out = jax.tree_util.tree_map(np.asarray, compute(flat))
    out["num_hidden"] = sum(leaf.size for leaf in jax.tree_util.tree_leaves(phi["hidden"]))
    return out


@pytest.mark.parametrize("name", CASES)
def test_log_jacobian_matches_autodiff(name):
    """log|det J| of the *whole* map phi -> theta against slogdet of the autodiff Jacobian."""
    out = case_results(name)
    jac = out["jacobian"]
    assert jac.ndim == 2 and jac.shape[0] == jac.shape[1]
    sign, logdet = np.linalg.slogdet(jac)
    assert sign == 1
    np.testing.assert_allclose(out["log_abs_det_jacobian"], logdet, rtol=1e-10)
    # Hidden weights pass through unchanged: block lower triangular with an identity block.
    h = out["num_hidden"]
    np.testing.assert_array_equal(jac[:h, :h], np.eye(h))
    np.testing.assert_array_equal(jac[:h, h:], 0)


@pytest.mark.parametrize("name", CASES)
def test_round_trip_in_each_form(name):
    """Each form's maps invert each other; ``auto`` is the form it resolves to.  The forms' roots
    differ (the dual's comes from the Cholesky factor of ``I + A A^T``, the primal's is the
    symmetric ``G^-1/2``), so their theta for one phi differ by an orthogonal change of phi_out;
    the symmetric maps of both forms agree (tests/test_repriorise.py)."""
    out = case_results(name)
    thetas, phi = out["theta"], out["phi"]
    n, p = CASES[name][1], phi["readout"]["W"].shape[0] + 1
    assert_tree_allclose(thetas["auto"], thetas["dual" if n <= p else "primal"], rtol=1e-10)
    # Hidden weights are shared; only the readout changes.
    assert_tree_allclose(thetas["auto"]["hidden"], phi["hidden"], rtol=0)
    assert not np.allclose(thetas["auto"]["readout"]["W"], phi["readout"]["W"])
    for form in ("primal", "dual"):
        assert_tree_allclose(out["round_trip"][form], phi, rtol=1e-10, atol=1e-12)
    assert_tree_allclose(out["other_way"], phi, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_repriorised_density_identities_float64(name):
    """primal == dual == collapsed + log N(phi_out) == standard(to_theta(phi)) + log|J|, to 1e-9."""
    values = {key: float(v) for key, v in case_results(name)["densities"].items()}
    for key, value in values.items():
        np.testing.assert_allclose(value, values["dual"], rtol=1e-9, err_msg=key)


@pytest.mark.parametrize("width, n", [(3, 12), (12, 4)], ids=["primal", "dual"])
def test_repriorised_density_identities_float32(width, n):
    """The same identities in float32, and against the float64 value.

    Tolerance 2e-4 relative: each form sums O(n k + #params) float32 terms of
    size O(1..100) and the primal form subtracts ``|Y|^2 - |beta|^2``.
    """
    with jax.enable_x64(True):
        bnn, x, y, phi = mlp_problem(width, 1, "relu", n, 2)
        ref = float(jax.jit(lambda p: density_forms(bnn, p, x, y))(phi)["dual"])
    with jax.enable_x64(False):
        to32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
        x32, y32 = to32(x), to32(y)
        values = jax.jit(lambda p: density_forms(bnn, p, x32, y32))(jax.tree_util.tree_map(to32, phi))
    for name, value in values.items():
        assert value.dtype == jnp.float32, name
        np.testing.assert_allclose(float(value), ref, rtol=2e-4, err_msg=name)


def test_standard_log_density_is_prior_plus_likelihood():
    with jax.enable_x64(True):
        bnn, x, y, theta = mlp_problem(5, 1, "relu", 6, 2)
        flat = ravel_pytree(theta)[0]
        f = np.asarray(bnn.apply(theta, x))
        expected = (-0.5 * np.sum(flat**2) - 0.5 * flat.size * np.log(2 * np.pi)
                    - 0.5 * np.sum((np.asarray(y) - f) ** 2) / NOISE**2
                    - y.size * (np.log(NOISE) + 0.5 * np.log(2 * np.pi)))
        np.testing.assert_allclose(bnn.log_density(theta, x, y, "standard"), expected, rtol=1e-12)


def test_draw_readout_and_predictive():
    with jax.enable_x64(True):
        bnn, x, y, params = mlp_problem(6, 1, "relu", 5, 2)
        theta, phi_out = bnn.draw_readout(jax.random.key(3), params, x, y)
        assert phi_out.shape == (7, 2)
        assert_tree_allclose(theta, bnn.to_theta(with_readout(params, phi_out), x, y), rtol=1e-12)
        x_test = x[:3] + 0.5
        mean, var = bnn.predictive(params, x, y, x_test)
        assert mean.shape == (3, 2) and var.shape == (3,)
        # Independent closed form (NumPy): GP regression with the kernel of the features,
        # mean K_*^T (K + s^2 I)^{-1} Y and variance diag(K_** - K_*^T (K + s^2 I)^{-1} K_*).
        psi, psi_test, y64 = (np.asarray(a, np.float64) for a in
                              (bnn.features(params, x), bnn.features(params, x_test), y))
        gram = psi @ psi.T + NOISE**2 * np.eye(len(psi))
        cross = psi @ psi_test.T
        np.testing.assert_allclose(mean, cross.T @ np.linalg.solve(gram, y64), rtol=1e-10)
        np.testing.assert_allclose(var, np.diag(psi_test @ psi_test.T - cross.T @ np.linalg.solve(gram, cross)),
                                   rtol=1e-9)
        # The predictive mean is the network output at the posterior mean of the readout.
        post = bnn.readout_posterior(params, x, y)
        np.testing.assert_allclose(mean, bnn.features(params, x_test) @ post.mean, rtol=1e-10)


def test_one_dimensional_targets_are_a_single_output():
    with jax.enable_x64(True):
        bnn, x, y, params = mlp_problem(4, 1, "relu", 6, 1)
        for parameterisation in ("standard", "reprior"):
            np.testing.assert_allclose(bnn.log_density(params, x, y[:, 0], parameterisation),
                                       bnn.log_density(params, x, y, parameterisation), rtol=1e-14)


def test_log_density_under_jit_and_grad():
    """Inside jit the finiteness checks are skipped (tracers) and gradients are finite."""
    with jax.enable_x64(True):
        bnn, x, y, params = mlp_problem(5, 2, "tanh", 4, 1)
        fn = jax.jit(jax.value_and_grad(lambda p: bnn.log_density(p, x, y, "reprior")))
        value, grad = fn(params)
        np.testing.assert_allclose(value, bnn.log_density(params, x, y, "reprior"), rtol=1e-12)
        assert np.all(np.isfinite(ravel_pytree(grad)[0]))


def test_param_shapes_match_init():
    bnn = reprior.BNN(reprior.MLP(5, depth=2), NOISE)
    x = np.zeros((3, 4))
    shapes = jax.tree_util.tree_map(lambda s: s.shape, bnn.param_shapes(x.shape, 2))
    params = bnn.init(jax.random.key(0), x, 2)
    assert shapes == jax.tree_util.tree_map(jnp.shape, params)
    assert readout_matrix(params).shape == (6, 2)


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize("noise_std", [0.0, -0.1, float("nan"), float("inf"), "0.1", None])
def test_bnn_rejects_bad_noise_std(noise_std):
    with pytest.raises(ValueError, match=r"`noise_std`: expected a positive finite number, received"):
        reprior.BNN(reprior.MLP(4), noise_std)


def test_bnn_rejects_non_architectures():
    with pytest.raises(ValueError, match=r"`arch`: expected a reprior architecture .* received 'mlp'"):
        reprior.BNN("mlp", 0.1)


def test_bnn_rejects_bad_data_and_params():
    bnn = reprior.BNN(reprior.MLP(4), NOISE)
    x, y = regression_data(6, 3, 1)
    params = bnn.init(jax.random.key(0), x, 1)
    with pytest.raises(ValueError, match=r"`y`: expected 6 rows to match `x`, received .*\(5, 1\)"):
        bnn.log_density(params, x, y[:5])
    x_bad = x.copy()
    x_bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"`x`: expected finite values .* received '1 non-finite"):
        bnn.log_density(params, x_bad, y)
    y_bad = y.copy()
    y_bad[0, 0] = -np.inf
    with pytest.raises(ValueError, match=r"`y`: expected finite values"):
        bnn.to_theta(params, x, y_bad)
    with pytest.raises(ValueError, match=r"`y`: expected targets of shape \(n,\) or \(n, out_dim\)"):
        bnn.log_density(params, x, y[:, :, None])
    with pytest.raises(ValueError, match=r"`x`: expected inputs of shape \(n, in_dim\) for an MLP \(flatten"):
        bnn.log_density(params, x.reshape(6, 3, 1, 1), y)
    with pytest.raises(ValueError, match=r"`params`: expected the layout .* received"):
        bnn.log_density(params, x[:, :2], y)
    with pytest.raises(ValueError, match=r"`params`: expected a dict with keys 'hidden' and 'readout'"):
        bnn.log_density([1, 2], x, y)
    with pytest.raises(ValueError, match=r"`parameterisation`: expected one of 'standard', 'reprior', received 'phi'"):
        bnn.log_density(params, x, y, "phi")
    with pytest.raises(ValueError, match=r"`form`: expected one of 'auto', 'primal', 'dual', received 'qr'"):
        bnn.log_density(params, x, y, "reprior", form="qr")
    with pytest.raises(ValueError, match=r"`x_test`: expected inputs of shape \(n, in_dim\)"):
        bnn.predictive(params, x, y, x[0])
