"""Certified reference posteriors of the test predictions.

A reference is what the error of any run is measured against
(:mod:`reprior.evaluation.accuracy`), so it must be trusted more than any run it judges.
It is computed from long *repriorised* chains (collapsed: the readout drawn
exactly) of two different kernels, several chains each, and certified, as
posteriordb certifies its reference posteriors (Magnusson et al. 2024), only when

* in each kernel, every test scalar's Rao-Blackwellised mean ``m`` and
  second-moment integrand ``m^2 + v`` has rank-normalised split R-hat below
  :data:`MAX_RHAT` (1.01) and bulk and tail ESS of at least :data:`MIN_ESS`
  (400), and the kernel's run is healthy (no divergences, no failure of
  :func:`reprior.inference.health.failure_report`);
* the two kernels agree: for every scalar, the difference of their estimates of
  the mean and of the second moment is within :data:`MAX_DISAGREEMENT` (4)
  Monte Carlo standard errors (ArviZ's ``mcse``, the two added in quadrature);
* the reference's own Monte Carlo error, in the units of the errors it judges
  (:math:`\\overline{\\mathrm{MCSE}_i^2 / \\mathrm{Var}[f_i]}`, and the same for the
  second moment), is below a tenth of the threshold, so it cannot decide a crossing.

Moments, per test input and output (shapes ``(m, k)``), with ``m_s`` and
``v_s`` the mean and variance of ``f(x_test)`` given the hidden weights of
draw ``s`` (the readout is Gaussian given them, :mod:`reprior.core.repriorise`):

.. math::

    \\mathbb E[f] = \\mathbb E[m], \\quad
    \\mathbb E[f^2] = \\mathbb E[m^2 + v], \\quad
    \\mathrm{Var}[f] = \\mathbb E[f^2] - \\mathbb E[f]^2, \\quad
    \\mathrm{Var}[f^2] = \\mathbb E[m^4 + 6 m^2 v + 3 v^2] - \\mathbb E[f^2]^2,

(the fourth moment of a Gaussian given the hidden weights), and the part of the
predictive variance due to the hidden weights, ``rb_var`` :math:`= \\mathrm{Var}[m]`.
``mean`` and ``rb_mean`` are both the Rao-Blackwellised estimate of
:math:`\\mathbb E[f]`; the two kernels' estimates are pooled with inverse-MCSE^2 weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reprior._util import checks as _checks
from reprior._util.files import atomic_write, atomic_write_text
from reprior.evaluation.accuracy import DEFAULT_THRESHOLD, check_threshold

__all__ = ["DEFAULT_SAMPLERS", "MAX_DISAGREEMENT", "MAX_RHAT", "MIN_ESS", "MOMENTS", "ReferenceNotCertified",
           "ReferencePosterior", "inputs_digest", "reference_id", "reference_posterior"]

MAX_RHAT = 1.01
MIN_ESS = 400
MAX_DISAGREEMENT = 4.0
DEFAULT_SAMPLERS = ("pcnl", "nuts")
MOMENTS = ("mean", "var", "second_moment", "second_moment_var", "rb_mean", "rb_var")
"""The arrays of a :class:`ReferencePosterior`, each ``(m, k)``."""


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def inputs_digest(x_test) -> str:
    """16 hex characters identifying test inputs (their float64 values and shape)."""
    return _digest(x_test)


def reference_id(bnn, x, y, x_test, dtype: str) -> str:
    """The identity of a reference's *setting*: data, test inputs, architecture (width included),
    noise and dtype; 16 hex characters.  Standard and repriorised runs of one setting share it."""
    text = json.dumps({"arch": repr(bnn.arch), "noise_std": float(bnn.fixed_noise_std("a reference posterior")), "dtype": dtype,
                       "data": _digest(x, y), "x_test": inputs_digest(x_test)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ReferencePosterior:
    """Posterior moments of the test predictions ``f(x_test)``, each ``(m, k)``, and how they were certified.

    Attributes:
        mean: :math:`\\mathbb E[f]`.
        var: :math:`\\mathrm{Var}[f]` (readout and hidden weights together).
        second_moment: :math:`\\mathbb E[f^2]`.
        second_moment_var: :math:`\\mathrm{Var}[f^2]`.
        rb_mean: the Rao-Blackwellised mean :math:`\\mathbb E[m]` (equal to ``mean``).
        rb_var: :math:`\\mathrm{Var}[m]`, the part of ``var`` due to the hidden weights.
        diagnostics: the kernels used, R-hat and ESS extremes, the largest disagreement
            between kernels in MCSE units, the reference's own error, its cost, ``certified``
            and, when not certified, ``failures`` (one phrase each).
        reference_id: the setting's identity (:func:`reference_id`).
        x_test_digest: :func:`inputs_digest` of the test inputs.
    """

    mean: np.ndarray
    var: np.ndarray
    second_moment: np.ndarray
    second_moment_var: np.ndarray
    rb_mean: np.ndarray
    rb_var: np.ndarray
    diagnostics: dict = field(default_factory=dict)
    reference_id: str = ""
    x_test_digest: str = ""

    @property
    def certified(self) -> bool:
        return bool(self.diagnostics.get("certified", False))

    def matches_inputs(self, x_test) -> bool:
        """True when ``x_test`` are the test inputs this reference was built for."""
        return inputs_digest(x_test) == self.x_test_digest

    def save(self, path) -> Path:
        """Write to ``path`` (``.npz``, atomically), the diagnostics inside as JSON."""
        meta = json.dumps({"diagnostics": self.diagnostics, "reference_id": self.reference_id,
                           "x_test_digest": self.x_test_digest}, sort_keys=True, default=_jsonable)

        def write(tmp: Path):
            with open(tmp, "wb") as f:
                np.savez(f, meta=np.array(meta), **{name: getattr(self, name) for name in MOMENTS})

        return atomic_write(Path(path), write, suffix=".npz")

    @classmethod
    def load(cls, path) -> "ReferencePosterior":
        """Read a file written by :meth:`save`; ValueError naming the file if it is not one."""
        if Path(path).is_file() and not zipfile.is_zipfile(path):
            raise _checks.fail("reference", "a reference file written by reprior (.npz)", f"{path} (corrupt)")
        try:
            with open(Path(path), "rb") as handle, np.load(handle, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                arrays = {name: np.asarray(f[name], dtype=np.float64) for name in MOMENTS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise _checks.fail("reference", "a reference file written by reprior (.npz)",
                               f"{path} ({type(err).__name__}: {err})") from None
        shapes = {a.shape for a in arrays.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2 or not all(np.all(np.isfinite(a)) for a in arrays.values()):
            raise _checks.fail("reference", "a reference file with finite (m, k) moments", f"{path} (corrupt)")
        return cls(**arrays, diagnostics=meta["diagnostics"], reference_id=meta["reference_id"],
                   x_test_digest=meta["x_test_digest"])


class ReferenceNotCertified(ValueError):
    """A reference posterior that failed certification; ``diagnostics`` says why (``failures``)."""

    def __init__(self, message: str, diagnostics: dict, reference: ReferencePosterior | None = None,
                 runs: dict | None = None):
        super().__init__(message)
        self.diagnostics = diagnostics
        self.reference = reference
        #: ``{kernel name: its run}`` (results of :func:`reprior.sample`, in memory only): pass
        #: them as ``init=`` to :func:`reference_posterior` to continue the chains with more draws.
        self.runs = runs or {}


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# -- per-kernel statistics ---------------------------------------------------------------------
def rb_draws(idata) -> tuple[np.ndarray, np.ndarray]:
    """``(m: (C, S, m, k), v: (C, S, m, 1))``: the Rao-Blackwellised predictive of every draw."""
    from reprior.evaluation.diagnostics import predictive_by_chain

    mean, var = predictive_by_chain(idata)
    return mean, var[..., None]


def _arviz(fn, values: np.ndarray, **kwargs) -> np.ndarray:
    """An ArviZ diagnostic of every scalar of ``values: (C, S, ...)``, shaped like ``values[0, 0]``."""
    from reprior.evaluation.diagnostics import _arviz_stat

    return _arviz_stat(fn, values.reshape(values.shape[:2] + (-1,)), **kwargs).reshape(values.shape[2:])


def kernel_statistics(m: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """Moment estimates and their MCSE, R-hat and bulk/tail ESS, per scalar, from one kernel's draws."""
    import arviz as az

    second = m**2 + v
    out = {"mean": m.mean(axis=(0, 1)), "second": second.mean(axis=(0, 1)),
           "fourth": (m**4 + 6 * m**2 * v + 3 * v**2).mean(axis=(0, 1)), "rb_var": m.var(axis=(0, 1)),
           "num_draws": m.shape[0] * m.shape[1]}
    for name, q in (("mean", m), ("second", second)):
        out[f"mcse_{name}"] = _arviz(az.mcse, q, method="mean")
        out[f"rhat_{name}"] = _arviz(az.rhat, q)
        out[f"ess_bulk_{name}"] = _arviz(az.ess, q, method="bulk")
        out[f"ess_tail_{name}"] = _arviz(az.ess, q, method="tail")
    return out


