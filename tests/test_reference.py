"""Reference posteriors (reprior.evaluation.reference) and their store (reprior.experiments.runner.references)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import reprior
from reprior.evaluation.reference import (MAX_RHAT, MIN_ESS, ReferenceNotCertified, ReferencePosterior, combine,
                                          inputs_digest, kernel_statistics, reference_id, reference_posterior)
from reprior.experiments.runner.references import REFERENCE_FILE, ReferenceStore, reference_file

from conftest import importance_sampling_predictive, regression_data


def _toy_reference(rid="abc", value=0.0, certified=True, m=3):
    ones = np.ones((m, 1))
    return ReferencePosterior(mean=value * ones, var=ones, second_moment=ones + value**2, second_moment_var=2 * ones,
                              rb_mean=value * ones, rb_var=0.5 * ones, diagnostics={"certified": certified},
                              reference_id=rid, x_test_digest=inputs_digest(np.zeros((m, 2))))


# -- moments and certification on constructed draws --------------------------------------------
def test_moments_of_gaussian_draws_match_closed_forms(rng):
    # m ~ N(mu, 0.3^2), v = 0.2: E f = mu, E f^2 = mu^2 + 0.09 + 0.2, Var f^2 = 2 s^4 + 4 mu^2 s^2 (s^2 = 0.29)
    mu = np.array([[0.5], [-1.0]])
    m = mu + 0.3 * rng.standard_normal((4, 5000, 2, 1))
    v = np.full((4, 5000, 2, 1), 0.2)
    stats = {"a": kernel_statistics(m[:2], v[:2]), "b": kernel_statistics(m[2:], v[2:])}
    moments, figures = combine(stats)
    n = 4 * 5000
    s2 = 0.29
    # tolerances: 5 standard errors of each estimator from n independent draws
    np.testing.assert_allclose(moments["mean"], mu, atol=5 * 0.3 / np.sqrt(n))
    np.testing.assert_allclose(moments["var"], s2, atol=5 * 0.09 * np.sqrt(2 / n))
    np.testing.assert_allclose(moments["rb_var"], 0.09, atol=5 * 0.09 * np.sqrt(2 / n))
    np.testing.assert_allclose(moments["second_moment_var"], 2 * s2**2 + 4 * mu**2 * s2, rtol=0.1)
    assert figures["max_disagreement_mcse"] < 5  # two halves of i.i.d. draws agree
    np.testing.assert_allclose(np.asarray(figures["mcse_mean"]), 0.3 / np.sqrt(n), rtol=0.15)


def test_two_kernels_that_disagree_are_caught(rng):
    m = 0.3 * rng.standard_normal((4, 2000, 2, 1))
    v = np.zeros_like(m)
    shifted = m + 0.1  # 0.1 is about 7 MCSE of two 4000-draw means of sd 0.3
    _, figures = combine({"a": kernel_statistics(m[:2], v[:2]), "b": kernel_statistics(shifted[2:], v[2:])})
    assert figures["max_disagreement_mcse"] > 4


# -- the public function -----------------------------------------------------------------------
def test_a_short_run_is_refused_with_the_failing_figures():
    x, y = regression_data(8, seed=1)
    bnn = reprior.BNN(reprior.MLP(width=4, depth=1), noise_std=0.5)
    with pytest.raises(ReferenceNotCertified) as caught:
        reference_posterior(bnn, x, y, x[:3], samplers=("pcnl", "nuts"), num_chains=2, num_warmup=20, num_samples=30)
    message = str(caught.value)
    assert "not certified for MLP(width=4" in message and "noise_std=0.5" in message
    assert f"ESS" in message and f"< {MIN_ESS}" in message
    assert caught.value.diagnostics["certified"] is False and caught.value.diagnostics["failures"]
    # certify=False returns it, marked
    ref = reference_posterior(bnn, x, y, x[:3], samplers=("pcnl", "nuts"), num_chains=2, num_warmup=20,
                              num_samples=30, certify=False)
    assert not ref.certified and ref.mean.shape == (3, 1)


def test_a_continued_reference_equals_one_longer_build():
    # continuing a failed attempt's chains (init=err.runs) is one longer run of each kernel (same seeds,
    # same adaptation): its moments and diagnostics' draw counts equal a single build's, to round-off
    x, y = regression_data(8, seed=1)
    bnn = reprior.BNN(reprior.MLP(width=4, depth=1), noise_std=0.5)
    args = dict(samplers=("pcnl", "split_hmc"), num_chains=2, num_warmup=20, dtype="float64")
    with pytest.raises(ReferenceNotCertified) as caught:
        reference_posterior(bnn, x, y, x[:3], num_samples=30, **args)
    runs = caught.value.runs
    assert set(runs) == {"pcnl", "split_hmc"}
    continued = reference_posterior(bnn, x, y, x[:3], num_samples=70, certify=False, init=runs, **args)
    whole = reference_posterior(bnn, x, y, x[:3], num_samples=70, certify=False, **args)
    for name in ("mean", "second_moment", "second_moment_var", "rb_var"):
        np.testing.assert_allclose(getattr(continued, name), getattr(whole, name), rtol=1e-9, atol=1e-12)
    for kernel in ("pcnl", "split_hmc"):
        assert continued.diagnostics["kernels"][kernel]["num_draws"] == 2 * 70
        assert continued.diagnostics["kernels"][kernel]["grad_evals"] == whole.diagnostics["kernels"][kernel]["grad_evals"]
    with pytest.raises(ValueError, match="num_samples.*more draws per chain than the 30"):
        reference_posterior(bnn, x, y, x[:3], num_samples=30, init=runs, **args)
    with pytest.raises(ValueError, match="init.*the earlier runs of the kernels"):
        reference_posterior(bnn, x, y, x[:3], num_samples=70, init={"pcnl": runs["pcnl"]}, **args)


@pytest.mark.parametrize("bad, match", [
    (dict(samplers=("nuts",)), "samplers"), (dict(samplers=("nuts", "nuts")), "samplers"),
    (dict(num_chains=1), "num_chains"), (dict(threshold=1.0), "threshold"),
    (dict(sampler_options={"hmc": {}}), "sampler_options"), (dict(thinning={"hmc": 2}), "thinning"),
])
def test_bad_arguments_are_refused_before_sampling(bad, match):
    x, y = regression_data(8)
    bnn = reprior.BNN(reprior.MLP(width=4, depth=1), noise_std=0.5)
    with pytest.raises(ValueError, match=match):
        reference_posterior(bnn, x, y, x[:2], **bad)


def test_certified_reference_agrees_with_importance_sampling():
    # A small, weakly informed setting (noise 0.7, 10 points) where importance sampling from the prior is
    # exact in the limit of many draws and has a large ESS: the certified reference's mean and sd at each
    # test point must agree within 4 combined standard errors (the reference's MCSE and IS's delta-method).
    x, y = regression_data(10, seed=3)
    bnn = reprior.BNN(reprior.MLP(width=16, depth=1), noise_std=0.7)
    x_test = x[:4] + 0.1
    ref = reference_posterior(bnn, x, y, x_test, samplers=("pcnl", "nuts"), num_chains=4, num_warmup=300,
                              num_samples=1500, thinning={"pcnl": 4})
    d = ref.diagnostics
    assert ref.certified and d["rhat_max"] < MAX_RHAT and d["ess_bulk_min"] >= MIN_ESS
    exact = importance_sampling_predictive(bnn, x, y, x_test, num_draws=20_000)
    assert exact["ess"] > 2000
    se_ref = np.asarray(d["mcse_mean"])[:, 0]
    tol = 4 * np.sqrt(se_ref**2 + exact["mean_se"] ** 2)
    assert np.all(tol < 0.25 * exact["sd"])  # the comparison has teeth
    np.testing.assert_array_less(np.abs(ref.mean[:, 0] - exact["mean"]), tol)
    sd = np.sqrt(ref.var[:, 0])
    # the sd's error: delta method on the second moment's MCSE, plus IS's
    sd_se = np.asarray(d["mcse_second"])[:, 0] / (2 * sd)
    np.testing.assert_array_less(np.abs(sd - exact["sd"]), 4 * np.sqrt(sd_se**2 + exact["sd_se"] ** 2) + 1e-3)
    assert ref.reference_id == reference_id(bnn, x, y, x_test, "float64")


# -- files -------------------------------------------------------------------------------------
def test_save_and_load_round_trip(tmp_path):
    ref = _toy_reference(value=0.25)
    path = ref.save(tmp_path / "r.npz")
    back = ReferencePosterior.load(path)
    for name in ("mean", "var", "second_moment", "second_moment_var", "rb_mean", "rb_var"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ref, name))
    assert back.reference_id == "abc" and back.certified and back.matches_inputs(np.zeros((3, 2)))
    assert not back.matches_inputs(np.ones((3, 2)))


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04broken"])
def test_a_corrupt_file_is_refused(tmp_path, content):
    path = tmp_path / "r.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="reference"):
        ReferencePosterior.load(path)


def test_store_builds_once_and_rebuilds_a_corrupt_file(tmp_path):
    store = ReferenceStore(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return _toy_reference("abc")

    budget = {"num_samples": 10}
    assert store.get_or_build("abc", budget, build).reference_id == "abc"
    assert store.get_or_build("abc", budget, build).reference_id == "abc"
    assert len(calls) == 1
    (tmp_path / "abc" / REFERENCE_FILE).write_bytes(b"garbage")  # corrupt: rebuilt, never used
    assert store.load("abc") is None
    store.get_or_build("abc", budget, build)
    assert len(calls) == 2 and store.load("abc") is not None


def test_store_remembers_a_failure_for_its_budget_only(tmp_path):
    store = ReferenceStore(tmp_path)
    calls = []

    def build():
        calls.append(1)
        raise ReferenceNotCertified("not certified: R-hat 1.2", {"certified": False, "failures": ["R-hat 1.2"]})

    for _ in range(2):
        with pytest.raises(ReferenceNotCertified, match="R-hat 1.2"):
            store.get_or_build("abc", {"num_samples": 10}, build)
    assert len(calls) == 1  # the same budget: the stored verdict
    with pytest.raises(ReferenceNotCertified):
        store.get_or_build("abc", {"num_samples": 100}, build)
    assert len(calls) == 2  # a larger budget tries again
    record = json.loads((tmp_path / "abc" / "diagnostics.json").read_text())
    assert record["certified"] is False and record["budget"] == {"num_samples": 100}


def test_two_processes_build_one_reference(tmp_path):
    script = textwrap.dedent(f"""
        import time, numpy as np
        from reprior.evaluation.reference import ReferencePosterior
        from reprior.experiments.runner.references import ReferenceStore
        def build():
            with open({str(tmp_path / 'calls.txt')!r}, "a") as f:
                f.write("built\\n")
            time.sleep(2)
            ones = np.ones((2, 1))
            return ReferencePosterior(ones, ones, ones, ones, ones, ones, {{"certified": True}}, "abc", "d")
        ReferenceStore({str(tmp_path / 'refs')!r}).get_or_build("abc", {{}}, build)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert (tmp_path / "calls.txt").read_text().count("built") == 1


