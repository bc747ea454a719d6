"""PNG figures of a width sweep; the only module of reprior that imports matplotlib.

Every function takes plain data (a list of summary-row dicts, or an
``InferenceData`` / NetCDF path) and an output ``path``, writes one PNG there
and returns the path.  Figures are built on :class:`matplotlib.figure.Figure`
with an Agg canvas, so nothing touches pyplot's global state or backend and
nothing is shown.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, FuncFormatter

from . import _checks, comparison
from . import diagnostics as dg
from . import health
from ._files import atomic_write
from .comparison import RATIO_METRICS

#: Line style of each parameterisation (others get matplotlib's defaults).
STYLES = {
    "standard": dict(color="tab:red", marker="o"),
    "reprior": dict(color="tab:blue", marker="s"),
    "reprior-sampled": dict(color="tab:green", marker="^"),
}


def _plain_labels() -> FuncFormatter:
    return FuncFormatter(lambda value, _: f"{value:g}")


class _MinorLogLabels(Formatter):
    """Plain labels of minor log ticks: all within a decade, 2 and 5 within two, none beyond."""

    def __call__(self, value, pos=None):
        low, high = sorted(self.axis.get_view_interval())
        if value <= 0 or low <= 0:
            return ""
        decades = math.log10(high / low)
        lead = round(value / 10 ** math.floor(math.log10(value) + 1e-9))
        return f"{value:.3g}" if decades < 1 or (decades < 2 and lead in (2, 5)) else ""


_RATIO_TITLES = ("per draw", "per gradient evaluation", "per second")


def _new_figure(num_axes: int, *, width: float = 4.2, height: float = 3.3, sharey: bool = False):
    fig = Figure(figsize=(width * num_axes, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, num_axes, squeeze=False, sharey=sharey)[0])
    return fig, axes


def _save(fig: Figure, path) -> Path:
    """Write the figure atomically, in the format of the path's extension (PNG without one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix[1:].lower() or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=fmt))


def _failed_cells(rows: list[dict]) -> set[tuple]:
    """(comparison group, width, parameterisation) of the rows whose chains failed."""
    return {(comparison.comparison_key(r), dg.as_number(r.get("width")), r.get("parameterisation"))
            for r in rows if health.chain_failure(r)}


def _mark_failed(ax, entries, metric, failed: set[tuple], *, skip=(), baseline_failed=False) -> bool:
    """Red crosses over the points of ``entries`` whose cells (or, with ``baseline_failed``,
    whose standard baseline) have failed chains; True if any was drawn."""
    xs, ys = [], []
    for e in entries:
        if e["parameterisation"] in skip:
            continue
        width = dg.as_number(e["width"])
        own = (comparison.comparison_key(e), width, e["parameterisation"]) in failed
        base = baseline_failed and (comparison.comparison_key(e), width, comparison.BASELINE) in failed
        value = dg.as_number(e.get(metric))
        if (own or base) and np.isfinite(width) and np.isfinite(value) and value > 0:
            xs.append(width)
            ys.append(value)
    if xs:
        ax.plot(xs, ys, linestyle="none", marker="x", markersize=11, markeredgewidth=2, color="red",
                label="failed chains", zorder=5)
    return bool(xs)


def group_title(key: tuple) -> str:
    """Short label of a comparison group (:data:`reprior.comparison.COMPARISON_KEYS` values)."""
    s = dict(zip(comparison.COMPARISON_KEYS, key, strict=True))
    parts = [f"{s['arch'] or '?'} depth {s['depth']}", s["activation"], s["dataset"],
             f"n={s['n_train']}" if s["n_train"] is not None else None, s["sampler"],
             f"{s['num_chains']}x{s['num_samples']}" if s["num_chains"] is not None else None]
    return ", ".join(str(p) for p in parts if p not in (None, ""))


