"""Assemble the result of :func:`reprior.sample` from a :class:`~reprior.inference.driver.ChainRun`, and read it back.

The result is an :class:`arviz.InferenceData` on ArviZ 0.20-0.23 and an
:class:`xarray.DataTree` on ArviZ 1.x, with the same groups, variables, dims
and attrs (:mod:`reprior.inference.arviz_compat`).  Besides ArviZ's groups it carries
``sampler_state`` (:data:`STATE_GROUP`): the kernel state of every chain after
its last iteration, adaptation and PRNG key included, from which
``reprior.sample(..., init=idata)`` continues the chains (:func:`state_dataset`,
:func:`read_state`).
"""

from __future__ import annotations

import json
import re

import numpy as np

from reprior.inference import arviz_compat as _arviz

#: Variables of ``posterior_predictive``, in this order.
PREDICTIVE = ("y", "y_test", "f_test", "f_test_rb_mean", "f_test_rb_var")
#: The group holding the chains' final kernel states.
STATE_GROUP = "sampler_state"
_SAMPLE_GROUPS = ("posterior", "posterior_predictive", "log_likelihood", "sample_stats", "warmup_sample_stats")


def _dims(name: str, value: np.ndarray):
    if name in ("theta_proj", "phi_proj"):
        return ["projection"]
    if name in ("f_test", "f_test_rb_mean", "y_test"):
        return ["test", "output"]
    if name == "f_test_rb_var":
        return ["test"]
    if name in ("log_likelihood", "y"):
        return ["train", "output"]
    return [f"{name}_dim_{i}" for i in range(value.ndim - 2)]


def to_inference_data(run, *, x, y, x_test, attrs: dict):
    """Groups: posterior, posterior_predictive, log_likelihood, sample_stats,
    warmup_sample_stats, observed_data, constant_data, and sampler_state when the run has
    its final states; ``attrs`` on the result itself (``idata.attrs``: ``InferenceData.attrs``
    on ArviZ 0.2x, the root's on 1.x).  ``log_likelihood`` and ``posterior_predictive``
    are left out when the run recorded none (``pointwise=False``, no ``x_test``)."""
    draws = dict(run.draws)
    loglik = draws.pop("log_likelihood", None)
    predictive = {k: draws.pop(k) for k in PREDICTIVE if k in draws}
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
    if loglik is None:
        del groups["log_likelihood"]
    groups = {name: group for name, group in groups.items() if group}  # no predictions, no statistics: no group
    if run.warmup_stats:
        groups["warmup_sample_stats"] = dict(run.warmup_stats)
    idata = _arviz.from_dict(groups, **kwargs)
    if getattr(run, "final_state", None) is not None:
        _arviz.add_group(idata, STATE_GROUP, state_dataset(run.final_state))
    return idata


# -- the chains' final states ----------------------------------------------------------------
def _leaf_name(path) -> str:
    parts = [str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path]
    return re.sub(r"[^A-Za-z0-9_.]", "_", ".".join(parts)) or "state"


def state_dataset(state):
    """The kernel states ``state`` (a pytree, every leaf with a leading ``(chain,)`` axis) as an
    ``xarray.Dataset``: one variable per leaf, named by its path (``adapt_state.step_size``),
    typed PRNG keys as their key data; ``attrs["spec"]`` (JSON: the
    :func:`reprior.inference.checkpoint.flatten_tree` spec and the variable of each leaf) rebuilds the tree."""
    import jax
    import xarray as xr

    from reprior.inference.checkpoint import flatten_tree

    arrays, spec = flatten_tree(state)
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]:
        name = _leaf_name(path)
        while name in names:
            name += "_"
        names.append(name)
    data = {name: (["chain"] + [f"{name}_dim_{i}" for i in range(a.ndim - 1)], a) for name, a in zip(names, arrays)}
    return xr.Dataset(data, attrs={"spec": json.dumps({**spec, "names": names})})


def read_state(idata):
    """``(arrays, spec)`` of the final states stored by :func:`state_dataset`, or ``None`` without them."""
    dataset = _arviz.get_dataset(idata, STATE_GROUP)
    if dataset is None or "spec" not in dataset.attrs:
        return None
    spec = json.loads(dataset.attrs["spec"])
    arrays = [np.asarray(dataset[name].values).astype(np.dtype(dtype), copy=False)
              for name, dtype in zip(spec.pop("names"), spec["dtypes"])]
    return arrays, spec


# -- reading a result back --------------------------------------------------------------------
def group_arrays(idata, group: str) -> dict:
    """``{name: NumPy array}`` of one group of ``idata`` (empty when it has none)."""
    dataset = _arviz.get_dataset(idata, group)
    return {} if dataset is None else {str(k): np.asarray(v.values) for k, v in dataset.data_vars.items()}


def recorded(idata) -> tuple[dict, dict, dict]:
    """``(draws, stats, warmup_stats)`` of a result, as :class:`~reprior.inference.driver.ChainRun` holds them
    (``draws``: the posterior and posterior predictive variables, and ``log_likelihood``)."""
    draws = {**group_arrays(idata, "posterior"), **group_arrays(idata, "posterior_predictive")}
    loglik = group_arrays(idata, "log_likelihood")
    if "y" in loglik:
        draws["log_likelihood"] = loglik["y"]
    return draws, group_arrays(idata, "sample_stats"), group_arrays(idata, "warmup_sample_stats")
