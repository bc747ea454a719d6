"""``reprior.sample``: posterior sampling of a BNN, returned as ArviZ ``InferenceData``.

The front door of the inference layer (the chains are compiled in :mod:`reprior.inference.driver`).
What is sampled, its prior and likelihood, the starting points and the map back to theta, phi and predictions
all come from :class:`reprior.core.target.Target` (:func:`reprior.core.target.build_target`):

=====================  ===============================  ===================================
setting                sampled variables                log density
=====================  ===============================  ===================================
``standard``           theta (all weights)              log N(theta) + log N(Y; f, s^2 I)
``reprior, sampled``   phi (hidden and phi_out)         log N(phi) + log N(Y; 0, K + s^2 I)
``reprior, exact``     phi_hidden only                  log N(phi_hidden) + log N(Y; 0, K + s^2 I)
=====================  ===============================  ===================================

With ``readout="exact"`` each recorded draw gets an i.i.d. exact draw of
``phi_out ~ N(0, I)``, hence of ``theta_out`` given the hidden weights.  Each
recorded draw also gets predictive draws of ``y`` (``f + sigma * eps``, at the
training inputs and at ``x_test``) from the ``f`` it computes anyway, and the
result keeps the chains' final kernel states, so that ``init=`` continues them
exactly (:class:`reprior.inference.driver.Start`).

Failure policy: a proposal whose log likelihood is not finite (a Cholesky
factorisation that fails in float32 at small noise) is rejected and counted in
the ``nonfinite`` sample statistic; a run whose chains failed by the rule of
:func:`reprior.inference.health.failure_reasons` (the reports' rule: mean acceptance below
:data:`reprior.inference.health.MIN_ACCEPT`, more than :data:`reprior.inference.health.MAX_BAD_FRACTION` of its iterations
divergent or non-finite, R-hat above :data:`reprior.inference.health.MAX_RHAT` with two or more
chains, or a non-finite recorded value) emits one ``RuntimeWarning`` naming the
setting and the reasons (:func:`reprior.inference.health.failure_report`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from reprior._util import checks as _checks
from reprior.inference import memory as _memory
from reprior._util import blas as _blas
from reprior.core.architectures import readout_matrix
from reprior.core.bnn import BNN, describe_arch
from reprior._util.choices import default_dtype
from reprior.inference.checkpoint import CheckpointMismatch
from reprior.inference.driver import ChainRun, Start, run_chains
from reprior.inference.health import failure_report  # noqa: F401 (re-exported: sampling.failure_report)
from reprior.inference.progress import progress_display
from reprior.core.pytrees import flatten_params
from reprior.core.projections import project_leaves, project_tree, projection_words
from reprior.inference.samplers.registry import get_kernel, make_kernel
from reprior.inference.settings import KEEP, SampleSettings  # noqa: F401 (KEEP re-exported: sampling.KEEP)
from reprior.core.target import Target, build_target


def _check_data(bnn, x, y, x_test):
    """The network and the data, checked and converted (the settings are checked by :class:`SampleSettings`)."""
    if not isinstance(bnn, BNN):
        raise _checks.fail("bnn", "a reprior.BNN", bnn)
    x = _checks.finite_array("x", x)
    y = _checks.finite_array("y", y, ndim=(1, 2))
    x, y = bnn.check_data(x, y)
    if x_test is not None:
        x_test = _checks.finite_array("x_test", x_test)
        bnn.arch.check_inputs(x_test, "x_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise _checks.fail("x_test", f"inputs of shape (m,) + {x.shape[1:]}", f"array of shape {x_test.shape}")
    return x, y, x_test


class CollectParts(NamedTuple):
    """A recorded draw (``collect``) in two parts: what the position alone determines, and what each draw adds.

    ``position(consts, z, evaluation) -> cache``: the readout factorisation, the log marginal
    likelihood, the test features and the Rao-Blackwellised predictive, and the hidden part of
    the projections (a pytree; its array leaves change with ``z``, its other leaves are fixed).
    ``draw(consts, key, z, evaluation, cache) -> dict``: the exact readout draw, ``theta_out``,
    ``f``, the pointwise log likelihood and the predictive draws, the readout part of the
    projections.  ``collect(consts, key, z, evaluation)`` is
    ``draw(consts, key, z, evaluation, position(consts, z, evaluation))``, so a chain that has
    not moved since its previous recorded draw (a rejected proposal) may reuse that draw's cache
    and pay only for ``draw`` (:func:`reprior.inference.driver.chain_functions`, ``reuse_position``).
    """

    position: Callable
    draw: Callable


def make_collect_fn(target: Target, x_test, keep: str, num_projections: int, projection_seed: int, *,
                     pointwise: bool = True):
    """Per recorded draw: theta (and phi), projections, predictions, pointwise log likelihood.

    ``collect(consts, key, z, evaluation=None)``.  The draw's work is one factorisation
    (:meth:`Target.readout_factorisation`) shared by the readout draw,
    ``log_marginal_likelihood`` and the Rao-Blackwellised predictive, the features at the
    test inputs, and one pass over the projection directions for theta and phi together,
    their hash words read from ``consts["projection_words"]`` when the run built them.  With
    ``evaluation`` (:meth:`Target.evaluate` at ``z``, which the kernels of this package carry
    with their accepted point) the training features and, in the dual form, the Cholesky
    factor are the kernel's own, so the draw neither recomputes the features nor factorises.
    The draw's key is split into the exact readout draw's and the predictive noise's.
    ``collect.parts`` (:class:`CollectParts`) is the same function in its position part and
    its per-draw part.
    """
    record_position, record_draw = make_record_parts(target, x_test, keep, num_projections, projection_seed,
                                                     pointwise=pointwise)

    def at_position(consts, z, evaluation=None):
        posterior = target.readout_factorisation(z, evaluation)
        return {"posterior": posterior, **record_position(consts, z["hidden"], posterior)}

    def at_draw(consts, key, z, evaluation, cache):
        readout_key, noise_key = jax.random.split(key)
        posterior = cache["posterior"]
        theta, phi = target.to_params(z, readout_key, posterior.psi, posterior)
        return record_draw(consts, noise_key, theta, phi, posterior.psi, posterior, cache)

    def collect(consts, key, z, evaluation=None):
        return at_draw(consts, key, z, evaluation, at_position(consts, z, evaluation))

    collect.parts = CollectParts(at_position, at_draw)
    return collect


def make_record_fn(target: Target, x_test, keep: str, num_projections: int, projection_seed: int, *,
                    pointwise: bool = True):
    """``record(consts, noise_key, theta, phi, psi, posterior) -> dict``: what is stored of one draw
    in network coordinates (``phi`` None for the standard parameterisation), shared by
    :func:`reprior.sample` and :func:`reprior.from_chains`.

    With ``pointwise``: ``log_likelihood`` (``(n, k)``, :math:`\\log\\mathcal N(y_{ij}; f_{ij}, \\sigma^2)`)
    and ``y`` (``(n, k)``, a draw of :math:`f(X) + \\sigma\\varepsilon`), from the ``f(X)`` the
    draw computes anyway; with ``x_test``, ``y_test`` the same at the test inputs.  With an
    inferred noise (``target.noise_prior``) every one of them uses the draw's :math:`\\sigma`,
    ``posterior.noise_std``, which is recorded as ``noise_std``.
    """
    record_position, record_draw = make_record_parts(target, x_test, keep, num_projections, projection_seed,
                                                     pointwise=pointwise)

    def record(consts, noise_key, theta, phi, psi, posterior):
        cache = record_position(consts, theta["hidden"], posterior)
        return record_draw(consts, noise_key, theta, phi, psi, posterior, cache)

    return record


def make_record_parts(target: Target, x_test, keep: str, num_projections: int, projection_seed: int, *,
                      pointwise: bool = True):
    """:func:`make_record_fn`'s ``record`` in two parts, ``(at_position, at_draw)``:

    * ``at_position(consts, hidden, posterior) -> cache``, what the hidden weights and their
      readout posterior determine: ``log_marginal_likelihood``, with ``x_test`` the test
      features ``psi_test`` and ``f_test_rb_mean``/``f_test_rb_var``, and the hidden part of the
      projections (:func:`hidden_projection`);
    * ``at_draw(consts, noise_key, theta, phi, psi, posterior, cache) -> dict``, the record.
    """
    y, fixed_noise_std, inferred = target.y, target.noise_std, target.noise_prior is not None

    def at_position(consts, hidden, posterior):
        # log p(Y | hidden weights), constants included: E_post of it gives the KL to the prior
        cache = {"log_marginal_likelihood": posterior.log_marginal_likelihood(y)}
        if x_test is not None:
            cache["psi_test"] = target.arch.features({"hidden": hidden}, x_test)
            cache["f_test_rb_mean"], cache["f_test_rb_var"] = posterior.predictive(cache["psi_test"])
        if num_projections:
            cache["hidden_projection"] = hidden_projection(hidden, num_projections, projection_seed,
                                                           consts.get("projection_words"))
        return cache

    def at_draw(consts, noise_key, theta, phi, psi, posterior, cache):
        out = {}
        noise_std = fixed_noise_std
        if inferred:
            noise_std = posterior.noise_std
            out["noise_std"] = noise_std
        if keep == "all":
            out.update(flatten_params(theta))
        elif keep == "readout":
            out.update(flatten_params({"readout": theta["readout"]}))
        if phi is not None and keep != "none":
            out.update({f"{k}_reprior": v for k, v in flatten_params({"readout": phi["readout"]}).items()})
        if num_projections:
            out.update(draw_projections(theta, phi, num_projections, projection_seed,
                                        consts.get("projection_words"), hidden=cache["hidden_projection"]))
        theta_out = readout_matrix(theta)
        out["log_marginal_likelihood"] = cache["log_marginal_likelihood"]
        train_key, test_key = jax.random.split(noise_key)
        if pointwise:
            f = psi @ theta_out
            out["log_likelihood"] = -0.5 * ((y - f) ** 2 / noise_std**2 + jnp.log(2 * jnp.pi * noise_std**2))
            out["y"] = f + noise_std * jax.random.normal(train_key, f.shape, f.dtype)
        if x_test is not None:
            out["f_test"] = cache["psi_test"] @ theta_out
            out["y_test"] = out["f_test"] + noise_std * jax.random.normal(test_key, out["f_test"].shape,
                                                                          out["f_test"].dtype)
            out["f_test_rb_mean"], out["f_test_rb_var"] = cache["f_test_rb_mean"], cache["f_test_rb_var"]
        return out

    return at_position, at_draw


def noise_attrs(bnn) -> dict:
    """The noise in a result's attrs: ``{"noise_std": sigma}`` for a fixed noise; for an inferred
    one ``{"noise_prior": JSON}`` (:func:`reprior.core.bnn.describe_noise_prior`, which
    :meth:`reprior.BNN.from_idata` reads back), ``noise_std`` left out (its posterior is the
    ``noise_std`` variable of ``posterior``)."""
    if bnn.noise_prior is None:
        return {"noise_std": bnn.noise_std}
    from reprior.core.bnn import describe_noise_prior

    return {"noise_prior": describe_noise_prior(bnn.noise_prior)}


#: Largest table of projection hash words precomputed per run (bytes); above it, each draw hashes.
MAX_PROJECTION_WORDS_BYTES = 2**28


def run_projection_words(num_params: int, num: int, seed: int):
    """:func:`reprior.core.projections.projection_words` of a run, built once (4 bytes per weight for up to
    32 directions), or ``None`` without projections or above :data:`MAX_PROJECTION_WORDS_BYTES`."""
    if num == 0 or 4 * num_params * -(-num // 32) > MAX_PROJECTION_WORDS_BYTES:
        return None
    return projection_words(num_params, num, seed)


def hidden_projection(hidden, num: int, seed: int, words=None):
    """The hidden weights' part of :func:`draw_projections`: ``(unscaled sum, offset)`` of
    :func:`reprior.core.projections.project_leaves` over the leaves of ``hidden`` (the first leaves
    of theta and of phi alike)."""
    return project_leaves(jax.tree_util.tree_leaves(hidden), num, seed, words=words)


def draw_projections(theta, phi, num: int, seed: int, words=None, *, hidden=None) -> dict:
    """``theta_proj`` (and ``phi_proj``) on the fixed directions of :func:`reprior.core.projections.project_tree`.

    theta and phi share their hidden weights and their layout (hidden leaves first), so the
    hidden part of the projection, most of its cost, is computed once and shared (or passed as
    ``hidden``, :func:`hidden_projection` of ``theta["hidden"]``); with ``words``
    (:func:`run_projection_words`) the directions' hash words are read instead of recomputed.  Equal
    to ``project_tree(theta)`` and ``project_tree(phi)`` to float rounding.
    """
    if set(theta) != {"hidden", "readout"}:
        return {"theta_proj": project_tree(theta, num, seed),
                **({} if phi is None else {"phi_proj": project_tree(phi, num, seed)})}

    leaves = jax.tree_util.tree_leaves
    shared, offset = hidden_projection(theta["hidden"], num, seed, words) if hidden is None else hidden
    readout, dim = project_leaves(leaves(theta["readout"]), num, seed, offset=offset, words=words)
    out = {"theta_proj": (shared + readout) / math.sqrt(dim)}
    if phi is not None:
        out["phi_proj"] = (shared + project_leaves(leaves(phi["readout"]), num, seed, offset=offset,
                                                   words=words)[0]) / math.sqrt(dim)
    return out


def _make_stats_fn(stats_fn, target: Target):
    """The kernel's statistics, with the target's constants added to ``lp`` (the reported log density)."""
    constant = target.log_density_constant()

    def stats(state):
        out = dict(stats_fn(state))
        out["lp"] = out["lp"] + constant.astype(out["lp"].dtype)
        return out

    return stats


def _blas_settings() -> dict:
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
    return {name: os.environ.get(name, "") for name in names}


def sample(bnn: BNN, x, y, *, x_test=None, parameterisation: str = "reprior", readout: str = "exact",
           sampler: str = "nuts", num_warmup: int | None = None, num_samples: int = 500, num_chains: int = 4,
           seed: int = 0, progress_bar: bool = True, chain_method: str = "sequential",
           dtype: str | None = None, sampler_options: dict | None = None, thinning: int = 1,
           keep: str = "all", num_projections: int = 10, projection_seed: int = 0,
           form: str = "auto", blas_threads: int | None = 1, jitter: float = 0.0, check_memory: bool = True,
           pointwise: bool = True, init=None):
    """Sample the posterior of ``bnn`` given data ``(x, y)``; return ``arviz.InferenceData``.

    Args:
        bnn: the :class:`~reprior.BNN`.
        x: training inputs, ``(n, in_dim)`` for an MLP or ``(n, H, W, C)`` for a ResNet.
        y: training targets ``(n,)`` or ``(n, out_dim)``.
        x_test: optional test inputs; adds ``f_test``, a predictive draw ``y_test`` and the
            Rao-Blackwellised ``f_test_rb_mean``/``f_test_rb_var`` to ``posterior_predictive``.
        num_warmup: warm-up iterations per chain; ``None``: 500, or with ``init`` none (the
            continued chains are adapted already; an explicit value must be the earlier run's).
        parameterisation: ``"standard"`` (sample theta) or ``"reprior"`` (sample phi).
        readout: for ``"reprior"``: ``"exact"`` (phi_out drawn i.i.d. exactly,
            only hidden weights sampled) or ``"sampled"`` (phi_out sampled jointly).
        sampler: a registered kernel name (:func:`reprior.inference.kernels.kernel_names`).
        num_samples, num_chains, thinning: recorded draws per chain, chains, transitions per draw.
        seed: seed of the sampler's PRNG key.
        progress_bar: show a progress bar with ETA.
        chain_method: ``"sequential"``, ``"vectorized"`` or ``"parallel"`` (chains sharded over local devices).
        dtype: ``"float64"`` (default on CPU) or ``"float32"`` (default on accelerators).
            Set for this call only; the global JAX configuration is left alone.
        sampler_options: kernel settings, e.g. ``{"target_accept_prob": 0.9}``.
        keep: which parameters to store per draw: ``"all"``, ``"readout"`` or ``"none"``
            (projections and predictions are always stored).
        num_projections, projection_seed: fixed random unit directions for
            ``theta_proj``/``phi_proj`` (:mod:`reprior.core.projections`).
        form: ``"auto"``, ``"primal"`` or ``"dual"`` linear algebra for the repriorised density.
        blas_threads: threads of the LAPACK behind JAX's CPU Cholesky during the
            call (default 1, see :mod:`reprior._util.blas`; ``None`` leaves the setting alone).
        jitter: opt-in: add ``jitter * mean(diag K)`` to the diagonal of ``K + s^2 I`` in the
            repriorised likelihood (float32 at small noise); the default 0 is exact.
        check_memory: refuse (ValueError naming the width) a run whose rough memory estimate exceeds
            the job's limit (:func:`reprior.inference.memory.check_sample_memory`); False skips the estimate.
        pointwise: record, per draw and training target, the log likelihood (group
            ``log_likelihood``, for ``az.loo``) and a predictive draw of ``y`` (in
            ``posterior_predictive``, for ``az.plot_ppc``); each is ``(chain, draw, n, k)``,
            so ``False`` saves that memory at very large ``n``.
        init: a result of an earlier ``reprior.sample`` call (in memory or read back from
            NetCDF) to continue: its chains go on from their final kernel states, adaptation
            and PRNG keys included, for ``num_samples`` more draws each, and the result is the
            whole run, earlier draws first, equal (to round-off, on CPU) to one call with
            ``num_samples`` the sum.  Every argument that defines the run (network, data,
            ``x_test``, ``parameterisation``, ``readout``, ``sampler``, ``sampler_options``,
            ``num_chains``, ``thinning``, ``seed``, ``keep``, ``num_projections``,
            ``projection_seed``, ``form``, ``dtype``, ``jitter``, ``pointwise``) must be the
            earlier call's: another is a ValueError naming ``init``.

    Returns:
        ``InferenceData`` with groups ``posterior``, ``posterior_predictive`` (``y`` and, with
        ``x_test``, the test predictions), ``log_likelihood``, ``sample_stats``,
        ``warmup_sample_stats``, ``observed_data``, ``constant_data`` and ``sampler_state``
        (the chains' final kernel states, which ``init`` continues); timings, cost counts,
        failure counts (``nonfinite``, ``divergences``) and the network
        (:meth:`reprior.BNN.from_idata`) in ``attrs``.

    Warns:
        RuntimeWarning: once, when the chains failed (see :func:`reprior.inference.health.failure_report`).
    """
    pointwise = _checks.flag("pointwise", pointwise)
    if init is not None:
        num_warmup = _continued_warmup(init, num_warmup)
    x, y, x_test = _check_data(bnn, x, y, x_test)
    settings = SampleSettings.checked(
        parameterisation=parameterisation, readout=readout, sampler=sampler, num_warmup=num_warmup,
        num_samples=num_samples, num_chains=num_chains, seed=seed, chain_method=chain_method, dtype=dtype,
        sampler_options=sampler_options, thinning=thinning, keep=keep, num_projections=num_projections,
        form=form, jitter=jitter, blas_threads=blas_threads, pointwise=pointwise)
    _checks.seed("seed", seed)  # numbers the dtype can carry, judged before the work:
    _checks.numbers_fit(None if bnn.inferred_noise else bnn.noise_std, x, y, x_test, dtype=dtype or default_dtype())
    if _checks.flag("check_memory", check_memory):
        _memory.check_sample_memory(bnn, x.shape, y.shape[-1], 0 if x_test is None else len(x_test),
                                    num_chains=num_chains, chain_method=chain_method, num_samples=num_samples,
                                    keep=keep, dtype=dtype or default_dtype())
    if blas_threads is not None:
        _checks.positive_int("blas_threads", blas_threads)
    if _checks.nonnegative_int("projection_seed", projection_seed) >= 2**32:
        raise _checks.fail("projection_seed", "an integer in [0, 2**32)", projection_seed)
    dtype = dtype or default_dtype()
    previous = None if init is None else _check_init(init, bnn, x, y, x_test, settings, dtype, projection_seed)
    with jax.enable_x64(dtype == "float64"), _blas.blas_threads(blas_threads):
        return sample_with_settings(bnn, x, y, x_test, settings, dtype, progress_bar, projection_seed, previous)


def sample_with_settings(bnn, x, y, x_test, settings: SampleSettings, dtype, progress_bar, projection_seed,
                         previous=None):
    """The run of :func:`sample` once every input is checked: ``settings`` (a checked
    :class:`SampleSettings`), the resolved ``dtype``, and ``previous`` (the checked ``init=``
    result, or ``None``); called inside :func:`sample`'s dtype and BLAS-thread context."""
    from reprior.inference.inference_data import to_inference_data  # keeps ArviZ out of the import path of the maths

    jx_test = None if x_test is None else jnp.asarray(x_test, dtype)
    target = build_target(bnn, jnp.asarray(x, dtype), jnp.asarray(y, dtype),
                          parameterisation=settings.parameterisation, readout=settings.readout, form=settings.form,
                          jitter=settings.jitter)
    kernel = make_kernel(settings.sampler, target, settings.sampler_options)
    stats_fn = _make_stats_fn(get_kernel(settings.sampler).stats_fn, target)
    collect_fn = make_collect_fn(target, jx_test, settings.keep, settings.num_projections, projection_seed,
                                  pointwise=bool(settings.pointwise))

    init_key, run_key = jax.random.split(jax.random.key(settings.seed))
    init = target.initial_positions(init_key, settings.num_chains)
    dim = target.num_params
    words = run_projection_words(target.num_params, settings.num_projections, projection_seed)
    consts = {} if words is None else {"projection_words": words}  # read by every draw, built once

    start = None if previous is None else _start(previous, kernel)
    num_warmup = 0 if previous is not None else settings.num_warmup
    total = settings.num_chains * (num_warmup + settings.num_samples)
    with progress_display(progress_bar, total, f"{settings.sampler} {settings.parameterisation}") as progress:
        try:
            run = run_chains(kernel, stats_fn, collect_fn, init, rng_key=run_key, consts=consts,
                             num_warmup=num_warmup, num_samples=settings.num_samples,
                             num_chains=settings.num_chains, thinning=settings.thinning,
                             chain_method=settings.chain_method, progress=progress, start=start,
                             with_evaluation=True)
        except CheckpointMismatch as error:
            if start is None or "start state" not in str(error):
                raise
            raise _checks.fail("init", "a result whose sampler_state fits this sampler and network",
                               str(error)) from None
    if previous is not None:  # the whole run: the earlier draws, then these
        run = _joined(previous, run)
        settings = dataclasses.replace(settings, num_samples=previous["num_samples"] + settings.num_samples)
    attrs = _attrs(bnn, x, y, settings, dtype, run, dim, projection_seed)
    attrs["readout_root"] = target.readout_root  # how the recorded theta_out and phi_out are paired
    idata = to_inference_data(run, x=x, y=y, x_test=x_test, attrs=attrs)
    from reprior.inference.series import rhat_max as largest_rhat  # ArviZ: off the import path of the maths

    rhat_max = largest_rhat(idata) if settings.num_chains >= 2 else math.nan
    failure = failure_report(run.stats, run.draws, rhat_max=rhat_max)
    idata.attrs.update({"nonfinite": failure["nonfinite"], "divergences": failure["divergent"],
                        "rhat_max": rhat_max, "failed": ", ".join(failure["reasons"])})
    if failure["reasons"]:
        hint = (" (non-finite proposals are failed factorisations: try float64, a larger noise_std or jitter)"
                if failure["nonfinite"] > 0 else "")
        warnings.warn(f"reprior.sample: the chains of sampler={settings.sampler!r}, "
                      f"parameterisation={settings.parameterisation!r}, dtype={dtype!r}, "
                      f"noise_std={bnn.noise_std if bnn.noise_prior is None else bnn.noise_description()!r} failed: {', '.join(failure['reasons'])}{hint} "
                      f"(see docs/samplers.md#failures)", RuntimeWarning, stacklevel=3)
    return idata


# -- continuing a run (``init=``) ---------------------------------------------------------
#: The arguments of :func:`sample` that define a run (attrs of the same names): a continued run keeps them.
RUN_SETTINGS = ("parameterisation", "readout", "sampler", "sampler_options", "num_chains", "thinning", "seed",
                "keep", "num_projections", "projection_seed", "form", "jitter", "dtype", "pointwise")


def _init_attrs(init) -> dict:
    attrs = getattr(init, "attrs", None)
    if attrs is None or "num_warmup" not in attrs:
        raise _checks.fail("init", "a result of reprior.sample (arviz.InferenceData or xarray.DataTree) to continue",
                           type(init).__name__)
    return attrs


def _continued_warmup(init, num_warmup) -> int:
    """The warm-up of a continued run: the earlier run's (``num_warmup`` None or equal to it)."""
    earlier = int(_init_attrs(init)["num_warmup"])
    if num_warmup is not None and num_warmup != earlier:
        raise _checks.fail("num_warmup", f"None or {earlier}, the warm-up of the run that `init` continues "
                                         "(continued chains do not warm up again)", num_warmup)
    return earlier


def _setting(value):
    """A setting as the attrs hold it (None and an empty dict as "", a dict as its text)."""
    if value is None or (isinstance(value, dict) and not value):
        return ""
    return str(value) if isinstance(value, dict) else value


def _differs(stored, value) -> bool:
    stored = "" if isinstance(stored, str) and stored == "{}" else stored
    if isinstance(value, str) or isinstance(stored, str):
        return str(stored) != str(value)
    return bool(np.asarray(stored != value).any())


def _check_init(init, bnn, x, y, x_test, settings: SampleSettings, dtype, projection_seed) -> dict:
    """What continuing ``init`` needs, after checking that it is a run of this network, data and
    settings (ValueError naming ``init`` otherwise): its draws, statistics, final states and attrs."""
    from reprior.inference.inference_data import group_arrays, read_state, recorded

    attrs = _init_attrs(init)
    mine = {**describe_arch(bnn.arch), **noise_attrs(bnn), "projection_seed": projection_seed,
            **{k: _setting(getattr(settings, k)) for k in RUN_SETTINGS if k not in ("dtype", "projection_seed")},
            "dtype": dtype}
    for name, value in mine.items():
        if name not in attrs or _differs(attrs[name], value):
            raise _checks.fail("init", f"a run of this call's network and settings to continue ({name}={value!r})",
                               f"a run with {name}={attrs.get(name, 'unrecorded')!r}")
    constant, observed = group_arrays(init, "constant_data"), group_arrays(init, "observed_data")
    data = {"x": (np.asarray(x), constant.get("x")), "y": (np.asarray(y), observed.get("y")),
            "x_test": (None if x_test is None else np.asarray(x_test), constant.get("x_test"))}
    for name, (value, stored) in data.items():
        same = (value is None and stored is None) or (
            value is not None and stored is not None and value.shape == stored.shape and np.array_equal(value, stored))
        if not same:
            received = "none" if stored is None else f"array of shape {stored.shape}"
            raise _checks.fail("init", f"a run on this call's data to continue (`{name}` differs)",
                               f"a run whose {name} is {received}{'' if stored is None else ' with other values'}")
    state = read_state(init)
    if state is None:
        raise _checks.fail("init", "a result that holds its chains' final states (group sampler_state)",
                           "one without them")
    draws, stats, warmup = recorded(init)
    return {"attrs": dict(attrs), "draws": draws, "stats": stats, "warmup": warmup, "state": state,
            "num_samples": int(attrs["num_samples"]), "num_warmup": int(attrs["num_warmup"])}


def _start(previous: dict, kernel) -> Start:
    """Where the continued chains start.  An adapted kernel's state carries its warm-up length, so its
    ``init`` needs none (a one-shot tuner is not rerun); NumPyro's kernels keep it in closures."""
    from reprior.inference.samplers.adapter import AdaptedKernel

    arrays, spec = previous["state"]
    kernel_warmup = 0 if isinstance(kernel, AdaptedKernel) else previous["num_warmup"]
    return Start(arrays, spec, kernel_warmup, previous["num_samples"])


def _joined(previous: dict, run: ChainRun) -> ChainRun:
    """The earlier run's draws and statistics followed by ``run``'s; timings and counts summed."""
    def join(before, after):
        if set(before) != set(after):
            raise _checks.fail("init", f"a run that recorded {sorted(after)}", sorted(before))
        return {k: np.concatenate([np.asarray(before[k]).astype(np.asarray(after[k]).dtype), np.asarray(after[k])],
                                  axis=1) for k in after}

    attrs = previous["attrs"]
    timings = {k: float(attrs.get(k, 0.0)) + v for k, v in run.timings.items()}
    return ChainRun(draws=join(previous["draws"], run.draws), stats=join(previous["stats"], run.stats),
                    warmup_stats=previous["warmup"], timings=timings,
                    num_traces=int(attrs.get("num_traces", 0)) + run.num_traces, num_resumed=run.num_resumed,
                    final_state=run.final_state)


def _attrs(bnn, x, y, settings: SampleSettings, dtype, run, dim, projection_seed) -> dict:
    import numpyro

    warm_grads = int(np.sum(run.warmup_stats.get("num_grad_evals", 0)))
    sample_grads = int(np.sum(run.stats["num_grad_evals"]))
    warm_evals = int(np.sum(run.warmup_stats.get("num_logdensity_evals", 0)))
    sample_evals = int(np.sum(run.stats["num_logdensity_evals"]))
    arch = bnn.arch
    attrs = {
        "reprior_version": __import__("reprior").__version__,
        "jax_version": jax.__version__,
        "numpyro_version": numpyro.__version__,
        "machine": f"{platform.machine()} {platform.system()} {os.cpu_count()} cpus, {jax.default_backend()}",
        "arch": type(arch).__name__.lower(),
        "arch_repr": repr(arch),
        **describe_arch(arch),
        "width": int(getattr(arch, "width", 0)),
        "depth": int(getattr(arch, "depth", 0)),
        "num_params": dim,
        **noise_attrs(bnn),
        "n_train": int(x.shape[0]),
        "out_dim": int(y.shape[1]),
        "projection_seed": projection_seed,
        "grad_evals_warmup": warm_grads,
        "grad_evals_sampling": sample_grads,
        "grad_evals": warm_grads + sample_grads,
        "logdensity_evals_warmup": warm_evals,
        "logdensity_evals_sampling": sample_evals,
        "logdensity_evals": warm_evals + sample_evals,
        "num_traces": run.num_traces,
        **{k: v for k, v in run.timings.items()},
        **settings.attrs(),
        **{f"env_{k}": v for k, v in _blas_settings().items()},
        "dtype": dtype,  # the resolved dtype, after the settings' `dtype=None`
    }
    return attrs
