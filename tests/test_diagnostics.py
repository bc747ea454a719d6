"""Tests for reprior.evaluation.diagnostics: ESS/R-hat groups, cost-normalised ESS, predictive metrics."""

import math
import re
from pathlib import Path

import arviz as az
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

import reprior
from reprior.evaluation import diagnostics as dg
from reprior.inference.arviz_compat import from_dict, from_netcdf
from reprior.core.projections import projection_matrix

REQUIRED = ["ess_bulk_pred_median", "ess_bulk_pred_min", "ess_bulk_theta_median", "ess_per_grad_pred",
            "ess_per_second_pred", "ess_per_draw_pred", "rhat_max", "accept_mean", "divergences", "test_rmse",
            "grad_evals", "sample_seconds"]
ATTRS = {"grad_evals_sampling": 7001, "grad_evals": 9000, "sample_seconds": 2.5, "warmup_seconds": 1.0,
         "compile_seconds": 3.0, "noise_std": 0.5}


def _synthetic(posterior, predictive=None, stats=None, attrs=ATTRS):
    groups = {"posterior": posterior}
    if predictive is not None:
        groups["posterior_predictive"] = predictive
    if stats is not None:
        groups["sample_stats"] = stats
    return from_dict(groups, attrs=dict(attrs),
                     dims={"theta_proj": ["projection"], "phi_proj": ["projection"], "f_test": ["test", "output"],
                           "f_test_rb_mean": ["test", "output"], "f_test_rb_var": ["test"]})


# -- synthetic draws with a known answer ------------------------------------------------
def test_iid_draws_have_ess_close_to_num_draws():
    rng = np.random.default_rng(0)
    chains, draws = 4, 500
    idata = _synthetic({"theta_proj": rng.standard_normal((chains, draws, 8)),
                        "phi_proj": rng.standard_normal((chains, draws, 8))},
                       {"f_test": rng.standard_normal((chains, draws, 6, 2))})
    m = dg.cell_metrics(idata, num_pred_points=3)
    n = chains * draws
    # For i.i.d. draws bulk ESS / n has mean ~0.99 and sd ~0.025 (30 seeds, 8 projections):
    # 0.12 is about 5 sd.  Tail ESS is noisier and biased low by ~4%, hence 0.15.
    for group in ("theta", "phi", "pred", "points"):
        assert abs(m[f"ess_bulk_{group}_median"] / n - 1) < 0.12, group
        assert abs(m[f"ess_tail_{group}_median"] / n - 1) < 0.15, group
        assert m[f"ess_bulk_{group}_min"] > 0.6 * n
        assert 0.99 < m[f"rhat_{group}_max"] < 1.01
        assert m[f"ess_per_draw_{group}"] == pytest.approx(m[f"ess_bulk_{group}_median"] / n, rel=1e-12)
    assert m["num_draws"] == n


def test_cost_normalised_ess_is_exact_quotient():
    rng = np.random.default_rng(1)
    idata = _synthetic({"theta_proj": rng.standard_normal((2, 100, 5))},
                       {"f_test": rng.standard_normal((2, 100, 4, 1))})
    m = dg.cell_metrics(idata)
    for group in ("theta", "pred", "points"):
        ess = m[f"ess_bulk_{group}_median"]
        assert m[f"ess_per_grad_{group}"] == ess / 7001
        assert m[f"ess_per_second_{group}"] == ess / 2.5
        assert m[f"ess_per_draw_{group}"] == ess / 200
    assert m["grad_evals"] == 7001 and m["grad_evals_total"] == 9000
    assert (m["sample_seconds"], m["warmup_seconds"], m["compile_seconds"]) == (2.5, 1.0, 3.0)


def test_ess_matches_arviz_on_each_projection():
    rng = np.random.default_rng(2)
    theta = np.cumsum(rng.standard_normal((3, 200, 4)), axis=1)  # random walks: small ESS
    m = dg.cell_metrics(_synthetic({"theta_proj": theta}))
    bulk = [az.ess(theta[:, :, j], method="bulk") for j in range(4)]
    tail = [az.ess(theta[:, :, j], method="tail", prob=(0.05, 0.95)) for j in range(4)]  # 0.2x's default
    rhat = [az.rhat(theta[:, :, j]) for j in range(4)]
    assert m["ess_bulk_theta_median"] == pytest.approx(np.median(bulk), rel=1e-12)
    assert m["ess_bulk_theta_min"] == pytest.approx(np.min(bulk), rel=1e-12)
    assert m["ess_tail_theta_min"] == pytest.approx(np.min(tail), rel=1e-12)
    assert m["rhat_theta_max"] == pytest.approx(np.max(rhat), rel=1e-12)
    assert m["ess_bulk_theta_median"] < 0.2 * 600


