"""Distance of a finite-width BNN posterior from its infinite-width limit (docs/diagnostics.md, "Distance to the infinite-width limit").

Hron et al. (2022) make two claims about the limit :math:`d \\to \\infty` (``d``
the width): in repriorised coordinates the weight posterior tends to the prior
:math:`\\mathcal N(0, I)`, and the posterior predictive tends to the NNGP
posterior.  This module turns both into numbers, on plain arrays (no ArviZ; the
extraction from an ``InferenceData`` is :func:`reprior.evaluation.diagnostics.limit_metrics`).

Notation: features :math:`\\Psi = \\Psi(X; \\phi_{\\mathrm{hidden}})`, empirical
kernel :math:`K = \\Psi\\Psi^\\top`, NNGP kernel :math:`K_\\infty`, targets
:math:`Y: (n, k)`, noise :math:`\\sigma`, and the marginal likelihood of the
hidden weights (the readout integrated out, :mod:`reprior.core.repriorise`)

.. math::

    L(\\phi_{\\mathrm{hidden}}) = \\prod_{j=1}^k \\mathcal N(Y_{:j}; 0, K + \\sigma^2 I_n).

**KL to the prior.**  The repriorised posterior factorises as
:math:`p(\\phi \\mid Y) = \\mathcal N(\\phi_{\\mathrm{out}}; 0, I)\\,
\\mathcal N(\\phi_{\\mathrm{hidden}}; 0, I)\\, L(\\phi_{\\mathrm{hidden}}) / Z` with the
evidence :math:`Z = \\mathbb E_{\\mathcal N(0, I)}[L]`, so the readout adds nothing and

.. math::

    \\mathrm{KL}\\big(p(\\phi \\mid Y) \\,\\|\\, \\mathcal N(0, I)\\big)
        = \\mathbb E_{p(\\phi \\mid Y)}[\\log L] - \\log Z \\;\\ge 0 .

The same number is a property of the *target*: a standard-coordinate run samples
the same hidden posterior, so it is defined for every cell.

**Estimating log Z** (:func:`log_evidence_smc`).  Importance sampling from the
prior, :math:`\\hat Z = \\frac1M \\sum_i L(\\phi_i)`, is exact in the limit (there
:math:`L` is constant under the prior) but its log is biased low by about
:math:`\\mathrm{Var}[\\log \\hat Z]/2` and its variance explodes once the posterior
leaves the prior: the Kish ESS of the weights :math:`L(\\phi_i)` is the diagnostic.
We therefore use a sequential Monte Carlo sampler on the tempered path
:math:`\\pi_\\beta \\propto \\mathcal N(0, I)\\, L^\\beta`, :math:`0 = \\beta_0 < \\dots <
\\beta_T = 1` (annealed importance sampling, Neal 2001, with resampling: Del Moral,
Doucet & Jasra 2006), whose estimate

.. math::

    \\log \\hat Z = \\sum_{t=1}^T \\log \\sum_i W^{(t-1)}_i\\,
        L(\\phi^{(t-1)}_i)^{\\beta_t - \\beta_{t-1}}

is unbiased for :math:`Z` whatever the schedule.  Each :math:`\\beta_t` is chosen
adaptively so that the conditional ESS of the incremental weights is a fixed
fraction of the particles (Zhou, Johansen & Aston 2016); when plain importance
sampling from the prior already meets that bar (wide networks), ``T = 1`` and the
estimator *is* importance sampling from the prior.  Between temperatures the
particles move by preconditioned Crank-Nicolson (pCN) steps, which leave
:math:`\\pi_\\beta` invariant for any prior-Gaussian target and do not degrade
with dimension (Cotter et al. 2013).  The reliability figures are the Kish ESS of
plain importance sampling (``kl_is_ess``, out of ``num_particles``) and the number
of temperatures (``kl_num_temperatures``, 1 = plain importance sampling).

**A certified upper bound on the KL** (:func:`hidden_score_sq_norms`,
:func:`reprior.evaluation.kl_bound.log_sobolev_bound`).  The hidden posterior is
:math:`p(\\phi_{\\mathrm{hidden}} \\mid Y) \\propto e^{l}\\, \\mathcal N(0, I)` with
:math:`l = \\log L`, and the standard Gaussian satisfies the log-Sobolev inequality
(Gross 1975) :math:`\\mathrm{KL}(\\mu \\,\\|\\, \\mathcal N(0, I)) \\le \\tfrac12 \\mathbb E_\\mu
|\\nabla \\log (d\\mu / d\\mathcal N)|^2`, so

.. math::

    \\mathrm{KL}\\big(p(\\phi \\mid Y) \\,\\|\\, \\mathcal N(0, I)\\big)
        \\le \\tfrac12\\, \\mathbb E_{p(\\phi \\mid Y)}\\big[|\\nabla_{\\phi_{\\mathrm{hidden}}} \\log L|^2\\big]
        \\quad (\\texttt{kl\\_to\\_prior\\_bound}),

a bound that needs no evidence: a posterior mean only, estimated from posterior draws
with an honest Monte Carlo error.

**The NNGP kernel of an architecture without a closed form** is estimated by
:func:`reprior.core.nngp.monte_carlo_nngp_kernel` (:func:`nngp_reference`), and the metrics
against it say so (``nngp_kernel_estimated``, ``nngp_kernel_mc_stderr``).

**Predictive distance.**  Draws ``s`` of the Rao-Blackwellised predictive
:math:`f_* \\mid \\phi^{(s)}_{\\mathrm{hidden}} \\sim \\mathcal N(\\mu_s, v_s)` make a
mixture with mean :math:`\\bar\\mu = \\frac1S\\sum_s \\mu_s` and variance (law of total
variance) :math:`\\bar v = \\frac1S \\sum_s v_s + \\mathrm{Var}_s(\\mu_s)`, compared with
the NNGP posterior :math:`\\mathcal N(\\mu_\\infty, v_\\infty)` by

.. math::

    \\texttt{nngp\\_pred\\_dist} = \\frac{\\lVert \\bar\\mu - \\mu_\\infty\\rVert_F}{\\lVert\\mu_\\infty\\rVert_F},
    \\qquad
    \\texttt{nngp\\_pred\\_w2} = \\operatorname{mean}_{i,o}
        \\frac{W_2\\big(\\mathcal N(\\bar\\mu_{io}, \\bar v_{io}), \\mathcal N(\\mu_{\\infty,io}, v_{\\infty,i})\\big)}
             {\\sqrt{v_{\\infty,i}}},

with :math:`W_2(\\mathcal N(m_1, s_1^2), \\mathcal N(m_2, s_2^2))^2 = (m_1 - m_2)^2 + (s_1 - s_2)^2`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from reprior._util import checks as _checks
from reprior.core import nngp as _nngp
from reprior.core import repriorise as rp
from reprior.core.pytrees import squared_norm
from reprior.inference.samplers.pcn import PCNParams, PCNState, build_kernel as build_pcn_kernel
from reprior.inference.samplers.base import FlatDensity

#: Metric names of :func:`reprior.evaluation.diagnostics.limit_metrics` (columns of ``summary.csv``).
LIMIT_METRICS = ("nngp_pred_dist", "nngp_pred_w2", "nngp_kernel_dist", "kl_to_prior", "kl_is_ess",
                 "kl_num_temperatures", "log_evidence", "nngp_log_evidence", "test_nll", "kl_to_prior_smc",
                 "nngp_kernel_dist_smc", "nngp_kernel_estimated", "nngp_kernel_mc_stderr", "kl_to_prior_bound",
                 "kl_to_prior_bound_mcse")


# -- Gaussians -------------------------------------------------------------------------
def gaussian_w2(mean1, sd1, mean2, sd2) -> np.ndarray:
    """2-Wasserstein distance between 1-D Gaussians, elementwise (broadcast).

    .. math:: W_2\\big(\\mathcal N(m_1, s_1^2), \\mathcal N(m_2, s_2^2)\\big)
              = \\sqrt{(m_1 - m_2)^2 + (s_1 - s_2)^2}

    (Dowson & Landau 1982; the 1-D case of the Gaussian formula).  ``sd1, sd2 >= 0``.
    """
    mean1, sd1, mean2, sd2 = (np.asarray(a, dtype=np.float64) for a in (mean1, sd1, mean2, sd2))
    if np.any(sd1 < 0) or np.any(sd2 < 0):
        raise _checks.fail("sd1, sd2", "non-negative standard deviations", "a negative entry")
    return np.sqrt((mean1 - mean2) ** 2 + (sd1 - sd2) ** 2)


def gp_log_evidence(kernel, y, noise_std) -> float:
    """GP marginal likelihood :math:`\\sum_j \\log\\mathcal N(Y_{:j}; 0, K + \\sigma^2 I_n)`.

    Cholesky :math:`K + \\sigma^2 I = C C^\\top`:
    :math:`-\\tfrac12 \\lVert C^{-1} Y\\rVert_F^2 - k \\sum_i \\log C_{ii} - \\tfrac{nk}{2}\\log 2\\pi`
    (Rasmussen & Williams 2006, eq. 2.30).  Float64 NumPy; ``kernel: (n, n)``, ``y: (n,)`` or ``(n, k)``.
    """
    kernel = _checks.finite_array("kernel", kernel, ndim=2).astype(np.float64)
    y = _checks.finite_array("y", y, ndim=(1, 2)).astype(np.float64)
    y = y[:, None] if y.ndim == 1 else y
    n = kernel.shape[0]
    if kernel.shape != (n, n) or y.shape[0] != n:
        raise _checks.fail("kernel, y", "a square (n, n) kernel and targets with n rows",
                           f"shapes {kernel.shape} and {y.shape}")
    noise_std = _checks.positive_float("noise_std", noise_std)
    chol = np.linalg.cholesky(kernel + noise_std**2 * np.eye(n))
    alpha = np.linalg.solve(chol, y)
    k = y.shape[1]
    return float(-0.5 * np.sum(alpha**2) - k * np.sum(np.log(np.diag(chol))) - 0.5 * n * k * rp.LOG_2PI)


# -- the NNGP reference ----------------------------------------------------------------
class NNGPReference(NamedTuple):
    """The infinite-width limit of one (data, architecture family, noise): float64 NumPy arrays.

    ``kernel: (n, n)`` is :math:`K_\\infty(X, X)`; ``mean: (m, k)`` and ``var: (m,)`` the NNGP
    posterior predictive of ``f`` at the test inputs (empty with no test inputs);
    ``log_evidence`` the GP marginal likelihood :func:`gp_log_evidence`;
    ``kernel_stderr: (n, n)`` the Monte Carlo standard error per entry where the kernel is
    a Monte Carlo estimate (:func:`reprior.core.nngp.monte_carlo_nngp_kernel`), None where it is
    a closed form.
    """

    kernel: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    log_evidence: float
    kernel_stderr: np.ndarray | None = None

    @property
    def estimated(self) -> bool:
        """Whether the kernel is a Monte Carlo estimate (``nngp_kernel_estimated``)."""
        return self.kernel_stderr is not None

    @property
    def relative_stderr(self) -> float:
        """:math:`\\lVert \\widehat{\\mathrm{se}} \\rVert_F / \\lVert \\hat K \\rVert_F` (``nngp_kernel_mc_stderr``;
        0 for a closed form): the Monte Carlo error in the units of ``nngp_kernel_dist``."""
        if self.kernel_stderr is None:
            return 0.0
        return float(np.linalg.norm(self.kernel_stderr) / np.linalg.norm(self.kernel))


#: Prior draws of the Monte Carlo NNGP kernel of :func:`nngp_reference` by default.
MC_NUM_DRAWS = 256


def nngp_reference(arch, x_train, y_train, x_test, noise_std, *, mc_arch=None, mc_num_draws: int = MC_NUM_DRAWS,
                   mc_seed: int = 0, mc_batch_size: int = 16) -> NNGPReference:
    """Compute :class:`NNGPReference` with :func:`reprior.core.nngp.nngp_kernel` (float64), or its
    Monte Carlo estimate where ``arch`` has no closed form.

    The posterior is :math:`\\mu_\\infty = K_*^\\top (K + \\sigma^2 I)^{-1} Y` and
    :math:`v_\\infty = \\mathrm{diag}(K_{**} - K_*^\\top (K + \\sigma^2 I)^{-1} K_*)`, solved
    here from one kernel over ``[x_train; x_test]`` (the same formula as
    :func:`reprior.core.nngp.nngp_posterior`, which a test compares with).

    Where no NNGP recursion is registered for ``arch``
    (:func:`reprior.core.nngp.has_closed_form_kernel`), the kernel over ``[x_train; x_test]`` is
    :func:`reprior.core.nngp.monte_carlo_nngp_kernel` of ``mc_arch`` (default ``arch``; pass
    the network at the widest width of a sweep: the estimate is the prior mean at that
    width) with ``mc_num_draws`` draws, key ``jax.random.key(mc_seed)``; the posterior is
    the plug-in one, and ``kernel_stderr`` holds the standard error of the training block.

    Args:
        arch: a :class:`~reprior.core.architectures.MLP`, ``ResNet`` (its width plays no part)
            or any architecture.
        x_train: ``(n, ...)``; y_train: ``(n,)`` or ``(n, k)``; x_test: ``(m, ...)`` or None.
        noise_std: :math:`\\sigma > 0`.
        mc_arch, mc_num_draws, mc_seed, mc_batch_size: the Monte Carlo estimate (unused
            with a closed form).
    """
    noise_std = _checks.positive_float("noise_std", noise_std)
    y = _checks.finite_array("y_train", y_train, ndim=(1, 2)).astype(np.float64)
    y = y[:, None] if y.ndim == 1 else y
    n = y.shape[0]
    stderr = None
    with jax.enable_x64(True):
        x_all = np.asarray(x_train, np.float64)
        if x_test is not None and len(x_test):
            x_all = np.concatenate([x_all, np.asarray(x_test, np.float64)])
        if _nngp.has_closed_form_kernel(arch):
            k_all = np.asarray(_nngp.nngp_kernel(arch, jnp.asarray(x_all)), np.float64)
        else:
            est = _nngp.monte_carlo_nngp_kernel(arch if mc_arch is None else mc_arch, jnp.asarray(x_all),
                                                rng_key=jax.random.key(_checks.seed("mc_seed", mc_seed)),
                                                num_draws=mc_num_draws, batch_size=mc_batch_size)
            k_all, stderr = np.asarray(est.kernel, np.float64), np.asarray(est.stderr, np.float64)[:n, :n]
    if k_all.shape[0] < n:
        raise _checks.fail("y_train", f"{k_all.shape[0]} rows to match `x_train`", f"array of shape {y.shape}")
    k_train, k_cross, k_test = k_all[:n, :n], k_all[:n, n:], np.diag(k_all)[n:]
    chol = np.linalg.cholesky(k_train + noise_std**2 * np.eye(n))
    a = np.linalg.solve(chol, k_cross)
    mean = a.T @ np.linalg.solve(chol, y)
    var = np.clip(k_test - np.sum(a**2, axis=0), 0, None)
    return NNGPReference(k_train, mean, var, gp_log_evidence(k_train, y, noise_std), stderr)


# -- the predictive --------------------------------------------------------------------
def _check_draws(draw_mean, draw_var):
    draw_mean = _checks.finite_array("draw_mean", draw_mean, ndim=3).astype(np.float64)
    draw_var = _checks.finite_array("draw_var", draw_var, ndim=2).astype(np.float64)
    if draw_var.shape != draw_mean.shape[:2]:
        raise _checks.fail("draw_var", f"shape {draw_mean.shape[:2]} (draws, test points) to match `draw_mean`",
                           f"array of shape {draw_var.shape}")
    return draw_mean, draw_var


def mixture_moments(draw_mean, draw_var):
    """Mean and variance of the equal-weight mixture of :math:`\\mathcal N(\\mu_s, v_s)`.

    ``draw_mean: (S, m, k)``, ``draw_var: (S, m)`` -> ``(mean: (m, k), var: (m, k))`` with
    :math:`\\bar v = \\frac1S\\sum_s v_s + \\frac1S\\sum_s (\\mu_s - \\bar\\mu)^2` (law of total variance).
    """
    draw_mean, draw_var = _check_draws(draw_mean, draw_var)
    return draw_mean.mean(axis=0), draw_var.mean(axis=0)[:, None] + draw_mean.var(axis=0)


def predictive_limit_metrics(draw_mean, draw_var, reference: NNGPReference) -> dict[str, float]:
    """``nngp_pred_dist`` and ``nngp_pred_w2`` (module docstring) of predictive draws against ``reference``.

    ``draw_mean: (S, m, k)``, ``draw_var: (S, m)``: the Rao-Blackwellised predictive per draw.
    Test points with :math:`v_\\infty = 0` are left out of the W2 mean.
    """
    mean, var = mixture_moments(draw_mean, draw_var)
    ref_mean, ref_var = np.asarray(reference.mean, np.float64), np.asarray(reference.var, np.float64)
    if ref_mean.shape != mean.shape or ref_var.shape != (mean.shape[0],):
        raise _checks.fail("reference", f"an NNGP posterior of shapes {mean.shape} and ({mean.shape[0]},)",
                           f"shapes {ref_mean.shape} and {ref_var.shape}")
    norm = np.linalg.norm(ref_mean)
    dist = float(np.linalg.norm(mean - ref_mean) / norm) if norm > 0 else math.nan
    ref_sd = np.sqrt(ref_var)[:, None]
    w2 = gaussian_w2(mean, np.sqrt(var), ref_mean, ref_sd)
    ok = np.broadcast_to(ref_sd > 0, w2.shape)
    return {"nngp_pred_dist": dist,
            "nngp_pred_w2": float(np.mean(w2[ok] / np.broadcast_to(ref_sd, w2.shape)[ok])) if ok.any() else math.nan}


def accuracy_metrics(draw_mean, draw_var, y_test, noise_std) -> dict[str, float]:
    """``test_rmse`` and ``test_nll``: accuracy of the moment-matched predictive of ``y``.

    .. math::

        \\mathrm{RMSE} = \\big(\\operatorname{mean}_{i,o} (y_{io} - \\bar\\mu_{io})^2\\big)^{1/2}, \\qquad
        \\mathrm{NLL} = \\operatorname{mean}_{i,o} -\\log\\mathcal N(y_{io}; \\bar\\mu_{io}, \\bar v_{io} + \\sigma^2),

    with :math:`\\bar\\mu, \\bar v` of :func:`mixture_moments` (noise included in the NLL).
    """
    mean, var = mixture_moments(draw_mean, draw_var)
    y = _checks.finite_array("y_test", y_test, ndim=(1, 2)).astype(np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if y.shape != mean.shape:
        raise _checks.fail("y_test", f"targets of shape {mean.shape}", f"array of shape {y.shape}")
    total = var + _checks.positive_float("noise_std", noise_std) ** 2
    nll = 0.5 * ((y - mean) ** 2 / total + np.log(total) + rp.LOG_2PI)
    return {"test_rmse": float(np.sqrt(np.mean((y - mean) ** 2))), "test_nll": float(np.mean(nll))}


# -- per-draw quantities of the hidden weights ----------------------------------------------
def hidden_log_likelihood_fn(bnn, x, y):
    """``hidden -> log L(hidden)``: :func:`reprior.core.repriorise.log_marginal_likelihood` of the features."""
    x, y = bnn.check_data(x, y)
    x, y = jnp.asarray(x), jnp.asarray(y)
    noise_std = bnn.fixed_noise_std("the likelihood of the hidden weights (evidence, KL to the prior)")
    return lambda hidden: rp.log_marginal_likelihood(bnn.features({"hidden": hidden}, x), y, noise_std)


def hidden_draw_statistics(bnn, hidden_draws, x, y, kernel_ref=None, *, batch_size: int = 16):
    """Per draw of the hidden weights: :math:`\\log L` and the kernel distance to ``kernel_ref``.

    Args:
        bnn: the :class:`~reprior.BNN`.
        hidden_draws: the ``params["hidden"]`` pytree with a leading draw axis ``S``.
        x, y: training data ``(n, ...)``, ``(n, k)``.
        kernel_ref: ``(n, n)`` limit kernel, or None (distances NaN).
        batch_size: draws evaluated at once (memory: ``batch_size * n * p``).

    Returns:
        ``(log_lik: (S,), kernel_dist: (S,))`` float64 NumPy arrays,
        ``kernel_dist = ||Psi Psi^T - K_ref||_F / ||K_ref||_F`` (as :func:`reprior.core.nngp.kernel_distance`).
    """
    loglik = hidden_log_likelihood_fn(bnn, x, y)
    xj = jnp.asarray(x)
    ref = None if kernel_ref is None else jnp.asarray(kernel_ref, jnp.result_type(xj))

    def one(hidden):
        psi = bnn.features({"hidden": hidden}, xj)
        dist = jnp.nan if ref is None else jnp.linalg.norm(psi @ psi.T - ref) / jnp.linalg.norm(ref)
        return loglik(hidden), dist

    ll, dist = jax.jit(lambda h: jax.lax.map(one, h, batch_size=batch_size))(hidden_draws)
    return np.asarray(ll, np.float64), np.asarray(dist, np.float64)


def score_sq_norms(loglik_fn, draws, *, batch_size: int = 16) -> np.ndarray:
    """:math:`|\\nabla l(z_s)|^2` at each draw ``z_s`` (a pytree with a leading draw axis ``S``).

    The squared Euclidean norm of the gradient of ``loglik_fn`` (``z -> l(z)``, a scalar,
    for one draw) over every leaf, by reverse-mode differentiation at the given draws,
    ``batch_size`` at a time.  Returns ``(S,)`` float64 NumPy (NaN where ``l`` or its
    gradient is not finite).
    """
    batch_size = _checks.positive_int("batch_size", batch_size)

    def one(z):
        value, grad = jax.value_and_grad(loglik_fn)(z)
        sq = squared_norm(grad)
        return jnp.where(jnp.isfinite(value) & jnp.isfinite(sq), sq, jnp.nan)

    return np.asarray(jax.jit(lambda zs: jax.lax.map(one, zs, batch_size=batch_size))(draws), np.float64)


def hidden_score_sq_norms(bnn, hidden_draws, x, y, *, batch_size: int = 16) -> np.ndarray:
    """:math:`|\\nabla_{\\phi_{\\mathrm{hidden}}} \\log L|^2` per draw of the hidden weights, the integrand
    of ``kl_to_prior_bound`` (module docstring; :func:`reprior.evaluation.kl_bound.log_sobolev_bound`).

    :math:`l = \\log L` (:func:`hidden_log_likelihood_fn`) is the log likelihood of the
    repriorised target's sampled variables: with :math:`\\theta_{\\mathrm{out}} = T(\\phi)`,

    .. math::

        l(\\phi) = \\log p(Y \\mid \\phi_{\\mathrm{hidden}}, T(\\phi))
            + \\log\\mathcal N(T(\\phi); 0, I) - \\log \\mathcal N(\\phi_{\\mathrm{out}}; 0, I)
            + k \\log|\\det \\sigma R| = \\log L(\\phi_{\\mathrm{hidden}}),

    the log likelihood plus the log prior ratio and the log-Jacobian, which do not depend on
    :math:`\\phi_{\\mathrm{out}}` (the factorisation of :mod:`reprior.core.repriorise`), so
    :math:`p(\\phi \\mid Y) \\propto e^{l(\\phi)}\\, \\mathcal N(\\phi; 0, I)` and the gradient in
    :math:`\\phi_{\\mathrm{out}}` is zero.  The hidden posterior is the same in standard
    coordinates, so the figure is defined for every cell (in standard coordinates the
    KL of the full :math:`\\theta` posterior is larger, and is not this one).

    Args:
        bnn: the :class:`~reprior.BNN`; hidden_draws: ``params["hidden"]`` with a leading
            draw axis ``S``; x, y: training data ``(n, ...)``, ``(n, k)``.

    Returns:
        ``(S,)`` float64 NumPy array.
    """
    return score_sq_norms(hidden_log_likelihood_fn(bnn, x, y), hidden_draws, batch_size=batch_size)


# -- the evidence ------------------------------------------------------------------------
class EvidenceEstimate(NamedTuple):
    """Result of :func:`log_evidence_smc`.

    Fields: ``log_evidence`` (:math:`\\log\\hat Z`); ``posterior_mean_loglik``
    (:math:`\\sum_i W_i \\log L(\\phi_i)` over the final weighted particles);
    ``is_ess`` (Kish ESS of the plain prior importance weights :math:`L(\\phi_i)` of the
    first generation, between 1 and ``num_particles``); ``num_temperatures`` (``T``);
    ``temperatures: (T + 1,)``; ``num_particles``; ``particles`` (pytree, leading axis
    ``M``), ``log_weights: (M,)`` (normalised) and ``loglik: (M,)`` of the final generation;
    ``acceptance: (T,)``, the mean pCN acceptance after each temperature (NaN at the last).
    """

    log_evidence: float
    posterior_mean_loglik: float
    is_ess: float
    num_temperatures: int
    temperatures: np.ndarray
    num_particles: int
    particles: object
    log_weights: np.ndarray
    loglik: np.ndarray
    acceptance: np.ndarray

    @property
    def kl_to_prior(self) -> float:
        """:math:`\\mathbb E_{\\mathrm{post}}[\\log L] - \\log\\hat Z` from the particles alone."""
        return self.posterior_mean_loglik - self.log_evidence


def _logsumexp(a: np.ndarray) -> float:
    top = np.max(a)
    return float(top + np.log(np.sum(np.exp(a - top)))) if np.isfinite(top) else -math.inf


def _normalise(log_w: np.ndarray) -> np.ndarray:
    return log_w - _logsumexp(log_w)


def kish_ess(log_weights) -> float:
    """:math:`(\\sum_i w_i)^2 / \\sum_i w_i^2` of unnormalised log weights (0 if all are -inf)."""
    log_w = np.asarray(log_weights, np.float64)
    if not np.any(np.isfinite(log_w)):
        return 0.0
    w = np.exp(_normalise(log_w))
    return float(1.0 / np.sum(w**2))


def _conditional_ess(log_w: np.ndarray, loglik: np.ndarray, delta: float) -> float:
    """:math:`(\\sum W_i w_i)^2 / \\sum W_i w_i^2` with :math:`w_i = L_i^\\delta` (a fraction in (0, 1])."""
    inc = delta * loglik
    a, b = _logsumexp(log_w + inc), _logsumexp(log_w + 2 * inc)
    return math.exp(2 * a - b)


def _next_delta(log_w, loglik, remaining: float, target: float) -> float:
    """The largest step :math:`\\delta \\le` ``remaining`` whose conditional ESS is ``>= target`` (bisection)."""
    if _conditional_ess(log_w, loglik, remaining) >= target:
        return remaining
    low, high = 0.0, remaining
    for _ in range(60):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if _conditional_ess(log_w, loglik, mid) >= target else (low, mid)
    return max(low, remaining * 1e-9)


@functools.lru_cache(maxsize=8)
def _make_move(loglik_fn, batch_size: int, particle_spec):
    """``(batch_loglik, move)``, jitted.  ``move(key, z, ll, beta, step)`` is one step of the package's
    pCN kernel (:func:`reprior.inference.samplers.pcn.build_kernel`, reference N(0, I), ``b = step``)
    for every particle, targeting :math:`\\mathcal N(0, I) L^\\beta`: the proposal
    :math:`\\phi' = \\sqrt{1 - b^2}\\,\\phi + b\\,\\xi` accepted with probability
    :math:`\\min(1, (L(\\phi')/L(\\phi))^\\beta)`, non-finite :math:`L` rejected.  The kernel's
    density evaluation carries the untempered :math:`\\log L` of the kept point (``ll``).
    ``particle_spec``: ``(treedef, ((shape, dtype), ...))`` of one particle, the layout of the flat
    vectors the kernel moves (hashable, for the cache)."""
    treedef, leaf_specs = particle_spec
    _, unravel = ravel_pytree(jax.tree_util.tree_unflatten(treedef, [np.zeros(shape, dtype)
                                                                     for shape, dtype in leaf_specs]))

    def finite_loglik(tree):
        ll = loglik_fn(tree)
        return jnp.where(jnp.isfinite(ll), ll, -jnp.inf)

    def batch_loglik(z):
        return jax.lax.map(finite_loglik, z, batch_size=batch_size)

    def move(key, z, ll, beta, step):
        def tempered(flat):
            value = finite_loglik(unravel(flat))
            return beta * value, value

        density = FlatDensity(lambda flat: tempered(flat)[0], None, 1.0, tempered)
        kernel_step = build_pcn_kernel(density, langevin=False)
        flats = jax.vmap(lambda tree: ravel_pytree(tree)[0])(z)
        params = PCNParams(jnp.asarray(step, flats.dtype))

        def one(args):
            particle_key, flat, value = args
            state = PCNState(flat, beta * value, beta * value - 0.5 * flat @ flat, None, value)
            new, info = kernel_step(particle_key, state, params)
            return new.position, new.evaluation, info.is_accepted

        keys = jax.random.split(key, ll.shape[0])
        flats, ll, accepted = jax.lax.map(one, (keys, flats, ll), batch_size=batch_size)
        return jax.vmap(unravel)(flats), ll, jnp.mean(accepted)

    return jax.jit(batch_loglik), jax.jit(move)


def _resample(key, z, log_w: np.ndarray):
    """Systematic resampling (Kitagawa 1996): indices with expected counts :math:`M W_i`."""
    m = log_w.shape[0]
    u = (float(jax.random.uniform(key)) + np.arange(m)) / m
    cdf = np.cumsum(np.exp(log_w))
    idx = np.minimum(np.searchsorted(cdf / cdf[-1], u), m - 1)
    return jax.tree_util.tree_map(lambda a: a[idx], z), idx


def log_evidence_smc(loglik_fn, init_particles, rng_key, *, target_ess: float = 0.8, num_moves: int = 10,
                     max_temperatures: int = 200, batch_size: int = 16) -> EvidenceEstimate:
    """:math:`\\log \\mathbb E_{\\mathcal N(0, I)}[L]` by adaptive tempered SMC with pCN moves.

    The algorithm of the module docstring.  With normalised weights :math:`W` and
    log-likelihoods :math:`\\ell_i = \\log L(\\phi_i)` at temperature :math:`\\beta`:

    1. choose :math:`\\delta \\le 1 - \\beta` as large as possible with
       :math:`(\\sum_i W_i e^{\\delta\\ell_i})^2 / \\sum_i W_i e^{2\\delta\\ell_i} \\ge` ``target_ess``;
    2. :math:`\\log\\hat Z \\mathrel{+}= \\log\\sum_i W_i e^{\\delta\\ell_i}`,
       :math:`W_i \\propto W_i e^{\\delta\\ell_i}`, :math:`\\beta \\mathrel{+}= \\delta`;
    3. if :math:`\\beta < 1`: resample (systematic) when the Kish ESS is below half the
       particles, then ``num_moves`` pCN steps targeting :math:`\\mathcal N(0, I) L^\\beta`,
       the step :math:`b` tuned towards 30% acceptance (per step, from the population).

    Adapting :math:`\\beta_t` and :math:`b` to the current population makes the estimator
    consistent rather than exactly unbiased (Beskos, Jasra, Kantas & Thiery 2016).

    Args:
        loglik_fn: ``particle -> log L`` (scalar) for one particle (a pytree of arrays);
            a non-finite value counts as :math:`L = 0`.
        init_particles: ``M`` i.i.d. draws of the prior :math:`\\mathcal N(0, I)` (every
            leaf with a leading axis ``M``).
        rng_key: JAX PRNG key for the moves and the resampling.
        target_ess: conditional ESS fraction per temperature step, in (0, 1).
        num_moves: pCN steps per temperature.
        max_temperatures: at most this many steps; past it the last step jumps to
            :math:`\\beta = 1` (``num_temperatures`` then equals it: a warning sign).
        batch_size: particles whose likelihood is evaluated at once.
    """
    _checks.probability("target_ess", target_ess)
    num_moves = _checks.nonnegative_int("num_moves", num_moves)
    max_temperatures = _checks.positive_int("max_temperatures", max_temperatures)
    batch_size = _checks.positive_int("batch_size", batch_size)
    leaves = jax.tree_util.tree_leaves(init_particles)
    if not leaves or any(jnp.ndim(a) < 1 or jnp.shape(a)[0] != jnp.shape(leaves[0])[0] for a in leaves):
        raise _checks.fail("init_particles", "a pytree of arrays with a common leading particle axis",
                           [jnp.shape(a) for a in leaves])
    m = int(jnp.shape(leaves[0])[0])
    if m < 2:
        raise _checks.fail("init_particles", "at least 2 particles", m)
    treedef = jax.tree_util.tree_structure(init_particles)
    spec = (treedef, tuple((tuple(jnp.shape(a)[1:]), jnp.result_type(a).str) for a in leaves))
    batch_loglik, move = _make_move(loglik_fn, min(batch_size, m), spec)
    z = init_particles
    ll_j = batch_loglik(z)
    ll = np.asarray(ll_j, np.float64)
    is_ess = kish_ess(ll)
    log_w = np.full(m, -math.log(m))
    beta, log_z, temps, acceptance, step = 0.0, 0.0, [0.0], [], 0.5
    key = rng_key
    while beta < 1.0:
        remaining = 1.0 - beta
        delta = remaining if len(temps) >= max_temperatures else _next_delta(log_w, ll, remaining, target_ess)
        log_z += _logsumexp(log_w + delta * ll)
        log_w = _normalise(log_w + delta * ll)
        beta = 1.0 if delta >= remaining else beta + delta
        temps.append(beta)
        if beta >= 1.0:
            acceptance.append(math.nan)
            break
        key, resample_key, move_key = jax.random.split(key, 3)
        if kish_ess(log_w) < m / 2:
            z, idx = _resample(resample_key, z, log_w)
            ll_j, log_w = ll_j[idx], np.full(m, -math.log(m))
        rates = []
        for move_key_t in jax.random.split(move_key, num_moves):
            z, ll_j, rate = move(move_key_t, z, ll_j, beta, step)
            rate = float(rate)
            rates.append(rate)
            step = float(np.clip(step * math.exp(rate - 0.3), 1e-4, 1.0))
        ll = np.asarray(ll_j, np.float64)
        acceptance.append(float(np.mean(rates)) if rates else math.nan)
    finite = np.isfinite(ll)
    post_mean = float(np.sum(np.exp(log_w[finite]) * ll[finite]))
    return EvidenceEstimate(float(log_z), post_mean, is_ess, len(temps) - 1, np.asarray(temps), m, z, log_w, ll,
                            np.asarray(acceptance))


def bnn_log_evidence(bnn, x, y, rng_key, *, num_particles: int = 64, **smc_options) -> EvidenceEstimate:
    """:func:`log_evidence_smc` for a BNN: :math:`\\log \\mathbb E_{\\phi_{\\mathrm{hidden}} \\sim \\mathcal N(0, I)}
    \\prod_j \\mathcal N(Y_{:j}; 0, \\Psi\\Psi^\\top + \\sigma^2 I)`.

    ``x: (n, ...)``, ``y: (n,)`` or ``(n, k)``; the particles are ``num_particles``
    prior draws of ``params["hidden"]`` (:meth:`reprior.BNN.init`), in the dtype of the
    current x64 mode.  ``smc_options`` go to :func:`log_evidence_smc`.
    """
    num_particles = _checks.positive_int("num_particles", num_particles)
    x, y = bnn.check_data(x, y)
    init_key, smc_key = jax.random.split(rng_key)
    xj = jnp.asarray(x, jnp.result_type(float))
    out_dim = int(np.shape(y)[1])
    hidden = jax.vmap(lambda k: bnn.init(k, xj, out_dim)["hidden"])(jax.random.split(init_key, num_particles))
    return log_evidence_smc(hidden_log_likelihood_fn(bnn, xj, jnp.asarray(y, xj.dtype)), hidden, smc_key,
                            **smc_options)


# -- the cache of the limits of a sweep --------------------------------------------------------
def cache_key(description: dict) -> str:
    """16 hex characters of the sha256 of the canonical JSON of ``description``."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cache_lock(path: Path):
    """The OS file lock of one cache entry (``.locks/<name>.lock`` in its folder): two processes that
    need the same entry build it once, the second waits and loads it."""
    from filelock import FileLock

    folder = path.parent / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / f"{path.name}.lock"))


