"""Tests of the log-Sobolev bound on the KL to the prior (reprior.evaluation.kl_bound, reprior.evaluation.limits.score_sq_norms)
against closed forms (Gaussian linear model) and exact posterior draws of a small BNN."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reprior import BNN, MLP
from reprior.evaluation import kl_bound
from reprior.evaluation.limits import bnn_log_evidence, hidden_log_likelihood_fn, hidden_score_sq_norms, score_sq_norms


def _linear_model(d=5, n=8, noise=0.7, seed=0):
    """Prior N(0, I_d), y = A z + N(0, noise^2): posterior N(m, S), S = (I + B)^-1, B = A^T A / noise^2,
    m = S b, b = A^T y / noise^2; l(z) = -|y - A z|^2 / (2 noise^2), grad l = b - B z."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d))
    y = a @ rng.standard_normal(d) + noise * rng.standard_normal(n)
    big_b, b = a.T @ a / noise**2, a.T @ y / noise**2
    cov = np.linalg.inv(np.eye(d) + big_b)
    mean = cov @ b
    return a, y, noise, big_b, b, mean, cov


def test_gaussian_linear_model_bound_holds_and_the_estimator_matches_it():
    with jax.enable_x64(True):
        a, y, noise, big_b, b, mean, cov = _linear_model()
        d = len(mean)
        kl = 0.5 * (np.trace(cov) + mean @ mean - d - np.linalg.slogdet(cov)[1])
        r = b - big_b @ mean
        exact_bound = 0.5 * (r @ r + np.trace(big_b @ cov @ big_b))  # E|b - B z|^2 / 2 under N(m, S)
        assert exact_bound >= kl > 0
        chains, draws = 4, 500
        z = np.random.default_rng(1).multivariate_normal(mean, cov, size=chains * draws)  # exact, i.i.d.
        aj, yj = jnp.asarray(a), jnp.asarray(y)
        sq = score_sq_norms(lambda v: -jnp.sum((yj - aj @ v) ** 2) / (2 * noise**2), jnp.asarray(z))
        np.testing.assert_allclose(sq, np.sum((b - z @ big_b) ** 2, axis=1), rtol=1e-10)
        est = kl_bound.log_sobolev_bound(sq.reshape(chains, draws))
        # 2000 i.i.d. draws: the CLT error of the mean is est.mcse (ESS ~ 2000); 4 of them: P < 1e-4.
        assert abs(est.bound - exact_bound) < 4 * est.mcse
        assert 1000 < est.ess < 4000  # i.i.d. draws: ESS ~ their number (its sd here is ~ 6%)
        sd_of_mean = 0.5 * np.std(sq) / math.sqrt(chains * draws)
        assert est.mcse == pytest.approx(sd_of_mean, rel=0.25)


def test_bound_is_exact_for_a_mean_shift():
    """l(z) = m.z: the posterior is N(m, I), KL = |m|^2 / 2 = the bound; |grad l|^2 = |m|^2 at every draw."""
    m = jnp.asarray([0.5, -1.0, 2.0])
    z = jnp.asarray(np.random.default_rng(0).standard_normal((2, 50, 3))) + m
    sq = score_sq_norms(lambda v: jnp.dot(m, v), z.reshape(100, 3)).reshape(2, 50)
    est = kl_bound.log_sobolev_bound(sq)
    assert est.bound == pytest.approx(float(m @ m) / 2, rel=1e-6)
    assert est.mcse == pytest.approx(0.0, abs=1e-6)


def test_non_finite_draws_are_left_out_and_bad_input_refused():
    values = np.ones((2, 10))
    values[1, 3] = np.nan
    assert kl_bound.log_sobolev_bound(values).bound == 0.5
    assert math.isnan(kl_bound.log_sobolev_bound(np.full((2, 3), np.nan)).bound)
    assert math.isnan(kl_bound.log_sobolev_bound(np.ones((1, 3))).mcse)  # too few draws for an ESS
    with pytest.raises(ValueError, match="score_sq_norms"):
        kl_bound.log_sobolev_bound(-np.ones((2, 5)))
    with pytest.raises(ValueError, match="score_sq_norms"):
        kl_bound.log_sobolev_bound(np.ones((2, 5, 1)))


def _log_likelihood_envelope(y, noise_std) -> float:
    """sup over C >= noise^2 I of sum_j log N(y_j; 0, C): for each column the rank-one C = noise^2 I +
    (|y_j|^2 - noise^2)_+ u u^T, u = y_j / |y_j| (maximise over the eigenvalue along y_j, the others at
    noise^2), so L(hidden) <= exp(envelope) for every network: a certified rejection-sampling envelope."""
    n = y.shape[0]
    total = 0.0
    for col in y.T:
        yy = float(col @ col)
        lam = max(yy, noise_std**2)
        total += -n / 2 * math.log(2 * math.pi) - (n - 1) / 2 * math.log(noise_std**2) - math.log(lam) / 2 \
            - yy / (2 * lam)
    return total