_TINY = 1e-300


def pooled_spread(stats: dict[str, dict], mean: np.ndarray, total: int) -> np.ndarray:
    """The between-kernel part of the variance of ``m`` over all draws (law of total variance)."""
    return sum((s["mean"] - mean) ** 2 * s["num_draws"] for s in stats.values()) / total


def _pool(a: np.ndarray, b: np.ndarray, se_a: np.ndarray, se_b: np.ndarray):
    """Inverse-variance pooled estimate of ``a`` and ``b`` and its standard error."""
    wa, wb = 1.0 / np.maximum(se_a, 1e-300) ** 2, 1.0 / np.maximum(se_b, 1e-300) ** 2
    return (wa * a + wb * b) / (wa + wb), np.sqrt(1.0 / (wa + wb))


def combine(stats: dict[str, dict], threshold: float = DEFAULT_THRESHOLD) -> tuple[dict, dict]:
    """``(moments, figures)`` from the :func:`kernel_statistics` of each kernel (pooled over all given)."""
    names = list(stats)
    mean, se_mean = stats[names[0]]["mean"], stats[names[0]]["mcse_mean"]
    second, se_second = stats[names[0]]["second"], stats[names[0]]["mcse_second"]
    for name in names[1:]:
        s = stats[name]
        mean, se_mean = _pool(mean, s["mean"], se_mean, s["mcse_mean"])
        second, se_second = _pool(second, s["second"], se_second, s["mcse_second"])
    # The variances (units of the errors, not estimates judged) from all draws alike, so that they are
    # consistent with each other and non-negative.
    total = sum(s["num_draws"] for s in stats.values())

    def pooled(name):
        return sum(s[name] * s["num_draws"] for s in stats.values()) / total

    all_mean, all_second = pooled("mean"), pooled("second")
    rb_var = np.maximum(pooled("rb_var") + pooled_spread(stats, all_mean, total), _TINY)
    var = np.maximum(all_second - all_mean**2, _TINY)
    second_var = np.maximum(pooled("fourth") - all_second**2, _TINY)
    moments = {"mean": mean, "var": var, "second_moment": second, "second_moment_var": second_var,
               "rb_mean": mean, "rb_var": rb_var}
    figures = {
        "mcse_mean": se_mean, "mcse_second": se_second,
        "reference_error_mean": float(np.mean(se_mean**2 / var)),
        "reference_error_second": float(np.mean(se_second**2 / second_var)),
        "reference_error_rb_mean": float(np.mean(se_mean**2 / rb_var)),
        "max_reference_error": threshold / 10,
    }
    disagreement = {"mean": 0.0, "second": 0.0}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for moment in disagreement:
                sa, sb = stats[a], stats[b]
                z = np.abs(sa[moment] - sb[moment]) / np.hypot(sa[f"mcse_{moment}"], sb[f"mcse_{moment}"])
                disagreement[moment] = max(disagreement[moment], float(np.max(z)))
    figures["max_disagreement_mean_mcse"] = disagreement["mean"]
    figures["max_disagreement_second_mcse"] = disagreement["second"]
    figures["max_disagreement_mcse"] = max(disagreement.values())
    return moments, figures


