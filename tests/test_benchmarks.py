"""Smoke tests of the benchmark scripts: each runs once with ``--quick``, as a script.

They check that the scripts run, that their JSON has the documented shape, and
that every ratio they report is computed from the numbers they measured: the
correctness of the scripts, not the timings (which ``--quick`` sizes make
meaningless).  The runs are end-to-end and marked ``slow`` (``.ci/run`` runs
them); they share fresh interpreters, one per CPU core, running at once
(``conftest.run_in_fresh_interpreters``), so JAX starts once per core, not once
per script.  The default suite imports every script and asks it for ``--help``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_in_fresh_interpreters

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ("grad_cost", "mixing", "ideal", "float32", "scale", "precision", "accelerator",
              "loop_conv", "overhead", "user_architectures")  # run with --quick
HEADER_KEYS = {"machine", "cpu", "cpu_count", "versions", "command", "env", "jax_backend", "jax_devices"}

# A hand-made mixing result for ideal.py to compare with (keeps ideal independent of mixing's run).
FAKE_MIXING = {"rows": [
    {"width": 16, "setting": "standard", "ess_per_grad_pred": 0.002, "ess_per_grad_theta": 0.001,
     "steps_per_draw_mean": 31.0},
    {"width": 16, "setting": "exact", "ess_per_grad_pred": 0.02, "ess_per_grad_theta": 0.01,
     "steps_per_draw_mean": 7.0},
]}


def close(a, b, rel=1e-9):
    return a is not None and b is not None and math.isclose(a, b, rel_tol=rel, abs_tol=1e-300)


@pytest.fixture(scope="module")
def results(request, tmp_path_factory):
    """``{name: (error or None, output, json)}`` of every benchmark run with ``--quick``: those whose
    ``test_<name>`` is selected (``-k loop_conv`` runs one script, not all)."""
    tmp = tmp_path_factory.mktemp("benchmarks")
    fake = tmp / "fake_mixing.json"
    fake.write_text(json.dumps(FAKE_MIXING))
    selected = {item.name for item in request.session.items}
    names = [name for name in BENCHMARKS if f"test_{name}" in selected]
    jobs = {}
    for name in names:
        script = ROOT / "benchmarks" / f"{name}.py"
        argv = [str(script), "--quick", "--json", str(tmp / f"{name}.json")]
        if name == "ideal":
            argv += ["--mixing-json", str(fake)]
        jobs[name] = (script.read_text(), argv)
    start = time.perf_counter()
    runs = run_in_fresh_interpreters(jobs, tmp, sys_path=[ROOT / "benchmarks"],
                                     env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    out = {"elapsed": time.perf_counter() - start}  # the test's own clock: a bound on every timing the scripts report
    for name in names:
        path = tmp / f"{name}.json"
        out[name] = (runs[name]["error"], runs[name]["stdout"], json.loads(path.read_text()) if path.exists() else None)
    return out


def check_run(results, name):
    error, text, data = results[name]
    assert error is None, f"{name} failed:\n{error}\n{text[-4000:]}"
    assert data is not None and data["benchmark"] == name
    assert HEADER_KEYS <= set(data["header"]), sorted(HEADER_KEYS - set(data["header"]))
    assert "--quick" in data["header"]["command"]
    assert data["header"]["env"]["OPENBLAS_NUM_THREADS"] == "1"
    assert data["settings"]["quick"] is True
    assert "| " in text  # a table was printed
    return data


@pytest.mark.slow
def test_grad_cost(results):
    data = check_run(results, "grad_cost")
    rows = data["rows"]
    assert {(r["arch"], r["width"]) for r in rows} == {("mlp", 16), ("mlp", 32), ("resnet", 1)}
    for r in rows:
        variants = [v for v in data["variants"] if f"s_{v}" in r]
        assert "standard" in variants and "auto" in variants
        assert r["auto_form"] == ("dual" if r["n"] <= r["p"] else "primal")
        if r["arch"] == "mlp":  # parameter counts in closed form: digits, 64 inputs and 10 outputs
            d = r["width"]
            assert (r["p"], r["k"], r["n"]) == (d + 1, 10, 24)
            assert r["num_hidden_params"] == 64 * d + d and r["num_params"] == 64 * d + d + 10 * (d + 1)
        else:
            assert r["p"] == 4 * r["width"] + 1  # the ResNet's readout: 4 x width channels and the bias
        # "auto" is one of the two forms, so it compiles to the same program as the form it reports
        if f"xla_flops_{r['auto_form']}" in r:  # the ResNet times "standard" and "auto" only
            assert r["xla_flops_auto"] == r[f"xla_flops_{r['auto_form']}"]
        for v in variants:
            times = r[f"times_{v}"]
            # --quick: 3 rounds of one call (1 for a call over 5 s); all timed inside the test's own clock
            assert 1 <= len(times) <= 3 and all(0 < t for t in times) and sum(times) < results["elapsed"]
            assert min(times) == r[f"s_min_{v}"] <= r[f"s_{v}"] <= max(times)  # order statistics
            assert r[f"s_{v}"] in times or len(times) % 2 == 0  # an odd count: the median is a timing
            assert 0 < r[f"compile_s_{v}"] < results["elapsed"] and r[f"peak_rss_delta_bytes_{v}"] >= 0
        # Identities across ratios (the standard timing cancels): s_paper / s_auto from the two ratios.
        if "s_paper_pxp" in r:
            assert close(r["speedup_auto_vs_paper"], r["ratio_paper_pxp"] / r["ratio_auto"])
            assert close(r["speedup_collapsed_vs_paper"], r["ratio_paper_pxp"] / r["ratio_collapsed"])
        # The repriorised forms are one function of phi: float64 agreement.
        for key in [k for k in r if k.startswith("max_rel_diff_")]:
            assert r[key] < 1e-9, (key, r[key])
    mlp = [r for r in rows if r["arch"] == "mlp"]
    assert {r["auto_form"] for r in mlp} == {"primal", "dual"}  # n = 24 between p = 17 and p = 33
    assert all("max_rel_diff_paper_pxp" in r and "max_rel_diff_collapsed" in r for r in mlp)


@pytest.mark.slow
def test_mixing(results):
    data = check_run(results, "mixing")
    rows = data["rows"]
    assert {r["setting"] for r in rows} == {"standard", "sampled", "exact"}
    draws = 2 * 15  # --quick: 2 chains of 15 draws, NUTS with max_tree_depth 5
    for r in rows:
        assert r["num_traces"] == 2  # one warm-up and one draw executable, shared by every chain
        assert r["num_chains"] == 2 and r["num_draws"] == 15
        # Raw figures against what the settings fix: 1 to 2**5 - 1 leapfrog steps per draw, timings
        # inside the test's own clock.
        assert draws <= r["grad_evals_sampling"] <= draws * (2**5 - 1)
        assert 1 <= r["steps_per_draw_mean"] <= 2**5 - 1
        assert 0 < r["sample_seconds"] < r["wall_seconds"] < results["elapsed"]
        for g in ("pred", "theta"):
            assert r[f"ess_bulk_{g}_median"] > 0
            # Identities in which the ESS cancels: the cost of a draw in gradients, and in seconds.
            assert close(r[f"ess_per_draw_{g}"] / r[f"ess_per_grad_{g}"], r["steps_per_draw_mean"])
            assert close(r[f"ess_per_grad_{g}"] / r[f"ess_per_second_{g}"], r["seconds_per_grad_sampling"])
            # ... and in which it does not: the ratio of seconds per gradient is the same for every quantity.
            assert close(r[f"second_vs_grad_ratio_{g}"], 1 / r["ratio_seconds_per_grad"])
        if r["setting"] == "standard":  # the baseline against itself
            assert all(r[f"ratio_{m}_{g}"] == 1.0 for m in ("ess_per_grad", "ess_per_second") for g in ("pred", "theta"))


@pytest.mark.slow
def test_ideal(results):
    data = check_run(results, "ideal")
    rows = data["rows"]
    assert {(r["width"], r["kind"]) for r in rows} == {(16, "hidden"), (16, "joint")}
    dims = {r["kind"]: r["dim"] for r in rows}
    assert dims == {"hidden": 64 * 16 + 16, "joint": 64 * 16 + 16 + 10 * 17}  # digits: 64 inputs, 10 outputs
    for r in rows:
        assert r["num_draws"] == 2 * 15  # --quick: 2 chains of 15 draws, NUTS with max_tree_depth 5
        assert r["num_draws"] <= r["grad_evals_sampling"] <= r["num_draws"] * (2**5 - 1)
        assert close(r["grad_evals_sampling"], r["steps_per_draw_mean"] * r["num_draws"])
        assert 0.0 < r["accept_prob_mean"] <= 1.0 and r["ess_bulk_proj_median"] > 0
        # the gradient count cancels: ESS per gradient of two quantities stand as their ESS
        assert close(r["ess_per_grad_lp"] / r["ess_per_grad_proj"], r["ess_bulk_lp"] / r["ess_bulk_proj_median"])
    ideal = {r["kind"]: r for r in rows}
    comparison = {c["setting"]: c for c in data["comparison"]}
    assert set(comparison) == {"standard", "exact"}
    for setting, kind in (("standard", "joint"), ("exact", "hidden")):
        c, fake = comparison[setting], next(f for f in FAKE_MIXING["rows"] if f["setting"] == setting)
        assert c["kind"] == kind and c["dim"] == dims[kind]
        # The measured ideal cancels between the two ratios: 0.002 / 0.001 and 0.02 / 0.01, both 2.
        assert close(c["ratio_to_ideal_pred"] / c["ratio_to_ideal_theta"], 2.0) and c["ratio_to_ideal_pred"] > 0
    # ... and between the settings when both compare with one kind: exact/standard = 0.02/0.002 x ideals
    assert close(comparison["exact"]["ratio_to_ideal_pred"] * ideal["hidden"]["ess_per_grad_proj"]
                 / (comparison["standard"]["ratio_to_ideal_pred"] * ideal["joint"]["ess_per_grad_proj"]), 10.0)


@pytest.mark.slow
def test_float32(results):
    data = check_run(results, "float32")
    grads = {(r["variant"], r["dtype"]): r for r in data["grad_rows"]}
    assert set(grads) == {(v, d) for v in ("standard", "auto", "collapsed") for d in ("float32", "float64")}
    for (variant, dtype), r in grads.items():
        assert 0 < r["s"] < results["elapsed"]
        if dtype == "float64":  # each baseline against itself
            assert r["ratio_to_float64"] == 1.0
        if variant == "standard":
            assert r["ratio_to_standard_same_dtype"] == 1.0
        # A commuting square: this variant and dtype against float64 standard, by either path (no timing recomputed).
        f64, std = grads[(variant, "float64")], grads[("standard", dtype)]
        assert close(r["ratio_to_float64"] * f64["ratio_to_standard_same_dtype"],
                     r["ratio_to_standard_same_dtype"] * std["ratio_to_float64"])
        # float32 rounding of an O(1e3) log density and its gradient; 0 for float64 against itself.
        assert r["rel_err_value"] < (1e-4 if dtype == "float32" else 1e-15)
        assert r["rel_err_grad"] < (1e-3 if dtype == "float32" else 1e-15)
    runs = {(r["setting"], r["dtype"]) for r in data["mixing_rows"]}
    assert runs == {("exact", "float32"), ("exact", "float64")}
    for r in data["mixing_rows"]:
        assert 0.0 < r["accept_prob_mean"] <= 1.0
    diffs = {d["quantity"]: d for d in data["predictive_diffs"]}
    assert set(diffs) == {"f_test", "f_test_rb_mean"}
    for d in diffs.values():
        assert d["num_values"] == 8 * 10 and d["max_abs_diff"] >= d["mean_abs_diff"] >= 0
        assert d["z_max"] >= d["z_median"] >= 0


@pytest.mark.slow
def test_scale(results):
    data = check_run(results, "scale")
    (row,) = data["rows"]
    assert row["sampler"] == "underdamped_hmc" and row["num_draws"] == 20 and row["thinning"] == 2
    assert row["num_traces"] == 2
    assert row["grad_evals_sampling"] == row["logdensity_evals_sampling"] == 20 * 2  # one step per iteration
    assert close(row["ess_per_eval_pred"] * 40, row["ess_bulk_pred_median"])  # 40 evaluations, known above
    assert close(row["seconds_per_eval"] * 40, row["sample_seconds"])
    assert results["elapsed"] > row["wall_seconds"] >= row["compile_seconds"] + row["warmup_seconds"] + row["sample_seconds"]
    # 20 draws, target 40: the time for the target is projected from the measured phases.
    assert row["projected"] is True and row["target_draws"] == 40
    fixed = row["compile_seconds"] + row["warmup_seconds"]
    assert close(row["minutes_for_target_draws"], (fixed + row["sample_seconds"] * 2) / 60)
    assert row["within_target"] == (row["minutes_for_target_draws"] <= 30)


@pytest.mark.slow
def test_precision(results):
    error, text, data = results["precision"]
    assert error is None, f"precision failed:\n{error}\n{text[-4000:]}"
    assert HEADER_KEYS <= set(data["header"]) and "--quick" in data["header"]["command"]
    r = data["ratios"]
    assert (r["width"], r["n"], r["pairs"]) == (64, 32, 2)
    assert r["num_dims"] == 64 * 64 + 64  # readout exact: the hidden layer only (digits: 64 inputs)
    assert len(r["pcnl_log_ratio_float64"]) == 2
    for key in ("pcnl_new", "pcnl_old", "diff_new", "diff_old"):
        assert 0 <= r[f"{key}_mean_abs_error"] <= r[f"{key}_max_abs_error"]
    # float32 rounding of log likelihoods of a few thousand weights: far below a nat.
    assert r["diff_new_max_abs_error"] < 0.1 and r["pcnl_new_max_abs_error"] < 0.1
    rows = data["failures"]  # short float32 runs at width 16 (pCNL, NUTS, pCNL with jitter where it failed)
    assert rows and {row["width"] for row in rows} == {16} and {row["sampler"] for row in rows} <= {"pcnl", "nuts"}
    assert any(row["sampler"] == "pcnl" and row["jitter"] == 0 for row in rows)
    for row in rows:
        assert row["dtype"] == "float32" and isinstance(row["returned"], bool)
        if row["returned"]:
            assert row["nonfinite"] >= 0 and row["divergences"] >= 0 and isinstance(row["failed"], str)
    chains = data["chains"]  # float32 against float64 chains, pCNL and elliptical slice, width 32
    assert [(c["sampler"], c["width"]) for c in chains] == [("pcnl", 32), ("elliptical_slice", 32)]
    for c in chains:
        for dtype in ("float32", "float64"):
            assert 0 <= c[f"accept_mean_{dtype}"] <= 1
            evals = c[f"evals_per_iteration_{dtype}"]  # pCNL: one; elliptical slice: one plus its shrinks
            assert evals == 1 if c["sampler"] == "pcnl" else evals > 1
        assert 0 <= c["median_z_rb_mean"] <= c["max_z_rb_mean"] and c["max_abs_diff_rb_mean"] >= 0


@pytest.mark.slow
def test_accelerator(results):
    """On the CPU here: the script's logic, not accelerator timings."""
    error, text, data = results["accelerator"]
    assert error is None, f"accelerator failed:\n{error}\n{text[-4000:]}"
    assert "--quick" in data["header"]["command"]
    dtypes = ("float32", "float64")
    assert [(r["dtype"], r["width"]) for r in data["grad_cost"]] == [(d, w) for d in dtypes for w in (64, 128)]
    for r in data["grad_cost"]:
        assert all(r[k] > 0 for k in ("standard", "reprior_auto", "reprior_primal", "collapsed"))
    nuts = data["nuts"]
    assert [(r["dtype"], r["width"]) for r in nuts] == [(d, 64) for d in dtypes]
    for r in nuts:
        assert len(r["pred_mean"]) == 32 * 10  # 32 digits test points, 10 outputs
        assert r["steps_per_draw"] >= 1 and 0 <= r["accept_mean"] <= 1
        assert r["steps_per_draw"] <= 2**10 - 1 and r["ess_median_pred_points"] > 0  # NUTS: max_tree_depth 10
        assert close(r["ess_per_grad"] * r["steps_per_draw"] * 20, r["ess_median_pred_points"])  # 20 draws
    single, double = (np.asarray(r["pred_mean"]) for r in nuts)
    assert close(data["pred_mean_max_abs_diff_f32_f64"], float(np.max(np.abs(single - double))))


