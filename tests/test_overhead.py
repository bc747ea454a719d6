"""The per-draw work of ``reprior.sample``: one factorisation serves every recorded quantity.

``collect`` (:func:`reprior.inference.sampling.make_collect_fn`) computes the readout draw,
``log_marginal_likelihood`` and the Rao-Blackwellised predictive from one factorisation
(:meth:`reprior.core.target.Target.readout_factorisation`: the Cholesky factor that the density
evaluation computed, when the kernel carries it), and the projections of theta and phi from one
pass over the hidden weights.  These tests check the factorisation's quantities against
independent NumPy computations, that the compiled draw holds one factorisation (none when the
kernel hands it its evaluation), and that float32 at small noise stays finite and close to float64.
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
@pytest.mark.parametrize("build", ["readout_posterior", "readout_factorisation"])
def test_one_factorisation_equals_independent_numpy_x64(n, p, build):
    """Mean, marginal likelihood, predictive and log det G of each factorisation against NumPy's
    dense solves and ``slogdet`` of ``K + sigma^2 I`` and ``G``."""
    rng = np.random.default_rng(0)
    psi, y, psi_test = rng.normal(size=(n, p)), rng.normal(size=(n, 3)), rng.normal(size=(4, p))
    cov = psi @ psi.T + SIGMA**2 * np.eye(n)
    gram = psi.T @ psi + SIGMA**2 * np.eye(p)
    lml = -0.5 * (np.trace(y.T @ np.linalg.solve(cov, y)) + 3 * np.linalg.slogdet(cov)[1] + 3 * n * np.log(2 * np.pi))
    cross = psi @ psi_test.T
    with jax.enable_x64(True):
        post = getattr(rp, build)(jnp.asarray(psi), jnp.asarray(y), SIGMA)
        np.testing.assert_allclose(post.mean, np.linalg.solve(gram, psi.T @ y), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(post.log_marginal_likelihood(jnp.asarray(y)), lml, rtol=1e-12)
        np.testing.assert_allclose(post.log_det_gram(), np.linalg.slogdet(gram)[1], rtol=1e-12)
        mean, var = post.predictive(jnp.asarray(psi_test))
        np.testing.assert_allclose(mean, cross.T @ np.linalg.solve(cov, y), rtol=1e-10, atol=1e-12)
        ref_var = np.sum(psi_test**2, axis=1) - np.sum(cross * np.linalg.solve(cov, cross), axis=0)
        np.testing.assert_allclose(var, ref_var, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n, p, k", [(7, 12, 1), (5, 40, 3), (9, 9, 2)])
def test_cholesky_root_is_a_root_inverts_and_ignores_the_order_of_hidden_units_x64(n, p, k):
    """The dual form's root: (sigma R)(sigma R)^T = sigma^2 G^-1 against NumPy's inverse, phi_out
    inverts theta_out, the log-Jacobian is the autodiff one, and permuting the hidden units
    permutes theta_out alike."""
    rng = np.random.default_rng(3)
    psi, y, phi = rng.normal(size=(n, p)), rng.normal(size=(n, k)), rng.normal(size=(p, k))
    gram = psi.T @ psi + SIGMA**2 * np.eye(p)
    perm = rng.permutation(p)
    with jax.enable_x64(True):
        post = rp.readout_factorisation(jnp.asarray(psi), jnp.asarray(y), SIGMA)
        assert isinstance(post, rp.CholeskyReadout)
        single = rp.readout_factorisation(jnp.asarray(psi), jnp.asarray(y[:, :1]), SIGMA)
        root = jax.jacfwd(lambda v: single.theta_out(v[:, None])[:, 0])(jnp.zeros(p))  # sigma R
        np.testing.assert_allclose(root @ root.T, SIGMA**2 * np.linalg.inv(gram), rtol=1e-9, atol=1e-12)
        theta = rp.to_theta_out(post, jnp.asarray(phi))
        np.testing.assert_allclose(rp.to_phi_out(post, theta), phi, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(rp.log_abs_det_jacobian(post, k), k * np.linalg.slogdet(np.asarray(root))[1],
                                   rtol=1e-10)
        permuted = rp.readout_factorisation(jnp.asarray(psi[:, perm]), jnp.asarray(y), SIGMA)
        np.testing.assert_allclose(permuted.theta_out(jnp.asarray(phi[perm])), np.asarray(theta)[perm],
                                   rtol=1e-10, atol=1e-12)


def test_the_kernels_factor_is_the_drawn_one_x64():
    """The Cholesky factor that the density evaluation returns gives the same factorisation as a fresh one."""
    bnn, data = _problem(0.1, width=64)
    with jax.enable_x64(True):
        target = build_target(bnn, jnp.asarray(data.x_train, jnp.float64), jnp.asarray(data.y_train, jnp.float64))
        z = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(jax.random.key(0), 1))
        value, evaluation = target.evaluate(z)
        np.testing.assert_allclose(value, target.log_likelihood(z), rtol=1e-14)
        carried, fresh = target.readout_factorisation(z, evaluation), target.readout_factorisation(z)
        for a, b in zip(carried, fresh, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_shared_projections_equal_project_tree_x64():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        hidden = [{"W": jnp.asarray(rng.normal(size=(3, 20000))), "b": jnp.asarray(rng.normal(size=20000))}]
        theta = {"hidden": hidden, "readout": {"W": jnp.asarray(rng.normal(size=(5, 2))), "b": jnp.ones(2)}}
        phi = {"hidden": hidden, "readout": {"W": jnp.asarray(rng.normal(size=(5, 2))), "b": jnp.zeros(2)}}
        words = sampling.run_projection_words(80012, 40, 7)  # 40 directions: two words per weight
        assert words.shape == (80012, 2) and words.dtype == np.uint32
        for num, table in ((10, None), (10, words), (40, words)):  # 80012 rows: several blocks
            out = jax.jit(lambda t, f, w: sampling.draw_projections(t, f, num, 7, w))(theta, phi, table)
            np.testing.assert_allclose(out["theta_proj"], project_tree(theta, num, 7), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(out["phi_proj"], project_tree(phi, num, 7), rtol=1e-12, atol=1e-14)
        theta_only = sampling.draw_projections(theta, None, 10, 7, words)
        assert set(theta_only) == {"theta_proj"}
        np.testing.assert_allclose(theta_only["theta_proj"], project_tree(theta, 10, 7), rtol=1e-12, atol=1e-14)
        assert sampling.run_projection_words(2**26, 40, 7) is None  # 512 MiB of words: hashed per draw instead


def _problem(noise_std, width=64, n_train=32, n_test=8):
    data = load_dataset("digits", n_train=n_train, n_test=n_test, seed=0, flatten=True)
    return reprior.BNN(reprior.MLP(width, depth=1), noise_std), data


def _collect(bnn, data, dtype, z=None, keep="readout", carried=False):
    """``(outputs, z)`` of one recorded draw in ``dtype`` at ``z`` (a prior draw when None); with
    ``carried``, handed the density's evaluation at ``z`` as a kernel of this package hands it."""
    with jax.enable_x64(dtype == "float64"):
        cast = lambda a: jnp.asarray(np.asarray(a), dtype)  # noqa: E731
        target = build_target(bnn, cast(data.x_train), cast(data.y_train))
        if z is None:
            z = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(jax.random.key(0), 1))
        collect = sampling.make_collect_fn(target, cast(data.x_test), keep, 10, 0)

        def draw(zz):
            return collect({}, jax.random.key(1), zz, target.evaluate(zz)[1] if carried else None)

        out = jax.jit(draw)(jax.tree_util.tree_map(cast, z))
        return {k: np.asarray(v, np.float64) for k, v in out.items()}, z