def test_separated_chains_give_large_rhat():
    rng = np.random.default_rng(3)
    offsets = np.arange(4.0)[:, None, None] * 10  # each chain stuck in its own mode
    theta = offsets + 0.1 * rng.standard_normal((4, 300, 3))
    m = dg.cell_metrics(_synthetic({"theta_proj": theta}, {"f_test": rng.standard_normal((4, 300, 5, 1))}))
    assert m["rhat_theta_max"] > 2
    assert m["rhat_max"] == m["rhat_theta_max"]
    assert m["rhat_pred_max"] < 1.02
    assert m["ess_bulk_theta_median"] < 20


def test_single_chain_has_ess_but_no_rhat():
    rng = np.random.default_rng(9)
    m = dg.cell_metrics(_synthetic({"theta_proj": rng.standard_normal((1, 400, 4))}))
    assert abs(m["ess_bulk_theta_median"] / 400 - 1) < 0.25  # one chain of 400: mean ~0.96, sd ~0.06 (40 seeds)
    assert math.isnan(m["rhat_theta_max"]) and math.isnan(m["rhat_max"])


def test_pred_group_is_a_fixed_unit_norm_projection():
    rng = np.random.default_rng(4)
    f = rng.standard_normal((2, 50, 7, 3))
    idata = _synthetic({"theta_proj": rng.standard_normal((2, 50, 2))}, {"f_test": f})
    series = dg.group_series(idata, num_pred_points=2, num_pred_projections=4, projection_seed=5)
    directions = projection_matrix(21, 4, 5)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=0), 1, rtol=1e-12)
    np.testing.assert_allclose(series["pred"], f.reshape(2, 50, 21) @ directions, rtol=1e-12)
    np.testing.assert_array_equal(series["points"], f[:, :, :2].reshape(2, 50, 6))
    other = dg.group_series(idata, num_pred_projections=4, projection_seed=6)["pred"]
    assert not np.allclose(other, series["pred"])


def test_missing_groups_give_nan_not_keyerror():
    rng = np.random.default_rng(5)
    idata = from_dict({"sample_stats": {"lp": rng.standard_normal((2, 10))}})  # no attrs, no draws
    m = dg.cell_metrics(idata, y_test=np.zeros(3))
    assert list(m) == dg.metric_names()
    for key in dg.metric_names():
        if key != "num_draws":
            assert math.isnan(m[key]), key
    idata = _synthetic({"theta_proj": rng.standard_normal((2, 30, 3))})
    m = dg.cell_metrics(idata)
    assert np.isfinite(m["ess_bulk_theta_median"])
    assert all(math.isnan(m[k]) for k in ("ess_bulk_phi_median", "ess_bulk_pred_median", "rhat_points_max",
                                          "test_rmse", "accept_mean", "divergences"))


def test_sample_stats_figures():
    rng = np.random.default_rng(6)
    stats = {"accept_prob": rng.uniform(size=(2, 40)), "diverging": rng.uniform(size=(2, 40)) < 0.1,
             "num_steps": rng.integers(1, 64, size=(2, 40))}
    m = dg.cell_metrics(_synthetic({"theta_proj": rng.standard_normal((2, 40, 3))}, stats=stats))
    assert m["accept_mean"] == pytest.approx(stats["accept_prob"].mean(), rel=1e-12)
    assert m["divergences"] == int(stats["diverging"].sum()) and isinstance(m["divergences"], int)
    assert m["steps_per_draw"] == pytest.approx(stats["num_steps"].mean(), rel=1e-12)
    # Without attrs the sampling cost is the sum of the recorded steps.
    m = dg.cell_metrics(_synthetic({"theta_proj": rng.standard_normal((2, 40, 3))}, stats=stats, attrs={}))
    assert m["grad_evals"] == int(stats["num_steps"].sum())
    assert m["ess_per_grad_theta"] == m["ess_bulk_theta_median"] / stats["num_steps"].sum()
    # ... and without a density count, the density evaluations are the gradient evaluations.
    assert m["logdensity_evals"] == m["grad_evals"]
    assert m["ess_per_eval_theta"] == m["ess_per_grad_theta"]


