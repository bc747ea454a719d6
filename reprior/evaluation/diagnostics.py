"""Mixing and accuracy metrics of one sampling run (docs/diagnostics.md).

High-dimensional posteriors are summarised, as in Hron et al. (2022, section 5),
by scalar *groups* of quantities whose effective sample size (ESS) and R-hat
stand for the mixing of the whole vector:

========  =====================================================================
group     scalars (each a ``(chain, draw)`` series)
========  =====================================================================
theta     ``theta_proj``: fixed unit-norm random projections of flattened theta
phi       ``phi_proj``: the same for phi (repriorised runs only)
pred      fixed unit-norm random projections of the flattened test predictions
          ``f_test`` (drawn here, from ``projection_seed``)
points    ``f_test`` at the first ``num_pred_points`` test points, every output
========  =====================================================================

ESS is ArviZ's rank-normalised bulk and tail ESS over all chains (Vehtari et
al. 2021; tail at the 5% and 95% quantiles), and R-hat ArviZ's rank-normalised
split R-hat, the same figures on ArviZ 0.2x and 1.x (:mod:`reprior.inference.arviz_compat`).  Cost-normalised
figures divide the *median* bulk ESS of a group by the number of draws, by the
number of gradient evaluations of the sampling phase, by the number of
log-density evaluations of the sampling phase, and by the sampling wall-clock
seconds (compilation and warm-up excluded):

.. math::

    \\mathrm{ESS/draw} = \\frac{\\widehat{\\mathrm{ESS}}}{C S}, \\qquad
    \\mathrm{ESS/grad} = \\frac{\\widehat{\\mathrm{ESS}}}{N_\\nabla}, \\qquad
    \\mathrm{ESS/eval} = \\frac{\\widehat{\\mathrm{ESS}}}{N_p}, \\qquad
    \\mathrm{ESS/s} = \\frac{\\widehat{\\mathrm{ESS}}}{T_\\mathrm{sample}},

with ``C`` chains of ``S`` recorded draws.  A gradient evaluation also
evaluates the density and counts in :math:`N_p`, so ``ESS/eval`` equals
``ESS/grad`` for the gradient-based kernels (NUTS, HMC, underdamped HMC, pCNL)
and is the figure to compare a gradient-free kernel (pCN, elliptical slice
sampling) by, whose ``ESS/grad`` is undefined (NaN: no gradients).  Everything works on NumPy arrays
taken out of the result of :func:`reprior.sample` (an ``arviz.InferenceData``
on ArviZ 0.2x, an ``xarray.DataTree`` on 1.x); a group that the run lacks gives NaN entries, never an error.
"""

from __future__ import annotations

import math

import numpy as np

from reprior.inference import arviz_compat as _arviz
from reprior._util import checks as _checks
from reprior.core.pytrees import site_name
from reprior.evaluation.comparison import (BASELINE, COMPARISON_KEYS, REFERENCE, TARGET_KEYS, average_over_seeds,
                                           comparison_key, ratio_to_baseline, ratio_to_reference, target_key)
from reprior.inference.health import as_number  # noqa: F401  (re-exported: reprior.evaluation.diagnostics.as_number)
from reprior.inference.health import finite_reduce as _reduce
from reprior.inference.health import safe_ratio as _ratio
from reprior.evaluation.limits import LIMIT_METRICS
from reprior.inference.series import GROUPS, group_series, rhat_max  # noqa: F401  (re-exported)
from reprior.inference.series import arviz_stat as _arviz_stat
from reprior.inference.series import variable as _variable

#: Per-group metric names, ``{g}`` standing for the group (``ess_bulk_pred_median``, ``ess_per_grad_pred``).
GROUP_METRICS = ("ess_bulk_{g}_median", "ess_bulk_{g}_min", "ess_tail_{g}_median", "ess_tail_{g}_min",
                 "rhat_{g}_max", "ess_per_draw_{g}", "ess_per_grad_{g}", "ess_per_second_{g}",
                 "ess_per_eval_{g}")