def test_reference_file_finds_and_checks_a_setting(tmp_path):
    store = ReferenceStore(tmp_path / "references")
    store.get_or_build("abc", {}, lambda: _toy_reference("abc"))
    assert reference_file(tmp_path, "abc").name == REFERENCE_FILE  # a sweep's output directory
    assert reference_file(tmp_path / "references", "abc").name == REFERENCE_FILE  # its references folder
    with pytest.raises(ValueError, match="reference.*has none"):
        reference_file(tmp_path, "other")
    single = _toy_reference("xyz").save(tmp_path / "single.npz")
    with pytest.raises(ValueError, match="built for xyz"):
        reference_file(single, "abc")
    uncertified = _toy_reference("abc", certified=False).save(tmp_path / "u.npz")
    with pytest.raises(ValueError, match="not certified"):
        reference_file(uncertified, "abc")


def test_next_attempt_asks_for_enough_draws_at_the_rate_measured():
    from reprior.experiments.runner.references import next_num_samples

    kernels = {"nuts": {"ess_bulk_min": 900.0, "ess_tail_min": 1200.0}, "pcnl": {"ess_bulk_min": 80.0,
                                                                                   "ess_tail_min": 150.0}}
    # ESS 80 from 500 draws: 400 * 1.25 / 80 = 6.25 times as many
    assert next_num_samples(500, {"kernels": kernels}, 8000) == 3125
    # every ESS above the bound (an R-hat or agreement failure): twice as many
    assert next_num_samples(500, {"kernels": {"nuts": {"ess_bulk_min": 900.0, "ess_tail_min": 900.0}}}, 8000) == 1000
    assert next_num_samples(500, {}, 8000) == 1000  # nothing measured: twice as many
    assert next_num_samples(500, {"kernels": kernels}, 2000) == 2000  # capped at the budget's most
    assert next_num_samples(2000, {"kernels": kernels}, 2000) is None  # the budget is spent


def test_the_plan_counts_the_references_to_build():
    from reprior.experiments.runner import grid, sweep

    options = grid.validate(grid.merge(grid.load_config("experiments/quick.toml"), {"widths": [8, 16]}))
    _, cells = sweep.plan(options, dtype="float64")
    assert len(cells) == 4  # two widths, two parameterisations: two settings
    line = sweep.plan_line(cells, cells, [], cells, None, "runs/q", "auto")
    assert "plus the reference posteriors of up to 2 settings, each built once under runs/q/references" in line
    assert "reference" not in sweep.plan_line(cells, cells, [], cells, None, "runs/q", "off")