@pytest.mark.slow
def test_loop_conv(results):
    """XLA's convolution against im2col in a ResNet gradient: both timed in every loop form, same numbers."""
    data = check_run(results, "loop_conv")
    assert "XLA_FLAGS" in data["header"]["env"] and "OMP_NUM_THREADS" in data["header"]["env"]
    assert data["cpu_affinity"] and all(isinstance(c, int) for c in data["cpu_affinity"])
    (r,) = data["rows"]  # --quick: width 2, depth 8, 4 digits, loops of 2 iterations, one timing round
    assert (r["width"], r["depth"], r["n"], r["steps"], r["dtype"]) == (2, 8, 4, 2, "float64")
    # The flat dimension the density runs on (the readout is exact): the 3x3 convolutions of a width-2
    # depth-8 ResNet on 8x8x1 digits, a stem and three groups of one block with a shortcut (2, 4, 8 channels).
    convs = [(1, 2), (2, 2), (2, 2), (2, 2), (2, 4), (4, 4), (2, 4), (4, 8), (8, 8), (4, 8)]
    assert r["dim"] == sum(9 * c_in * c_out + c_out for c_in, c_out in convs)
    variants = ("direct", "scan", "unrolled", "pcnl_scan")
    for conv in ("xla", "im2col"):
        for variant in variants:
            key = f"{conv}_{variant}"
            iterations, times = r[f"{key}_iterations_per_call"], r[f"{key}_times_s"]
            assert iterations == (1 if variant == "direct" else 2)
            assert len(times) == 1 and all(0 < t < results["elapsed"] for t in times)
            ms = r[f"{key}_ms"]
            assert math.isfinite(ms) and ms > 0
            assert close(ms, 1e3 * float(np.median(times)) / iterations)  # per iteration, from the timings
    for variant in variants:  # ratios of the figures reported, not of fresh timings
        assert close(r[f"speedup_{variant}"], r[f"xla_{variant}_ms"] / r[f"im2col_{variant}_ms"])
    for conv in ("xla", "im2col"):
        assert close(r[f"{conv}_scan_over_direct"], r[f"{conv}_scan_ms"] / r[f"{conv}_direct_ms"])
    # The two convolutions are one function: float64 agreement of the log likelihood and its gradient.
    assert math.isfinite(r["loglik_xla"]) and math.isfinite(r["loglik_im2col"])
    assert close(r["loglik_rel_diff"], abs(r["loglik_xla"] - r["loglik_im2col"]) / abs(r["loglik_xla"]))
    assert r["loglik_rel_diff"] < 1e-12 and 0 <= r["grad_rel_diff"] < 1e-12
    assert r["bitwise_equal"] == (r["loglik_rel_diff"] == 0 == r["grad_rel_diff"])
    assert "grad rel diff" in results["loop_conv"][1]