#: Run-level metrics (not per group).
RUN_METRICS = ("rhat_max", "accept_mean", "divergences", "nonfinite", "grad_evals", "grad_evals_total", "sample_seconds",
               "warmup_seconds", "compile_seconds", "steps_per_draw", "num_draws", "test_rmse", "test_log_lik",
               "logdensity_evals", "noise_std_mean", "noise_std_sd")


def _noise_variance(idata, num_draws: int):
    """:math:`\\sigma^2`: the fixed noise's (``attrs["noise_std"]``), or per draw ``(S, 1, 1)`` from the
    ``noise_std`` posterior variable of an inferred noise (in the order of :func:`_predictive_draws`)."""
    draws = _variable(idata, "posterior", "noise_std")
    if draws is None:
        return float(_attr(idata, "noise_std")) ** 2
    sigma = np.asarray(draws, float).reshape(-1)
    if sigma.size != num_draws:
        return float(np.mean(sigma**2))
    return (sigma**2)[:, None, None]


def noise_metrics(idata) -> dict:
    """``noise_std_mean``, ``noise_std_sd``: the posterior of an inferred noise (NaN for a fixed one)."""
    draws = _variable(idata, "posterior", "noise_std")
    if draws is None:
        return {"noise_std_mean": math.nan, "noise_std_sd": math.nan}
    sigma = np.asarray(draws, float)
    return {"noise_std_mean": float(np.mean(sigma)), "noise_std_sd": float(np.std(sigma))}


def metric_names() -> list[str]:
    """All keys of :func:`cell_metrics`, in a stable order (groups first, then run-level, then the limit's)."""
    return [m.format(g=g) for g in GROUPS for m in GROUP_METRICS] + list(RUN_METRICS) + list(LIMIT_METRICS)


# -- extracting the groups -------------------------------------------------------------
# -- ESS and R-hat ---------------------------------------------------------------------
def group_metrics(values: np.ndarray | None, group: str, *, grad_evals=None, sample_seconds=None,
                  logdensity_evals=None) -> dict:
    """The :data:`GROUP_METRICS` of one group from its ``(chain, draw, k)`` series (NaN if None).

    ``rhat_{group}_max`` is the maximum over the finite R-hats; a series with
    every R-hat undefined (constant draws, or a single chain) gives NaN.
    """
    keys = [m.format(g=group) for m in GROUP_METRICS]
    if values is None:
        return dict.fromkeys(keys, math.nan)
    bulk = _arviz_stat("ess", values, method="bulk")
    tail = _arviz_stat("ess", values, method="tail")
    # R-hat compares chains: undefined (NaN) for one chain, where ArviZ would log a warning.
    rhat = _arviz_stat("rhat", values) if values.shape[0] > 1 else np.full(values.shape[2], math.nan)
    median = _reduce(np.median, bulk)
    num_draws = values.shape[0] * values.shape[1]
    return dict(zip(keys, [
        median, _reduce(np.min, bulk), _reduce(np.median, tail), _reduce(np.min, tail), _reduce(np.max, rhat),
        _ratio(median, num_draws), _ratio(median, grad_evals), _ratio(median, sample_seconds),
        _ratio(median, logdensity_evals),
    ], strict=True))


# -- run-level figures -----------------------------------------------------------------
def _attr(idata, name: str, default=math.nan):
    value = idata.attrs.get(name, None) if hasattr(idata, "attrs") else None
    if value is None or (isinstance(value, str) and value == ""):
        return default
    return value


def _sampling_grad_evals(idata) -> float:
    """Gradient evaluations of the sampling phase: the attrs, else the sample stats' sums."""
    value = _attr(idata, "grad_evals_sampling", None)
    if value is not None:
        return float(value)
    for name in ("num_grad_evals", "num_steps"):
        stat = _variable(idata, "sample_stats", name)
        if stat is not None:
            return float(np.sum(stat))
    return math.nan


def _sampling_logdensity_evals(idata) -> float:
    """Log-density evaluations of the sampling phase (gradient evaluations included): the
    attrs, else the sample stats' sums, else the gradient evaluations (NUTS and HMC evaluate
    the density exactly where they evaluate the gradient)."""
    value = _attr(idata, "logdensity_evals_sampling", None)
    if value is not None:
        return float(value)
    stat = _variable(idata, "sample_stats", "num_logdensity_evals")
    if stat is not None:
        return float(np.sum(stat))
    return _sampling_grad_evals(idata)


