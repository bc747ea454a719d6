"""The report's "Distance to the infinite-width limit" section.

For each metric of :data:`reprior.evaluation.limits.LIMIT_METRICS` worth plotting, one figure
of the metric against width (log-log where the metric is positive), one line per
comparison group (architecture, depth, data, sampler, chain lengths; see
:func:`reprior.evaluation.comparison.comparison_key`) and parameterisation, the seed mean with
its min-max band, and the NNGP value as a dashed line where there is one.

Slopes: per seed, the least-squares slope :math:`b` of
:math:`\\log m = a + b \\log d` over the widths ``d`` with a finite positive value;
the table gives the mean over seeds and its standard error
:math:`\\mathrm{sd}/\\sqrt{\\#\\mathrm{seeds}}` (with one seed, the ordinary least-squares
standard error of that seed's slope).  Theory: the kernel fluctuates as
:math:`d^{-1/2}`, so ``nngp_kernel_dist`` should have slope -1/2; the KL to the prior
and the predictive distances are expected to fall at least as fast.

**The KL bound.**  ``kl_to_prior_bound`` (:mod:`reprior.evaluation.kl_bound`) is a certified upper
bound on ``kl_to_prior``; one figure draws both against width, and the text lists the
cells whose estimate lies above the bound by more than twice the bound's Monte Carlo
error (:func:`flagged_cells`): there the SMC estimate (its log evidence) is wrong.
Where the NNGP kernel is a Monte Carlo estimate (``nngp_kernel_estimated``), the text
says so with its relative standard error.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from reprior.evaluation import comparison
from reprior.evaluation import diagnostics as dg

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
SLOPE_METRICS = ("nngp_pred_dist", "nngp_pred_w2", "nngp_kernel_dist", "kl_to_prior", "kl_to_prior_smc",
                 "kl_to_prior_bound")
#: KL estimates that the log-Sobolev bound checks, with their names in the report.
BOUNDED_ESTIMATES = (("kl_to_prior", "estimate"), ("kl_to_prior_smc", "SMC particles"))


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
    from reprior.experiments.plots import group_title

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
    from reprior.experiments.plots import group_title

    if column is None:
        return []
    out: dict[tuple, float] = {}
    for row in rows:
        value = dg.as_number(row.get(column))
        if np.isfinite(value):
            out.setdefault(comparison.comparison_key(row), value)
    return [(f"NNGP, {group_title(k)}" if len(out) > 1 else "NNGP", v) for k, v in out.items()]


def flagged_cells(rows: list[dict], sigmas: float = 2.0) -> list[dict]:
    """Rows whose KL estimate (:data:`BOUNDED_ESTIMATES`) exceeds ``kl_to_prior_bound`` by more than
    ``sigmas`` times ``kl_to_prior_bound_mcse``: ``{"row", "metric", "estimate", "bound", "mcse"}`` each."""
    out = []
    for row in rows:
        bound, mcse = dg.as_number(row.get("kl_to_prior_bound")), dg.as_number(row.get("kl_to_prior_bound_mcse"))
        if not np.isfinite(bound):
            continue
        slack = sigmas * mcse if np.isfinite(mcse) else 0.0
        for metric, _ in BOUNDED_ESTIMATES:
            value = dg.as_number(row.get(metric))
            if np.isfinite(value) and value > bound + slack:
                out.append({"row": row, "metric": metric, "estimate": value, "bound": bound, "mcse": mcse})
    return out


def _bound_lines(rows: list[dict]) -> list[dict]:
    """The KL estimate and its bound as lines of one figure (the bound's lines unstyled: their own colours)."""
    lines = []
    for metric, name in (("kl_to_prior", "estimate"), ("kl_to_prior_bound", "log-Sobolev bound")):
        for line in _lines(rows, metric):
            line = {**line, "label": f"{name}, {line['label']}"}
            if metric == "kl_to_prior_bound":
                line["parameterisation"] = None
            lines.append(line)
    return lines


def _add_bound_text(doc, rows: list[dict]) -> None:
    if not any(np.isfinite(dg.as_number(r.get("kl_to_prior_bound"))) for r in rows):
        return
    doc.para("`kl_to_prior_bound` is a certified upper bound on the KL of the hidden posterior to its N(0, I) "
             "prior (Gaussian log-Sobolev inequality: KL <= E_post|grad log L|^2 / 2), estimated from gradients "
             "at the stored hidden draws with its Monte Carlo error `kl_to_prior_bound_mcse` (ArviZ's MCSE). "
             "It needs no evidence, so it checks the SMC estimate: an estimate above the bound is wrong. "
             "The bound is loose where the posterior is narrower than the prior.")
    flagged = flagged_cells(rows)
    if not flagged:
        doc.para("No cell's KL estimate lies above its bound (by more than 2 MCSE).")
        return
    doc.para(f"Flagged: {len(flagged)} KL estimate(s) above the bound by more than 2 MCSE; their log evidence "
             "is too low (rerun with more SMC particles):")
    def cell(row):
        return str(next((row[c] for c in ("key", "cell_key", "cell") if row.get(c)), "-"))

    doc.table(["cell", "width", "parameterisation", "estimate", "value", "bound", "+-"],
              [[cell(f["row"]), str(f["row"].get("width")), str(f["row"].get("parameterisation")), dict(BOUNDED_ESTIMATES)[f["metric"]], f"{f['estimate']:.3g}",
                f"{f['bound']:.3g}", "-" if not np.isfinite(f["mcse"]) else f"{f['mcse']:.2g}"] for f in flagged])


def _add_estimated_kernel_text(doc, rows: list[dict]) -> None:
    from reprior.experiments.plots import group_title

    groups: dict[tuple, float] = {}
    for row in rows:
        if dg.as_number(row.get("nngp_kernel_estimated")) == 1:
            groups.setdefault(comparison.comparison_key(row), dg.as_number(row.get("nngp_kernel_mc_stderr")))
    if groups:
        doc.para("Estimated NNGP kernel (no closed form registered): the limit of "
                 + "; ".join(f"{group_title(k)} (relative standard error {v:.2g})" for k, v in groups.items())
                 + " is a Monte Carlo estimate, the prior mean of Psi Psi^T from prior draws "
                 "(`nngp_kernel_estimated` = 1 in `summary.csv`); kernel distances below its relative standard "
                 "error `nngp_kernel_mc_stderr` are Monte Carlo noise.")


def add_limits_section(doc, rows: list[dict], plot_dir) -> dict[str, Path]:
    """Append the section to the report document ``doc`` (a :class:`reprior.experiments.report.Document`)
    and write its plots under ``plot_dir``; returns ``{name: path}`` of the plots.  Nothing when no cell
    has a finite limit metric (runs made before the limit metrics existed)."""
    from reprior.experiments import plots

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
    _add_estimated_kernel_text(doc, rows)
    _add_bound_text(doc, rows)
    lines = _bound_lines(rows)
    if any(line["label"].startswith("log-Sobolev") for line in lines):
        files["limit_kl_bound"] = plots.plot_width_lines(lines, plot_dir / "limit_kl_bound.png",
                                                         ylabel="KL to the prior [nats]: estimate and bound")
        doc.image(f"plots/{files['limit_kl_bound'].name}", "KL estimate and its log-Sobolev bound vs width")
    return files
