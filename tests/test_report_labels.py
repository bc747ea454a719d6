"""Report headings and labels: the noise and its units, biased kernels, each command once."""

from reprior.experiments import report


def _row(sampler, param, width=8, **metrics):
    return {"arch": "mlp", "depth": 1, "activation": "relu", "dataset": "diabetes", "n_train": 96, "n_test": 24,
            "noise_std": 0.1, "sampler": sampler, "num_chains": 2, "num_warmup": 50, "num_samples": 50,
            "width": width, "parameterisation": param, "seed": 0, "num_draws": 100, "logdensity_evals": 1000,
            "ess_bulk_pred_median": 50.0, "ess_per_eval_pred": 0.05, "ess_per_second_pred": 5.0,
            "ess_bulk_theta_median": 20.0, "ess_per_eval_theta": 0.02, "rhat_max": 1.01, "accept_mean": 0.8,
            **metrics}


def test_the_provenance_lists_each_command_once(tmp_path):
    rows = [_row("nuts", "standard"), _row("nuts", "reprior")]
    command = "reprior sweep --widths 8\nreprior  sweep --widths 8 \n\nreprior report out"
    text = report.write_report(tmp_path, rows, command=command)["report_md"].read_text()
    assert "Commands:\n\n```\nreprior sweep --widths 8\nreprior report out\n```\n" in text


def test_biased_kernels_are_labelled_and_never_best():
    rows = [_row("nuts", "standard"), _row("nuts", "reprior", ess_per_eval_pred=0.1),
            _row("mclmc", "reprior", ess_per_eval_pred=10.0, ess_per_second_pred=500.0)]
    [(key, entries)] = report.sampler_tables(rows)
    mclmc = next(e for e in entries if e["sampler"] == "mclmc")
    assert report.format_entry(mclmc, "sampler") == "mclmc (unadjusted: biased)"
    assert report.format_entry(mclmc, "chains") == "ok; biased kernel (unadjusted: biased by its step size)"
    nuts = next(e for e in entries if e["sampler"] == "nuts" and e["parameterisation"] == "reprior")
    assert report.format_entry(nuts, "chains") == "ok"
    headline = report.sampler_headline(entries)
    assert "(`reprior` `nuts`)" in headline and "(`reprior` `mclmc`)" not in headline
    assert "`mclmc` is left out of the best" in headline


def test_headings_carry_the_noise_and_its_units(tmp_path):
    rows = [_row("nuts", "standard"), _row("nuts", "reprior"), _row("pcn", "reprior")]
    text = report.write_report(tmp_path, rows, command="reprior sweep\nreprior sweep")["report_md"].read_text()
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    assert "### mlp depth 1, relu, diabetes, n=96, noise_std 0.1 (standardised y), nuts, 2x50" in headings
    assert "### mlp depth 1, relu, diabetes, n=96, noise_std 0.1 (standardised y)" in headings  # the samplers'
    assert text.count("reprior sweep\n") == 1 and "Command:" in text
