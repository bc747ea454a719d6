"""Simulation-based calibration (SBC) of the samplers on a small BNN, with its figure.

The replications and the rank statistics are in :mod:`reprior.evaluation.sbc` (no matplotlib there);
this module adds :func:`plot_ranks`, the rank histograms of :mod:`reprior.experiments.plots`, and is the
package the ``reprior sbc`` command and the first layout's path ``reprior.sbc`` use.
"""

from __future__ import annotations

from reprior.evaluation.sbc import (DTYPES, SUMMARY_NAMES, SBCResult, lag1_autocorrelation, rank_counts, run_sbc,
                                    uniformity_test)
from reprior.experiments.plots import plot_ranks

__all__ = ["DTYPES", "SBCResult", "SUMMARY_NAMES", "lag1_autocorrelation", "plot_ranks", "rank_counts", "run_sbc",
           "uniformity_test"]