@pytest.mark.slow  # 40 s on one core: 100 000 proposals and an SMC run
def test_small_bnn_bound_from_exact_posterior_draws_is_above_the_kl_estimates():
    """Exact posterior draws of the hidden weights by rejection sampling from the prior (envelope above),
    the KL from them and the prior importance-sampling evidence, and the SMC estimate: the bound, a
    certified upper bound, lies above both (its error is 0.03 here, the gap ~0.9 nats)."""
    with jax.enable_x64(True):
        x = np.linspace(-2, 2, 6)[:, None]
        y = np.sin(2 * x) + 0.1 * np.random.default_rng(0).standard_normal((6, 1))
        bnn = BNN(MLP(width=3), 0.5)
        loglik = hidden_log_likelihood_fn(bnn, x, y)
        num_proposals = 100_000
        keys = jax.random.split(jax.random.key(0), num_proposals)
        hidden = jax.vmap(lambda k: bnn.init(k, jnp.asarray(x), 1)["hidden"])(keys)
        ll = np.asarray(jax.jit(lambda h: jax.lax.map(loglik, h, batch_size=4096))(hidden))
        envelope = _log_likelihood_envelope(y, 0.5)
        assert np.all(ll <= envelope)
        accept = np.log(np.random.default_rng(1).uniform(size=num_proposals)) < ll - envelope
        assert accept.sum() > 100  # ~ 230 exact draws
        post = jax.tree_util.tree_map(lambda leaf: leaf[accept], hidden)
        est = kl_bound.log_sobolev_bound(hidden_score_sq_norms(bnn, post, x, y))
        log_z = float(np.log(np.mean(np.exp(ll - ll.max()))) + ll.max())
        kl_exact_draws = float(np.mean(ll[accept]) - log_z)
        kl_smc = bnn_log_evidence(bnn, x, y, jax.random.key(2), num_particles=128).kl_to_prior
        assert 0 < kl_exact_draws < est.bound - 3 * est.mcse
        assert 0 < kl_smc < est.bound - 3 * est.mcse


# -- the limit metrics and the report ---------------------------------------------------------------
def _idata_with_hidden_draws(bnn, x, num_chains=2, num_draws=6, seed=0):
    """An InferenceData holding prior draws of the hidden weights as the posterior (names as reprior.sample)."""
    from reprior.inference.arviz_compat import from_dict
    from reprior.inference.models import flatten_params  # the site names: those of the posterior group

    keys = jax.random.split(jax.random.key(seed), num_chains * num_draws)
    hidden = jax.vmap(lambda k: bnn.init(k, jnp.asarray(x), 1)["hidden"])(keys)
    posterior = {name: np.asarray(leaf).reshape((num_chains, num_draws) + leaf.shape[1:])
                 for name, leaf in flatten_params({"hidden": hidden}).items()}
    return from_dict({"posterior": posterior}, attrs={"noise_std": bnn.noise_std}), hidden


def test_limit_metrics_report_the_bound_from_the_stored_draws_chain_by_chain():
    from reprior.evaluation.diagnostics import limit_metrics
    from reprior.evaluation.limits import LimitInputs

    with jax.enable_x64(True):
        x = np.linspace(-1, 1, 5)[:, None]
        y = np.cos(x)
        bnn = BNN(MLP(width=4), 0.3)
        idata, hidden = _idata_with_hidden_draws(bnn, x)
        out = limit_metrics(idata, LimitInputs(bnn, x, y, None, None))
        expected = kl_bound.log_sobolev_bound(hidden_score_sq_norms(bnn, hidden, x, y).reshape(2, 6))
        assert out["kl_to_prior_bound"] == pytest.approx(expected.bound, rel=1e-12)
        assert out["kl_to_prior_bound_mcse"] == pytest.approx(expected.mcse, rel=1e-12)
        assert math.isnan(out["nngp_kernel_estimated"])  # no reference given


