"""Tests for reprior.experiments.sbc: the rank statistics, the target, and SBC of the samplers.

The default suite runs a small SBC (elliptical slice and underdamped HMC, in
repriorised coordinates, 200 replications) and shows that the test has power:
the same sampler with the wrong observation noise in its likelihood is rejected.
The full matrix (every kernel and NUTS, standard and repriorised coordinates)
is ``slow``.
"""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps

import reprior
from reprior.evaluation import sbc
from reprior.experiments import cli
from reprior.core import repriorise as rp
from reprior.core.target import Target

# Family-wise level 0.001: a correct sampler is rejected once in a thousand runs (a CI suite with a
# dozen statistical tests at 0.01 fails one run in ten by chance alone), while the wrong sampler's
# smallest p-value is of order 1e-200 (docs/sbc.md), so the power is untouched.  At level 0.01 the
# elliptical slice run below rejected hidden_b[0] with p = 0.0014 once its random stream changed;
# rerun with 1000 replications (seed 1), every p-value of the same sampler was above 0.14.
SMALL = dict(num_replications=200, num_draws=19, num_bins=10, num_warmup=200, level=0.001)


def test_rank_counts_and_chi_square_match_scipy():
    ranks = np.array([[0, 19], [1, 18], [2, 2], [19, 0], [10, 9]])
    counts = sbc.rank_counts(ranks, num_draws=19, num_bins=10)
    np.testing.assert_array_equal(counts[0], [2, 1, 0, 0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(counts[1], [1, 1, 0, 0, 1, 0, 0, 0, 0, 2])
    _, chi2, p = sbc.uniformity_test(ranks, 19, 10)
    ref = sps.chisquare(counts, axis=1)
    np.testing.assert_allclose(chi2, ref.statistic, rtol=1e-12)
    np.testing.assert_allclose(p, ref.pvalue, rtol=1e-12)


def test_uniformity_test_rejects_u_shaped_ranks():
    """Ranks of a too-narrow posterior pile up at both ends."""
    u_shaped = np.concatenate([np.zeros(60, int), np.full(60, 19), np.arange(80) % 20])[:, None]
    assert sbc.uniformity_test(u_shaped, 19, 10)[2][0] < 1e-10
    flat = (np.arange(200) % 20)[:, None]  # exactly uniform counts
    assert sbc.uniformity_test(flat, 19, 10)[2][0] == pytest.approx(1.0)


@pytest.mark.parametrize("parameterisation, readout", [("standard", "sampled"), ("reprior", "sampled"),
                                                       ("reprior", "exact")])
def test_potential_matches_bnn_log_density_x64(parameterisation, readout):
    """The target SBC builds with a traced noise level is exactly the density of BNN.log_density."""
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(0).standard_normal((10, 2)))
        bnn = reprior.BNN(reprior.MLP(width=8), noise_std=0.4)
        params = bnn.init(jax.random.key(1), x, 1)
        y = bnn.apply(params, x) + 0.4 * jax.random.normal(jax.random.key(2), (10, 1))
        target = Target(bnn.arch, jnp.asarray(0.4), x, y, parameterisation, readout, "auto")
        if readout == "exact":
            z = {"hidden": params["hidden"]}
            ref = bnn.collapsed_log_density(params["hidden"], x, y)
        else:
            z = params
            ref = bnn.log_density(params, x, y, parameterisation)
        ours = target.log_density(z)
        assert ours.dtype == jnp.float64
        np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_arguments_are_validated_before_tracing():
    with pytest.raises(ValueError, match="num_bins"):
        sbc.run_sbc(num_draws=19, num_bins=7)
    with pytest.raises(ValueError, match="sampler"):
        sbc.run_sbc(sampler="gibbs")
    with pytest.raises(ValueError, match="sampler_options"):
        sbc.run_sbc(sampler="pcn", sampler_options={"num_steps": 2})


def test_small_sbc_in_the_dual_form_passes_through_the_cholesky_root():
    """Width 16 on 10 points: p = 17 > n, so the exact readout draw goes through the dual form's
    push-through Cholesky root (the default matrix's width 8 is primal: the symmetric root).
    The readout and prediction summaries are uniform only if (sigma R)(sigma R)^T = sigma^2 G^-1: with the
    root scaled by 1.5 (a posterior too wide) the same run rejects five summaries (p 1e-5 to 7e-26)."""
    assert rp.use_dual(10, 17)
    result = sbc.run_sbc(sampler="elliptical_slice", thinning=10, width=16, **SMALL)
    assert result.passed, result.table()
    assert np.all(np.abs(result.autocorrelation) < 0.2), result.table()


@pytest.mark.parametrize("sampler, thinning", [("elliptical_slice", 10), ("underdamped_hmc", 20)])
def test_small_sbc_passes_and_rejects_a_wrong_sampler(sampler, thinning):
    """Uniform ranks for the right likelihood; the wrong noise (posterior too narrow) is rejected.

    Level 0.001 family-wise (Bonferroni over the 7 summaries; see SMALL).  The thinning is
    above the largest integrated autocorrelation time of any summary in a
    pilot of 16 replications (docs/sbc.md).  The wrong sampler uses half the true noise
    std; in the power study of docs/sbc.md (elliptical slice) it is rejected in
    10 runs of 10, median smallest p-value 1e-228, and 0.8 times the true std
    is still rejected in 10 of 10.
    """
    right = sbc.run_sbc(sampler=sampler, thinning=thinning, **SMALL)
    assert right.passed, right.table()
    assert right.num_divergences == 0
    assert np.all(np.abs(right.autocorrelation) < 0.2), right.table()  # draws close to independent
    wrong = sbc.run_sbc(sampler=sampler, thinning=thinning, sampler_noise_std=0.25, **SMALL)
    assert not wrong.passed
    assert wrong.p_values[sbc.SUMMARY_NAMES.index("log_likelihood")] < 1e-10
    assert wrong.timings["compile_seconds"] < 0.5  # the executable of `right` is reused


def test_command_prints_writes_plot_and_json(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_sbc_arguments(parser)
    plot, out = tmp_path / "ranks.png", tmp_path / "sbc.json"
    args = parser.parse_args(["--thinning", "10", "--num-replications", "200", "--level", "0.001",
                              "--plot", str(plot), "--json", str(out)])
    assert cli.sbc_command(args) == 0  # the same settings as the small test: the executable is reused
    assert "PASS" in capsys.readouterr().out
    assert plot.stat().st_size > 10_000
    saved = json.loads(out.read_text())
    assert saved["passed"] and len(saved["ranks"]) == 200
    args = parser.parse_args(["--thinning", "5", "--sampler-noise-std", "0.25", "--sampler-option",
                              "max_shrinks=50"])
    assert args.sampler_option == [("max_shrinks", 50)]


# -- the full matrix ----------------------------------------------------------------------------
# (sampler, parameterisation, readout, thinning, num_warmup): thinning above the largest integrated
# autocorrelation time of any summary over 16 pilot replications (docs/sbc.md).
FULL = [
    ("nuts", "standard", "exact", 4, 500),
    ("nuts", "reprior", "exact", 4, 500),
    ("hmc", "reprior", "exact", 20, 500),
    ("underdamped_hmc", "standard", "exact", 400, 2000),
    ("underdamped_hmc", "reprior", "exact", 20, 500),
    ("underdamped_hmc", "reprior", "sampled", 500, 2000),
    ("pcn", "standard", "exact", 800, 4000),
    ("pcn", "reprior", "exact", 20, 500),
    ("pcnl", "standard", "exact", 800, 4000),
    ("pcnl", "reprior", "exact", 40, 500),
    ("elliptical_slice", "standard", "exact", 150, 2000),
    ("elliptical_slice", "reprior", "exact", 20, 500),
]


@pytest.mark.slow
@pytest.mark.parametrize("sampler, parameterisation, readout, thinning, num_warmup", FULL)
def test_full_sbc(sampler, parameterisation, readout, thinning, num_warmup):
    """Level 0.01 family-wise over the whole matrix: Bonferroni over configurations and summaries."""
    result = sbc.run_sbc(sampler=sampler, parameterisation=parameterisation, readout=readout,
                         thinning=thinning, num_warmup=num_warmup, num_replications=500, num_draws=19,
                         num_bins=10, level=0.01 / len(FULL), batch_size=250)
    assert result.passed, result.table()


# -- an inferred noise ------------------------------------------------------------------------------
NOISE = dict(num_replications=200, num_draws=19, num_bins=10, num_warmup=200, level=0.001, width=4, num_data=8,
             batch_size=100, noise_prior="HalfNormal(0.5)")


def test_noise_prior_arguments_are_checked_naming_them():
    with pytest.raises(ValueError, match="noise_prior.*Normal"):
        sbc.run_sbc(noise_prior="Normal(0, 1)", num_replications=4)
    with pytest.raises(ValueError, match="sampler_noise_prior"):
        sbc.run_sbc(noise_prior="HalfNormal(0.5)", sampler_noise_prior="Poisson(2)", num_replications=4)
    with pytest.raises(ValueError, match="sampler_noise_prior"):
        sbc.run_sbc(sampler_noise_prior="HalfNormal(0.5)", num_replications=4)
    import numpyro.distributions as dist

    result = sbc.run_sbc(noise_prior=dist.HalfNormal(0.5), num_replications=4, num_draws=3, num_bins=2,
                         num_warmup=5, thinning=1, width=2, num_data=4)
    assert result.summary_names == (*sbc.SUMMARY_NAMES, "noise_std")
    assert result.ranks.shape == (4, len(sbc.SUMMARY_NAMES) + 1) and np.all((0 <= result.ranks) & (result.ranks <= 3))
    assert json.loads(result.settings["noise_prior"]) == {"class": "HalfNormal", "args": {"scale": 0.5}}


@pytest.mark.slow
@pytest.mark.parametrize("sampler, parameterisation, thinning",
                         [("nuts", "reprior", 5), ("nuts", "standard", 5), ("elliptical_slice", "reprior", 20)])
def test_sbc_of_the_joint_posterior_with_an_inferred_noise(sampler, parameterisation, thinning):
    """The weights and the noise sampled jointly (``BNN(arch, noise_std=HalfNormal(0.5))``): uniform
    ranks of every summary, the noise among them; a sampler that assumes the wrong prior
    (HalfNormal(0.15): noise too small) is rejected on the noise.  Thinning as in FULL's NUTS and
    the lag-1 autocorrelation of the thinned draws checked below 0.2."""
    options = {"max_tree_depth": 5} if sampler == "nuts" else {}
    right = sbc.run_sbc(sampler=sampler, parameterisation=parameterisation, thinning=thinning,
                        sampler_options=options, **NOISE)
    assert right.passed, right.table()
    assert np.all(np.abs(right.autocorrelation) < 0.2), right.table()
    wrong = sbc.run_sbc(sampler=sampler, parameterisation=parameterisation, thinning=thinning,
                        sampler_options=options, sampler_noise_prior="HalfNormal(0.15)", **NOISE)
    assert not wrong.passed and wrong.p_values[wrong.summary_names.index("noise_std")] < 1e-10, wrong.table()
