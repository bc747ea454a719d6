"""Tests for reprior.experiments.report: summary.csv schema, tables and ratios, report files, the docs example."""

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest

from reprior.inference.arviz_compat import from_dict
from reprior.evaluation import diagnostics as dg
from reprior.experiments import report, report_accuracy

DOCS = Path(__file__).resolve().parents[1] / "docs" / "diagnostics.md"
REQUIRED = ["arch", "depth", "width", "parameterisation", "readout", "sampler", "seed", "num_chains", "num_samples",
            "grad_evals", "sample_seconds", "ess_bulk_pred_median", "ess_bulk_pred_min", "ess_bulk_theta_median",
            "ess_per_grad_pred", "ess_per_second_pred", "rhat_max", "accept_mean", "divergences", "test_rmse"]
SETTINGS = ["arch", "depth", "width", "activation", "dataset", "n_train", "n_test", "noise_std", "parameterisation",
            "readout", "sampler", "seed", "num_chains", "num_warmup", "num_samples"]

# ESS/draw, ESS/grad, ESS/s (pred) per (width, parameterisation, seed).  Seed averages:
#   width 8:   standard (0.1, 0.002, 10), reprior (0.3, 0.005, 15), reprior-sampled (0.2, 0.001, 40)
#   width 128: standard (0.05, 0.001, 4), reprior (0.5, 0.01, 2) [one seed]
FIGURES = {
    (8, "standard", 0): (0.05, 0.001, 5.0), (8, "standard", 1): (0.15, 0.003, 15.0),
    (8, "reprior", 0): (0.2, 0.004, 10.0), (8, "reprior", 1): (0.4, 0.006, 20.0),
    (8, "reprior-sampled", 0): (0.2, 0.001, 40.0),
    (128, "standard", 0): (0.04, 0.0005, 3.0), (128, "standard", 1): (0.06, 0.0015, 5.0),
    (128, "reprior", 0): (0.5, 0.01, 2.0),
}
EXPECTED_RATIOS = {  # (width, parameterisation): (ratio/draw, ratio/grad, ratio/s)
    (8, "reprior"): (3.0, 2.5, 1.5), (8, "reprior-sampled"): (2.0, 0.5, 4.0), (128, "reprior"): (10.0, 10.0, 0.5),
}


def _rows(extra=None):
    rows = []
    for (width, param, seed), (per_draw, per_grad, per_second) in FIGURES.items():
        row = {"arch": "mlp", "depth": 1, "width": width, "activation": "relu", "dataset": "digits",
               "n_train": 128, "n_test": 64, "noise_std": 0.1, "parameterisation": param,
               "readout": "sampled" if param == "reprior-sampled" else "exact", "sampler": "nuts",
               "seed": seed, "num_chains": 2, "num_warmup": 10, "num_samples": 10}
        row.update(dict.fromkeys(dg.metric_names(), float("nan")))
        row.update(ess_per_draw_pred=per_draw, ess_per_grad_pred=per_grad, ess_per_second_pred=per_second,
                   ess_bulk_pred_median=per_draw * 20, rhat_max=1.0 + seed / 100, divergences=seed,
                   machine="test-machine x86_64", cell=f"{width}-{param}-{seed}")
        row.update(extra or {})
        rows.append(row)
    return rows


def _table(markdown: str) -> list[dict]:
    """The first Markdown table under '## Results', as dicts keyed by header."""
    section = markdown.split("## Results", 1)[1]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, [c.strip() for c in ln.strip("|").split("|")], strict=True)) for ln in lines[2:]]


# -- summary.csv ---------------------------------------------------------------------------
def test_summary_columns_schema():
    assert report.SUMMARY_COLUMNS[:len(SETTINGS)] == SETTINGS
    assert set(REQUIRED) <= set(report.SUMMARY_COLUMNS)
    assert len(set(report.SUMMARY_COLUMNS)) == len(report.SUMMARY_COLUMNS)
    assert set(dg.metric_names()) <= set(report.SUMMARY_COLUMNS)


