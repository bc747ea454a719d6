"""Tests for reprior.inference.health: the one failed-chain rule, on plain figures, summary rows and a run's arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reprior.inference import health
from reprior.inference.health import MAX_BAD_FRACTION, MAX_RHAT, MIN_ACCEPT, chain_failure, failure_reasons
from reprior.inference.sampling import failure_report

HEALTHY = dict(accept_mean=0.8, num_divergent=0, num_nonfinite=0, num_draws=1000, num_chains=2, rhat_max=1.01,
               num_nonfinite_values=0)


def reasons(**figures):
    return failure_reasons(**{**HEALTHY, **figures})


def test_a_healthy_run_and_unrecorded_figures_fail_nothing():
    assert reasons() == []
    assert failure_reasons() == []  # every figure unrecorded
    nan = math.nan
    assert reasons(accept_mean=nan, num_divergent=nan, num_nonfinite=nan, rhat_max=nan) == []
    assert reasons(accept_mean=None, num_divergent=None, rhat_max=None, num_chains=None) == []
    assert reasons(num_divergent=900, num_nonfinite=900, num_draws=nan) == []  # no denominator: no fraction
    assert reasons(num_divergent=900, num_nonfinite=900, num_draws=0) == []


@pytest.mark.parametrize("accept, why", [
    (MIN_ACCEPT, []),
    (np.nextafter(MIN_ACCEPT, 1.0), []),
    (np.nextafter(MIN_ACCEPT, 0.0), [f"accept {float(np.nextafter(MIN_ACCEPT, 0.0))!r}"]),  # not "accept 0.01"
    (0.0099, ["accept 0.0099"]),
    (0.005, ["accept 0.005"]),
    (0.0, ["accept 0"]),
])
def test_acceptance_edge(accept, why):
    assert reasons(accept_mean=accept) == why


@pytest.mark.parametrize("name, what", [("num_divergent", "divergent"), ("num_nonfinite", "non-finite")])
@pytest.mark.parametrize("count, draws, why", [
    (100, 1000, None),  # exactly MAX_BAD_FRACTION: not more than it
    (101, 1000, "10.1%"),
    (10001, 100000, "10.001%"),  # three digits would print the threshold
    (99, 1000, None),
    (2, 20, None),
    (3, 20, "15%"),
    (18, 20, "90%"),
    (125, 1000, "12.5%"),
])
def test_bad_fraction_edges(name, what, count, draws, why):
    assert count / draws > MAX_BAD_FRACTION or why is None
    assert reasons(**{name: count}, num_draws=draws) == ([] if why is None else [f"{why} {what}"])


@pytest.mark.parametrize("rhat, chains, why", [
    (MAX_RHAT, 2, []),
    (np.nextafter(MAX_RHAT, 0.0), 2, []),
    (np.nextafter(MAX_RHAT, 2.0), 2, [f"R-hat {float(np.nextafter(MAX_RHAT, 2.0))!r}"]),  # not "R-hat 1.1"
    (1.1001, 2, ["R-hat 1.1001"]),
    (1.77, 2, ["R-hat 1.77"]),
    (1.77, 4, ["R-hat 1.77"]),
    (1.77, 1, []),  # one chain: no R-hat, no failure
    (1.77, math.nan, []),  # number of chains unknown
    (1.77, None, []),
    (math.nan, 2, []),
    (math.inf, 2, ["R-hat inf"]),  # chains that never overlap
])
def test_rhat_edge(rhat, chains, why):
    assert reasons(rhat_max=rhat, num_chains=chains) == why


@pytest.mark.parametrize("count, why", [
    (0, []), (1, ["1 non-finite recorded value"]), (12, ["12 non-finite recorded values"]), (math.nan, []),
])
def test_nonfinite_recorded_values(count, why):
    assert reasons(num_nonfinite_values=count) == why


def test_every_reason_in_order():
    assert reasons(accept_mean=0.005, num_divergent=120, num_nonfinite=300, rhat_max=1.77,
                   num_nonfinite_values=3) == [
        "accept 0.005", "12% divergent", "30% non-finite", "R-hat 1.77", "3 non-finite recorded values"]


# ---------------------------------------------------------------------------
# chain_failure (summary rows) and failure_report (a run's arrays) apply the same rule
# ---------------------------------------------------------------------------


def _row(accept_mean, num_divergent, num_nonfinite, num_draws, num_chains, rhat_max):
    return {"accept_mean": accept_mean, "divergences": num_divergent, "nonfinite": num_nonfinite,
            "num_draws": num_draws, "num_chains": num_chains, "rhat_max": rhat_max}


def _arrays(accept_mean, num_divergent, num_nonfinite, num_chains, draws_per_chain):
    """Sample statistics ``(chain, draw)`` with these figures, and finite recorded draws."""
    shape = (num_chains, draws_per_chain)
    flags = np.zeros(num_chains * draws_per_chain, dtype=bool)
    diverging, nonfinite = flags.copy(), flags.copy()
    diverging[:num_divergent] = True
    nonfinite[len(flags) - num_nonfinite:] = True
    stats = {"accept_prob": np.full(shape, accept_mean), "diverging": diverging.reshape(shape),
             "nonfinite": nonfinite.reshape(shape)}
    return stats, {"theta_proj": np.zeros(shape + (3,)), "f_test": np.ones(shape + (4, 1))}


FIGURES = [  # accept, divergent, non-finite, chains, draws per chain, rhat_max
    (0.8, 0, 0, 2, 50, 1.01),
    (0.8, 0, 0, 2, 50, 1.77),  # two chains stuck apart
    (0.8, 0, 0, 1, 100, math.nan),
    (0.005, 0, 0, 2, 50, 1.0),
    (0.035, 90, 0, 2, 50, 1.05),
    (0.8, 10, 11, 4, 25, 1.1),
    (0.5, 12, 0, 2, 50, 1.2),
]


@pytest.mark.parametrize("accept, divergent, nonfinite, chains, per_chain, rhat", FIGURES)
def test_chain_failure_agrees_with_the_failure_report_of_sample(accept, divergent, nonfinite, chains, per_chain,
                                                                 rhat):
    stats, draws = _arrays(accept, divergent, nonfinite, chains, per_chain)
    report = failure_report(stats, draws, rhat_max=rhat)
    assert {"iterations", "divergent", "nonfinite", "accept_mean", "nonfinite_draws", "rhat_max",
            "reasons"} == set(report)
    assert (report["iterations"], report["divergent"], report["nonfinite"], report["nonfinite_draws"]) == (
        chains * per_chain, divergent, nonfinite, 0)
    assert report["accept_mean"] == pytest.approx(accept, rel=1e-12)
    assert report["rhat_max"] == rhat or (math.isnan(rhat) and math.isnan(report["rhat_max"]))
    row = _row(accept, divergent, nonfinite, chains * per_chain, chains, rhat)
    assert chain_failure(row) == ", ".join(report["reasons"])
    assert report["reasons"] == failure_reasons(accept_mean=accept, num_divergent=divergent,
                                                num_nonfinite=nonfinite, num_draws=chains * per_chain,
                                                num_chains=chains, rhat_max=rhat)


def test_failure_report_counts_nonfinite_recorded_values():
    stats, draws = _arrays(0.8, 0, 0, 2, 10)
    draws["f_test"][0, 3, 2:, 0] = np.nan
    draws["count"] = np.zeros((2, 10), dtype=int)  # integers cannot be non-finite
    report = failure_report(stats, draws)
    assert report["nonfinite_draws"] == 2 and report["reasons"] == ["2 non-finite recorded values"]
    assert math.isnan(report["rhat_max"])


def test_chain_failure_reads_summary_rows():
    row = _row(0.005, 18, 0, 20, 2, 1.5)
    assert chain_failure(row) == "accept 0.005, 90% divergent, R-hat 1.5"
    assert chain_failure(dict(row, accept_mean="0.8", divergences="0", rhat_max="1.01")) == ""  # CSV strings
    # num_draws unrecorded: num_chains * num_samples
    assert chain_failure({"num_chains": 2, "num_samples": 10, "divergences": 3}) == "15% divergent"
    assert chain_failure({"num_chains": 2, "num_samples": 10, "num_nonfinite": 5}) == "25% non-finite"
    assert chain_failure({"num_chains": 1, "rhat_max": 3.0}) == ""
    assert chain_failure({"rhat_max": 3.0}) == ""  # the number of chains unrecorded: R-hat not judged
    assert chain_failure({}) == ""
    assert health.single_chain({"num_chains": "1"}) and not health.single_chain({"num_chains": 2})
