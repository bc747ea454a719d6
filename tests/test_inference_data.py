"""reprior.inference.inference_data: the layout of reprior.sample's result, the same on ArviZ 0.2x and 1.x."""

import warnings

import numpy as np
import pytest

from reprior.inference import arviz_compat as _arviz
from reprior.inference.driver import ChainRun
from reprior.inference.inference_data import to_inference_data

C, S, W, N, M, K, P = 2, 40, 5, 6, 3, 2, 4  # chains, draws, warm-up, train, test, outputs, projections


def _run(rng, *, predictive=True, warmup=True):
    draws = {"theta_proj": rng.standard_normal((C, S, P)), "readout_W": rng.standard_normal((C, S, 7, K)),
             "log_likelihood": -0.5 * rng.uniform(size=(C, S, N, K)),
             "log_marginal_likelihood": rng.standard_normal((C, S))}
    if predictive:
        draws.update(f_test=rng.standard_normal((C, S, M, K)), f_test_rb_mean=rng.standard_normal((C, S, M, K)),
                     f_test_rb_var=rng.uniform(size=(C, S, M)))
    stats = {"accept_prob": rng.uniform(size=(C, S)), "diverging": np.zeros((C, S), bool)}
    return ChainRun(draws=draws, stats=stats, warmup_stats={"accept_prob": rng.uniform(size=(C, W))} if warmup else {})


def _build(**kwargs):
    rng = np.random.default_rng(0)
    x, y, x_test = rng.standard_normal((N, 5)), rng.standard_normal((N, K)), rng.standard_normal((M, 5))
    return to_inference_data(_run(rng, **kwargs), x=x, y=y, x_test=x_test if kwargs.get("predictive", True) else None,
                             attrs={"num_projections": P, "noise_std": 0.1, "sampler": "nuts"})


def test_groups_and_their_order():
    assert _arviz.group_names(_build()) == ["posterior", "posterior_predictive", "log_likelihood", "sample_stats",
                                            "observed_data", "constant_data", "warmup_sample_stats"]
    assert _arviz.group_names(_build(predictive=False, warmup=False)) == [
        "posterior", "log_likelihood", "sample_stats", "observed_data", "constant_data"]


@pytest.mark.parametrize("group, name, dims", [
    ("posterior", "theta_proj", ("chain", "draw", "projection")),
    ("posterior", "readout_W", ("chain", "draw", "readout_W_dim_0", "readout_W_dim_1")),
    ("posterior", "log_marginal_likelihood", ("chain", "draw")),
    ("posterior_predictive", "f_test", ("chain", "draw", "test", "output")),
    ("posterior_predictive", "f_test_rb_mean", ("chain", "draw", "test", "output")),
    ("posterior_predictive", "f_test_rb_var", ("chain", "draw", "test")),
    ("log_likelihood", "y", ("chain", "draw", "train", "output")),
    ("sample_stats", "accept_prob", ("chain", "draw")),
    ("warmup_sample_stats", "accept_prob", ("chain", "draw")),
    ("observed_data", "y", ("train", "output")),
    ("constant_data", "x", ("train", "x_dim_0")),
    ("constant_data", "x_test", ("test", "x_dim_0")),
])
def test_every_variable_has_the_documented_dims(group, name, dims):
    assert _build()[group][name].dims == dims


def test_attrs_and_projection_coordinates():
    idata = _build()
    assert idata.attrs["noise_std"] == 0.1 and idata.attrs["sampler"] == "nuts"
    np.testing.assert_array_equal(idata.posterior["projection"].values, np.arange(P))


def test_log_likelihood_lines_up_with_observed_data_for_loo():
    """``az.loo`` reads log_likelihood["y"] (one value per training target), on either ArviZ."""
    idata = _build()
    assert idata.log_likelihood["y"].shape[2:] == idata.observed_data["y"].shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few draws: Pareto k warnings
        loo = _arviz.az.loo(idata, var_name="y")
    assert np.isfinite(float(loo["elpd"] if _arviz.ARVIZ_1 else loo["elpd_loo"]))
