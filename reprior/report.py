"""The report of a width sweep: ``summary.csv``, ``report.md``, ``report.html`` and PNG plots.

Input is one *row* per grid cell: a dict with the settings columns
(:data:`SETTINGS_COLUMNS`) and the output of
:func:`reprior.diagnostics.cell_metrics`, plus any extra columns (a cell key,
:func:`reprior.diagnostics.run_info`'s provenance strings, ...), which are kept.
The tables average each figure over seeds and give the ratio repriorised /
standard at each width (:func:`reprior.comparison.ratio_to_baseline`).

The report opens with the cost to accuracy (:mod:`reprior.accuracy`): per target
and width, the cost at which each cell's error against a certified reference falls
below the threshold, and the ratio standard / repriorised of those costs, censored
where a side never got there (:func:`cost_ratio`, :func:`accuracy_verdicts`).
"""

from __future__ import annotations

import csv
import datetime
import html
import io
import math
import os
import platform
import sys
from pathlib import Path

import numpy as np

from . import comparison
from . import diagnostics as dg
from . import health
from ._checks import fail
from ._files import atomic_write_text
from .accuracy import CURVE_COLUMNS, DEFAULT_THRESHOLD
from .comparison import RATIO_METRICS, SAMPLER_RATIO_METRICS, SETTINGS_COLUMNS

_HEADLINE = ["grad_evals", "sample_seconds", "ess_bulk_pred_median", "ess_bulk_pred_min", "ess_bulk_theta_median",
             "ess_per_draw_pred", "ess_per_grad_pred", "ess_per_second_pred", "rhat_max", "accept_mean",
             "divergences", "test_rmse", "test_log_lik"]
#: The metrics of :func:`reprior.diagnostics.cell_metrics`, headline figures first.
METRIC_COLUMNS = _HEADLINE + [m for m in dg.metric_names() if m not in _HEADLINE]
#: Every column of ``summary.csv``, in order; extra row keys follow them.
SUMMARY_COLUMNS = [*SETTINGS_COLUMNS, *METRIC_COLUMNS]
#: Row keys under which a cell's identifier (the keys of ``cells_idata``) is looked up.
CELL_ID_COLUMNS = ("cell", "key", "cell_key", "hash")
#: Table columns: (row key, header).
TABLE_COLUMNS = [
    ("width", "width"), ("parameterisation", "parameterisation"), ("num_seeds", "seeds"),
    ("ess_bulk_pred_median", "ESS pred (median)"), ("ess_bulk_pred_min", "ESS pred (min)"),
    ("ess_bulk_theta_median", "ESS theta (median)"), ("ess_per_draw_pred", "ESS/draw"),
    ("ess_per_grad_pred", "ESS/grad"), ("ess_per_second_pred", "ESS/s"), ("rhat_max", "R-hat max"),
    ("accept_mean", "accept"), ("divergences", "divergences"), ("test_rmse", "test RMSE"),
    ("ratio_ess_per_draw_pred", "ratio/draw"), ("ratio_ess_per_grad_pred", "ratio/grad"),
    ("ratio_ess_per_second_pred", "ratio/s"), ("chains", "chains"),
]
_TABLE_METRICS = [key for key, _ in TABLE_COLUMNS[3:13]]
#: Columns of the samplers table: (row key, header).
SAMPLER_COLUMNS = [
    ("width", "width"), ("parameterisation", "parameterisation"), ("sampler", "sampler"), ("num_seeds", "seeds"),
    ("num_draws", "draws"), ("evals_per_draw", "evals/draw"), ("ess_bulk_pred_median", "ESS pred (median)"),
    ("ess_per_eval_pred", "ESS/eval"), ("ess_per_second_pred", "ESS/s"), ("rhat_max", "R-hat max"),
    ("accept_mean", "accept"), ("vs_reference_ess_per_eval_pred", "vs std NUTS /eval"),
    ("vs_reference_ess_per_second_pred", "vs std NUTS /s"), ("ess_bulk_theta_median", "ESS theta (median)"),
    ("ess_per_eval_theta", "ESS theta/eval"), ("vs_reference_ess_per_eval_theta", "vs std NUTS theta /eval"),
    ("chains", "chains"),
]
#: A cell's error curve, under ``cells/<cell>/`` of the sweep directory (:func:`read_curve`).
ACCURACY_CURVE_FILE = "accuracy.csv"
_SAMPLER_METRICS = ["num_draws", "logdensity_evals", "ess_bulk_pred_median", "ess_per_eval_pred",
                    "ess_per_second_pred", "rhat_max", "accept_mean", "ess_bulk_theta_median", "ess_per_eval_theta"]


# -- summary.csv -----------------------------------------------------------------------
def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision; NaN as "nan"
    return str(value)


def summary_columns(rows: list[dict]) -> list[str]:
    """:data:`SUMMARY_COLUMNS` followed by any other row keys, in order of first appearance."""
    extra = dict.fromkeys(k for row in rows for k in row if k not in SUMMARY_COLUMNS)
    return SUMMARY_COLUMNS + list(extra)