def _as_int(value):
    """A Python int, or NaN for a missing (NaN) count."""
    value = float(value)
    return int(value) if np.isfinite(value) else math.nan


def _mean_stat(idata, name: str) -> float:
    stat = _variable(idata, "sample_stats", name)
    return math.nan if stat is None or stat.size == 0 else float(np.mean(stat))


def run_metrics(idata) -> dict:
    """Acceptance, divergences, cost counts and timings of a run (NaN where unrecorded)."""
    diverging = _variable(idata, "sample_stats", "diverging")
    nonfinite = _variable(idata, "sample_stats", "nonfinite")
    grads = _sampling_grad_evals(idata)
    steps = _mean_stat(idata, "num_steps")
    num_draws = _num_draws(idata)
    if math.isnan(steps) and num_draws:
        steps = _ratio(grads, num_draws)
    return {
        "accept_mean": _mean_stat(idata, "accept_prob"),
        "divergences": math.nan if diverging is None else int(np.sum(diverging)),
        "nonfinite": math.nan if nonfinite is None else int(np.sum(nonfinite)),
        "grad_evals": _as_int(grads),
        "grad_evals_total": _as_int(_attr(idata, "grad_evals")),
        "logdensity_evals": _as_int(_sampling_logdensity_evals(idata)),
        "sample_seconds": float(_attr(idata, "sample_seconds")),
        "warmup_seconds": float(_attr(idata, "warmup_seconds")),
        "compile_seconds": float(_attr(idata, "compile_seconds")),
        "steps_per_draw": steps,
        "num_draws": num_draws,
        **noise_metrics(idata),
    }


def _num_draws(idata) -> int:
    for group in ("posterior", "posterior_predictive", "sample_stats"):
        if hasattr(idata, group):
            sizes = getattr(idata, group).sizes
            if "chain" in sizes and "draw" in sizes:
                return int(sizes["chain"] * sizes["draw"])
    return 0


# -- predictive accuracy ---------------------------------------------------------------
def predictive_by_chain(idata):
    """``(mean: (C, S, m, k), var: (C, S, m))`` of f per draw: Rao-Blackwellised if stored, else
    ``f_test`` with variance 0; ``(None, None)`` without test predictions."""
    mean = _variable(idata, "posterior_predictive", "f_test_rb_mean")
    var = _variable(idata, "posterior_predictive", "f_test_rb_var")
    if mean is None or var is None:
        mean = _variable(idata, "posterior_predictive", "f_test")
        if mean is None:
            return None, None
        var = np.zeros(mean.shape[:3])
    return np.asarray(mean, dtype=float), np.asarray(var, dtype=float)


def _predictive_draws(idata):
    """``(mean: (S, m, k), var: (S, m))``: :func:`predictive_by_chain` with the chains pooled."""
    mean, var = predictive_by_chain(idata)
    if mean is None:
        return None, None
    return mean.reshape((-1,) + mean.shape[2:]), var.reshape((-1,) + var.shape[2:])


def _check_y_test(y_test, num_test: int, out_dim: int) -> np.ndarray:
    y_test = _checks.finite_array("y_test", y_test, ndim=(1, 2))
    if y_test.ndim == 1:
        y_test = y_test[:, None]
    if y_test.shape != (num_test, out_dim):
        raise _checks.fail("y_test", f"targets of shape ({num_test}, {out_dim}) matching f_test",
                           f"array of shape {y_test.shape}")
    return y_test


