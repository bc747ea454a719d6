"""The "Cost to accuracy" section of a sweep's report (:mod:`reprior.evaluation.accuracy`, :mod:`reprior.evaluation.reference`).

Per target and width, the cost at which each cell's error against a certified
reference falls below the threshold, and the ratio standard / repriorised of
those costs, censored where a side never got there (:func:`cost_ratio`,
:func:`accuracy_verdicts`).  Two measures are judged (:data:`MEASURES`): the
test predictions (``b2_mean`` and ``b2_second``, the crossing of
``b2_reached``) and the hidden weights (``b2_rb_mean``, the crossing of
``b2_rb_reached``).  At large width both parameterisations may reach the first
right after warm-up, since the readout carries most of the predictive variance;
the second says whether the hidden weights have moved, which is what
repriorisation changes.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from reprior.evaluation import comparison
from reprior.evaluation import diagnostics as dg
from reprior.inference import health
from reprior._util.checks import fail
from reprior.evaluation.accuracy import CURVE_COLUMNS, DEFAULT_THRESHOLD
from reprior.evaluation.accuracy import CURVE_FILE as ACCURACY_CURVE_FILE
from reprior.experiments.report import _slug, format_number

#: The measures of the verdict: the row key of the crossing, the suffix of its cost keys
#: (``<unit>_to_b2<suffix>``), the heading and the error's name in sentences.
MEASURES = {
    "predictive": {"reached": "b2_reached", "suffix": "", "title": "Test predictions (b² mean and b² second)",
                   "error": "b\u00b2"},
    "hidden": {"reached": "b2_rb_reached", "suffix": "_rb", "title": "Hidden weights (b² rb)",
               "error": "b\u00b2 rb"},
}

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
    """A cell's error curve (its ``accuracy.csv``, see :func:`reprior.evaluation.accuracy.error_curve`).

    Args:
        path: the CSV file; its header must hold :data:`reprior.evaluation.accuracy.CURVE_COLUMNS`.

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


def _is_scored(row: dict, measure: str = "predictive") -> bool:
    return not reference_failure(row) and reached(row.get(MEASURES[measure]["reached"])) is not None


def _width_value(value):
    number = dg.as_number(value)
    return int(number) if math.isfinite(number) and number.is_integer() else number


def _seed_entry(members: list[dict], measure: str = "predictive") -> dict:
    """One entry of :func:`accuracy_entries` from the rows (seeds) of one setting, kernel and chain settings."""
    first, spec = members[0], MEASURES[measure]
    entry = {k: first.get(k) for k in (*comparison.TARGET_KEYS, "parameterisation", "sampler", *_CHAIN_KEYS)}
    entry["measure"] = measure
    flags = [reached(m.get(spec["reached"])) for m in members]
    entry.update(width=_width_value(first.get("width")), num_seeds=len(members), num_crossed=sum(flags),
                 crossed=all(flags), threshold=dg.as_number(first.get("b2_threshold")),
                 has_grads=all(dg.as_number(m.get("budget_grads")) > 0 for m in members),
                 seeds=[m.get("seed") for m in members], cells=[m.get("cell") for m in members])
    for name in ("b2_pred_mean", "b2_pred_second", "b2_rb_mean"):
        entry[name] = health.finite_reduce(np.max, [dg.as_number(m.get(name)) for m in members])
    for unit in ("grads", "evals", "seconds"):
        costs = [dg.as_number(m.get(f"{unit}_to_b2{spec['suffix']}")) for m in members]
        entry[f"{unit}_to_b2"] = health.finite_reduce(np.median, costs) if entry["crossed"] else math.nan
        entry[f"budget_{unit}"] = health.finite_reduce(np.min, [dg.as_number(m.get(f"budget_{unit}")) for m in members])
    return entry


