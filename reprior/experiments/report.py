"""The report of a width sweep: ``summary.csv``, ``report.md``, ``report.html`` and PNG plots.

Input is one *row* per grid cell: a dict with the settings columns
(:data:`SETTINGS_COLUMNS`) and the output of
:func:`reprior.evaluation.diagnostics.cell_metrics`, plus any extra columns (a cell key,
:func:`reprior.evaluation.diagnostics.run_info`'s provenance strings, ...), which are kept.
The tables average each figure over seeds and give the ratio repriorised /
standard at each width (:func:`reprior.evaluation.comparison.ratio_to_baseline`).

The report opens with the cost to accuracy (:mod:`reprior.experiments.report_accuracy`).
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

from reprior.evaluation import comparison
from reprior.evaluation import diagnostics as dg
from reprior.inference import health
from reprior._util.files import atomic_write_text
from reprior.evaluation.comparison import RATIO_METRICS, SAMPLER_RATIO_METRICS, SETTINGS_COLUMNS

_HEADLINE = ["grad_evals", "sample_seconds", "ess_bulk_pred_median", "ess_bulk_pred_min", "ess_bulk_theta_median",
             "ess_per_draw_pred", "ess_per_grad_pred", "ess_per_second_pred", "rhat_max", "accept_mean",
             "divergences", "test_rmse", "test_log_lik"]
#: The metrics of :func:`reprior.evaluation.diagnostics.cell_metrics`, headline figures first.
METRIC_COLUMNS = _HEADLINE + [m for m in dg.metric_names() if m not in _HEADLINE]
#: Every column of ``summary.csv``, in order; extra row keys follow them.
SUMMARY_COLUMNS = [*SETTINGS_COLUMNS, *METRIC_COLUMNS]
#: A cell's warnings, one line each, under ``out_dir/cells/<cell>/`` (written by the sweep; the
#: ``warnings`` column of a row counts them).
CELL_WARNINGS_FILE = "warnings.txt"
#: At most this many distinct warning texts are quoted per cell in the report.
MAX_QUOTED_WARNINGS = 3
#: The posterior of an inferred noise, tabled under its group's results when finite.
NOISE_METRICS = ("noise_std_mean", "noise_std_sd")
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
    """Per comparison group (:data:`reprior.evaluation.comparison.COMPARISON_KEYS`): its table rows,
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
    (:func:`reprior.inference.health.chain_failure`, ``"seed S: ..."`` per failed seed), "" if none failed;
    ``warnings``, how many warnings its cells raised (the rows' ``warnings`` column); and
    ``single_chain`` when its cells have one chain each."""
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
        entry["warnings"] = sum(_warning_count(row) for row in cells)


def _warning_count(row: dict) -> int:
    """The ``warnings`` figure of a row (0 when absent or not a count)."""
    count = dg.as_number(row.get("warnings"))
    return int(count) if count is not None and math.isfinite(count) and count > 0 else 0


def cell_warnings(out_dir, rows: list[dict]) -> dict[str, list[str]]:
    """``{cell: distinct warning texts}`` of the rows whose ``warnings`` count is positive, read from
    ``out_dir/cells/<cell>/warnings.txt`` (:data:`CELL_WARNINGS_FILE`), each line without its
    ``(file:line)`` location; a missing or unreadable file gives ``[]`` (the count is still shown)."""
    out: dict[str, list[str]] = {}
    for row in rows:
        cell = next((str(row[k]) for k in CELL_ID_COLUMNS if row.get(k)), None)
        if cell is None or not _warning_count(row):
            continue
        try:
            lines = (Path(out_dir) / "cells" / cell / CELL_WARNINGS_FILE).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            lines = []
        texts = [line.rsplit(" (", 1)[0] if line.endswith(")") else line for line in lines if line.strip()]
        out[cell] = list(dict.fromkeys(texts))
    return out


def sampler_tables(rows: list[dict]) -> list[tuple[tuple, list[dict]]]:
    """Per target (:data:`reprior.evaluation.comparison.TARGET_KEYS`) run by more than one sampler: one
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


def sampler_headline(entries: list[dict]) -> str:
    """The sentences above one table of :func:`sampler_tables` (its ``entries``): per width, the entry with
    the highest ESS/eval ratio to standard NUTS and the one with the highest ESS/s ratio, among the exact
    kernels whose chains did not fail; the biased kernels there
    (:data:`reprior.experiments.plots.BIASED_SAMPLERS`) are named as left out, never best."""
    from reprior.experiments.plots import BIASED_SAMPLERS

    sentences = []
    biased = sorted({str(e["sampler"]) for e in entries if str(e["sampler"]) in BIASED_SAMPLERS})
    for width in dict.fromkeys(e["width"] for e in entries):
        others = [e for e in entries if e["width"] == width and (e["parameterisation"], e["sampler"]) != comparison.REFERENCE
                  and not e.get("chains") and not e.get("baseline_failed") and str(e["sampler"]) not in BIASED_SAMPLERS]
        parts = []
        for metric, what in (("ess_per_eval_pred", "ESS/eval"), ("ess_per_second_pred", "ESS/s")):
            finite = [e for e in others if math.isfinite(e[f"vs_reference_{metric}"])]
            if finite:
                best = max(finite, key=lambda e: e[f"vs_reference_{metric}"])
                parts.append(f"{what} {format_number(best[f'vs_reference_{metric}'])}x "
                             f"(`{best['parameterisation']}` `{best['sampler']}`)")
        if parts:
            sentences.append(f"Width {width}, best against standard NUTS: " + ", ".join(parts) + ".")
    if biased:
        sentences.append(", ".join(f"`{name}`" for name in biased) + " "
                         + ("is" if len(biased) == 1 else "are") + " left out of the best ("
                         + "; ".join(BIASED_SAMPLERS[name] for name in biased)
                         + "): an ESS of biased draws does not measure the distance to the posterior.")
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


# -- provenance ------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    """Versions of this environment (package metadata; nothing is imported)."""
    from importlib import metadata

    from reprior import __version__

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"python": platform.python_version(), "reprior": __version__,
            **{name: version(name) for name in ("jax", "jaxlib", "numpyro", "arviz", "numpy", "matplotlib")}}


