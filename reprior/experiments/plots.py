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

import matplotlib.colors
import matplotlib.lines
import matplotlib.ticker
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, FuncFormatter

from reprior._util import checks as _checks
from reprior.evaluation import comparison
from reprior.evaluation import diagnostics as dg
from reprior.inference import health
from reprior._util.files import atomic_write
from reprior.evaluation.comparison import RATIO_METRICS

#: Line style of each parameterisation (others get matplotlib's defaults): its colour where a
#: figure shows one sampler, and always its marker and line style.
STYLES = {
    "standard": dict(color="tab:red", marker="o", linestyle="-"),
    "reprior": dict(color="tab:blue", marker="s", linestyle="--"),
    "reprior-sampled": dict(color="tab:green", marker="^", linestyle=":"),
}
#: Colours of the samplers where a figure shows several (in order of first appearance).
SAMPLER_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                  "tab:gray", "tab:olive", "tab:cyan")
#: Registered kernels whose draws are biased (no Metropolis-Hastings correction): name -> why.
#: Their rows and lines say so; their ESS does not measure distance to the posterior.
BIASED_SAMPLERS = {"mclmc": "unadjusted: biased by its step size"}
#: The legend text of a failed point (its marker is hollow).
FAILED_LABEL = "hollow marker: failed chains"
#: Where :attr:`matplotlib.lines.Line2D.get_gid` marks the hollow markers of failed points.
FAILED_GID = "failed chains"


def sampler_label(name) -> str:
    """A sampler's name as tables and legends show it: biased kernels (:data:`BIASED_SAMPLERS`) say so."""
    name = str(name)
    return f"{name} (unadjusted: biased)" if name in BIASED_SAMPLERS else name


def _sampler_with_options(s: dict) -> str:
    """``nuts (max_tree_depth 5)``: the sampler's label and, where the cell set any, its options."""
    words = comparison.options_words(s.get("sampler_options"))
    return f"{sampler_label(s['sampler'])} ({words})" if words else sampler_label(s["sampler"])


def noise_label(noise_std, dataset=None) -> str:
    """``noise_std 0.1 (standardised y)``: the noise and the units it is in, those of the targets
    as the data set's loader gives them (:mod:`reprior.experiments.data`): standardised for diabetes, and for
    csv and npz unless loaded with ``standardise=False``; one-hot minus 0.1 for digits and
    cifar10; raw for synthetic (Var f about 1)."""
    if noise_std is None:
        return ""
    units = {"diabetes": "standardised y", "csv": "standardised y", "npz": "standardised y",
             "digits": "one-hot y", "cifar10": "one-hot y", "synthetic": "raw y"}.get(dataset, "units of y")
    return f"noise_std {noise_std:g} ({units})" if isinstance(noise_std, (int, float)) else \
        f"noise_std {noise_std} ({units})"


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


_TITLE_KEYS = ("arch", "depth", "activation", "dataset", "n_train", "noise_std", "sampler", "num_chains",
               "num_samples")


def _title(s: dict) -> str:
    """Short label of the settings in ``s`` (any of :data:`reprior.evaluation.comparison.COMPARISON_KEYS`)."""
    parts = [f"{s.get('arch') or '?'} depth {s.get('depth')}" if "arch" in s else None, s.get("activation"),
             s.get("dataset"), f"n={s['n_train']}" if s.get("n_train") is not None else None,
             noise_label(s.get("noise_std"), s.get("dataset")) if s.get("noise_std") is not None else None,
             _sampler_with_options(s) if s.get("sampler") is not None else None,
             f"{s['num_chains']}x{s['num_samples']}" if s.get("num_chains") is not None else None]
    return ", ".join(str(p) for p in parts if p not in (None, ""))


def group_title(key: tuple) -> str:
    """Short label of a comparison group (:data:`reprior.evaluation.comparison.COMPARISON_KEYS` values),
    the noise with its units (:func:`noise_label`) and biased samplers marked (:func:`sampler_label`)."""
    return _title(dict(zip(comparison.COMPARISON_KEYS, key, strict=True)))


def target_title(key: tuple) -> str:
    """Short label of a target (:data:`reprior.evaluation.comparison.TARGET_KEYS` values): what the samplers sampled."""
    return _title(dict(zip(comparison.TARGET_KEYS, key, strict=True)))


