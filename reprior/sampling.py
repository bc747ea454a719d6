"""``reprior.sample``: posterior sampling of a BNN, returned as ArviZ ``InferenceData``.

This is the one jit boundary of the library.  The target is, by
``parameterisation`` and ``readout``:

=====================  ===============================  ===================================
setting                sampled variables                log density
=====================  ===============================  ===================================
``standard``           theta (all weights)              log N(theta) + log N(Y; f, s^2 I)
``reprior, sampled``   phi (hidden and phi_out)         log N(phi) + log N(Y; 0, K + s^2 I)
``reprior, exact``     phi_hidden only                  log N(phi_hidden) + log N(Y; 0, K + s^2 I)
=====================  ===============================  ===================================

With ``readout="exact"`` each recorded draw gets an i.i.d. exact draw of
``phi_out ~ N(0, I)``, hence of ``theta_out`` given the hidden weights.
"""

from __future__ import annotations

import os
import platform

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _checks
from . import blas as _blas
from . import repriorise as rp
from .architectures import readout_matrix, with_readout
from .bnn import BNN, PARAMETERISATIONS
from .driver import CHAIN_METHODS, run_chains
from .kernels import get_kernel, kernel_names, make_kernel
from .models import READOUTS, flatten_params
from .projections import projection_matrix

KEEP = ("all", "readout", "none")
DTYPES = ("float64", "float32")


def _default_dtype() -> str:
    return "float64" if jax.default_backend() == "cpu" else "float32"


def _validate(bnn, x, y, x_test, opts):
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
    _checks.one_of("parameterisation", opts["parameterisation"], PARAMETERISATIONS)
    _checks.one_of("readout", opts["readout"], READOUTS)
    _checks.one_of("sampler", opts["sampler"], kernel_names())
    _checks.nonnegative_int("num_warmup", opts["num_warmup"])
    _checks.positive_int("num_samples", opts["num_samples"])
    _checks.positive_int("num_chains", opts["num_chains"])
    _checks.positive_int("thinning", opts["thinning"])
    _checks.nonnegative_int("seed", opts["seed"])
    _checks.nonnegative_int("num_projections", opts["num_projections"])
    _checks.one_of("chain_method", opts["chain_method"], CHAIN_METHODS)
    _checks.one_of("keep", opts["keep"], KEEP)
    _checks.one_of("form", opts["form"], rp.FORMS)
    if opts["dtype"] is not None:
        _checks.one_of("dtype", opts["dtype"], DTYPES)
    if opts["sampler_options"] is not None and not isinstance(opts["sampler_options"], dict):
        raise _checks.fail("sampler_options", "a dict of sampler settings", opts["sampler_options"])
    return x, y, x_test


def _target(bnn, x, y, parameterisation, readout, form):
    """``(potential_fn, to_params)``: the negative log density over the sampled variables."""
    if parameterisation == "standard":
        return lambda z: -bnn.log_density(z, x, y, "standard", form=form)
    if readout == "sampled":
        return lambda z: -bnn.log_density(z, x, y, "reprior", form=form)
    return lambda z: -bnn.collapsed_log_density(z["hidden"], x, y, form=form)


