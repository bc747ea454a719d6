"""float32 at a million weights: the error of acceptance ratios, and the failure policy.

Two parts, on a depth-1 ReLU MLP on sklearn digits, repriorised with the
readout exact (only the hidden weights are sampled):

1. ``ratios`` (default width 16384, n = 128: about 1.06 million sampled
   weights).  ``--pairs`` states ``z`` (prior draws: in repriorised coordinates
   the prior is close to the posterior at this width) with, for each, a pCNL
   proposal ``z'`` at ``b = --b``.  On the *same* pair, the pCNL log
   acceptance ratio and the log likelihood difference ``l(z') - l(z)`` (which
   is what pCN's ratio and the elliptical slice test compare) are computed in
   float64 and in float32, the latter both as the kernels compute them now (the
   target's log likelihood, no constants) and as they did before (recovered from
   a potential with every constant, ``potential - |z|^2/2``).  Printed: the
   largest and mean absolute float32 errors, in nats.
2. ``failures`` (n = 512, float32, widths 256 and 1024, noise 0.01, 1e-3 and
   1e-4): short pCNL runs (and NUTS at the first noise) through
   ``reprior.sample``; reports the ``nonfinite`` and ``divergences`` counts,
   the warning issued and whether the call returned, then pCNL with ``jitter``
   where the run had non-finite iterations.
3. ``chains`` (default width 16384, n = 128, test points ``--chain-n-test``):
   pCNL and elliptical slice chains through ``reprior.sample`` in float64 and
   in float32 from the same seed.  Printed per sampler: the mean acceptance
   (pCNL) or density evaluations per iteration (elliptical slice) in each
   dtype, and the largest standardised difference between the two posterior
   predictive means (the Rao-Blackwellised ``f_test_rb_mean``), ``|m32 -
   m64| / sqrt(se32^2 + se64^2)`` with ArviZ's Monte Carlo standard errors;
   values of a few units mean agreement within Monte Carlo error.

    python benchmarks/precision.py --json docs/results/precision_cpu_w16384.json
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def _pairs(width: int, n: int, num_pairs: int, b: float, seed: int, noise_std: float):
    """float64 pairs ``(z, z')`` of flat hidden weights, and the data (NumPy)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import reprior
    from grad_cost import load_data
    from reprior.core.target import build_target

    x, y = load_data("mlp", n, seed)
    bnn = reprior.BNN(reprior.MLP(width=width), noise_std)
    with jax.enable_x64(True):
        target = build_target(bnn, jnp.asarray(x), jnp.asarray(y))
        z0 = target.initial_positions(jax.random.key(seed), num_pairs)
        flat = np.stack([np.asarray(target.flat(jax.tree_util.tree_map(lambda a: a[i], z0)))
                         for i in range(num_pairs)])
        _, unravel = jax.flatten_util.ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], z0))
        vg = jax.jit(jax.value_and_grad(lambda f: target.log_likelihood(unravel(f))))
        a = np.sqrt(1 - b**2)
        rng = np.random.default_rng(seed)
        proposals = []
        for z in flat:
            _, grad = vg(jnp.asarray(z))
            xi = rng.standard_normal(z.shape)
            proposals.append(a * z + b**2 / (1 + a) * np.asarray(grad) + b * xi)
    return bnn, x, y, flat, np.stack(proposals)