def certification_failures(kernels: dict[str, dict], figures: dict) -> list[str]:
    """One phrase per failed certification rule (empty: certified)."""
    failures = []
    for name, k in kernels.items():
        run_failures = [r for r in k["failed"].split(", ") if r and not r.startswith("R-hat")]  # R-hat: below
        failures.extend(f"{name}: {reason}" for reason in run_failures)
        if k["divergences"] > 0:
            failures.append(f"{name}: {k['divergences']} divergences")
        if not k["rhat_max"] < MAX_RHAT:
            failures.append(f"{name}: R-hat {k['rhat_max']:.4f} >= {MAX_RHAT}")
        for kind in ("bulk", "tail"):
            if not k[f"ess_{kind}_min"] >= MIN_ESS:
                failures.append(f"{name}: {kind} ESS {k[f'ess_{kind}_min']:.0f} < {MIN_ESS}")
    if len(kernels) >= 2 and not figures["max_disagreement_mcse"] <= MAX_DISAGREEMENT:
        failures.append(f"kernels disagree by {figures['max_disagreement_mcse']:.2f} MCSE > {MAX_DISAGREEMENT:g}")
    for moment in ("mean", "second"):
        err = figures[f"reference_error_{moment}"]
        if not err < figures["max_reference_error"]:
            failures.append(f"reference error ({moment}) {err:.2g} >= {figures['max_reference_error']:.2g} "
                            "(threshold / 10)")
    return failures


