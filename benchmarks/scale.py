"""Scale: wall-clock time for 1000 repriorised draws of a very wide network.

Issue 4's scale target: a depth-1 MLP of width 16384 on sklearn digits
(``n = 128`` training points, 10 outputs), sampled in repriorised coordinates
with the readout drawn exactly, yields 1000 draws in under 30 minutes on 2 CPU
cores.  The paper's p x p form would need minutes per gradient at this width
(``grad_cost.py`` measures it).

Each ``--sampler`` is one ``reprior.sample`` run of ``--num-draws`` draws in
total (over ``--num-chains`` chains, ``--thinning`` iterations per draw) after
``--num-warmup`` warm-up iterations per chain.  Reported per run: wall-clock
seconds of the whole call (compilation, warm-up and sampling, as a user waits
for them) and of each phase, the gradient and density evaluations, ESS of the
test-prediction and theta projections (``reprior.evaluation.diagnostics.cell_metrics``),
and whether the wall time is within ``--target-minutes``.  When a run has fewer
draws than ``--target-draws`` (to keep an expensive sampler short), the time for
``--target-draws`` is *projected* as compile + warm-up + sampling seconds scaled
by draws, and the row says so (``projected: true``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def run(sampler: str, args, data) -> dict:
    """One ``reprior.sample`` run; its timings, costs and ESS."""
    import reprior
    from reprior.evaluation.diagnostics import cell_metrics

    bnn = reprior.BNN(reprior.MLP(width=args.width), args.noise_std)
    per_chain = -(-args.num_draws // args.num_chains)
    start = time.perf_counter()
    idata = reprior.sample(bnn, data.x_train, data.y_train, x_test=data.x_test, parameterisation="reprior",
                           readout="exact", sampler=sampler, num_warmup=args.num_warmup, num_samples=per_chain,
                           num_chains=args.num_chains, thinning=args.thinning, seed=args.seed, keep="none",
                           dtype=args.dtype, progress_bar=False)
    wall = time.perf_counter() - start
    m = cell_metrics(idata)
    attrs = common.run_attrs(idata)
    draws = int(m["num_draws"])
    fixed = float(attrs["compile_seconds"]) + float(attrs["warmup_seconds"])
    projected = draws < args.target_draws
    target_wall = fixed + float(attrs["sample_seconds"]) * args.target_draws / draws if projected else wall
    return {
        "sampler": sampler, "width": args.width, "n": args.n, "dtype": attrs["dtype"], "num_chains": args.num_chains,
        "num_warmup": args.num_warmup, "thinning": args.thinning, "num_draws": draws,
        "num_params_sampled": int(attrs["num_params"]), "wall_seconds": wall,
        "compile_seconds": float(attrs["compile_seconds"]), "warmup_seconds": float(attrs["warmup_seconds"]),
        "sample_seconds": float(attrs["sample_seconds"]), "grad_evals_sampling": int(attrs["grad_evals_sampling"]),
        "logdensity_evals_sampling": int(attrs["logdensity_evals_sampling"]),
        "seconds_per_eval": float(attrs["sample_seconds"]) / max(1, int(attrs["logdensity_evals_sampling"])),
        "accept_mean": m["accept_mean"], "divergences": m["divergences"], "rhat_max": m["rhat_max"],
        "ess_bulk_pred_median": m["ess_bulk_pred_median"], "ess_bulk_theta_median": m["ess_bulk_theta_median"],
        "ess_per_eval_pred": m["ess_per_eval_pred"], "ess_per_second_pred": m["ess_per_second_pred"],
        "ess_per_eval_theta": m["ess_per_eval_theta"], "num_traces": int(attrs["num_traces"]),
        "projected": projected, "target_draws": args.target_draws,
        "minutes_for_target_draws": target_wall / 60, "within_target": target_wall / 60 <= args.target_minutes,
        "blas_threads": attrs.get("blas_threads"),
    }


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=16384)
    p.add_argument("--n", type=int, default=128, help="training points")
    p.add_argument("--n-test", type=int, default=100, help="test points")
    p.add_argument("--sampler", type=lambda s: s.split(","), default=["underdamped_hmc"],
                   help="comma-separated samplers, each one run")
    p.add_argument("--num-draws", type=int, default=1000, help="recorded draws in total, over all chains")
    p.add_argument("--num-chains", type=int, default=2)
    p.add_argument("--num-warmup", type=int, default=1000, help="warm-up iterations per chain")
    p.add_argument("--thinning", type=int, default=10, help="iterations per recorded draw")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--target-draws", type=int, default=1000)
    p.add_argument("--target-minutes", type=float, default=30.0)
    p.add_argument("--name", default="scale", help="results file name")
    args = p.parse_args(argv)
    if args.quick:
        args.width, args.n, args.n_test, args.num_draws, args.num_warmup = 32, 16, 8, 20, 20
        args.thinning, args.target_draws, args.name = 2, 40, "scale_quick"
    info = common.header()
    common.print_header(info, "scale: repriorised sampling of a very wide network")

    from reprior.experiments.data import load_dataset

    data = load_dataset("digits", n_train=args.n, n_test=args.n_test, seed=args.seed, flatten=True)
    rows = []
    for sampler in args.sampler:
        rows.append(run(sampler, args, data))
        print(f"{sampler}: {rows[-1]['wall_seconds']:.1f} s", flush=True)
    print("\n## runs\n")
    print(common.table(rows, [
        ("sampler", "sampler", ""), ("width", "width", ""), ("dtype", "dtype", ""), ("num_draws", "draws", ""),
        ("thinning", "thin", ""), ("compile_seconds", "compile s", ".3g"), ("warmup_seconds", "warm-up s", ".4g"),
        ("sample_seconds", "sample s", ".4g"), ("wall_seconds", "wall s", ".4g"),
        ("seconds_per_eval", "s/eval", ".3g"), ("accept_mean", "accept", ".2f"),
        ("ess_bulk_pred_median", "ESS pred", ".4g"), ("ess_bulk_theta_median", "ESS theta", ".4g"),
        ("rhat_max", "R-hat max", ".3f"), ("minutes_for_target_draws", f"min / {args.target_draws} draws", ".3g"),
        ("projected", "projected", ""), ("within_target", f"<= {args.target_minutes:g} min", "")]))
    common.write_json(args.name, {"benchmark": "scale", "header": info, "settings": vars(args), "rows": rows},
                      args.json)


if __name__ == "__main__":
    main()