def test_summary_csv_one_row_per_cell(tmp_path):
    rows = _rows()
    path = report.write_summary_csv(rows, tmp_path / "out" / "summary.csv")
    with open(path, newline="") as stream:
        lines = list(csv.reader(stream))
    header, body = lines[0], lines[1:]
    assert header[:len(report.SUMMARY_COLUMNS)] == report.SUMMARY_COLUMNS
    assert header[len(report.SUMMARY_COLUMNS):] == ["machine", "cell"]  # extra keys kept, after the schema
    assert len(body) == len(rows) and all(len(line) == len(header) for line in body)
    back = report.read_summary_csv(path)
    assert [r["cell"] for r in back] == [r["cell"] for r in rows]
    assert back[1]["ess_per_grad_pred"] == rows[1]["ess_per_grad_pred"]  # full precision
    assert back[1]["seed"] == 1 and math.isnan(back[1]["test_rmse"])
    partial = report.write_summary_csv([{"width": 4}], tmp_path / "partial.csv")
    assert report.read_summary_csv(partial)[0]["arch"] is None  # absent -> empty cell


# -- tables and ratios ---------------------------------------------------------------------
def test_comparison_table_ratios_by_hand():
    [(key, entries)] = report.comparison_tables(_rows())
    assert key[0] == "mlp"
    got = {(e["width"], e["parameterisation"]): e for e in entries}
    assert [(e["width"], e["parameterisation"]) for e in entries] == [
        (8, "standard"), (8, "reprior"), (8, "reprior-sampled"), (128, "standard"), (128, "reprior")]
    for cell, ratios in EXPECTED_RATIOS.items():
        e = got[cell]
        assert (e["ratio_ess_per_draw_pred"], e["ratio_ess_per_grad_pred"], e["ratio_ess_per_second_pred"]) == \
            pytest.approx(ratios, rel=1e-12)
    assert got[(8, "standard")]["num_seeds"] == 2 and got[(128, "reprior")]["num_seeds"] == 1
    assert got[(8, "standard")]["ratio_ess_per_grad_pred"] is None


def test_format_number():
    assert [report.format_number(v) for v in (2, 2.5, 0.001234, 12345.6, float("nan"), None, "x")] == \
        ["2", "2.5", "0.00123", "12346", "nan", "-", "x"]


# -- the report files ------------------------------------------------------------------------
def test_write_report_files_and_tables(tmp_path):
    command = "reprior sweep --config experiments/quick.toml --out runs/q"
    files = report.write_report(tmp_path, _rows(), command=command)
    for name in ("summary_csv", "report_md", "report_html", "plot_ess_per_grad", "plot_ratio", "plot_rhat"):
        assert files[name].is_file() and files[name].stat().st_size > 0, name
    for path in files.values():
        assert path.parent in (tmp_path, tmp_path / "plots")
    md = files["report_md"].read_text()
    table = {(int(r["width"]), r["parameterisation"]): r for r in _table(md)}
    assert len(table) == 5
    for cell, ratios in EXPECTED_RATIOS.items():
        shown = [float(table[cell][c]) for c in ("ratio/draw", "ratio/grad", "ratio/s")]
        assert shown == pytest.approx(ratios, rel=5e-3)  # 3 significant figures
    assert table[(8, "standard")]["ratio/grad"] == "-"
    assert table[(8, "reprior")]["seeds"] == "2" and table[(128, "reprior")]["seeds"] == "1"
    assert float(table[(8, "reprior")]["ESS/grad"]) == pytest.approx(0.005)
    assert "`reprior`: ESS per gradient evaluation (pred) above standard at every width" in md
    assert "`reprior-sampled`: ESS per gradient evaluation (pred) not above standard" in md
    # Provenance: command, machines, versions.
    html_text = files["report_html"].read_text()
    for text in (md, html_text):
        assert command in text and "test-machine x86_64" in text
        for package in ("python", "jax", "numpyro", "arviz", "reprior"):
            assert re.search(rf"\b{package} \d", text), package
    # HTML: self-contained, images relative and present.
    sources = re.findall(r'<img src="([^"]+)"', html_text)
    assert sources and all(not s.startswith(("/", "http")) and (tmp_path / s).is_file() for s in sources)
    assert "<table>" in html_text and "<script" not in html_text


