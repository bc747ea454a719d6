"""Tests for reprior.core.target: one target, its likelihood without constants, and its precision.

The identities are checked to float64 precision against independent
computations (SciPy's normal and multivariate normal densities); the float32
checks compare with the same quantity computed in float64 on the same point.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import dense_repriorisation
from scipy.stats import multivariate_normal, norm

import reprior
from reprior.core import repriorise as rp
from reprior.core.target import Target, build_target

SETTINGS = [("standard", "sampled"), ("reprior", "sampled"), ("reprior", "exact")]


def _problem(n=7, width=5, k=2, seed=0, noise=0.3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    y = rng.standard_normal((n, k))
    return reprior.BNN(reprior.MLP(width=width), noise_std=noise), x, y


def _dense_log_joint(bnn, x, y, z, parameterisation):
    """The log joint of ``z`` and ``y``, every constant included, in plain NumPy/SciPy.

    Only the features ``Psi`` come from the package (its forward pass); the densities are SciPy's:

    * standard, ``z = theta``: :math:`\\sum\\log\\mathcal N(\\theta; 0, 1) + \\sum_{ij}\\log\\mathcal N(Y_{ij}; (\\Psi\\theta_{\\mathrm{out}})_{ij}, \\sigma^2)`;
    * repriorised with ``phi_out`` sampled, ``z = phi``: the standard joint at :math:`\\theta(\\phi)` plus the
      log-Jacobian, both from the dense ``p x p`` matrices (:func:`conftest.dense_repriorisation`): the
      change of variables itself, not the ``n x n`` identity the package evaluates;
    * collapsed, ``z = {"hidden"}``: :math:`\\sum\\log\\mathcal N(\\phi_{\\mathrm{hidden}}; 0, 1) + \\sum_j
      \\log\\mathcal N(Y_{:j}; 0, \\Psi\\Psi^\\top + \\sigma^2 I)` from the dense ``n x n`` covariance.
    """
    s = bnn.noise_std
    psi = np.asarray(bnn.features({"hidden": z["hidden"]}, jnp.asarray(x)))
    hidden_prior = sum(norm.logpdf(np.asarray(leaf)).sum() for leaf in jax.tree_util.tree_leaves(z["hidden"]))
    if "readout" not in z:
        cov = psi @ psi.T + s**2 * np.eye(len(x))
        return hidden_prior + sum(multivariate_normal(np.zeros(len(x)), cov).logpdf(y[:, j])
                                  for j in range(y.shape[1]))
    out = np.vstack([np.asarray(z["readout"]["W"]), np.asarray(z["readout"]["b"])[None]])  # bias row last
    log_jacobian = 0.0
    if parameterisation == "reprior":
        out, log_jacobian = dense_repriorisation(psi, y, s, out)
    return hidden_prior + norm.logpdf(out).sum() + norm.logpdf(y, loc=psi @ out, scale=s).sum() + log_jacobian


@pytest.mark.parametrize("parameterisation, readout", SETTINGS)
@pytest.mark.parametrize("form", ["dual", "primal"])
def test_log_density_is_the_log_joint_x64(parameterisation, readout, form):
    """log_likelihood + constants + log N(z; 0, I) is the log joint of z and Y (all constants included),
    against the dense NumPy/SciPy density of :func:`_dense_log_joint`.

    n = 7 data, p = 6 features (both forms run).  The log joints are -50 to -100 and agree to
    about 1e-16 relative; rtol 1e-12 leaves room for float64 round-off in the factorisations
    (s = 0.3, well conditioned), while a missing or wrong term (a constant, the prior, the
    log-Jacobian) is off by O(1) nats or more.
    """
    with jax.enable_x64(True):
        bnn, x, y = _problem()
        target = build_target(bnn, jnp.asarray(x), jnp.asarray(y), parameterisation=parameterisation,
                              readout=readout, form=form)
        params = bnn.init(jax.random.key(3), x, 2)
        z = {"hidden": params["hidden"]} if target.collapsed else params
        reference = _dense_log_joint(bnn, x, y, z, parameterisation)
        np.testing.assert_allclose(float(target.log_density(z)), reference, rtol=1e-12)
        squared = sum(np.sum(np.asarray(v) ** 2) for v in jax.tree_util.tree_leaves(z))
        np.testing.assert_allclose(float(target.logdensity(z) - target.log_likelihood(z)), -0.5 * squared,
                                   rtol=1e-12)
        assert target.num_dims == sum(v.size for v in jax.tree_util.tree_leaves(z))


@pytest.mark.parametrize("n, p", [(6, 11), (11, 6)])
def test_unnormalised_marginal_likelihood_matches_scipy_in_both_forms_x64(n, p):
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        psi, y, s = rng.standard_normal((n, p)), rng.standard_normal((n, 3)), 0.2
        cov = psi @ psi.T + s**2 * np.eye(n)
        exact = sum(multivariate_normal(np.zeros(n), cov).logpdf(y[:, j]) for j in range(3))
        constant = float(rp.gaussian_log_constant(n * 3, s))
        for form in ("dual", "primal"):
            value = float(rp.log_marginal_likelihood_unnormalised(psi, y, s, form))
            np.testing.assert_allclose(value + constant, exact, rtol=1e-11)


def test_jitter_is_the_likelihood_of_the_jittered_model_x64():
    """jitter c: the marginal likelihood with noise variance s^2 + c mean(diag K), relative to s's constant."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        n, p, s, jitter = 6, 9, 0.2, 0.05
        psi, y = rng.standard_normal((n, p)), rng.standard_normal((n, 2))
        k = psi @ psi.T
        var = s**2 + jitter * np.mean(np.diag(k))
        exact = sum(multivariate_normal(np.zeros(n), k + var * np.eye(n)).logpdf(y[:, j]) for j in range(2))
        for form in ("dual", "primal"):
            value = rp.log_marginal_likelihood_unnormalised(psi, y, s, form, jitter=jitter)
            np.testing.assert_allclose(float(value + rp.gaussian_log_constant(n * 2, s)), exact, rtol=1e-11)


