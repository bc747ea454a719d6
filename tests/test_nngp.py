"""Tests for reprior.core.nngp: dual activations, NNGP kernels, posterior, distance."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from reprior.core import nngp
from reprior.core.architectures import ACTIVATIONS, MLP, Architecture, ResNet
from reprior.core.architectures import resnet
from reprior.core.architectures.layers import conv
from reprior.core.architectures.registry import spec_of

ACTS = tuple(ACTIVATIONS)

# (k11, k22, k12): moderate and large variances, rho = +-1, 0, near +-1, unequal scales.
COVARIANCES = [
    (1.0, 1.0, 0.5),
    (2.0, 0.5, -0.7),
    (3.0, 3.0, 2.99),
    (1.0, 2.0, 2.0**0.5),  # rho = 1
    (4.0, 1.0, -2.0),  # rho = -1
    (5.0, 5.0, 0.0),
    (10.0, 0.1, -0.9),
    (20.0, 20.0, -5.0),
]


def _normal(seed: int, shape) -> np.ndarray:
    """Test data from NumPy (float64), so that making it compiles nothing."""
    return np.random.default_rng(seed).standard_normal(shape)


def _kernel_parts(arch, x1, x2, method: str) -> tuple[np.ndarray, ...]:
    """``(diag K(x1, x1), diag K(x2, x2), K(x1, x2))`` from the NNGP recursion that ``arch``'s module
    registered (``ArchitectureSpec.nngp_kernel_parts``), with :func:`nngp.activation_expectation` by ``method``."""
    expect = functools.partial(nngp.activation_expectation, arch.activation, method=method)
    parts = jax.jit(spec_of(arch).nngp_kernel_parts, static_argnums=(0, 3))(arch, x1, x2, expect)
    return tuple(np.asarray(a) for a in parts)


def _inputs(num: int = 4, in_dim: int = 3, seed: int = 0) -> np.ndarray:
    """Random rows plus ``-x_0`` and ``2 x_1`` (correlations exactly -1 and +1 at layer 1 when b_std = 0)."""
    x = _normal(seed, (num, in_dim))
    return np.concatenate([x, -x[:1], 2 * x[1:2]])


@functools.partial(jax.jit, static_argnums=0)
def _empirical_kernel(arch, rng_key, x):
    params = arch.init(rng_key, x, 1)
    psi = arch.features(params, x)
    return psi @ psi.T


def _scipy_expectation(phi, k11, k22, k12):
    """Independent reference: nested adaptive quadrature over z1 and z2 ~ N(0, 1)."""
    rho = k12 / math.sqrt(k11 * k22)
    c = math.sqrt(max(1.0 - rho**2, 0.0))
    s1, s2 = math.sqrt(k11), math.sqrt(k22)
    density = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    opts = dict(epsabs=1e-12, epsrel=1e-10, limit=200)

    def inner(z1):
        if c == 0.0:
            return phi(s2 * rho * z1)
        return integrate.quad(lambda z2: density(z2) * phi(s2 * (rho * z1 + c * z2)), -12, 12, **opts)[0]

    return integrate.quad(lambda z1: density(z1) * phi(s1 * z1) * inner(z1), -12, 12, **opts)[0]


_SCALAR_ACTS = {
    "gelu": lambda t: 0.5 * t * (1 + math.erf(t / math.sqrt(2))),
    "tanh": math.tanh,
}


# -- dual activations -------------------------------------------------------------------
@pytest.mark.parametrize("activation", nngp.CLOSED_FORMS)
def test_closed_form_matches_quadrature_x64(activation):
    with jax.enable_x64(True):
        k11, k22, k12 = (jnp.asarray(np.array(c, dtype=np.float64)) for c in zip(*COVARIANCES))
        closed = nngp.activation_expectation(activation, k11, k22, k12, method="closed_form")
        quad = nngp.activation_expectation(activation, k11, k22, k12, method="quadrature")
        assert closed.dtype == quad.dtype == jnp.float64
    # Measured error of the default rule on these cases: <1e-14 (relu), <1e-8 (erf).
    np.testing.assert_allclose(quad, closed, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("activation", ["gelu", "tanh"])
def test_quadrature_matches_scipy_x64(activation):
    """The documented accuracy of the default rule (< 1e-6) against adaptive quadrature."""
    cases = [COVARIANCES[i] for i in (0, 2, 3, 4, 7)]
    with jax.enable_x64(True):
        k11, k22, k12 = (jnp.asarray(np.array(c, dtype=np.float64)) for c in zip(*cases))
        ours = np.asarray(nngp.activation_expectation(activation, k11, k22, k12))
    reference = np.array([_scipy_expectation(_SCALAR_ACTS[activation], *c) for c in cases])
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)


def test_erf_closed_form_against_scipy_x64():
    """Guard the closed form itself (not just closed form == our quadrature)."""
    with jax.enable_x64(True):
        k11, k22, k12 = (jnp.asarray(np.array(c, dtype=np.float64)) for c in zip(*COVARIANCES[:4]))
        ours = np.asarray(nngp.activation_expectation("erf", k11, k22, k12))
    reference = np.array([_scipy_expectation(math.erf, *c) for c in COVARIANCES[:4]])
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-8)


def test_relu_closed_form_special_values_x64():
    """rho = 1: E[relu(u)^2] = k / 2; rho = 0: (E relu(u))^2 = k / (2 pi); rho = -1: 0."""
    with jax.enable_x64(True):
        k = jnp.asarray([3.0, 3.0, 3.0])
        out = nngp.activation_expectation("relu", k, k, jnp.asarray([3.0, 0.0, -3.0]))
    np.testing.assert_allclose(out, [1.5, 3.0 / (2 * math.pi), 0.0], atol=1e-12)


def test_zero_variance_is_finite_x64():
    with jax.enable_x64(True):
        zero, one = jnp.zeros(1), jnp.ones(1)
        for activation in ACTS:
            for method in ("auto", "quadrature"):
                out = nngp.activation_expectation(activation, zero, one, zero, method=method)
                # u = 0 almost surely, so E[phi(u) phi(v)] = phi(0) E[phi(v)] = 0 for all four.
                np.testing.assert_allclose(out, 0.0, atol=1e-12, err_msg=f"{activation}, {method}")


# -- the kernel against Monte Carlo over random initialisations --------------------------
@pytest.mark.parametrize("depth", [1, 2])
def test_kernel_matches_monte_carlo_x64(depth):
    """Average ``Psi Psi^T`` over inits of a width-512 MLP and compare with the limit.

    Tolerance: 5 Monte Carlo standard errors (sample sd / sqrt(num_inits)) per
    entry, plus a finite-width bias allowance.  For depth 1 the empirical kernel
    is an average of ``width`` i.i.d. terms whose mean is exactly the NNGP
    kernel (layer-1 pre-activations are exactly Gaussian), so there is no bias.
    For depth 2 the layer-2 covariance is itself estimated from ``width`` units
    and the dual activation is nonlinear in it, which biases the mean by
    O(1/width); with 4000 inits we measured |bias| < 1.7 max|K| / width for all
    four activations (at the Monte Carlo resolution), so we allow 3 max|K| / width.
    The parameter draws are shared across activations (one compile, one set of
    random numbers) and made in float32, whose rounding (~1e-7 relative) is far
    below the Monte Carlo error (~1e-3 relative), so the test fits the time
    budget; the limit is computed in float64.
    """
    width, num_inits = 512, 200
    x = np.asarray(_inputs(), np.float64)
    archs = {a: MLP(width, depth, a, w_std=1.5, b_std=0.2, out_w_std=1.0, out_b_std=0.3) for a in ACTS}

    @jax.jit
    def sample(keys):
        x32 = jnp.asarray(x, jnp.float32)

        def kernels(key):  # the parameter layout does not depend on the activation
            params = archs["relu"].init(key, x32, 1)
            return {a: arch.features(params, x32) @ arch.features(params, x32).T for a, arch in archs.items()}

        return jax.lax.map(kernels, keys, batch_size=50)

    draws = sample(jax.random.split(jax.random.key(1), num_inits))
    with jax.enable_x64(True):
        k_inf = {a: np.asarray(nngp.nngp_kernel(arch, x)) for a, arch in archs.items()}
        assert k_inf["relu"].dtype == np.float64
    for activation, other in zip(ACTS, ("gelu", "tanh", "relu", "erf"), strict=True):
        samples = np.asarray(draws[activation], np.float64)
        mean, sd = samples.mean(axis=0), samples.std(axis=0, ddof=1)
        bias = 0.0 if depth == 1 else 3 * np.abs(k_inf[activation]).max() / width
        tol = 5 * sd / math.sqrt(num_inits) + bias
        err = np.abs(mean - k_inf[activation])
        assert np.all(err <= tol), f"{activation}: max err/tol {np.max(err / tol):.2f}"
        # Power: the same tolerance rejects the kernel of a similar activation.
        assert np.any(np.abs(mean - k_inf[other]) > tol), f"{activation} vs {other}"


# -- structure ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTS)
def test_kernel_symmetric_psd_consistent_x64(activation):
    """Depth 3 (depths 1 and 2 are covered by the Monte Carlo test)."""
    arch = MLP(16, 3, activation)
    method = "closed_form" if activation in nngp.CLOSED_FORMS else "quadrature"
    with jax.enable_x64(True):
        x = jnp.asarray(np.asarray(_inputs(num=6), np.float64))
        k = np.asarray(nngp.nngp_kernel(arch, x))
        # (x2, x1) swaps the roles of u and v in the quadrature.
        diag2, diag1, k21 = _kernel_parts(arch, x[5:], x[:5], method)
    assert k.shape == (8, 8) and k21.shape == (3, 5)
    np.testing.assert_array_equal(k, k.T)
    assert np.linalg.eigvalsh(k).min() > -1e-12 * np.abs(k).max()
    np.testing.assert_allclose(k21.T, k[:5, 5:], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([diag1, diag2]), np.diag(k), rtol=1e-12)


def test_one_layer_relu_by_hand_x64():
    """Depth 1, relu: sigma_out^2 / (2 pi) sqrt(k11 k22) (sin t + (pi - t) cos t) + b_out^2."""
    arch = MLP(8, 1, "relu", w_std=1.3, b_std=0.4, out_w_std=0.7, out_b_std=0.2)
    x = np.array([[1.0, 2.0], [-0.5, 0.3]])
    s = 1.3**2 * (x @ x.T) / 2 + 0.4**2
    rho = s[0, 1] / np.sqrt(s[0, 0] * s[1, 1])
    t = np.arccos(rho)
    off = 0.7**2 * np.sqrt(s[0, 0] * s[1, 1]) / (2 * np.pi) * (np.sin(t) + (np.pi - t) * rho) + 0.2**2
    on = 0.7**2 * np.diag(s) / 2 + 0.2**2
    with jax.enable_x64(True):
        k = np.asarray(nngp.nngp_kernel(arch, jnp.asarray(x)))
    np.testing.assert_allclose(k, [[on[0], off], [off, on[1]]], rtol=1e-13)


def test_dtype_follows_inputs():
    arch = MLP(8, 2, "tanh")  # the quadrature path, whose nodes must follow the dtype
    x = np.ones((3, 2), np.float32)
    assert nngp.nngp_kernel(arch, x).dtype == jnp.float32
    assert nngp.nngp_kernel(arch, np.ones((3, 2), np.int32)).dtype == jnp.float32
    with jax.enable_x64(True):
        assert nngp.nngp_kernel(arch, np.ones((3, 2))).dtype == jnp.float64
        assert nngp.nngp_kernel(arch, jnp.asarray(x)).dtype == jnp.float32


def test_jit_matches_eager_x64():
    gelu, erf = MLP(8, 2, "gelu"), MLP(8, 2, "erf")  # the quadrature path; a cheap one for the posterior
    x = _inputs()
    with jax.enable_x64(True):
        x = jnp.asarray(np.asarray(x, np.float64))
        eager = nngp.nngp_kernel(gelu, x[:4], x[4:])
        jitted = jax.jit(nngp.nngp_kernel, static_argnums=0)(gelu, x[:4], x[4:])
        mean, var = nngp.nngp_posterior(erf, x[:4], x[:4, 0], x[4:], 0.1)
        # noise_std traced too: argument checks must not need concrete values.
        mean_j, var_j = jax.jit(nngp.nngp_posterior, static_argnums=0)(erf, x[:4], x[:4, 0], x[4:], 0.1)
    np.testing.assert_allclose(jitted, eager, rtol=1e-12)
    np.testing.assert_allclose(mean_j, mean, rtol=1e-10)
    np.testing.assert_allclose(var_j, var, rtol=1e-10, atol=1e-14)


def test_batched_quadrature_matches_unbatched_x64():
    """The lax.map path (many entries, bounded memory) gives the numbers of the vmap path.

    A batch holds 2**22 (entry, node) pairs: 682 entries of the default 4 * 24 * 64 nodes, so the
    1600 entries here are two batches and 236 left over, where the 8 alone are one vmap."""
    k11, k22, k12 = (np.array(c, dtype=np.float64) for c in zip(*COVARIANCES))
    with jax.enable_x64(True):
        whole = nngp.activation_expectation("tanh", k11, k22, k12, method="quadrature")
        batched = nngp.activation_expectation("tanh", *(np.tile(k, 200) for k in (k11, k22, k12)),
                                              method="quadrature")
    assert batched.shape == (200 * len(COVARIANCES),)
    np.testing.assert_allclose(np.asarray(batched).reshape(200, -1), np.broadcast_to(whole, (200, len(COVARIANCES))),
                               rtol=1e-13, atol=1e-15)


# -- width convergence ---------------------------------------------------------------------
def test_kernel_distance_decreases_with_width_x64():
    """A single init per width suffices: the distance is about c / sqrt(width), so
    64 -> 4096 should shrink it about 8-fold, and we only ask for 2-fold.  The
    distance is the norm of a sum of many weakly dependent entries with
    fluctuations of relative order 1/sqrt(width) each, so a fixed seed is not a
    seed hunt: failing would need a 4-sigma-like event at both widths."""
    x = _inputs(num=6)
    distances = {}
    with jax.enable_x64(True):
        for width in (64, 4096):
            arch = MLP(width, 1, "relu")
            k_emp = _empirical_kernel(arch, jax.random.key(3), x)
            distances[width] = nngp.kernel_distance(k_emp, nngp.nngp_kernel(arch, x))
    assert isinstance(distances[64], float)
    assert distances[4096] < distances[64] / 2, distances
    assert distances[4096] < 0.1, distances


def test_kernel_distance_values():
    k = np.array([[2.0, 1.0], [1.0, 2.0]])
    assert nngp.kernel_distance(k, k) == 0.0
    assert nngp.kernel_distance(1.1 * k, k) == pytest.approx(0.1, rel=1e-12)
    assert nngp.kernel_distance(jnp.zeros((2, 2)), k) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="K_inf"):
        nngp.kernel_distance(k, np.ones((3, 3)))
    with pytest.raises(ValueError, match="K_inf"):
        nngp.kernel_distance(k, np.zeros((2, 2)))


# -- posterior ---------------------------------------------------------------------------
def test_posterior_matches_direct_formula_x64():
    arch = MLP(8, 2, "erf")
    x = _normal(4, (11, 3))
    y = _normal(5, (8, 2))
    noise = 0.3
    with jax.enable_x64(True):
        x, y = (jnp.asarray(np.asarray(a, np.float64)) for a in (x, y))
        k = np.asarray(nngp.nngp_kernel(arch, x))
        mean, var = nngp.nngp_posterior(arch, x[:8], y, x[8:], noise)
        mean1, _ = nngp.nngp_posterior(arch, x[:8], y[:, 0], x[8:], noise)
    assert mean.shape == (3, 2) and var.shape == (3,) and mean.dtype == jnp.float64
    k_train, k_cross, k_test = k[:8, :8], k[:8, 8:], k[8:, 8:]
    inv = np.linalg.inv(k_train + noise**2 * np.eye(8))
    np.testing.assert_allclose(mean, k_cross.T @ inv @ np.asarray(y), rtol=1e-9)
    np.testing.assert_allclose(var, np.diag(k_test - k_cross.T @ inv @ k_cross), rtol=1e-9)
    np.testing.assert_allclose(mean1, mean[:, :1], rtol=1e-12)


def test_posterior_interpolates_as_noise_vanishes_x64():
    """At the training inputs, mean - y = -s^2 (K + s^2 I)^-1 y and var <= s^2."""
    arch = MLP(8, 2, "erf")
    x = _normal(6, (8, 3))
    y = _normal(7, (8, 1))
    with jax.enable_x64(True):
        x, y = (jnp.asarray(np.asarray(a, np.float64)) for a in (x, y))
        lam_min = np.linalg.eigvalsh(np.asarray(nngp.nngp_kernel(arch, x))).min()
        for noise in (1e-2, 1e-4):
            mean, var = nngp.nngp_posterior(arch, x, y, x, noise)
            err = np.linalg.norm(np.asarray(mean - y))
            assert err <= noise**2 * np.linalg.norm(y) / lam_min * (1 + 1e-6) + 1e-10
            assert np.all(np.asarray(var) <= noise**2 * (1 + 1e-6) + 1e-12)
    assert err < 1e-5 and lam_min > 0


# -- ResNet -------------------------------------------------------------------------------
def test_conv_covariance_is_exact_x64():
    """A 'SAME' conv is linear in its parameters, so its output covariance is J J^T exactly.

    Cases: stride 1, and stride 2 with an even (asymmetric padding) and an odd size."""
    cov_fn = jax.jit(resnet.conv_cov, static_argnums=(1, 2, 3))
    for size, stride in [((4, 4), 1), ((6, 5), 2)]:
        h_out, w_out = (-(-d // stride) for d in size)
        with jax.enable_x64(True):
            z = jnp.asarray(_normal(8, (2, *size, 3)))

            def outputs(theta, z=z, stride=stride):  # one output channel: (2 * h_out * w_out,)
                layer = {"W": theta[:27].reshape(3, 3, 3, 1), "b": theta[27:]}
                return conv(layer, z, 1.3, 0.4, stride=stride)[..., 0].reshape(-1)

            jac = jax.jit(jax.jacfwd(outputs))(jnp.zeros(28))
            exact = (jac @ jac.T).reshape(2, h_out, w_out, 2, h_out, w_out).transpose(0, 3, 1, 2, 4, 5)
            ours = cov_fn(jnp.einsum("aijc,bklc->abijkl", z, z) / 3, stride, 1.3, 0.4)
        np.testing.assert_allclose(ours, exact, rtol=1e-12, atol=1e-14, err_msg=f"{size}, stride {stride}")


@pytest.mark.parametrize("scaling", ["uniform", "progressive"])
def test_resnet_on_single_pixels_matches_hand_recursion_x64(scaling):
    """On 1x1 images every conv keeps only its centre tap: Sigma -> w^2 Sigma / 9 + b^2."""
    arch = ResNet(4, 14, "erf", w_std=1.7, b_std=0.3, out_w_std=0.8, out_b_std=0.2, residual_scaling=scaling)
    x = _normal(9, (3, 1, 1, 2))
    with jax.enable_x64(True):

        def dual(cov):
            var = np.diag(cov)
            return np.asarray(nngp.activation_expectation("erf", var[:, None], var[None, :], cov))

        def conv_cov(cov):
            return 1.7**2 / 9 * cov + 0.3**2

        flat = x.reshape(3, 2)
        cov = conv_cov(flat @ flat.T / 2)
        for spec in arch.block_specs():
            branch = conv_cov(dual(conv_cov(dual(cov))))
            skip = conv_cov(cov) if spec.has_shortcut else cov
            cov = spec.skip_scale**2 * skip + spec.branch_scale**2 * branch
        expected = 0.8**2 * dual(cov) + 0.2**2
        ours = np.asarray(nngp.nngp_kernel(arch, x))
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_resnet_kernel_structure_x64():
    """Symmetry, PSD and consistent diagonals, from one compiled recursion (the
    posterior shares the architecture-independent code tested on MLPs)."""
    arch = ResNet(4, 8, "relu")
    x = _normal(10, (4, 4, 4, 2))
    with jax.enable_x64(True):
        diag1, diag2, cross = _kernel_parts(arch, jnp.asarray(x[:3]), jnp.asarray(x), "closed_form")
    k = cross[:, :3]
    np.testing.assert_allclose(k, k.T, rtol=1e-12)
    assert np.linalg.eigvalsh(k).min() > 0
    np.testing.assert_allclose(np.diag(k), diag1, rtol=1e-12)
    np.testing.assert_allclose(diag2[:3], diag1, rtol=1e-12)
    with pytest.raises(ValueError, match="x2"):
        nngp.nngp_kernel(arch, x, np.ones((2, 4, 4, 3)))


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_resnet_kernel_matches_monte_carlo(activation):
    """As the MLP Monte Carlo test, for a depth-8 ResNet of width 32 on 6x6 images
    (sizes 6 -> 3 -> 2: stride-2 'SAME' padding both asymmetric and symmetric).

    Tolerance: 5 Monte Carlo standard errors plus a finite-width bias allowance
    of 2% of max|K|.  The bias is O(depth / width); with 1600 inits we measured
    max|mean - K| below 0.6% of max|K| for relu and tanh (within the Monte Carlo
    error), so 2% is a safe bound that keeps the test able to tell relu from
    gelu and tanh from erf (asserted below)."""
    width, num_inits = 32, 400
    x = _normal(11, (3, 6, 6, 1))
    arch = ResNet(width, 8, activation, residual_scaling="progressive")
    other = ResNet(width, 8, "gelu" if activation == "relu" else "erf", residual_scaling="progressive")

    @jax.jit
    def sample(keys):
        x32 = jnp.asarray(x, jnp.float32)
        return jax.lax.map(lambda key: _empirical_kernel(arch, key, x32), keys, batch_size=50)

    samples = np.asarray(sample(jax.random.split(jax.random.key(12), num_inits)), np.float64)
    with jax.enable_x64(True):
        k_inf = np.asarray(nngp.nngp_kernel(arch, x))
        k_other = np.asarray(nngp.nngp_kernel(other, x))
    mean, sd = samples.mean(axis=0), samples.std(axis=0, ddof=1)
    tol = 5 * sd / math.sqrt(num_inits) + 0.02 * np.abs(k_inf).max()
    err = np.abs(mean - k_inf)
    assert np.all(err <= tol), f"max err/tol {np.max(err / tol):.2f}"
    assert np.any(np.abs(mean - k_other) > tol)


# -- argument checks ---------------------------------------------------------------------
def test_other_architectures_not_implemented():
    with pytest.raises(NotImplementedError, match="Architecture"):
        nngp.nngp_kernel(Architecture(), np.ones((2, 3)))
    with pytest.raises(NotImplementedError, match="Architecture"):
        nngp.nngp_posterior(Architecture(), np.ones((2, 3)), np.ones(2), np.ones((1, 3)), 0.1)


def test_bad_arguments():
    arch = MLP(8, 1, "tanh")
    x = np.ones((3, 2))
    with pytest.raises(TypeError, match="arch"):
        nngp.nngp_kernel("mlp", x)
    with pytest.raises(ValueError, match="method"):
        nngp.nngp_kernel(arch, x, method="closed_form")
    with pytest.raises(ValueError, match="method"):
        nngp.nngp_kernel(arch, x, method="exact")
    with pytest.raises(ValueError, match="quadrature_nodes"):
        nngp.nngp_kernel(arch, x, quadrature_nodes=(0, 10))
    with pytest.raises(ValueError, match="x2"):
        nngp.nngp_kernel(arch, x, np.ones((3, 5)))
    with pytest.raises(ValueError, match="x1"):
        nngp.nngp_kernel(arch, np.ones((3, 2, 2)))
    with pytest.raises(ValueError, match="x_test"):
        nngp.nngp_posterior(arch, x, np.ones(3), np.full((1, 2), np.nan), 0.1)
    with pytest.raises(ValueError, match="y_train"):
        nngp.nngp_posterior(arch, x, np.ones(4), x, 0.1)
    with pytest.raises(ValueError, match="noise_std"):
        nngp.nngp_posterior(arch, x, np.ones(3), x, 0.0)
    with pytest.raises(ValueError, match="activation"):
        nngp.activation_expectation("sigmoid", 1.0, 1.0, 0.0)
