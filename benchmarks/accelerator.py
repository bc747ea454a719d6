"""Accelerator check: gradient cost, NUTS mixing in float32 vs float64, and the samplers table.

Three parts, on one device:

* ``grad_cost``: time per gradient of the standard, repriorised and collapsed
  log densities, float32 and float64;
* ``nuts``: collapsed NUTS in both precisions (ESS from ``numpyro.diagnostics``),
  and the largest difference of their predictive means;
* ``samplers`` (``--samplers``): the table of the sampler comparison at wide
  widths in float32: NUTS, split HMC, pCN, pCNL and elliptical slice in both
  parameterisations, through ``reprior.sample``, with theta and ``rb`` ESS per
  gradient, per evaluation and per second (``reprior.evaluation.diagnostics.cell_metrics``)
  and the failed-chain verdict (``reprior.inference.health.chain_failure``).  Cells run
  repriorised first and narrowest first, until ``--budget-seconds`` is spent; the
  cells left are listed under ``skipped`` (censored, not measured).

Prints one JSON line per result and writes the whole as JSON: to ``--json``, or
with ``--samplers`` by default to ``docs/results/accelerator_<device>.json``.

    python benchmarks/accelerator.py --json results.json [--quick]
    python benchmarks/accelerator.py --samplers --budget-seconds 420      # a device's 8 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.diagnostics import effective_sample_size

import reprior
from reprior.experiments.data import load_dataset
from reprior.inference.driver import run_chains
from reprior.inference.kernels import get_kernel, make_kernel


def time_grad(fn, params, repeats=20):
    jax.block_until_ready(fn(params))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(params))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def grad_costs(data, width, dtype):
    bnn = reprior.BNN(reprior.MLP(width), 0.1)
    x, y = jnp.asarray(data.x_train, dtype), jnp.asarray(data.y_train, dtype)
    params = bnn.init(jax.random.key(0), x, y.shape[1])
    out = {}
    for name, fn in {
        "standard": lambda p: bnn.log_density(p, x, y, "standard"),
        "reprior_auto": lambda p: bnn.log_density(p, x, y, "reprior"),
        "reprior_primal": lambda p: bnn.log_density(p, x, y, "reprior", form="primal"),
        "collapsed": lambda p: bnn.collapsed_log_density(p["hidden"], x, y),
    }.items():
        if name == "reprior_primal" and width > 4096:
            continue
        out[name] = time_grad(jax.jit(jax.value_and_grad(fn)), params)
    return out


def collapsed_nuts(data, width, dtype, num_warmup, num_samples):
    bnn = reprior.BNN(reprior.MLP(width), 0.1)
    x, y = jnp.asarray(data.x_train, dtype), jnp.asarray(data.y_train, dtype)
    x_test = jnp.asarray(data.x_test, dtype)
    init = {"hidden": bnn.init(jax.random.key(1), x, y.shape[1])["hidden"]}
    init = jax.tree_util.tree_map(lambda a: a[None], init)
    kernel = make_kernel("nuts", lambda z: -bnn.collapsed_log_density(z["hidden"], x, y))

    def collect(consts, key, z):
        mean, _ = bnn.predictive({"hidden": z["hidden"], "readout": None}, x, y, x_test)
        return {"mean": mean}

    run = run_chains(kernel, get_kernel("nuts").stats_fn, collect, init, rng_key=jax.random.key(2),
                     num_warmup=num_warmup, num_samples=num_samples, num_chains=1)
    means = run.draws["mean"].reshape(1, num_samples, -1)
    ess = effective_sample_size(np.asarray(means, np.float64))
    grads = float(np.sum(run.stats["num_grad_evals"]))
    return {
        "accept_mean": float(np.mean(run.stats["accept_prob"])),
        "divergences": int(np.sum(run.stats["diverging"])),
        "steps_per_draw": grads / num_samples,
        "ess_median_pred_points": float(np.median(ess)),
        "ess_per_grad": float(np.median(ess)) / grads,
        "sample_seconds": run.timings["sample_seconds"],
        "compile_seconds": run.timings["compile_seconds"],
        "pred_mean": np.asarray(means.mean(axis=1)[0], np.float64).tolist(),
    }


#: The samplers of the table and their settings: NUTS capped as in the CPU presets; the
#: gradient-light kernels thinned so that a recorded draw is a few iterations.
SAMPLERS = {"nuts": ({"max_tree_depth": 6}, 1), "split_hmc": ({}, 1), "pcn": ({}, 10), "pcnl": ({}, 5),
            "elliptical_slice": ({}, 5)}
TABLE_METRICS = ("ess_per_grad_theta", "ess_per_eval_theta", "ess_per_second_theta", "ess_per_eval_rb",
                 "ess_per_second_rb", "rhat_max", "accept_mean", "grad_evals", "logdensity_evals",
                 "sample_seconds", "compile_seconds")


def sampler_table(data, widths, *, num_warmup, num_samples, num_chains, budget_seconds, dtype="float32"):
    """``(rows, skipped)``: one row per (width, parameterisation, sampler) run before the budget ran out."""
    from reprior.evaluation.diagnostics import cell_metrics
    from reprior.inference.health import chain_failure

    rows, skipped, start = [], [], time.perf_counter()
    for width in widths:
        bnn = reprior.BNN(reprior.MLP(width), 0.1)
        for parameterisation in ("reprior", "standard"):
            for sampler, (options, thinning) in SAMPLERS.items():
                cell = {"dtype": dtype, "width": width, "parameterisation": parameterisation, "sampler": sampler,
                        "thinning": thinning, "sampler_options": options}
                if time.perf_counter() - start > budget_seconds:
                    skipped.append(cell)
                    continue
                began = time.perf_counter()
                idata = reprior.sample(bnn, data.x_train, data.y_train, x_test=data.x_test,
                                       parameterisation=parameterisation, sampler=sampler, sampler_options=options,
                                       num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                                       thinning=thinning, keep="none", dtype=dtype, seed=0, progress_bar=False)
                metrics = cell_metrics(idata)
                row = {**cell, **{k: float(metrics[k]) for k in TABLE_METRICS},
                       "failure": chain_failure(metrics), "wall_seconds": time.perf_counter() - began}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows, skipped


def device_slug(device) -> str:
    """``nvidia_h100_80gb_hbm3`` from a device's kind (its platform when it has none)."""
    kind = str(getattr(device, "device_kind", "") or device.platform).lower()
    return "".join(c if c.isalnum() else "_" for c in kind).strip("_") or "device"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a seconds-long run on any machine (tests)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--samplers", action="store_true", help="the samplers table only (see the docstring)")
    parser.add_argument("--widths", type=int, nargs="+", default=None,
                        help="widths of the samplers table (default 4096 16384 65536; --quick: 32)")
    parser.add_argument("--budget-seconds", type=float, default=None,
                        help="the samplers table stops starting cells after this long (default 420; --quick: none)")
    args = parser.parse_args(argv)
    if args.samplers:
        return samplers_main(args)
    widths = [64, 128] if args.quick else [1024, 4096, 16384]
    draws = 20 if args.quick else 300
    data = load_dataset("digits", flatten=True, n_train=128, n_test=32, seed=0)
    header = {
        "command": " ".join(sys.argv), "machine": platform.platform(), "device": str(jax.devices()[0]),
        "jax": jax.__version__, "env": {k: os.environ.get(k, "") for k in ("XLA_FLAGS", "OMP_NUM_THREADS")},
    }
    print(json.dumps(header))
    results = {"header": header, "grad_cost": [], "nuts": []}
    for dtype in ("float32", "float64"):
        with jax.enable_x64(dtype == "float64"):
            for width in widths:
                row = {"dtype": dtype, "width": width, **grad_costs(data, width, dtype)}
                print(json.dumps(row), flush=True)
                results["grad_cost"].append(row)
            row = {"dtype": dtype, "width": widths[-2], **collapsed_nuts(data, widths[-2], dtype, draws, draws)}
            print(json.dumps({k: v for k, v in row.items() if k != "pred_mean"}), flush=True)
            results["nuts"].append(row)
    a, b = (np.asarray(r["pred_mean"]) for r in results["nuts"])
    results["pred_mean_max_abs_diff_f32_f64"] = float(np.max(np.abs(a - b)))
    print("max |E f32 - E f64| of predictive mean:", results["pred_mean_max_abs_diff_f32_f64"])
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


