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
:func:`reprior.kernels.kernel_names`) on the posterior in standard or
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

import argparse
import dataclasses
import functools
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as sps

from . import _checks
from . import repriorise as rp
from .architectures import MLP
from .architectures.layers import ACTIVATIONS
from .samplers.registry import get_kernel, kernel_names, make_kernel
from .target import PARAMETERISATIONS, READOUTS, Target

SUMMARY_NAMES = ("hidden_W[0,0]", "hidden_b[0]", "readout_W[0,0]", "readout_b[0]", "f(x*_0)", "f(x*_1)",
                 "log_likelihood")
DTYPES = ("float64", "float32")


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


def _lag1_autocorrelation(draws) -> np.ndarray:
    """Mean over replications of the lag-1 autocorrelation of ``draws: (R, L, S)``."""
    centred = draws - draws.mean(axis=1, keepdims=True)
    var = np.sum(centred**2, axis=1)
    cov = np.sum(centred[:, 1:] * centred[:, :-1], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(var > 0, cov / var, 1.0)  # constant draws: a stuck chain
    return rho.mean(axis=0)


# -- one replication ------------------------------------------------------------------------
def _summaries(arch, theta, x, x_test, y, noise_std) -> jax.Array:
    """The scalar summaries ``(num_summaries,)`` of standard-coordinate parameters ``theta``."""
    layer = theta["hidden"][0]
    f_test = arch.apply(theta, x_test)[:, 0]
    loglik = rp.gaussian_log_likelihood(arch.apply(theta, x), y, noise_std)
    return jnp.stack([layer["W"][0, 0], layer["b"][0], theta["readout"]["W"][0, 0], theta["readout"]["b"][0],
                      f_test[0], f_test[1], loglik])


def _make_replicate(arch, x, x_test, opts):
    """``(key, noise_std, sampler_noise_std) -> (ranks, draw summaries, diagnostics)`` for one replication."""
    stats_fn = get_kernel(opts["sampler"]).stats_fn
    make_kernel(opts["sampler"], lambda z: 0.0, opts["sampler_options"])  # validate options before tracing

    def replicate(key, noise_std, sampler_noise_std):
        truth_key, noise_key, init_key, run_key, draw_key = jax.random.split(key, 5)
        theta = arch.init(truth_key, x, 1)
        y = arch.apply(theta, x) + noise_std * jax.random.normal(noise_key, (x.shape[0], 1), x.dtype)
        # the same target as reprior.sample, with a traced noise level
        target = Target(arch, sampler_noise_std, x, y, opts["parameterisation"], opts["readout"], opts["form"])
        kernel = make_kernel(opts["sampler"], target, opts["sampler_options"])
        z0 = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(init_key, 1))

        def step(state, _):
            state = kernel.sample(state, (), {})
            s = stats_fn(state)
            return state, (s["accept_prob"], s["diverging"], s["num_grad_evals"], s["num_logdensity_evals"])

        state = kernel.init(run_key, opts["num_warmup"], z0, (), {})
        state, (_, _, warm_grads, warm_evals) = jax.lax.scan(step, state, None, length=opts["num_warmup"])

        def draw(state, key):
            state, diag = jax.lax.scan(step, state, None, length=opts["thinning"])
            z = getattr(state, kernel.sample_field)
            theta_l, _ = target.to_params(z, key)
            return state, (_summaries(arch, theta_l, x, x_test, y, noise_std), diag)

        _, (draws, (accept, diverging, grads, evals)) = jax.lax.scan(
            draw, state, jax.random.split(draw_key, opts["num_draws"]))
        truth = _summaries(arch, theta, x, x_test, y, noise_std)
        ranks = jnp.sum(draws < truth, axis=0)
        diagnostics = {
            "accept_prob": jnp.mean(accept),
            "num_divergences": jnp.sum(diverging),
            "grad_evals": jnp.sum(warm_grads) + jnp.sum(grads),
            "logdensity_evals": jnp.sum(warm_evals) + jnp.sum(evals),
        }
        return ranks, draws, diagnostics

    return replicate


def _validate(opts):
    _checks.one_of("sampler", opts["sampler"], kernel_names())
    _checks.one_of("parameterisation", opts["parameterisation"], PARAMETERISATIONS)
    _checks.one_of("readout", opts["readout"], READOUTS)
    _checks.one_of("form", opts["form"], rp.FORMS)
    _checks.one_of("activation", opts["activation"], tuple(ACTIVATIONS))
    for name in ("num_replications", "num_draws", "thinning", "width", "depth", "num_data", "in_dim", "num_bins",
                 "batch_size"):
        _checks.positive_int(name, opts[name])
    _checks.nonnegative_int("num_warmup", opts["num_warmup"])
    _checks.nonnegative_int("seed", opts["seed"])
    _checks.positive_float("noise_std", opts["noise_std"])
    _checks.positive_float("sampler_noise_std", opts["sampler_noise_std"])
    _checks.probability("level", opts["level"])
    if opts["num_bins"] < 2 or (opts["num_draws"] + 1) % opts["num_bins"]:
        raise _checks.fail("num_bins", f"at least 2 and a divisor of num_draws + 1 = {opts['num_draws'] + 1}",
                           opts["num_bins"])
    if opts["dtype"] is not None:
        _checks.one_of("dtype", opts["dtype"], DTYPES)
    if opts["sampler_options"] is not None and not isinstance(opts["sampler_options"], dict):
        raise _checks.fail("sampler_options", "a dict of sampler settings", opts["sampler_options"])


