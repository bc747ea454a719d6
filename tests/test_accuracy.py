"""Cost to accuracy (reprior.evaluation.accuracy): b^2 against closed forms, the crossing rule, cost accounting."""

import math

import numpy as np
import pytest

from reprior.inference.arviz_compat import from_dict
from reprior.evaluation.accuracy import (ACCURACY_COLUMNS, CURVE_COLUMNS, check_threshold, cost_to_accuracy,
                                         crossing_index, error_curve)
from reprior.evaluation.reference import ReferencePosterior, inputs_digest


def _idata(m, v, *, grads_per_draw=3, warmup_grads=2, num_warmup=5, x_test=None, seconds=(1.0, 4.0)):
    """An InferenceData shaped like reprior.sample's: (C, S, m, k) predictive means, (C, S, m) variances."""
    c, s = m.shape[:2]
    groups = {
        "posterior_predictive": {"f_test_rb_mean": m, "f_test_rb_var": v},
        "sample_stats": {"num_grad_evals": np.full((c, s), grads_per_draw),
                         "num_logdensity_evals": np.full((c, s), grads_per_draw + 1)},
        "warmup_sample_stats": {"num_grad_evals": np.full((c, num_warmup), warmup_grads),
                                "num_logdensity_evals": np.full((c, num_warmup), warmup_grads)},
    }
    if x_test is not None:
        groups["constant_data"] = {"x_test": x_test}
    idata = from_dict(groups, dims={"f_test_rb_mean": ["test", "output"], "f_test_rb_var": ["test"]})
    idata.attrs.update({"warmup_seconds": seconds[0], "sample_seconds": seconds[1]})
    return idata


def _reference(mean, var_m, var_v, x_test):
    """The closed-form reference of m ~ N(mean, var_m), v = var_v (f | m ~ N(m, v))."""
    shape = mean.shape
    second = mean**2 + var_m + var_v
    # f ~ N(mean, var_m + var_v): Var[f^2] = 2 s^4 + 4 mu^2 s^2
    s2 = var_m + var_v
    return ReferencePosterior(mean=mean, var=np.full(shape, s2), second_moment=second,
                              second_moment_var=2 * s2**2 + 4 * mean**2 * s2, rb_mean=mean,
                              rb_var=np.full(shape, var_m), diagnostics={"certified": True}, reference_id="ref0",
                              x_test_digest=inputs_digest(x_test))


def test_b2_of_iid_gaussian_draws_is_about_one_over_n(rng):
    # N i.i.d. draws per scalar: N * b2_mean ~ chi2_S / S over S scalars, mean 1, sd sqrt(2 / S);
    # likewise N * b2_second for the second moment (its estimator's variance is Var[f^2] / N).
    chains, draws, num_test, out = 4, 500, 40, 5
    mean = rng.normal(size=(num_test, out))
    x_test = rng.normal(size=(num_test, 3))
    f = mean + rng.standard_normal((chains, draws, num_test, out))
    idata = _idata(f, np.zeros((chains, draws, num_test)), x_test=x_test)
    curve = error_curve(idata, _reference(mean, 1.0, 0.0, x_test))
    scalars = num_test * out
    tol = 4 * math.sqrt(2 / scalars)
    for t in (49, draws - 1):  # after 50 draws per chain and at the end
        n = chains * (t + 1)
        assert abs(n * curve["b2_mean"][t] - 1) < tol
        assert abs(n * curve["b2_rb_mean"][t] - 1) < tol  # rb_var = var here
    n = chains * draws
    # the second moment's error is heavier-tailed (f^2): chi2-like with a larger spread; 6 sd
    assert abs(n * curve["b2_second"][-1] - 1) < 6 * math.sqrt(2 / scalars)


def test_rao_blackwellised_variance_enters_the_second_moment(rng):
    # f | m ~ N(m, v): the running second moment is mean(m^2 + v), so a constant v is no error.
    chains, draws, num_test = 2, 400, 30
    mean = rng.normal(size=(num_test, 1))
    x_test = rng.normal(size=(num_test, 2))
    m = mean + 0.5 * rng.standard_normal((chains, draws, num_test, 1))
    ref = _reference(mean, 0.25, 0.75, x_test)
    idata = _idata(m, np.full((chains, draws, num_test), 0.75), x_test=x_test)
    curve = error_curve(idata, ref)
    n = chains * draws
    # b2_mean in units of the whole variance 1.0: E = 0.25 / n; b2_rb in units of 0.25: E = 1 / n
    assert abs(n * curve["b2_rb_mean"][-1] - 1) < 4 * math.sqrt(2 / num_test)
    np.testing.assert_allclose(curve["b2_mean"], 0.25 * curve["b2_rb_mean"], rtol=1e-12)
    # forgetting v would bias the second moment by 0.75: b2_second = 0.75^2 / Var[f^2] per scalar
    idata_no_v = _idata(m, np.zeros((chains, draws, num_test)), x_test=x_test)
    biased = error_curve(idata_no_v, ref)["b2_second"][-1]
    assert biased > 0.5 * np.mean(0.75**2 / ref.second_moment_var) > 100 * curve["b2_second"][-1]


