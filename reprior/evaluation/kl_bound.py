"""A certified upper bound on the KL divergence from a posterior to its N(0, I) prior.

Every sampled variable of a reprior target has the prior :math:`\\mathcal N(0, I)`
(:mod:`reprior.core.target`), so a posterior is :math:`p(z \\mid Y) \\propto e^{l(z)}\\,
\\mathcal N(z; 0, I)` with :math:`l` the log likelihood of the sampled variables.  The
standard Gaussian satisfies the log-Sobolev inequality with constant 1 (Gross 1975;
Bakry, Gentil & Ledoux 2014, Prop. 5.5.1): for every :math:`\\mu \\ll \\mathcal N(0, I)` with
smooth density ratio :math:`f = d\\mu / d\\mathcal N(0, I)`,
:math:`\\mathrm{KL}(\\mu \\,\\|\\, \\mathcal N(0, I)) \\le \\tfrac12 \\mathbb E_\\mu |\\nabla \\log f|^2`.
For the posterior, :math:`\\log f = l - \\log Z`, so

.. math::

    \\mathrm{KL}\\big(p(z \\mid Y) \\,\\|\\, \\mathcal N(0, I)\\big)
        \\le B = \\tfrac12\\, \\mathbb E_{p(z \\mid Y)}\\big[|\\nabla l(z)|^2\\big],

the relative Fisher information over two.  The bound needs no normalising constant:
it is a posterior mean, estimated from posterior draws :math:`z_{c,s}` (chain ``c``,
draw ``s``) by :math:`\\hat B = \\frac{1}{2CS} \\sum_{c,s} |\\nabla l(z_{c,s})|^2`, whose
Monte Carlo standard error is ArviZ's MCSE of the mean of the series
:math:`|\\nabla l(z_{c,s})|^2` over two (from its ESS, so autocorrelated chains are
accounted for).  The bound is equality for a Gaussian posterior with covariance
:math:`I` (a mean shift), and loose when the posterior is narrower than the prior:
for :math:`\\mathcal N(m, s^2 I_d)` it is :math:`\\tfrac12|m|^2 + \\tfrac d2 (1 - s^2)^2/s^2`
against :math:`\\mathrm{KL} = \\tfrac12|m|^2 + \\tfrac d2(s^2 - 1 - \\log s^2)`.

A KL *estimate* below :math:`\\hat B` (within its error) is consistent; one above it is
wrong (e.g. a log evidence estimated too low), which is what the report flags.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from reprior.inference import arviz_compat as _arviz
from reprior._util import checks as _checks


class LogSobolevBound(NamedTuple):
    """Result of :func:`log_sobolev_bound`: ``bound`` (:math:`\\hat B`, nats), ``mcse`` (its
    Monte Carlo standard error) and ``ess`` (ArviZ's mean ESS of :math:`|\\nabla l|^2`)."""

    bound: float
    mcse: float
    ess: float


def log_sobolev_bound(score_sq_norms) -> LogSobolevBound:
    """:math:`\\tfrac12 \\mathbb E_{\\mathrm{post}}|\\nabla l|^2` and its Monte Carlo error (module docstring).

    Args:
        score_sq_norms: :math:`|\\nabla l(z_{c,s})|^2` at posterior draws, ``(chain, draw)``
            (or ``(draw,)``: one chain), e.g. :func:`reprior.evaluation.limits.hidden_score_sq_norms`
            reshaped.  Non-finite entries (failed factorisations) are left out, the rest
            then read as one series; nothing finite gives NaN.

    Returns:
        :class:`LogSobolevBound`.  With fewer than 4 draws per chain the MCSE and ESS are NaN.
    """
    values = np.asarray(score_sq_norms, np.float64)
    if values.ndim == 1:
        values = values[None]
    if values.ndim != 2:
        raise _checks.fail("score_sq_norms", "an array of shape (chain, draw) or (draw,)",
                           f"array of shape {np.shape(score_sq_norms)}")
    if np.any(values < 0):
        raise _checks.fail("score_sq_norms", "squared norms (non-negative)", "a negative entry")
    if not np.isfinite(values).all():  # failed factorisations: the finite draws, as one series
        values = values[np.isfinite(values)][None]
    if values.size == 0:
        return LogSobolevBound(math.nan, math.nan, math.nan)
    bound = 0.5 * float(np.mean(values))
    if values.shape[1] < 4:
        return LogSobolevBound(bound, math.nan, math.nan)
    ess = float(_arviz.ess(values, method="mean"))
    mcse = 0.5 * float(_arviz.mcse(values, method="mean"))
    return LogSobolevBound(bound, mcse, ess)