def test_gradient_free_run_is_costed_per_density_evaluation():
    """A kernel with no gradients (elliptical slice, pCN): ESS/grad is undefined, ESS/eval is
    the median ESS over the recorded density evaluations, from attrs or else the stats."""
    rng = np.random.default_rng(8)
    evals = rng.integers(1, 6, size=(2, 50))
    stats = {"num_grad_evals": np.zeros((2, 50), int), "num_logdensity_evals": evals}
    theta = {"theta_proj": rng.standard_normal((2, 50, 3))}
    m = dg.cell_metrics(_synthetic(theta, stats=stats, attrs={"sample_seconds": 2.0}))
    assert m["grad_evals"] == 0 and math.isnan(m["ess_per_grad_theta"])
    assert m["logdensity_evals"] == int(evals.sum())
    assert m["ess_per_eval_theta"] == m["ess_bulk_theta_median"] / evals.sum()
    attrs = {"sample_seconds": 2.0, "grad_evals_sampling": 0, "logdensity_evals_sampling": 777}
    m = dg.cell_metrics(_synthetic(theta, stats=stats, attrs=attrs))
    assert m["logdensity_evals"] == 777 and m["ess_per_eval_theta"] == m["ess_bulk_theta_median"] / 777


# -- predictive accuracy ------------------------------------------------------------------
def test_test_metrics_against_closed_form():
    rng = np.random.default_rng(7)
    chains, draws, m_test, k = 2, 3, 4, 2
    mean = rng.standard_normal((chains, draws, m_test, k))
    var = rng.uniform(0.1, 1.0, size=(chains, draws, m_test))
    y = rng.standard_normal((m_test, k))
    idata = _synthetic({"theta_proj": rng.standard_normal((chains, draws, 2))},
                       {"f_test": mean + 1.0, "f_test_rb_mean": mean, "f_test_rb_var": var})
    got = dg.predictive_metrics(idata, y)
    flat_mean, flat_var = mean.reshape(-1, m_test, k), var.reshape(-1, m_test)
    rmse = np.sqrt(np.mean((y - flat_mean.mean(0)) ** 2))
    sd = np.sqrt(flat_var + 0.5**2)[:, :, None]
    per_draw = norm.logpdf(y, flat_mean, sd).sum(-1)  # (S, m)
    log_lik = np.mean(logsumexp(per_draw, axis=0) - np.log(per_draw.shape[0]))
    assert got["test_rmse"] == pytest.approx(rmse, rel=1e-12)
    assert got["test_log_lik"] == pytest.approx(log_lik, rel=1e-12)
    with pytest.raises(ValueError, match="y_test"):
        dg.predictive_metrics(idata, y[:3])


def test_predictive_distance_is_zero_at_the_sampled_moments():
    rng = np.random.default_rng(8)
    mean = rng.standard_normal((2, 20, 5, 1))
    var = rng.uniform(0.1, 1.0, size=(2, 20, 5))
    idata = _synthetic({"theta_proj": rng.standard_normal((2, 20, 2))},
                       {"f_test": mean, "f_test_rb_mean": mean, "f_test_rb_var": var})
    ref_mean = mean.reshape(40, 5, 1).mean(0)
    ref_var = var.reshape(40, 5).mean(0) + mean.reshape(40, 5).var(0)
    d = dg.predictive_distance_to(idata, ref_mean, ref_var)
    assert d["mean_rmse"] == pytest.approx(0, abs=1e-12) and d["kl"] == pytest.approx(0, abs=1e-12)
    far = dg.predictive_distance_to(idata, ref_mean + 1.0, ref_var)
    assert far["mean_rmse"] == pytest.approx(1.0, rel=1e-12) and far["kl"] > 0.1


# -- across cells -------------------------------------------------------------------------
def test_average_and_ratio_by_hand():
    base = {"arch": "mlp", "depth": 1}
    rows = [dict(base, width=8, parameterisation="standard", seed=0, x=1.0),
            dict(base, width=8, parameterisation="standard", seed=1, x=3.0),
            dict(base, width=8, parameterisation="reprior", seed=0, x=6.0),
            dict(base, width=8, parameterisation="reprior", seed=1, x=float("nan")),
            dict(base, width=16, parameterisation="reprior", seed=0, x=5.0)]
    averaged = dg.ratio_to_baseline(dg.average_over_seeds(rows, ["x"]), ["x"])
    assert [(e["width"], e["parameterisation"], e["num_seeds"], e["x"]) for e in averaged] == [
        (8, "standard", 2, 2.0), (8, "reprior", 2, 6.0), (16, "reprior", 1, 5.0)]
    assert [e["ratio_x"] for e in averaged[:2]] == [1.0, 3.0]
    assert math.isnan(averaged[2]["ratio_x"])  # no standard cell at width 16