@pytest.mark.parametrize("curve, expected", [
    ([0.5, 0.2, 0.005, 0.02, 0.005, 0.004], 4),  # left and came back: the second entry counts
    ([0.5, 0.2, 0.005, 0.004, 0.02], None),  # below, then left at the end: not a crossing
    ([0.5, 0.2, 0.01], None),  # touching the threshold is not below it
    ([0.5, 0.2, 0.1], None),  # never reached
    ([0.001, 0.002], 0),  # below from the first draw
    ([0.5, math.nan, 0.001], 2),  # NaN is not below
])
def test_crossing_on_constructed_curves(curve, expected):
    assert crossing_index([np.array(curve)], 0.01) == expected


def test_crossing_needs_both_errors_below():
    mean = np.array([0.5, 0.001, 0.001, 0.001, 0.001])
    second = np.array([0.5, 0.5, 0.5, 0.001, 0.001])
    assert crossing_index([mean, second], 0.01) == 3


def test_cost_to_accuracy_counts_warmup_and_reports_the_crossing(rng):
    chains, draws, num_test = 2, 50, 4
    x_test = rng.normal(size=(num_test, 2))
    mean = np.zeros((num_test, 1))
    # the running mean sits far off for 9 draws, then exactly on the reference from draw 10 on
    m = np.zeros((chains, draws, num_test, 1))
    m[:, :9] = 3.0
    m[:, 9:] = -3.0 * 9 / (draws - 9)  # the total mean after all draws is 0
    idata = _idata(m, np.zeros((chains, draws, num_test)), grads_per_draw=3, warmup_grads=2, num_warmup=5,
                   x_test=x_test, seconds=(1.0, 4.0))
    ref = _reference(mean, 1.0, 0.0, x_test)
    out = cost_to_accuracy(idata, ref, 0.5)
    assert set(out) == set(ACCURACY_COLUMNS)
    curve = error_curve(idata, ref)
    index = crossing_index((curve["b2_mean"], curve["b2_second"]), 0.5)
    assert out["b2_reached"] and index is not None
    # gradients: warm-up 2 chains x 5 x 2, then 2 chains x 3 per draw
    assert out["grads_to_b2"] == 2 * 5 * 2 + 2 * 3 * (index + 1)
    assert out["evals_to_b2"] == 2 * 5 * 2 + 2 * 4 * (index + 1)
    assert out["budget_grads"] == 20 + 2 * 3 * draws
    # seconds: warm-up, then sampling seconds in proportion to the sampling evaluations
    assert out["seconds_to_b2"] == pytest.approx(1.0 + 4.0 * (index + 1) / draws)
    assert out["budget_seconds"] == pytest.approx(5.0)
    assert out["reference_id"] == "ref0" and out["b2_threshold"] == 0.5


def test_not_reached_gives_nan_costs(rng):
    num_test = 3
    x_test = rng.normal(size=(num_test, 2))
    m = np.full((2, 20, num_test, 1), 5.0)  # stuck far from the reference
    out = cost_to_accuracy(_idata(m, np.zeros((2, 20, num_test)), x_test=x_test),
                           _reference(np.zeros((num_test, 1)), 1.0, 0.0, x_test))
    assert out["b2_reached"] is False
    assert all(math.isnan(out[k]) for k in ("grads_to_b2", "evals_to_b2", "seconds_to_b2"))
    assert out["b2_pred_mean"] == pytest.approx(25.0)
    assert out["budget_evals"] == 2 * 5 * 2 + 2 * 4 * 20