@pytest.mark.slow
def test_overhead(results):
    """reprior.sample per iteration against the bare kernel step: every ratio from the figures reported."""
    data = check_run(results, "overhead")
    assert data["cpu_affinity"] and "XLA_FLAGS" in data["header"]["env"]
    rows = data["rows"]
    assert [(r["sampler"], r["width"]) for r in rows] == [(s, 16) for s in ("pcn", "pcnl", "split_hmc")]
    for r in rows:
        assert (r["n_train"], r["n_test"], r["iterations"], r["rounds"], r["keep"]) == (16, 4, 10, 1, "readout")
        for name in ("bare", "t1", "t10", "t1_no_test"):  # --quick: one round, so the median is that round's
            (only,) = r[f"{name}_times_ms"]
            assert close(r[f"{name}_ms"], only) and 0 < only < 1e3 * results["elapsed"]
        assert close(r["ratio_t1"], r["t1_ms"] / r["bare_ms"]) and close(r["ratio_t10"], r["t10_ms"] / r["bare_ms"])
        assert close(r["ratio_t1_no_test"], r["t1_no_test_ms"] / r["bare_ms"])
        assert len(r["load_average"]) == 3 and 0 <= r["accept_mean_t1"] <= 1
        parts = r["parts_ms"]
        assert set(parts) == {"features", "evaluate", "factorisation", "readout_draw", "test_features",
                              "log_marginal_likelihood", "predictive", "projections", "collect", "collect_handed",
                              "collect_unmoved"}
        assert all(0 < v < 1e3 * results["elapsed"] for v in parts.values())
        assert close(r["collect_over_bare"], parts["collect"] / r["bare_ms"])
        assert close(r["collect_handed_over_bare"], parts["collect_handed"] / r["bare_ms"])
        assert close(r["collect_unmoved_over_bare"], parts["collect_unmoved"] / r["bare_ms"])
        assert 0 <= r["chunk_accept"] <= 1 and all(r[f"chunk_{n}_ms"] > 0 for n in ("reuse", "plain", "bare"))
        assert close(r["ratio_chunk_reuse"], r["chunk_reuse_ms"] / r["chunk_bare_ms"])
        assert close(r["ratio_chunk_plain"], r["chunk_plain_ms"] / r["chunk_bare_ms"])
        assert close(r["reuse_speedup"], r["chunk_plain_ms"] / r["chunk_reuse_ms"])