def _cached(path: Path, load_fn, build_fn, write_fn):
    """Load the entry at ``path``; else, under its lock, load it again (another process may have
    built it meanwhile) or build it and write it atomically (:func:`reprior._util.files.atomic_write`).
    An entry that cannot be read (truncated, corrupt, of another layout) is rebuilt."""
    from reprior._util.files import atomic_write

    def load():
        if not path.is_file():
            return None
        try:
            return load_fn(path)
        except Exception:  # a corrupt entry (BadZipFile, ValueError, KeyError, EOFError, ...): rebuild it
            return None

    value = load()
    if value is not None:
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    with _cache_lock(path):
        value = load()
        if value is not None:
            return value
        value = build_fn()
        atomic_write(path, lambda tmp: write_fn(tmp, value))
    return value


def cached_nngp_reference(cache_dir, description: dict, compute_fn) -> NNGPReference:
    """``compute_fn()`` stored as ``<cache_dir>/nngp-<key>.npz`` (with ``description`` as JSON beside it)
    and loaded from there by later calls with an equal ``description``; built once under a lock,
    written atomically, rebuilt if the entry is corrupt."""
    from reprior._util.files import atomic_write_text

    path = Path(cache_dir) / f"nngp-{cache_key(description)}.npz"

    def load(file):  # from bytes: NumPy leaves the file open when a truncated archive fails to parse
        with np.load(io.BytesIO(Path(file).read_bytes()), allow_pickle=False) as f:
            return NNGPReference(f["kernel"], f["mean"], f["var"], float(f["log_evidence"]),
                                 f["kernel_stderr"] if "kernel_stderr" in f.files else None)

    def write(tmp, ref):
        extra = {} if ref.kernel_stderr is None else {"kernel_stderr": ref.kernel_stderr}
        with open(tmp, "wb") as handle:  # a file object: np.savez adds no suffix
            np.savez(handle, kernel=ref.kernel, mean=ref.mean, var=ref.var, log_evidence=ref.log_evidence, **extra)

    built = []

    def build():
        built.append(True)
        return compute_fn()

    ref = _cached(path, load, build, write)
    if built:
        atomic_write_text(path.with_suffix(".json"), json.dumps(description, sort_keys=True, indent=1, default=str))
    return ref


