"""Is a run trustworthy?  The one failed-chain rule, behind :func:`reprior.sample`'s warning and every report.

A run's chains *failed* when any of these holds:

* mean acceptance probability below :data:`MIN_ACCEPT` (0.01): the sampler
  barely moved;
* more than :data:`MAX_BAD_FRACTION` (10%) of the draws divergent, or with a
  non-finite log density;
* R-hat above :data:`MAX_RHAT` (1.1), with at least two chains (one chain has
  no R-hat: it is not a failure, and the reports say why it is missing);
* a non-finite value among the recorded draws.

:func:`failure_reasons` applies the rule to plain figures and returns the
reasons; :func:`failure_report` (a run's arrays: the ``failed`` attribute and
warning of :func:`reprior.sample`; also importable from :mod:`reprior.inference.sampling`),
:func:`chain_failure` (summary rows: plain dicts of :func:`reprior.evaluation.diagnostics.cell_metrics`
and settings, for the reports, the plots, the sweep's console and ``reprior status``) call it.  A
failed cell's ESS does not measure mixing, so a report marks it and never uses
it as the baseline of a ratio without a visible flag.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MAX_BAD_FRACTION", "MAX_RHAT", "MIN_ACCEPT", "as_number", "chain_failure", "failure_reasons",
           "failure_report", "finite_reduce", "num_chains", "safe_ratio", "single_chain"]

MIN_ACCEPT = 0.01
MAX_BAD_FRACTION = 0.1
MAX_RHAT = 1.1


def as_number(value) -> float:
    """``value`` as a float: numbers and numeric strings as such, anything else NaN."""
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def num_chains(row: dict) -> float:
    """The cell's number of chains (NaN if unrecorded)."""
    return as_number(row.get("num_chains"))


def single_chain(row: dict) -> bool:
    """True for a one-chain cell: no R-hat (it needs two chains), no rank plot."""
    return num_chains(row) == 1


def failure_reasons(*, accept_mean=math.nan, num_divergent=math.nan, num_nonfinite=math.nan,
                    num_draws=math.nan, num_chains=math.nan, rhat_max=math.nan,
                    num_nonfinite_values=0) -> list[str]:
    """Why a run's chains failed, one short phrase per broken test; ``[]`` if they did not.

    Args:
        accept_mean: mean acceptance probability of the sampling draws, all chains.
        num_divergent: sampling draws (all chains) whose transition diverged.
        num_nonfinite: sampling draws (all chains) whose proposal had a non-finite log density.
        num_draws: sampling draws of all chains, the denominator of the two fractions.
        num_chains: the number of chains; R-hat is judged with two or more.
        rhat_max: the largest R-hat over the groups of :mod:`reprior.evaluation.diagnostics`.
        num_nonfinite_values: non-finite values among the recorded draws.

    A figure that is NaN or None (unrecorded, or a number of chains not known)
    fails no test.  The phrases, in this order: ``"accept 0.005"`` (below
    :data:`MIN_ACCEPT`), ``"12.5% divergent"`` and ``"12.5% non-finite"`` (above
    :data:`MAX_BAD_FRACTION`), ``"R-hat 1.77"`` (above :data:`MAX_RHAT`) and
    ``"3 non-finite recorded values"``; numbers to three significant digits, more
    where three would print the threshold itself (``"R-hat 1.1001"``).
    """
    accept, draws, rhat = as_number(accept_mean), as_number(num_draws), as_number(rhat_max)
    reasons = []
    if math.isfinite(accept) and accept < MIN_ACCEPT:
        reasons.append(f"accept {_beside(accept, MIN_ACCEPT)}")
    for count, what in ((num_divergent, "divergent"), (num_nonfinite, "non-finite")):
        count = as_number(count)
        if math.isfinite(count) and math.isfinite(draws) and draws > 0 and count / draws > MAX_BAD_FRACTION:
            reasons.append(f"{_beside(100 * count / draws, 100 * MAX_BAD_FRACTION)}% {what}")
    if as_number(num_chains) >= 2 and rhat > MAX_RHAT:  # NaN: undefined, not judged; inf fails
        reasons.append(f"R-hat {_beside(rhat, MAX_RHAT)}")
    values = as_number(num_nonfinite_values)
    if math.isfinite(values) and values > 0:
        reasons.append(f"{values:.0f} non-finite recorded value" + ("s" if values != 1 else ""))
    return reasons


