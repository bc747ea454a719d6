"""Tests for reprior.report: summary.csv schema, tables and ratios, report files, the docs example."""

import csv
import math
import re
from pathlib import Path

import arviz as az
import numpy as np
import pytest

from reprior import diagnostics as dg
from reprior import report

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
            idata = az.from_dict(posterior={"theta_proj": rng.standard_normal((2, 20, 3))},
                                 posterior_predictive={"f_test": rng.standard_normal((2, 20, 4, 1))},
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