def _make_collect_fn(bnn, x, y, x_test, parameterisation, readout, keep, form):
    """Per recorded draw: theta (and phi), projections, test predictions, log likelihood."""

    def collect(consts, key, z):
        out = {}
        hidden_only = {"hidden": z["hidden"], "readout": {"W": None, "b": None}}
        psi = bnn.features(hidden_only, x)  # computed once per draw, reused below
        if parameterisation == "standard":
            theta, phi = z, None
        else:
            posterior = rp.readout_posterior(psi, y, bnn.noise_std, form)
            if readout == "sampled":
                phi_out = readout_matrix(z)
            else:
                phi_out = jax.random.normal(key, posterior.mean.shape, posterior.mean.dtype)
            theta = with_readout(hidden_only, rp.to_theta_out(posterior, phi_out))
            phi = with_readout(hidden_only, phi_out)
        if keep == "all":
            out.update(flatten_params(theta))
        elif keep == "readout":
            out.update(flatten_params({"readout": theta["readout"]}))
        if phi is not None and keep != "none":
            out.update({f"{k}_reprior": v for k, v in flatten_params({"readout": phi["readout"]}).items()})
        if consts["projections"].shape[1]:
            out["theta_proj"] = ravel_pytree(theta)[0] @ consts["projections"]
            if phi is not None:
                out["phi_proj"] = ravel_pytree(phi)[0] @ consts["projections"]
        theta_out = readout_matrix(theta)
        out["log_likelihood"] = -0.5 * (
            (y - psi @ theta_out) ** 2 / bnn.noise_std**2 + jnp.log(2 * jnp.pi * bnn.noise_std**2))
        if x_test is not None:
            psi_test = bnn.features(hidden_only, x_test)
            out["f_test"] = psi_test @ theta_out
            mean, var = rp.predictive(psi, y, psi_test, bnn.noise_std, form)
            out["f_test_rb_mean"], out["f_test_rb_var"] = mean, var
        return out

    return collect


def _initial_positions(bnn, key, x, out_dim, num_chains, parameterisation, readout):
    """Prior draws, one per chain: for phi the prior is also the infinite-width posterior."""
    keys = jax.random.split(key, num_chains)
    params = jax.vmap(lambda k: bnn.init(k, x, out_dim))(keys)
    if parameterisation == "reprior" and readout == "exact":
        return {"hidden": params["hidden"]}
    return params


def _blas_settings() -> dict:
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
    return {name: os.environ.get(name, "") for name in names}


def sample(bnn: BNN, x, y, *, x_test=None, parameterisation: str = "reprior", readout: str = "exact",
           sampler: str = "nuts", num_warmup: int = 500, num_samples: int = 500, num_chains: int = 4,
           seed: int = 0, progress_bar: bool = True, chain_method: str = "sequential",
           dtype: str | None = None, sampler_options: dict | None = None, thinning: int = 1,
           keep: str = "all", num_projections: int = 10, projection_seed: int = 0,
           form: str = "auto", blas_threads: int | None = 1):
    """Sample the posterior of ``bnn`` given data ``(x, y)``; return ``arviz.InferenceData``.

    Args:
        bnn: the :class:`~reprior.BNN`.
        x: training inputs, ``(n, in_dim)`` for an MLP or ``(n, H, W, C)`` for a ResNet.
        y: training targets ``(n,)`` or ``(n, out_dim)``.
        x_test: optional test inputs; adds ``f_test`` and the Rao-Blackwellised
            ``f_test_rb_mean``/``f_test_rb_var`` to ``posterior_predictive``.
        parameterisation: ``"standard"`` (sample theta) or ``"reprior"`` (sample phi).
        readout: for ``"reprior"``: ``"exact"`` (phi_out drawn i.i.d. exactly,
            only hidden weights sampled) or ``"sampled"`` (phi_out sampled jointly).
        sampler: a registered kernel name (:func:`reprior.kernels.kernel_names`).
        num_warmup, num_samples, num_chains, thinning: chain lengths (per chain).
        seed: seed of the sampler's PRNG key.
        progress_bar: show a progress bar with ETA.
        chain_method: ``"sequential"``, ``"vectorized"`` or ``"parallel"`` (pmap).
        dtype: ``"float64"`` (default on CPU) or ``"float32"`` (default on accelerators).
            Set for this call only; the global JAX configuration is left alone.
        sampler_options: kernel settings, e.g. ``{"target_accept_prob": 0.9}``.
        keep: which parameters to store per draw: ``"all"``, ``"readout"`` or ``"none"``
            (projections and predictions are always stored).
        num_projections, projection_seed: fixed random unit directions for
            ``theta_proj``/``phi_proj`` (:mod:`reprior.projections`).
        form: ``"auto"``, ``"primal"`` or ``"dual"`` linear algebra for the repriorised density.
        blas_threads: threads of the LAPACK behind JAX's CPU Cholesky during the
            call (default 1, see :mod:`reprior.blas`; ``None`` leaves the setting alone).

    Returns:
        ``InferenceData`` with groups ``posterior``, ``posterior_predictive`` (if
        ``x_test``), ``log_likelihood``, ``sample_stats``, ``warmup_sample_stats``,
        ``observed_data`` and ``constant_data``; timings and cost counts in ``attrs``.
    """
    opts = dict(parameterisation=parameterisation, readout=readout, sampler=sampler, num_warmup=num_warmup,
                num_samples=num_samples, num_chains=num_chains, seed=seed, chain_method=chain_method,
                dtype=dtype, sampler_options=sampler_options, thinning=thinning, keep=keep,
                num_projections=num_projections, form=form,
                blas_threads="default" if blas_threads is None else blas_threads)
    x, y, x_test = _validate(bnn, x, y, x_test, opts)
    if blas_threads is not None:
        _checks.positive_int("blas_threads", blas_threads)
    dtype = dtype or _default_dtype()
    with jax.enable_x64(dtype == "float64"), _blas.blas_threads(blas_threads):
        return _sample(bnn, x, y, x_test, opts, dtype, progress_bar, projection_seed)


