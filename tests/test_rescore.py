"""A finished cell scored while its reference failed certification is scored again, from its stored
draws and without sampling it again, by a later sweep in the same folder whose budget certifies the
reference (reprior.experiments.runner.references.rescore_cell); that reference is built by continuing the failed
attempt's chains (reference_posterior(init=...))."""

from __future__ import annotations

import csv
import json

from cli_helpers import run  # tests/cli_helpers.py

SWEEP = ["sweep", "--dataset", "synthetic", "--n-train", "8", "--n-test", "3", "--num-warmup", "20",
         "--num-samples", "30", "--num-chains", "2", "--sampler", "hmc", "--sampler-option", "num_steps=3",
         "--widths", "3", "--noise-std", "1.0", "--parameterisations", "reprior", "--reference", "auto",
         "--reference-samplers", "split_hmc", "pcnl", "--reference-num-chains", "2", "--reference-num-warmup", "100",
         "--reference-num-samples", "20"]


def _row(out):
    with (out / "summary.csv").open() as f:
        [row] = list(csv.DictReader(f))
    return row


def test_a_cell_is_scored_again_once_its_reference_certifies(capsys, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, *SWEEP, "--reference-max-num-samples", "20", "--out", out)
    assert code == 0, stdout + err
    row = _row(out)
    assert row["reference_failure"].startswith("no certified reference") and row["b2_reached"] == "False"
    [cell] = list((out / "cells").iterdir())
    idata_before = (cell / "idata.nc").read_bytes()
    assert not (cell / "accuracy.csv").exists()

    code, stdout, err = run(capsys, *SWEEP, "--reference-max-num-samples", "3000", "--out", out)
    text = stdout + err
    assert code == 0, text
    assert "0 cells run, 1 skipped" in text
    assert "continuing its chains to" in text and "scored again" in text
    row = _row(out)
    assert row["reference_failure"] == "" and row["reference_id"]
    assert float(row["b2_rb_mean"]) >= 0 and row["budget_grads"]
    assert (cell / "idata.nc").read_bytes() == idata_before  # not sampled again
    assert (cell / "accuracy.csv").is_file()
    diagnostics = json.loads(next((out / "references").glob("*/diagnostics.json")).read_text())
    assert diagnostics["certified"] and diagnostics["diagnostics"]["kernels"]["pcnl"]["num_draws"] > 2 * 20

    # nothing left to score: a third run neither builds nor scores
    code, stdout, err = run(capsys, *SWEEP, "--reference-max-num-samples", "3000", "--out", out)
    assert code == 0 and "scored again" not in stdout + err and "building" not in stdout + err