def predictive_metrics(idata, y_test) -> dict:
    """Test RMSE and mean test log likelihood of the posterior predictive of ``y``.

    With draws ``s = 1..S`` of the Rao-Blackwellised predictive
    :math:`f_{*i} \\mid \\theta_{\\mathrm{hidden}}^{(s)} \\sim \\mathcal N(\\mu_{si}, v_{si} I_k)`,

    .. math::

        \\mathrm{RMSE} = \\Big(\\frac{1}{mk}\\sum_{i,o} (y_{io} - \\bar\\mu_{io})^2\\Big)^{1/2},
        \\quad \\bar\\mu = \\frac1S\\sum_s \\mu_s,

        \\mathrm{LL} = \\frac1m \\sum_{i=1}^m \\log \\frac1S \\sum_{s=1}^S
            \\prod_{o=1}^k \\mathcal N\\big(y_{io};\\ \\mu_{sio},\\ v_{si} + \\sigma^2\\big),

    the mean over test points of the log density of the mixture over draws
    (``sigma = attrs["noise_std"]``).  Without ``f_test_rb_*`` the raw ``f_test``
    is used with ``v = 0``.  ``y_test`` is ``(m,)`` or ``(m, k)``.
    """
    mean, var = _predictive_draws(idata)
    if y_test is None or mean is None:
        return {"test_rmse": math.nan, "test_log_lik": math.nan}
    y = _check_y_test(y_test, mean.shape[1], mean.shape[2])
    rmse = float(np.sqrt(np.mean((y - mean.mean(axis=0)) ** 2)))
    noise_var = _noise_variance(idata, var.shape[0])
    total_var = var[:, :, None] + noise_var  # (S, m, 1)
    log_dens = -0.5 * ((y - mean) ** 2 / total_var + np.log(2 * np.pi * total_var))  # (S, m, k)
    per_draw = log_dens.sum(axis=2)  # (S, m)
    top = per_draw.max(axis=0)
    log_mix = top + np.log(np.mean(np.exp(per_draw - top), axis=0))
    return {"test_rmse": rmse, "test_log_lik": float(np.mean(log_mix))}


def predictive_distance_to(idata, mean, var) -> dict:
    """Distance of the sampled predictive of ``f`` from a Gaussian reference (e.g. the NNGP limit).

    The sampled predictive at each test point has mean
    :math:`\\bar\\mu_i = \\frac1S\\sum_s \\mu_{si}` and variance
    :math:`\\bar v_i = \\frac1S\\sum_s v_{si} + \\mathrm{Var}_s(\\mu_{si})` (per
    output), from ``f_test_rb_*`` (or ``f_test`` with ``v = 0``).  Against the
    reference ``mean: (m, k)``, ``var: (m,)`` (as returned by
    :func:`reprior.core.nngp.nngp_posterior`) it returns

    - ``mean_rmse``: :math:`(\\frac{1}{mk}\\sum (\\bar\\mu - \\mu_\\infty)^2)^{1/2}`;
    - ``mean_rel``: :math:`\\lVert\\bar\\mu - \\mu_\\infty\\rVert_F / \\lVert\\mu_\\infty\\rVert_F`;
    - ``var_rel``: :math:`\\lVert\\bar v - v_\\infty\\rVert / \\lVert v_\\infty\\rVert` (mean over outputs);
    - ``kl``: the mean over points and outputs of
      :math:`\\mathrm{KL}(\\mathcal N(\\bar\\mu, \\bar v) \\,\\|\\, \\mathcal N(\\mu_\\infty, v_\\infty))`.
    """
    draws_mean, draws_var = _predictive_draws(idata)
    if draws_mean is None:
        return dict.fromkeys(("mean_rmse", "mean_rel", "var_rel", "kl"), math.nan)
    ref_mean = np.asarray(mean, dtype=float)
    ref_mean = ref_mean[:, None] if ref_mean.ndim == 1 else ref_mean
    ref_var = np.asarray(var, dtype=float).reshape(-1)
    if ref_mean.shape != draws_mean.shape[1:] or ref_var.shape != (draws_mean.shape[1],):
        raise _checks.fail("mean, var", f"arrays of shapes {draws_mean.shape[1:]} and ({draws_mean.shape[1]},)",
                           f"arrays of shapes {ref_mean.shape} and {ref_var.shape}")
    sample_mean = draws_mean.mean(axis=0)  # (m, k)
    sample_var = draws_var.mean(axis=0)[:, None] + draws_mean.var(axis=0)  # (m, k)
    ref_v = ref_var[:, None]
    diff = sample_mean - ref_mean
    kl = 0.5 * (np.log(ref_v / sample_var) + (sample_var + diff**2) / ref_v - 1)
    return {
        "mean_rmse": float(np.sqrt(np.mean(diff**2))),
        "mean_rel": _ratio(np.linalg.norm(diff), np.linalg.norm(ref_mean)),
        "var_rel": _ratio(np.linalg.norm(sample_var.mean(axis=1) - ref_var), np.linalg.norm(ref_var)),
        "kl": float(np.mean(kl)),
    }