def write_summary_csv(rows: list[dict], path) -> Path:
    """Write one line per row under :func:`summary_columns`; absent values are empty, NaN is ``nan``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = io.StringIO(newline="")
    writer = csv.writer(stream)
    columns = summary_columns(rows)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_text(row.get(c)) for c in columns])
    return atomic_write_text(path, stream.getvalue())  # a reader never sees half a file


def _parse(text: str):
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_summary_csv(path) -> list[dict]:
    """Rows of a ``summary.csv``: ints and floats parsed, empty cells None."""
    with open(path, newline="", encoding="utf-8") as stream:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(stream)]


# -- tables ----------------------------------------------------------------------------
def format_number(value) -> str:
    """3 significant figures; integers and large numbers without exponent; NaN/None as ``nan``/``-``."""
    if value is None or value == "":
        return "-"
    number = dg.as_number(value)
    if isinstance(value, str) and math.isnan(number):
        return value
    if math.isnan(number):
        return "nan"
    if float(number).is_integer() and abs(number) < 1e15:
        return f"{int(number):d}"
    if abs(number) >= 1000:
        return f"{number:.0f}"
    return f"{number:.3g}"


def comparison_tables(rows: list[dict]) -> list[tuple[tuple, list[dict]]]:
    """Per comparison group (:data:`reprior.comparison.COMPARISON_KEYS`): its table rows,
    one per (width, parameterisation), averaged over seeds, with the ratios."""
    averaged = comparison.average_over_seeds(rows, _TABLE_METRICS)
    averaged = comparison.ratio_to_baseline(averaged, RATIO_METRICS)
    _add_health(averaged, rows)
    failed_base = {(comparison.comparison_key(e), e["width"]) for e in averaged
                   if e["parameterisation"] == comparison.BASELINE and e["chains"]}
    groups: dict[tuple, list[dict]] = {}
    for entry in averaged:
        entry["baseline_failed"] = (comparison.comparison_key(entry), entry["width"]) in failed_base
        if entry["parameterisation"] == comparison.BASELINE:
            for metric in RATIO_METRICS:
                entry[f"ratio_{metric}"] = None  # shown as "-": the baseline itself
        groups.setdefault(comparison.comparison_key(entry), []).append(entry)
    return list(groups.items())


def _add_health(averaged: list[dict], rows: list[dict]) -> None:
    """Set ``chains`` on each seed-averaged entry: the failed-chain reasons of its cells
    (:func:`reprior.health.chain_failure`, ``"seed S: ..."`` per failed seed), "" if none failed;
    and ``single_chain`` when its cells have one chain each."""
    members: dict[tuple, list[dict]] = {}
    for row in rows:
        members.setdefault((comparison.comparison_key(row), dg.as_number(row.get("width")), row.get("parameterisation")),
                           []).append(row)
    for entry in averaged:
        cells = members.get((comparison.comparison_key(entry), dg.as_number(entry["width"]), entry["parameterisation"]), [])
        failures = [(row.get("seed"), health.chain_failure(row)) for row in cells]
        failures = [(seed, why) for seed, why in failures if why]
        if len(cells) == 1 and failures:
            entry["chains"] = f"FAILED: {failures[0][1]}"
        else:
            entry["chains"] = "; ".join(f"FAILED seed {seed}: {why}" for seed, why in failures)
        entry["single_chain"] = bool(cells) and all(health.single_chain(row) for row in cells)


def sampler_tables(rows: list[dict]) -> list[tuple[tuple, list[dict]]]:
    """Per target (:data:`reprior.comparison.TARGET_KEYS`) run by more than one sampler: one
    entry per (width, parameterisation, sampler, chain settings), averaged over seeds, with
    ``evals_per_draw`` and the ratios ``vs_reference_*`` to standard NUTS at the same width."""
    averaged = comparison.average_over_seeds(rows, _SAMPLER_METRICS)
    averaged = comparison.ratio_to_reference(averaged, SAMPLER_RATIO_METRICS)
    _add_health(averaged, rows)
    failed_ref = {(comparison.target_key(e), e["width"]) for e in averaged
                  if (e["parameterisation"], e["sampler"]) == comparison.REFERENCE and e["chains"]}
    targets: dict[tuple, list[dict]] = {}
    for entry in averaged:
        entry["baseline_failed"] = (comparison.target_key(entry), entry["width"]) in failed_ref
        draws = entry["num_draws"]
        entry["evals_per_draw"] = entry["logdensity_evals"] / draws if draws and math.isfinite(draws) else math.nan
        targets.setdefault(comparison.target_key(entry), []).append(entry)
    out = []
    for key, entries in targets.items():
        if len({e["sampler"] for e in entries}) > 1:
            entries.sort(key=lambda e: (dg.as_number(e["width"]), (e["parameterisation"], e["sampler"]) != comparison.REFERENCE,
                                        str(e["parameterisation"]), str(e["sampler"])))
            out.append((key, entries))
    return out


def _sampler_headline(entries: list[dict]) -> str:
    """Per width: the entry with the highest ESS/eval ratio to standard NUTS, and the highest ESS/s ratio."""
    sentences = []
    for width in dict.fromkeys(e["width"] for e in entries):
        others = [e for e in entries if e["width"] == width and (e["parameterisation"], e["sampler"]) != comparison.REFERENCE
                  and not e.get("chains") and not e.get("baseline_failed")]
        parts = []
        for metric, what in (("ess_per_eval_pred", "ESS/eval"), ("ess_per_second_pred", "ESS/s")):
            finite = [e for e in others if math.isfinite(e[f"vs_reference_{metric}"])]
            if finite:
                best = max(finite, key=lambda e: e[f"vs_reference_{metric}"])
                parts.append(f"{what} {format_number(best[f'vs_reference_{metric}'])}x "
                             f"(`{best['parameterisation']}` `{best['sampler']}`)")
        if parts:
            sentences.append(f"Width {width}, best against standard NUTS: " + ", ".join(parts) + ".")
    return " ".join(sentences)


def _headline(entries: list[dict]) -> str:
    """One sentence per repriorised parameterisation: ratio of ESS/grad at every width."""
    sentences = []
    for param in dict.fromkeys(e["parameterisation"] for e in entries if e["parameterisation"] != comparison.BASELINE):
        mine = [e for e in entries if e["parameterisation"] == param]
        untrusted = sorted({e["width"] for e in mine if e.get("baseline_failed") or e.get("chains")},
                           key=dg.as_number)
        ratios = [e["ratio_ess_per_grad_pred"] for e in mine if e["width"] not in untrusted]
        finite = [r for r in ratios if r is not None and math.isfinite(r)]
        if untrusted:
            sentences.append(f"`{param}`: failed chains (its own or the standard baseline's) at width "
                             f"{', '.join(map(str, untrusted))}: no comparison there.")
        if not finite:
            if not untrusted:
                sentences.append(f"`{param}`: no standard cell to compare with.")
            continue
        verdict = "above" if len(finite) == len(ratios) and min(finite) > 1 else "not above"
        where = "every width" if not untrusted else "every other width"
        sentences.append(f"`{param}`: ESS per gradient evaluation (pred) {verdict} standard at {where} "
                         f"(ratio {format_number(min(finite))} to {format_number(max(finite))}).")
    return " ".join(sentences)


# -- cost to accuracy --------------------------------------------------------------------
#: The cost units of the verdict: ``<unit>_to_b2`` / ``budget_<unit>`` row keys and their words.
COST_UNITS = {"grads": "gradient evaluations", "evals": "log-density evaluations"}
#: Columns of the cost-to-accuracy table: (entry key, header).
ACCURACY_TABLE_COLUMNS = [
    ("width", "width"), ("parameterisation", "parameterisation"), ("sampler", "sampler"), ("draws", "chains x draws"),
    ("num_seeds", "seeds"), ("reached", "reached"), ("b2_pred_mean", "b² mean"), ("b2_pred_second", "b² second"),
    ("b2_rb_mean", "b² rb"), ("to_b2", "cost to b²"), ("seconds_to_b2", "s to b²"), ("budget", "budget"),
    ("budget_seconds", "budget s"), ("unit", "counted"), ("ratio", "ratio/bound"),
]
_CHAIN_KEYS = ("num_chains", "num_warmup", "num_samples")
_BOUND_SIGNS = {"ratio": "", "lower": ">= ", "upper": "<= "}


def read_curve(path) -> dict[str, np.ndarray]:
    """A cell's error curve (its ``accuracy.csv``, see :func:`reprior.accuracy.error_curve`).

    Args:
        path: the CSV file; its header must hold :data:`reprior.accuracy.CURVE_COLUMNS`.

    Returns:
        ``{column: (S,) float array}``, one entry per recorded draw; empty values are NaN.
    """
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.reader(stream)
        header = next(reader, [])
        body = [line for line in reader if line]
    if any(name not in header for name in CURVE_COLUMNS):
        raise fail("path", f"a curve CSV with columns {', '.join(CURVE_COLUMNS)}", f"{path} with header {header}")
    return {name: np.array([dg.as_number(line[i]) if i < len(line) else math.nan for line in body], dtype=float)
            for i, name in enumerate(header)}


def reached(value) -> bool | None:
    """``b2_reached`` as a bool, whether a bool or its text read back from ``summary.csv``
    (``"True"``, ``"false"``, ``"1"``); None when absent or unreadable."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        return {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower())
    number = dg.as_number(value)
    return None if math.isnan(number) else bool(number)


