"""The per-draw work of ``reprior.sample``: one factorisation serves every recorded quantity.

``collect`` (:func:`reprior.inference.sampling._make_collect_fn`) computes the readout draw,
``log_marginal_likelihood`` and the Rao-Blackwellised predictive from one
eigendecomposition (:meth:`reprior.core.target.Target.readout_posterior`), and the
projections of theta and phi from one pass over the hidden weights.  These
tests check that the shared forms equal the separate functions they replace,
that the compiled draw holds one factorisation, and that float32 at small
noise stays finite and close to float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reprior
from reprior.core import repriorise as rp
from reprior.inference import sampling
from reprior.experiments.data import load_dataset
from reprior.core.projections import project_tree
from reprior.core.target import build_target

SIGMA = 0.3


@pytest.mark.parametrize("n, p", [(7, 12), (12, 5)])  # dual and primal
def test_one_factorisation_equals_the_separate_functions_x64(n, p):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        psi, y = jnp.asarray(rng.normal(size=(n, p))), jnp.asarray(rng.normal(size=(n, 3)))
        psi_test = jnp.asarray(rng.normal(size=(4, p)))
        post = rp.readout_posterior(psi, y, SIGMA)
        np.testing.assert_allclose(post.log_marginal_likelihood(y), rp.log_marginal_likelihood(psi, y, SIGMA),
                                   rtol=1e-12)
        mean, var = post.predictive(psi_test)
        ref_mean, ref_var = rp.predictive(psi, y, psi_test, SIGMA)
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(var, ref_var, rtol=1e-10, atol=1e-12)


def test_shared_projections_equal_project_tree_x64():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        hidden = [{"W": jnp.asarray(rng.normal(size=(3, 20000))), "b": jnp.asarray(rng.normal(size=20000))}]
        theta = {"hidden": hidden, "readout": {"W": jnp.asarray(rng.normal(size=(5, 2))), "b": jnp.ones(2)}}
        phi = {"hidden": hidden, "readout": {"W": jnp.asarray(rng.normal(size=(5, 2))), "b": jnp.zeros(2)}}
        words = sampling._projection_words(80012, 40, 7)  # 40 directions: two words per weight
        assert words.shape == (80012, 2) and words.dtype == np.uint32
        for num, table in ((10, None), (10, words), (40, words)):  # 80012 rows: several blocks
            out = jax.jit(lambda t, f, w: sampling._projections(t, f, num, 7, w))(theta, phi, table)
            np.testing.assert_allclose(out["theta_proj"], project_tree(theta, num, 7), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(out["phi_proj"], project_tree(phi, num, 7), rtol=1e-12, atol=1e-14)
        theta_only = sampling._projections(theta, None, 10, 7, words)
        assert set(theta_only) == {"theta_proj"}
        np.testing.assert_allclose(theta_only["theta_proj"], project_tree(theta, 10, 7), rtol=1e-12, atol=1e-14)
        assert sampling._projection_words(2**26, 40, 7) is None  # 512 MiB of words: hashed per draw instead


def _problem(noise_std, width=64, n_train=32, n_test=8):
    data = load_dataset("digits", n_train=n_train, n_test=n_test, seed=0, flatten=True)
    return reprior.BNN(reprior.MLP(width, depth=1), noise_std), data


def _collect(bnn, data, dtype, z=None, keep="readout"):
    """``(outputs, z)`` of one recorded draw in ``dtype`` at ``z`` (a prior draw when None)."""
    with jax.enable_x64(dtype == "float64"):
        cast = lambda a: jnp.asarray(np.asarray(a), dtype)  # noqa: E731
        target = build_target(bnn, cast(data.x_train), cast(data.y_train))
        if z is None:
            z = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(jax.random.key(0), 1))
        collect = sampling._make_collect_fn(target, cast(data.x_test), keep, 10, 0)
        out = jax.jit(lambda zz: collect({}, jax.random.key(1), zz))(jax.tree_util.tree_map(cast, z))
        return {k: np.asarray(v, np.float64) for k, v in out.items()}, z


@pytest.mark.parametrize("width", [16, 64])  # primal (p < n) and dual
def test_a_recorded_draw_holds_one_factorisation(width):
    """The compiled draw: one eigendecomposition, no Cholesky factorisation, and one Gram matrix."""
    bnn, data = _problem(0.1, width=width)
    target = build_target(bnn, jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    z = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(jax.random.key(0), 1))
    collect = sampling._make_collect_fn(target, jnp.asarray(data.x_test), "all", 10, 0)
    text = str(jax.make_jaxpr(lambda zz: collect({}, jax.random.key(1), zz))(z))
    assert text.count("eigh[") == 1 and "cholesky" not in text


def test_float32_at_noise_1e3_stays_finite_and_agrees_with_float64():
    """noise_std 1e-3, float32: every recorded quantity finite; the deterministic ones match float64.

    The same hidden weights in both dtypes (the exact readout draw's N(0, I) numbers differ between
    dtypes, so theta_out is checked against the float64 map of the float32 run's own phi_out).
    Tolerances: float32 rounding through an eigendecomposition of a kernel of condition ~1e8
    (measured errors: 3e-7 relative in the log marginal likelihood, 1e-6 in the predictive mean,
    4e-7 in its variance, at width 256; a factor of about 30 of margin).
    """
    bnn, data = _problem(1e-3, width=256)
    single, z = _collect(bnn, data, "float32")
    double, _ = _collect(bnn, data, "float64", z)
    for name, value in single.items():
        assert np.all(np.isfinite(value)), name
    np.testing.assert_allclose(single["log_marginal_likelihood"], double["log_marginal_likelihood"], rtol=1e-5)
    scale = np.max(np.abs(double["f_test_rb_mean"]))
    np.testing.assert_allclose(single["f_test_rb_mean"], double["f_test_rb_mean"], rtol=0, atol=3e-5 * scale)
    np.testing.assert_allclose(single["f_test_rb_var"], double["f_test_rb_var"], rtol=0,
                               atol=3e-5 * np.max(double["f_test_rb_var"]))
    with jax.enable_x64(True):
        target = build_target(bnn, jnp.asarray(data.x_train), jnp.asarray(data.y_train))
        post = target.readout_posterior(z)
        phi_out = jnp.concatenate([single["readout_W_reprior"], single["readout_b_reprior"][None]], axis=0)
        theta_out = np.asarray(rp.to_theta_out(post, phi_out))
    recorded = np.concatenate([single["readout_W"], single["readout_b"][None]], axis=0)
    # float32 theta_out = mu + sigma G^-1/2 phi_out at sigma = 1e-3: errors relative to the largest entry
    np.testing.assert_allclose(recorded, theta_out, rtol=0, atol=1e-3 * np.max(np.abs(theta_out)))