def test_a_kernel_without_gradients_has_no_gradient_cost(rng):
    num_test = 3
    x_test = rng.normal(size=(num_test, 2))
    m = np.zeros((2, 10, num_test, 1))
    idata = _idata(m, np.zeros((2, 10, num_test)), grads_per_draw=0, warmup_grads=0, x_test=x_test)
    # b2_mean is 0 and b2_second 1 / Var[f^2] = 0.5 from the first draw: below a threshold of 0.9
    out = cost_to_accuracy(idata, _reference(np.zeros((num_test, 1)), 1.0, 0.0, x_test), 0.9)
    assert out["b2_reached"] and math.isnan(out["grads_to_b2"]) and out["evals_to_b2"] == 2 * 1


@pytest.mark.parametrize("bad", [0, 1, -0.5, 1.5, math.nan, "0.01", True])
def test_threshold_outside_the_unit_interval_is_refused(bad):
    with pytest.raises(ValueError, match="threshold"):
        check_threshold(bad)


def test_a_reference_for_other_test_inputs_is_refused(rng):
    x_test = rng.normal(size=(3, 2))
    idata = _idata(np.zeros((2, 5, 3, 1)), np.zeros((2, 5, 3)), x_test=x_test)
    with pytest.raises(ValueError, match="other test inputs"):
        error_curve(idata, _reference(np.zeros((3, 1)), 1.0, 0.0, x_test + 1.0))
    with pytest.raises(ValueError, match="reference"):
        error_curve(idata, _reference(np.zeros((4, 1)), 1.0, 0.0, x_test))


def test_curve_columns():
    assert CURVE_COLUMNS[0] == "draw" and {"grads", "evals", "seconds", "b2_mean", "b2_second"} <= set(CURVE_COLUMNS)


def test_a_cell_without_reference_keeps_its_whole_cost(rng):
    from reprior.experiments.runner.references import score_cell

    x_test = rng.normal(size=(3, 2))
    idata = _idata(np.zeros((2, 10, 3, 1)), np.zeros((2, 10, 3)), x_test=x_test)
    scored, curve = cost_to_accuracy(idata, _reference(np.zeros((3, 1)), 1.0, 0.0, x_test)), None
    figures, curve = score_cell(idata, None, "no certified reference: R-hat", 0.01, "abc")
    assert curve is None and figures["b2_reached"] is False and figures["reference_id"] == "abc"
    assert math.isnan(figures["b2_pred_mean"]) and figures["reference_failure"].startswith("no certified")
    for name in ("budget_grads", "budget_evals", "budget_seconds"):
        assert figures[name] == pytest.approx(scored[name])


def test_the_hidden_weight_crossing_is_judged_on_b2_rb_alone(rng):
    # The readout carries 99% of the predictive variance: a running mean stuck 0.05 off the reference
    # is within b2_mean = 0.05^2 / 1 = 0.0025 but b2_rb = 0.05^2 / 0.01 = 0.25 (the hidden weights have
    # not moved), so the predictive crosses at the first draw and the hidden weights never do.
    num_test, draws = 3, 20
    x_test = rng.normal(size=(num_test, 2))
    ref = _reference(np.zeros((num_test, 1)), 0.01, 0.99, x_test)
    stuck = _idata(np.full((2, draws, num_test, 1), 0.05), np.full((2, draws, num_test), 0.99), x_test=x_test)
    out = cost_to_accuracy(stuck, ref)
    assert out["b2_pred_mean"] == pytest.approx(0.0025) and out["b2_rb_mean"] == pytest.approx(0.25)
    assert out["b2_reached"] and out["grads_to_b2"] == 2 * 5 * 2 + 2 * 3  # warm-up, then one draw per chain
    assert out["b2_rb_reached"] is False
    assert all(math.isnan(out[k]) for k in ("grads_to_b2_rb", "evals_to_b2_rb", "seconds_to_b2_rb"))
    # off by 0.5 for 4 draws, then on the reference: b2_rb falls below 0.01 once the running mean is within 0.01
    m = np.zeros((2, draws, num_test, 1))
    m[:, :4] = 0.5
    m[:, 4:] = -0.5 * 4 / (draws - 4)
    moving = _idata(m, np.full((2, draws, num_test), 0.99), x_test=x_test)
    out = cost_to_accuracy(moving, ref)
    curve = error_curve(moving, ref)
    index = crossing_index((curve["b2_rb_mean"],), 0.01)
    assert out["b2_rb_reached"] and index is not None and index > 0
    assert out["grads_to_b2_rb"] == 2 * 5 * 2 + 2 * 3 * (index + 1)
    assert out["grads_to_b2_rb"] >= out["grads_to_b2"]  # b2_rb >= b2_mean: never crosses first here