def reference_failure(row: dict) -> str:
    """Why the row's cell has no certified reference ("" when it has one, or was not scored)."""
    value = row.get("reference_failure")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _is_scored(row: dict) -> bool:
    return not reference_failure(row) and reached(row.get("b2_reached")) is not None


def _width_value(value):
    number = dg.as_number(value)
    return int(number) if math.isfinite(number) and number.is_integer() else number


def _seed_entry(members: list[dict]) -> dict:
    """One entry of :func:`accuracy_entries` from the rows (seeds) of one setting, kernel and chain settings."""
    first = members[0]
    entry = {k: first.get(k) for k in (*comparison.TARGET_KEYS, "parameterisation", "sampler", *_CHAIN_KEYS)}
    flags = [reached(m.get("b2_reached")) for m in members]
    entry.update(width=_width_value(first.get("width")), num_seeds=len(members), num_crossed=sum(flags),
                 crossed=all(flags), threshold=dg.as_number(first.get("b2_threshold")),
                 has_grads=all(dg.as_number(m.get("budget_grads")) > 0 for m in members),
                 seeds=[m.get("seed") for m in members], cells=[m.get("cell") for m in members])
    for name in ("b2_pred_mean", "b2_pred_second", "b2_rb_mean"):
        entry[name] = health.finite_reduce(np.max, [dg.as_number(m.get(name)) for m in members])
    for unit in ("grads", "evals", "seconds"):
        costs = [dg.as_number(m.get(f"{unit}_to_b2")) for m in members]
        entry[f"{unit}_to_b2"] = health.finite_reduce(np.median, costs) if entry["crossed"] else math.nan
        entry[f"budget_{unit}"] = health.finite_reduce(np.min, [dg.as_number(m.get(f"budget_{unit}")) for m in members])
    return entry