def _kernel_summary(idata, stats: dict) -> dict:
    attrs = idata.attrs
    rhat = np.concatenate([stats["rhat_mean"].ravel(), stats["rhat_second"].ravel()])
    summary = {
        "rhat_max": float(np.max(rhat)) if np.all(np.isfinite(rhat)) else math.nan,
        "failed": str(attrs.get("failed", "")),
        "divergences": int(attrs.get("divergences", 0)),
        "grad_evals": int(attrs.get("grad_evals", 0)),
        "logdensity_evals": int(attrs.get("logdensity_evals", 0)),
        "seconds": float(attrs.get("warmup_seconds", 0.0)) + float(attrs.get("sample_seconds", 0.0)),
        "num_chains": int(idata.posterior_predictive.sizes["chain"]),
        "num_draws": int(stats["num_draws"]),
    }
    for kind in ("bulk", "tail"):
        ess = np.concatenate([stats[f"ess_{kind}_mean"].ravel(), stats[f"ess_{kind}_second"].ravel()])
        summary[f"ess_{kind}_min"] = float(np.min(ess)) if np.all(np.isfinite(ess)) else math.nan
    return summary


def describe_setting(bnn, n: int, m: int, dtype: str) -> str:
    """A one-line name of a reference's setting, for messages."""
    return f"{bnn.arch!r}, noise_std={bnn.noise_std:g}, n_train={n}, n_test={m}, {dtype}"