def evidence_summary(estimate: EvidenceEstimate, bnn=None, x=None, kernel_ref=None, y=None) -> dict[str, float]:
    """The JSON-able scalars of ``estimate`` that a cell needs (and that are cached).

    Keys ``log_evidence``, ``posterior_mean_loglik``, ``is_ess``, ``num_temperatures``,
    ``num_particles`` and ``kernel_dist``: the weighted mean over the final particles of
    the distance of their kernel from ``kernel_ref`` (NaN without ``bnn, x, kernel_ref``),
    an estimate of the posterior mean of ``nngp_kernel_dist`` that needs no stored draws;
    with ``bnn, x, y``, also ``score_sq_mean`` and ``score_sq_se``: the weighted mean over the
    final particles of :func:`hidden_score_sq_norms` and its standard error
    :math:`(\\sum_i W_i^2 (g_i - \\bar g)^2)^{1/2}` (independent particles assumed; resampling
    correlates them, so it is optimistic), for ``kl_to_prior_bound`` without stored draws.
    """
    kernel_dist = math.nan
    weights = np.exp(estimate.log_weights)
    if bnn is not None and kernel_ref is not None:
        xj = jnp.asarray(x)
        ref = jnp.asarray(kernel_ref, xj.dtype)

        def one(hidden):
            psi = bnn.features({"hidden": hidden}, xj)
            return jnp.linalg.norm(psi @ psi.T - ref) / jnp.linalg.norm(ref)

        dist = np.asarray(jax.jit(lambda h: jax.lax.map(one, h, batch_size=16))(estimate.particles), np.float64)
        kernel_dist = float(np.sum(weights * dist))
    out = {"log_evidence": estimate.log_evidence, "posterior_mean_loglik": estimate.posterior_mean_loglik,
           "is_ess": estimate.is_ess, "num_temperatures": estimate.num_temperatures,
           "num_particles": estimate.num_particles, "kernel_dist": kernel_dist}
    if bnn is not None and y is not None:
        sq = hidden_score_sq_norms(bnn, estimate.particles, x, jnp.asarray(y, jnp.asarray(x).dtype))
        ok = np.isfinite(sq) & (weights > 0)
        w = weights[ok] / np.sum(weights[ok]) if ok.any() else weights[ok]
        mean = float(np.sum(w * sq[ok])) if ok.any() else math.nan
        out.update(score_sq_mean=mean, score_sq_se=float(np.sqrt(np.sum(w**2 * (sq[ok] - mean) ** 2)))
                   if ok.any() else math.nan)
    return out


