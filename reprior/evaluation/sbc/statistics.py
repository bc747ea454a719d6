"""The statistics of simulation-based calibration: rank histograms, the uniformity test, the result.

Library code on NumPy and SciPy only (no JAX, no plotting, no command line):
given ranks ``(num_replications, num_summaries)`` in ``0..num_draws`` it bins
them, tests uniformity per summary and holds the outcome in
:class:`SBCResult`.  The replications that produce the ranks are in
:mod:`reprior.evaluation.sbc.runner`; the method is described in :mod:`reprior.experiments.sbc`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats as sps

from reprior._util import checks as _checks

__all__ = ["NOISE_SUMMARY", "SUMMARY_NAMES", "SBCResult", "lag1_autocorrelation", "rank_counts", "uniformity_test"]

SUMMARY_NAMES = ("hidden_W[0,0]", "hidden_b[0]", "readout_W[0,0]", "readout_b[0]", "f(x*_0)", "f(x*_1)",
                 "log_likelihood")
#: The summary added when the noise is inferred (``run_sbc(noise_prior=...)``): :math:`\sigma` itself.
NOISE_SUMMARY = "noise_std"


@dataclasses.dataclass
class SBCResult:
    """Output of :func:`run_sbc`.

    Attributes:
        ranks: ``(num_replications, num_summaries)`` ranks in ``0..num_draws``.
        summary_names: names of the summaries (columns of ``ranks``).
        counts: ``(num_summaries, num_bins)`` rank histogram.
        chi2: ``(num_summaries,)`` Pearson chi-square statistics (``num_bins - 1`` d.o.f.).
        p_values: ``(num_summaries,)`` their p-values.
        level: family-wise level; a summary is rejected if its p-value is below
            ``level / num_summaries`` (Bonferroni).
        rejected: ``(num_summaries,)`` per-summary rejections.
        autocorrelation: ``(num_summaries,)`` mean lag-1 autocorrelation of the
            thinned draws within a replication (should be near 0).
        accept_prob: mean acceptance probability while sampling (all replications).
        num_divergences: divergent iterations while sampling (all replications).
        grad_evals: mean gradient evaluations per replication (warm-up included).
        logdensity_evals: mean log-density evaluations per replication.
        settings: the arguments of :func:`run_sbc`.
        timings: ``compile_seconds`` and ``run_seconds``.
    """

    ranks: np.ndarray
    summary_names: tuple
    counts: np.ndarray
    chi2: np.ndarray
    p_values: np.ndarray
    level: float
    rejected: np.ndarray
    autocorrelation: np.ndarray
    accept_prob: float
    num_divergences: int
    grad_evals: float
    logdensity_evals: float
    settings: dict
    timings: dict

    @property
    def passed(self) -> bool:
        """Whether uniformity is *not* rejected for any summary."""
        return not bool(np.any(self.rejected))

    def table(self) -> str:
        """A plain-text table: one row per summary."""
        s = self.settings
        head = (f"SBC of {s['sampler']} ({s['parameterisation']}"
                f"{', readout ' + s['readout'] if s['parameterisation'] == 'reprior' else ''}): "
                f"{s['num_replications']} replications, {s['num_draws']} draws (thinning {s['thinning']}), "
                f"{s['num_bins']} bins, level {self.level} (Bonferroni: {self.level / len(self.summary_names):.2g} "
                f"per summary)")
        lines = [head, f"{'summary':<16}{'chi2':>9}{'p-value':>11}{'lag-1 ac':>10}  verdict"]
        for name, c, p, ac, rej in zip(self.summary_names, self.chi2, self.p_values, self.autocorrelation,
                                       self.rejected):
            lines.append(f"{name:<16}{c:>9.2f}{p:>11.3g}{ac:>10.2f}  {'REJECT' if rej else 'ok'}")
        lines.append(f"accept_prob {self.accept_prob:.3f}, divergences {self.num_divergences}, "
                     f"{self.grad_evals:.0f} gradient / {self.logdensity_evals:.0f} log-density evaluations "
                     f"per replication; {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-serialisable summary (ranks included)."""
        return {
            "summary_names": list(self.summary_names),
            "ranks": self.ranks.tolist(),
            "counts": self.counts.tolist(),
            "chi2": self.chi2.tolist(),
            "p_values": self.p_values.tolist(),
            "level": self.level,
            "rejected": self.rejected.tolist(),
            "passed": self.passed,
            "autocorrelation": self.autocorrelation.tolist(),
            "accept_prob": self.accept_prob,
            "num_divergences": self.num_divergences,
            "grad_evals": self.grad_evals,
            "logdensity_evals": self.logdensity_evals,
            "settings": self.settings,
            "timings": self.timings,
        }


# -- the statistics -----------------------------------------------------------------------
def rank_counts(ranks, num_draws: int, num_bins: int) -> np.ndarray:
    """Histogram ``(num_summaries, num_bins)`` of ranks ``(num_replications, num_summaries)`` in ``0..num_draws``."""
    ranks = np.asarray(ranks)
    if (num_draws + 1) % num_bins:
        raise _checks.fail("num_bins", f"a divisor of num_draws + 1 = {num_draws + 1}", num_bins)
    bins = ranks * num_bins // (num_draws + 1)
    return np.stack([np.bincount(bins[:, j], minlength=num_bins) for j in range(ranks.shape[1])])


def uniformity_test(ranks, num_draws: int, num_bins: int):
    """Pearson's chi-square test of uniform ranks, per summary.

    .. math:: X^2 = \\sum_{b=1}^{B} \\frac{(O_b - N/B)^2}{N/B} \\sim \\chi^2_{B-1}

    under uniformity (``N`` replications, ``B`` bins).  Returns ``(counts, chi2, p_values)``.
    """
    counts = rank_counts(ranks, num_draws, num_bins)
    expected = counts.sum(axis=1, keepdims=True) / num_bins
    chi2 = np.sum((counts - expected) ** 2 / expected, axis=1)
    return counts, chi2, sps.chi2.sf(chi2, df=num_bins - 1)


def lag1_autocorrelation(draws) -> np.ndarray:
    """Mean over replications of the lag-1 autocorrelation of ``draws: (R, L, S)``."""
    centred = draws - draws.mean(axis=1, keepdims=True)
    var = np.sum(centred**2, axis=1)
    cov = np.sum(centred[:, 1:] * centred[:, :-1], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(var > 0, cov / var, 1.0)  # constant draws: a stuck chain
    return rho.mean(axis=0)
