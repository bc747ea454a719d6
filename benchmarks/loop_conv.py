"""A ResNet gradient inside a loop body: XLA's convolution against reprior's im2col convolution.

Every MCMC kernel evaluates the log density inside a loop (``lax.scan`` in the
driver, NUTS's ``while_loop``).  This script times ``value_and_grad`` of the
repriorised log likelihood of a wide ResNet (digits 8x8, depth 8) four ways,
for each of two convolution implementations:

* ``xla``: ``lax.conv_general_dilated`` (NHWC/HWIO), what ``reprior`` used before;
* ``im2col``: ``reprior.core.architectures.layers.conv``, one matrix product of the
  ``kh * kw`` shifted inputs (the same numbers: the log likelihood and its
  gradient under both are compared, ``loglik_rel_diff`` and ``grad_rel_diff``);

and for each: one call outside any loop (``direct``), ``--steps`` calls in a
``lax.scan`` (``scan``), the same scan fully unrolled (``unrolled``), and
``--steps`` pCNL transitions in a scan (``pcnl_scan``, the sampler's real inner
loop).  Times are per iteration, medians of interleaved rounds.  The JSON records
the thread settings (``header.env``: ``XLA_FLAGS``, ``OPENBLAS_NUM_THREADS``, ...)
and the cores the process may run on (``cpu_affinity``).  One core, one thread:

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
        taskset -c 1 python benchmarks/loop_conv.py --json docs/results/loop_conv_cpu.json
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def xla_conv(layer, x, w_std: float, b_std: float, stride: int = 1):
    """'SAME' convolution by ``lax.conv_general_dilated``, NTK scaled: the reference implementation."""
    import jax

    kh, kw, c_in, _ = layer["W"].shape
    z = jax.lax.conv_general_dilated(x, layer["W"], window_strides=(stride, stride), padding="SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return z * (w_std / math.sqrt(kh * kw * c_in)) + b_std * layer["b"]


@contextlib.contextmanager
def convolution(name: str):
    """Run the ResNet with the named convolution (the module-level name the ResNet calls)."""
    from reprior.core.architectures import layers, resnet

    saved = resnet.conv
    resnet.conv = {"xla": xla_conv, "im2col": layers.conv}[name]
    try:
        yield
    finally:
        resnet.conv = saved


def programs(width: int, depth: int, n: int, steps: int, seed: int):
    """``{variant: (fn, args, iterations per call)}``: the timed programs of the current convolution;
    ``direct`` is the log likelihood's ``value_and_grad`` at the point they all start from."""
    import importlib

    import jax
    import jax.numpy as jnp

    import reprior
    from reprior.experiments.data import load_dataset
    from reprior.inference.samplers.base import Density
    from reprior.core.target import build_target

    pcn = importlib.import_module("reprior.inference.samplers.pcn")  # the module: reprior.inference.samplers.pcn is also a function
    data = load_dataset("digits", n_train=n, n_test=1, seed=seed, flatten=False)
    bnn = reprior.BNN(reprior.ResNet(width, depth=depth), 0.1)
    target = build_target(bnn, jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    z = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(jax.random.key(seed), 1))
    flat, unravel = jax.flatten_util.ravel_pytree(z)
    density = Density.of(target).on_flat(unravel, 1.0)
    value_and_grad = jax.value_and_grad(density.log_likelihood_fn)

    def loop(x, unroll):
        def body(u, _):
            v, g = value_and_grad(u)
            return u + 1e-6 * g, v
        return jax.lax.scan(body, x, None, length=steps, unroll=unroll)

    state = pcn.init(flat, density, langevin=True)
    step = pcn.build_kernel(density, langevin=True)
    params = pcn.PCNParams(jnp.asarray(0.1, flat.dtype))

    def pcnl_scan(key, s):
        return jax.lax.scan(lambda c, k: step(k, c, params), s, jax.random.split(key, steps))

    return {
        "direct": (value_and_grad, (flat,), 1),
        "scan": (lambda x: loop(x, 1), (flat,), steps),
        "unrolled": (lambda x: loop(x, steps), (flat,), steps),
        "pcnl_scan": (pcnl_scan, (jax.random.key(seed), state), steps),
    }


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--widths", type=common.int_list, default=[16, 32], help="comma-separated ResNet widths")
    p.add_argument("--depth", type=int, default=8, help="ResNet depth (6k + 2)")
    p.add_argument("--n", type=int, default=32, help="training images")
    p.add_argument("--steps", type=int, default=10, help="loop iterations per timed call")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="parameter and data dtype")
    p.add_argument("--name", default="loop_conv", help="results file name")
    args = p.parse_args(argv)
    if args.quick:
        args.widths, args.n, args.steps, args.rounds, args.name = [2], 4, 2, 1, "loop_conv_quick"
    info = common.header()
    common.print_header(info, "loop_conv: a ResNet gradient inside a loop body, XLA vs im2col convolution")

    import jax
    import numpy as np

    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(f"cpu affinity: {affinity}\n", flush=True)
    rows = []
    with jax.enable_x64(args.dtype == "float64"):
        for width in args.widths:
            fns, call_args, per_call, values = {}, {}, {}, {}
            for conv in ("xla", "im2col"):
                with convolution(conv):
                    for variant, (fn, fn_args, iterations) in programs(width, args.depth, args.n, args.steps,
                                                                       args.seed).items():
                        key = f"{conv}/{variant}"
                        fns[key] = common.compile_fn(fn, *fn_args)[0]
                        call_args[key], per_call[key] = fn_args, iterations
                value, grad = fns[f"{conv}/direct"](*call_args[f"{conv}/direct"])  # the compiled direct call
                values[conv] = (float(value), np.asarray(grad))
            timings = common.time_interleaved(fns, call_args, rounds=args.rounds, max_seconds=30.0)
            (v_xla, g_xla), (v_im2col, g_im2col) = values["xla"], values["im2col"]
            row = {"width": width, "depth": args.depth, "n": args.n, "dtype": args.dtype, "steps": args.steps,
                   "dim": int(g_xla.size), "loglik_xla": v_xla, "loglik_im2col": v_im2col,
                   "loglik_rel_diff": abs(v_xla - v_im2col) / abs(v_xla),
                   # the gradient's largest difference, relative to its largest entry
                   "grad_rel_diff": float(np.max(np.abs(g_xla - g_im2col)) / np.max(np.abs(g_xla))),
                   "bitwise_equal": bool(v_xla == v_im2col and np.array_equal(g_xla, g_im2col))}
            for key, t in timings.items():
                name = key.replace("/", "_")
                row[f"{name}_ms"] = 1e3 * t["median"] / per_call[key]
                row[f"{name}_iterations_per_call"] = per_call[key]
                row[f"{name}_times_s"] = t["times"]  # seconds per timed call, in round order
            for variant in ("direct", "scan", "unrolled", "pcnl_scan"):
                row[f"speedup_{variant}"] = common.ratio(row[f"xla_{variant}_ms"], row[f"im2col_{variant}_ms"])
            row["xla_scan_over_direct"] = common.ratio(row["xla_scan_ms"], row["xla_direct_ms"])
            row["im2col_scan_over_direct"] = common.ratio(row["im2col_scan_ms"], row["im2col_direct_ms"])
            rows.append(row)
            print(f"width {width}: xla scan {row['xla_scan_ms']:.3g} ms, im2col scan {row['im2col_scan_ms']:.3g} ms "
                  f"per iteration ({row['speedup_scan']:.3g}x)", flush=True)
    print("\n## ms per iteration (median), and im2col's speed-up\n")
    columns = [("width", "width", "")]
    for variant in ("direct", "scan", "unrolled", "pcnl_scan"):
        columns += [(f"xla_{variant}_ms", f"xla {variant}", ".3g"),
                    (f"im2col_{variant}_ms", f"im2col {variant}", ".3g"), (f"speedup_{variant}", "x", ".2f")]
    columns += [("loglik_rel_diff", "loglik rel diff", ".2g"), ("grad_rel_diff", "grad rel diff", ".2g")]
    print(common.table(rows, columns))
    common.write_json(args.name, {"benchmark": "loop_conv", "header": info, "cpu_affinity": affinity,
                                    "settings": vars(args), "rows": rows},
                      args.json)


if __name__ == "__main__":
    main()