def test_cells_with_other_sampler_options_are_not_averaged_as_seeds():
    """NUTS at tree depth 5 and 10 are two series, whichever way the options are written."""
    base = {"arch": "mlp", "depth": 1, "sampler": "nuts", "width": 8, "parameterisation": "reprior", "seed": 0}
    rows = [dict(base, sampler_options='{"max_tree_depth": 5}', x=1.0),
            dict(base, sampler_options={"max_tree_depth": 10}, x=3.0),
            dict(base, sampler_options='{"max_tree_depth": 10}', seed=1, x=5.0),
            dict(base, sampler_options="", x=7.0), dict(base, sampler_options="{}", seed=1, x=9.0)]
    averaged = dg.average_over_seeds(rows, ["x"])
    assert sorted((e["sampler_options"], e["num_seeds"], e["x"]) for e in averaged) == [
        ("", 2, 8.0), ('{"max_tree_depth": 10}', 2, 4.0), ('{"max_tree_depth": 5}', 1, 1.0)]

# -- a real run -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_run():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 2)), rng.standard_normal((12, 1))
    x_test, y_test = rng.standard_normal((6, 2)), rng.standard_normal((6, 1))
    idata = reprior.sample(reprior.BNN(reprior.MLP(4), 0.3), x, y, x_test=x_test, num_warmup=20,
                           num_samples=30, num_chains=2, progress_bar=False, num_projections=4)
    return idata, y_test


def test_cell_metrics_on_a_real_run(real_run, tmp_path):
    idata, y_test = real_run
    m = dg.cell_metrics(idata, y_test=y_test, num_pred_points=3)
    assert list(m) == dg.metric_names()
    assert set(REQUIRED) <= set(m)
    for key in REQUIRED + ["ess_bulk_phi_median", "ess_bulk_points_min", "test_log_lik", "steps_per_draw"]:
        assert np.isfinite(m[key]), key
    assert m["grad_evals"] == idata.attrs["grad_evals_sampling"] == int(idata.sample_stats.num_grad_evals.sum())
    assert m["ess_per_grad_pred"] == m["ess_bulk_pred_median"] / m["grad_evals"]
    assert m["logdensity_evals"] == idata.attrs["logdensity_evals_sampling"] == m["grad_evals"]
    assert m["ess_per_eval_pred"] == m["ess_per_grad_pred"]
    assert m["ess_per_second_pred"] == m["ess_bulk_pred_median"] / idata.attrs["sample_seconds"]
    assert m["num_draws"] == 60 and 0 <= m["accept_mean"] <= 1 and m["rhat_max"] > 0.9
    # ArviZ on the stored variable gives the same theta figures.
    bulk = az.ess(idata, var_names=["theta_proj"], method="bulk")["theta_proj"].values
    assert m["ess_bulk_theta_median"] == pytest.approx(np.median(bulk), rel=1e-12)
    # A NetCDF round trip keeps every figure (the runner stores cells as NetCDF).
    idata.to_netcdf(str(tmp_path / "cell.nc"))
    again = dg.cell_metrics(from_netcdf(tmp_path / "cell.nc"), y_test=y_test, num_pred_points=3)
    assert again == pytest.approx(m, rel=1e-12, nan_ok=True)
    info = dg.run_info(idata)
    assert info["jax_version"] and info["machine"]


def test_bad_arguments_name_themselves(real_run):
    idata, y_test = real_run
    with pytest.raises(ValueError, match="num_pred_points"):
        dg.cell_metrics(idata, num_pred_points=-1)
    with pytest.raises(ValueError, match="y_test"):
        dg.cell_metrics(idata, y_test=np.full((6, 1), np.nan))


def test_only_plots_imports_matplotlib():
    package = Path(dg.__file__).parent.parent
    pattern = re.compile(r"^\s*(import|from)\s+matplotlib", re.MULTILINE)
    importers = sorted(p.relative_to(package).as_posix() for p in package.rglob("*.py") if pattern.search(p.read_text()))
    assert importers == ["experiments/plots.py"]