def failure_report(stats: dict, draws: dict, *, rhat_max: float = math.nan) -> dict:
    """Counts and reasons for calling a run's chains failed (sampling only, per recorded draw).

    Args:
        stats: the sample statistics, ``(chain, draw)`` arrays; ``accept_prob`` is
            required, ``diverging`` and ``nonfinite`` are counted when present (a draw of
            :func:`reprior.inference.driver.run_chains` is flagged when any iteration of its
            thinning window was).
        draws: the recorded draws, ``(chain, draw, ...)`` arrays.
        rhat_max: the largest R-hat of the run's groups (NaN: not computed, not judged).

    Returns:
        ``{"iterations", "divergent", "nonfinite", "accept_mean", "nonfinite_draws",
        "rhat_max", "reasons"}``; ``reasons`` (:func:`failure_reasons`,
        the reports' rule) is empty for a healthy run.
    """
    accept = np.asarray(stats["accept_prob"], dtype=float)
    iterations = int(accept.size)
    chains = accept.shape[0] if accept.ndim >= 2 else 1
    divergent = int(np.sum(stats.get("diverging", 0)))
    nonfinite = int(np.sum(stats.get("nonfinite", 0)))
    accept_mean = float(np.nanmean(accept)) if iterations else math.nan
    nonfinite_draws = int(sum(np.size(v) - np.count_nonzero(np.isfinite(v)) for v in draws.values()
                              if np.issubdtype(np.asarray(v).dtype, np.floating)))
    reasons = failure_reasons(accept_mean=accept_mean, num_divergent=divergent, num_nonfinite=nonfinite,
                              num_draws=iterations, num_chains=chains, rhat_max=rhat_max,
                              num_nonfinite_values=nonfinite_draws)
    return {"iterations": iterations, "divergent": divergent, "nonfinite": nonfinite, "accept_mean": accept_mean,
            "nonfinite_draws": nonfinite_draws, "rhat_max": float(rhat_max), "reasons": reasons}


def _beside(value: float, threshold: float) -> str:
    """``value`` to three significant digits, or more where three would print the threshold it crossed."""
    for digits in range(3, 18):
        text = f"{value:.{digits}g}"
        if float(text) != threshold:
            return text
    return repr(value)


def chain_failure(row: dict) -> str:
    """Why the cell's chains failed (:func:`failure_reasons` of a summary row), ``", "``-joined; "" if they did not.

    Reads ``accept_mean``, ``divergences``, ``nonfinite`` (or ``num_nonfinite``),
    ``num_draws`` (else ``num_chains * num_samples``), ``num_chains`` and
    ``rhat_max``: ``"accept 0.035, 90% divergent"``.
    """
    draws = as_number(row.get("num_draws"))
    if not (math.isfinite(draws) and draws > 0):
        draws = num_chains(row) * as_number(row.get("num_samples"))
    nonfinite = as_number(row.get("nonfinite"))
    if not math.isfinite(nonfinite):
        nonfinite = as_number(row.get("num_nonfinite"))
    return ", ".join(failure_reasons(accept_mean=row.get("accept_mean"), num_divergent=row.get("divergences"),
                                     num_nonfinite=nonfinite, num_draws=draws, num_chains=num_chains(row),
                                     rhat_max=row.get("rhat_max")))


def finite_reduce(fn, values) -> float:
    """``fn`` (``np.median``, ``np.min``, ``np.mean``, ...) of the finite entries of ``values``; NaN if none."""
    values = np.asarray(values, dtype=float)
    if values.size == 0 or not np.any(np.isfinite(values)):
        return math.nan
    return float(fn(values[np.isfinite(values)]))


def safe_ratio(numerator: float, denominator) -> float:
    """``numerator / denominator``, or NaN where the denominator is missing, not finite or not positive."""
    if denominator is None or not np.isfinite(denominator) or denominator <= 0:
        return math.nan
    return float(numerator) / float(denominator)