def test_limit_inputs_estimate_the_kernel_of_an_architecture_without_a_closed_form(tmp_path):
    from test_nngp_monte_carlo import RandomFourier

    from reprior.evaluation.diagnostics import limit_metrics
    from reprior.evaluation.limits import limit_inputs

    with jax.enable_x64(True):
        x = np.random.default_rng(0).standard_normal((6, 2))
        y = np.sin(x[:, :1])
        bnn = BNN(RandomFourier(width=8), 0.3)
        kwargs = dict(cache_dir=tmp_path, data_description={"name": "toy"}, evidence=False, mc_num_draws=200,
                      mc_arch=RandomFourier(width=64))
        first = limit_inputs(bnn, x, y, x[:2], **kwargs)
        ref = first.reference
        assert ref.estimated and ref.kernel_stderr.shape == (6, 6) and 0 < ref.relative_stderr < 0.1
        z = (ref.kernel - RandomFourier(width=64).limit(x, x)) / ref.kernel_stderr
        assert np.max(np.abs(z)) < 5  # 200 i.i.d. draws, 21 distinct entries: the union bound of the MC tests
        again = limit_inputs(bnn, x, y, x[:2], **kwargs)  # from the cache, the standard error with it
        np.testing.assert_array_equal(again.reference.kernel_stderr, ref.kernel_stderr)
        assert len(list(tmp_path.glob("nngp-*.npz"))) == 1
        idata, _ = _idata_with_hidden_draws(bnn, x)
        out = limit_metrics(idata, first)
        assert out["nngp_kernel_estimated"] == 1.0 and out["nngp_kernel_mc_stderr"] == ref.relative_stderr
        assert np.isfinite(out["nngp_kernel_dist"]) and np.isfinite(out["kl_to_prior_bound"])
        closed = limit_inputs(BNN(MLP(width=8), 0.3), x, y, None, evidence=False).reference
        assert not closed.estimated and closed.relative_stderr == 0.0


def test_report_plots_the_bound_beside_the_estimate_and_flags_estimates_above_it(tmp_path):
    from reprior.experiments.report import Document
    from reprior.experiments.report_limits import add_limits_section, flagged_cells

    rows = []
    for w in (64, 256, 1024):
        for param in ("standard", "reprior"):
            rows.append({"key": f"c{w}{param[0]}", "arch": "mlp", "depth": 1, "width": w, "parameterisation": param,
                         "seed": 0, "kl_to_prior": 100.0 / w, "kl_to_prior_smc": 90.0 / w,
                         "kl_to_prior_bound": 300.0 / w if w > 64 else 1.0, "kl_to_prior_bound_mcse": 0.01,
                         "nngp_kernel_estimated": 1.0, "nngp_kernel_mc_stderr": 0.004})
    flagged = flagged_cells(rows)
    # width 64: estimate 1.5625 and SMC 1.40625 above the bound 1 + 2 * 0.01, for both parameterisations
    assert sorted((f["row"]["key"], f["metric"]) for f in flagged) == sorted(
        (f"c64{p}", m) for p in "sr" for m in ("kl_to_prior", "kl_to_prior_smc"))
    doc = Document()
    files = add_limits_section(doc, rows, tmp_path)
    text = doc.markdown()
    assert "limit_kl_bound" in files and files["limit_kl_bound"].stat().st_size > 1000
    assert "Flagged: 4 KL estimate(s) above the bound" in text and "c64s" in text
    assert "Estimated NNGP kernel" in text and "0.004" in text


def test_without_stored_draws_the_bound_comes_from_the_weighted_smc_particles():
    from reprior.inference.arviz_compat import from_dict
    from reprior.evaluation.diagnostics import limit_metrics
    from reprior.evaluation.limits import EvidenceEstimate, LimitInputs, evidence_summary

    with jax.enable_x64(True):
        x = np.linspace(-1, 1, 5)[:, None]
        y = np.cos(x)
        bnn = BNN(MLP(width=4), 0.3)
        _, particles = _idata_with_hidden_draws(bnn, x, num_chains=1, num_draws=8)
        log_w = np.log(np.arange(1.0, 9.0) / 36.0)  # normalised weights 1/36, ..., 8/36
        est = EvidenceEstimate(-3.0, -2.0, 5.0, 2, np.array([0.0, 0.5, 1.0]), 8, particles, log_w, np.zeros(8),
                               np.array([0.3, np.nan]))
        summary = evidence_summary(est, bnn, x, None, y=y)
        sq = hidden_score_sq_norms(bnn, particles, x, y)
        w = np.exp(log_w)
        assert summary["score_sq_mean"] == pytest.approx(np.sum(w * sq), rel=1e-12)
        assert summary["score_sq_se"] == pytest.approx(np.sqrt(np.sum(w**2 * (sq - np.sum(w * sq)) ** 2)), rel=1e-12)
        idata = from_dict({"posterior": {"other": np.zeros((1, 3))}}, attrs={"noise_std": 0.3})
        out = limit_metrics(idata, LimitInputs(bnn, x, y, None, summary))
        assert out["kl_to_prior_bound"] == 0.5 * summary["score_sq_mean"]
        assert out["kl_to_prior_bound_mcse"] == 0.5 * summary["score_sq_se"]
        old = {k: v for k, v in summary.items() if not k.startswith("score_sq")}  # a cache entry from before
        assert math.isnan(limit_metrics(idata, LimitInputs(bnn, x, y, None, old))["kl_to_prior_bound"])