def _panels(entries: list[dict]) -> dict[tuple, list[dict]]:
    """Seed-averaged entries by target (:func:`reprior.evaluation.comparison.target_key`): one panel each."""
    out: dict[tuple, list[dict]] = {}
    for entry in entries:
        out.setdefault(comparison.target_key(entry), []).append(entry)
    return out


_CHAIN_KEYS = ("num_chains", "num_warmup", "num_samples")


def _series(entries: list[dict], skip=()) -> dict[tuple, list[dict]]:
    """Entries by series: (comparison group, parameterisation), one line each, in order of appearance."""
    out: dict[tuple, list[dict]] = {}
    for entry in entries:
        if entry["parameterisation"] not in skip:
            out.setdefault((comparison.comparison_key(entry), entry["parameterisation"]), []).append(entry)
    return out


class _Styles:
    """Colour per sampler where a figure shows several (else per parameterisation, :data:`STYLES`);
    marker and line style per parameterisation."""

    def __init__(self, entries: list[dict]):
        self.samplers = list(dict.fromkeys(str(e.get("sampler")) for e in entries))

    def __call__(self, entry: dict) -> dict:
        style = dict(STYLES.get(entry["parameterisation"], {}))
        if len(self.samplers) > 1:
            style["color"] = SAMPLER_COLORS[self.samplers.index(str(entry.get("sampler"))) % len(SAMPLER_COLORS)]
        return style


def _series_label(group: tuple, param: str, varying: set) -> str:
    """``sampler, parameterisation`` (and the chain settings or other group settings that vary
    between the lines of the axes)."""
    s = dict(zip(comparison.COMPARISON_KEYS, group, strict=True))
    parts = [_sampler_with_options(s)] if varying & {"sampler", "sampler_options"} else []
    parts.append(param)
    if varying & set(_CHAIN_KEYS):
        parts.append(f"{s['num_chains']}x{s['num_warmup']}+{s['num_samples']}")
    others = varying - {"sampler", "sampler_options", *_CHAIN_KEYS}
    if others:
        parts.append(_title({k: s[k] for k in comparison.COMPARISON_KEYS if k in others}))
    return ", ".join(str(p) for p in parts if p)


def _varying(series: dict[tuple, list[dict]]) -> set:
    """The comparison settings that differ between the series."""
    groups = {group for group, _ in series}
    return {k for i, k in enumerate(comparison.COMPARISON_KEYS) if len({g[i] for g in groups}) > 1}


def _lines(ax, entries, metric, failed: set[tuple], *, skip=(), styles=None, baseline_failed=False,
           varying=None) -> tuple[list[float], list[str]]:
    """One line per series (:func:`_series`): seed-averaged ``metric`` against width; a point whose
    cells (or, with ``baseline_failed``, whose standard baseline) have failed chains is drawn as a
    hollow marker (white inside, gid :data:`FAILED_GID`), so nothing is drawn over it.

    Returns ``(widths drawn, labels of the series without a finite positive value)``."""
    styles = styles or _Styles(entries)
    series = _series(entries, skip)
    varying = _varying(series) if varying is None else varying
    drawn, missing = [], []
    for (group, param), items in series.items():
        widths = np.array([dg.as_number(e["width"]) for e in items])
        values = np.array([dg.as_number(e.get(metric)) for e in items])
        ok = np.isfinite(widths) & np.isfinite(values) & (values > 0)
        label = _series_label(group, param, varying)
        if not ok.any():
            missing.append(label)
            continue
        order = np.argsort(widths[ok])
        xs, ys = widths[ok][order], values[ok][order]
        bad = np.array([(group, w, param) in failed
                        or (baseline_failed and (group, w, comparison.BASELINE) in failed) for w in xs])
        style = styles(items[0])
        (line,) = ax.plot(xs, ys, label=label, markevery=[i for i in range(len(xs)) if not bad[i]], **style)
        if bad.any():
            ax.plot(xs[bad], ys[bad], linestyle="none", marker=style.get("marker", "o"),
                    markerfacecolor="white", markeredgecolor=line.get_color(), markeredgewidth=1.5,
                    markersize=line.get_markersize() + 1, zorder=line.get_zorder() + 1, gid=FAILED_GID,
                    label="_failed")
        drawn.extend(xs.tolist())
    return drawn, missing