# -- the cell metrics ------------------------------------------------------------------
def cell_metrics(idata, *, y_test=None, num_pred_points: int = 5, projection_seed: int = 0,
                 num_pred_projections: int = 10, limits=None) -> dict[str, float | int]:
    """Every metric of one run, as a flat ``{name: number}`` dict (keys: :func:`metric_names`).

    Args:
        idata: the ``InferenceData`` of :func:`reprior.sample` (or one loaded from NetCDF).
        y_test: optional test targets ``(m,)`` or ``(m, out_dim)`` for ``test_rmse``
            and ``test_log_lik`` (NaN without them).
        num_pred_points: the ``points`` group uses the first this many test points.
        projection_seed, num_pred_projections: the ``pred`` group's random directions.

    Returns:
        For each group ``G`` in :data:`GROUPS`: ``ess_bulk_G_median``,
        ``ess_bulk_G_min``, ``ess_tail_G_median``, ``ess_tail_G_min``,
        ``rhat_G_max``, ``ess_per_draw_G`` (median bulk ESS / draws),
        ``ess_per_grad_G`` (median bulk ESS / sampling-phase gradient
        evaluations), ``ess_per_second_G`` (median bulk ESS / sampling
        seconds) and ``ess_per_eval_G`` (median bulk ESS / sampling-phase
        log-density evaluations, gradient evaluations included); then ``rhat_max`` (over all groups), ``accept_mean``,
        ``divergences``, ``grad_evals`` (sampling phase), ``grad_evals_total``,
        ``sample_seconds``, ``warmup_seconds``, ``compile_seconds``,
        ``steps_per_draw``, ``num_draws``, ``test_rmse``, ``test_log_lik`` and
        ``logdensity_evals`` (sampling phase); then the distance to the infinite-width
        limit, :data:`reprior.evaluation.limits.LIMIT_METRICS` (see :func:`limit_metrics`; NaN
        without ``limits``, a :class:`reprior.evaluation.limits.LimitInputs`, except ``test_nll``).
        Missing groups and unrecorded figures are NaN.
    """
    _checks.nonnegative_int("num_pred_points", num_pred_points)
    _checks.nonnegative_int("num_pred_projections", num_pred_projections)
    _checks.nonnegative_int("projection_seed", projection_seed)
    run = run_metrics(idata)
    series = group_series(idata, num_pred_points=num_pred_points, num_pred_projections=num_pred_projections,
                          projection_seed=projection_seed)
    out: dict[str, float | int] = {}
    for group in GROUPS:
        out.update(group_metrics(series[group], group, grad_evals=run["grad_evals"],
                                 sample_seconds=run["sample_seconds"], logdensity_evals=run["logdensity_evals"]))
    out["rhat_max"] = _reduce(np.max, [out[f"rhat_{g}_max"] for g in GROUPS])
    out.update(run)
    out.update(predictive_metrics(idata, y_test))
    out.update(limit_metrics(idata, limits, y_test=y_test))
    return {name: out[name] for name in metric_names()}  # the documented column order


# -- distance to the infinite-width limit ------------------------------------------------
#: At most this many (evenly spaced) draws of the hidden weights are evaluated per cell.
MAX_LIMIT_DRAWS = 200


