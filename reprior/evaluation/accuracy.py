"""Cost to a given accuracy: a run's error against a reference posterior, as a function of its cost.

ESS measures mixing only for a chain that has mixed.  When a baseline may not
mix, the accepted measure is the error of its estimates against a certified
reference posterior (:mod:`reprior.evaluation.reference`) as a function of what the run
cost.  After ``t`` recorded draws of each of ``C`` chains, pooled over chains,
the running estimates of the posterior mean and second moment of the test
predictions are Rao-Blackwellised: with ``m_s`` and ``v_s`` the mean and
variance of ``f(x_test)`` given the hidden weights of draw ``s``
(``f_test_rb_mean``, ``f_test_rb_var``),

.. math::

    \\hat\\mu_t = \\frac{1}{Ct} \\sum_{c}\\sum_{s \\le t} m_{c,s}, \\qquad
    \\widehat{\\mu^{(2)}}_t = \\frac{1}{Ct} \\sum_{c}\\sum_{s \\le t} (m_{c,s}^2 + v_{c,s}),

and the errors are averaged over the ``m x k`` test scalars ``i`` in units of
the reference's variances (the squared-bias measure of the MCLMC papers'
benchmark, Robnik et al. 2023):

.. math::

    b^2_{\\mathrm{mean}}(t) = \\overline{(\\hat\\mu_{t,i} - \\mu_i)^2 / \\mathrm{Var}[f_i]}, \\quad
    b^2_{\\mathrm{second}}(t) = \\overline{(\\widehat{\\mu^{(2)}}_{t,i} - \\mu^{(2)}_i)^2 / \\mathrm{Var}[f_i^2]}, \\quad
    b^2_{\\mathrm{rb}}(t) = \\overline{(\\hat\\mu_{t,i} - \\mu_i)^2 / \\mathrm{Var}[m_i]}.

For ``N`` independent draws :math:`b^2_{\\mathrm{mean}} \\approx 1/N`, so the
default threshold 0.01 is an effective sample size of 100.  ``b2_rb`` measures
the error in units of the part of the predictive variance due to the hidden
weights: at large width that part is small, and ``b2_mean`` can be small even
when the hidden weights have barely moved; ``b2_rb`` cannot.

The *crossing* is the smallest cost after which both ``b2_mean`` and
``b2_second`` stay below the threshold up to the end of the run (touching it
and leaving again is not a crossing); a run that is not below at its end has
not crossed (cost NaN, ``b2_reached`` false).  The *hidden-weight crossing*
(``b2_rb_reached``, ``grads_to_b2_rb``, ...) is the same rule applied to
``b2_rb`` alone: the verdict on what repriorisation changes, since at large
width both parameterisations can reach the predictive threshold right after
warm-up (the readout, drawn well in both, carries most of the predictive
variance) while only one has moved the hidden weights.  Costs are cumulative and
include warm-up: gradient evaluations, log-density evaluations (gradient
evaluations included) and seconds (warm-up and sampling; compilation
excluded, sampling seconds spread over the draws in proportion to their
log-density evaluations).
"""

from __future__ import annotations

import math

import numpy as np

from reprior._util import checks as _checks

__all__ = ["ACCURACY_COLUMNS", "CURVE_COLUMNS", "CURVE_FILE", "DEFAULT_THRESHOLD", "check_threshold", "cost_to_accuracy",
           "crossing_index", "error_curve"]

DEFAULT_THRESHOLD = 0.01
"""Default ``b^2`` threshold: an effective sample size of 100."""

ACCURACY_COLUMNS = ("b2_pred_mean", "b2_pred_second", "b2_rb_mean", "b2_threshold", "b2_reached", "grads_to_b2",
                    "evals_to_b2", "seconds_to_b2", "budget_grads", "budget_evals", "budget_seconds", "reference_id",
                    "b2_rb_reached", "grads_to_b2_rb", "evals_to_b2_rb", "seconds_to_b2_rb")
"""Keys of :func:`cost_to_accuracy` (and columns of a sweep's ``summary.csv``)."""

CURVE_FILE = "accuracy.csv"
"""A sweep cell's error curve (:func:`error_curve`), under ``OUT/cells/<cell>/``."""

CURVE_COLUMNS = ("draw", "grads", "evals", "seconds", "b2_mean", "b2_second", "b2_rb_mean")
"""Columns of :func:`error_curve` (a cell's ``accuracy.csv``): one row per recorded draw."""