def accuracy_entries(rows: list[dict]) -> list[dict]:
    """The rows scored against a certified reference, one entry per target
    (:data:`reprior.comparison.TARGET_KEYS`), width, parameterisation, sampler and chain settings.

    Over the seeds of an entry: ``crossed`` only if every seed reached the threshold
    (``num_crossed`` of ``num_seeds`` did); ``<unit>_to_b2`` the median crossing cost over
    seeds when crossed, else NaN; ``budget_<unit>`` the smallest whole-run cost; the ``b2_*``
    errors the largest (the worst seed); ``has_grads`` when every seed counted gradients.
    Sorted by target (first appearance), width, then ``standard`` first.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if _is_scored(row):
            key = (comparison.target_key(row), dg.as_number(row.get("width")), row.get("parameterisation"),
                   row.get("sampler"), *(row.get(k) for k in _CHAIN_KEYS))
            groups.setdefault(key, []).append(row)
    order = {key: i for i, key in enumerate(dict.fromkeys(comparison.target_key(r) for r in rows))}
    entries = [_seed_entry(members) for members in groups.values()]
    return sorted(entries, key=lambda e: (order[comparison.target_key(e)], dg.as_number(e["width"]),
                                          e["parameterisation"] != comparison.BASELINE,
                                          str(e["parameterisation"]), str(e["sampler"])))


def _unit(entries) -> str:
    """Gradient evaluations when every entry counted them, else log-density evaluations."""
    return "grads" if all(e["has_grads"] for e in entries) else "evals"


def _or(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


def cost_ratio(standard: dict, repriorised: dict, unit: str) -> tuple[str, float]:
    """Standard cost / repriorised cost to the threshold, censored where a side has not crossed.

    .. math:: r = C_{\\mathrm{standard}} / C_{\\mathrm{repriorised}}

    Args:
        standard, repriorised: entries of :func:`accuracy_entries`.
        unit: ``"grads"`` or ``"evals"`` (:data:`COST_UNITS`).

    Returns:
        ``(kind, value)``: ``("ratio", r)`` when both crossed; ``("lower", B_s / C_r)`` when
        only the repriorised did (the standard needs more than its whole run ``B_s``, so
        :math:`r \\ge` value); ``("upper", C_s / B_r)`` when only the standard did;
        ``("undecided", nan)`` when neither did; ``("no cost recorded", nan)`` when a cost
        needed is missing or zero; ``("thresholds differ", nan)`` when they were scored at
        different thresholds.
    """
    thresholds = (standard["threshold"], repriorised["threshold"])
    if all(map(math.isfinite, thresholds)) and not math.isclose(*thresholds):
        return "thresholds differ", math.nan
    if standard["crossed"] and repriorised["crossed"]:
        kind, value = "ratio", health.safe_ratio(standard[f"{unit}_to_b2"], repriorised[f"{unit}_to_b2"])
    elif repriorised["crossed"]:
        kind, value = "lower", health.safe_ratio(standard[f"budget_{unit}"], repriorised[f"{unit}_to_b2"])
    elif standard["crossed"]:
        kind, value = "upper", health.safe_ratio(standard[f"{unit}_to_b2"], repriorised[f"budget_{unit}"])
    else:
        return "undecided", math.nan
    return (kind, value) if math.isfinite(value) and value > 0 else ("no cost recorded", math.nan)


def _best_standard(standard: list[dict], unit: str) -> dict:
    """The standard entry with the least cost to cross, else (none crossed) the largest budget."""
    crossed = [e for e in standard if e["crossed"]]
    if crossed:
        return min(crossed, key=lambda e: _or(e[f"{unit}_to_b2"], math.inf))
    return max(standard, key=lambda e: _or(e[f"budget_{unit}"], -math.inf))


def _compare_at_width(entries: list[dict]) -> None:
    """Set ``unit`` on every entry and, on the repriorised ones, ``versus`` (the best standard
    entry), ``ratio_kind`` and ``ratio`` (:func:`cost_ratio`)."""
    standard = [e for e in entries if e["parameterisation"] == comparison.BASELINE]
    for entry in entries:
        entry.update(unit=_unit([entry]), versus=None, ratio_kind=None, ratio=math.nan)
        if entry["parameterisation"] == comparison.BASELINE or not standard:
            continue
        best = _best_standard(standard, _unit([entry, *standard]))
        entry["unit"] = _unit([entry, best])
        entry["versus"] = best
        entry["ratio_kind"], entry["ratio"] = cost_ratio(best, entry, entry["unit"])


def accuracy_verdicts(rows: list[dict]) -> list[dict]:
    """The verdict of each target and width: ``{"target", "width", "failure", "entries"}``.

    ``failure`` joins the distinct :func:`reference_failure` texts of its rows ("" when none
    has one); ``entries`` are those of :func:`accuracy_entries` there, with the comparison of
    :func:`_compare_at_width` (none where ``failure`` is set).  Sorted by target, then width.
    """
    entries = accuracy_entries(rows)
    failures: dict[tuple, list[str]] = {}
    for row in rows:
        if reference_failure(row):
            failures.setdefault((comparison.target_key(row), _width_value(row.get("width"))), []).append(
                reference_failure(row))
    order = {key: i for i, key in enumerate(dict.fromkeys(comparison.target_key(r) for r in rows))}
    places = dict.fromkeys([(comparison.target_key(e), e["width"]) for e in entries] + list(failures))
    out = []
    for target, width in sorted(places, key=lambda p: (order[p[0]], dg.as_number(p[1]))):
        why = "; ".join(dict.fromkeys(failures.get((target, width), [])))
        at = [] if why else [e for e in entries if (comparison.target_key(e), e["width"]) == (target, width)]
        _compare_at_width(at)
        out.append({"target": target, "width": width, "failure": why, "entries": at})
    return out


def _short(value) -> str:
    """2 significant figures, as ``3.2e4`` from 10^4 up."""
    number = dg.as_number(value)
    if not math.isfinite(number):
        return "nan"
    if abs(number) >= 1e4:
        mantissa, exponent = f"{number:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{number:.0f}" if abs(number) >= 100 else f"{number:.2g}"


def _factor(value: float) -> str:
    """A ratio to 2 significant figures (one decimal from 1 to 10, none from 10 up)."""
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def ratio_text(kind: str | None, value: float) -> str:
    """The ratio column: ``4.0``, ``>= 3.4``, ``<= 0.25``, ``undecided``, or ``-`` (no comparison)."""
    if kind is None:
        return "-"
    return f"{_BOUND_SIGNS[kind]}{_factor(value)}" if kind in _BOUND_SIGNS else kind


def _verdict_words(kind: str, value: float, unit: str) -> str:
    """``3.4x fewer gradient evaluations``, ``at least ...``, ``at most ...`` or why there is no verdict."""
    if kind == "undecided":
        return "undecided (neither reached the threshold)"
    if kind not in _BOUND_SIGNS:
        return f"no verdict ({kind})"
    fewer = value >= 1
    qualifier = {"ratio": "", "lower": "at least " if fewer else "at most ",
                 "upper": "at most " if fewer else "at least "}[kind]
    return f"{qualifier}{_factor(value if fewer else 1 / value)}x {'fewer' if fewer else 'more'} {COST_UNITS[unit]}"


def _label(entry: dict, with_chains: bool = False) -> str:
    param = entry["parameterisation"]
    text = f"{'repriorised' if param == 'reprior' else param} {entry['sampler']}"
    return f"{text} ({entry['num_chains']}x{entry['num_samples']} draws)" if with_chains else text


def _clause(entry: dict, unit: str, *, first: bool, with_chains: bool = False) -> str:
    """``repriorised pcnl reached b² < 0.01 after 3.2e4 gradient evaluations (41 s)`` and the like;
    the second clause of a sentence (``first=False``) names neither threshold nor unit."""
    words, seeds = f" {COST_UNITS[unit]}" if first else "", entry["num_seeds"]
    threshold = format_number(entry["threshold"])
    if entry["crossed"]:
        what = f"reached b\u00b2 < {threshold}" if first else "reached it"
        note = f"; median of {seeds} seeds" if seeds > 1 else ""
        return (f"{_label(entry, with_chains)} {what} after {_short(entry[f'{unit}_to_b2'])}{words} "
                f"({_short(entry['seconds_to_b2'])} s{note})")
    what = f"had not reached b\u00b2 < {threshold}" if first else "had not"
    note = f"; {entry['num_crossed']} of {seeds} seeds crossed, the shortest run shown" if seeds > 1 else ""
    return (f"{_label(entry, with_chains)} {what} after {_short(entry[f'budget_{unit}'])}{words} "
            f"(its whole run, {_short(entry['budget_seconds'])} s{note})")


def verdict_sentences(place: dict) -> list[str]:
    """The sentences of one target and width of :func:`accuracy_verdicts`: one per repriorised
    entry against the best standard one (or a line saying what is missing)."""
    width, entries = place["width"], place["entries"]
    if place["failure"]:
        return [f"width {width}: no certified reference ({_failing_figure(place['failure'])})."]
    kernels = [(e["parameterisation"], e["sampler"]) for e in entries]

    def clause(entry, unit, first):  # chain settings named where one kernel ran with several
        twice = kernels.count((entry["parameterisation"], entry["sampler"])) > 1
        return _clause(entry, unit, first=first, with_chains=twice)

    others = [e for e in entries if e["parameterisation"] != comparison.BASELINE]
    if not others:
        return [f"width {width}: " + "; ".join(clause(e, e["unit"], True) for e in entries)
                + "; no repriorised cell to compare with."]
    sentences = []
    for entry in others:
        head = f"width {width}: {clause(entry, entry['unit'], True)}"
        best = entry["versus"]
        if best is None:
            sentences.append(f"{head}; no standard cell to compare with.")
            continue
        verdict = _verdict_words(entry["ratio_kind"], entry["ratio"], entry["unit"])
        sentences.append(f"{head}; {clause(best, entry['unit'], False)}: {verdict}.")
    return sentences


def _failing_figure(failure: str) -> str:
    """``pcnl: R-hat 1.03 >= 1.01`` from ``no certified reference: pcnl: R-hat 1.03 >= 1.01``."""
    return "; ".join(part.strip().removeprefix("no certified reference").lstrip(": ").strip() or part.strip()
                     for part in failure.split("; "))


def _accuracy_cells(entry: dict) -> list[str]:
    """One row of the cost-to-accuracy table."""
    unit = entry["unit"]
    seeds, crossed = entry["num_seeds"], entry["num_crossed"]
    values = dict(entry, draws=f"{entry['num_chains']}x{entry['num_samples']}",
                  reached=("yes" if entry["crossed"] else "no") if seeds == 1 else f"{crossed} of {seeds}",
                  to_b2=entry[f"{unit}_to_b2"], budget=entry[f"budget_{unit}"], unit=unit,
                  ratio=ratio_text(entry["ratio_kind"], entry["ratio"]))
    for key in ("to_b2", "seconds_to_b2"):
        values[key] = values[key] if entry["crossed"] else None  # "-": not reached
    return [str(values[k]) if k in ("parameterisation", "sampler", "draws", "reached", "unit", "ratio")
            else format_number(values[k]) for k, _ in ACCURACY_TABLE_COLUMNS]


def _target_title(target: tuple) -> str:
    from .plots import group_title

    return group_title(comparison.comparison_key(dict(zip(comparison.TARGET_KEYS, target, strict=True))))


def _curves(place: dict, out_dir: Path) -> tuple[list[dict], list[str]]:
    """The error curves (``cells/<cell>/accuracy.csv``) of a place's cells, and the unreadable ones."""
    curves, unreadable = [], []
    for entry in place["entries"]:
        for seed, cell in zip(entry["seeds"], entry["cells"], strict=True):
            path = out_dir / "cells" / str(cell) / ACCURACY_CURVE_FILE
            if cell is None or not path.is_file():
                continue
            try:
                curve = read_curve(path)
            except (OSError, ValueError) as error:
                unreadable.append(f"`{cell}`: {error}")
                continue
            label = _label(entry) + (f", seed {seed}" if entry["num_seeds"] > 1 else "")
            curves.append({"label": label, "curve": curve})
    return curves, unreadable


