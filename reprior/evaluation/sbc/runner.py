"""The replications of simulation-based calibration, vectorised and compiled once.

Each replication draws a truth from the prior, simulates data, runs a
registered sampler on the posterior (the same :class:`reprior.core.target.Target`
as :func:`reprior.sample`) and ranks the truth among the thinned draws; the
ranks go to :mod:`reprior.evaluation.sbc.statistics`.  The method and its settings are
described in :mod:`reprior.experiments.sbc`; the command line (``reprior sbc``) is in
:mod:`reprior.experiments.cli`.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from reprior.core import repriorise as rp
from reprior.core.architectures import MLP
from reprior.core.target import Target
from reprior.evaluation.sbc.settings import SBCSettings
from reprior.inference.driver import chain_functions
from reprior.inference.samplers.registry import get_kernel, make_kernel
from reprior.evaluation.sbc.statistics import (NOISE_SUMMARY, SUMMARY_NAMES, SBCResult, lag1_autocorrelation,
                                               uniformity_test)

__all__ = ["SBCSettings", "run_sbc"]


#: The diagnostics of a replication cover every sampling iteration: the acceptance is averaged over
#: each thinning window, divergences and evaluations are counted over it.
_WINDOW_DIAGNOSTICS = {"accept_prob": jnp.mean, "diverging": jnp.sum, "num_grad_evals": jnp.sum,
                       "num_logdensity_evals": jnp.sum}


# -- one replication ------------------------------------------------------------------------
def _summaries(arch, theta, x, x_test, y, noise_std, inferred: bool = False) -> jax.Array:
    """The scalar summaries ``(num_summaries,)`` of standard-coordinate parameters ``theta`` at the
    noise ``noise_std`` (the draw's own when the noise is ``inferred``, then also a summary)."""
    layer = theta["hidden"][0]
    f_test = arch.apply(theta, x_test)[:, 0]
    loglik = rp.gaussian_log_likelihood(arch.apply(theta, x), y, noise_std)
    values = [layer["W"][0, 0], layer["b"][0], theta["readout"]["W"][0, 0], theta["readout"]["b"][0],
              f_test[0], f_test[1], loglik]
    return jnp.stack(values + [jnp.asarray(noise_std, loglik.dtype)] if inferred else values)


def _make_replicate(arch, x, x_test, settings: SBCSettings, noise_prior=None, sampler_noise_prior=None):
    """``(key, noise_std, sampler_noise_std) -> (ranks, draw summaries, diagnostics)`` for one replication.

    With ``noise_prior`` (a NumPyro distribution) the true noise of each replication is drawn from it
    (``noise_std`` unused) and the sampler infers the noise under ``sampler_noise_prior``; the noise is
    then one more summary (:data:`reprior.evaluation.sbc.statistics.NOISE_SUMMARY`)."""
    stats_fn = get_kernel(settings.sampler).stats_fn
    inferred = noise_prior is not None

    def replicate(key, noise_std, sampler_noise_std):
        truth_key, noise_key, init_key, run_key, draw_key = jax.random.split(key, 5)
        theta = arch.init(truth_key, x, 1)
        if inferred:
            noise_std = noise_prior.sample(jax.random.fold_in(noise_key, 1)).astype(x.dtype)
        y = arch.apply(theta, x) + noise_std * jax.random.normal(noise_key, (x.shape[0], 1), x.dtype)
        # the same target as reprior.sample, with a traced noise level (or the noise inferred)
        target = Target(arch, None if inferred else sampler_noise_std, x, y, settings.parameterisation,
                        settings.readout, settings.form, noise_prior=sampler_noise_prior if inferred else None)
        kernel = make_kernel(settings.sampler, target, settings.options)
        z0 = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(init_key, 1))

        def summaries(_, key, z):
            theta_l, _ = target.to_params(z, key)
            sigma = target.noise_std_at(z) if inferred else noise_std
            return _summaries(arch, theta_l, x, x_test, y, sigma, inferred)

        warmup, draw = chain_functions(kernel, stats_fn, summaries, num_warmup=settings.num_warmup,
                                       num_samples=settings.num_draws, thinning=settings.thinning,
                                       window_stats=_WINDOW_DIAGNOSTICS)
        state = kernel.init(run_key, settings.num_warmup, z0, (), {})
        state, warm = warmup(state, 0)
        _, (draws, stats) = draw(state, (), draw_key, 0)
        truth = _summaries(arch, theta, x, x_test, y, noise_std, inferred)
        ranks = jnp.sum(draws < truth, axis=0)
        diagnostics = {
            "accept_prob": jnp.mean(stats["accept_prob"]),
            "num_divergences": jnp.sum(stats["diverging"]),
            "grad_evals": jnp.sum(warm["num_grad_evals"]) + jnp.sum(stats["num_grad_evals"]),
            "logdensity_evals": jnp.sum(warm["num_logdensity_evals"]) + jnp.sum(stats["num_logdensity_evals"]),
        }
        return ranks, draws, diagnostics

    return replicate