def check_threshold(threshold) -> float:
    """``threshold`` as a float in the open interval (0, 1), else a ValueError naming it."""
    value = _checks.probability("threshold", threshold)
    return value


def _variable(idata, group: str, name: str):
    from reprior.evaluation.diagnostics import _variable as variable

    value = variable(idata, group, name)
    return None if value is None else np.asarray(value, dtype=float)


def _predictive(idata):
    """``(m: (C, S, m, k), v: (C, S, m, 1))`` per draw (:func:`reprior.evaluation.diagnostics.predictive_by_chain`)."""
    from reprior.evaluation.diagnostics import predictive_by_chain

    mean, var = predictive_by_chain(idata)
    if mean is None:
        raise _checks.fail("idata", "InferenceData with test predictions (reprior.sample with x_test)",
                           "no posterior_predictive f_test")
    return mean, var[..., None]


def _per_chain_total(idata, group: str, name: str, num_chains: int) -> np.ndarray:
    stat = _variable(idata, group, name)
    if stat is None or stat.size == 0:
        return np.zeros(num_chains)
    return stat.reshape(stat.shape[0], -1).sum(axis=1)


def _cumulative_cost(idata, name: str, num_chains: int, num_draws: int) -> np.ndarray:
    """Cost ``(S,)`` of all chains after draw ``t`` of each: warm-up plus the sampling draws so far."""
    warm = _per_chain_total(idata, "warmup_sample_stats", name, num_chains).sum()
    stat = _variable(idata, "sample_stats", name)
    if stat is None:
        return np.full(num_draws, math.nan)
    return warm + np.cumsum(stat.reshape(num_chains, num_draws).sum(axis=0))


def _attr(idata, name: str) -> float:
    try:
        return float(idata.attrs.get(name, math.nan))
    except (TypeError, ValueError):
        return math.nan


def _check_reference(idata, reference, shape) -> None:
    if tuple(reference.mean.shape) != tuple(shape):
        raise _checks.fail("reference", f"a reference at {shape[0]} test inputs and {shape[1]} outputs",
                           f"one of shape {tuple(reference.mean.shape)}")
    x_test = _variable(idata, "constant_data", "x_test")
    if x_test is not None and not reference.matches_inputs(x_test):
        raise _checks.fail("reference", "a reference built for the run's test inputs",
                           f"reference {reference.reference_id} built for other test inputs")


def error_curve(idata, reference) -> dict[str, np.ndarray]:
    """Running errors and cumulative costs after each recorded draw (keys :data:`CURVE_COLUMNS`).

    Args:
        idata: an ``InferenceData`` of :func:`reprior.sample` with test predictions.
        reference: the :class:`reprior.evaluation.reference.ReferencePosterior` of the same setting
            and test inputs.

    Returns:
        ``{name: (S,) array}``: ``draw`` (1..S, per chain), ``grads``, ``evals``,
        ``seconds`` (costs of all chains together, warm-up included), ``b2_mean``,
        ``b2_second`` and ``b2_rb_mean`` (see the module docstring).
    """
    m, v = _predictive(idata)
    num_chains, num_draws = m.shape[:2]
    _check_reference(idata, reference, m.shape[2:])
    count = num_chains * np.arange(1, num_draws + 1, dtype=float)[:, None, None]
    run_mean = np.cumsum(m.sum(axis=0), axis=0) / count
    run_second = np.cumsum((m**2 + v).sum(axis=0), axis=0) / count
    mean_err = (run_mean - reference.mean) ** 2
    curve = {
        "draw": np.arange(1, num_draws + 1),
        "grads": _cumulative_cost(idata, "num_grad_evals", num_chains, num_draws),
        "evals": _cumulative_cost(idata, "num_logdensity_evals", num_chains, num_draws),
        "b2_mean": np.mean(mean_err / reference.var, axis=(1, 2)),
        "b2_second": np.mean((run_second - reference.second_moment) ** 2 / reference.second_moment_var, axis=(1, 2)),
        "b2_rb_mean": np.mean(mean_err / reference.rb_var, axis=(1, 2)),
    }
    curve["seconds"] = _seconds(idata, curve["evals"], num_chains, num_draws)
    return {name: curve[name] for name in CURVE_COLUMNS}