def _commands(command: str) -> list[str]:
    """The distinct commands of ``command`` (one per line), each once, in order; spaces normalised."""
    return list(dict.fromkeys(" ".join(line.split()) for line in str(command or "").splitlines() if line.strip()))


def _this_machine() -> str:
    return f"{platform.node()}: {platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} cpus"


def _distinct(rows, key) -> list[str]:
    return [str(v) for v in dict.fromkeys(row.get(key) for row in rows) if v not in (None, "")]


# -- the document ----------------------------------------------------------------------
class Document:
    """A report document: a list of blocks rendered to Markdown and to self-contained HTML.

    :func:`write_report` builds one; a section is a function that appends blocks to it, as
    :func:`reprior.experiments.report_accuracy.add_accuracy_section` and
    :func:`reprior.experiments.report_limits.add_limits_section` do.  Text may hold
    ``code`` spans (backticks), which both renderings keep.

    Attributes:
        blocks: the blocks in order, ``(kind, *content)`` tuples.
    """

    def __init__(self):
        self.blocks: list[tuple] = []

    def heading(self, level, text):
        """Append a heading of ``level`` (1 is the title)."""
        self.blocks.append(("h", level, text))

    def para(self, text):
        """Append a paragraph."""
        self.blocks.append(("p", text))

    def bullets(self, items):
        """Append a bulleted list, one item per string of ``items``."""
        self.blocks.append(("ul", list(items)))

    def code(self, text):
        """Append a code block, shown verbatim."""
        self.blocks.append(("code", text))

    def table(self, header, body):
        """Append a table: ``header`` a list of column names, ``body`` a list of rows of strings."""
        self.blocks.append(("table", header, body))

    def image(self, rel_path, alt):
        """Append an image at ``rel_path`` (relative to the report's folder) with the text ``alt``."""
        self.blocks.append(("img", rel_path, alt))

    def markdown(self) -> str:
        """The document as Markdown (``report.md``)."""
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
        """The document as one self-contained HTML page titled ``title`` (``report.html``)."""

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
        rows: one dict per cell: settings columns plus :func:`reprior.evaluation.diagnostics.cell_metrics`.
        command: the exact command that produced the sweep, quoted in the report.
        cells_idata: optional ``{cell id: NetCDF path}``; trace and rank plots are drawn for
            the narrowest and widest cells (see :func:`extreme_cells`).
        title: the report's title.
        skipped_cells: one line per cell left out (e.g. broken files), listed in the report.

    The report opens with the "Cost to accuracy" verdict (:func:`reprior.experiments.report_accuracy.add_accuracy_section`), from the
    rows' ``b2_*`` figures and the error curves ``out_dir/cells/<cell>/accuracy.csv``.
    Every file is written atomically.  Cells whose chains failed
    (:func:`reprior.inference.health.chain_failure`) are marked in the tables (``chains``
    column), in ``summary.csv`` (``chain_failure``) and in the plots (hollow
    markers); a ratio over a failed standard cell carries a dagger.  Biased kernels
    (:data:`reprior.experiments.plots.BIASED_SAMPLERS`, e.g. unadjusted MCLMC) are labelled as such in
    tables and legends, and never named best.  One-chain
    cells get no rank plot and their R-hat reads ``n/a (1 chain)``.

    Returns:
        ``{name: path}`` of every file written: ``summary_csv``, ``report_md``,
        ``report_html``, ``plot_ess_per_grad``, ``plot_ess_per_grad_theta``,
        ``plot_ratio``, ``plot_rhat``, ``plot_ess_per_eval`` (only when some target was
        run by several samplers, see :func:`sampler_tables`), ``trace_<cell>``/``rank_<cell>`` per plotted cell,
        and the cost-to-accuracy plots of :func:`reprior.experiments.report_accuracy.add_accuracy_section` (``plot_b2_*``).
    """
    from reprior.experiments import plots
    from reprior.experiments.report_accuracy import add_accuracy_section
    from reprior.experiments.report_limits import add_limits_section

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

    verdict = Document()
    files.update(add_accuracy_section(verdict, rows, out_dir))  # reprior.experiments.report_accuracy
    doc = _build(rows, command, files, traces, title, samplers, skipped_cells or [], opening=verdict,
                 warned=cell_warnings(out_dir, rows))
    files.update(add_limits_section(doc, rows, plot_dir))  # "Distance to the infinite-width limit"
    files["report_md"] = _write_text(out_dir / "report.md", doc.markdown())
    files["report_html"] = _write_text(out_dir / "report.html", doc.html(title))
    return files


def _write_text(path: Path, text: str) -> Path:
    return atomic_write_text(path, text)


def format_entry(entry: dict, key: str) -> str:
    """The text of column ``key`` of a table row ``entry`` (of :func:`comparison_tables` or
    :func:`sampler_tables`): numbers by :func:`format_number`, R-hat of one-chain cells explained, ratios
    over a failed baseline flagged with a dagger, biased kernels named so
    (:func:`reprior.experiments.plots.sampler_label`) and warnings counted in the ``chains`` column."""
    from reprior.experiments.plots import BIASED_SAMPLERS, sampler_label

    if key == "parameterisation":
        return str(entry[key])
    if key == "sampler":
        return sampler_label(entry[key])
    if key == "chains":
        biased = BIASED_SAMPLERS.get(str(entry.get("sampler")))
        count = entry.get("warnings") or 0
        noted = count and f"{count} warning{'s' if count != 1 else ''} (see Warnings)"
        return "; ".join(t for t in (entry.get("chains") or "ok", noted, biased and f"biased kernel ({biased})") if t)
    if key == "rhat_max" and entry.get("single_chain"):
        return "n/a (1 chain)"
    text = format_number(entry.get(key))
    if key.startswith(("ratio_", "vs_reference_")) and entry.get("baseline_failed") and entry.get(key) is not None:
        text += " \u2020"
    return text


def _build(rows, command, files, traces, title, samplers, skipped_cells=(), opening: Document | None = None,
           warned: dict[str, list[str]] | None = None) -> Document:
    """The report document; ``opening`` (the "Cost to accuracy" section) comes first, after the warnings;
    ``warned`` (:func:`cell_warnings`) gives the "Warnings" section."""
    doc = Document()
    doc.heading(1, title)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc.para(f"Generated {now} from {len(rows)} cells. Per-cell figures are in `summary.csv`; "
             "the metrics are defined in `docs/diagnostics.md`.")
    warned_rows = [row for row in rows if _warning_count(row)]
    _add_notices(doc, rows, skipped_cells, warned_rows)
    if opening is not None:
        doc.blocks.extend(opening.blocks)
    _add_provenance(doc, rows, command)
    _add_results(doc, rows)
    if samplers:
        _add_samplers(doc, samplers, files)
    if warned_rows:
        _add_warnings(doc, warned_rows, warned)
    _add_plots(doc, files, traces)
    return doc


def _add_notices(doc: Document, rows, skipped_cells, warned_rows) -> None:
    """The warnings under the title: failed chains, cells left out, cells that warned, one-chain cells."""
    failed = [row for row in rows if health.chain_failure(row)]
    if failed:
        doc.para(f"Warning: {len(failed)} of {len(rows)} cells have failed chains (acceptance below "
                 f"{health.MIN_ACCEPT}, over {health.MAX_BAD_FRACTION:.0%} of draws divergent or non-finite, "
                 f"or R-hat above {health.MAX_RHAT} with two or more chains): their ESS does not measure mixing. "
                 "They are marked FAILED in the `chains` column, `chain_failure` in `summary.csv`, and hollow "
                 "markers in the plots; a ratio over a failed standard cell is marked \u2020.")
    if skipped_cells:
        doc.para(f"Warning: {len(skipped_cells)} cells were left out of this report:")
        doc.bullets(skipped_cells)
    if warned_rows:
        doc.para(f"Warning: {len(warned_rows)} of {len(rows)} cells raised warnings while sampling (the library's "
                 "or its dependencies'); they are counted in the `chains` column and listed under Warnings.")
    if any(health.single_chain(row) for row in rows):
        doc.para("One-chain cells have no R-hat (it compares chains: run two or more) and no rank plot.")


def _add_provenance(doc: Document, rows, command) -> None:
    """The "Provenance" section: the command(s), the machines and the software versions."""
    doc.heading(2, "Provenance")
    doc.para("Command:" if len(_commands(command)) < 2 else "Commands:")
    doc.code("\n".join(_commands(command)))
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


def _add_results(doc: Document, rows) -> None:
    """The "Results" section: one comparison table per group, with the inferred noise where there is one."""
    from reprior.experiments.plots import group_title

    tables = comparison_tables(rows)
    doc.heading(2, "Results")
    doc.para("One row per width and parameterisation, averaged over seeds (`seeds` = cells averaged). "
             "ESS is ArviZ's bulk ESS, median over the test-prediction projections (`pred`) or theta "
             "projections (`theta`); ESS/draw, ESS/grad and ESS/s divide the median `pred` ESS by the "
             "draws, the sampling-phase gradient evaluations and the sampling seconds. `ratio/*` is the "
             "seed-averaged figure of the row divided by that of `standard` at the same width. `noise_std` in "
             "the headings is in the units of the targets as loaded: standardised (unit variance on the "
             "training points) for diabetes, and for csv and npz unless `standardise = false`; one-hot minus "
             "0.1 for digits and cifar10; raw for synthetic.")
    noises = _inferred_noises(rows)
    for key, entries in tables:
        doc.heading(3, group_title(key) or "all cells")
        headline = _headline(entries)
        if headline:
            doc.para(headline)
        doc.table([h for _, h in TABLE_COLUMNS], [[format_entry(e, k) for k, _ in TABLE_COLUMNS] for e in entries])
        if any(e.get("baseline_failed") for e in entries):
            doc.para("\u2020 the standard cell at this width has failed chains: the ratio divides by an ESS "
                     "that does not measure mixing.")
        if key in noises:
            doc.para("The inferred noise: posterior mean and standard deviation of `noise_std` (in the units of "
                     "the targets as loaded), averaged over seeds.")
            doc.table(["width", "parameterisation", "seeds", "noise_std mean", "noise_std sd"],
                      [[str(e["width"]), str(e["parameterisation"]), str(e["num_seeds"]),
                        format_number(e["noise_std_mean"]), format_number(e["noise_std_sd"])] for e in noises[key]])


def _inferred_noises(rows) -> dict:
    """The seed-averaged entries of cells whose noise was inferred, keyed by their comparison group."""
    noises = {}
    for entry in comparison.average_over_seeds(rows, NOISE_METRICS):
        if math.isfinite(entry["noise_std_mean"]) and not math.isfinite(dg.as_number(entry.get("noise_std"))):
            noises.setdefault(comparison.comparison_key(entry), []).append(entry)
    return noises


def _add_samplers(doc: Document, samplers, files) -> None:
    """The "Samplers against standard NUTS" section: one table per target (:func:`sampler_tables`)."""
    from reprior.experiments.plots import target_title

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
        doc.heading(3, target_title(key) or "all cells")
        doc.para(sampler_headline(entries))
        doc.table([h for _, h in SAMPLER_COLUMNS],
                  [[format_entry(e, k) for k, _ in SAMPLER_COLUMNS] for e in entries])
    doc.image(f"plots/{files['plot_ess_per_eval'].name}", "ESS per log-density evaluation (pred) vs width")


def _add_warnings(doc: Document, warned_rows, warned) -> None:
    """The "Warnings" section: per cell that warned, its distinct warnings (``warned``, :func:`cell_warnings`)."""
    doc.heading(2, "Warnings")
    doc.para("Per cell, the distinct warnings it raised (up to "
             f"{MAX_QUOTED_WARNINGS}); every line, with where it was raised, is in "
             f"`cells/<cell>/{CELL_WARNINGS_FILE}`.")
    items = []
    for row in warned_rows:
        cell = next((str(row[k]) for k in CELL_ID_COLUMNS if row.get(k)), "?")
        texts = (warned or {}).get(cell, [])
        quoted = "; ".join(texts[:MAX_QUOTED_WARNINGS]) or "(file not found)"
        more = f" (+{len(texts) - MAX_QUOTED_WARNINGS} more)" if len(texts) > MAX_QUOTED_WARNINGS else ""
        items.append(f"`{cell}` (width {row.get('width')}, {row.get('parameterisation')}, sampler "
                     f"{row.get('sampler')}, seed {row.get('seed')}): {_warning_count(row)} warnings: {quoted}{more}")
    doc.bullets(items)


def _add_plots(doc: Document, files, traces) -> None:
    """The "Plots" section (the width plots) and the trace and rank plots of the plotted cells."""
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
