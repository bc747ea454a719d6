"""The ArviZ workflow on a reprior run, on ArviZ 0.2x and 1.x: predictive draws of y, az.loo,
az.compare, az.plot_ppc, BNN.from_idata through NetCDF, and reprior.from_chains.

One collapsed NUTS run (``keep="all"``) serves every test; ``from_chains`` of its own
hidden weights (same seed) must give back the same groups and the same cell metrics,
and ``from_chains`` of its theta draws the standard run's quantities of those draws.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from conftest import regression_data

import reprior
from reprior.inference import arviz_compat as _arviz
from reprior.core.bnn import arch_from_attrs, describe_arch
from reprior.evaluation.diagnostics import cell_metrics
from reprior.inference.inference_data import STATE_GROUP, group_arrays
from reprior.inference.models import unflatten_params

matplotlib.use("Agg")

X, Y = regression_data(12, out_dim=2)
X_TEST = X[:4] + 0.5
Y_TEST = Y[:4]
NOISE = 0.3
BNN = reprior.BNN(reprior.MLP(width=8, depth=2, activation="erf", w_std=1.3, b_std=0.2, out_b_std=0.3), NOISE)
SEED = 5
COST_ATTRS = ("grad_evals", "grad_evals_warmup", "grad_evals_sampling", "logdensity_evals_sampling",
              "sample_seconds", "warmup_seconds", "compile_seconds")


@pytest.fixture(scope="module")
def run():
    return reprior.sample(BNN, X, Y, x_test=X_TEST, sampler="nuts", sampler_options={"max_tree_depth": 3},
                          num_warmup=20, num_samples=20, num_chains=2, seed=SEED, progress_bar=False,
                          dtype="float64", keep="all")


def _theta(idata):
    """The run's theta draws as reprior's parameter pytree, leaves ``(chain, draw, ...)``."""
    template = BNN.param_shapes(X.shape, Y.shape[1])
    return unflatten_params(group_arrays(idata, "posterior"), template)


def _f(theta, x):
    """``f(x)`` of every draw: ``(chain, draw, len(x), k)``."""
    with jax.enable_x64(True):
        apply = jax.vmap(jax.vmap(lambda p: BNN.apply(p, jnp.asarray(x))))
        return np.asarray(apply(jax.tree_util.tree_map(jnp.asarray, theta)))


# -- the predictive groups ------------------------------------------------------------------
def test_predictive_draws_of_y_line_up_with_the_observations(run):
    assert run.posterior_predictive["y"].dims == ("chain", "draw", "train", "output")
    assert run.posterior_predictive["y"].shape[2:] == run.observed_data["y"].shape
    assert run.posterior_predictive["y_test"].dims == ("chain", "draw", "test", "output")
    assert run.log_likelihood["y"].shape == run.posterior_predictive["y"].shape


def test_pointwise_log_likelihood_is_that_of_the_draws_network(run):
    f = _f(_theta(run), X)
    expected = -0.5 * ((Y - f) ** 2 / NOISE**2 + np.log(2 * np.pi * NOISE**2))
    np.testing.assert_allclose(run.log_likelihood["y"].values, expected, rtol=1e-10)
    np.testing.assert_allclose(run.posterior_predictive["f_test"].values, _f(_theta(run), X_TEST), rtol=1e-10)


@pytest.mark.parametrize("name, x", [("y", X), ("y_test", X_TEST)])
def test_predictive_draws_are_the_network_plus_gaussian_noise(run, name, x):
    """(y_rep - f(x)) / sigma is i.i.d. N(0, 1): 480 and 160 values, mean within 5 sd, variance within 5 sd."""
    z = ((run.posterior_predictive[name].values - _f(_theta(run), x)) / NOISE).ravel()
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / z.size)


def test_pointwise_false_records_no_pointwise_quantities():
    """The per-draw function without ``pointwise``: no log likelihood, no predictive y (the rest is kept)."""
    from reprior.inference import sampling
    from reprior.core.target import build_target

    with jax.enable_x64(True):
        target = build_target(BNN, jnp.asarray(X), jnp.asarray(Y))
        z = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(jax.random.key(0), 1))
        keys = {pointwise: set(sampling.make_collect_fn(target, jnp.asarray(X_TEST), "none", 2, 0,
                                                         pointwise=pointwise)({}, jax.random.key(1), z))
                for pointwise in (True, False)}
    assert keys[True] - keys[False] == {"log_likelihood", "y"}
    assert {"y_test", "f_test", "log_marginal_likelihood"} <= keys[False]


# -- loo, compare, plot_ppc -----------------------------------------------------------------
def test_loo_and_compare(run):
    loo = _arviz.loo(run)
    assert np.isfinite(_arviz.elpd(loo))
    other = reprior.from_chains(BNN, X, Y, theta=_theta(run), seed=SEED)  # the same draws: the same elpd
    np.testing.assert_allclose(_arviz.elpd(_arviz.loo(other)), _arviz.elpd(loo), rtol=1e-10)
    table = _arviz.compare({"reprior": run, "from_chains": other})
    assert sorted(table.index) == ["from_chains", "reprior"]


def test_plot_ppc_draws_observed_and_predictive_y(run):
    import matplotlib.pyplot as plt

    plt.close("all")
    _arviz.plot_ppc(run, num_samples=5) if _arviz.ARVIZ_1 else _arviz.plot_ppc(run, num_pp_samples=5)
    lines = [line for fig in map(plt.figure, plt.get_fignums()) for ax in fig.axes for line in ax.get_lines()]
    assert len(lines) >= 6  # 5 predictive draws and the observations (at least)
    plt.close("all")


# -- BNN.from_idata ---------------------------------------------------------------------------
def test_from_idata_rebuilds_the_network_through_netcdf(run, tmp_path):
    path = tmp_path / "run.nc"
    run.to_netcdf(str(path))
    back = reprior.BNN.from_idata(_arviz.from_netcdf(path))
    assert back.arch == BNN.arch and back.noise_std == BNN.noise_std
    assert STATE_GROUP in _arviz.group_names(_arviz.from_netcdf(path))


@pytest.mark.parametrize("arch", [reprior.ResNet(width=3, depth=14, residual_scaling="progressive", residual_c=2.0,
                                                 activation="tanh", out_w_std=0.7),
                                  reprior.MLP(width=5, depth=3, activation="gelu")])
def test_every_hyperparameter_is_recorded(arch):
    assert arch_from_attrs(describe_arch(arch)) == arch


def test_from_idata_refuses_what_it_cannot_rebuild():
    with pytest.raises(ValueError, match="argument `idata`: .*arch_class"):
        reprior.BNN.from_idata(_arviz.from_dict({"posterior": {"a": np.zeros((1, 2))}}, attrs={"noise_std": 0.1}))
    attrs = {**describe_arch(BNN.arch), "arch_class": "nowhere.Net", "noise_std": 0.1}
    with pytest.raises(ValueError, match="argument `idata`: expected a network of a loaded architecture"):
        arch_from_attrs(attrs)
    user = reprior.FeatureArchitecture(init=lambda key, x: {"W": jax.random.normal(key, (x.shape[1], 4))},
                                       features=lambda hidden, x: jnp.tanh(x @ hidden["W"]), name="mine")
    with pytest.raises(ValueError, match="recorded by name only"):
        arch_from_attrs(describe_arch(user))


# -- reprior.from_chains ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def again(run):
    """``from_chains`` of the run's own hidden weights (phi_hidden), its statistics and costs."""
    hidden = {k: v for k, v in group_arrays(run, "posterior").items() if k.startswith("hidden_")}
    return reprior.from_chains(BNN, X, Y, phi=hidden, x_test=X_TEST, seed=SEED,
                               sample_stats=group_arrays(run, "sample_stats"),
                               warmup_sample_stats=group_arrays(run, "warmup_sample_stats"),
                               attrs={k: run.attrs[k] for k in COST_ATTRS})