def _draw_jaxpr(target, x_test, z, evaluation=None) -> str:
    collect = sampling.make_collect_fn(target, x_test, "all", 10, 0)
    return str(jax.make_jaxpr(lambda zz, ev: collect({}, jax.random.key(1), zz, ev))(z, evaluation))


@pytest.mark.parametrize("width", [16, 64])  # primal (p < n) and dual
def test_a_recorded_draw_holds_one_factorisation_and_none_when_handed_the_kernels(width):
    """The compiled draw: one factorisation (an eigendecomposition in the primal form, a Cholesky
    factorisation in the dual); handed the evaluation, the dual draw factorises nothing and skips
    the training features and the Gram matrix (two matrix products fewer)."""
    bnn, data = _problem(0.1, width=width)
    target = build_target(bnn, jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    z = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(jax.random.key(0), 1))
    x_test = jnp.asarray(data.x_test)
    alone = _draw_jaxpr(target, x_test, z)
    if width < 32:  # primal: the p x p eigendecomposition, the symmetric root
        assert alone.count("name=eigh") == 1 and "cholesky" not in alone
        return
    assert alone.count("name=cholesky") == 1 and "eigh" not in alone
    handed = _draw_jaxpr(target, x_test, z, target.evaluate(z)[1])
    assert "cholesky" not in handed and "eigh" not in handed
    assert alone.count("dot_general[") - handed.count("dot_general[") >= 2