def _inputs(seed: int, num_data: int, in_dim: int):
    """Fixed design: training and two test inputs, i.i.d. N(0, 1) (NumPy, seeded)."""
    rng = np.random.default_rng([seed, 0x5BC])
    return rng.standard_normal((num_data, in_dim)), rng.standard_normal((2, in_dim))


def run_sbc(*, sampler: str = "elliptical_slice", parameterisation: str = "reprior", readout: str = "exact",
            sampler_options: dict | None = None, num_replications: int = 200, num_draws: int = 19,
            thinning: int = 10, num_warmup: int = 200, width: int = 8, depth: int = 1, activation: str = "relu",
            num_data: int = 10, in_dim: int = 2, noise_std: float = 0.5, sampler_noise_std: float | None = None,
            num_bins: int = 10, level: float = 0.01, seed: int = 0, batch_size: int = 100,
            dtype: str | None = None, form: str = "auto", noise_prior=None, sampler_noise_prior=None) -> SBCResult:
    """Simulation-based calibration of ``sampler`` on a small MLP; see the module docstring.

    Args:
        sampler, sampler_options: a registered kernel and its settings.
        parameterisation, readout, form: the target, as in :func:`reprior.sample`.
        num_replications: number of (truth, data, posterior run) replications ``N``.
        num_draws: kept draws ``L`` per replication; ranks lie in ``0..L``.
        thinning: sampler iterations per kept draw (make the draws nearly independent).
        num_warmup: warm-up (adaptation) iterations per replication.
        width, depth, activation: the MLP (NTK parameterisation, default scales).
        num_data, in_dim: training inputs ``X: (num_data, in_dim)``, i.i.d. N(0, 1), fixed by ``seed``.
        noise_std: :math:`\\sigma` of the data-generating likelihood.
        sampler_noise_std: :math:`\\sigma` of the likelihood the sampler targets
            (default ``noise_std``; set it differently to see SBC reject a wrong sampler).
        num_bins: chi-square bins; must divide ``num_draws + 1``.
        level: family-wise level of the test (Bonferroni over the summaries).
        seed: seeds the inputs and every replication.
        batch_size: replications vectorised per compiled call.
        dtype: ``"float64"`` (default on CPU) or ``"float32"``, for this call only.
        noise_prior: calibrate an *inferred* noise: a prior on :math:`\\sigma` (a NumPyro
            distribution on the positive reals, or its text, ``"HalfNormal(0.5)"``, as
            :func:`reprior.core.bnn.parse_noise_prior` reads); each replication draws its true
            :math:`\\sigma` from it (``noise_std`` is then unused), the sampler infers it jointly with
            the weights (``BNN(arch, noise_std=prior)``), and :math:`\\sigma` is one more summary.
        sampler_noise_prior: the prior the sampler assumes (default ``noise_prior``; set it
            differently to see SBC reject a wrong one).

    Returns:
        :class:`SBCResult`.
    """
    noise_prior, sampler_noise_prior = _noise_prior_texts(noise_prior, sampler_noise_prior)
    settings = SBCSettings.build(
        sampler=sampler, parameterisation=parameterisation, readout=readout, sampler_options=sampler_options,
        num_replications=num_replications, num_draws=num_draws, thinning=thinning, num_warmup=num_warmup,
        width=width, depth=depth, activation=activation, num_data=num_data, in_dim=in_dim, noise_std=noise_std,
        sampler_noise_std=sampler_noise_std, num_bins=num_bins, level=level, seed=seed, batch_size=batch_size,
        dtype=dtype, form=form, noise_prior=noise_prior, sampler_noise_prior=sampler_noise_prior)
    with jax.enable_x64(settings.dtype == "float64"):
        ranks, draws, diagnostics, timings = _run(settings)
    counts, chi2, p_values = uniformity_test(ranks, num_draws, num_bins)
    names = SUMMARY_NAMES + ((NOISE_SUMMARY,) if noise_prior is not None else ())
    rejected = p_values < level / len(names)
    return SBCResult(
        ranks=ranks, summary_names=names, counts=counts, chi2=chi2, p_values=p_values, level=level,
        rejected=rejected, autocorrelation=lag1_autocorrelation(draws),
        accept_prob=float(np.mean(diagnostics["accept_prob"])),
        num_divergences=int(np.sum(diagnostics["num_divergences"])),
        grad_evals=float(np.mean(diagnostics["grad_evals"])),
        logdensity_evals=float(np.mean(diagnostics["logdensity_evals"])),
        settings=settings.as_dict(), timings=timings)