def _accuracy_plots(doc: _Doc, place: dict, out_dir: Path) -> dict[str, Path]:
    """Draw and embed ``b²`` against cost (gradient or log-density evaluations) and against seconds."""
    from . import plots

    curves, unreadable = _curves(place, out_dir)
    if unreadable:
        doc.para(f"Width {place['width']}: error curves left out (unreadable): " + "; ".join(unreadable) + ".")
    if not curves:
        return {}
    threshold = place["entries"][0]["threshold"]
    threshold = threshold if 0 < _or(threshold, 0) < 1 else DEFAULT_THRESHOLD
    stem = _slug("-".join(str(v) for v in place["target"] if v is not None)) + f"_w{place['width']}"
    title = f"{_target_title(place['target'])}, width {place['width']}"
    files = {}
    for cost in (_unit(place["entries"]), "seconds"):
        name = f"b2_{cost}_{stem}"
        files[f"plot_{name}"] = plots.plot_b2_vs_cost(curves, out_dir / "plots" / f"{name}.png", cost=cost,
                                                      threshold=threshold, title=title)
        doc.image(f"plots/{name}.png", f"b² against {plots.COST_LABELS[cost]}, width {place['width']}")
    return files


def add_accuracy_section(doc: _Doc, rows: list[dict], out_dir) -> dict[str, Path]:
    """Append the "Cost to accuracy" section to ``doc``: per target, one sentence per width
    (:func:`verdict_sentences`), a table, and per width the plots of ``b²`` against cost
    and seconds, drawn from ``out_dir/cells/<cell>/accuracy.csv`` into ``out_dir/plots/``.

    Returns:
        ``{name: path}`` of the plots: ``plot_b2_<grads|evals|seconds>_<target>_w<width>``.
    """
    doc.heading(2, "Cost to accuracy")
    verdicts = accuracy_verdicts(rows)
    if not verdicts:
        doc.para("No cell was scored against a reference: the rows have no `b2_*` figures (cells run before "
                 "cost to accuracy was measured). The ESS tables below are the only comparison.")
        return {}
    doc.para(_ACCURACY_INTRO)
    files: dict[str, Path] = {}
    targets = dict.fromkeys(place["target"] for place in verdicts)
    for target in targets:
        places = [place for place in verdicts if place["target"] == target]
        doc.heading(3, _target_title(target) or "all cells")
        doc.bullets(sentence for place in places for sentence in verdict_sentences(place))
        body = [_accuracy_cells(e) for place in places for e in place["entries"]]
        if body:
            doc.table([h for _, h in ACCURACY_TABLE_COLUMNS], body)
        for place in places:
            files.update(_accuracy_plots(doc, place, Path(out_dir)))
    return files