def test_write_report_trace_and_rank_for_extreme_widths(tmp_path):
    rng = np.random.default_rng(0)
    rows = _rows()
    cells = {}
    for row in rows:
        if row["seed"] == 0 and row["parameterisation"] == "standard":
            idata = from_dict({"posterior": {"theta_proj": rng.standard_normal((2, 20, 3))},
                               "posterior_predictive": {"f_test": rng.standard_normal((2, 20, 4, 1))}},
                              dims={"theta_proj": ["projection"], "f_test": ["test", "output"]})
            cells[row["cell"]] = tmp_path / f"{row['cell']}.nc"
            idata.to_netcdf(str(cells[row["cell"]]))
    files = report.write_report(tmp_path / "report", rows, command="cmd", cells_idata=cells)
    traces = sorted(name for name in files if name.startswith(("trace_", "rank_")))
    assert traces == ["rank_128-standard-0", "rank_8-standard-0", "trace_128-standard-0", "trace_8-standard-0"]
    assert all(files[name].stat().st_size > 5000 for name in traces)
    md = files["report_md"].read_text()
    assert "narrowest: width 8, standard, seed 0" in md and "widest: width 128, standard, seed 0" in md
    assert "(plots/trace_8-standard-0.png)" in md


def test_write_report_rejects_non_rows(tmp_path):
    with pytest.raises(ValueError, match="rows"):
        report.write_report(tmp_path, {"a": 1}, command="x")


# -- the docs page --------------------------------------------------------------------------------
@pytest.mark.e2e  # the report page's sweep: about 10 s
def test_docs_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), namespace)  # noqa: S102
    rows = namespace["rows"]
    assert [r["parameterisation"] for r in rows] == ["standard", "reprior"]
    assert all(np.isfinite(r["ess_per_grad_pred"]) and np.isfinite(r["test_rmse"]) for r in rows)
    assert math.isnan(rows[0]["ess_bulk_phi_median"]) and np.isfinite(rows[1]["ess_bulk_phi_median"])
    assert (tmp_path / "example_report" / "report.html").is_file()
    table = _table((tmp_path / "example_report" / "report.md").read_text())
    assert float(table[1]["ratio/grad"]) == pytest.approx(
        rows[1]["ess_per_grad_pred"] / rows[0]["ess_per_grad_pred"], rel=5e-3)


