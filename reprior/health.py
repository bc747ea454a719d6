"""Is a cell's run trustworthy?  The failed-chain test behind every report table and plot.

A cell's chains *failed* when any of these holds (the warning thresholds of
the sampling layer):

* mean acceptance probability below :data:`MIN_ACCEPT` (0.01): the sampler
  barely moved;
* more than :data:`MAX_BAD_FRACTION` (10%) of the draws divergent, or with a
  non-finite log density;
* R-hat above :data:`MAX_RHAT` (1.1), with at least two chains (one chain has
  no R-hat: it is not a failure, and the reports say why it is missing).

Such a cell's ESS does not measure mixing, so a report marks it and never uses
it as the baseline of a ratio without a visible flag.  Works on summary rows
(plain dicts of :func:`reprior.diagnostics.cell_metrics` and settings).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MAX_BAD_FRACTION", "MAX_RHAT", "MIN_ACCEPT", "as_number", "chain_failure", "finite_reduce", "num_chains",
           "safe_ratio", "single_chain"]

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


def chain_failure(row: dict) -> str:
    """Why the cell's chains failed, as a short phrase (``"accept 0.035, 90% divergent"``); "" if they did not."""
    reasons = []
    accept = as_number(row.get("accept_mean"))
    if math.isfinite(accept) and accept < MIN_ACCEPT:
        reasons.append(f"accept {accept:.3g}")
    draws = as_number(row.get("num_draws"))
    if not (math.isfinite(draws) and draws > 0):
        draws = num_chains(row) * as_number(row.get("num_samples"))
    for name, what in (("divergences", "divergent"), ("nonfinite", "non-finite"), ("num_nonfinite", "non-finite")):
        count = as_number(row.get(name))
        if math.isfinite(count) and math.isfinite(draws) and draws > 0 and count / draws > MAX_BAD_FRACTION:
            reasons.append(f"{100 * count / draws:.0f}% {what}")
    rhat = as_number(row.get("rhat_max"))
    if num_chains(row) >= 2 and math.isfinite(rhat) and rhat > MAX_RHAT:
        reasons.append(f"R-hat {rhat:.3g}")
    return ", ".join(dict.fromkeys(reasons))


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