# -- the public function ------------------------------------------------------------------------
def reference_posterior(bnn, x, y, x_test, *, samplers=DEFAULT_SAMPLERS, num_chains: int = 4,
                        num_warmup: int = 1000, num_samples: int = 1000, thinning: int | dict = 1, seed: int = 0,
                        dtype: str | None = None, sampler_options: dict | None = None,
                        threshold: float = DEFAULT_THRESHOLD, certify: bool = True,
                        chain_method: str = "sequential", progress_bar: bool = False,
                        init: dict | None = None) -> ReferencePosterior:
    """A certified reference posterior of ``f(x_test)`` from repriorised chains of several kernels.

    Args:
        bnn, x, y, x_test: the setting, as for :func:`reprior.sample` (``x_test`` required).
        samplers: two or more registered kernel names (default pCNL and NUTS).
        num_chains, num_warmup, num_samples: each kernel's chains (per chain).
        thinning: iterations per recorded draw: one number, or ``{kernel name: number}``
            (kernels left out: 1), so that a cheap kernel can run longer between draws.
        seed: the first kernel's seed; kernel ``i`` uses ``seed + i``.
        dtype: as for :func:`reprior.sample`.
        sampler_options: ``{kernel name: options}``, e.g. ``{"nuts": {"max_tree_depth": 6}}``.
        threshold: the ``b^2`` threshold the reference will judge; its own error must be
            below a tenth of it.
        certify: raise :class:`ReferenceNotCertified` when a rule fails (default); with
            False, return the reference with ``diagnostics["certified"]`` false instead.
        chain_method: as for :func:`reprior.sample`; ``"vectorized"`` chains share each
            step's fixed costs, which dominate at small widths.
        progress_bar: show each kernel's progress bar.
        init: an earlier attempt's runs, ``{kernel name: result of reprior.sample}`` (what
            :attr:`ReferenceNotCertified.runs` holds), to continue rather than start again:
            each kernel's chains go on from where they stopped (no second warm-up) until they
            hold ``num_samples`` draws in all, so a reference that failed certification for
            want of draws costs only the draws it lacked.  Every other argument must be the
            earlier attempt's.

    Returns:
        A :class:`ReferencePosterior`; ``diagnostics`` holds ``kernels`` (per kernel: R-hat
        maximum, bulk and tail ESS minima over the test scalars' mean and second-moment
        integrands, divergences, failure, cost), ``rhat_max``, ``ess_bulk_min``,
        ``ess_tail_min``, ``max_disagreement_mcse``, the reference errors, the total cost
        (``grad_evals``, ``logdensity_evals``, ``seconds``), ``certified`` and ``failures``.

    Raises:
        ReferenceNotCertified: when ``certify`` and a certification rule fails; the message
            names the setting and every failing figure.
    """
    samplers, threshold, options, thin = _checked_arguments(x_test, samplers, num_chains, threshold, certify,
                                                            sampler_options, thinning)
    init = _check_reference_init(init, samplers, num_samples)
    stats, kernels, runs, resolved = _run_kernels(
        bnn, x, y, x_test, samplers=samplers, init=init, num_chains=num_chains, num_warmup=num_warmup,
        num_samples=num_samples, thin=thin, seed=seed, dtype=dtype, options=options, chain_method=chain_method,
        progress_bar=progress_bar)
    moments, figures = combine(stats, threshold)
    failures = certification_failures(kernels, figures)
    x_arr, x_test_arr = np.asarray(x), np.asarray(x_test)
    setting = describe_setting(bnn, x_arr.shape[0], x_test_arr.shape[0], resolved)
    budget = {"num_chains": num_chains, "num_warmup": num_warmup, "num_samples": num_samples,
              "thinning": thin, "seed": seed, "sampler_options": options, "chain_method": chain_method}
    diagnostics = _diagnostics(setting, samplers, kernels, budget, figures, threshold, failures)
    reference = ReferencePosterior(**moments, diagnostics=diagnostics,
                                   reference_id=reference_id(bnn, x_arr, np.asarray(y), x_test_arr, resolved),
                                   x_test_digest=inputs_digest(x_test_arr))
    if failures and certify:
        raise ReferenceNotCertified(f"reference posterior not certified for {setting}: " + "; ".join(failures),
                                    diagnostics, reference, runs)
    return reference


def _checked_arguments(x_test, samplers, num_chains, threshold, certify, sampler_options, thinning):
    """``(samplers, threshold, options, thin)`` of :func:`reference_posterior`, checked: the kernels as a
    tuple, the threshold, ``{kernel: options}`` and ``{kernel: thinning}`` (every kernel named)."""
    if x_test is None:
        raise _checks.fail("x_test", "test inputs (m, ...) for the reference", None)
    samplers = tuple(samplers) if not isinstance(samplers, str) else (samplers,)
    if len(samplers) < 2 or len(set(samplers)) != len(samplers):
        raise _checks.fail("samplers", "two or more different kernel names", samplers)
    _checks.positive_int("num_chains", num_chains)
    if num_chains < 2:
        raise _checks.fail("num_chains", "at least 2 (R-hat needs two chains)", num_chains)
    threshold = check_threshold(threshold)
    _checks.flag("certify", certify)
    options = dict(sampler_options or {})
    unknown = set(options) - set(samplers)
    if unknown:
        raise _checks.fail("sampler_options", f"options keyed by the kernels used {samplers}", sorted(unknown))
    thin = {name: 1 for name in samplers} | (dict(thinning) if isinstance(thinning, dict) else
                                             {name: thinning for name in samplers})
    if set(thin) - set(samplers):
        raise _checks.fail("thinning", f"a number or numbers keyed by the kernels used {samplers}",
                           sorted(set(thin) - set(samplers)))
    for name, value in thin.items():
        _checks.positive_int(f"thinning[{name!r}]", value)
    return samplers, threshold, options, thin