def _width_axis(ax, widths) -> None:
    """A log2 width axis with a tick at each width drawn, labelled plainly; one width gets a range
    of an octave and a half around it rather than matplotlib's default."""
    ax.set_xscale("log", base=2)
    widths = sorted({float(w) for w in widths if np.isfinite(w) and w > 0})
    if not widths:
        return
    ax.set_xticks(widths, [f"{w:g}" for w in widths])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    if len(widths) == 1:
        ax.set_xlim(widths[0] / 2 ** 0.75, widths[0] * 2 ** 0.75)


def _finish(ax, *, xlabel="width", ylabel="", title="", logy=True, widths=()):
    _width_axis(ax, widths)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_wrap(ylabel, 36))
    ax.set_title(_wrap_parts(title, 52), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)


def _figure_legend(fig, axes) -> None:
    """One legend below the panels: every labelled line of ``axes`` once, and the hollow marker's
    meaning where a panel has one (so no legend covers a line)."""
    unique, failed = {}, False
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        unique.update({label: h for label, h in zip(labels, handles) if not label.startswith("_")
                       and label not in unique})
        failed |= any(line.get_gid() == FAILED_GID for line in ax.get_lines())
    if failed:
        unique[FAILED_LABEL] = matplotlib.lines.Line2D([], [], linestyle="none", marker="o", color="0.3",
                                                       markerfacecolor="white")
    if unique:
        ncols = max(1, min(len(unique), len(axes), 3))
        width, height = fig.get_size_inches()
        fig.set_size_inches(width, height + 0.17 * math.ceil(len(unique) / ncols))  # room for the legend
        fig.legend(list(unique.values()), list(unique), loc="outside lower center", fontsize=8, ncols=ncols,
                   frameon=False)


def _empty(ax, message="no finite values"):
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)


MISSING_GID = "no finite value"


def _note_missing(ax, missing: list[str]) -> None:
    """Name the lines left out of ``ax`` for want of a finite positive value: an empty line (gid
    :data:`MISSING_GID`) whose legend entry says so."""
    for label in missing:
        ax.plot([], [], linestyle="none", label=f"{label}: no finite value", gid=MISSING_GID)


def metric_figure(rows: list[dict], *, metric: str = "ess_per_grad_pred", ylabel: str | None = None,
                  logy: bool = True, reference: tuple[str, float] | None = None, sharey: bool = False) -> Figure:
    """The figure of :func:`plot_metric_vs_width`, not saved."""
    entries = comparison.average_over_seeds(rows, [metric])
    panels = _panels(entries)
    failed = _failed_cells(rows)
    fig, axes = _new_figure(max(len(panels), 1), width=4.8, height=3.6, sharey=sharey)
    styles = _Styles(entries)
    for ax, (key, members) in zip(axes, panels.items()):
        widths, missing = _lines(ax, members, metric, failed, styles=styles,
                                 varying=_varying(_series(members)) | {"sampler"})
        if not widths:
            _empty(ax)
        else:
            _note_missing(ax, missing)
        if reference is not None:
            ax.axhline(reference[1], color="grey", linestyle="--", linewidth=1, label=reference[0])
        _finish(ax, ylabel=ylabel or metric, title=target_title(key), logy=logy,
                widths=[dg.as_number(e["width"]) for e in members])
    if not panels:
        _empty(axes[0], "no cells")
    _figure_legend(fig, axes)
    return fig


def plot_metric_vs_width(rows: list[dict], path, *, metric: str = "ess_per_grad_pred", ylabel: str | None = None,
                         logy: bool = True, reference: tuple[str, float] | None = None,
                         sharey: bool = False) -> Path:
    """``metric`` (averaged over seeds) against width: one panel per target (network and data,
    :func:`reprior.evaluation.comparison.target_key`) and on it one line per sampler and parameterisation,
    so samplers share an axis; log-log by default.  A point whose chains failed
    (:func:`reprior.inference.health.chain_failure`) is a hollow marker.  ``reference``: ``(label, value)``
    drawn as a dashed horizontal line.  ``sharey``: one y axis for every panel."""
    return _save(metric_figure(rows, metric=metric, ylabel=ylabel, logy=logy, reference=reference,
                               sharey=sharey), path)