def _inputs(seed: int, num_data: int, in_dim: int):
    """Fixed design: training and two test inputs, i.i.d. N(0, 1) (NumPy, seeded)."""
    rng = np.random.default_rng([seed, 0x5BC])
    return rng.standard_normal((num_data, in_dim)), rng.standard_normal((2, in_dim))


def run_sbc(*, sampler: str = "elliptical_slice", parameterisation: str = "reprior", readout: str = "exact",
            sampler_options: dict | None = None, num_replications: int = 200, num_draws: int = 19,
            thinning: int = 10, num_warmup: int = 200, width: int = 8, depth: int = 1, activation: str = "relu",
            num_data: int = 10, in_dim: int = 2, noise_std: float = 0.5, sampler_noise_std: float | None = None,
            num_bins: int = 10, level: float = 0.01, seed: int = 0, batch_size: int = 100,
            dtype: str | None = None, form: str = "auto") -> SBCResult:
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

    Returns:
        :class:`SBCResult`.
    """
    opts = dict(sampler=sampler, parameterisation=parameterisation, readout=readout, sampler_options=sampler_options,
                num_replications=num_replications, num_draws=num_draws, thinning=thinning, num_warmup=num_warmup,
                width=width, depth=depth, activation=activation, num_data=num_data, in_dim=in_dim,
                noise_std=noise_std, sampler_noise_std=noise_std if sampler_noise_std is None else sampler_noise_std,
                num_bins=num_bins, level=level, seed=seed, batch_size=batch_size, dtype=dtype, form=form)
    _validate(opts)
    opts["sampler_options"] = dict(sampler_options or {})
    opts["dtype"] = dtype or ("float64" if jax.default_backend() == "cpu" else "float32")
    opts["batch_size"] = min(batch_size, num_replications)
    with jax.enable_x64(opts["dtype"] == "float64"):
        ranks, draws, diagnostics, timings = _run(opts)
    counts, chi2, p_values = uniformity_test(ranks, num_draws, num_bins)
    rejected = p_values < level / len(SUMMARY_NAMES)
    return SBCResult(
        ranks=ranks, summary_names=SUMMARY_NAMES, counts=counts, chi2=chi2, p_values=p_values, level=level,
        rejected=rejected, autocorrelation=_lag1_autocorrelation(draws),
        accept_prob=float(np.mean(diagnostics["accept_prob"])),
        num_divergences=int(np.sum(diagnostics["num_divergences"])),
        grad_evals=float(np.mean(diagnostics["grad_evals"])),
        logdensity_evals=float(np.mean(diagnostics["logdensity_evals"])),
        settings=opts, timings=timings)


_STATIC = ("sampler", "parameterisation", "readout", "form", "num_warmup", "thinning", "num_draws", "width", "depth",
           "activation", "num_data", "in_dim", "seed", "batch_size", "dtype")


@functools.lru_cache(maxsize=8)
def _compiled(static: tuple, sampler_options: tuple):
    """The compiled batch of replications ``(keys, noise_std, sampler_noise_std) -> outputs``.

    Cached on the static settings, so that runs differing only in the noise
    levels or in the number of replications (e.g. a correct and a deliberately
    wrong sampler) compile once.  Call inside the matching ``enable_x64`` mode.
    """
    opts = dict(zip(_STATIC, static), sampler_options=dict(sampler_options))
    dtype = jnp.dtype(opts["dtype"])
    x, x_test = (jnp.asarray(a, dtype) for a in _inputs(opts["seed"], opts["num_data"], opts["in_dim"]))
    arch = MLP(width=opts["width"], depth=opts["depth"], activation=opts["activation"])
    batched = jax.jit(jax.vmap(_make_replicate(arch, x, x_test, opts), in_axes=(0, None, None)))
    keys = jax.random.split(jax.random.key(0), opts["batch_size"])
    scalar = jnp.zeros((), dtype)
    return batched.lower(keys, scalar, scalar).compile()


def _run(opts):
    dtype = jnp.dtype(opts["dtype"])
    size = opts["batch_size"]
    start = time.perf_counter()
    compiled = _compiled(tuple(opts[k] for k in _STATIC), tuple(sorted(opts["sampler_options"].items())))
    timings = {"compile_seconds": time.perf_counter() - start}
    keys = jax.random.split(jax.random.key(opts["seed"]), opts["num_replications"])
    noise = jnp.asarray(opts["noise_std"], dtype), jnp.asarray(opts["sampler_noise_std"], dtype)
    start = time.perf_counter()
    outputs = []
    for begin in range(0, opts["num_replications"], size):
        batch = keys[begin:begin + size]
        real = batch.shape[0]
        if real < size:  # pad the last batch to the compiled shape
            batch = jnp.concatenate([batch, keys[:size - real]])
        outputs.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[:real], compiled(batch, *noise)))
    timings["run_seconds"] = time.perf_counter() - start
    ranks, draws, diagnostics = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *outputs)
    return ranks.astype(np.int64), draws, diagnostics, timings


# -- plot -------------------------------------------------------------------------------------
def plot_ranks(result: SBCResult, path, *, title: str | None = None) -> None:
    """Write the rank histograms of ``result`` to ``path`` (matplotlib, Agg canvas).

    One panel per summary, with the expected count and the band that holds
    99% of bins under uniformity (Binomial(N, 1/B) quantiles, as in Talts et al.).
    """
    from .plots import plot_sbc_ranks  # matplotlib stays inside reprior.plots

    s = result.settings
    total = int(result.counts[0].sum())
    title = title or (f"SBC ranks: {s['sampler']}, {s['parameterisation']}"
                      f"{' (' + s['readout'] + ' readout)' if s['parameterisation'] == 'reprior' else ''}, "
                      f"N = {total}, L = {s['num_draws']}")
    plot_sbc_ranks(result.summary_names, result.counts, result.rejected, result.p_values, path, title=title)


# -- command line -------------------------------------------------------------------------------
def _parse_option(text: str):
    """``KEY=VALUE`` with VALUE a JSON literal (``0.9``, ``true``, ``"x"``) or a bare string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, received {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``reprior sbc`` options to ``parser``."""
    parser.add_argument("--sampler", default="elliptical_slice",
                        help="registered kernel (nuts, hmc, underdamped_hmc, pcn, pcnl, elliptical_slice)")
    parser.add_argument("--parameterisation", default="reprior", choices=PARAMETERISATIONS)
    parser.add_argument("--readout", default="exact", choices=READOUTS)
    parser.add_argument("--sampler-option", action="append", default=[], type=_parse_option, metavar="KEY=VALUE",
                        help="kernel setting, repeatable (e.g. target_accept_prob=0.9)")
    parser.add_argument("--num-replications", type=int, default=200)
    parser.add_argument("--num-draws", type=int, default=19, help="kept draws L per replication")
    parser.add_argument("--thinning", type=int, default=10)
    parser.add_argument("--num-warmup", type=int, default=200)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--activation", default="relu", choices=tuple(ACTIVATIONS))
    parser.add_argument("--num-data", type=int, default=10)
    parser.add_argument("--in-dim", type=int, default=2)
    parser.add_argument("--noise-std", type=float, default=0.5)
    parser.add_argument("--sampler-noise-std", type=float, default=None,
                        help="noise std of the sampler's likelihood (default: --noise-std; differ to test power)")
    parser.add_argument("--num-bins", type=int, default=10)
    parser.add_argument("--level", type=float, default=0.01, help="family-wise level (Bonferroni over summaries)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--dtype", default=None, choices=DTYPES)
    parser.add_argument("--plot", default=None, metavar="PATH", help="write the rank histograms (PNG/PDF/SVG)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the result as JSON")


def command(args: argparse.Namespace) -> int:
    """Run ``reprior sbc``: print the table, write the plot and JSON; 0 if uniform, 1 if rejected."""
    result = run_sbc(
        sampler=args.sampler, parameterisation=args.parameterisation, readout=args.readout,
        sampler_options=dict(args.sampler_option), num_replications=args.num_replications,
        num_draws=args.num_draws, thinning=args.thinning, num_warmup=args.num_warmup, width=args.width,
        depth=args.depth, activation=args.activation, num_data=args.num_data, in_dim=args.in_dim,
        noise_std=args.noise_std, sampler_noise_std=args.sampler_noise_std, num_bins=args.num_bins,
        level=args.level, seed=args.seed, batch_size=args.batch_size, dtype=args.dtype)
    print(result.table())
    if args.plot:
        plot_ranks(result, args.plot)
        print(f"rank histograms written to {args.plot}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result.to_dict(), handle, indent=1)
    return 0 if result.passed else 1


def main(argv=None) -> int:
    """``python -m reprior.sbc``: the same as ``reprior sbc``."""
    parser = argparse.ArgumentParser(prog="python -m reprior.sbc", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
