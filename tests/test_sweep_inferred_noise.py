"""A sweep whose noise is inferred: ``--noise-std 'HalfNormal(0.5)'`` (or ``noise_std = [...]`` in a config
file) makes cells of ``BNN(arch, noise_std=prior)``; their noise posterior reaches summary.csv and the report,
and what needs a fixed noise (references, limits) says so instead of failing the cell."""

from __future__ import annotations

import csv

import pytest

from reprior.experiments.runner import grid

from cli_helpers import one_line_error, run  # tests/cli_helpers.py

TINY = ["--dataset", "synthetic", "--n-train", "8", "--n-test", "4", "--num-warmup", "10", "--num-samples", "8",
        "--num-chains", "2", "--sampler", "hmc", "--sampler-option", "num_steps=3", "--quiet", "--widths", "3"]


def _options(**given):
    return grid.validate(grid.merge({**grid.DEFAULTS, "out": "o", **given}))


def test_a_prior_is_kept_in_one_canonical_text_and_numbers_stay_numbers():
    options = _options(noise_std=[0.1, "HalfNormal(0.5)", "LogNormal(loc=-2, scale=0.5)"])
    assert options["noise_std"] == [0.1, "HalfNormal(scale=0.5)", "LogNormal(loc=-2, scale=0.5)"]
    same = _options(noise_std=["HalfNormal(scale=0.5)"])["noise_std"]
    assert same == ["HalfNormal(scale=0.5)"]
    keys = {c.key for c in grid.expand(_options(noise_std=["HalfNormal(0.5)"]), dtype="float64")}
    assert keys == {c.key for c in grid.expand(_options(noise_std=same), dtype="float64")}
    fixed = grid.expand(_options(noise_std=[0.1]), dtype="float64")
    assert not keys & {c.key for c in fixed}


@pytest.mark.parametrize("text, why", [("Normal(0, 1)", "positive reals"), ("Poisson(2)", "continuous"),
                                       ("__import__('os')", "numpyro.distributions"), ("HalfNormal(x)", "not a number")])
def test_a_bad_prior_is_one_line_naming_noise_std(capsys, tmp_path, text, why):
    code, _, err = run(capsys, "sweep", *TINY, "--noise-std", text, "--out", tmp_path / "out")
    message = one_line_error(code, err)
    assert "noise_std" in message and why in message
    assert not (tmp_path / "out").exists()


def test_sweep_with_an_inferred_noise(capsys, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "sweep", *TINY, "--noise-std", "HalfNormal(0.5)", "--parameterisations",
                            "reprior", "--reference", "auto", "--out", out)
    assert code == 0, stdout + err
    with (out / "summary.csv").open() as f:
        [row] = list(csv.DictReader(f))
    assert row["noise_std"] == "HalfNormal(scale=0.5)"
    assert 0 < float(row["noise_std_mean"]) and 0 < float(row["noise_std_sd"])
    assert row["reference_failure"] == "the cell infers its noise; reference posteriors need a fixed noise_std"
    assert "noise_std" in row["limits_error"] and not (out / "references").exists()
    report = (out / "report.md").read_text()
    assert "noise_std HalfNormal(scale=0.5)" in report
    assert "| noise_std mean | noise_std sd |" in report
    # the same sweep again finds the cell finished: the prior's text is a stable part of its key
    code, stdout, err = run(capsys, "sweep", *TINY, "--noise-std", "HalfNormal(scale=0.5)", "--parameterisations",
                            "reprior", "--out", out)
    assert code == 0 and "0 cells run" in stdout + err, stdout + err


@pytest.mark.parametrize("argv, why", [(["--noise-prior", "Normal(0, 1)"], "--noise-prior"),
                                       (["--noise-prior", "HalfNormal(0.5)", "--sampler-noise-prior", "Gamma(x)"],
                                        "--sampler-noise-prior"),
                                       (["--sampler-noise-prior", "HalfNormal(0.5)"], "only with --noise-prior")])
def test_sbc_noise_prior_flags_are_checked_before_any_work(capsys, argv, why):
    code, _, err = run(capsys, "sbc", *argv)
    assert why in one_line_error(code, err)
