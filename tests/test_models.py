"""Tests for reprior.inference.models: the BNN posteriors as NumPyro programs.

The potential energy NumPyro computes from each model must be exactly minus its
log joint (standard, repriorised with ``phi_out`` sampled, and repriorised with
``phi_out`` integrated out), checked against dense NumPy/SciPy densities computed
here from the features alone, so any NumPyro inference algorithm targets the
posterior of the model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_allclose, dense_repriorisation, regression_data
from numpyro import handlers
from numpyro.infer.util import potential_energy
from scipy.stats import multivariate_normal, norm

import reprior
from reprior.core.nngp import nngp_kernel
from reprior.inference.models import FeatureMarginal, flatten_params, unflatten_params

NOISE = 0.25


def problem(width=5, depth=2, n=6, k=2, seed=0):
    bnn = reprior.BNN(reprior.MLP(width, depth=depth, activation="tanh"), noise_std=NOISE)
    x, y = regression_data(n, 3, k, seed=seed)
    params = jax.jit(bnn.init, static_argnums=2)(jax.random.key(seed), jnp.asarray(x), k)
    return bnn, jnp.asarray(x), jnp.asarray(y), params


def reprior_sites(params):
    """Sites of the repriorised model: hidden as is, readout under ``*_reprior`` names."""
    sites = flatten_params({"hidden": params["hidden"]})
    sites.update({f"{name}_reprior": v for name, v in flatten_params({"readout": params["readout"]}).items()})
    return sites


def potential(bnn, x, y, sites, **kwargs):
    return potential_energy(reprior.bnn_model, (bnn, x, y), kwargs, sites)


def test_the_pytree_helpers_have_one_home():
    """Site names, ``{site: array}`` and ``|z|^2`` are those of reprior.core.pytrees wherever they are imported."""
    from reprior.core import pytrees, target
    from reprior.inference import models

    assert models.flatten_params is pytrees.flatten_params and models.unflatten_params is pytrees.unflatten_params
    assert models.site_name is pytrees.site_name and target.squared_norm is pytrees.squared_norm
    _, _, _, params = problem(depth=1)
    expected = sum(np.sum(np.asarray(a, np.float64) ** 2) for a in jax.tree_util.tree_leaves(params))
    np.testing.assert_allclose(float(pytrees.squared_norm(params)), expected, rtol=1e-6)


def test_site_names_follow_the_parameter_pytree():
    bnn, x, y, params = problem(depth=2)
    assert list(flatten_params(params)) == [
        "hidden_0_W", "hidden_0_b", "hidden_1_W", "hidden_1_b", "readout_W", "readout_b"]
    assert_tree_allclose(unflatten_params(flatten_params(params), params), params, rtol=0)

    with handlers.seed(rng_seed=0):
        trace = handlers.trace(reprior.bnn_model).get_trace(bnn, x, y, parameterisation="standard")
    latent = [name for name, site in trace.items() if site["type"] == "sample" and not site["is_observed"]]
    assert latent == ["hidden_0_W", "hidden_0_b", "hidden_1_W", "hidden_1_b", "readout_W", "readout_b"]
    assert trace["y"]["is_observed"]
    for name, value in flatten_params(params).items():
        assert trace[name]["value"].shape == value.shape

    with handlers.seed(rng_seed=0):
        trace = handlers.trace(reprior.bnn_model).get_trace(bnn, x, y, parameterisation="reprior")
    latent = [name for name, site in trace.items() if site["type"] == "sample" and not site["is_observed"]]
    assert latent == ["hidden_0_W", "hidden_0_b", "hidden_1_W", "hidden_1_b", "readout_W_reprior", "readout_b_reprior"]
    assert trace["readout_W"]["type"] == trace["readout_b"]["type"] == "deterministic"

    with handlers.seed(rng_seed=0):
        trace = handlers.trace(reprior.bnn_model).get_trace(bnn, x, y, parameterisation="reprior", readout="exact")
    latent = [name for name, site in trace.items() if site["type"] == "sample" and not site["is_observed"]]
    assert latent == ["hidden_0_W", "hidden_0_b", "hidden_1_W", "hidden_1_b"]
    assert "readout_W" not in trace


def dense_log_joints(bnn, x, y, params):
    """The three log joints at ``params`` (read as theta, as phi, and its hidden part), in NumPy/SciPy.

    Only the features ``Psi`` come from the package.  Standard: :math:`\\log\\mathcal N(\\theta; 0, I) +
    \\log\\mathcal N(Y; \\Psi\\theta_{\\mathrm{out}}, \\sigma^2 I)`.  Repriorised, ``phi_out`` sampled: that
    joint at :math:`\\theta(\\phi)` plus the log-Jacobian, from the dense ``p x p`` change of variables
    (:func:`conftest.dense_repriorisation`).  Collapsed: :math:`\\log\\mathcal N(\\phi_{\\mathrm{hidden}}; 0, I)
    + \\sum_j\\log\\mathcal N(Y_{:j}; 0, \\Psi\\Psi^\\top + \\sigma^2 I)` from the dense ``n x n`` covariance.
    """
    y = np.asarray(y)
    psi = np.asarray(bnn.features(params, x))
    hidden = sum(norm.logpdf(np.asarray(a)).sum() for a in jax.tree_util.tree_leaves(params["hidden"]))
    out = np.vstack([np.asarray(params["readout"]["W"]), np.asarray(params["readout"]["b"])[None]])  # bias row last

    def joint(theta_out):
        return hidden + norm.logpdf(theta_out).sum() + norm.logpdf(y, loc=psi @ theta_out, scale=NOISE).sum()

    theta_out, log_jacobian = dense_repriorisation(psi, y, NOISE, out)
    cov = psi @ psi.T + NOISE**2 * np.eye(len(y))
    return {
        "standard": joint(out),
        "reprior-sampled": joint(theta_out) + log_jacobian,
        "reprior-exact": hidden + sum(multivariate_normal(np.zeros(len(y)), cov).logpdf(y[:, j])
                                      for j in range(y.shape[1])),
    }


@pytest.mark.parametrize("width, n", [(5, 6), (3, 9)], ids=["dual", "primal"])
def test_potential_energy_is_minus_the_log_density(width, n):
    """NumPyro's potential energy of each model is minus its log joint computed densely in NumPy/SciPy.

    All sites are unconstrained, so the potential is exactly minus the log joint.  The log joints
    are 50 to 190 nats here and agree to about 1e-15 relative; rtol 1e-10 leaves room for float64
    round-off in the factorisations (s = 0.25, well conditioned), while a wrong term moves the
    value by O(1) nats.  The readout is
    not a constant of the repriorised density: moving ``phi_out`` changes it (checked at two points).
    """
    with jax.enable_x64(True):
        bnn, x, y, params = problem(width=width, n=n)

        @jax.jit
        def energies(params):
            return {
                "standard": potential(bnn, x, y, flatten_params(params), parameterisation="standard"),
                "reprior-sampled": potential(bnn, x, y, reprior_sites(params), parameterisation="reprior"),
                "reprior-exact": potential(bnn, x, y, flatten_params({"hidden": params["hidden"]}),
                                           parameterisation="reprior", readout="exact"),
            }

        moved = {**params, "readout": jax.tree_util.tree_map(lambda a: a + 1.0, params["readout"])}
        for point in (params, moved):
            expected = dense_log_joints(bnn, x, y, point)
            for name, energy in energies(point).items():
                np.testing.assert_allclose(float(energy), -expected[name], rtol=1e-10, err_msg=name)
        delta = float(energies(moved)["reprior-sampled"] - energies(params)["reprior-sampled"])
        assert abs(delta) > 1.0, delta


@pytest.mark.parametrize("width, n", [(5, 6), (3, 9)], ids=["dual", "primal"])
def test_deterministic_readout_sites_are_theta(width, n):
    """The ``readout_W``/``readout_b`` sites of the repriorised model are theta_out = mu + s R phi_out,
    against the dense ``p x p`` NumPy map (:func:`conftest.dense_repriorisation`, the root of the form in
    use), to float64 round-off."""
    with jax.enable_x64(True):
        bnn, x, y, params = problem(width=width, n=n)
        model = handlers.substitute(reprior.bnn_model, data=reprior_sites(params))
        trace = handlers.trace(model).get_trace(bnn, x, y, parameterisation="reprior")
        phi_out = np.vstack([np.asarray(params["readout"]["W"]), np.asarray(params["readout"]["b"])[None]])
        theta_out, _ = dense_repriorisation(np.asarray(bnn.features(params, x)), np.asarray(y), NOISE, phi_out,
                                            root="package")
        np.testing.assert_allclose(trace["readout_W"]["value"], theta_out[:-1], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(trace["readout_b"]["value"], theta_out[-1], rtol=1e-10, atol=1e-12)
        assert np.abs(theta_out - phi_out).max() > 0.1  # the map is not the identity here


@pytest.mark.parametrize("parameterisation", ["standard", "reprior"])
def test_prior_predictive_draws_targets(parameterisation):
    """Prior predictive draws of ``y`` have covariance ``K_nngp + s^2 I`` (exact for one hidden layer).

    For a depth-1 network the prior covariance of the outputs is, at any width,
    the NNGP kernel ``reprior.core.nngp.nngp_kernel`` (an analytic arc-cosine expectation,
    computed independently of the network's forward pass), and the repriorised
    model has the same prior.  Each draw's first output is one independent
    column; the standard error of each covariance entry is the empirical sd of
    the products ``y_i y_j`` over draws (``y`` is a scale mixture, not
    Gaussian), and every entry must lie within 5 of them.
    """
    from numpyro.infer import Predictive

    num = 4000
    bnn = reprior.BNN(reprior.MLP(7, depth=1, activation="relu"), noise_std=NOISE)
    x, _ = regression_data(5, 3, 1, seed=4)
    with jax.enable_x64(True):
        draws = Predictive(reprior.bnn_model, num_samples=num)(
            jax.random.key(1), bnn, jnp.asarray(x), None, out_dim=3, parameterisation=parameterisation)["y"]
        expected = np.asarray(nngp_kernel(bnn.arch, jnp.asarray(x))) + NOISE**2 * np.eye(5)
    assert draws.shape == (num, 5, 3)
    cols = np.asarray(draws)[:, :, 0]
    products = cols[:, :, None] * cols[:, None, :]
    z = (products.mean(0) - expected) / (products.std(0) / np.sqrt(num))
    assert np.abs(z).max() < 5, z


def test_feature_marginal_sample_and_log_prob():
    """Columns of Y are i.i.d. N(0, psi psi^T + s^2 I): log_prob and the covariance of draws."""
    rng = np.random.default_rng(0)
    psi64 = rng.standard_normal((4, 3))
    cov = psi64 @ psi64.T + NOISE**2 * np.eye(4)
    num = 20_000
    with jax.enable_x64(True):
        marginal = FeatureMarginal(jnp.asarray(psi64), NOISE, 2)
        assert marginal.event_shape == (4, 2) and marginal.batch_shape == ()
        draws = np.asarray(marginal.sample(jax.random.key(0), (num,)))
        value = rng.standard_normal((4, 2))
        # Independent closed form: each column of Y is N(0, psi psi^T + s^2 I) (SciPy's density).
        expected = sum(multivariate_normal(np.zeros(4), cov).logpdf(value[:, j]) for j in range(2))
        np.testing.assert_allclose(marginal.log_prob(jnp.asarray(value)), expected, rtol=1e-10)
    assert draws.shape == (num, 4, 2)
    cols = draws.transpose(0, 2, 1).reshape(-1, 4)  # 2 num i.i.d. columns
    emp = cols.T @ cols / len(cols)
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / len(cols))
    assert (np.abs(emp - cov) / se).max() < 5


def test_model_validation():
    bnn, x, y, _ = problem()
    with pytest.raises(ValueError, match=r"`out_dim`: expected the number of outputs when `y` is None"):
        handlers.seed(reprior.bnn_model, 0)(bnn, x, None)
    with pytest.raises(ValueError, match=r"`readout`: expected one of 'sampled', 'exact', received 'gibbs'"):
        reprior.bnn_model(bnn, x, y, readout="gibbs")
    with pytest.raises(ValueError, match=r"`parameterisation`: expected one of .* received 'ntk'"):
        reprior.bnn_model(bnn, x, y, parameterisation="ntk")
    with pytest.raises(ValueError, match=r"`y`: expected 6 rows to match `x`"):
        reprior.bnn_model(bnn, x, y[:4])
