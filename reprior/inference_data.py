"""Assemble the result of :func:`reprior.sample` from a :class:`~reprior.driver.ChainRun`.

The result is an :class:`arviz.InferenceData` on ArviZ 0.20-0.23 and an
:class:`xarray.DataTree` on ArviZ 1.x, with the same groups, variables, dims
and attrs (:mod:`reprior._arviz`).
"""

from __future__ import annotations

import numpy as np

from . import _arviz

_PREDICTIVE = ("f_test", "f_test_rb_mean", "f_test_rb_var")


def _dims(name: str, value: np.ndarray):
    if name in ("theta_proj", "phi_proj"):
        return ["projection"]
    if name in ("f_test", "f_test_rb_mean"):
        return ["test", "output"]
    if name == "f_test_rb_var":
        return ["test"]
    if name == "log_likelihood":
        return ["train", "output"]
    return [f"{name}_dim_{i}" for i in range(value.ndim - 2)]


def to_inference_data(run, *, x, y, x_test, attrs: dict):
    """Groups: posterior, posterior_predictive, log_likelihood, sample_stats,
    warmup_sample_stats, observed_data, constant_data; ``attrs`` on the result itself
    (``idata.attrs``: ``InferenceData.attrs`` on ArviZ 0.2x, the root's on 1.x)."""
    draws = dict(run.draws)
    loglik = draws.pop("log_likelihood")
    predictive = {k: draws.pop(k) for k in _PREDICTIVE if k in draws}
    groups = {  # in ArviZ's order of groups
        "posterior": draws,
        "posterior_predictive": predictive,
        "log_likelihood": {"y": loglik},
        "sample_stats": dict(run.stats),
        "observed_data": {"y": y},
        "constant_data": {"x": x} if x_test is None else {"x": x, "x_test": x_test},
    }
    dims = {name: _dims(name, value) for name, value in {**draws, **predictive}.items()}
    dims["y"] = ["train", "output"]
    dims["x"] = ["train"] + [f"x_dim_{i}" for i in range(x.ndim - 1)]
    if x_test is not None:
        dims["x_test"] = ["test"] + [f"x_dim_{i}" for i in range(x.ndim - 1)]
    kwargs = dict(dims=dims, attrs=attrs, coords={"projection": np.arange(attrs.get("num_projections", 0))})
    if not predictive:
        del groups["posterior_predictive"]
    if run.warmup_stats:
        groups["warmup_sample_stats"] = dict(run.warmup_stats)
    return _arviz.from_dict(groups, **kwargs)
