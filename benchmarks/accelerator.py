"""Accelerator check: gradient cost and NUTS mixing in float32 vs float64 on one device.

Runs without ArviZ (ESS from ``numpyro.diagnostics``) so that it needs only
JAX and NumPyro on the accelerator machine.  Prints a table and writes JSON.

    python benchmarks/accelerator.py --json results.json [--quick]
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
from reprior.data import load_dataset
from reprior.driver import run_chains
from reprior.kernels import get_kernel, make_kernel


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