def _ratios(bnn, x, y, flat, proposals, b: float, dtype: str) -> dict:
    """pCNL log ratios and likelihood differences in ``dtype``: new (target) and old (potential) ways."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from reprior.inference.samplers.pcn import pcnl_log_accept
    from reprior.core.target import build_target

    with jax.enable_x64(dtype == "float64"):
        target = build_target(bnn, jnp.asarray(x, dtype), jnp.asarray(y, dtype))
        template = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, dtype), target.shapes())
        _, unravel = jax.flatten_util.ravel_pytree(template)
        new_vg = jax.jit(jax.value_and_grad(lambda f: target.log_likelihood(unravel(f))))
        # before: Phi = potential - |z|^2/2, the potential carrying every constant
        old_vg = jax.jit(jax.value_and_grad(
            lambda f: -target.log_density(unravel(f)) - 0.5 * f @ f))
        a = np.sqrt(1 - b**2)
        one_minus_a = b**2 / (1 + a)
        out = {"pcnl_new": [], "pcnl_old": [], "diff_new": [], "diff_old": []}
        for z, z_new in zip(flat, proposals):
            z, z_new = jnp.asarray(z, dtype), jnp.asarray(z_new, dtype)
            (l0, g0), (l1, g1) = new_vg(z), new_vg(z_new)
            out["pcnl_new"].append(float(pcnl_log_accept(z, z_new, -l0, -l1, -g0, -g1, a, one_minus_a, 1.0)))
            out["diff_new"].append(float(l1 - l0))
            (p0, h0), (p1, h1) = old_vg(z), old_vg(z_new)
            out["pcnl_old"].append(float(pcnl_log_accept(z, z_new, p0, p1, h0, h1, a, one_minus_a, 1.0)))
            out["diff_old"].append(float(p0 - p1))
        out["num_dims"] = int(flat.shape[1])
        out["log_density_magnitude"] = float(abs(target.log_density(unravel(jnp.asarray(flat[0], dtype)))))
    return out


def ratios_part(args) -> dict:
    import numpy as np

    bnn, x, y, flat, proposals = _pairs(args.width, args.n, args.pairs, args.b, args.seed, args.noise_std)
    exact = _ratios(bnn, x, y, flat, proposals, args.b, "float64")
    single = _ratios(bnn, x, y, flat, proposals, args.b, "float32")
    result = {"width": args.width, "n": args.n, "num_dims": exact["num_dims"], "pairs": args.pairs, "b": args.b,
              "log_density_magnitude": exact["log_density_magnitude"],
              "pcnl_log_ratio_float64": exact["pcnl_new"]}
    for quantity in ("pcnl", "diff"):
        reference = np.asarray(exact[f"{quantity}_new"])
        for way in ("new", "old"):
            error = np.abs(np.asarray(single[f"{quantity}_{way}"]) - reference)
            result[f"{quantity}_{way}_max_abs_error"] = float(np.max(error))
            result[f"{quantity}_{way}_mean_abs_error"] = float(np.mean(error))
    return result


def _failure_row(bnn, data, sampler: str, jitter: float, iterations: int) -> dict:
    """One short float32 run through ``reprior.sample``: counts, warning, and whether it returned."""
    import numpy as np

    import reprior

    row = {"sampler": sampler, "jitter": jitter, "dtype": "float32", "noise_std": bnn.noise_std,
           "n": int(data.x_train.shape[0]), "width": bnn.arch.width}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            idata = reprior.sample(bnn, data.x_train, data.y_train, sampler=sampler, dtype="float32",
                                   num_warmup=iterations, num_samples=iterations, num_chains=1,
                                   progress_bar=False, jitter=jitter,
                                   sampler_options={"max_tree_depth": 5} if sampler == "nuts" else None)
            row.update(returned=True, nonfinite=int(idata.attrs["nonfinite"]),
                       divergences=int(idata.attrs["divergences"]), failed=idata.attrs["failed"],
                       accept_mean=float(np.mean(idata.sample_stats["accept_prob"])))
        except Exception as err:  # the point of the check: report, never hide
            row.update(returned=False, error=f"{type(err).__name__}: {err}")
    row["warnings"] = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    return row


def failures_part(args) -> list[dict]:
    """pCNL at each (width, noise) in float32 (NUTS at the first noise), and pCNL with jitter where it failed."""
    import reprior
    from reprior.experiments.data import load_dataset

    data = load_dataset("digits", flatten=True, n_train=args.failure_n, n_test=0, seed=args.seed)
    rows = []
    for width in args.failure_widths:
        for i, noise in enumerate(args.failure_noises):
            bnn = reprior.BNN(reprior.MLP(width=width), noise_std=noise)
            for sampler in ("pcnl", "nuts") if i == 0 else ("pcnl",):
                rows.append(_failure_row(bnn, data, sampler, 0.0, args.failure_iterations))
                print(rows[-1], flush=True)
            if rows[-1].get("nonfinite", 0) or not rows[-1]["returned"]:
                rows.append(_failure_row(bnn, data, "pcnl", args.jitter, args.failure_iterations))
                print(rows[-1], flush=True)
    return rows


def _chain_run(bnn, data, sampler: str, dtype: str, args) -> dict:
    """One run through ``reprior.sample``: acceptance, evaluations per iteration, predictive mean and its MCSE."""
    import arviz as az
    import numpy as np

    import reprior

    start = time.perf_counter()
    idata = reprior.sample(bnn, data.x_train, data.y_train, x_test=data.x_test, sampler=sampler, dtype=dtype,
                           num_warmup=args.chain_warmup, num_samples=args.chain_samples, num_chains=2,
                           thinning=args.chain_thinning, keep="none", progress_bar=False, seed=args.seed)
    rb = idata.posterior_predictive[["f_test_rb_mean"]].astype(np.float64)
    iterations = 2 * args.chain_samples * args.chain_thinning
    return {"sampler": sampler, "dtype": dtype, "seconds": time.perf_counter() - start,
            "accept_mean": float(np.mean(idata.sample_stats["accept_prob"])),
            "evals_per_iteration": float(idata.attrs["logdensity_evals_sampling"]) / max(iterations, 1),
            "nonfinite": int(idata.attrs["nonfinite"]), "failed": idata.attrs["failed"],
            "rb_mean": rb["f_test_rb_mean"].mean(("chain", "draw")).values.ravel(),
            "rb_mcse": az.mcse(rb, method="mean")["f_test_rb_mean"].values.ravel(),
            "rb_ess_median": float(np.median(az.ess(rb, method="bulk")["f_test_rb_mean"].values))}


def chains_part(args) -> list[dict]:
    """float32 against float64 chains of pCNL and elliptical slice at ``--chain-width``."""
    import numpy as np

    import reprior
    from reprior.experiments.data import load_dataset

    data = load_dataset("digits", flatten=True, n_train=args.n, n_test=args.chain_n_test, seed=args.seed)
    bnn = reprior.BNN(reprior.MLP(width=args.chain_width), noise_std=args.noise_std)
    rows = []
    for sampler in ("pcnl", "elliptical_slice"):
        runs = {dtype: _chain_run(bnn, data, sampler, dtype, args) for dtype in ("float64", "float32")}
        z = np.abs(runs["float32"]["rb_mean"] - runs["float64"]["rb_mean"]) / np.hypot(
            runs["float32"]["rb_mcse"], runs["float64"]["rb_mcse"])
        row = {"sampler": sampler, "width": args.chain_width, "n": args.n, "n_test": args.chain_n_test,
               "warmup": args.chain_warmup, "samples": args.chain_samples, "thinning": args.chain_thinning,
               "max_z_rb_mean": float(np.max(z)), "median_z_rb_mean": float(np.median(z)),
               "max_abs_diff_rb_mean": float(np.max(np.abs(runs["float32"]["rb_mean"] - runs["float64"]["rb_mean"])))}
        for dtype, run in runs.items():
            for key in ("seconds", "accept_mean", "evals_per_iteration", "nonfinite", "failed", "rb_ess_median"):
                row[f"{key}_{dtype}"] = run[key]
        rows.append(row)
        print(row, flush=True)
    return rows


def main(argv=None) -> int:
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=16384)
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--b", type=float, default=0.5, help="pCNL step (0.57 adapted at width 4096)")
    p.add_argument("--failure-widths", type=common.int_list, default=[256, 1024])
    p.add_argument("--failure-n", type=int, default=512)
    p.add_argument("--failure-noises", type=lambda t: [float(v) for v in t.split(",")], default=[0.01, 1e-3, 1e-4])
    p.add_argument("--failure-iterations", type=int, default=50)
    p.add_argument("--jitter", type=float, default=1e-4)
    p.add_argument("--skip-failures", action="store_true")
    p.add_argument("--skip-ratios", action="store_true")
    p.add_argument("--chains", action="store_true", help="run the float32 against float64 chains (part 3; always with --quick)")
    p.add_argument("--chain-width", type=int, default=16384)
    p.add_argument("--chain-n-test", type=int, default=64)
    p.add_argument("--chain-warmup", type=int, default=300)
    p.add_argument("--chain-samples", type=int, default=300)
    p.add_argument("--chain-thinning", type=int, default=2)
    args = p.parse_args(argv)
    if args.quick:
        args.width, args.n, args.pairs = 64, 32, 2
        args.failure_widths, args.failure_n, args.failure_iterations = [16], 64, 5
        args.chain_width, args.chain_n_test, args.chain_warmup, args.chain_samples = 32, 8, 20, 20
    info = common.header()
    common.print_header(info, "float32 acceptance ratios and the failure policy")
    ratios = {} if args.skip_ratios else ratios_part(args)
    if ratios:
        _print_ratios(ratios)
    failures = [] if args.skip_failures else failures_part(args)
    chains = chains_part(args) if args.chains or args.quick else []
    common.write_json("precision", {"header": info, "ratios": ratios, "failures": failures, "chains": chains},
                      args.json)
    return 0


def _print_ratios(ratios: dict) -> None:
    print(f"width {ratios['width']}, {ratios['num_dims']} sampled weights, |log density| ~ "
          f"{ratios['log_density_magnitude']:.3g}; {ratios['pairs']} pCNL pairs at b = {ratios['b']}")
    print(common.table([
        {"quantity": "pCNL log ratio", "new": ratios["pcnl_new_max_abs_error"], "old": ratios["pcnl_old_max_abs_error"],
         "new_mean": ratios["pcnl_new_mean_abs_error"], "old_mean": ratios["pcnl_old_mean_abs_error"]},
        {"quantity": "l(z') - l(z)", "new": ratios["diff_new_max_abs_error"], "old": ratios["diff_old_max_abs_error"],
         "new_mean": ratios["diff_new_mean_abs_error"], "old_mean": ratios["diff_old_mean_abs_error"]},
    ], [("quantity", "float32 error (nats)", ""), ("new", "max, likelihood", ".3g"),
        ("new_mean", "mean, likelihood", ".3g"), ("old", "max, from potential", ".3g"),
        ("old_mean", "mean, from potential", ".3g")]))


if __name__ == "__main__":
    raise SystemExit(main())
