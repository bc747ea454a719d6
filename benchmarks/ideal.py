"""The physical reference for mixing: NUTS on an exact N(0, I) target of each width's dimension.

In repriorised coordinates the posterior tends to the prior N(0, I) as width
grows, so NUTS on N(0, I_d) itself, with ``d`` the dimension of the sampled
variables, is the best the repriorised sampler can hope for:

``hidden``  ``d`` = number of hidden weights (what ``readout="exact"`` samples);
``joint``   ``d`` = all weights (what ``standard`` and ``readout="sampled"`` sample).

The sampler is the one ``reprior.sample`` uses (NumPyro NUTS built by
``reprior.inference.kernels.make_kernel``, driven by ``reprior.inference.driver.run_chains``: same
warm-up, adaptation and tree depth), started from exact N(0, I) draws.  ESS is
ArviZ's median bulk ESS over 10 fixed random unit projections (as for
``theta_proj`` in ``mixing``), and of the log density, per gradient evaluation
during sampling.

With ``--mixing-json`` (default ``benchmarks/results/mixing.json`` if it
exists), or ``--runs-csv`` (the ``summary.csv`` of a ``reprior sweep``, its
NUTS cells), the table adds, for every cell of that run, the ratio of its ESS
per gradient (test-prediction, theta and phi projections) to the ideal one of
the matching dimension.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

KINDS = ("hidden", "joint")


def dimensions(width: int, depth: int = 1, in_dim: int = 64, out_dim: int = 10) -> dict:
    """``{"hidden": d_hidden, "joint": d_all}`` of a ``reprior.MLP`` on ``(n, in_dim)`` inputs."""
    import jax

    import reprior

    shapes = reprior.BNN(reprior.MLP(width=width, depth=depth), 1.0).param_shapes((1, in_dim), out_dim)
    hidden = sum(int(s.size) for s in jax.tree_util.tree_leaves(shapes["hidden"]))
    total = sum(int(s.size) for s in jax.tree_util.tree_leaves(shapes))
    return {"hidden": hidden, "joint": total}


def run_ideal(dim: int, args, *, num_projections: int = 10) -> dict:
    """NUTS on N(0, I_dim); ESS of projections and of the log density."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from reprior.inference.driver import run_chains
    from reprior.inference.kernels import get_kernel, make_kernel
    from reprior.core.projections import projection_matrix

    with jax.enable_x64(True):
        def potential_fn(z):
            return 0.5 * jnp.sum(z**2)

        kernel = make_kernel("nuts", potential_fn, {"target_accept_prob": args.target_accept,
                                                    "max_tree_depth": args.max_tree_depth})

        def collect_fn(consts, key, z):
            return {"proj": z @ consts["projections"], "lp": -0.5 * jnp.sum(z**2)}

        init_key, run_key = jax.random.split(jax.random.key(args.seed))
        init = jax.random.normal(init_key, (args.num_chains, dim), jnp.float64)
        consts = {"projections": jnp.asarray(projection_matrix(dim, num_projections, args.seed))}
        start = time.perf_counter()
        run = run_chains(kernel, get_kernel("nuts").stats_fn, collect_fn, init, rng_key=run_key, consts=consts,
                         num_warmup=args.num_warmup, num_samples=args.num_samples, num_chains=args.num_chains,
                         chain_method="sequential")
        wall = time.perf_counter() - start
    grads = int(np.sum(run.stats["num_grad_evals"]))
    proj = np.asarray(run.draws["proj"])
    bulk, tail = common._ess_columns(proj)
    lp_bulk, _ = common._ess_columns(np.asarray(run.draws["lp"])[..., None])
    return {
        "dim": dim, "grad_evals_sampling": grads, "wall_seconds": wall,
        "num_draws": int(proj.shape[0] * proj.shape[1]),
        "ess_bulk_proj_median": float(np.median(bulk)), "ess_tail_proj_median": float(np.median(tail)),
        "ess_per_grad_proj": float(np.median(bulk)) / grads, "ess_bulk_lp": float(lp_bulk[0]),
        "ess_per_grad_lp": float(lp_bulk[0]) / grads,
        "steps_per_draw_mean": float(np.mean(run.stats["num_steps"])),
        "accept_prob_mean": float(np.mean(run.stats["accept_prob"])),
        "step_size_mean": float(np.mean(run.stats["step_size"])),
        "proj_mean_abs_max": float(np.max(np.abs(proj.mean(axis=(0, 1))))),
        "proj_var_median": float(np.median(proj.var(axis=(0, 1)))),
    }