def test_primal_quadratic_form_has_no_cancellation():
    """Small noise, targets explained by the features: the old difference form loses digits in float32.

    Exact value in float64 (dual form); float32 primal: new sum-of-squares form
    against the old ``(|Y|^2 - |beta|^2)/s^2``.  The new form's error is at least
    10x smaller (here the old form's error is of order 1 nat; the new one's about 1e-2).
    """
    rng = np.random.default_rng(4)
    n, p, s = 64, 8, 1e-3
    psi = rng.standard_normal((n, p))
    y = psi @ rng.standard_normal((p, 1)) + s * rng.standard_normal((n, 1))
    with jax.enable_x64(True):
        exact = float(rp.log_marginal_likelihood_unnormalised(psi, y, s, "dual"))
    psi32, y32 = jnp.asarray(psi, jnp.float32), jnp.asarray(y, jnp.float32)
    new = float(rp.log_marginal_likelihood_unnormalised(psi32, y32, s, "primal"))

    a = psi32 / s  # the old form: -(|Y|^2 - |beta|^2) / (2 s^2), beta = L^-1 A^T Y
    chol = jnp.linalg.cholesky(jnp.eye(p, dtype=jnp.float32) + a.T @ a)
    beta = jax.scipy.linalg.solve_triangular(chol, a.T @ y32, lower=True)
    old_quad = float(jnp.sum(y32**2) / s**2 - jnp.sum(beta**2))
    old = -0.5 * (old_quad + float(2 * jnp.sum(jnp.log(jnp.diagonal(chol)))))
    assert abs(new - exact) * 10 < abs(old - exact)


def test_log_likelihood_differences_are_float32_accurate_at_large_dimension():
    """What pCN's acceptance ratio needs: l(z') - l(z) in float32 vs float64, about 2e5 weights.

    The log prior at this dimension is about -1e5 (float32 spacing 0.008); the
    likelihood difference in float32 must agree with float64 to 1e-2 nat.
    """
    bnn = reprior.BNN(reprior.MLP(width=2048, depth=1), noise_std=0.1)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((32, 64)), rng.standard_normal((32, 2))
    params = bnn.init(jax.random.key(0), x, 2)
    z = {"hidden": params["hidden"]}
    z_new = jax.tree_util.tree_map(lambda a: a + 0.01 * jax.random.normal(jax.random.key(1), a.shape), z)

    def difference(dtype):
        with jax.enable_x64(dtype == "float64"):
            cast = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), t)  # noqa: E731
            target = build_target(bnn, jnp.asarray(x, dtype), jnp.asarray(y, dtype))
            fn = jax.jit(target.log_likelihood)
            return float(fn(cast(z_new)) - fn(cast(z))), float(target.log_density(cast(z)))

    diff64, log_joint = difference("float64")
    diff32, _ = difference("float32")
    assert abs(log_joint) > 1e5  # the regime where the old potential-based ratio lost ~0.01-0.1 nat
    assert abs(diff32 - diff64) < 1e-2, (diff32, diff64)


def test_initial_positions_and_maps_back_x64():
    with jax.enable_x64(True):
        bnn, x, y = _problem()
        target = build_target(bnn, jnp.asarray(x), jnp.asarray(y))
        z0 = target.initial_positions(jax.random.key(0), 3)
        assert set(z0) == {"hidden"} and jax.tree_util.tree_leaves(z0)[0].shape[0] == 3
        z = jax.tree_util.tree_map(lambda a: a[0], z0)
        theta, phi = target.to_params(z, jax.random.key(1))
        # theta maps back to phi through the inverse transform (an independent code path)
        back = bnn.to_phi(theta, x, y)
        np.testing.assert_allclose(back["readout"]["W"], phi["readout"]["W"], rtol=1e-9, atol=1e-12)


def test_build_target_validates():
    bnn, x, y = _problem()
    with pytest.raises(ValueError, match="parameterisation"):
        build_target(bnn, x, y, parameterisation="centred")
    with pytest.raises(ValueError, match="jitter"):
        build_target(bnn, x, y, jitter=-1.0)
    assert Target.prior == "N(0, I)" and Target.prior_std == 1.0
