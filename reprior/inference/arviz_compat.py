"""ArviZ 0.20-0.23 (``InferenceData``) and ArviZ 1.x (xarray ``DataTree``) behind one interface.

``reprior`` builds, reads and writes its results and computes ESS, R-hat and
MCSE only through this module, which picks the calls of the ArviZ that is
installed:

==========================  ==================================  =====================================
task                        ArviZ 0.20-0.23                     ArviZ 1.x
==========================  ==================================  =====================================
build a result              ``az.from_dict(posterior=..., ...)``  ``az.from_dict({"posterior": ...})``
its attrs                   ``InferenceData.attrs``             the root node's ``DataTree.attrs``
group names                 ``idata.groups()``                  ``DataTree.children``
read NetCDF                 ``az.from_netcdf``                  ``xarray.open_datatree``
ESS, R-hat, MCSE            ``arviz.stats``                     ``arviz_stats`` (same estimators)
trace and rank plots        ``az.plot_trace``/``az.plot_rank``  drawn here with matplotlib
a group of reprior's own    ``InferenceData.add_groups``        a child ``DataTree`` node
PSIS-LOO, model comparison  ``az.loo``, ``az.compare``          ``az.loo``, ``az.compare`` (arviz_stats)
posterior predictive check  ``az.plot_ppc``                     ``az.plot_ppc_dist`` (arviz_plots)
==========================  ==================================  =====================================

Tail ESS asks for the 5% and 95% quantiles explicitly (Vehtari et al. 2021):
ArviZ 1.x's default tail follows its credible-interval setting instead, so the
same draws would otherwise give different figures on the two versions.

Importing this module checks the installed versions first
(:func:`reprior._util.arviz_version.check_version`, which ``import reprior`` also
runs), then imports ArviZ with its once-a-day refactor notice (a ``FutureWarning`` of ArviZ 0.23) silenced, so that
notice never lands in the middle of the command line's output.
"""

from __future__ import annotations

import contextlib
import warnings

from reprior._util.arviz_version import check_version

#: Tail ESS quantiles (Vehtari et al. 2021, ArviZ 0.x's default).
TAIL_PROB = (0.05, 0.95)

check_version()
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
    import arviz as az  # noqa: E402

#: True on ArviZ 1.x (results are ``xarray.DataTree``), False on 0.2x (``arviz.InferenceData``).
ARVIZ_1 = int(az.__version__.split(".")[0]) >= 1


# -- building, reading and walking a result ----------------------------------------------
def from_dict(groups: dict[str, dict], *, dims: dict | None = None, coords: dict | None = None,
              attrs: dict | None = None):
    """A result from ``{group: {name: array}}``; ``attrs`` go on the result itself (root).

    Arrays of the sample groups are ``(chain, draw, ...)``; ``dims`` names the other
    axes of a variable, ``coords`` gives a dimension's labels.  Groups named
    ``warmup_*`` are kept.  Returns ``arviz.InferenceData`` on 0.2x and
    ``xarray.DataTree`` on 1.x.
    """
    save_warmup = any(group.startswith("warmup_") for group in groups)
    if ARVIZ_1:
        return az.from_dict(groups, dims=dims, coords=coords, attrs={"/": dict(attrs or {})},
                            save_warmup=save_warmup)
    idata = az.from_dict(**groups, dims=dims, coords=coords, save_warmup=save_warmup)
    idata.attrs.update(attrs or {})
    return idata


def from_netcdf(path):
    """Read a result written by ``idata.to_netcdf`` (either version's file reads on both)."""
    return az.from_netcdf(str(path))


def group_names(idata) -> list[str]:
    """The names of the groups of a result (``posterior``, ``sample_stats``, ...), root excluded."""
    groups = idata.groups
    return list(groups()) if callable(groups) else [str(name) for name in idata.children]


def library_version(idata) -> str:
    """The ArviZ version that built ``idata`` (from its posterior's attrs; ``""`` if unrecorded)."""
    posterior = getattr(idata, "posterior", None)
    if posterior is None:
        return ""
    attrs = posterior.attrs
    return str(attrs.get("arviz_version", attrs.get("creation_library_version", "")))


def add_group(idata, name: str, dataset) -> None:
    """Add the ``xarray.Dataset`` ``dataset`` to ``idata`` as its group ``name`` (any dims), in place."""
    if ARVIZ_1:
        import xarray as xr

        idata[name] = xr.DataTree(dataset)
    else:
        idata.add_groups({name: dataset})


def remove_group(idata, name: str) -> None:
    """Drop the group ``name`` from ``idata`` in place (nothing when it has none)."""
    if name not in group_names(idata):
        return
    if ARVIZ_1:
        del idata[name]
    else:
        delattr(idata, name)  # InferenceData.__delattr__ also forgets the group's name


def get_dataset(idata, name: str):
    """The group ``name`` of ``idata`` as an ``xarray.Dataset``, or ``None`` when it has none."""
    if name not in group_names(idata):
        return None
    group = idata[name]
    return group.to_dataset() if hasattr(group, "to_dataset") else group


def convert_to_dataset(data: dict, *, dims: dict | None = None):
    """``{name: (chain, draw, ...) array}`` as an ``xarray.Dataset`` (ArviZ's conventions)."""
    return az.convert_to_dataset(data, dims=dims)


# -- ESS, R-hat, MCSE --------------------------------------------------------------------
def _stat(fn, values, **kwargs):
    dataset = az.convert_to_dataset({"x": values})
    with warnings.catch_warnings():  # short or constant series: ArviZ warns and returns NaN
        warnings.simplefilter("ignore")
        result = fn(dataset, **kwargs)
    import numpy as np

    return np.asarray(result["x"].values, dtype=float)


