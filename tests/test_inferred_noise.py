"""Inferred noise: a prior on noise_std, sampled jointly with the weights (reprior.core.target, "Inferred noise")."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

import reprior
from reprior.core.architectures import readout_matrix, with_readout
from reprior.inference.models import bnn_model, flatten_params
from reprior.core.target import NOISE_KEY, build_target

@pytest.fixture(autouse=True)
def x64():
    """The identities hold to float64 round-off; every test here runs in x64 mode."""
    with jax.enable_x64(True):
        yield


PRIORS = [dist.HalfNormal(0.5), dist.LogNormal(-1.0, 0.7), dist.Uniform(0.05, 2.0)]


def _data(n=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    return jnp.asarray(x), jnp.asarray(np.sin(x[:, :1]) + 0.3 * rng.standard_normal((n, 1)))


def _point(target, seed=1, u=-0.7):
    z = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(jax.random.key(seed), 1))
    return {**z, NOISE_KEY: jnp.asarray(u)}


@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("width", [3, 12])  # primal (p < n) and dual forms
def test_repriorised_density_is_standard_plus_log_jacobian(prior, width):
    x, y = _data()
    bnn = reprior.BNN(reprior.MLP(width=width), noise_std=prior)
    rep = build_target(bnn, x, y, parameterisation="reprior", readout="sampled")
    std = build_target(bnn, x, y, parameterisation="standard")
    z = _point(rep)
    sigma = rep.noise_std_at(z)
    posterior = rep.readout_posterior(z)
    theta, _ = rep.to_params(z, None)
    lhs = rep.log_density(z)
    rhs = std.log_density({**theta, NOISE_KEY: z[NOISE_KEY]}) + reprior.core.repriorise.log_abs_det_jacobian(posterior, 1)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10)
    # and the BNN's constrained log joint, plus the log-Jacobian of u -> sigma
    u_jac = rep.noise_transform().log_abs_det_jacobian(z[NOISE_KEY], sigma)
    np.testing.assert_allclose(lhs, bnn.log_density(theta, x, y, noise_std=sigma) + u_jac
                               + reprior.core.repriorise.log_abs_det_jacobian(posterior, 1), rtol=1e-10)


@pytest.mark.parametrize("width", [3, 12])
def test_collapsed_density_at_a_fixed_sigma_is_the_fixed_noise_one(width):
    x, y = _data()
    prior = dist.HalfNormal(0.5)
    bnn = reprior.BNN(reprior.MLP(width=width), noise_std=prior)
    target = build_target(bnn, x, y, parameterisation="reprior", readout="exact")
    z = _point(target)
    sigma = float(target.noise_std_at(z))
    fixed = build_target(reprior.BNN(reprior.MLP(width=width), noise_std=sigma), x, y)
    z_fixed = {"hidden": z["hidden"]}
    u_part = target.noise_log_prior(z[NOISE_KEY]) - 0.5 * (z[NOISE_KEY] ** 2 + np.log(2 * np.pi))
    np.testing.assert_allclose(target.log_density(z), fixed.log_density(z_fixed) + u_part, rtol=1e-10)
    np.testing.assert_allclose(
        bnn.collapsed_log_density(z["hidden"], x, y, noise_std=sigma),
        reprior.BNN(reprior.MLP(width=width), sigma).collapsed_log_density(z["hidden"], x, y)
        + prior.log_prob(sigma), rtol=1e-12)
    # the recorded readout and predictive are the fixed-noise ones at the draw's sigma
    post, post_fixed = target.readout_posterior(z), fixed.readout_posterior(z_fixed)
    np.testing.assert_allclose(post.mean, post_fixed.mean, rtol=1e-10)
    np.testing.assert_allclose(target.predictive(z, x[:3])[1], fixed.predictive(z_fixed, x[:3])[1], rtol=1e-10)


@pytest.mark.parametrize("parameterisation,readout", [("standard", "sampled"), ("reprior", "sampled"),
                                                      ("reprior", "exact")])
def test_gradient_in_u_against_finite_differences(parameterisation, readout):
    x, y = _data()
    bnn = reprior.BNN(reprior.MLP(width=5), noise_std=dist.LogNormal(-1.0, 0.7))
    target = build_target(bnn, x, y, parameterisation=parameterisation, readout=readout)
    z = _point(target)
    grad = jax.grad(target.logdensity)(z)[NOISE_KEY]
    h = 1e-5
    up, down = ({**z, NOISE_KEY: z[NOISE_KEY] + s} for s in (h, -h))
    fd = (target.logdensity(up) - target.logdensity(down)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6)  # central difference: error O(h^2) ~ 1e-10 relative


@pytest.mark.parametrize("parameterisation", ["standard", "reprior"])
def test_numpyro_model_log_density_is_the_bnns(parameterisation):
    x, y = _data()
    prior = dist.HalfNormal(0.5)
    bnn = reprior.BNN(reprior.MLP(width=4), noise_std=prior)
    params = bnn.init(jax.random.key(3), x, 1)
    sigma = 0.37
    sites = flatten_params({"hidden": params["hidden"]})
    if parameterisation == "standard":
        sites.update(flatten_params({"readout": params["readout"]}))
    else:
        sites.update({f"{k}_reprior": v for k, v in flatten_params({"readout": params["readout"]}).items()})
    sites["noise_std"] = sigma
    got, _ = log_density(bnn_model, (bnn, x, y), {"parameterisation": parameterisation}, sites)
    if parameterisation == "standard":
        want = bnn.log_density(params, x, y, noise_std=sigma)
    else:  # phi: the repriorised density, log|J| included (readout sites are phi_out)
        want = bnn.log_density(params, x, y, "reprior", noise_std=sigma)
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("prior", [dist.Normal(0.0, 1.0), dist.Poisson(2.0), dist.Uniform(-1.0, 1.0),
                                   dist.HalfNormal(jnp.ones(2)), "0.1"],
                         ids=["normal", "poisson", "uniform", "batched", "string"])
def test_bad_noise_priors_are_refused_naming_noise_std(prior):
    with pytest.raises(ValueError, match="noise_std"):
        reprior.BNN(reprior.MLP(width=4), noise_std=prior)


def test_consumers_that_need_a_number_refuse_a_prior():
    x, y = _data()
    bnn = reprior.BNN(reprior.MLP(width=4), noise_std=dist.HalfNormal(0.5))
    from reprior.evaluation import limits
    with pytest.raises(ValueError, match="noise_std"):
        limits.hidden_log_likelihood_fn(bnn, x, y)
    with pytest.raises(ValueError, match="noise_std"):
        limits.limit_inputs(bnn, x, y)
    with pytest.raises(ValueError, match="noise_std"):
        bnn.log_density(bnn.init(jax.random.key(0), x, 1), x, y)  # sigma must be given


def test_sample_records_the_noise_and_metrics_read_it():
    x, y = _data(n=12)
    bnn = reprior.BNN(reprior.MLP(width=8), noise_std=dist.HalfNormal(1.0))
    idata = reprior.sample(bnn, x, y, x_test=x[:3], num_warmup=50, num_samples=20, num_chains=2, progress_bar=False)
    sigma = np.asarray(idata.posterior["noise_std"])
    assert sigma.shape == (2, 20) and np.all(sigma > 0)
    assert reprior.BNN.from_idata(idata).noise_description() == "HalfNormal(scale=1)"
    from reprior.evaluation.diagnostics import cell_metrics, metric_names
    assert {"noise_std_mean", "noise_std_sd"} <= set(metric_names())
    m = cell_metrics(idata, y_test=np.asarray(y[:3]))
    np.testing.assert_allclose(m["noise_std_mean"], sigma.mean(), rtol=1e-12)
    assert np.isfinite(m["test_log_lik"]) or "test_log_lik" in m


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_posterior_mean_noise_near_the_truth(seed):
    """Data from the prior network with known noise 0.3.  A calibrated posterior puts the truth
    beyond 2 posterior sd in about 5% of data sets (the issue's measure, in the report), beyond 3 sd
    in 0.3%: the test uses 3 so that it fails for a wrong posterior, not for one unlucky data set."""
    truth = 0.3
    rng = np.random.default_rng([seed, 22])
    x = rng.standard_normal((40, 2))
    bnn = reprior.BNN(reprior.MLP(width=32), noise_std=dist.HalfNormal(1.0))
    f = np.asarray(bnn.apply(bnn.init(jax.random.key(seed), jnp.asarray(x), 1), jnp.asarray(x)))
    y = f + truth * rng.standard_normal((40, 1))
    idata = reprior.sample(bnn, x, y, num_warmup=200, num_samples=200, num_chains=2, seed=seed,
                           progress_bar=False, keep="none")
    sigma = np.asarray(idata.posterior["noise_std"])
    # the mean's Monte Carlo error (sd/sqrt(ESS), ESS ~ 100+) is a tenth of a posterior sd
    assert abs(sigma.mean() - truth) < 3 * sigma.std()