def _seconds(idata, evals: np.ndarray, num_chains: int, num_draws: int) -> np.ndarray:
    """Warm-up seconds plus the sampling seconds spread over the draws by their evaluations."""
    warmup, sampling = _attr(idata, "warmup_seconds"), _attr(idata, "sample_seconds")
    warm_evals = _per_chain_total(idata, "warmup_sample_stats", "num_logdensity_evals", num_chains).sum()
    spent = evals - warm_evals
    if np.all(np.isfinite(spent)) and spent[-1] > 0:
        fraction = spent / spent[-1]
    else:
        fraction = np.arange(1, num_draws + 1) / num_draws
    return warmup + sampling * fraction


def run_budget(idata) -> dict[str, float]:
    """A run's whole cost, warm-up included: ``budget_grads``, ``budget_evals``, ``budget_seconds``."""
    m, _ = _predictive(idata)
    num_chains, num_draws = m.shape[:2]
    evals = _cumulative_cost(idata, "num_logdensity_evals", num_chains, num_draws)
    return {"budget_grads": float(_cumulative_cost(idata, "num_grad_evals", num_chains, num_draws)[-1]),
            "budget_evals": float(evals[-1]),
            "budget_seconds": float(_seconds(idata, evals, num_chains, num_draws)[-1])}


def crossing_index(errors, threshold: float) -> int | None:
    """Index of the first draw after which every curve in ``errors`` stays strictly below
    ``threshold`` to the end; None when the last draw is not below (never reached, or left again).

    Args:
        errors: a sequence of equal-length 1-D arrays (NaN counts as not below).
    """
    below = np.all([np.asarray(e, dtype=float) < threshold for e in errors], axis=0)
    if below.size == 0 or not below[-1]:
        return None
    above = np.flatnonzero(~below)
    return int(above[-1] + 1) if above.size else 0


def cost_to_accuracy(idata, reference, threshold: float = DEFAULT_THRESHOLD, *, curve: dict | None = None) -> dict:
    """Score a run against a reference: final errors, the crossing and the run's whole cost.

    Args:
        idata: an ``InferenceData`` of :func:`reprior.sample` with test predictions.
        reference: the :class:`reprior.evaluation.reference.ReferencePosterior` of its setting.
        threshold: the ``b^2`` threshold in (0, 1) (default 0.01: an ESS of 100).
        curve: the run's :func:`error_curve`, if already computed.

    Returns:
        A dict with keys :data:`ACCURACY_COLUMNS`: ``b2_pred_mean``, ``b2_pred_second``
        and ``b2_rb_mean`` (final values), ``b2_threshold``, ``b2_reached``, the cost at
        the crossing (``grads_to_b2``, ``evals_to_b2``, ``seconds_to_b2``: NaN when not
        reached; ``grads_to_b2`` is NaN for a kernel without gradients), the whole cost
        (``budget_grads``, ``budget_evals``, ``budget_seconds``), ``reference_id``, and the
        hidden-weight crossing of ``b2_rb_mean`` alone (``b2_rb_reached``, ``grads_to_b2_rb``,
        ``evals_to_b2_rb``, ``seconds_to_b2_rb``).
    """
    threshold = check_threshold(threshold)
    curve = error_curve(idata, reference) if curve is None else curve
    index = crossing_index((curve["b2_mean"], curve["b2_second"]), threshold)
    rb_index = crossing_index((curve["b2_rb_mean"],), threshold)
    budget_grads = float(curve["grads"][-1])

    def at(name, where=index):
        if where is None or (name == "grads" and not budget_grads > 0):
            return math.nan
        return float(curve[name][where])

    return {
        "b2_pred_mean": float(curve["b2_mean"][-1]),
        "b2_pred_second": float(curve["b2_second"][-1]),
        "b2_rb_mean": float(curve["b2_rb_mean"][-1]),
        "b2_threshold": threshold,
        "b2_reached": index is not None,
        "grads_to_b2": at("grads"),
        "evals_to_b2": at("evals"),
        "seconds_to_b2": at("seconds"),
        "budget_grads": budget_grads,
        "budget_evals": float(curve["evals"][-1]),
        "budget_seconds": float(curve["seconds"][-1]),
        "reference_id": reference.reference_id,
        "b2_rb_reached": rb_index is not None,
        "grads_to_b2_rb": at("grads", rb_index),
        "evals_to_b2_rb": at("evals", rb_index),
        "seconds_to_b2_rb": at("seconds", rb_index),
    }