def cached_json(cache_dir, prefix: str, description: dict, compute_fn) -> dict:
    """``compute_fn()`` (a JSON-able dict) stored as ``<cache_dir>/<prefix>-<key>.json`` with its
    ``description``, and loaded from there by later calls with an equal ``description``; built once
    under a lock, written atomically, rebuilt if the entry is corrupt."""
    path = Path(cache_dir) / f"{prefix}-{cache_key(description)}.json"

    def load(file):
        record = json.loads(Path(file).read_text(encoding="utf-8"))
        if not isinstance(record, dict) or "value" not in record:
            raise ValueError("not a cache entry")
        return record["value"]

    def write(tmp, value):
        Path(tmp).write_text(json.dumps({"description": description, "value": value}, sort_keys=True, indent=1,
                                        default=str), encoding="utf-8")

    return _cached(path, load, compute_fn, write)


class LimitInputs(NamedTuple):
    """What :func:`reprior.evaluation.diagnostics.limit_metrics` needs beyond the ``InferenceData`` of a cell.

    ``bnn``; training data ``x_train: (n, ...)``, ``y_train: (n, k)``; ``reference``
    (:class:`NNGPReference` or None); ``evidence`` (the dict of :func:`evidence_summary`, or None).
    """

    bnn: object
    x_train: np.ndarray
    y_train: np.ndarray
    reference: NNGPReference | None
    evidence: dict | None