def _groups(entries: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for entry in entries:
        out.setdefault(comparison.comparison_key(entry), []).append(entry)
    return out


def _lines(ax, entries, metric, *, label_suffix="", skip=()):
    """One line per parameterisation: seed-averaged ``metric`` against width."""
    by_param: dict[str, list[dict]] = {}
    for entry in entries:
        by_param.setdefault(entry["parameterisation"], []).append(entry)
    drawn = False
    for param, items in by_param.items():
        if param in skip:
            continue
        widths = np.array([dg.as_number(e["width"]) for e in items])
        values = np.array([dg.as_number(e[metric]) for e in items])
        ok = np.isfinite(widths) & np.isfinite(values) & (values > 0)
        if ok.any():
            ax.plot(widths[ok], values[ok], label=f"{param}{label_suffix}", **STYLES.get(param, {}))
            drawn = True
    return drawn


def _finish(ax, *, xlabel="width", ylabel="", title="", logy=True):
    ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        unique = dict(zip(labels, handles))  # "failed chains" once, however many groups have some
        ax.legend(list(unique.values()), list(unique), fontsize=8)


def _empty(ax, message="no finite values"):
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)


def plot_metric_vs_width(rows: list[dict], path, *, metric: str = "ess_per_grad_pred", ylabel: str | None = None,
                         logy: bool = True, reference: float | None = None) -> Path:
    """``metric`` (averaged over seeds) against width, one panel per comparison group and
    one line per parameterisation; log-log by default.  ``reference`` draws a dashed
    horizontal line (e.g. 1.01 for R-hat)."""
    groups = _groups(comparison.average_over_seeds(rows, [metric]))
    failed = _failed_cells(rows)
    fig, axes = _new_figure(max(len(groups), 1))
    for ax, (key, entries) in zip(axes, groups.items()):
        if not _lines(ax, entries, metric):
            _empty(ax)
        _mark_failed(ax, entries, metric, failed)
        if reference is not None:
            ax.axhline(reference, color="grey", linestyle="--", linewidth=1)
        _finish(ax, ylabel=ylabel or metric, title=group_title(key), logy=logy)
    if not groups:
        _empty(axes[0], "no cells")
    return _save(fig, path)


def plot_ess_per_grad(rows: list[dict], path, *, group: str = "pred") -> Path:
    """Median bulk ESS per gradient evaluation against width (log-log)."""
    return plot_metric_vs_width(rows, path, metric=f"ess_per_grad_{group}",
                                ylabel=f"bulk ESS / gradient evaluation ({group})")


def plot_rhat(rows: list[dict], path) -> Path:
    """Maximum R-hat over all groups against width, with the 1.01 threshold dashed."""
    return plot_metric_vs_width(rows, path, metric="rhat_max", ylabel="max R-hat", logy=False, reference=1.01)


def plot_ratio(rows: list[dict], path, *, metrics=RATIO_METRICS) -> Path:
    """Ratio repriorised / standard of ``metrics`` (per draw, per gradient, per second)
    against width: one panel per metric, one line per (comparison group, repriorised
    parameterisation); dashed line at 1.  A red cross marks a ratio whose cell or whose
    standard baseline has failed chains (:func:`reprior.health.chain_failure`)."""
    averaged = comparison.ratio_to_baseline(comparison.average_over_seeds(rows, metrics), metrics)
    groups = _groups(averaged)
    failed = _failed_cells(rows)
    fig, axes = _new_figure(len(metrics))
    for ax, metric, title in zip(axes, metrics, _RATIO_TITLES + tuple(metrics[3:]), strict=False):
        drawn = False
        for key, entries in groups.items():
            suffix = f" ({group_title(key)})" if len(groups) > 1 else ""
            drawn |= _lines(ax, entries, f"ratio_{metric}", label_suffix=suffix, skip=(comparison.BASELINE,))
            _mark_failed(ax, entries, f"ratio_{metric}", failed, skip=(comparison.BASELINE,), baseline_failed=True)
        if not drawn:
            _empty(ax)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        _finish(ax, ylabel="repriorised / standard", title=f"ESS ratio {title}")
        ax.yaxis.set_major_formatter(_plain_labels())
        ax.yaxis.set_minor_formatter(_MinorLogLabels())
    return _save(fig, path)