def ess(values, *, method: str = "bulk"):
    """ESS of each scalar of a ``(chain, draw, ...)`` array; shape ``values.shape[2:]``.

    ``method`` is ArviZ's (``bulk``, ``tail``, ``mean``, ...); ``tail`` uses :data:`TAIL_PROB`.
    """
    kwargs = {"prob": TAIL_PROB} if method == "tail" else {}
    return _stat(az.ess, values, method=method, **kwargs)


def rhat(values):
    """Rank-normalised split R-hat of each scalar of a ``(chain, draw, ...)`` array."""
    return _stat(az.rhat, values)


def mcse(values, *, method: str = "mean"):
    """Monte Carlo standard error of each scalar of a ``(chain, draw, ...)`` array."""
    return _stat(az.mcse, values, method=method)


# -- the ArviZ workflow: PSIS-LOO, comparison, predictive checks -----------------------------
@contextlib.contextmanager
def _quiet():
    """Warnings off for one ArviZ call: its Pareto-k notices (the result says so too) and the
    deprecation notices that ArviZ 0.23's use of pandas and matplotlib raises."""
    with warnings.catch_warnings():
        for category in (UserWarning, DeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
        yield


def loo(idata, **kwargs):
    """``az.loo`` of the pointwise log likelihood ``log_likelihood["y"]`` (one term per training target)."""
    with _quiet():
        return az.loo(idata, var_name="y", **kwargs)


def elpd(result) -> float:
    """The expected log pointwise predictive density of a :func:`loo` result (``elpd_loo`` on 0.2x)."""
    return float(result["elpd"] if ARVIZ_1 else result["elpd_loo"])


def compare(results: dict, **kwargs):
    """``az.compare`` of ``{name: result}`` by PSIS-LOO on ``log_likelihood["y"]``: a ``pandas.DataFrame``."""
    with _quiet():
        return az.compare(results, var_name="y", **kwargs)


def plot_ppc(idata, **kwargs):
    """Posterior predictive check of ``y``: ``az.plot_ppc`` (0.2x) or ``az.plot_ppc_dist`` (1.x, matplotlib).

    Draws the observed training targets ``observed_data["y"]`` against the predictive
    draws ``posterior_predictive["y"]``; returns what the ArviZ function returns.
    """
    with _quiet():
        if ARVIZ_1:
            kwargs.setdefault("backend", "matplotlib")
            return az.plot_ppc_dist(idata, var_names=["y"], **kwargs)
        kwargs.setdefault("show", False)
        return az.plot_ppc(idata, var_names=["y"], **kwargs)


# -- plots -----------------------------------------------------------------------------
#: Line styles of the chains in the trace plots drawn here (ArviZ 1.x), in the order ArviZ 0.2x uses.
_CHAIN_STYLES = ("-", "--", ":", "-.")

def plot_trace(dataset, axes) -> None:
    """Per variable and projection: density per chain (left) and trace per chain (right).

    ``axes``: ``(num_variables, 2)`` matplotlib axes.  On 0.2x this is ``az.plot_trace``.
    """
    names = list(dataset.data_vars)
    if not ARVIZ_1:
        az.plot_trace(dataset, var_names=names, axes=axes, show=False)
        return
    import numpy as np

    for row, name in enumerate(names):
        values = np.asarray(dataset[name].values)  # (chain, draw, projection)
        left, right = axes[row]
        for k in range(values.shape[2]):
            for c in range(values.shape[0]):  # a colour per projection, a line style per chain (as on 0.2x)
                color, style = f"C{k % 10}", _CHAIN_STYLES[c % len(_CHAIN_STYLES)]
                left.hist(values[c, :, k], bins=20, density=True, histtype="step", color=color, alpha=0.8,
                          linestyle=style)
                right.plot(values[c, :, k], color=color, linewidth=0.6, alpha=0.8, linestyle=style)
        left.set_title(name)
        right.set_title(name)
        right.set_xlabel("draw")


def plot_rank(dataset, axes) -> None:
    """Rank plots: for each projection, a histogram of the pooled ranks per chain, stacked.

    ``axes``: one axis per projection of every variable, in order.  On 0.2x this is ``az.plot_rank``.
    """
    names = list(dataset.data_vars)
    if not ARVIZ_1:
        az.plot_rank(dataset, var_names=names, ax=axes, show=False)
        return
    import numpy as np
    from scipy.stats import rankdata

    panels = [(name, k) for name in names for k in range(int(dataset[name].sizes["projection"]))]
    for ax, (name, k) in zip(axes, panels, strict=False):
        values = np.asarray(dataset[name].values)[..., k]  # (chain, draw)
        ranks = rankdata(values, axis=None).reshape(values.shape)
        bins = np.linspace(0, values.size, min(20, values.shape[1]) + 1)
        height = values.shape[1] / (len(bins) - 1)
        for c in range(values.shape[0]):
            counts, _ = np.histogram(ranks[c], bins=bins)
            ax.bar(bins[:-1], counts / height * 0.9, width=np.diff(bins), bottom=c, align="edge",
                   color=f"C{c % 10}", edgecolor="white", linewidth=0.5)
            ax.axhline(c + 0.9, color="grey", linestyle="--", linewidth=0.6)
        ax.set_yticks(np.arange(values.shape[0]) + 0.45, [str(c) for c in range(values.shape[0])])
        ax.set_ylabel("chain")
        ax.set_xlabel("rank (all chains)")
        ax.set_title(f"{name}\nprojection = {k}")