# -- samplers against standard NUTS ----------------------------------------------------------
def _sampler_rows():
    """Standard NUTS and two repriorised kernels on one target, at widths 8 and 128; a NUTS run at
    width 8 with other chain settings, and a kernel run on another data size (no reference)."""
    figures = {  # (width, parameterisation, sampler, num_chains, n_train): (ESS/eval, ESS/s, evals, draws)
        (8, "standard", "nuts", 2, 128): (0.001, 2.0, 5000, 100),
        (8, "reprior", "pcn", 4, 128): (0.004, 3.0, 2000, 200),
        (8, "reprior", "elliptical_slice", 4, 128): (0.002, 8.0, 6000, 200),
        (8, "standard", "nuts", 4, 128): (0.5, 0.5, 100, 10),  # a second NUTS entry: not the reference
        (128, "standard", "nuts", 2, 128): (0.0005, 1.0, 9000, 100),
        (128, "reprior", "pcn", 4, 128): (0.05, 30.0, 2000, 200),
        (128, "reprior", "pcn", 4, 256): (0.07, 7.0, 2000, 200),
    }
    rows = []
    for (width, param, sampler, chains, n_train), (per_eval, per_second, evals, draws) in figures.items():
        row = {"arch": "mlp", "depth": 1, "width": width, "activation": "relu", "dataset": "digits",
               "n_train": n_train, "n_test": 64, "noise_std": 0.1, "parameterisation": param, "readout": "exact",
               "sampler": sampler, "seed": 0, "num_chains": chains, "num_warmup": 10, "num_samples": draws // chains}
        row.update(dict.fromkeys(dg.metric_names(), float("nan")))
        row.update(ess_per_eval_pred=per_eval, ess_per_second_pred=per_second, logdensity_evals=evals,
                   num_draws=draws, ess_bulk_pred_median=per_eval * evals, cell=f"{width}-{sampler}-{chains}")
        rows.append(row)
    return rows


def test_sampler_tables_divide_by_standard_nuts_of_the_same_target_and_width():
    tables = report.sampler_tables(_sampler_rows())
    assert len(tables) == 1  # the n_train=256 target has a single sampler: no table
    key, entries = tables[0]
    assert dict(zip(dg.TARGET_KEYS, key, strict=True))["n_train"] == 128
    got = {(e["width"], e["sampler"], e["num_chains"]): e for e in entries}
    assert got[(8, "pcn", 4)]["vs_reference_ess_per_eval_pred"] == pytest.approx(4.0, rel=1e-12)
    assert got[(8, "pcn", 4)]["vs_reference_ess_per_second_pred"] == pytest.approx(1.5, rel=1e-12)
    assert got[(8, "elliptical_slice", 4)]["vs_reference_ess_per_second_pred"] == pytest.approx(4.0, rel=1e-12)
    assert got[(128, "pcn", 4)]["vs_reference_ess_per_eval_pred"] == pytest.approx(100.0, rel=1e-12)
    assert got[(8, "nuts", 2)]["vs_reference_ess_per_eval_pred"] == pytest.approx(1.0, rel=1e-12)
    assert got[(8, "pcn", 4)]["evals_per_draw"] == pytest.approx(10.0, rel=1e-12)
    # widths ascending, the reference first at each width
    assert [(e["width"], e["sampler"]) for e in entries][:2] == [(8, "nuts"), (8, "nuts")]
    assert entries[0]["num_chains"] == 2


def test_report_has_a_samplers_section_only_with_several_samplers(tmp_path):
    files = report.write_report(tmp_path / "mixed", _sampler_rows(), command="reprior sweep ...")
    text = files["report_md"].read_text()
    assert "## Samplers against standard NUTS" in text
    assert "Width 128, best against standard NUTS: ESS/eval 100x (`reprior` `pcn`), ESS/s 30x" in text
    assert files["plot_ess_per_eval"].exists()
    files = report.write_report(tmp_path / "nuts", _rows(), command="reprior sweep ...")
    assert "Samplers against standard NUTS" not in files["report_md"].read_text()
    assert "plot_ess_per_eval" not in files


# -- cost to accuracy ----------------------------------------------------------------------------
ACCURACY_SETTINGS = {"arch": "mlp", "depth": 1, "activation": "relu", "dataset": "digits", "n_train": 128,
                     "n_test": 64, "noise_std": 0.1, "readout": "exact", "num_chains": 4, "num_warmup": 100,
                     "num_samples": 100}


def _scored(width, param, sampler, *, to_b2=None, budget, seed=0, seconds=None, grads=True, failure="", **extra):
    """A summary row scored against a reference: crossed at cost ``to_b2`` (None: not crossed) of ``budget``."""
    crossed = to_b2 is not None
    cost = to_b2 if crossed else math.nan
    row = dict(ACCURACY_SETTINGS, width=width, parameterisation=param, sampler=sampler, seed=seed,
               cell=f"w{width}-{param}-{sampler}-{extra.get('num_samples', 100)}-s{seed}",
               b2_pred_mean=0.004 if crossed else 0.03, b2_pred_second=0.002 if crossed else 0.05, b2_rb_mean=0.02,
               b2_threshold=0.01, b2_reached=crossed, grads_to_b2=cost if grads else math.nan, evals_to_b2=cost,
               seconds_to_b2=(seconds if seconds is not None else cost / 1000) if crossed else math.nan,
               budget_grads=budget if grads else 0.0, budget_evals=budget, budget_seconds=budget / 1000,
               reference_id="" if failure else "ref-1", reference_failure=failure)
    row.update(extra)
    return row


def _verdict(tmp_path, rows, *, full=False) -> tuple[str, dict]:
    """The "Cost to accuracy" section (of the whole report with ``full``) and its table rows keyed by
    (width, parameterisation, sampler, chains x draws)."""
    if full:
        md = report.write_report(tmp_path, rows, command="reprior sweep ...")["report_md"].read_text()
    else:
        doc = report.Document()
        report_accuracy.add_accuracy_section(doc, rows, tmp_path)
        md = doc.markdown()
    section = md.split("## Cost to accuracy", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    table, header = {}, None  # the first table (the test predictions') where a row is in two
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "width":
            header = cells
        elif not set(cells[0]) <= set("-: "):
            row = dict(zip(header, cells, strict=True))
            table.setdefault((int(row["width"]), row["parameterisation"], row["sampler"], row["chains x draws"]), row)
    return section, table


def _sentence(section: str, width: int) -> str:
    [line] = [ln for ln in section.splitlines() if ln.startswith(f"- width {width}:")]
    return line


def test_verdict_both_crossed_gives_the_ratio(tmp_path):
    # standard needs 4e4 gradient evaluations, repriorised 1e4: 4e4 / 1e4 = 4
    rows = [_scored(8, "standard", "nuts", to_b2=4e4, budget=1e5), _scored(8, "reprior", "pcnl", to_b2=1e4, budget=1e5)]
    section, table = _verdict(tmp_path, rows)
    line = _sentence(section, 8)
    assert "repriorised pcnl reached b² < 0.01 after 1.0e4 gradient evaluations (10 s)" in line
    assert "standard nuts reached it after 4.0e4 (40 s): 4.0x fewer gradient evaluations." in line
    assert table[(8, "reprior", "pcnl", "4x100")]["ratio/bound"] == "4.0"
    assert table[(8, "standard", "nuts", "4x100")]["ratio/bound"] == "-"
    assert table[(8, "reprior", "pcnl", "4x100")]["counted"] == "grads"
    [place] = report_accuracy.accuracy_verdicts(rows)
    assert place["entries"][1]["ratio_kind"] == "ratio" and place["entries"][1]["ratio"] == pytest.approx(4.0)


def test_verdict_only_repriorised_crossed_is_a_lower_bound(tmp_path):
    # standard's whole run 1.1e5 without crossing, repriorised crossed at 3.2e4: ratio >= 1.1e5 / 3.2e4 = 3.44
    rows = [_scored(256, "standard", "nuts", budget=1.1e5), _scored(256, "reprior", "pcnl", to_b2=3.2e4, budget=1e5,
                                                                   seconds=41.0)]
    section, table = _verdict(tmp_path, rows)
    assert _sentence(section, 256) == (
        "- width 256: repriorised pcnl reached b² < 0.01 after 3.2e4 gradient evaluations (41 s); standard nuts had "
        "not after 1.1e5 (its whole run, 110 s): at least 3.4x fewer gradient evaluations.")
    assert table[(256, "reprior", "pcnl", "4x100")]["ratio/bound"] == ">= 3.4"
    assert table[(256, "standard", "nuts", "4x100")]["reached"] == "no"
    assert table[(256, "standard", "nuts", "4x100")]["cost to b²"] == "-"
    [place] = report_accuracy.accuracy_verdicts(rows)
    assert place["entries"][1]["ratio"] == pytest.approx(1.1e5 / 3.2e4)


def test_verdict_only_standard_crossed_is_an_upper_bound(tmp_path):
    # standard crossed at 4e4, repriorised did not in its 1.6e5: ratio <= 4e4 / 1.6e5 = 0.25, i.e. >= 4x more
    rows = [_scored(64, "standard", "nuts", to_b2=4e4, budget=1e5), _scored(64, "reprior", "pcnl", budget=1.6e5)]
    section, table = _verdict(tmp_path, rows)
    line = _sentence(section, 64)
    assert "repriorised pcnl had not reached b² < 0.01 after 1.6e5 gradient evaluations (its whole run" in line
    assert line.endswith("standard nuts reached it after 4.0e4 (40 s): at least 4.0x more gradient evaluations.")
    assert table[(64, "reprior", "pcnl", "4x100")]["ratio/bound"] == "<= 0.25"


def test_verdict_neither_crossed_is_undecided(tmp_path):
    rows = [_scored(8, "standard", "nuts", budget=1e5), _scored(8, "reprior", "pcnl", budget=2e5)]
    section, table = _verdict(tmp_path, rows)
    assert _sentence(section, 8).endswith(": undecided (neither reached the threshold).")
    assert table[(8, "reprior", "pcnl", "4x100")]["ratio/bound"] == "undecided"
    assert table[(8, "reprior", "pcnl", "4x100")]["budget"] == "200000"


def test_verdict_without_certified_reference(tmp_path):
    why = "no certified reference: pcnl: R-hat 1.03 >= 1.01"
    rows = [_scored(8, "standard", "nuts", to_b2=4e4, budget=1e5), _scored(8, "reprior", "pcnl", to_b2=1e4, budget=1e5),
            _scored(1024, "standard", "nuts", budget=1e5, failure=why),
            _scored(1024, "reprior", "pcnl", budget=1e5, failure=why),
            _scored(2048, "reprior", "pcnl", budget=1e5, failure="reference off")]
    section, table = _verdict(tmp_path, rows)
    assert _sentence(section, 1024) == "- width 1024: no certified reference (pcnl: R-hat 1.03 >= 1.01)."
    assert _sentence(section, 2048) == "- width 2048: no certified reference (reference off)."
    assert {w for w, *_ in table} == {8}  # the unscored widths have no table rows


def test_old_rows_without_accuracy_keys(tmp_path):
    md = report.write_report(tmp_path, _rows(), command="reprior sweep ...")["report_md"].read_text()
    assert "## Cost to accuracy" in md and "No cell was scored against a reference" in md
    assert md.index("## Cost to accuracy") < md.index("## Provenance") < md.index("## Results")
    assert report_accuracy.accuracy_verdicts(_rows()) == []


def test_verdict_over_seeds_is_conservative(tmp_path):
    # repriorised: every seed crossed (1e4, 2e4, 6e4): median 2e4.  Standard: 2 of 3 seeds crossed, so not
    # crossed, with its smallest whole run 8e4: ratio >= 8e4 / 2e4 = 4.
    rows = [_scored(8, "reprior", "pcnl", to_b2=c, budget=1e5, seed=s) for s, c in enumerate((1e4, 2e4, 6e4))]
    rows += [_scored(8, "standard", "nuts", to_b2=3e4, budget=1e5, seed=0),
             _scored(8, "standard", "nuts", to_b2=5e4, budget=8e4, seed=1),
             _scored(8, "standard", "nuts", budget=1.2e5, seed=2)]
    section, table = _verdict(tmp_path, rows)
    line = _sentence(section, 8)
    assert "after 2.0e4 gradient evaluations (20 s; median of 3 seeds)" in line
    assert "standard nuts had not after 8.0e4 (its whole run, 80 s; 2 of 3 seeds crossed" in line
    assert line.endswith("at least 4.0x fewer gradient evaluations.")
    assert table[(8, "standard", "nuts", "4x100")]["reached"] == "2 of 3"
    assert table[(8, "reprior", "pcnl", "4x100")]["ratio/bound"] == ">= 4.0"


def test_verdict_picks_the_best_standard_entry(tmp_path):
    # Two standard kernels crossed at 6e4 and 3e4: the repriorised 1e4 is compared with 3e4 (3x).
    # At width 16 neither standard run crossed: the longer one (num_samples 400, budget 4e5) counts: >= 40x.
    rows = [_scored(8, "standard", "nuts", to_b2=6e4, budget=1e5), _scored(8, "standard", "hmc", to_b2=3e4, budget=1e5),
            _scored(8, "reprior", "pcnl", to_b2=1e4, budget=1e5),
            _scored(16, "standard", "nuts", budget=1e5), _scored(16, "standard", "nuts", budget=4e5, num_samples=400),
            _scored(16, "reprior", "pcnl", to_b2=1e4, budget=1e5)]
    section, table = _verdict(tmp_path, rows)
    assert "standard hmc reached it after 3.0e4" in _sentence(section, 8)
    assert table[(8, "reprior", "pcnl", "4x100")]["ratio/bound"] == "3.0"
    line = _sentence(section, 16)
    assert "standard nuts (4x400 draws) had not after 4.0e5" in line
    assert line.endswith("at least 40x fewer gradient evaluations.")
    assert table[(16, "reprior", "pcnl", "4x100")]["ratio/bound"] == ">= 40"


def test_verdict_counts_log_density_evaluations_without_gradients(tmp_path):
    # pcn has no gradients: 5e4 / 1e4 log-density evaluations = 5
    rows = [_scored(8, "standard", "nuts", to_b2=5e4, budget=1e5),
            _scored(8, "reprior", "pcn", to_b2=1e4, budget=1e5, grads=False)]
    section, table = _verdict(tmp_path, rows)
    line = _sentence(section, 8)
    assert "after 1.0e4 log-density evaluations" in line and line.endswith("5.0x fewer log-density evaluations.")
    assert table[(8, "reprior", "pcn", "4x100")]["counted"] == "evals"
    assert table[(8, "standard", "nuts", "4x100")]["counted"] == "grads"


def test_verdict_survives_summary_csv_round_trip(tmp_path):
    rows = [_scored(8, "standard", "nuts", budget=1.1e5), _scored(8, "reprior", "pcnl", to_b2=3.2e4, budget=1e5)]
    path = report.write_summary_csv(rows, tmp_path / "summary.csv")
    back = report.read_summary_csv(path)
    assert {str(r["b2_reached"]) for r in back} == {"True", "False"}
    first, _ = _verdict(tmp_path / "a", rows)
    again, _ = _verdict(tmp_path / "b", back, full=True)
    assert _sentence(again, 8) == _sentence(first, 8) and ">= 3.4" in again


def test_reached_reads_bools_and_their_text():
    assert [report_accuracy.reached(v) for v in (True, False, "True", "False", "true", "0", 1, None, "", "maybe",
                                        float("nan"))] == [True, False, True, False, True, False, True, None, None,
                                                           None, None]


def _write_curve(path: Path, grads, b2):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["draw,grads,evals,seconds,b2_mean,b2_second,b2_rb_mean"]
    lines += [f"{i + 1},{g},{g},{g / 1000},{b},{b / 2},{2 * b}" for i, (g, b) in enumerate(zip(grads, b2, strict=True))]
    path.write_text("\n".join(lines) + "\n")


def test_read_curve(tmp_path):
    _write_curve(tmp_path / "accuracy.csv", [10.0, 20.0, 40.0], [0.5, 0.02, 0.005])
    curve = report_accuracy.read_curve(tmp_path / "accuracy.csv")
    assert list(curve) == ["draw", "grads", "evals", "seconds", "b2_mean", "b2_second", "b2_rb_mean"]
    np.testing.assert_array_equal(curve["grads"], [10.0, 20.0, 40.0])
    np.testing.assert_array_equal(curve["b2_second"], [0.25, 0.01, 0.0025])
    (tmp_path / "bad.csv").write_text("draw,grads\n1,2\n")
    with pytest.raises(ValueError, match="argument `path`"):
        report_accuracy.read_curve(tmp_path / "bad.csv")


def test_report_draws_error_curves_per_width(tmp_path):
    rows = [_scored(8, "standard", "nuts", to_b2=4e4, budget=1e5), _scored(8, "reprior", "pcnl", to_b2=1e4, budget=1e5)]
    grads = np.geomspace(1e3, 1e5, 30)
    for row, scale in zip(rows, (4e2, 1e2), strict=True):
        _write_curve(tmp_path / "cells" / row["cell"] / "accuracy.csv", grads, scale / grads)
    files = report.write_report(tmp_path, rows, command="reprior sweep ...")
    names = sorted(n for n in files if n.startswith("plot_b2_"))
    assert names == ["plot_b2_grads_mlp-1-relu-digits-128-64-0.1_w8", "plot_b2_seconds_mlp-1-relu-digits-128-64-0.1_w8"]
    for name in names:
        assert files[name].parent == tmp_path / "plots" and files[name].stat().st_size > 5000
    md = files["report_md"].read_text()
    section = md.split("## Cost to accuracy", 1)[1].split("\n## ", 1)[0]
    assert "(plots/b2_grads_mlp-1-relu-digits-128-64-0.1_w8.png)" in section
    assert "(plots/b2_seconds_mlp-1-relu-digits-128-64-0.1_w8.png)" in section
    html_text = files["report_html"].read_text()
    assert 'src="plots/b2_grads_mlp-1-relu-digits-128-64-0.1_w8.png"' in html_text


def test_cost_ratio_needs_one_threshold_and_recorded_costs():
    rows = [_scored(8, "standard", "nuts", to_b2=4e4, budget=1e5), _scored(8, "reprior", "pcnl", to_b2=1e4, budget=1e5)]
    standard, repriorised = report_accuracy.accuracy_entries(rows)
    assert report_accuracy.cost_ratio(standard, repriorised, "grads") == ("ratio", pytest.approx(4.0))
    assert report_accuracy.cost_ratio(dict(standard, threshold=0.05), repriorised, "grads")[0] == "thresholds differ"
    assert report_accuracy.cost_ratio(standard, dict(repriorised, grads_to_b2=math.nan), "grads")[0] == "no cost recorded"
    assert report_accuracy.ratio_text("no cost recorded", math.nan) == "no cost recorded"


def test_verdict_on_the_hidden_weights_beside_the_predictions(tmp_path):
    # Both reach the predictive threshold right after warm-up (1.2e4 and 1.5e4: 1.25x); only the
    # repriorised hidden weights reach b2_rb < 0.01 (at 2e4), so there the ratio is >= 1e5 / 2e4 = 5.
    rows = [_scored(256, "standard", "nuts", to_b2=1.5e4, budget=1e5, b2_rb_reached=False, grads_to_b2_rb=math.nan,
                    evals_to_b2_rb=math.nan, seconds_to_b2_rb=math.nan),
            _scored(256, "reprior", "nuts", to_b2=1.2e4, budget=1e5, b2_rb_reached=True, grads_to_b2_rb=2e4,
                    evals_to_b2_rb=2e4, seconds_to_b2_rb=20.0)]
    section, _ = _verdict(tmp_path, rows)
    predictive, hidden = section.split("**Hidden weights (b² rb)**")
    assert "**Test predictions (b² mean and b² second)**" in predictive
    assert _sentence(predictive, 256).endswith("1.2x fewer gradient evaluations.")
    assert _sentence(hidden, 256) == (
        "- width 256: repriorised nuts reached b² rb < 0.01 after 2.0e4 gradient evaluations (20 s); standard nuts "
        "had not after 1.0e5 (its whole run, 100 s): at least 5.0x fewer gradient evaluations.")
    [place] = report_accuracy.accuracy_verdicts(rows, "hidden")
    assert place["entries"][1]["ratio_kind"] == "lower" and place["entries"][1]["ratio"] == pytest.approx(5.0)