# -- per-cell trace and rank plots -------------------------------------------------------
@contextlib.contextmanager
def _quiet_arviz():
    """ArviZ 0.23's matplotlib backend calls a helper deprecated in matplotlib 3.11; the
    warning concerns ArviZ, not reprior, so it is ignored here and nowhere else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping",
                                category=DeprecationWarning)
        yield


def _load(idata):
    from . import _arviz

    if isinstance(idata, (str, Path)):
        return _arviz.from_netcdf(idata)
    return idata


def _projection_dataset(idata, num: int, projection_seed: int):
    """A posterior Dataset of the first ``num`` series of the theta, phi and pred groups."""
    from . import _arviz

    series = dg.group_series(_load(idata), num_pred_points=0, num_pred_projections=num,
                             projection_seed=projection_seed)
    data = {f"{g}_proj": series[g][..., :num] for g in ("theta", "phi", "pred") if series[g] is not None}
    if not data:
        raise ValueError("argument `idata`: expected theta_proj, phi_proj or f_test draws, received none")
    return _arviz.convert_to_dataset(data, dims={name: ["projection"] for name in data})


def plot_trace(idata, path, *, num: int = 3, projection_seed: int = 0, title: str = "") -> Path:
    """ArviZ trace plot (density and trace) of ``num`` theta, phi and test-prediction projections.

    ``idata`` is an ``InferenceData`` (a ``DataTree`` on ArviZ 1.x) or a NetCDF path.
    """
    from . import _arviz

    dataset = _projection_dataset(idata, num, projection_seed)
    names = list(dataset.data_vars)
    fig = Figure(figsize=(10, 2.2 * len(names)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), 2, squeeze=False)
    with _quiet_arviz():
        _arviz.plot_trace(dataset, axes)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_rank(idata, path, *, num: int = 2, projection_seed: int = 0, title: str = "") -> Path:
    """ArviZ rank plots (per-chain rank histograms) of ``num`` projections of each group."""
    from . import _arviz

    dataset = _projection_dataset(idata, num, projection_seed)
    names = list(dataset.data_vars)
    count = sum(int(dataset[n].sizes["projection"]) for n in names)
    cols = min(count, 3)
    fig = Figure(figsize=(3.6 * cols, 2.6 * math.ceil(count / cols)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(math.ceil(count / cols), cols, squeeze=False)).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    with _quiet_arviz():
        _arviz.plot_rank(dataset, axes[:count])
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_sbc_ranks(names, counts, rejected, p_values, path, *, title: str = "") -> Path:
    """Rank histograms of simulation-based calibration, one panel per summary.

    The grey band holds 99% of bin counts under uniformity (Binomial(N, 1/B)
    quantiles, Talts et al. 2018); rejected summaries are drawn in red.
    """
    from scipy import stats as sps

    counts = np.asarray(counts)
    num_bins = counts.shape[1]
    total = int(counts[0].sum())
    low, high = sps.binom.ppf([0.005, 0.995], total, 1 / num_bins)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for j, ax in enumerate(axes.flat):
        if j >= len(names):
            ax.set_visible(False)
            continue
        ax.axhspan(low, high, color="0.85", zorder=0)
        ax.axhline(total / num_bins, color="0.4", lw=0.8, zorder=1)
        ax.bar(np.arange(num_bins), counts[j], width=0.9, color="tab:red" if rejected[j] else "tab:blue", zorder=2)
        ax.set_title(f"{names[j]}  (p = {p_values[j]:.2g})", fontsize=9)
        ax.set_xticks([0, num_bins - 1], ["low", "high"])
        ax.tick_params(labelsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_width_lines(lines: list[dict], path, *, ylabel: str, logy: bool = True,
                     references: list[tuple[str, float]] = ()) -> Path:
    """Prepared lines against width (log2 x axis): each ``line`` has ``label``, ``parameterisation``
    (for the style), ``widths``, ``mean``, ``low`` and ``high`` (arrays; a band is drawn
    between ``low`` and ``high``); ``references`` are ``(label, value)`` dashed horizontal lines.
    On a log y axis non-positive values are left out.  Used by :mod:`reprior.report_limits`."""
    fig, axes = _new_figure(1, width=5.2, height=3.6)
    ax = axes[0]
    drawn = False
    for i, line in enumerate(lines):
        widths, mean = np.asarray(line["widths"], float), np.asarray(line["mean"], float)
        low, high = np.asarray(line["low"], float), np.asarray(line["high"], float)
        ok = np.isfinite(widths) & np.isfinite(mean) & ((mean > 0) if logy else True)
        if not ok.any():
            continue
        style = dict(STYLES.get(line.get("parameterisation"), {}))
        if i >= len(STYLES):
            style.pop("color", None)
        ax.plot(widths[ok], mean[ok], label=line["label"], **style)
        band = ok & np.isfinite(low) & np.isfinite(high) & ((low > 0) if logy else True)
        if band.sum() > 1:
            ax.fill_between(widths[band], low[band], high[band], alpha=0.15, color=style.get("color"))
        drawn = True
    for label, value in references:
        if np.isfinite(value) and (value > 0 or not logy):
            ax.axhline(value, color="black", linestyle="--", linewidth=1, label=label)
    if not drawn:
        _empty(ax)
    _finish(ax, ylabel=ylabel, logy=logy)
    return _save(fig, path)


# -- cost to accuracy ----------------------------------------------------------------------
#: Axis label of each cost column of an error curve (:data:`reprior.accuracy.CURVE_COLUMNS`).
COST_LABELS = {"grads": "gradient evaluations (warm-up included)", "seconds": "seconds (warm-up included)",
               "evals": "log-density evaluations"}


def _check_curves(curves, cost: str) -> None:
    """Each curve a dict with a ``label`` and a ``curve`` holding ``cost``, ``b2_mean`` and ``b2_second``."""
    wanted = (cost, "b2_mean", "b2_second")
    if not isinstance(curves, (list, tuple)):
        raise _checks.fail("curves", "a list of {'label', 'curve'} dicts", type(curves).__name__)
    for i, item in enumerate(curves):
        if not isinstance(item, dict) or "label" not in item or not isinstance(item.get("curve"), dict):
            raise _checks.fail(f"curves[{i}]", "a dict with 'label' and 'curve' (a dict of arrays)", item)
        missing = [name for name in wanted if name not in item["curve"]]
        if missing:
            raise _checks.fail(f"curves[{i}]['curve']", f"columns {', '.join(wanted)}", sorted(item["curve"]))


def b2_figure(curves: list[dict], *, cost: str = "grads", threshold: float = 0.01, title: str = "") -> Figure:
    """The figure of :func:`plot_b2_vs_cost`, not saved: one line per curve that has a finite
    positive point, then the dashed threshold line (log-log axes)."""
    _checks.one_of("cost", cost, tuple(COST_LABELS))
    threshold = _checks.probability("threshold", threshold)
    _check_curves(curves, cost)
    fig, axes = _new_figure(1, width=5.6, height=3.8)
    ax = axes[0]
    drawn = False
    for item in curves:
        data = item["curve"]
        x = np.asarray(data[cost], dtype=float)
        y = np.maximum(np.asarray(data["b2_mean"], dtype=float), np.asarray(data["b2_second"], dtype=float))
        ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
        if ok.any():
            (line,) = ax.plot(x[ok], y[ok], label=str(item["label"]), linewidth=1.4)
            drawn = True
            if "b2_rb_mean" in data:  # the hidden weights' error, dotted in the same colour
                rb = np.asarray(data["b2_rb_mean"], dtype=float)
                keep = np.isfinite(x) & np.isfinite(rb) & (x > 0) & (rb > 0)
                ax.plot(x[keep], rb[keep], color=line.get_color(), linestyle=":", linewidth=1.4,
                        label=f"{item['label']}, b\u00b2 rb")
    if not drawn:
        _empty(ax, "no finite error curve")
    ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"b\u00b2 = {threshold:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(COST_LABELS[cost])
    ax.set_ylabel("b\u00b2: max(mean, second) solid, rb dotted")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_b2_vs_cost(curves: list[dict], path, *, cost: str = "grads", threshold: float = 0.01,
                    title: str = "") -> Path:
    """Error against cost: :math:`\\max(b^2_{\\mathrm{mean}}, b^2_{\\mathrm{second}})` of each run
    (solid) and, where the curve has it, :math:`b^2_{\\mathrm{rb}}` (dotted, same colour) against its
    cumulative cost, log-log, with the threshold dashed (see :mod:`reprior.accuracy`).

    Args:
        curves: one dict per line, ``{"label": str, "curve": {column: (S,) array}}``, the curve
            holding the columns of :data:`reprior.accuracy.CURVE_COLUMNS` (at least ``cost``,
            ``b2_mean`` and ``b2_second``); non-finite and non-positive points are left out.
        path: the PNG to write.
        cost: the x axis: ``"grads"`` (gradient evaluations), ``"evals"`` (log-density
            evaluations) or ``"seconds"``, each warm-up included.
        threshold: the ``b^2`` threshold in (0, 1), drawn dashed.
        title: the axes' title.

    Returns:
        ``path``.
    """
    return _save(b2_figure(curves, cost=cost, threshold=threshold, title=title), path)
