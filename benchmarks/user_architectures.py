"""User-defined architectures, standard vs repriorised: NUTS ESS per gradient of a plain JAX CNN and a Flax NNX CNN.

The two architectures are the runnable examples of docs/your_model.md, imported
from their files: ``make_arch`` of ``docs/examples/cnn.py`` (a
``reprior.FeatureArchitecture`` in plain JAX) and of
``docs/examples/flax_cnn.py`` (an ``nnx.Module`` through ``reprior.from_flax``,
``scales="fan_in"``): one 3x3 convolution of ``width`` channels, ReLU, global
average pooling, the readout added by reprior.  Each (architecture, width,
parameterisation) cell is one ``reprior.sample`` run on digits images
(``(n, 8, 8, 1)``, 10 outputs), NUTS (reprior's default kernel, same options in
every cell), float64; ``reprior`` is the repriorised density with the readout
drawn exactly (``readout="exact"``, reprior's default).

Metrics are ``reprior.evaluation.diagnostics.cell_metrics``: median bulk ESS of the 10
random projections of the weights in standard coordinates (``theta``) and of
the test predictions (``pred``), per sampling-phase gradient evaluation.  The
ratio reprior/standard is reported per architecture and width only where both
cells' chains agree (``rhat_max`` <= 1.1, over every group); otherwise the
ratio is ``null`` and ``ratio_status`` says which cell failed (a failed cell's
ESS is not a result).  One core, one thread, as measured for docs/your_model.md:

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false OPENBLAS_NUM_THREADS=1 taskset -c 1 \\
        python benchmarks/user_architectures.py --out docs/results/user_architectures_cpu.json
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURES = {"cnn": ROOT / "docs" / "examples" / "cnn.py", "flax_cnn": ROOT / "docs" / "examples" / "flax_cnn.py"}
PARAMETERISATIONS = ("standard", "reprior")
RHAT_LIMIT = 1.1
#: ``--quick``: one cell per architecture and per parameterisation (each cell compiles its own NUTS programs,
#: ~20 s of one core); the ratios' logic is tested apart (tests/test_benchmarks.py).
QUICK_CELLS = (("cnn", "standard"), ("flax_cnn", "reprior"))
#: The figures of ``cell_metrics`` kept in each row.
KEPT = ("ess_per_grad_theta", "ess_per_grad_pred", "ess_bulk_theta_median", "ess_bulk_pred_median",
        "ess_per_second_theta", "ess_per_second_pred", "rhat_theta_max", "rhat_pred_max", "rhat_max",
        "accept_mean", "divergences", "grad_evals", "grad_evals_total", "steps_per_draw", "num_draws",
        "sample_seconds", "warmup_seconds", "compile_seconds")


def load_make_arch(name: str):
    """``make_arch`` of the example file of ``name``, imported by path."""
    path = ARCHITECTURES[name]
    spec = importlib.util.spec_from_file_location(f"reprior_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_arch


def _number(value):
    value = common._plain(value)
    return None if isinstance(value, float) and math.isnan(value) else value


def run_cell(arch_name: str, make_arch, width: int, parameterisation: str, data, args) -> dict:
    """One ``reprior.sample`` run and its metrics."""
    import reprior
    from reprior.evaluation.diagnostics import cell_metrics

    bnn = reprior.BNN(make_arch(width), args.noise_std)
    start = time.perf_counter()
    idata = reprior.sample(
        bnn, data.x_train, data.y_train, x_test=data.x_test, parameterisation=parameterisation,
        num_warmup=args.num_warmup, num_samples=args.num_samples, num_chains=args.num_chains, seed=args.seed,
        progress_bar=False, dtype="float64", keep="none", num_projections=10,
        sampler_options={"max_tree_depth": args.max_tree_depth})
    wall = time.perf_counter() - start
    metrics = cell_metrics(idata)
    attrs = common.run_attrs(idata)
    row = {"arch": arch_name, "arch_repr": attrs.get("arch_repr"), "width": width,
           "parameterisation": parameterisation, "num_params": _number(attrs.get("num_params")),
           "wall_seconds": wall, **{k: _number(metrics[k]) for k in KEPT},
           "load_average_after": list(os.getloadavg())}
    rhat = row["rhat_max"]
    row["failed"] = rhat is None or rhat > RHAT_LIMIT
    return row


def ratios(rows: list[dict]) -> list[dict]:
    """reprior/standard per architecture and width; no ratio where either cell's chains failed."""
    out = []
    by_key = {(r["arch"], r["width"], r["parameterisation"]): r for r in rows}
    for arch, width in dict.fromkeys((r["arch"], r["width"]) for r in rows):
        std, rep = by_key.get((arch, width, "standard")), by_key.get((arch, width, "reprior"))
        if std is None or rep is None:
            continue
        failed = [f"{p} (R-hat {c['rhat_max']:.3g} > {RHAT_LIMIT})" if c["rhat_max"] is not None
                  else f"{p} (R-hat not available)" for p, c in (("standard", std), ("reprior", rep)) if c["failed"]]
        entry = {"arch": arch, "width": width, "rhat_max_standard": std["rhat_max"],
                 "rhat_max_reprior": rep["rhat_max"],
                 "ratio_status": "ok" if not failed else "not a result: failed chains in " + ", ".join(failed)}
        for g in ("theta", "pred"):
            entry[f"ratio_ess_per_grad_{g}"] = (None if failed else
                                                common.ratio(rep[f"ess_per_grad_{g}"], std[f"ess_per_grad_{g}"]))
        out.append(entry)
    return out


