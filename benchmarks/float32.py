"""float32 against float64 at the widest width: gradient cost, acceptance, and the posterior predictive.

Two parts, both on a depth-1 MLP on sklearn digits (``n`` training points, 10 outputs):

1. ``grad_cost`` of the standard, repriorised (``auto``) and collapsed densities
   in both precisions (same process, interleaved timings), with the relative
   difference of the float32 values and gradients from the float64 ones.
2. ``mixing``: ``reprior.sample`` (NUTS, ``dtype="float32"`` and ``"float64"``,
   same seed) in each setting given; acceptance rate, divergences, step size,
   leapfrog steps per draw, ESS, and the difference of the posterior predictive
   means of ``f_test`` (and of the Rao-Blackwellised mean ``f_test_rb_mean``)
   between the precisions, in absolute terms and as a z-score against their
   Monte Carlo standard errors (ArviZ ``mcse``): ``|m32 - m64| / sqrt(mcse32^2
   + mcse64^2)``.  z-scores of order 1 mean the precisions agree to Monte
   Carlo error.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

GRAD_VARIANTS = ("standard", "auto", "collapsed")


def grad_part(args) -> list[dict]:
    """grad_cost rows in both precisions, and the float32 error against float64."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import reprior
    from grad_cost import load_data, logdensity_fns

    x_np, y_np = load_data("mlp", args.n, args.seed)
    compiled, call_args, outputs, rows = {}, {}, {}, {}
    for dtype in ("float64", "float32"):
        with jax.enable_x64(dtype == "float64"):
            bnn = reprior.BNN(reprior.MLP(width=args.width), args.noise_std)
            x, y = jnp.asarray(x_np, dtype), jnp.asarray(y_np, dtype)
            with jax.enable_x64(True):  # the same parameter draw in both precisions
                params64 = bnn.init(jax.random.key(args.seed), jnp.asarray(x_np), y.shape[1])
            params = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a), dtype), params64)
            fns = logdensity_fns(bnn)
            for name in GRAD_VARIANTS:
                fn, argument = fns[name]
                z = params["hidden"] if argument == "hidden" else params
                key = f"{name}_{dtype}"
                compiled[key], compile_s = common.compile_fn(jax.value_and_grad(fn), z, x, y)
                call_args[key] = (z, x, y)
                rows[key] = {"variant": name, "dtype": dtype, "compile_s": compile_s,
                             "xla_bytes": common.xla_bytes(compiled[key])}
                outputs[key] = jax.device_get(compiled[key](z, x, y))
    with jax.enable_x64(True):  # float32 arrays stay float32; float64 ones are not truncated
        timings = common.time_interleaved(compiled, call_args, rounds=args.rounds, max_seconds=args.max_seconds)
    out = []
    for key, row in rows.items():
        row["s"] = timings[key]["median"]
        row["times"] = timings[key]["times"]
        ref = f"{row['variant']}_float64"
        row["ratio_to_float64"] = common.ratio(row["s"], timings[ref]["median"])
        row["ratio_to_standard_same_dtype"] = common.ratio(row["s"], timings[f"standard_{row['dtype']}"]["median"])
        v32, g32 = outputs[key]
        v64, g64 = outputs[ref]
        row["value"] = float(v32)
        row["rel_err_value"] = abs(float(v32) - float(v64)) / abs(float(v64))
        flat32 = np.concatenate([np.ravel(a).astype(np.float64) for a in jax.tree_util.tree_leaves(g32)])
        flat64 = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(g64)])
        row["rel_err_grad"] = float(np.linalg.norm(flat32 - flat64) / np.linalg.norm(flat64))
        out.append({"width": args.width, "n": args.n, **row})
    return out


def _moments(idata, name: str):
    import arviz as az
    import numpy as np

    draws = np.asarray(idata.posterior_predictive[name])  # (chain, draw, *shape)
    mean = draws.mean(axis=(0, 1))
    flat = draws.reshape(draws.shape[0], draws.shape[1], -1)
    mcse = np.array([float(az.mcse(flat[..., j], method="mean")) for j in range(flat.shape[-1])])
    return mean.ravel(), mcse, draws.reshape(-1, flat.shape[-1]).std(axis=0)