_ACCURACY_INTRO = (
    "Each cell is scored against a certified reference posterior of the test predictions: b² is the squared error "
    "of its running mean (`b² mean`) and second moment (`b² second`) in units of the reference variances, and a "
    "cell has reached the threshold when both stay below it to the end of its run (`docs/diagnostics.md`, "
    "\"The verdict in the report\"). Costs are cumulative, warm-up included: gradient evaluations where both "
    "kernels compared count them, else log-density evaluations (`counted`). The ratio is standard cost / "
    "repriorised cost to the threshold, against the best standard cell (the least cost to reach it, else the "
    "longest run): a number only where both reached it; `>=` (the standard's whole run over the repriorised "
    "cost) where only the repriorised did; `<=` (the standard's cost over the repriorised whole run) where only "
    "the standard did; undecided where neither did. Over several seeds an entry has reached the threshold only "
    "if every seed has (its cost: the median over seeds); else its shortest run is its budget, and the b² "
    "columns give the worst seed.")


# -- provenance ------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    """Versions of this environment (package metadata; nothing is imported)."""
    from importlib import metadata

    from . import __version__

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"python": platform.python_version(), "reprior": __version__,
            **{name: version(name) for name in ("jax", "jaxlib", "numpyro", "arviz", "numpy", "matplotlib")}}


def _this_machine() -> str:
    return f"{platform.node()}: {platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} cpus"


def _distinct(rows, key) -> list[str]:
    return [str(v) for v in dict.fromkeys(row.get(key) for row in rows) if v not in (None, "")]


# -- the document ----------------------------------------------------------------------
class _Doc:
    """A list of blocks rendered to Markdown and to self-contained HTML."""

    def __init__(self):
        self.blocks: list[tuple] = []

    def heading(self, level, text):
        self.blocks.append(("h", level, text))

    def para(self, text):
        self.blocks.append(("p", text))

    def bullets(self, items):
        self.blocks.append(("ul", list(items)))

    def code(self, text):
        self.blocks.append(("code", text))

    def table(self, header, body):
        self.blocks.append(("table", header, body))

    def image(self, rel_path, alt):
        self.blocks.append(("img", rel_path, alt))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append("#" * block[1] + " " + block[2])
            elif kind == "p":
                out.append(block[1])
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in block[1]))
            elif kind == "code":
                out.append(f"```\n{block[1]}\n```")
            elif kind == "table":
                lines = ["| " + " | ".join(block[1]) + " |", "|" + "---|" * len(block[1])]
                lines += ["| " + " | ".join(r) + " |" for r in block[2]]
                out.append("\n".join(lines))
            elif kind == "img":
                out.append(f"![{block[2]}]({block[1]})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        def inline(text):  # `code` spans only
            parts = html.escape(text).split("`")
            return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

        out = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append(f"<h{block[1]}>{inline(block[2])}</h{block[1]}>")
            elif kind == "p":
                out.append(f"<p>{inline(block[1])}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in block[1]) + "</ul>")
            elif kind == "code":
                out.append(f"<pre><code>{html.escape(block[1])}</code></pre>")
            elif kind == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
                body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                               for r in block[2])
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif kind == "img":
                out.append(f'<p><img src="{html.escape(block[1])}" alt="{html.escape(block[2])}"></p>')
        style = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
                 "table{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
                 "td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}"
                 "th{background:#eee}img{max-width:100%}pre{background:#f4f4f4;padding:.6em;overflow-x:auto}")
        return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


# -- trace and rank plots ------------------------------------------------------------------
def _cell_id(row: dict, cells_idata: dict):
    for column in CELL_ID_COLUMNS:
        value = row.get(column)
        if value is not None and str(value) in cells_idata:
            return str(value)
    return None


def _rows_from_files(cells_idata: dict) -> list[dict]:
    """Rows (width, parameterisation, seed, cell) read from the NetCDF files' attrs."""
    import arviz as az

    rows = []
    for cell, path in cells_idata.items():
        attrs = az.from_netcdf(str(path)).attrs
        param = attrs.get("parameterisation")
        if param == "reprior" and attrs.get("readout") == "sampled":
            param = "reprior-sampled"
        rows.append({"arch": attrs.get("arch"), "depth": attrs.get("depth"), "width": attrs.get("width"),
                     "parameterisation": param, "seed": attrs.get("seed"), "cell": cell})
    return rows