def compare(mixing: dict, ideal_rows: list[dict]) -> list[dict]:
    """Ratio of each mixing cell's ESS per gradient to the ideal reference of its dimension."""
    ideal = {(r["width"], r["kind"]): r for r in ideal_rows}
    rows = []
    for cell in mixing["rows"]:
        kind = "hidden" if cell["setting"] == "exact" else "joint"
        ref = ideal.get((cell["width"], kind))
        if ref is None:
            continue
        rows.append({
            "width": cell["width"], "setting": cell["setting"], "kind": kind, "dim": ref["dim"],
            "ess_per_grad_pred": cell.get("ess_per_grad_pred"), "ess_per_grad_theta": cell.get("ess_per_grad_theta"),
            "ideal_ess_per_grad": ref["ess_per_grad_proj"],
            "ratio_to_ideal_pred": common.ratio(cell.get("ess_per_grad_pred"), ref["ess_per_grad_proj"]),
            "ratio_to_ideal_theta": common.ratio(cell.get("ess_per_grad_theta"), ref["ess_per_grad_proj"]),
            "ess_per_grad_phi": cell.get("ess_per_grad_phi"),
            "ratio_to_ideal_phi": common.ratio(cell.get("ess_per_grad_phi"), ref["ess_per_grad_proj"]),
            "steps_per_draw": cell.get("steps_per_draw_mean"), "ideal_steps_per_draw": ref["steps_per_draw_mean"],
        })
    return rows


#: ``reprior sweep`` parameterisations as ``mixing.py`` settings.
RUNNER_SETTINGS = {"standard": "standard", "reprior": "exact", "reprior-sampled": "sampled"}