def _noise_prior_texts(noise_prior, sampler_noise_prior):
    """The two noise priors as the JSON text :func:`reprior.core.bnn.describe_noise_prior` writes (hashable:
    the compiled replications are cached on it), each checked and naming its argument; None stays None."""
    from reprior.core.bnn import check_noise_prior, describe_noise_prior, parse_noise_prior

    out = []
    for name, prior in (("noise_prior", noise_prior), ("sampler_noise_prior", sampler_noise_prior)):
        if prior is None:
            out.append(None)
            continue
        prior = parse_noise_prior(prior, name) if isinstance(prior, str) else check_noise_prior(name, prior)
        out.append(describe_noise_prior(prior))
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _compiled(settings: SBCSettings):
    """The compiled batch of replications ``(keys, noise_std, sampler_noise_std) -> outputs``.

    Cached on :meth:`SBCSettings.compilation_key`, so that runs differing only in the noise
    levels or in the number of replications (e.g. a correct and a deliberately
    wrong sampler) compile once.  Call inside the matching ``enable_x64`` mode.
    """
    dtype = jnp.dtype(settings.dtype)
    x, x_test = (jnp.asarray(a, dtype) for a in _inputs(settings.seed, settings.num_data, settings.in_dim))
    arch = MLP(width=settings.width, depth=settings.depth, activation=settings.activation)
    from reprior.core.bnn import noise_prior_from_description

    priors = [None if text is None else noise_prior_from_description(text, name)
              for name, text in (("noise_prior", settings.noise_prior),
                                 ("sampler_noise_prior", settings.sampler_noise_prior))]
    batched = jax.jit(jax.vmap(_make_replicate(arch, x, x_test, settings, *priors), in_axes=(0, None, None)))
    keys = jax.random.split(jax.random.key(0), settings.batch_size)
    scalar = jnp.zeros((), dtype)
    return batched.lower(keys, scalar, scalar).compile()


def _run(settings: SBCSettings):
    dtype = jnp.dtype(settings.dtype)
    size = settings.batch_size
    start = time.perf_counter()
    compiled = _compiled(settings.compilation_key())
    timings = {"compile_seconds": time.perf_counter() - start}
    keys = jax.random.split(jax.random.key(settings.seed), settings.num_replications)
    noise = jnp.asarray(settings.noise_std, dtype), jnp.asarray(settings.sampler_noise_std, dtype)
    start = time.perf_counter()
    outputs = []
    for begin in range(0, settings.num_replications, size):
        batch = keys[begin:begin + size]
        real = batch.shape[0]
        if real < size:  # pad the last batch to the compiled shape
            batch = jnp.concatenate([batch, keys[:size - real]])
        outputs.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[:real], compiled(batch, *noise)))
    timings["run_seconds"] = time.perf_counter() - start
    ranks, draws, diagnostics = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *outputs)
    return ranks.astype(np.int64), draws, diagnostics, timings