def extreme_cells(rows: list[dict], cells_idata: dict) -> list[tuple[str, dict]]:
    """``(label, row)`` of the cells to plot: per comparison group, the narrowest and widest
    width with a NetCDF file, each parameterisation there, lowest seed.  Rows are matched to
    ``cells_idata`` keys through :data:`CELL_ID_COLUMNS`; if none matches, the files' attrs are read."""
    matched = [dict(r, cell=_cell_id(r, cells_idata)) for r in rows if _cell_id(r, cells_idata)]
    if not matched:
        matched = _rows_from_files(cells_idata)
    picked = []
    groups: dict[tuple, list[dict]] = {}
    for row in matched:
        groups.setdefault(comparison.comparison_key(row), []).append(row)
    for members in groups.values():
        widths = sorted({dg.as_number(r["width"]) for r in members})
        for label, width in dict.fromkeys([("narrowest", widths[0]), ("widest", widths[-1])]):
            at_width = [r for r in members if dg.as_number(r["width"]) == width]
            for param in dict.fromkeys(r["parameterisation"] for r in at_width):
                best = min((r for r in at_width if r["parameterisation"] == param),
                           key=lambda r: dg.as_number(r.get("seed")))
                picked.append((label, best))
    return picked


def _slug(text) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text))


# -- write_report ------------------------------------------------------------------------
def write_report(out_dir, rows: list[dict], *, command: str, cells_idata: dict | None = None,
                 title: str = "reprior width sweep: standard vs repriorised",
                 skipped_cells: list[str] | None = None) -> dict[str, Path]:
    """Write ``summary.csv``, ``report.md``, ``report.html`` and ``plots/*.png`` under ``out_dir``.

    Args:
        out_dir: output directory (created).
        rows: one dict per cell: settings columns plus :func:`reprior.diagnostics.cell_metrics`.
        command: the exact command that produced the sweep, quoted in the report.
        cells_idata: optional ``{cell id: NetCDF path}``; trace and rank plots are drawn for
            the narrowest and widest cells (see :func:`extreme_cells`).
        title: the report's title.
        skipped_cells: one line per cell left out (e.g. broken files), listed in the report.

    The report opens with the "Cost to accuracy" verdict (:func:`add_accuracy_section`), from the
    rows' ``b2_*`` figures and the error curves ``out_dir/cells/<cell>/accuracy.csv``.
    Every file is written atomically.  Cells whose chains failed
    (:func:`reprior.health.chain_failure`) are marked in the tables (``chains``
    column), in ``summary.csv`` (``chain_failure``) and in the plots (red
    crosses); a ratio over a failed standard cell carries a dagger.  One-chain
    cells get no rank plot and their R-hat reads ``n/a (1 chain)``.

    Returns:
        ``{name: path}`` of every file written: ``summary_csv``, ``report_md``,
        ``report_html``, ``plot_ess_per_grad``, ``plot_ess_per_grad_theta``,
        ``plot_ratio``, ``plot_rhat``, ``plot_ess_per_eval`` (only when some target was
        run by several samplers, see :func:`sampler_tables`), ``trace_<cell>``/``rank_<cell>`` per plotted cell,
        and the cost-to-accuracy plots of :func:`add_accuracy_section` (``plot_b2_*``).
    """
    from . import plots
    from .report_limits import add_limits_section

    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"argument `rows`: expected a list of dicts, received {type(rows).__name__}")
    out_dir = Path(out_dir)
    plot_dir = out_dir / "plots"
    rows = [dict(row, chain_failure=health.chain_failure(row)) for row in rows]
    files = {"summary_csv": write_summary_csv(rows, out_dir / "summary.csv")}
    files["plot_ess_per_grad"] = plots.plot_ess_per_grad(rows, plot_dir / "ess_per_grad_pred.png")
    files["plot_ess_per_grad_theta"] = plots.plot_ess_per_grad(rows, plot_dir / "ess_per_grad_theta.png",
                                                               group="theta")
    files["plot_ratio"] = plots.plot_ratio(rows, plot_dir / "ratio.png")
    files["plot_rhat"] = plots.plot_rhat(rows, plot_dir / "rhat.png")
    samplers = sampler_tables(rows)
    if samplers:
        files["plot_ess_per_eval"] = plots.plot_metric_vs_width(
            rows, plot_dir / "ess_per_eval_pred.png", metric="ess_per_eval_pred",
            ylabel="bulk ESS / log-density evaluation (pred)")
    traces = []
    for label, row in extreme_cells(rows, cells_idata or {}):
        name = _slug(row["cell"])
        caption = f"{label}: width {row['width']}, {row['parameterisation']}, seed {row.get('seed')}"
        path = cells_idata[row["cell"]]
        if health.chain_failure(row):
            caption += f" (FAILED chains: {health.chain_failure(row)})"
        files[f"trace_{name}"] = plots.plot_trace(path, plot_dir / f"trace_{name}.png", title=caption)
        rank = None
        if not health.single_chain(row):  # a rank plot compares chains: nothing to show with one
            files[f"rank_{name}"] = plots.plot_rank(path, plot_dir / f"rank_{name}.png", title=caption)
            rank = f"plots/rank_{name}.png"
        traces.append((caption, f"plots/trace_{name}.png", rank))

    verdict = _Doc()
    files.update(add_accuracy_section(verdict, rows, out_dir))
    doc = _build(rows, command, files, traces, title, samplers, skipped_cells or [], opening=verdict)
    files.update(add_limits_section(doc, rows, plot_dir))  # "Distance to the infinite-width limit" (issue 11)
    files["report_md"] = _write_text(out_dir / "report.md", doc.markdown())
    files["report_html"] = _write_text(out_dir / "report.html", doc.html(title))
    return files


def _write_text(path: Path, text: str) -> Path:
    return atomic_write_text(path, text)