def plot_ess_per_grad(rows: list[dict], path, *, group: str = "pred") -> Path:
    """Median bulk ESS per gradient evaluation against width (log-log)."""
    return plot_metric_vs_width(rows, path, metric=f"ess_per_grad_{group}",
                                ylabel=f"bulk ESS / gradient evaluation ({group})")


def rhat_figure(rows: list[dict]) -> Figure:
    """The figure of :func:`plot_rhat`, not saved."""
    return metric_figure(rows, metric="rhat_max", ylabel="max R-hat", logy=False, sharey=True,
                         reference=(f"R-hat {health.MAX_RHAT:g}: the failure rule", health.MAX_RHAT))


def plot_rhat(rows: list[dict], path) -> Path:
    """Maximum R-hat over all groups against width, one y axis for all panels, with the threshold
    of the failure rule (:data:`reprior.inference.health.MAX_RHAT`) dashed."""
    return _save(rhat_figure(rows), path)


def ratio_figure(rows: list[dict], *, metrics=RATIO_METRICS) -> Figure:
    """The figure of :func:`plot_ratio`, not saved."""
    averaged = comparison.ratio_to_baseline(comparison.average_over_seeds(rows, metrics), metrics)
    failed = _failed_cells(rows)
    fig, axes = _new_figure(len(metrics), width=4.8, height=3.6)
    styles = _Styles(averaged)
    series = _series(averaged, skip=(comparison.BASELINE,))
    varying = _varying(series)
    if len(styles.samplers) > 1:
        varying |= {"sampler"}
    for ax, metric, title in zip(axes, metrics, _RATIO_TITLES + tuple(metrics[3:]), strict=False):
        widths, missing = _lines(ax, averaged, f"ratio_{metric}", failed, skip=(comparison.BASELINE,),
                                 styles=styles, baseline_failed=True, varying=varying)
        if not widths:
            _empty(ax)
        else:
            _note_missing(ax, missing)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        _finish(ax, ylabel="repriorised / standard", title=f"ESS ratio {title}",
                widths=[dg.as_number(e["width"]) for e in averaged])
        ax.yaxis.set_major_formatter(_plain_labels())
        ax.yaxis.set_minor_formatter(_MinorLogLabels())
    _figure_legend(fig, axes)
    return fig


def plot_ratio(rows: list[dict], path, *, metrics=RATIO_METRICS) -> Path:
    """Ratio repriorised / standard of ``metrics`` (per draw, per gradient, per second)
    against width: one panel per metric, one line per (comparison group, repriorised
    parameterisation), coloured by sampler where there are several; dashed line at 1.  A hollow
    marker is a ratio whose cell or whose standard baseline has failed chains
    (:func:`reprior.inference.health.chain_failure`)."""
    return _save(ratio_figure(rows, metrics=metrics), path)


# -- per-cell trace and rank plots -------------------------------------------------------
@contextlib.contextmanager
def _quiet_arviz():
    """ArviZ 0.23's matplotlib backend calls a helper deprecated in matplotlib 3.11 (a warning
    about ArviZ, not reprior), and its density of a chain that never moved warns that the data
    have a single value (the report marks such a chain as failed): both are ignored here and
    nowhere else, so they do not interleave with the sweep's console."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping",
                                category=DeprecationWarning)
        # a chain that never moved has no density to draw; the report marks it as failed already
        warnings.filterwarnings("ignore", message="Your data appears to have a single value", category=UserWarning)
        yield


def _load(idata):
    from reprior.inference import arviz_compat as _arviz

    if isinstance(idata, (str, Path)):
        return _arviz.from_netcdf(idata)
    return idata


def _projection_dataset(idata, num: int, projection_seed: int):
    """A posterior Dataset of the first ``num`` series of the theta, phi and pred groups."""
    from reprior.inference import arviz_compat as _arviz

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
    from reprior.inference import arviz_compat as _arviz

    return _save(trace_figure(idata, num=num, projection_seed=projection_seed, title=title), path)


def trace_figure(idata, *, num: int = 3, projection_seed: int = 0, title: str = "") -> Figure:
    """The figure of :func:`plot_trace`, not saved: per group a density panel (x: the projection's
    value) and a trace panel (x: the draw after warm-up), and one legend naming the colours
    (projections) and line styles (chains)."""
    from reprior.inference import arviz_compat as _arviz

    dataset = _projection_dataset(idata, num, projection_seed)
    names = list(dataset.data_vars)
    fig = Figure(figsize=(11, 2.4 * len(names) + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), 2, squeeze=False)
    with _quiet_arviz():
        _arviz.plot_trace(dataset, axes)
    for row, name in zip(axes, names, strict=True):
        row[0].set_xlabel(f"{name} (value)", fontsize=9)
        row[0].set_ylabel("density", fontsize=9)
        row[1].set_xlabel("draw (after warm-up)", fontsize=9)
        row[1].set_ylabel("value", fontsize=9)
    handles = _trace_legend(axes[0][1])
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _trace_legend(ax) -> list:
    """Proxy handles for the trace panel's lines: one per colour (projection), one per line style (chain)."""
    colors, styles = {}, {}
    for line in ax.get_lines():
        colors.setdefault(matplotlib.colors.to_hex(line.get_color()), None)
        styles.setdefault(line.get_linestyle(), None)
    if not colors:
        return []
    handles = [matplotlib.lines.Line2D([], [], color=c, label=f"projection {i}") for i, c in enumerate(colors)]
    if len(styles) > 1 or colors:
        handles += [matplotlib.lines.Line2D([], [], color="0.2", linestyle=ls, label=f"chain {i}")
                    for i, ls in enumerate(styles)]
    return handles