def limit_inputs(bnn, x_train, y_train, x_test=None, *, cache_dir=None, data_description=None, seed: int = 0,
                 num_particles: int = 64, dtype: str = "float64", evidence: bool = True, mc_arch=None,
                 mc_num_draws: int = MC_NUM_DRAWS, **smc_options) -> LimitInputs:
    """Build :class:`LimitInputs` for one cell, reusing what ``cache_dir`` already holds.

    The NNGP side (:func:`nngp_reference`) depends on (data, architecture family, noise)
    only, the width excluded, so it is computed once per sweep; the evidence
    (:func:`bnn_log_evidence`, summarised by :func:`evidence_summary`) on the network with
    its width and on ``seed``, so the standard and repriorised cells of a width share it.

    Args:
        bnn: the cell's :class:`~reprior.BNN`.
        x_train, y_train, x_test: the cell's data (``x_test`` may be None).
        cache_dir: a directory for the cache (None: nothing cached).
        data_description: JSON-able description of the data (part of the cache keys);
            required with ``cache_dir``.
        seed: seed of the SMC sampler.
        num_particles, smc_options: see :func:`bnn_log_evidence`.
        dtype: ``"float64"`` or ``"float32"``, the precision of the evidence computation.
        evidence: False skips the evidence (``LimitInputs.evidence`` is None).
        mc_arch, mc_num_draws: where ``bnn.arch`` has no closed-form NNGP kernel, the
            network (default ``bnn.arch``; a sweep passes its widest) and the number of
            prior draws of the Monte Carlo kernel (:func:`nngp_reference`), cached once per
            (data, ``mc_arch``, draws, noise) and shared by every width.
    """
    _checks.one_of("dtype", dtype, ("float64", "float32"))
    bnn.fixed_noise_std("the limit metrics (the NNGP limit and the evidence are of one noise level)")
    if cache_dir is not None and data_description is None:
        raise _checks.fail("data_description", "a JSON-able description of the data with `cache_dir`", None)
    y = _checks.finite_array("y_train", y_train, ndim=(1, 2))
    y = y[:, None] if y.ndim == 1 else y
    family = {"data": data_description, "arch": repr(_nngp._unit_width(bnn.arch)), "noise_std": bnn.noise_std}
    closed_form = _nngp.has_closed_form_kernel(bnn.arch)
    mc_arch = bnn.arch if mc_arch is None else mc_arch
    mc_num_draws = _checks.positive_int("mc_num_draws", mc_num_draws)
    # A Monte Carlo kernel depends on the width it is drawn at: its description names it and the draws.
    reference_key = family if closed_form else {**family, "mc_arch": repr(mc_arch), "mc_num_draws": mc_num_draws}

    def compute_reference():
        return nngp_reference(bnn.arch, x_train, y, x_test, bnn.noise_std, mc_arch=mc_arch, mc_num_draws=mc_num_draws)

    reference = (compute_reference() if cache_dir is None
                 else cached_nngp_reference(cache_dir, reference_key, compute_reference))
    summary = None
    if evidence:
        def compute_evidence():
            with jax.enable_x64(dtype == "float64"):
                est = bnn_log_evidence(bnn, x_train, y, jax.random.key(seed), num_particles=num_particles,
                                       **smc_options)
                return evidence_summary(est, bnn, jnp.asarray(x_train, jnp.result_type(float)), reference.kernel,
                                        y=y)

        description = {**family, "arch": repr(bnn.arch), "seed": seed, "num_particles": num_particles,
                       "dtype": dtype, "smc_options": smc_options}
        summary = compute_evidence() if cache_dir is None else cached_json(cache_dir, "evidence", description,
                                                                           compute_evidence)
    return LimitInputs(bnn, np.asarray(x_train), y, reference, summary)