@pytest.mark.slow
def test_user_architectures(results):
    """The example CNNs (plain JAX and Flax NNX) under NUTS: one cell each (--quick), figures from cell_metrics."""
    data = check_run(results, "user_architectures")
    assert data["cpu_affinity"] and all(isinstance(c, int) for c in data["cpu_affinity"])
    assert "XLA_FLAGS" in data["header"]["env"] and data["header"]["versions"]["flax"]
    assert len(data["header"]["load_average_at_start"]) == 3 and len(data["load_average_at_end"]) == 3
    assert data["data"]["x_train_shape"] == [16, 8, 8, 1] and data["data"]["x_test_shape"] == [4, 8, 8, 1]
    rows = data["rows"]
    assert [(r["arch"], r["width"], r["parameterisation"]) for r in rows] == [
        ("cnn", 4, "standard"), ("flax_cnn", 4, "reprior")]
    draws = 2 * 10  # --quick: 2 chains of 10 draws, max_tree_depth 4
    for r in rows:
        # one 3x3 convolution 1 -> 4 channels and its bias, the readout 4 -> 10 and its bias: the same network
        assert r["num_params"] == 9 * 4 + 4 + 10 * (4 + 1)
        assert r["num_draws"] == draws and draws <= r["grad_evals"] <= draws * (2**4 - 1)
        assert close(r["steps_per_draw"], r["grad_evals"] / draws)
        assert 0 < r["sample_seconds"] < r["wall_seconds"] < results["elapsed"]
        assert 0.0 <= r["accept_mean"] <= 1.0 and r["rhat_max"] >= r["rhat_theta_max"]
        assert r["failed"] == (r["rhat_max"] > 1.1)
        for g in ("theta", "pred"):  # ESS per gradient and per second: the same ESS
            assert close(r[f"ess_per_grad_{g}"] * r["grad_evals"], r[f"ess_bulk_{g}_median"])
            assert close(r[f"ess_per_second_{g}"] * r["sample_seconds"], r[f"ess_bulk_{g}_median"])
    assert data["ratios"] == []  # no width has both parameterisations of one architecture in --quick