def plot_rank(idata, path, *, num: int = 2, projection_seed: int = 0, title: str = "") -> Path:
    """ArviZ rank plots (per-chain rank histograms) of ``num`` projections of each group."""
    from reprior.inference import arviz_compat as _arviz

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


def _common_label(labels: list[str]) -> str:
    """The comma-separated parts that ``labels`` share, in order (``"all cells"`` if none): the
    label of lines that coincide."""
    if len(set(labels)) == 1:
        return labels[0]
    split = [[p.strip() for p in label.split(",")] for label in labels]
    common = [p for p in split[0] if all(p in other for other in split[1:])]
    return ", ".join(common) if common else "all cells"


def merge_identical_lines(lines: list[dict]) -> list[dict]:
    """``lines`` (as :func:`plot_width_lines` takes them) with coinciding ones drawn once: lines
    with the same widths, mean, low and high (an estimate that does not depend on the
    parameterisation or the sampler, such as the SMC KL) merge into the first, labelled with
    what their labels share (:func:`_common_label`), with ``merged`` the number merged."""
    out, members = [], []
    for line in lines:
        arrays = [np.asarray(line[k], float) for k in ("widths", "mean", "low", "high")]
        for i, kept in enumerate(out):
            other = [np.asarray(kept[k], float) for k in ("widths", "mean", "low", "high")]
            if all(a.shape == b.shape and np.array_equal(a, b, equal_nan=True) for a, b in zip(arrays, other)):
                members[i].append(line)
                break
        else:
            out.append(dict(line))
            members.append([line])
    for line, group in zip(out, members, strict=True):
        if len(group) > 1:
            line["label"] = _common_label([str(m["label"]) for m in group])
            params = {m.get("parameterisation") for m in group}
            if len(params) > 1:
                line["parameterisation"] = None
        line["merged"] = len(group)
    return out


def _wrap(text: str, width: int = 42) -> str:
    """``text`` on lines of at most ``width`` characters (an axis label that fits its axis)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _split_common(labels: list[str]) -> tuple[str, list[str]]:
    """``(what every label says, what each says besides)``: the shared comma-separated parts
    become a title, so that legend entries stay short."""
    if len(labels) < 2:
        return "", labels
    common = _common_label(labels)
    if common == "all cells":
        return "", labels
    shared = set(common.split(", "))
    rest = [", ".join(p for p in (q.strip() for q in label.split(",")) if p not in shared) or label
            for label in labels]
    return common, rest


def _wrap_parts(text: str, width: int) -> str:
    """``text``'s comma-separated parts on lines of at most ``width`` characters (a part is never split)."""
    lines: list[str] = []
    for part in str(text).split(", "):
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            lines.append(part)
    return ",\n".join(lines)