@pytest.mark.parametrize("carried", [False, True])
def test_float32_at_noise_1e3_stays_finite_and_agrees_with_float64(carried):
    """noise_std 1e-3, float32: every recorded quantity finite; the deterministic ones match float64.

    The same hidden weights in both dtypes (the exact readout draw's N(0, I) numbers differ between
    dtypes, so theta_out is checked against the float64 map of the float32 run's own phi_out);
    ``carried``: the float32 factor is the density evaluation's, as a kernel hands it.
    Tolerances: float32 rounding through a factorisation of a kernel of condition ~1e8
    (measured errors: 3e-7 relative in the log marginal likelihood, 1e-6 in the predictive mean,
    4e-7 in its variance, at width 256; a factor of about 30 of margin).
    """
    bnn, data = _problem(1e-3, width=256)
    single, z = _collect(bnn, data, "float32", carried=carried)
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
        post = target.readout_factorisation(z)
        phi_out = jnp.concatenate([single["readout_W_reprior"], single["readout_b_reprior"][None]], axis=0)
        theta_out = np.asarray(rp.to_theta_out(post, phi_out))
    recorded = np.concatenate([single["readout_W"], single["readout_b"][None]], axis=0)
    # float32 theta_out = mu + sigma R phi_out at sigma = 1e-3: errors relative to the largest entry
    np.testing.assert_allclose(recorded, theta_out, rtol=0, atol=1e-3 * np.max(np.abs(theta_out)))


def test_a_rejected_pcn_proposal_reuses_the_position_part_and_records_what_a_fresh_draw_would_x64():
    """pCN at a fixed step rejects some proposals and accepts others.  Sequential chains (which reuse the previous
    draw's position part when the chain has not moved) record the same draws as vectorized chains
    (which compute every draw afresh); on a rejected iteration the position-determined quantities
    (log marginal likelihood, Rao-Blackwellised predictive) repeat the previous draw's while the
    exact readout draw is a new one."""
    bnn, data = _problem(0.1)
    with jax.enable_x64(True):
        runs = {method: reprior.sample(bnn, data.x_train, data.y_train, x_test=data.x_test, sampler="pcn",
                                       sampler_options={"step_size": 0.05, "adapt_step_size": False},
                                       num_warmup=0, num_samples=30, num_chains=1, chain_method=method,
                                       progress_bar=False, seed=3)
                for method in ("sequential", "vectorized")}
    seq, vec = runs["sequential"], runs["vectorized"]
    for group in ("posterior", "posterior_predictive"):
        for name in seq[group].data_vars:
            np.testing.assert_allclose(np.asarray(seq[group][name]), np.asarray(vec[group][name]), rtol=1e-10,
                                       atol=1e-12, err_msg=f"{group}.{name}")
    hidden = np.asarray(seq.posterior["hidden_0_W"])[0]
    stayed = np.all(hidden[1:] == hidden[:-1], axis=(1, 2))
    assert 0 < stayed.sum() < stayed.size
    lml = np.asarray(seq.posterior["log_marginal_likelihood"])[0]
    rb = np.asarray(seq.posterior_predictive["f_test_rb_mean"])[0]
    readout = np.asarray(seq.posterior["readout_W"])[0]
    np.testing.assert_array_equal(lml[1:][stayed], lml[:-1][stayed])
    np.testing.assert_array_equal(rb[1:][stayed], rb[:-1][stayed])
    assert np.all(np.any(readout[1:][stayed] != readout[:-1][stayed], axis=(1, 2)))


def test_an_unmoved_chain_carries_the_position_part_but_not_the_kernels_own_arrays_x64():
    """The driver's cache of the position part (``_PositionPart``) carries the test features, the
    whitened targets and the predictive, but takes the features and the Cholesky factor from the
    evaluation the kernel carries (the same arrays when the chain has not moved); rebuilt, it gives
    the draw that ``collect`` makes at once."""
    from reprior.inference.driver import _PositionPart

    bnn, data = _problem(0.1)
    with jax.enable_x64(True):
        target = build_target(bnn, jnp.asarray(data.x_train), jnp.asarray(data.y_train))
        z = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(jax.random.key(0), 1))
        evaluation = target.evaluate(z)[1]
        collect = sampling.make_collect_fn(target, jnp.asarray(data.x_test), "readout", 10, 0)
        part = _PositionPart(collect.parts.position, {})
        arrays = jax.jit(part.arrays)(z, evaluation)
        shapes = {a.shape for a in arrays}
        assert evaluation.features.shape not in shapes and evaluation.chol.shape not in shapes
        assert (data.x_test.shape[0], evaluation.features.shape[1]) in shapes  # the test features are carried
        key = jax.random.key(4)
        rebuilt = jax.jit(lambda zz, ev, a: collect.parts.draw({}, key, zz, ev, part.rebuild(a, ev)))(z, evaluation,
                                                                                                       arrays)
        whole = jax.jit(lambda zz, ev: collect({}, key, zz, ev))(z, evaluation)
    for name in whole:  # float64 rounding of the same sums, compiled apart: relative to each output's scale
        expected = np.asarray(whole[name])
        np.testing.assert_allclose(np.asarray(rebuilt[name]), expected, rtol=1e-12,
                                   atol=1e-12 * max(1.0, float(np.max(np.abs(expected)))), err_msg=name)