def mixing_from_runs(summary_csv: Path) -> dict:
    """The NUTS cells of a ``reprior sweep`` (its ``summary.csv``) in ``mixing.json``'s row format."""
    from reprior.experiments.report import read_summary_csv

    rows = []
    for cell in read_summary_csv(summary_csv):
        if cell.get("sampler") != "nuts" or cell.get("parameterisation") not in RUNNER_SETTINGS:
            continue
        rows.append({"width": cell["width"], "setting": RUNNER_SETTINGS[cell["parameterisation"]],
                     **{f"ess_per_grad_{g}": cell.get(f"ess_per_grad_{g}") for g in ("pred", "theta", "phi")},
                     "steps_per_draw_mean": cell.get("steps_per_draw")})
    return {"rows": rows}


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--widths", type=common.int_list, default=[64, 256, 1024, 4096, 16384])
    p.add_argument("--kinds", type=lambda s: s.split(","), default=list(KINDS))
    p.add_argument("--num-chains", type=int, default=2)
    p.add_argument("--num-warmup", type=int, default=200)
    p.add_argument("--num-samples", type=int, default=200)
    p.add_argument("--target-accept", type=float, default=0.8)
    p.add_argument("--max-tree-depth", type=int, default=10)
    p.add_argument("--mixing-json", type=Path, default=None,
                   help="mixing results to compare with (default: benchmarks/results/mixing.json if present)")
    p.add_argument("--runs-csv", type=Path, default=None,
                   help="compare with the NUTS cells of a `reprior sweep` instead (its summary.csv)")
    p.add_argument("--rows-from", type=Path, default=None,
                   help="reuse the N(0, I) runs of this earlier ideal JSON (only redo the comparison)")
    p.add_argument("--name", default="ideal", help="results file name")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs of benchmarks/results/<name>.json and run only the missing ones")
    args = p.parse_args(argv)
    if args.quick:
        args.widths, args.num_chains, args.num_warmup, args.num_samples, args.max_tree_depth = [16], 2, 15, 15, 5
        args.name += "_quick"
    if sorted(set(args.kinds) - set(KINDS)):
        p.error(f"--kinds: expected names among {KINDS}, received {args.kinds}")
    mixing_path = args.mixing_json
    if mixing_path is None and not args.quick and (common.RESULTS_DIR / "mixing.json").exists():
        mixing_path = common.RESULTS_DIR / "mixing.json"

    info = common.header()
    common.print_header(info, "ideal: NUTS on an exact N(0, I) target of each width's dimension")
    rows = [] if args.rows_from is None else json.loads(Path(args.rows_from).read_text())["rows"]
    path = common.RESULTS_DIR / f"{args.name}.json"
    if args.resume and args.rows_from is None and path.exists():
        rows = json.loads(path.read_text())["rows"]
    done = {(r["width"], r["kind"]) for r in rows}
    for width in args.widths if args.rows_from is None else []:
        dims = dimensions(width)
        for kind in [k for k in args.kinds if (width, k) not in done]:
            row = {"width": width, "kind": kind, **run_ideal(dims[kind], args)}
            rows.append(row)
            print(f"width {width} {kind} (d = {row['dim']}): ESS/grad {row['ess_per_grad_proj']:.3g}, "
                  f"grads/draw {row['steps_per_draw_mean']:.4g}, wall {row['wall_seconds']:.3g} s", flush=True)
            if not args.quick:  # partial results survive an interrupted run
                common.write_json(args.name, {"benchmark": "ideal", "header": info, "rows": rows,
                                              "complete": False}, None)
    print("\n## NUTS on N(0, I_d)\n")
    print(common.table(rows, [
        ("width", "width", ""), ("kind", "kind", ""), ("dim", "d", ""), ("accept_prob_mean", "accept", ".2f"),
        ("step_size_mean", "step size", ".3g"), ("steps_per_draw_mean", "grads/draw", ".4g"),
        ("ess_bulk_proj_median", "ESS proj", ".4g"), ("ess_per_grad_proj", "ESS/grad proj", ".3g"),
        ("ess_per_grad_lp", "ESS/grad log density", ".3g"), ("proj_var_median", "var(proj)", ".3f")]))
    comparison = []
    if args.runs_csv is not None:
        mixing_path = args.runs_csv
    if mixing_path is not None:
        mixing = (mixing_from_runs(mixing_path) if args.runs_csv is not None
                  else json.loads(Path(mixing_path).read_text()))
        comparison = compare(mixing, rows)
        print(f"\n## ratio to ideal ({mixing_path})\n")
        print(common.table(comparison, [
            ("width", "width", ""), ("setting", "setting", ""), ("dim", "d", ""),
            ("ess_per_grad_pred", "ESS/grad pred", ".3g"), ("ess_per_grad_theta", "ESS/grad theta", ".3g"),
            ("ideal_ess_per_grad", "ideal ESS/grad", ".3g"), ("ratio_to_ideal_pred", "pred / ideal", ".3g"),
            ("ratio_to_ideal_theta", "theta / ideal", ".3g"), ("ratio_to_ideal_phi", "phi / ideal", ".3g"),
            ("steps_per_draw", "grads/draw", ".4g"),
            ("ideal_steps_per_draw", "ideal grads/draw", ".4g")]))
    result = {"benchmark": "ideal", "header": info,
              "settings": vars(args),
              "mixing_json": None if mixing_path is None else str(mixing_path),
              "rows": rows, "comparison": comparison, "process_peak_rss_bytes": common.process_peak_rss_bytes()}
    common.write_json(args.name, result, args.json)
    return result


if __name__ == "__main__":
    main()