def print_tables(rows: list[dict], ratio_rows: list[dict]) -> None:
    cols = [("arch", "arch", ""), ("width", "width", ""), ("parameterisation", "parameterisation", "")]
    print("\n## cells (median bulk ESS over 10 projections, per sampling gradient)\n")
    print(common.table(rows, cols + [
        ("num_params", "params", ""), ("ess_per_grad_theta", "ESS/grad theta", ".3g"),
        ("ess_per_grad_pred", "ESS/grad pred", ".3g"), ("rhat_max", "max R-hat", ".3f"), ("failed", "failed", ""),
        ("accept_mean", "accept", ".2f"), ("divergences", "div", ""), ("steps_per_draw", "grads/draw", ".4g"),
        ("sample_seconds", "sample s", ".4g"), ("wall_seconds", "wall s", ".4g")]))
    print("\n## ratio reprior / standard (ESS per gradient)\n")
    print(common.table(ratio_rows, cols[:2] + [
        ("ratio_ess_per_grad_theta", "theta", ".3g"), ("ratio_ess_per_grad_pred", "pred", ".3g"),
        ("rhat_max_standard", "R-hat std", ".3f"), ("rhat_max_reprior", "R-hat reprior", ".3f"),
        ("ratio_status", "status", "")]))


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--out", dest="json", type=Path, default=None, help="the same as --json")
    p.add_argument("--widths", type=common.int_list, default=[16, 64, 256], help="comma-separated channel counts")
    p.add_argument("--archs", type=lambda s: s.split(","), default=list(ARCHITECTURES),
                   help=f"comma-separated, among {list(ARCHITECTURES)}")
    p.add_argument("--n-train", type=int, default=64, help="training digits")
    p.add_argument("--n-test", type=int, default=16, help="test digits (x_test of reprior.sample)")
    p.add_argument("--num-chains", type=int, default=2)
    p.add_argument("--num-warmup", type=int, default=300)
    p.add_argument("--num-samples", type=int, default=300)
    p.add_argument("--max-tree-depth", type=int, default=8)
    p.add_argument("--name", default="user_architectures", help="results file name")
    args = p.parse_args(argv)
    if args.quick:
        args.widths, args.n_train, args.n_test = [4], 16, 4
        args.num_chains, args.num_warmup, args.num_samples, args.max_tree_depth = 2, 10, 10, 4
        args.name += "_quick"
    bad = sorted(set(args.archs) - set(ARCHITECTURES))
    if bad:
        p.error(f"--archs: expected names among {list(ARCHITECTURES)}, received {bad}")

    import warnings

    import jax

    import reprior

    info = common.header()
    try:
        import flax
        info["versions"]["flax"] = flax.__version__
    except ImportError:
        info["versions"]["flax"] = None
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    common.print_header(info, "user architectures: NUTS ESS per gradient, standard vs repriorised")
    print(f"cpu affinity: {affinity}\n", flush=True)
    data = reprior.experiments.data.load_dataset("digits", n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    result = {"benchmark": "user_architectures", "header": info, "cpu_affinity": affinity, "settings": vars(args),
              "data": {"dataset": "digits", "x_train_shape": list(data.x_train.shape),
                       "y_train_shape": list(data.y_train.shape), "x_test_shape": list(data.x_test.shape)},
              "rhat_limit": RHAT_LIMIT, "rows": [], "ratios": [], "complete": False}
    rows = result["rows"]
    start = time.perf_counter()
    with jax.enable_x64(True), warnings.catch_warnings():
        if args.quick:  # ten draws: the R-hat/ESS warnings say nothing here
            warnings.simplefilter("ignore")
        for arch_name in args.archs:
            make_arch = load_make_arch(arch_name)
            for width in args.widths:
                for parameterisation in PARAMETERISATIONS:
                    if args.quick and (arch_name, parameterisation) not in QUICK_CELLS:
                        continue
                    row = run_cell(arch_name, make_arch, width, parameterisation, data, args)
                    rows.append(row)
                    print(f"{arch_name} width {width} {parameterisation}: ESS/grad theta "
                          f"{common.fmt(row['ess_per_grad_theta'])}, pred {common.fmt(row['ess_per_grad_pred'])}; "
                          f"max R-hat {common.fmt(row['rhat_max'])}{' (FAILED)' if row['failed'] else ''}; "
                          f"grads/draw {common.fmt(row['steps_per_draw'], '.4g')}; "
                          f"sample {row['sample_seconds']:.4g} s, wall {row['wall_seconds']:.4g} s, "
                          f"load {row['load_average_after'][0]:.2f}", flush=True)
                    if not args.quick:  # partial results survive an interrupted run
                        result["ratios"] = ratios(rows)
                        common.write_json(args.name, result, None)
    result["ratios"] = ratios(rows)
    result.update(complete=True, total_wall_seconds=time.perf_counter() - start,
                  load_average_at_end=list(os.getloadavg()), process_peak_rss_bytes=common.process_peak_rss_bytes())
    print_tables(rows, result["ratios"])
    print(f"\ntotal wall {result['total_wall_seconds']:.4g} s; load average at start "
          f"{info['load_average_at_start']}, at end {result['load_average_at_end']}\n")
    common.write_json(args.name, result, args.json)
    print(json.dumps(result, indent=1, default=common._plain))
    return result


if __name__ == "__main__":
    main()