def test_user_architectures_ratios_only_between_healthy_cells():
    """``user_architectures.ratios``: reprior/standard per architecture and width, none where chains failed."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import user_architectures as ua

    def row(arch, width, parameterisation, theta, pred, rhat):
        return {"arch": arch, "width": width, "parameterisation": parameterisation, "ess_per_grad_theta": theta,
                "ess_per_grad_pred": pred, "rhat_max": rhat, "failed": rhat is None or rhat > ua.RHAT_LIMIT}
    rows = [row("cnn", 16, "standard", 0.01, 0.02, 1.01), row("cnn", 16, "reprior", 0.04, 0.1, 1.0),
            row("cnn", 64, "standard", 0.01, 0.02, 1.5), row("cnn", 64, "reprior", 0.04, 0.1, 1.0),
            row("flax_cnn", 16, "reprior", 0.04, 0.1, 1.0)]  # no standard cell: no ratio
    ok, failed = ua.ratios(rows)
    assert (ok["arch"], ok["width"], ok["ratio_status"]) == ("cnn", 16, "ok")
    assert close(ok["ratio_ess_per_grad_theta"], 4.0) and close(ok["ratio_ess_per_grad_pred"], 5.0)
    assert failed["width"] == 64 and failed["ratio_ess_per_grad_theta"] is None
    assert failed["ratio_ess_per_grad_pred"] is None and failed["rhat_max_standard"] == 1.5
    assert failed["ratio_status"].startswith("not a result") and "standard (R-hat 1.5 > 1.1)" in failed["ratio_status"]


def test_baselines_takes_the_best_healthy_cell_of_each_side(tmp_path):
    """``baselines.py``: per width and metric, the best standard against the best repriorised cell."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import baselines

    from reprior.experiments.report import write_summary_csv

    setting = {"dataset": "digits", "n_train": 128, "depth": 1, "activation": "relu", "noise_std": 0.1,
               "arch": "mlp", "width": 64, "num_chains": 2, "num_samples": 100, "rhat_max": 1.0}

    def cell(parameterisation, sampler, theta, rb, accept=0.8):
        return {**setting, "parameterisation": parameterisation, "sampler": sampler, "accept_mean": accept,
                "ess_per_eval_theta": theta, "ess_per_eval_rb": rb, "ess_per_second_theta": 10 * theta,
                "ess_per_second_rb": 10 * rb, "sample_seconds": 1.0}
    nuts = write_summary_csv([cell("standard", "nuts", 0.01, 0.05), cell("reprior", "nuts", 0.1, 0.4)],
                             tmp_path / "nuts.csv")
    kernels = write_summary_csv([cell("standard", "mclmc", 0.03, 0.02), cell("reprior", "pcnl", 0.3, 0.2),
                                 cell("standard", "adjusted_mclmc", 0.5, 0.5, accept=0.005)],  # failed: left out
                                tmp_path / "kernels.csv")
    out = tmp_path / "baselines.json"
    assert baselines.main([str(nuts), str(kernels), "--json", str(out)]) == 0
    (entry,) = json.loads(out.read_text())["table"]
    assert entry["width"] == 64 and entry["failed"] == ["standard adjusted_mclmc: accept 0.005"]
    assert (entry["ess_per_eval_theta_standard_sampler"], entry["ess_per_eval_theta_reprior_sampler"]) == (
        "standard mclmc", "reprior pcnl")
    assert close(entry["ess_per_eval_theta_ratio"], 0.3 / 0.03)
    assert (entry["ess_per_eval_rb_standard_sampler"], entry["ess_per_eval_rb_reprior_sampler"]) == (
        "standard nuts", "reprior nuts")
    assert close(entry["ess_per_eval_rb_ratio"], 0.4 / 0.05)
    assert close(entry["ess_per_second_rb_ratio"], 4.0 / 0.5)


