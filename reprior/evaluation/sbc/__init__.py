"""Simulation-based calibration (SBC) of the samplers on a small BNN.

Talts, Betancourt, Simpson, Vehtari and Gelman (2018), "Validating Bayesian
inference algorithms with simulation-based calibration".  If
:math:`\\theta^* \\sim p(\\theta)`, :math:`Y \\sim p(Y \\mid \\theta^*)` and
:math:`\\theta_1, \\dots, \\theta_L` are independent draws from
:math:`p(\\theta \\mid Y)`, then for every scalar summary :math:`g(\\theta, Y)`
the rank

.. math::

    r = \\#\\{\\, l : g(\\theta_l, Y) < g(\\theta^*, Y) \\,\\} \\in \\{0, \\dots, L\\}

is uniform.  A sampler with the wrong stationary distribution (or one that
has not converged) makes some rank histogram non-uniform: a U shape for a
too-narrow posterior, a hump for a too-wide one, a slope for a biased one.

One replication here: draw all weights of an MLP (default width 8, depth 1)
from the N(0, I) prior, targets :math:`Y = f_{\\theta^*}(X) + \\sigma\\varepsilon`
at ``num_data`` fixed synthetic inputs, run a registered sampler (any of
:func:`reprior.inference.kernels.kernel_names`) on the posterior in standard or
repriorised coordinates, keep ``num_draws`` draws thinned by ``thinning``, map
them to standard coordinates (drawing the readout exactly when
``readout="exact"``) and rank the truth in the summaries

* ``hidden_W[0,0]``, ``hidden_b[0]``: two first-layer weights;
* ``readout_W[0,0]``, ``readout_b[0]``: two readout weights;
* ``f(x*_0)``, ``f(x*_1)``: network outputs at two fixed test inputs;
* ``log_likelihood``: :math:`\\log \\mathcal N(Y; f_\\theta(X), \\sigma^2 I)`.

Replications are vectorised with :func:`jax.vmap` and run in batches through
one compiled executable; the observation noise of the sampler's likelihood is
a traced argument, so a deliberately wrong sampler (``sampler_noise_std !=
noise_std``) reuses it.

Uniformity is tested per summary with Pearson's chi-square over ``num_bins``
equal bins of ranks (``num_draws + 1`` must be a multiple of ``num_bins``), at
family-wise level ``level`` with a Bonferroni correction over the summaries:
the sampler is rejected if any p-value is below ``level / num_summaries``.
The draws must be close to independent for the ranks to be uniform (even an
exact but autocorrelated sampler gives non-uniform ranks), so the result also
reports the lag-1 autocorrelation of the thinned draws of each summary.
"""

from __future__ import annotations

from reprior._util.choices import DTYPES
from reprior.evaluation.sbc.runner import run_sbc
from reprior.evaluation.sbc.settings import SBCSettings
from reprior.evaluation.sbc.statistics import (SUMMARY_NAMES, SBCResult, lag1_autocorrelation, rank_counts,
                                               uniformity_test)

__all__ = ["DTYPES", "SBCResult", "SBCSettings", "SUMMARY_NAMES", "lag1_autocorrelation", "rank_counts", "run_sbc",
           "uniformity_test"]
