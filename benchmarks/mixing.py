"""NUTS mixing, standard vs repriorised: ESS per gradient evaluation and per second.

Depth-1 MLP on sklearn digits (``n`` training points, 10 outputs), NumPyro
NUTS through ``reprior.sample`` (same adaptation and tree depth in every
setting), several chains.  Settings:

``standard``  sample theta (all weights) under the standard parameterisation.
``sampled``   sample phi (hidden weights and the repriorised readout ``phi_out``) jointly.
``exact``     sample the hidden weights only (collapsed density), ``phi_out`` drawn exactly per draw.

Mixing is measured as in Hron et al. (2022): median bulk ESS (ArviZ) over 10
fixed random unit projections of the test predictions ``f_test`` (``pred``)
and of the flattened standard-coordinate parameters ``theta_proj``
(``theta``), per gradient evaluation during sampling (NUTS ``num_steps``) and
per second of sampling (compilation and warm-up excluded).  The ratio to
``standard`` at each width is the headline; ``per_second/per_grad`` compares the
two ratios (target >= 0.7: the repriorisation must not eat its own gain).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SETTINGS = {"standard": ("standard", "sampled"), "sampled": ("reprior", "sampled"), "exact": ("reprior", "exact")}


def run_cell(width: int, setting: str, data, args, *, dtype: str = "float64", depth: int = 1):
    """One ``reprior.sample`` run; returns ``(row, idata)``."""
    import reprior

    parameterisation, readout = SETTINGS[setting]
    bnn = reprior.BNN(reprior.MLP(width=width, depth=depth), args.noise_std)
    start = time.perf_counter()
    idata = reprior.sample(
        bnn, data.x_train, data.y_train, x_test=data.x_test, parameterisation=parameterisation,
        readout=readout, num_warmup=args.num_warmup, num_samples=args.num_samples, num_chains=args.num_chains,
        seed=args.seed, progress_bar=False, chain_method=args.chain_method, dtype=dtype, keep="none",
        num_projections=10, sampler_options={"target_accept_prob": args.target_accept,
                                             "max_tree_depth": args.max_tree_depth})
    wall = time.perf_counter() - start
    row = {"width": width, "depth": depth, "setting": setting, "dtype": dtype, "wall_seconds": wall,
           **common.mixing_metrics(idata)}
    return row, idata


def add_ratios(rows: list[dict]) -> None:
    """Ratios of each setting to ``standard`` at the same width (in place)."""
    base = {r["width"]: r for r in rows if r["setting"] == "standard"}
    for r in rows:
        b = base.get(r["width"])
        for g in ("pred", "theta"):
            r[f"ratio_ess_per_grad_{g}"] = common.ratio(r.get(f"ess_per_grad_{g}"), b and b.get(f"ess_per_grad_{g}"))
            r[f"ratio_ess_per_second_{g}"] = common.ratio(r.get(f"ess_per_second_{g}"),
                                                          b and b.get(f"ess_per_second_{g}"))
            r[f"second_vs_grad_ratio_{g}"] = common.ratio(r[f"ratio_ess_per_second_{g}"],
                                                          r[f"ratio_ess_per_grad_{g}"])
        r["ratio_seconds_per_grad"] = common.ratio(r.get("seconds_per_grad_sampling"),
                                                   b and b.get("seconds_per_grad_sampling"))


def print_tables(rows: list[dict]) -> None:
    cols = [("width", "width", ""), ("setting", "setting", "")]
    print("\n## sampler statistics\n")
    print(common.table(rows, cols + [
        ("num_params", "params", ""), ("accept_prob_mean", "accept", ".2f"), ("num_divergent", "div", ""),
        ("step_size_mean", "step size", ".3g"), ("steps_per_draw_mean", "grads/draw", ".4g"),
        ("seconds_per_grad_sampling", "s/grad (sampling)", ".3g"), ("compile_seconds", "compile s", ".3g"),
        ("warmup_seconds", "warmup s", ".4g"), ("sample_seconds", "sample s", ".4g")]))
    print("\n## ESS (median bulk over 10 projections)\n")
    print(common.table(rows, cols + [
        ("ess_bulk_pred_median", "ESS pred", ".4g"), ("ess_per_grad_pred", "ESS/grad pred", ".3g"),
        ("ess_per_second_pred", "ESS/s pred", ".3g"), ("ess_bulk_theta_median", "ESS theta", ".4g"),
        ("ess_per_grad_theta", "ESS/grad theta", ".3g"), ("ess_per_second_theta", "ESS/s theta", ".3g")]))
    print("\n## ratio to standard at the same width\n")
    print(common.table([r for r in rows if r["setting"] != "standard"], cols + [
        ("ratio_ess_per_grad_pred", "ESS/grad pred", ".3g"), ("ratio_ess_per_second_pred", "ESS/s pred", ".3g"),
        ("second_vs_grad_ratio_pred", "(ESS/s)/(ESS/grad) pred", ".2f"),
        ("ratio_ess_per_grad_theta", "ESS/grad theta", ".3g"), ("ratio_ess_per_second_theta", "ESS/s theta", ".3g"),
        ("second_vs_grad_ratio_theta", "(ESS/s)/(ESS/grad) theta", ".2f"),
        ("ratio_seconds_per_grad", "s/grad ratio", ".3g")]))


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--widths", type=common.int_list, default=[64, 256, 1024],
                   help="widths run in every setting")
    p.add_argument("--reprior-widths", type=common.int_list, default=[],
                   help="extra widths run in the repriorised settings only (e.g. 4096,16384)")
    p.add_argument("--settings", type=lambda s: s.split(","), default=list(SETTINGS))
    p.add_argument("--reprior-settings", type=lambda s: s.split(","), default=["exact"],
                   help="settings run at --reprior-widths")
    p.add_argument("--n", type=int, default=128, help="training points")
    p.add_argument("--n-test", type=int, default=100, help="test points")
    common.add_nuts_options(p)
    p.add_argument("--name", default="mixing", help="results file name")
    p.add_argument("--resume", action="store_true",
                   help="keep the cells of benchmarks/results/<name>.json and run only the missing ones")
    args = p.parse_args(argv)
    if args.quick:
        args.widths, args.reprior_widths, args.n, args.n_test = [16], [], 24, 8
        args.num_chains, args.num_warmup, args.num_samples, args.max_tree_depth = 2, 15, 15, 5
        args.name += "_quick"
    bad = sorted(set(args.settings + args.reprior_settings) - set(SETTINGS))
    if bad:
        p.error(f"--settings: expected names among {list(SETTINGS)}, received {bad}")

    from reprior.experiments.data import load_dataset

    info = common.header()
    common.print_header(info, "mixing: NUTS ESS per gradient and per second, standard vs repriorised")
    data = load_dataset("digits", n_train=args.n, n_test=args.n_test, seed=args.seed, flatten=True)
    cells = [(w, s) for w in args.widths for s in args.settings]
    cells += [(w, s) for w in args.reprior_widths for s in args.reprior_settings]
    rows, earlier = [], []
    path = common.RESULTS_DIR / f"{args.name}.json"
    if args.resume and path.exists():
        previous = json.loads(path.read_text())
        rows = previous["rows"]
        earlier = previous.get("earlier_runs", []) + [{"header": previous["header"], "settings": previous["settings"]}]
        done = {(r["width"], r["setting"]) for r in rows}
        cells = [c for c in cells if c not in done]
        print(f"resuming {path}: {len(rows)} cells kept, {len(cells)} to run")
    result = {"benchmark": "mixing", "header": info,
              "settings": vars(args),
              "earlier_runs": earlier, "rows": rows, "complete": False}
    for width, setting in cells:
        row, _ = run_cell(width, setting, data, args)
        rows.append(row)
        print(f"width {width} {setting}: ESS/grad pred {row['ess_per_grad_pred']:.3g}, theta "
              f"{row['ess_per_grad_theta']:.3g}; grads/draw {row['steps_per_draw_mean']:.4g}; "
              f"sample {row['sample_seconds']:.4g} s, wall {row['wall_seconds']:.4g} s", flush=True)
        if not args.quick:  # partial results survive an interrupted run
            add_ratios(rows)
            common.write_json(args.name, result, None)
    add_ratios(rows)
    print_tables(rows)
    result.update(complete=True, process_peak_rss_bytes=common.process_peak_rss_bytes())
    common.write_json(args.name, result, args.json)
    return result


if __name__ == "__main__":
    main()