def test_record_scores_healthy_cells_and_censors_costs(tmp_path):
    """``record.py``: the targets from healthy cells only, costs censored at the budget where not reached."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import record

    from reprior.experiments.report import write_summary_csv

    def cell(width, parameterisation, sampler, theta, options="{}", rhat=1.0, grads=None, budget=1e5):
        return {"width": width, "parameterisation": parameterisation, "sampler": sampler, "num_chains": 2,
                "num_samples": 100, "rhat_max": rhat, "rhat_theta_max": rhat, "accept_mean": 0.8,
                "ess_per_grad_theta": theta, "ess_per_eval_theta": theta, "ess_per_second_theta": 10 * theta,
                "ess_per_grad_rb": 2 * theta, "sampler_options": options, "b2_reached": grads is not None,
                "grads_to_b2": grads, "budget_grads": budget, "thinning": 1,
                # a gradient-free kernel spends density evaluations, no gradients
                "evals_to_b2": grads if grads is not None or sampler != "pcn" else None,
                "budget_evals": budget}
    rows = [cell(256, "reprior", "split_hmc", 0.01, '{"num_steps": 12}', grads=5e3),
            cell(1024, "reprior", "split_hmc", 0.03, '{"num_steps": 12}', grads=4e3),
            cell(1024, "reprior", "nuts", 0.01, '{"max_tree_depth": 5}'),
            cell(1024, "reprior", "nuts", 0.012),
            cell(1024, "reprior", "pcnl", 0.05),
            {**cell(1024, "reprior", "pcn", float("nan")), "ess_per_eval_theta": 0.02, "b2_reached": True,
             "grads_to_b2": None, "budget_grads": 0, "evals_to_b2": 2e3},
            cell(1024, "reprior", "nuts", 0.5, '{"max_tree_depth": 2}', rhat=1.4),  # failed: never the best
            cell(1024, "standard", "nuts", 0.001, rhat=1.3, budget=6e4),
            cell(1024, "standard", "split_hmc", 0.002, grads=3e4)]
    path = write_summary_csv(rows, tmp_path / "summary.csv")
    out = tmp_path / "record.json"
    assert record.main([str(tmp_path), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    goals = result["targets"]
    assert close(goals["split_hmc_over_nuts"]["ratio"], 0.03 / 0.012) and goals["split_hmc_over_nuts"]["nuts"] == "nuts"
    assert close(goals["split_hmc_over_pcnl"]["ratio"], 0.03 / 0.05)
    assert goals["split_hmc_rising"] == {"ess_per_grad_theta": {"256": 0.01, "1024": 0.03}, "rising": True}
    standard = goals["standard_baseline"]["1024"]
    assert standard["healthy"] == {"split_hmc": ["split_hmc"], "nuts": []}
    assert standard["grads_to_b2"] == {"split_hmc": 3e4, "nuts": None}
    assert standard["failed"] == {"split_hmc": [], "nuts": ["nuts: R-hat 1.3"]}
    by_label = {(c["width"], c["parameterisation"], c["label"]): c for c in result["cells"]}
    censored = by_label[(1024, "standard", "nuts")]
    assert censored["evals_to_b2_text"] == ">= 6e+04 (not reached)" and censored["health"] == "R-hat 1.3"
    assert by_label[(1024, "reprior", "split_hmc (num_steps 12)")]["evals_to_b2_text"] == "4e+03"
    # pCN spends no gradients: its cost is counted in density evaluations, censored at their budget
    gradient_free = by_label[(1024, "reprior", "pcn")]
    assert gradient_free["evals_to_b2"] == 2e3 and gradient_free["evals_to_b2_text"] == "2e+03"
    with pytest.raises(SystemExit):
        record.main([str(tmp_path / "missing")])
    assert path.is_file()


@pytest.mark.parametrize("name", [*BENCHMARKS, "baselines", "cluster", "record"])
def test_every_script_imports_and_parses_its_arguments(name, capsys):
    """The default suite's check of every script (the runs themselves are ``slow``): it imports and
    its argument parser answers ``--help``."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "--json" in capsys.readouterr().out