def mixing_part(args) -> tuple[list[dict], list[dict]]:
    """Sampler statistics in both precisions, and the predictive differences."""
    import numpy as np

    from mixing import run_cell
    from reprior.experiments.data import load_dataset

    data = load_dataset("digits", n_train=args.n, n_test=args.n_test, seed=args.seed, flatten=True)
    width = args.mixing_width or args.width
    runs, diffs = [], []
    for setting in args.settings:
        idatas = {}
        for dtype in ("float64", "float32"):
            row, idatas[dtype] = run_cell(width, setting, data, args, dtype=dtype)
            runs.append(row)
            print(f"width {width} {setting} {dtype}: accept {row['accept_prob_mean']:.3f}, "
                  f"divergent {row['num_divergent']}, grads/draw {row['steps_per_draw_mean']:.4g}, "
                  f"sample {row['sample_seconds']:.4g} s", flush=True)
        for name in ("f_test", "f_test_rb_mean"):
            m64, se64, sd64 = _moments(idatas["float64"], name)
            m32, se32, _ = _moments(idatas["float32"], name)
            z = np.abs(m32 - m64) / np.sqrt(se32**2 + se64**2)
            diffs.append({
                "width": width, "setting": setting, "quantity": name,
                "max_abs_diff": float(np.max(np.abs(m32 - m64))),
                "mean_abs_diff": float(np.mean(np.abs(m32 - m64))),
                "max_abs_diff_over_post_sd": float(np.max(np.abs(m32 - m64) / sd64)),
                "z_median": float(np.median(z)), "z_max": float(np.max(z)),
                "mcse_median": float(np.median(np.sqrt(se32**2 + se64**2))), "num_values": int(m64.size),
            })
    by_key = {(r["setting"], r["dtype"]): r for r in runs}
    for r in runs:
        ref = by_key[(r["setting"], "float64")]
        for key in ("ess_per_grad_pred", "ess_per_second_pred", "seconds_per_grad_sampling"):
            r[f"{key}_ratio_to_float64"] = common.ratio(r.get(key), ref.get(key))
    return runs, diffs


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=4096, help="the (widest) width")
    p.add_argument("--mixing-width", type=int, default=None, help="width of the NUTS runs (default: --width)")
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--settings", type=lambda s: s.split(","), default=["exact", "sampled"],
                   help="mixing settings (see mixing.py); empty to skip the mixing part")
    common.add_nuts_options(p)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--max-seconds", type=float, default=20.0)
    p.add_argument("--name", default="float32", help="results file name")
    args = p.parse_args(argv)
    args.settings = [s for s in args.settings if s]
    if args.quick:
        args.width, args.mixing_width, args.n, args.n_test, args.settings = 32, None, 24, 8, ["exact"]
        args.num_chains, args.num_warmup, args.num_samples, args.max_tree_depth = 2, 15, 15, 5
        args.rounds, args.max_seconds = 3, 1.0
        args.name += "_quick"

    info = common.header()
    common.print_header(info, "float32: gradient cost, acceptance and predictive, float32 vs float64")
    grads = grad_part(args)
    print("\n## seconds per value_and_grad (median), float32 vs float64\n")
    print(common.table([{**r, "ms": 1e3 * r["s"]} for r in grads], [
        ("width", "width", ""), ("n", "n", ""), ("variant", "variant", ""), ("dtype", "dtype", ""),
        ("ms", "ms", ".3g"), ("ratio_to_float64", "/ float64", ".3g"),
        ("ratio_to_standard_same_dtype", "/ standard", ".3g"), ("compile_s", "compile s", ".2g"),
        ("rel_err_value", "rel err value", ".1e"), ("rel_err_grad", "rel err grad", ".1e")]))
    runs, diffs = mixing_part(args) if args.settings else ([], [])
    if runs:
        print("\n## NUTS in float32 vs float64\n")
        print(common.table(runs, [
            ("width", "width", ""), ("setting", "setting", ""), ("dtype", "dtype", ""),
            ("accept_prob_mean", "accept", ".3f"), ("num_divergent", "div", ""),
            ("step_size_mean", "step size", ".3g"), ("steps_per_draw_mean", "grads/draw", ".4g"),
            ("ess_per_grad_pred", "ESS/grad pred", ".3g"), ("ess_per_second_pred", "ESS/s pred", ".3g"),
            ("seconds_per_grad_sampling", "s/grad", ".3g"),
            ("seconds_per_grad_sampling_ratio_to_float64", "s/grad / float64", ".3g")]))
        print("\n## posterior predictive mean, float32 - float64\n")
        print(common.table(diffs, [
            ("setting", "setting", ""), ("quantity", "quantity", ""), ("max_abs_diff", "max |diff|", ".3g"),
            ("mean_abs_diff", "mean |diff|", ".3g"), ("max_abs_diff_over_post_sd", "max |diff| / sd", ".3g"),
            ("mcse_median", "MCSE (both)", ".3g"), ("z_median", "z median", ".2f"), ("z_max", "z max", ".2f")]))
    result = {"benchmark": "float32", "header": info,
              "settings": vars(args),
              "grad_rows": grads, "mixing_rows": runs, "predictive_diffs": diffs,
              "process_peak_rss_bytes": common.process_peak_rss_bytes()}
    common.write_json(args.name, result, args.json)
    return result


if __name__ == "__main__":
    main()