def samplers_main(args):
    """``--samplers``: the table at ``--widths`` in float32, written to ``--json`` or docs/results."""
    widths = args.widths or ([32] if args.quick else [4096, 16384, 65536])
    if args.budget_seconds is None:
        args.budget_seconds = float("inf") if args.quick else 420.0
    draws = 20 if args.quick else 200
    data = load_dataset("digits", flatten=True, n_train=128, n_test=32, seed=0)
    device = jax.devices()[0]
    header = {
        "command": " ".join(sys.argv), "machine": platform.platform(), "device": str(device),
        "device_kind": str(getattr(device, "device_kind", "")), "jax": jax.__version__,
        "env": {k: os.environ.get(k, "") for k in ("XLA_FLAGS", "OMP_NUM_THREADS", "XLA_PYTHON_CLIENT_PREALLOCATE")},
        "widths": widths, "num_warmup": draws, "num_samples": draws, "num_chains": 2,
        "budget_seconds": args.budget_seconds, "n_train": 128, "n_test": 32,
    }
    print(json.dumps(header), flush=True)
    start = time.perf_counter()
    rows, skipped = sampler_table(data, widths, num_warmup=draws, num_samples=draws, num_chains=2,
                                  budget_seconds=args.budget_seconds)
    results = {"header": header, "samplers": rows, "skipped": skipped, "wall_seconds": time.perf_counter() - start}
    path = args.json or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "results",
                                     f"accelerator_{device_slug(device)}.json")
    with open(path, "w") as fh:
        json.dump(results, fh, indent=1)
    print(f"{len(rows)} cells measured, {len(skipped)} skipped (budget); written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
