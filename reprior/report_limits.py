"""The report's "Distance to the infinite-width limit" section (issue 11).

For each metric of :data:`reprior.limits.LIMIT_METRICS` worth plotting, one figure
of the metric against width (log-log where the metric is positive), one line per
comparison group (architecture, depth, data, sampler, chain lengths; see
:func:`reprior.comparison.comparison_key`) and parameterisation, the seed mean with
its min-max band, and the NNGP value as a dashed line where there is one.

Slopes: per seed, the least-squares slope :math:`b` of
:math:`\\log m = a + b \\log d` over the widths ``d`` with a finite positive value;
the table gives the mean over seeds and its standard error
:math:`\\mathrm{sd}/\\sqrt{\\#\\mathrm{seeds}}` (with one seed, the ordinary least-squares
standard error of that seed's slope).  Theory: the kernel fluctuates as
:math:`d^{-1/2}`, so ``nngp_kernel_dist`` should have slope -1/2; the KL to the prior
and the predictive distances are expected to fall at least as fast.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import comparison
from . import diagnostics as dg

#: (metric, axis label, log y axis, NNGP reference column or None), in report order.
LIMIT_PLOTS = (
    ("nngp_pred_dist", "rel. L2 distance of the predictive mean to the NNGP", True, None),
    ("nngp_pred_w2", "W2 to the NNGP predictive / NNGP sd", True, None),
    ("nngp_kernel_dist", "rel. Frobenius distance of the kernel to the NNGP", True, None),
    ("kl_to_prior", "KL(posterior of phi || N(0, I)) [nats]", True, None),
    ("kl_to_prior_smc", "KL to the prior from the SMC particles [nats]", True, None),
    ("log_evidence", "log evidence", False, "nngp_log_evidence"),
    ("test_nll", "test NLL (Gaussian, noise included)", False, None),
    ("test_rmse", "test RMSE", False, None),
)
#: Metrics whose slope against width the section tabulates.
SLOPE_METRICS = ("nngp_pred_dist", "nngp_pred_w2", "nngp_kernel_dist", "kl_to_prior", "kl_to_prior_smc")


def _line_key(row: dict) -> tuple:
    return comparison.comparison_key(row), str(row.get("parameterisation"))


def _series(rows: list[dict], metric: str) -> dict[tuple, dict[int, dict[float, float]]]:
    """``{(group, parameterisation): {seed: {width: value}}}`` of the finite values of ``metric``."""
    out: dict[tuple, dict] = {}
    for row in rows:
        value, width = dg.as_number(row.get(metric)), dg.as_number(row.get("width"))
        if np.isfinite(value) and np.isfinite(width):
            out.setdefault(_line_key(row), {}).setdefault(row.get("seed"), {})[width] = value
    return out


def fit_slope(widths, values) -> tuple[float, float]:
    """Least-squares slope of ``log values`` on ``log widths`` and its OLS standard error
    (NaN with fewer than 2 positive points; the error NaN with fewer than 3)."""
    w, v = np.asarray(widths, float), np.asarray(values, float)
    ok = np.isfinite(w) & np.isfinite(v) & (w > 0) & (v > 0)
    if np.unique(w[ok]).size < 2:
        return math.nan, math.nan
    x, y = np.log(w[ok]), np.log(v[ok])
    x_c = x - x.mean()
    slope = float(np.sum(x_c * (y - y.mean())) / np.sum(x_c**2))
    if ok.sum() < 3:
        return slope, math.nan
    resid = y - y.mean() - slope * x_c
    return slope, float(np.sqrt(np.sum(resid**2) / (ok.sum() - 2) / np.sum(x_c**2)))


def slope_table(rows: list[dict], metrics=SLOPE_METRICS) -> list[dict]:
    """One dict per (metric, comparison group, parameterisation): ``slope``, ``slope_se``,
    ``num_seeds``, ``widths`` (min-max), as described in the module docstring."""
    table = []
    for metric in metrics:
        for (group, param), seeds in _series(rows, metric).items():
            fits = [fit_slope(list(s), list(s.values())) for s in seeds.values()]
            slopes = np.array([f[0] for f in fits if np.isfinite(f[0])])
            if slopes.size == 0:
                continue
            if slopes.size == 1:
                se = next(f[1] for f in fits if np.isfinite(f[0]))
            else:
                se = float(slopes.std(ddof=1) / math.sqrt(slopes.size))
            widths = sorted({w for s in seeds.values() for w in s})
            table.append({"metric": metric, "group": group, "parameterisation": param, "slope": float(slopes.mean()),
                          "slope_se": se, "num_seeds": int(slopes.size), "widths": f"{widths[0]:g}-{widths[-1]:g}"})
    return table


def _lines(rows: list[dict], metric: str) -> list[dict]:
    """Plot lines: ``label``, ``parameterisation``, ``widths``, ``mean``, ``low``, ``high`` (over seeds)."""
    from .plots import group_title

    lines = []
    series = _series(rows, metric)
    multi = len({g for g, _ in series}) > 1
    for (group, param), seeds in series.items():
        widths = sorted({w for s in seeds.values() for w in s})
        values = [[s[w] for s in seeds.values() if w in s] for w in widths]
        label = f"{param}, {group_title(group)}" if multi else param
        lines.append({"label": label, "parameterisation": param, "widths": np.array(widths),
                      "mean": np.array([np.mean(v) for v in values]), "low": np.array([np.min(v) for v in values]),
                      "high": np.array([np.max(v) for v in values])})
    return lines


def _references(rows: list[dict], column: str | None) -> list[tuple[str, float]]:
    """``(label, value)`` of the distinct finite values of the NNGP column, one per comparison group."""
    from .plots import group_title

    if column is None:
        return []
    out: dict[tuple, float] = {}
    for row in rows:
        value = dg.as_number(row.get(column))
        if np.isfinite(value):
            out.setdefault(comparison.comparison_key(row), value)
    return [(f"NNGP, {group_title(k)}" if len(out) > 1 else "NNGP", v) for k, v in out.items()]


def add_limits_section(doc, rows: list[dict], plot_dir) -> dict[str, Path]:
    """Append the section to the report document ``doc`` (``reprior.report._Doc``) and write its
    plots under ``plot_dir``; returns ``{name: path}`` of the plots.  Nothing when no cell has
    a finite limit metric (runs made before the limit metrics existed)."""
    from . import plots

    if not any(np.isfinite(dg.as_number(r.get(m))) for r in rows for m, *_ in LIMIT_PLOTS[:5]):
        return {}
    plot_dir = Path(plot_dir)
    doc.heading(2, "Distance to the infinite-width limit")
    doc.para("Each figure shows one metric against width: the mean over seeds (markers) and its min-max "
             "band, one line per parameterisation (and comparison group); dashed: the NNGP value. The "
             "metrics are defined in `docs/diagnostics.md` (section \"Distance to the infinite-width "
             "limit\"): `nngp_pred_dist` and `nngp_pred_w2` compare the Rao-Blackwellised posterior "
             "predictive with the NNGP posterior, `nngp_kernel_dist` the empirical kernel with the NNGP "
             "kernel, `kl_to_prior` the hidden posterior with its prior (estimated by tempered SMC; "
             "`kl_is_ess` and `kl_num_temperatures` in `summary.csv` say how reliable). The slope is the "
             "least-squares slope of log(metric) on log(width) per seed, averaged over seeds, +- its "
             "standard error (with one seed: the regression's standard error).")
    table = slope_table(rows)
    if table:
        doc.table(["metric", "parameterisation", "group", "slope", "+-", "seeds", "widths"],
                  [[t["metric"], t["parameterisation"], plots.group_title(t["group"]), f"{t['slope']:.3g}",
                    "-" if not np.isfinite(t["slope_se"]) else f"{t['slope_se']:.2g}", str(t["num_seeds"]),
                    t["widths"]] for t in table])
    files = {}
    for metric, label, logy, reference in LIMIT_PLOTS:
        lines = _lines(rows, metric)
        if not lines:
            continue
        name = f"limit_{metric}"
        files[name] = plots.plot_width_lines(lines, plot_dir / f"{name}.png", ylabel=label, logy=logy,
                                             references=_references(rows, reference))
        doc.image(f"plots/{files[name].name}", f"{metric} vs width")
    return files