def _run_kernels(bnn, x, y, x_test, *, samplers: tuple, init: dict, num_chains: int, num_warmup: int,
                 num_samples: int, thin: dict, seed: int, dtype, options: dict, chain_method: str,
                 progress_bar: bool):
    """Sample each kernel's repriorised chains (continuing ``init``'s where given); returns
    ``(stats, kernels, runs, dtype)``: per kernel its :func:`kernel_statistics`, its summary and its run,
    and the dtype the runs resolved to."""
    from reprior.inference.sampling import sample

    stats, kernels, runs, resolved = {}, {}, {}, None
    for i, name in enumerate(samplers):
        earlier = init.get(name)
        more = num_samples - (0 if earlier is None else _draws_per_chain(earlier))
        with warnings.catch_warnings():  # a failed run is reported by the certification instead
            warnings.filterwarnings("ignore", message="reprior.sample", category=RuntimeWarning)
            idata = sample(bnn, x, y, x_test=x_test, parameterisation="reprior", readout="exact", sampler=name,
                           num_warmup=None if earlier is not None else num_warmup, num_samples=more,
                           num_chains=num_chains, thinning=thin[name], seed=seed + i, dtype=dtype,
                           sampler_options=options.get(name), keep="none", num_projections=1,
                           chain_method=chain_method, progress_bar=progress_bar, pointwise=False, init=earlier)
        resolved = idata.attrs["dtype"]
        stats[name] = kernel_statistics(*rb_draws(idata))
        kernels[name] = _kernel_summary(idata, stats[name])
        runs[name] = idata
        del idata
    return stats, kernels, runs, resolved


def _diagnostics(setting: str, samplers: tuple, kernels: dict, budget: dict, figures: dict, threshold: float,
                 failures: list[str]) -> dict:
    """A reference's ``diagnostics``: the kernels' summaries, their worst figures, the combined
    figures of :func:`combine`, the total cost and the certification."""
    return {
        "setting": setting, "samplers": list(samplers), "kernels": kernels,
        "budget": budget,
        "rhat_max": max(k["rhat_max"] for k in kernels.values()),
        "ess_bulk_min": min(k["ess_bulk_min"] for k in kernels.values()),
        "ess_tail_min": min(k["ess_tail_min"] for k in kernels.values()),
        **figures, "threshold": threshold,
        "grad_evals": sum(k["grad_evals"] for k in kernels.values()),
        "logdensity_evals": sum(k["logdensity_evals"] for k in kernels.values()),
        "seconds": sum(k["seconds"] for k in kernels.values()),
        "certified": not failures, "failures": failures,
    }


def _draws_per_chain(idata) -> int:
    return int(idata.posterior_predictive.sizes["draw"])


def _check_reference_init(init, samplers: tuple, num_samples: int) -> dict:
    """``init`` as ``{kernel name: run}``, checked against the kernels and the draws asked for."""
    if init is None:
        return {}
    if not isinstance(init, dict) or set(init) != set(samplers):
        received = sorted(init) if isinstance(init, dict) else type(init).__name__
        raise _checks.fail("init", f"the earlier runs of the kernels {list(samplers)}, keyed by name "
                           "(ReferenceNotCertified.runs)", received)
    for name, run in init.items():
        if not hasattr(run, "posterior_predictive"):
            raise _checks.fail(f"init[{name!r}]", "a result of reprior.sample", type(run).__name__)
        if _draws_per_chain(run) >= num_samples:
            raise _checks.fail("num_samples", f"more draws per chain than the {_draws_per_chain(run)} of the "
                               f"run that init[{name!r}] continues", num_samples)
    return init