def _sample(bnn, x, y, x_test, opts, dtype, progress_bar, projection_seed):
    from .inference_data import to_inference_data  # keeps ArviZ out of the import path of the maths

    jx, jy = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    jx_test = None if x_test is None else jnp.asarray(x_test, dtype)
    parameterisation, readout, form = opts["parameterisation"], opts["readout"], opts["form"]
    potential_fn = _target(bnn, jx, jy, parameterisation, readout, form)
    kernel = make_kernel(opts["sampler"], potential_fn, opts["sampler_options"])
    stats_fn = get_kernel(opts["sampler"]).stats_fn
    collect_fn = _make_collect_fn(bnn, jx, jy, jx_test, parameterisation, readout, opts["keep"], form)

    key = jax.random.key(opts["seed"])
    init_key, run_key = jax.random.split(key)
    init = _initial_positions(bnn, init_key, jx, y.shape[1], opts["num_chains"], parameterisation, readout)
    dim = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(bnn.param_shapes(x.shape, y.shape[1])))
    consts = {"projections": jnp.asarray(projection_matrix(dim, opts["num_projections"], projection_seed), dtype)}

    total = opts["num_chains"] * (opts["num_warmup"] + opts["num_samples"])
    with _progress(progress_bar, total, opts) as progress:
        run = run_chains(kernel, stats_fn, collect_fn, init, rng_key=run_key, consts=consts,
                         num_warmup=opts["num_warmup"], num_samples=opts["num_samples"],
                         num_chains=opts["num_chains"], thinning=opts["thinning"],
                         chain_method=opts["chain_method"], progress=progress)
    attrs = _attrs(bnn, x, y, opts, dtype, run, dim, projection_seed)
    return to_inference_data(run, x=x, y=y, x_test=x_test, attrs=attrs)


class _progress:
    """Rich progress bar over all iterations of all chains (or nothing)."""

    def __init__(self, enabled, total, opts):
        self.enabled, self.total = enabled, total
        self.label = f"{opts['sampler']} {opts['parameterisation']}"

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), transient=False)
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=self.total)

        def update(done, phase):
            self.bar.update(self.task, completed=min(done, self.total), description=f"{self.label} [{phase}]")

        return update

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()
        return False


def _attrs(bnn, x, y, opts, dtype, run, dim, projection_seed) -> dict:
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
        "width": int(getattr(arch, "width", 0)),
        "depth": int(getattr(arch, "depth", 0)),
        "num_params": dim,
        "noise_std": bnn.noise_std,
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
        **{k: ("" if v is None else (str(v) if isinstance(v, dict) else v)) for k, v in opts.items()},
        **{f"env_{k}": v for k, v in _blas_settings().items()},
        "dtype": dtype,  # the resolved dtype, after the `dtype=None` of opts
    }
    return attrs
