"""Tests for reprior.core.repriorise: the repriorisation maths on fixed features (a Bayesian linear model).

With the features ``psi`` fixed, the network is a linear regression whose
posterior is known in closed form:

    theta_out | Y ~ N(mu, sigma^2 G^-1),  G = psi^T psi + sigma^2 I,  mu = G^-1 psi^T Y.

Every quantity of the module is checked against a direct NumPy computation of
that formula, in both the primal (p x p) and the dual (n x n) form, with p < n
and p > n.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from reprior.core import repriorise as rp

RTOL64 = 1e-10  # identities in float64
SIGMA = 0.3

# (n, p, k): p < n uses the primal spectral form under "auto", p >= n the dual one.
SHAPES = [(9, 4, 1), (5, 8, 2), (6, 6, 3)]


def linear_model(n, p, k, seed=0):
    """Fixed random features and targets, as float64 NumPy arrays."""
    rng = np.random.default_rng([seed, n, p, k])
    psi = rng.standard_normal((n, p)) / math.sqrt(p)
    y = psi @ rng.standard_normal((p, k)) + SIGMA * rng.standard_normal((n, k))
    return psi, y


def closed_form(psi, y, sigma=SIGMA):
    """``(G, mu, cov)`` of the Bayesian linear regression, by direct NumPy solves."""
    gram = psi.T @ psi + sigma**2 * np.eye(psi.shape[1])
    mu = np.linalg.solve(gram, psi.T @ y)
    return gram, mu, sigma**2 * np.linalg.inv(gram)


@pytest.mark.parametrize("n, p, k", SHAPES)
@pytest.mark.parametrize("form", ["primal", "dual"])
def test_readout_posterior_mean_and_powers_match_direct_solves(n, p, k, form):
    psi, y = linear_model(n, p, k)
    gram, mu, _ = closed_form(psi, y)
    v = np.random.default_rng(1).standard_normal((p, k))
    evals, evecs = np.linalg.eigh(gram)
    gram_half = evecs @ np.diag(np.sqrt(evals)) @ evecs.T
    with jax.enable_x64(True):
        post = rp.readout_posterior(jnp.asarray(psi), jnp.asarray(y), SIGMA, form)
        assert post.dual == (form == "dual")
        np.testing.assert_allclose(post.mean, mu, rtol=RTOL64, atol=1e-12)
        # G^{1/2} and G^{-1/2} are the symmetric roots: compare with the eigendecomposition of G.
        np.testing.assert_allclose(post.power(jnp.asarray(v), 1), gram_half @ v, rtol=RTOL64)
        np.testing.assert_allclose(post.power(jnp.asarray(v), -1), np.linalg.solve(gram_half, v), rtol=RTOL64)
        np.testing.assert_allclose(post.log_det_gram(), np.linalg.slogdet(gram)[1], rtol=RTOL64)
        # The log-Jacobian of phi_out -> theta_out = mu + sigma G^{-1/2} phi_out.
        expected = k * (p * math.log(SIGMA) - 0.5 * np.linalg.slogdet(gram)[1])
        np.testing.assert_allclose(rp.log_abs_det_jacobian(post, k), expected, rtol=RTOL64)


@pytest.mark.parametrize("n, p, k", SHAPES)
def test_primal_and_dual_transforms_agree_and_invert(n, p, k):
    psi, y = linear_model(n, p, k)
    phi = np.random.default_rng(2).standard_normal((p, k))
    with jax.enable_x64(True):
        thetas = {}
        for form in ("primal", "dual"):
            post = rp.readout_posterior(jnp.asarray(psi), jnp.asarray(y), SIGMA, form)
            thetas[form] = rp.to_theta_out(post, jnp.asarray(phi))
            np.testing.assert_allclose(rp.to_phi_out(post, thetas[form]), phi, rtol=RTOL64, atol=1e-12)
        np.testing.assert_allclose(thetas["primal"], thetas["dual"], rtol=RTOL64)


@pytest.mark.parametrize("n, p, k", SHAPES)
@pytest.mark.parametrize("form", ["primal", "dual"])
def test_log_abs_det_jacobian_matches_autodiff(n, p, k, form):
    """log|det d theta_out / d phi_out| against ``slogdet`` of the autodiff Jacobian of the (p k)-map."""
    psi, y = linear_model(n, p, k)
    with jax.enable_x64(True):
        post = rp.readout_posterior(jnp.asarray(psi), jnp.asarray(y), SIGMA, form)
        jac = jax.jacfwd(lambda z: rp.to_theta_out(post, z.reshape(p, k)).ravel())(jnp.zeros(p * k))
        sign, logdet = np.linalg.slogdet(np.asarray(jac))
        assert sign == 1  # symmetric positive-definite root
        np.testing.assert_allclose(rp.log_abs_det_jacobian(post, k), logdet, rtol=RTOL64)


@pytest.mark.parametrize("n, p, k", SHAPES)
def test_log_marginal_likelihood_primal_dual_and_scipy_agree(n, p, k):
    psi, y = linear_model(n, p, k)
    cov = psi @ psi.T + SIGMA**2 * np.eye(n)
    expected = sum(multivariate_normal(np.zeros(n), cov).logpdf(y[:, j]) for j in range(k))
    with jax.enable_x64(True):
        for form in ("auto", "primal", "dual"):
            value = rp.log_marginal_likelihood(jnp.asarray(psi), jnp.asarray(y), SIGMA, form)
            np.testing.assert_allclose(value, expected, rtol=RTOL64)


def test_log_marginal_likelihood_factorises_the_joint():
    """log N(theta_out; 0, I) + log N(Y; psi theta_out, s^2 I)
    = log p(Y) + log N(theta_out; mu, s^2 G^-1), at any theta_out (the identity behind repriorisation)."""
    n, p, k = 7, 5, 2
    psi, y = linear_model(n, p, k)
    gram, mu, cov = closed_form(psi, y)
    theta = np.random.default_rng(3).standard_normal((p, k))
    with jax.enable_x64(True):
        lhs = rp.log_standard_normal({"t": jnp.asarray(theta)}) + rp.gaussian_log_likelihood(
            jnp.asarray(psi @ theta), jnp.asarray(y), SIGMA)
        lml = rp.log_marginal_likelihood(jnp.asarray(psi), jnp.asarray(y), SIGMA)
    posterior = sum(multivariate_normal(mu[:, j], cov).logpdf(theta[:, j]) for j in range(k))
    np.testing.assert_allclose(float(lhs), float(lml) + posterior, rtol=RTOL64)


@pytest.mark.parametrize("n, p, k", SHAPES)
def test_predictive_primal_dual_and_direct_formulas_agree(n, p, k):
    psi, y = linear_model(n, p, k)
    psi_test = np.random.default_rng(4).standard_normal((3, p)) / math.sqrt(p)
    gram, mu, cov = closed_form(psi, y)
    kernel = psi @ psi.T + SIGMA**2 * np.eye(n)
    cross = psi @ psi_test.T
    mean_dual = cross.T @ np.linalg.solve(kernel, y)
    var_dual = np.sum(psi_test**2, 1) - np.einsum("in,in->n", cross, np.linalg.solve(kernel, cross))
    np.testing.assert_allclose(mean_dual, psi_test @ mu, rtol=1e-9)  # the two closed forms agree
    np.testing.assert_allclose(var_dual, np.einsum("mp,pq,mq->m", psi_test, cov, psi_test), rtol=1e-9)
    with jax.enable_x64(True):
        for form in ("auto", "primal", "dual"):
            mean, var = rp.predictive(jnp.asarray(psi), jnp.asarray(y), jnp.asarray(psi_test), SIGMA, form)
            assert mean.shape == (3, k) and var.shape == (3,)
            np.testing.assert_allclose(mean, mean_dual, rtol=RTOL64)
            np.testing.assert_allclose(var, var_dual, rtol=1e-9)


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_exact_draws_have_the_closed_form_posterior_moments(form):
    """theta_out = to_theta_out(posterior, eps), eps ~ N(0, I): mean mu and covariance sigma^2 G^-1.

    Draws are i.i.d., so the standard error of each empirical moment is known
    exactly; every entry must be within 5 standard errors (a few hundred
    entries: a false alarm has probability below 1e-4).
    """
    n, p, k, num = 6, 4, 2, 20_000
    psi, y = linear_model(n, p, k)
    _, mu, cov = closed_form(psi, y)
    with jax.enable_x64(True):
        post = rp.readout_posterior(jnp.asarray(psi), jnp.asarray(y), SIGMA, form)
        eps = jax.random.normal(jax.random.key(0), (num, p, k))
        draws = np.asarray(jax.vmap(lambda e: rp.to_theta_out(post, e))(eps))
    sd = np.sqrt(np.diag(cov))
    mean_err = np.abs(draws.mean(0) - mu) / (sd[:, None] / math.sqrt(num))
    assert mean_err.max() < 5, mean_err
    centred = draws - mu
    for j in range(k):  # outputs are independent with the same covariance
        emp = centred[:, :, j].T @ centred[:, :, j] / num
        se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / num)
        assert (np.abs(emp - cov) / se).max() < 5
    cross = centred[:, :, 0].T @ centred[:, :, 1] / num
    assert (np.abs(cross) / np.sqrt(np.outer(np.diag(cov), np.diag(cov)) / num)).max() < 5


def test_repriorised_posterior_draws_are_standard_normal():
    """Exact posterior draws theta_out ~ N(mu, sigma^2 G^-1) map to phi_out ~ N(0, I)."""
    n, p, k, num = 5, 7, 1, 20_000
    psi, y = linear_model(n, p, k)
    _, mu, cov = closed_form(psi, y)
    theta = np.random.default_rng(5).multivariate_normal(mu[:, 0], cov, size=num)[:, :, None]
    with jax.enable_x64(True):
        post = rp.readout_posterior(jnp.asarray(psi), jnp.asarray(y), SIGMA)
        phi = np.asarray(jax.vmap(lambda t: rp.to_phi_out(post, t))(jnp.asarray(theta)))[:, :, 0]
    assert np.abs(phi.mean(0)).max() < 5 / math.sqrt(num)
    emp = phi.T @ phi / num
    se = np.sqrt((1 + np.eye(p)) / num)  # Var of a product moment of independent N(0, 1)
    assert (np.abs(emp - np.eye(p)) / se).max() < 5


@pytest.mark.parametrize("n, p", [(40, 10), (10, 40)])
def test_float32_matches_float64(n, p):
    """float32 agrees with float64 to float32 precision, for all forms.

    Tolerance 1e-4 relative (not ~1e-6): the log density sums O(n k) terms and
    the primal form subtracts ``|Y|^2 - |beta|^2``, losing a few more digits.
    """
    psi, y = linear_model(n, p, 2)
    psi_test = psi[:3] + 0.1
    with jax.enable_x64(True):
        ref = {f: rp.log_marginal_likelihood(jnp.asarray(psi), jnp.asarray(y), SIGMA, f) for f in ("primal", "dual")}
        ref_pred = rp.predictive(jnp.asarray(psi), jnp.asarray(y), jnp.asarray(psi_test), SIGMA)
        ref_post = rp.readout_posterior(jnp.asarray(psi), jnp.asarray(y), SIGMA)
        phi = jnp.ones((p, 2))
        ref_theta = rp.to_theta_out(ref_post, phi)
    with jax.enable_x64(False):
        psi32, y32 = jnp.asarray(psi, jnp.float32), jnp.asarray(y, jnp.float32)
        for form in ("primal", "dual"):
            value = rp.log_marginal_likelihood(psi32, y32, SIGMA, form)
            assert value.dtype == jnp.float32
            np.testing.assert_allclose(value, ref[form], rtol=1e-4)
            mean, var = rp.predictive(psi32, y32, jnp.asarray(psi_test, jnp.float32), SIGMA, form)
            assert mean.dtype == var.dtype == jnp.float32
            np.testing.assert_allclose(mean, ref_pred[0], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(var, ref_pred[1], rtol=1e-3, atol=1e-5)  # difference of two O(1) terms
            post = rp.readout_posterior(psi32, y32, SIGMA, form)
            np.testing.assert_allclose(rp.to_theta_out(post, jnp.ones((p, 2), jnp.float32)), ref_theta,
                                       rtol=1e-4, atol=1e-4)


def test_jit_and_eager_both_match_scipy():
    """Compiled and eager log marginal likelihoods, each against SciPy's dense multivariate normal.

    Each side is compared with the independent value, not with the other (two wrong answers
    that agree would pass a jit-vs-eager comparison).  The noise is passed as a traced argument
    under jit, as SBC does, so the compiled program is the one with a runtime ``sigma``.
    """
    psi, y = linear_model(6, 9, 2)
    cov = psi @ psi.T + SIGMA**2 * np.eye(6)
    expected = sum(multivariate_normal(np.zeros(6), cov).logpdf(y[:, j]) for j in range(2))
    with jax.enable_x64(True):
        args = (jnp.asarray(psi), jnp.asarray(y))
        for form in ("primal", "dual"):
            eager = rp.log_marginal_likelihood(*args, SIGMA, form)
            jitted = jax.jit(rp.log_marginal_likelihood, static_argnums=3)(*args, jnp.asarray(SIGMA), form)
            np.testing.assert_allclose(float(eager), expected, rtol=RTOL64, err_msg=f"eager {form}")
            np.testing.assert_allclose(float(jitted), expected, rtol=RTOL64, err_msg=f"jit {form}")


def test_log_standard_normal_and_gaussian_log_likelihood():
    tree = {"a": np.array([0.5, -1.0]), "b": [np.ones((2, 2))]}
    with jax.enable_x64(True):
        expected = -0.5 * (0.25 + 1 + 4) - 3 * math.log(2 * math.pi)
        np.testing.assert_allclose(rp.log_standard_normal(tree), expected, rtol=RTOL64)
        f, y = jnp.array([[0.0], [1.0]]), jnp.array([[0.5], [0.0]])
        expected = sum(-0.5 * ((a - b) / SIGMA) ** 2 - math.log(SIGMA) - 0.5 * math.log(2 * math.pi)
                       for a, b in [(0.5, 0.0), (0.0, 1.0)])
        np.testing.assert_allclose(rp.gaussian_log_likelihood(f, y, SIGMA), expected, rtol=RTOL64)


def test_form_resolution_and_validation():
    assert rp.use_dual(5, 10) and rp.use_dual(10, 10) and not rp.use_dual(11, 10)
    assert rp.use_dual(100, 10, "dual") and not rp.use_dual(5, 10, "primal")
    with pytest.raises(ValueError, match=r"`form`: expected one of .* received 'cholesky'"):
        rp.use_dual(5, 10, "cholesky")