def accuracy_entries(rows: list[dict], measure: str = "predictive") -> list[dict]:
    """The rows scored against a certified reference, one entry per target
    (:data:`reprior.evaluation.comparison.TARGET_KEYS`), width, parameterisation, sampler and chain settings,
    for one of :data:`MEASURES` (its crossing read into ``crossed`` and ``<unit>_to_b2``).

    Over the seeds of an entry: ``crossed`` only if every seed reached the threshold
    (``num_crossed`` of ``num_seeds`` did); ``<unit>_to_b2`` the median crossing cost over
    seeds when crossed, else NaN; ``budget_<unit>`` the smallest whole-run cost; the ``b2_*``
    errors the largest (the worst seed); ``has_grads`` when every seed counted gradients.
    Sorted by target (first appearance), width, then ``standard`` first.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if _is_scored(row, measure):
            key = (comparison.target_key(row), dg.as_number(row.get("width")), row.get("parameterisation"),
                   row.get("sampler"), *(row.get(k) for k in _CHAIN_KEYS))
            groups.setdefault(key, []).append(row)
    order = {key: i for i, key in enumerate(dict.fromkeys(comparison.target_key(r) for r in rows))}
    entries = [_seed_entry(members, measure) for members in groups.values()]
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


def accuracy_verdicts(rows: list[dict], measure: str = "predictive") -> list[dict]:
    """The verdict of each target and width on one of :data:`MEASURES`:
    ``{"target", "width", "failure", "entries"}``.

    ``failure`` joins the distinct :func:`reference_failure` texts of its rows ("" when none
    has one); ``entries`` are those of :func:`accuracy_entries` there, with the comparison of
    :func:`_compare_at_width` (none where ``failure`` is set).  Sorted by target, then width.
    """
    entries = accuracy_entries(rows, measure)
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
    from reprior.experiments.plots import sampler_label  # a biased kernel says so

    param = entry["parameterisation"]
    text = f"{'repriorised' if param == 'reprior' else param} {sampler_label(entry['sampler'])}"
    return f"{text} ({entry['num_chains']}x{entry['num_samples']} draws)" if with_chains else text


def _clause(entry: dict, unit: str, *, first: bool, with_chains: bool = False) -> str:
    """``repriorised pcnl reached b² < 0.01 after 3.2e4 gradient evaluations (41 s)`` and the like;
    the second clause of a sentence (``first=False``) names neither threshold nor unit."""
    words, seeds = f" {COST_UNITS[unit]}" if first else "", entry["num_seeds"]
    threshold, error = format_number(entry["threshold"]), MEASURES[entry.get("measure", "predictive")]["error"]
    if entry["crossed"]:
        what = f"reached {error} < {threshold}" if first else "reached it"
        note = f"; median of {seeds} seeds" if seeds > 1 else ""
        return (f"{_label(entry, with_chains)} {what} after {_short(entry[f'{unit}_to_b2'])}{words} "
                f"({_short(entry['seconds_to_b2'])} s{note})")
    what = f"had not reached {error} < {threshold}" if first else "had not"
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
    from reprior.experiments.plots import sampler_label

    values["sampler"] = sampler_label(values["sampler"])
    return [str(values[k]) if k in ("parameterisation", "sampler", "draws", "reached", "unit", "ratio")
            else format_number(values[k]) for k, _ in ACCURACY_TABLE_COLUMNS]


def _target_title(target: tuple) -> str:
    from reprior.experiments.plots import group_title

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


def _accuracy_plots(doc, place: dict, out_dir: Path) -> dict[str, Path]:
    """Draw and embed ``b²`` against cost (gradient or log-density evaluations) and against seconds."""
    from reprior.experiments import plots

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


def add_accuracy_section(doc, rows: list[dict], out_dir) -> dict[str, Path]:
    """Append the "Cost to accuracy" section to ``doc`` (a :class:`reprior.experiments.report.Document`):
    per target and per measure of :data:`MEASURES`, one sentence per width (:func:`verdict_sentences`)
    and a table; then per width the plots of ``b²`` against cost and seconds, drawn from
    ``out_dir/cells/<cell>/accuracy.csv`` into ``out_dir/plots/``.

    Returns:
        ``{name: path}`` of the plots: ``plot_b2_<grads|evals|seconds>_<target>_w<width>``.
    """
    doc.heading(2, "Cost to accuracy")
    verdicts = {measure: accuracy_verdicts(rows, measure) for measure in MEASURES}
    if not verdicts["predictive"]:
        doc.para("No cell was scored against a reference: the rows have no `b2_*` figures (cells run before "
                 "cost to accuracy was measured). The ESS tables below are the only comparison.")
        return {}
    doc.para(_ACCURACY_INTRO)
    files: dict[str, Path] = {}
    targets = dict.fromkeys(place["target"] for place in verdicts["predictive"])
    for target in targets:
        doc.heading(3, _target_title(target) or "all cells")
        for measure, spec in MEASURES.items():
            places = [place for place in verdicts[measure] if place["target"] == target]
            if measure != "predictive":  # a missing reference is said once, under the predictions
                places = [place for place in places if not place["failure"]]
                if not any(place["entries"] for place in places):  # rows from before this measure was recorded
                    continue
            doc.para(f"**{spec['title']}**")
            doc.bullets(sentence for place in places for sentence in verdict_sentences(place))
            body = [_accuracy_cells(e) for place in places for e in place["entries"]]
            if body:
                doc.table([h for _, h in ACCURACY_TABLE_COLUMNS], body)
        for place in (p for p in verdicts["predictive"] if p["target"] == target):
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
    "columns give the worst seed. The same rule is applied twice: to the test predictions (`b² mean` and "
    "`b² second`) and to the hidden weights (`b² rb`: the error of the Rao-Blackwellised mean in units of the "
    "part of the predictive variance due to the hidden weights). At large width both parameterisations can "
    "reach the first right after warm-up, because the readout, drawn well in both, carries most of the "
    "predictive variance; the second says whether the hidden weights have moved, which is what "
    "repriorisation changes. In the plots, solid lines are the predictive error, dotted lines `b² rb`.")