def width_lines_figure(lines: list[dict], *, ylabel: str, logy: bool = True,
                       references: list[tuple[str, float]] = ()) -> Figure:
    """The figure of :func:`plot_width_lines`, not saved."""
    lines = merge_identical_lines(lines)
    title, labels = _split_common([str(line["label"]) for line in lines])
    lines = [dict(line, label=label) for line, label in zip(lines, labels, strict=True)]
    by_value: dict[float, list[str]] = {}
    for label, value in references:  # one NNGP line per value, however many groups share it
        by_value.setdefault(float(value), []).append(str(label))
    references = [(_common_label(labels), value) for value, labels in by_value.items()]
    fig, axes = _new_figure(1, width=6.0, height=4.2)
    ax = axes[0]
    drawn, widths_drawn = False, []
    for i, line in enumerate(lines):
        widths, mean = np.asarray(line["widths"], float), np.asarray(line["mean"], float)
        low, high = np.asarray(line["low"], float), np.asarray(line["high"], float)
        ok = np.isfinite(widths) & np.isfinite(mean) & ((mean > 0) if logy else True)
        if not ok.any():
            continue
        style = dict(STYLES.get(line.get("parameterisation"), dict(marker="D", linestyle="-")))
        style["color"] = SAMPLER_COLORS[i % len(SAMPLER_COLORS)] if len(lines) > 1 else style.get("color", "k")
        ax.plot(widths[ok], mean[ok], label=line["label"], **style)
        band = ok & np.isfinite(low) & np.isfinite(high) & ((low > 0) if logy else True)
        if band.sum() > 1:
            ax.fill_between(widths[band], low[band], high[band], alpha=0.15, color=style.get("color"))
        drawn = True
        widths_drawn.extend(widths[ok].tolist())
    for label, value in references:
        if np.isfinite(value) and (value > 0 or not logy):
            parts = [p.strip() for p in label.split(",")]
            if title and parts[0] == "NNGP" and set(parts[1:]) <= set(title.split(", ")):
                label = "NNGP"  # its group is the title's
            ax.axhline(value, color="black", linestyle="--", linewidth=1, label=label)
    if not drawn:
        _empty(ax)
    _finish(ax, ylabel=ylabel, title=title, logy=logy, widths=widths_drawn)
    _figure_legend(fig, [ax])  # below the axes: long labels never cover the lines
    return fig


def plot_width_lines(lines: list[dict], path, *, ylabel: str, logy: bool = True,
                     references: list[tuple[str, float]] = ()) -> Path:
    """Prepared lines against width (log2 x axis): each ``line`` has ``label``, ``parameterisation``
    (for the marker and line style), ``widths``, ``mean``, ``low`` and ``high`` (arrays; a band is
    drawn between ``low`` and ``high``); ``references`` are ``(label, value)`` dashed horizontal
    lines.  Coinciding lines (and references of one value) are drawn once
    (:func:`merge_identical_lines`); the legend goes below the axes and a long ``ylabel`` is
    wrapped, so nothing is cut off.  On a log y axis non-positive values are left out.  Used by
    :mod:`reprior.experiments.report_limits`."""
    return _save(width_lines_figure(lines, ylabel=ylabel, logy=logy, references=references), path)


# -- cost to accuracy ----------------------------------------------------------------------
#: Axis label of each cost column of an error curve (:data:`reprior.evaluation.accuracy.CURVE_COLUMNS`).
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
    cumulative cost, log-log, with the threshold dashed (see :mod:`reprior.evaluation.accuracy`).

    Args:
        curves: one dict per line, ``{"label": str, "curve": {column: (S,) array}}``, the curve
            holding the columns of :data:`reprior.evaluation.accuracy.CURVE_COLUMNS` (at least ``cost``,
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


def plot_ranks(result, path, *, title: str | None = None) -> None:
    """Write the rank histograms of ``result`` (an :class:`~reprior.evaluation.sbc.SBCResult`) to ``path`` (matplotlib, Agg canvas).

    One panel per summary, with the expected count and the band that holds
    99% of bins under uniformity (Binomial(N, 1/B) quantiles, as in Talts et al.).
    """
    s = result.settings
    total = int(result.counts[0].sum())
    title = title or (f"SBC ranks: {s['sampler']}, {s['parameterisation']}"
                      f"{' (' + s['readout'] + ' readout)' if s['parameterisation'] == 'reprior' else ''}, "
                      f"N = {total}, L = {s['num_draws']}")
    plot_sbc_ranks(result.summary_names, result.counts, result.rejected, result.p_values, path, title=title)