def test_ideal_reads_a_sweep_summary(tmp_path):
    """``ideal.py --runs-csv``: the NUTS cells of a runner summary.csv as mixing rows."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ideal

    from reprior.experiments.report import write_summary_csv

    cells = [{"width": 64, "parameterisation": p, "sampler": s, "ess_per_grad_pred": g, "ess_per_grad_theta": g / 2,
              "ess_per_grad_phi": g / 3, "steps_per_draw": 31.0}
             for p, s, g in [("standard", "nuts", 0.001), ("reprior", "nuts", 0.01), ("reprior-sampled", "nuts", 0.005),
                             ("reprior", "pcn", 0.5)]]
    path = write_summary_csv(cells, tmp_path / "summary.csv")
    rows = ideal.mixing_from_runs(path)["rows"]
    assert [(r["setting"], r["ess_per_grad_pred"]) for r in rows] == [
        ("standard", 0.001), ("exact", 0.01), ("sampled", 0.005)]  # the pcn cell is not NUTS
    assert rows[1]["ess_per_grad_phi"] == 0.01 / 3 and rows[1]["steps_per_draw_mean"] == 31.0
    ideal_rows = [{"width": 64, "kind": k, "dim": d, "ess_per_grad_proj": 0.02, "steps_per_draw_mean": 15.0}
                  for k, d in (("hidden", 4160), ("joint", 4810))]
    comparison = {c["setting"]: c for c in ideal.compare({"rows": rows}, ideal_rows)}
    assert close(comparison["exact"]["ratio_to_ideal_phi"], (0.01 / 3) / 0.02)
    assert comparison["exact"]["dim"] == 4160 and comparison["standard"]["dim"] == 4810
