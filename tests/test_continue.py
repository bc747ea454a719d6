"""reprior.sample(..., init=idata): a continued run is the longer run, to round-off, on CPU.

For NUTS (NumPyro's kernel, its adaptation in closures and state) and pCNL (an
adapted kernel of reprior's own, its warm-up length in its state): N draws, saved
to NetCDF and read back, then M more with ``init=``, equal one run of N + M
draws with the same seed, group by group and variable by variable; and a
continued run of another network, other data or other settings is refused
before anything is compiled.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import regression_data

import reprior
from reprior.inference import arviz_compat as _arviz
from reprior.inference.inference_data import STATE_GROUP

X, Y = regression_data(12)
X_TEST = X[:3] + 0.5
BNN = reprior.BNN(reprior.MLP(width=8), noise_std=0.3)
N, M = 5, 7
SETTINGS = {"nuts": dict(sampler="nuts", sampler_options={"max_tree_depth": 3}),
            "pcnl": dict(sampler="pcnl", readout="sampled")}
GROUPS = ("posterior", "posterior_predictive", "log_likelihood", "sample_stats", "warmup_sample_stats")


def _kwargs(name):
    return dict(x_test=X_TEST, num_warmup=10, num_chains=2, seed=3, progress_bar=False, dtype="float64",
                **SETTINGS[name])


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def runs(request, tmp_path_factory):
    """``(name, longer run, first part, the first part continued)``, the first part read back from NetCDF."""
    name = request.param
    longer = reprior.sample(BNN, X, Y, num_samples=N + M, **_kwargs(name))
    first = reprior.sample(BNN, X, Y, num_samples=N, **_kwargs(name))
    path = tmp_path_factory.mktemp("continue") / f"{name}.nc"
    first.to_netcdf(str(path))
    continued = reprior.sample(BNN, X, Y, num_samples=M, init=_arviz.from_netcdf(path), **_kwargs(name))
    return name, longer, first, continued


def test_a_continued_run_is_the_longer_run(runs):
    _, longer, _, continued = runs
    for group in GROUPS:
        want, got = _arviz.get_dataset(longer, group), _arviz.get_dataset(continued, group)
        assert sorted(got.data_vars) == sorted(want.data_vars), group
        for var in want.data_vars:
            assert got[var].dims == want[var].dims
            np.testing.assert_allclose(np.asarray(got[var].values, float), np.asarray(want[var].values, float),
                                       rtol=1e-10, atol=1e-12, err_msg=f"{group}/{var}")


def test_the_final_states_and_the_counts_are_the_longer_runs(runs):
    _, longer, _, continued = runs
    want, got = _arviz.get_dataset(longer, STATE_GROUP), _arviz.get_dataset(continued, STATE_GROUP)
    assert list(got.data_vars) == list(want.data_vars) and want.attrs["spec"] == got.attrs["spec"]
    for var in want.data_vars:
        np.testing.assert_allclose(np.asarray(got[var].values, float), np.asarray(want[var].values, float),
                                   rtol=1e-10, atol=1e-12, err_msg=var)
    for name in ("num_samples", "num_warmup", "grad_evals", "grad_evals_warmup", "grad_evals_sampling",
                 "logdensity_evals", "n_train", "seed"):
        assert continued.attrs[name] == longer.attrs[name], name


def test_the_first_part_is_the_start_of_the_longer_run(runs):
    """The draws do not depend on how many come after them (a check that the comparison can fail)."""
    _, longer, first, continued = runs
    a, b = first.posterior["theta_proj"].values, longer.posterior["theta_proj"].values
    np.testing.assert_allclose(a, b[:, :N], rtol=1e-10)
    assert not np.allclose(continued.posterior["theta_proj"].values[:, N:], a[:, :1])  # the chains move on


@pytest.mark.parametrize("change, match", [
    (dict(bnn=reprior.BNN(reprior.MLP(width=9), noise_std=0.3)), "arch_settings"),
    (dict(bnn=reprior.BNN(reprior.MLP(width=8), noise_std=0.4)), "noise_std"),
    (dict(y=Y + 1.0), "`y` differs"),
    (dict(x_test=None), "`x_test` differs"),
    (dict(seed=4), "seed"),
    (dict(num_chains=3), "num_chains"),
    (dict(sampler="pcn", sampler_options=None), "sampler"),
    (dict(keep="readout"), "keep"),
])
def test_init_of_another_network_data_or_setting_is_refused(runs, change, match):
    name, _, first, _ = runs
    kwargs = {**_kwargs(name), "bnn": BNN, "x": X, "y": Y, **change}
    bnn, x, y = kwargs.pop("bnn"), kwargs.pop("x"), kwargs.pop("y")
    with pytest.raises(ValueError, match=r"argument `init`: .*" + match):
        reprior.sample(bnn, x, y, num_samples=2, init=first, **kwargs)


def test_init_refuses_other_objects_and_a_second_warmup(runs):
    name, _, first, _ = runs
    with pytest.raises(ValueError, match="argument `init`: expected a result of reprior.sample"):
        reprior.sample(BNN, X, Y, num_samples=2, init={"posterior": 1}, **_kwargs(name))
    with pytest.raises(ValueError, match=r"argument `num_warmup`: expected None or 10"):
        reprior.sample(BNN, X, Y, num_samples=2, init=first, **{**_kwargs(name), "num_warmup": 20})
    stateless = first.copy()
    if _arviz.ARVIZ_1:
        del stateless[STATE_GROUP]
    else:
        delattr(stateless, STATE_GROUP)
    assert STATE_GROUP not in _arviz.group_names(stateless)
    with pytest.raises(ValueError, match="argument `init`: expected a result that holds its chains' final states"):
        reprior.sample(BNN, X, Y, num_samples=2, init=stateless, **_kwargs(name))