def _format_entry(entry: dict, key: str) -> str:
    """A table cell: R-hat of one-chain cells explained, ratios over a failed baseline flagged."""
    if key == "parameterisation":
        return str(entry[key])
    if key == "chains":
        return entry.get("chains") or "ok"
    if key == "rhat_max" and entry.get("single_chain"):
        return "n/a (1 chain)"
    text = format_number(entry.get(key))
    if key.startswith(("ratio_", "vs_reference_")) and entry.get("baseline_failed") and entry.get(key) is not None:
        text += " \u2020"
    return text


def _build(rows, command, files, traces, title, samplers, skipped_cells=(), opening: _Doc | None = None) -> _Doc:
    """The report document; ``opening`` (the "Cost to accuracy" section) comes first, after the warnings."""
    from .plots import group_title

    doc = _Doc()
    doc.heading(1, title)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc.para(f"Generated {now} from {len(rows)} cells. Per-cell figures are in `summary.csv`; "
             "the metrics are defined in `docs/diagnostics.md`.")
    failed = [row for row in rows if health.chain_failure(row)]
    if failed:
        doc.para(f"Warning: {len(failed)} of {len(rows)} cells have failed chains (acceptance below "
                 f"{health.MIN_ACCEPT}, over {health.MAX_BAD_FRACTION:.0%} of draws divergent or non-finite, "
                 f"or R-hat above {health.MAX_RHAT} with two or more chains): their ESS does not measure mixing. "
                 "They are marked FAILED in the `chains` column, `chain_failure` in `summary.csv`, and red "
                 "crosses in the plots; a ratio over a failed standard cell is marked \u2020.")
    if skipped_cells:
        doc.para(f"Warning: {len(skipped_cells)} cells were left out of this report:")
        doc.bullets(skipped_cells)
    if any(health.single_chain(row) for row in rows):
        doc.para("One-chain cells have no R-hat (it compares chains: run two or more) and no rank plot.")
    if opening is not None:
        doc.blocks.extend(opening.blocks)
    doc.heading(2, "Provenance")
    doc.para("Command:")
    doc.code(command)
    sampled_on = _distinct(rows, "machine")
    versions = _versions()
    items = [f"Sampling machine: {'; '.join(sampled_on) if sampled_on else 'not recorded in the rows'}",
             f"Report machine: {_this_machine()}",
             "Software (report): " + ", ".join(f"{k} {v}" for k, v in versions.items()),
             f"Python executable: `{sys.executable}`"]
    for key in ("reprior_version", "jax_version", "numpyro_version", "arviz_version", "dtype"):
        values = _distinct(rows, key)
        if values:
            items.append(f"{key} (sampling): {', '.join(values)}")
    doc.bullets(items)

    tables = comparison_tables(rows)
    doc.heading(2, "Results")
    doc.para("One row per width and parameterisation, averaged over seeds (`seeds` = cells averaged). "
             "ESS is ArviZ's bulk ESS, median over the test-prediction projections (`pred`) or theta "
             "projections (`theta`); ESS/draw, ESS/grad and ESS/s divide the median `pred` ESS by the "
             "draws, the sampling-phase gradient evaluations and the sampling seconds. `ratio/*` is the "
             "seed-averaged figure of the row divided by that of `standard` at the same width.")
    for key, entries in tables:
        doc.heading(3, group_title(key) or "all cells")
        headline = _headline(entries)
        if headline:
            doc.para(headline)
        doc.table([h for _, h in TABLE_COLUMNS], [[_format_entry(e, k) for k, _ in TABLE_COLUMNS] for e in entries])
        if any(e.get("baseline_failed") for e in entries):
            doc.para("\u2020 the standard cell at this width has failed chains: the ratio divides by an ESS "
                     "that does not measure mixing.")
    if samplers:
        doc.heading(2, "Samplers against standard NUTS")
        doc.para("Cells that sample the same network and data with different samplers, one row per width, "
                 "parameterisation and sampler (averaged over seeds). ESS/eval divides the median `pred` ESS by "
                 "the sampling-phase log-density evaluations, a gradient evaluation counting as one: it is "
                 "ESS/grad for the gradient-based kernels and the only cost count of the gradient-free ones "
                 "(`pcn`, `elliptical_slice`), whose evaluations are cheaper (no backward pass). `evals/draw` "
                 "counts every iteration behind a recorded draw (thinning included). `vs std NUTS` is the "
                 "row's figure over standard NUTS's at the same width. The `theta` columns measure the "
                 "weights themselves (random projections of theta): with the readout drawn exactly, the "
                 "test predictions inherit its independent draws and can mix faster than the hidden weights.")
        for key, entries in samplers:
            doc.heading(3, ", ".join(f"{k}={v}" for k, v in zip(comparison.TARGET_KEYS, key, strict=True) if v is not None))
            doc.para(_sampler_headline(entries))
            doc.table([h for _, h in SAMPLER_COLUMNS],
                      [[str(e[k]) if k == "sampler" else _format_entry(e, k) for k, _ in SAMPLER_COLUMNS]
                       for e in entries])
        doc.image(f"plots/{files['plot_ess_per_eval'].name}", "ESS per log-density evaluation (pred) vs width")
    doc.heading(2, "Plots")
    for name, caption in [("plot_ess_per_grad", "ESS per gradient evaluation (pred) vs width"),
                          ("plot_ess_per_grad_theta", "ESS per gradient evaluation (theta) vs width"),
                          ("plot_ratio", "ratio repriorised / standard vs width"),
                          ("plot_rhat", "max R-hat vs width")]:
        doc.heading(3, caption)
        doc.image(f"plots/{files[name].name}", caption)
    if traces:
        doc.heading(2, "Trace and rank plots (narrowest and widest cells)")
        for caption, trace, rank in traces:
            doc.heading(3, caption)
            doc.image(trace, f"trace plot, {caption}")
            if rank is None:
                doc.para("No rank plot: one chain (rank plots compare chains).")
            else:
                doc.image(rank, f"rank plot, {caption}")
    return doc