@pytest.mark.parametrize("group", ["posterior", "posterior_predictive", "log_likelihood", "sample_stats",
                                   "observed_data", "constant_data"])
def test_from_chains_of_the_runs_draws_gives_the_same_groups(run, again, group):
    want, got = group_arrays(run, group), group_arrays(again, group)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert _arviz.get_dataset(again, group)[name].dims == _arviz.get_dataset(run, group)[name].dims
        np.testing.assert_allclose(np.asarray(got[name], float), np.asarray(value, float), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{group}/{name}")


def test_from_chains_of_the_runs_draws_gives_the_same_metrics(run, again):
    want = cell_metrics(run, y_test=Y_TEST)
    got = cell_metrics(again, y_test=Y_TEST)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-8, equal_nan=True, err_msg=name)
    assert np.isfinite(want["ess_bulk_phi_median"]) and np.isfinite(want["test_rmse"])


def test_from_chains_records_the_network_and_no_sampler_state(run, again):
    assert reprior.BNN.from_idata(again).arch == BNN.arch
    assert again.attrs["readout_root"] == run.attrs["readout_root"]  # the same pairing of phi_out and theta_out
    assert STATE_GROUP not in _arviz.group_names(again)
    assert again.attrs["parameterisation"] == "reprior" and again.attrs["readout"] == "exact"


def test_from_chains_of_theta_is_a_standard_run(run):
    standard = reprior.from_chains(BNN, X, Y, theta=_theta(run), x_test=X_TEST, seed=SEED)
    assert "phi_proj" not in standard.posterior and "readout_W_reprior" not in standard.posterior
    for group, name in [("posterior", "theta_proj"), ("posterior", "log_marginal_likelihood"),
                        ("log_likelihood", "y"), ("posterior_predictive", "f_test"),
                        ("posterior_predictive", "f_test_rb_mean"), ("posterior_predictive", "f_test_rb_var")]:
        np.testing.assert_allclose(_arviz.get_dataset(standard, group)[name].values,
                                   _arviz.get_dataset(run, group)[name].values, rtol=1e-9, atol=1e-12,
                                   err_msg=f"{group}/{name}")


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "argument `theta, phi`: expected exactly one of them, received 'neither'"),
    (dict(theta={"hidden": [], "readout": {}}, phi={"hidden": []}), "received 'both'"),
    (dict(phi={"hidden_0_W": np.zeros((2, 3, 2, 8))}), "argument `phi`: expected the sites of the network"),
    (dict(theta={"readout_W": np.zeros((2, 3, 8, 2))}), "argument `theta`: expected the sites"),
])
def test_from_chains_refuses_bad_draws(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reprior.from_chains(BNN, X, Y, **kwargs)


def test_from_chains_refuses_draws_of_another_shape(run):
    theta = _theta(run)
    theta["readout"]["b"] = theta["readout"]["b"][:, :3]
    with pytest.raises(ValueError, match=r"argument `theta`: expected arrays of shape \(chains, draws\)"):
        reprior.from_chains(BNN, X, Y, theta=theta)