def hidden_draws(idata, bnn, x_shape, out_dim: int, max_draws: int = MAX_LIMIT_DRAWS, *, by_chain: bool = False):
    """The stored hidden weights as a ``params["hidden"]`` pytree with a leading draw axis, or None.

    Needs the run's ``keep="all"``; chains are concatenated and at most ``max_draws``
    evenly spaced draws are kept.  ``by_chain``: leading axes ``(chain, draw)`` instead,
    at most ``max_draws // chains`` evenly spaced draws per chain (for an ESS).
    """
    import jax

    template = bnn.param_shapes(x_shape, out_dim)["hidden"]
    paths, treedef = jax.tree_util.tree_flatten_with_path({"hidden": template})
    leaves = []
    for path, shape in paths:
        values = _variable(idata, "posterior", site_name(path))
        if values is None or values.shape[2:] != tuple(shape.shape):
            return None
        leaves.append(values if by_chain else values.reshape((-1,) + values.shape[2:]))
    if by_chain:
        per_chain = leaves[0].shape[1]
        pick = np.unique(np.linspace(0, per_chain - 1, min(per_chain, max(1, max_draws // leaves[0].shape[0])))
                         .round().astype(int))
        return jax.tree_util.tree_unflatten(treedef, [leaf[:, pick] for leaf in leaves])["hidden"]
    total = leaves[0].shape[0]
    pick = np.unique(np.linspace(0, total - 1, min(total, max_draws)).round().astype(int))
    return jax.tree_util.tree_unflatten(treedef, [leaf[pick] for leaf in leaves])["hidden"]


def limit_metrics(idata, limits=None, *, y_test=None) -> dict[str, float]:
    """:data:`reprior.evaluation.limits.LIMIT_METRICS` of one run (``docs/diagnostics.md``, "Distance to the limit").

    - ``test_nll`` (every cell, with ``y_test``): :func:`reprior.evaluation.limits.accuracy_metrics`
      on the Rao-Blackwellised draws;
    - ``nngp_pred_dist``, ``nngp_pred_w2``: :func:`reprior.evaluation.limits.predictive_limit_metrics`
      against ``limits.reference``; ``nngp_log_evidence``: its GP marginal likelihood;
    - ``nngp_kernel_dist``: posterior mean of the kernel distance over the stored hidden
      draws (``keep="all"``), else over the SMC particles of ``limits.evidence``;
    - ``log_evidence``, ``kl_is_ess``, ``kl_num_temperatures``: from ``limits.evidence``
      (:func:`reprior.evaluation.limits.evidence_summary`);
    - ``kl_to_prior``: :math:`\\overline{\\log L} - \\log\\hat Z`, the mean over stored hidden
      draws if there are any, else over the run's recorded ``log_marginal_likelihood`` per draw,
      else over the weighted SMC particles;
    - ``kl_to_prior_smc``, ``nngp_kernel_dist_smc``: the same from the SMC particles alone,
      whatever the cell kept: a reference independent of the cell's sampler (short or
      poorly mixed chains pull the draws' figures towards their initial, prior, values).
    - ``nngp_kernel_estimated`` (1 or 0), ``nngp_kernel_mc_stderr``: whether ``limits.reference``
      is a Monte Carlo estimate of the NNGP kernel, and its relative standard error
      (:attr:`reprior.evaluation.limits.NNGPReference.relative_stderr`, 0 for a closed form);
    - ``kl_to_prior_bound``, ``kl_to_prior_bound_mcse``: the log-Sobolev upper bound on
      ``kl_to_prior`` (:func:`reprior.evaluation.kl_bound.log_sobolev_bound`), from gradients recomputed at the
      stored hidden draws (``keep="all"``), else at the weighted SMC particles of ``limits.evidence``
      (``score_sq_mean``, ``score_sq_se``), and its Monte Carlo standard error.

    ``limits`` is a :class:`reprior.evaluation.limits.LimitInputs` (None: NaN except ``test_nll``).
    """
    from reprior.evaluation import limits as lm

    out = dict.fromkeys(LIMIT_METRICS, math.nan)
    mean, var = _predictive_draws(idata)
    if mean is not None and y_test is not None:
        y = _check_y_test(y_test, mean.shape[1], mean.shape[2])
        # an inferred noise: the root posterior mean of sigma^2 (the mixture's noise is per draw)
        noise_std = float(np.sqrt(np.mean(_noise_variance(idata, -1))))
        out["test_nll"] = lm.accuracy_metrics(mean, var, y, noise_std)["test_nll"]
    if limits is None:
        return out
    ref, evidence = limits.reference, limits.evidence
    if ref is not None:
        out["nngp_log_evidence"] = float(ref.log_evidence)
        out["nngp_kernel_estimated"] = float(ref.estimated)
        out["nngp_kernel_mc_stderr"] = ref.relative_stderr
        if mean is not None and np.size(ref.mean):
            out.update(lm.predictive_limit_metrics(mean, var, ref))
    post_loglik, kernel_dist = math.nan, math.nan
    if evidence is not None:
        out.update(log_evidence=evidence["log_evidence"], kl_is_ess=evidence["is_ess"],
                   kl_num_temperatures=evidence["num_temperatures"])
        post_loglik, kernel_dist = evidence["posterior_mean_loglik"], evidence["kernel_dist"]
        out["kl_to_prior_smc"] = post_loglik - evidence["log_evidence"]
        out["nngp_kernel_dist_smc"] = kernel_dist if ref is not None else math.nan
    y_train = np.asarray(limits.y_train)
    draws = hidden_draws(idata, limits.bnn, np.shape(limits.x_train), y_train.reshape(len(y_train), -1).shape[1])
    if draws is not None:
        import jax

        with jax.enable_x64(jax.tree_util.tree_leaves(draws)[0].dtype == np.float64):
            loglik, dist = lm.hidden_draw_statistics(limits.bnn, draws, limits.x_train, y_train,
                                                     None if ref is None else ref.kernel)
        post_loglik = _reduce(np.mean, loglik)
        kernel_dist = _reduce(np.mean, dist)
    else:  # without the hidden weights, the run's own per-draw log p(Y | hidden) (reprior.sample records it)
        recorded = _variable(idata, "posterior", "log_marginal_likelihood")
        if recorded is not None and recorded.size:
            post_loglik = _reduce(np.mean, recorded)
    out["nngp_kernel_dist"] = kernel_dist if ref is not None else math.nan
    out["kl_to_prior"] = post_loglik - out["log_evidence"]
    bound = _kl_bound_metrics(idata, limits, y_train)
    if not bound and evidence is not None and "score_sq_mean" in evidence:  # no stored draws: the particles
        bound = {"kl_to_prior_bound": 0.5 * evidence["score_sq_mean"],
                 "kl_to_prior_bound_mcse": 0.5 * evidence["score_sq_se"]}
    out.update(bound)
    return out


def _kl_bound_metrics(idata, limits, y_train) -> dict[str, float]:
    """``kl_to_prior_bound`` and its MCSE from the stored hidden draws, chain by chain (empty without them)."""
    import jax

    from reprior.evaluation import kl_bound
    from reprior.evaluation import limits as lm

    draws = hidden_draws(idata, limits.bnn, np.shape(limits.x_train), y_train.reshape(len(y_train), -1).shape[1],
                         by_chain=True)
    if draws is None:
        return {}
    leaves = jax.tree_util.tree_leaves(draws)
    shape = leaves[0].shape[:2]
    flat = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:]), draws)
    with jax.enable_x64(leaves[0].dtype == np.float64):
        sq = lm.hidden_score_sq_norms(limits.bnn, flat, limits.x_train, y_train)
    est = kl_bound.log_sobolev_bound(sq.reshape(shape))
    return {"kl_to_prior_bound": est.bound, "kl_to_prior_bound_mcse": est.mcse}


def run_info(idata) -> dict[str, str]:
    """Provenance strings of a run from its attrs (``""`` where absent), for a summary row.

    Keys: ``machine``, ``reprior_version``, ``jax_version``, ``numpyro_version``,
    ``arviz_version`` (of the run that wrote ``idata``) and ``dtype``.
    """
    info = {name: str(_attr(idata, name, "")) for name in ("machine", "reprior_version", "jax_version",
                                                            "numpyro_version", "dtype")}
    info["arviz_version"] = _arviz.library_version(idata)
    return info

