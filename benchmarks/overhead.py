"""The price of a recorded draw: ``reprior.sample``'s per-iteration cost against the bare kernel step.

For each kernel and width (digits, depth-1 MLP, repriorised, readout exact) this
script measures, side by side in one process:

* ``bare_ms``: one transition of the kernel itself (``Algorithm.step`` on the
  flat state, tuned quantities fixed), ``--iterations`` of them in one jitted
  ``lax.scan``: no adapter, no driver, nothing recorded;
* ``t1_ms`` and ``t10_ms``: ``reprior.sample``'s sampling seconds per iteration
  at thinning 1 (every draw recorded) and 10 (one chain, ``--iterations``
  iterations, compilation and warm-up excluded), with ``x_test``;
  ``t1_no_test_ms`` at thinning 1 without ``x_test`` (no test predictions);
* ``ratio_t1``, ``ratio_t10``, ``ratio_t1_no_test``: those over ``bare_ms``;
* ``chunk_reuse_ms``, ``chunk_plain_ms``: thinning 1 as the compiled draw chunk
  that ``reprior.sample`` runs, from a chain warmed up ``--num-warmup``
  iterations, with an unmoved chain's position part reused (sequential chains)
  and computed afresh (vectorized chains), timed interleaved with the bare step
  (``chunk_bare_ms``) in one process, no driver around them: their ratios
  (``ratio_chunk_reuse``, ``ratio_chunk_plain``, ``reuse_speedup``) are the
  cleanest measure of what the reuse saves, at the acceptance ``chunk_accept``;
* ``parts``: where a recorded draw's time goes, each part of ``collect`` (the
  per-draw function of :func:`reprior.sample`) compiled on its own and timed
  at the chain's starting point, and ``collect`` whole, on its own (features
  and factorisation recomputed, as under NumPyro's NUTS) and handed the
  density's evaluation (``collect_handed``, as this package's kernels hand it),
  and its per-draw part alone (``collect_unmoved``: what a draw costs when the
  chain has not moved since the previous one and a sequential chain reuses that
  draw's position part, :func:`reprior.inference.driver.chain_functions`).

Rounds are interleaved (bare step, then each ``reprior.sample`` setting, once
each per round; medians over rounds), so the ratios are robust to drifting load.  Each
row records the load average when it was measured and the cores the process
may run on.  One core, one thread (the figures of docs/performance.md):

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \\
        taskset -c 1 python benchmarks/overhead.py --json docs/results/overhead_cpu.json
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SAMPLERS = ("pcn", "pcnl", "split_hmc")


def problem(width: int, n_train: int, n_test: int, seed: int, noise_std: float):
    """``(bnn, data, target)`` of the benchmark's setting (float64)."""
    import jax.numpy as jnp

    import reprior
    from reprior.experiments.data import load_dataset
    from reprior.core.target import build_target

    data = load_dataset("digits", n_train=n_train, n_test=n_test, seed=seed, flatten=True)
    bnn = reprior.BNN(reprior.MLP(width, depth=1), noise_std)
    return bnn, data, build_target(bnn, jnp.asarray(data.x_train), jnp.asarray(data.y_train))


def bare_program(sampler: str, target, iterations: int, seed: int):
    """``(fn, args)``: ``iterations`` transitions of the kernel's own step in one ``lax.scan``."""
    import jax

    from reprior.inference.samplers.registry import make_kernel

    kernel = make_kernel(sampler, target)
    z0 = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(jax.random.key(seed), 1))
    state = kernel.init(jax.random.key(seed + 1), 0, z0)  # no warm-up: the searched initial step size
    step, params = kernel.algorithm.step, state.params

    def run(key, kernel_state):
        def body(s, k):
            s, info = step(k, s, params)
            return s, info.accept_prob
        return jax.lax.scan(body, kernel_state, jax.random.split(key, iterations))

    return run, (jax.random.key(seed + 2), state.kernel_state), z0


def reuse_programs(sampler: str, target, x_test, keep: str, iterations: int, num_warmup: int, seed: int):
    """``({name: fn}, args, accept)``: ``iterations`` recorded draws at thinning 1 (the compiled draw chunk of
    :func:`reprior.inference.driver.chain_functions`, as ``reprior.sample`` runs it, with ``x_test``),
    from one chain warmed up ``num_warmup`` iterations, with the position part of an unmoved chain
    reused (``chunk_reuse``, what sequential chains run) and computed afresh (``chunk_plain``, what
    vectorized chains run); ``accept``: the mean acceptance over those draws."""
    import jax
    import jax.numpy as jnp

    from reprior.inference import sampling
    from reprior.inference.driver import chain_functions
    from reprior.inference.samplers.registry import get_kernel, make_kernel

    kernel = make_kernel(sampler, target)
    stats_fn = sampling._make_stats_fn(get_kernel(sampler).stats_fn, target)
    collect = sampling.make_collect_fn(target, x_test, keep, 10, 0)
    consts = {"projection_words": sampling.run_projection_words(target.num_params, 10, 0)}  # as draw_parts
    z0 = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(jax.random.key(seed), 1))
    state = kernel.init(jax.random.key(seed + 1), num_warmup, z0)
    warmup, _ = chain_functions(kernel, stats_fn, collect, num_warmup=num_warmup, num_samples=0, thinning=1)
    state = jax.jit(warmup, static_argnums=1)(state, 0)[0]
    fns, args = {}, {}
    for name, reuse in (("chunk_reuse", True), ("chunk_plain", False)):
        _, draw = chain_functions(kernel, stats_fn, collect, num_warmup=0, num_samples=iterations, thinning=1,
                                  with_evaluation=True, reuse_position=reuse)
        args[name] = (state, consts, jax.random.key(seed + 2))
        fns[name] = common.compile_fn(lambda st, c, k, draw=draw: draw(st, c, k, 0), *args[name])[0]
    accept = float(jnp.mean(fns["chunk_reuse"](*args["chunk_reuse"])[1][1]["accept_prob"]))
    return fns, args, accept


def draw_parts(target, x_test, keep: str, num_projections: int, z):
    """``{part: (fn, args)}``: each piece of a recorded draw, and ``collect`` (the whole draw) twice:
    on its own (``collect``: the features and the factorisation recomputed, as for NumPyro's NUTS)
    and handed the density's evaluation (``collect_handed``: as this package's kernels hand it)."""
    import jax

    from reprior.inference import sampling
    from reprior.inference.driver import _PositionPart

    key = jax.random.key(0)
    collect = sampling.make_collect_fn(target, x_test, keep, num_projections, 0)
    _, evaluation = jax.jit(target.evaluate)(z)
    post = jax.jit(target.readout_factorisation)(z, evaluation)
    theta, phi = target.to_params(z, key, post.psi, post)
    words = sampling.run_projection_words(target.num_params, num_projections, 0)  # as reprior.sample builds
    consts = {"projection_words": words}
    psi_test = target.arch.features({"hidden": z["hidden"]}, x_test)
    position = _PositionPart(collect.parts.position, consts)  # the driver's cache of an unmoved chain
    cached = jax.jit(position.arrays)(z, evaluation)
    return {
        "features": (target.features, (z,)),
        "evaluate": (target.evaluate, (z,)),
        "factorisation": (lambda zz, ev: target.readout_factorisation(zz, ev._replace(chol=None)), (z, evaluation)),
        "readout_draw": (lambda zz, pp: target.to_params(zz, key, pp.psi, pp), (z, post)),
        "test_features": (lambda zz: target.arch.features({"hidden": zz["hidden"]}, x_test), (z,)),
        "log_marginal_likelihood": (lambda pp: pp.log_marginal_likelihood(target.y), (post,)),
        "predictive": (lambda pt, pp: pp.predictive(pt), (psi_test, post)),
        "projections": (lambda t, f, w: sampling.draw_projections(t, f, num_projections, 0, w), (theta, phi, words)),
        "collect": (lambda zz, c: collect(c, key, zz), (z, consts)),
        "collect_handed": (lambda zz, c, ev: collect(c, key, zz, ev), (z, consts, evaluation)),
        "collect_unmoved": (lambda zz, c, arrays: collect.parts.draw(c, key, zz, evaluation,
                                                                     position.rebuild(arrays, evaluation)),
                            (z, consts, cached)),
    }


def sample_seconds_per_iteration(bnn, data, sampler: str, thinning: int, iterations: int, num_warmup: int,
                                 keep: str, seed: int, with_test: bool = True) -> tuple[float, dict]:
    import reprior

    num_samples = max(1, iterations // thinning)
    idata = reprior.sample(bnn, data.x_train, data.y_train, x_test=data.x_test if with_test else None,
                           sampler=sampler,
                           num_warmup=num_warmup, num_samples=num_samples, num_chains=1, thinning=thinning,
                           seed=seed, progress_bar=False, keep=keep, dtype="float64")
    attrs = idata.attrs
    return float(attrs["sample_seconds"]) / (num_samples * thinning), {
        "num_iterations": num_samples * thinning, "sample_seconds": float(attrs["sample_seconds"]),
        "accept_mean": float(idata.sample_stats["accept_prob"].mean())}


def measure(sampler: str, width: int, args) -> dict:
    import warnings

    import jax

    bnn, data, target = problem(width, args.n_train, args.n_test, args.seed, args.noise_std)
    run, run_args, z0 = bare_program(sampler, target, args.iterations, args.seed)
    bare, bare_compile = common.compile_fn(run, *run_args)
    common.time_call(bare, *run_args)  # warm
    times = {"bare": [], "t1": [], "t10": [], "t1_no_test": []}
    runs = {"t1": [], "t10": [], "t1_no_test": []}
    settings = {"t1": (1, True), "t10": (10, True), "t1_no_test": (1, False)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # short chains: the R-hat/acceptance warnings say nothing here
        for _ in range(args.rounds):
            times["bare"].append(common.time_call(bare, *run_args) / args.iterations)
            for name, (thinning, with_test) in settings.items():
                seconds, info = sample_seconds_per_iteration(bnn, data, sampler, thinning, args.iterations,
                                                             args.num_warmup, args.keep, args.seed, with_test)
                times[name].append(seconds)
                runs[name].append(info)
    row = {"sampler": sampler, "width": width, "n_train": args.n_train, "n_test": args.n_test,
           "iterations": args.iterations, "rounds": args.rounds, "keep": args.keep,
           "bare_compile_s": bare_compile, "load_average": list(os.getloadavg())}
    for name, values in times.items():
        row[f"{name}_ms"] = 1e3 * statistics.median(values)
        row[f"{name}_times_ms"] = [1e3 * v for v in values]
    row["ratio_t1"] = common.ratio(row["t1_ms"], row["bare_ms"])
    row["ratio_t10"] = common.ratio(row["t10_ms"], row["bare_ms"])
    row["ratio_t1_no_test"] = common.ratio(row["t1_no_test_ms"], row["bare_ms"])
    row["accept_mean_t1"] = statistics.mean(r["accept_mean"] for r in runs["t1"])
    # where a recorded draw's time goes (at the chain's starting point)
    parts = draw_parts(target, jax.numpy.asarray(data.x_test), args.keep, 10, z0)
    fns = {name: common.compile_fn(fn, *fn_args)[0] for name, (fn, fn_args) in parts.items()}
    part_times = common.time_interleaved(fns, {name: a for name, (_, a) in parts.items()},
                                         rounds=args.part_rounds, max_seconds=10.0)
    row["parts_ms"] = {name: 1e3 * t["median"] for name, t in part_times.items()}
    row["collect_over_bare"] = common.ratio(row["parts_ms"]["collect"], row["bare_ms"])
    row["collect_handed_over_bare"] = common.ratio(row["parts_ms"]["collect_handed"], row["bare_ms"])
    row["collect_unmoved_over_bare"] = common.ratio(row["parts_ms"]["collect_unmoved"], row["bare_ms"])
    # the reuse of an unmoved chain's position part, on and off, beside the bare step in one process
    fns, fn_args, row["chunk_accept"] = reuse_programs(sampler, target, jax.numpy.asarray(data.x_test), args.keep,
                                                       args.iterations, args.num_warmup, args.seed)
    fns["chunk_bare"], fn_args["chunk_bare"] = bare, run_args
    chunk_times = common.time_interleaved(fns, fn_args, rounds=args.part_rounds, max_seconds=30.0)
    for name in ("chunk_reuse", "chunk_plain", "chunk_bare"):
        row[f"{name}_ms"] = 1e3 * chunk_times[name]["median"] / args.iterations
    row["ratio_chunk_reuse"] = common.ratio(row["chunk_reuse_ms"], row["chunk_bare_ms"])
    row["ratio_chunk_plain"] = common.ratio(row["chunk_plain_ms"], row["chunk_bare_ms"])
    row["reuse_speedup"] = common.ratio(row["chunk_plain_ms"], row["chunk_reuse_ms"])
    return row


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--widths", type=common.int_list, default=[1024, 4096], help="comma-separated MLP widths")
    p.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated kernels")
    p.add_argument("--n-train", type=int, default=128, help="training points")
    p.add_argument("--n-test", type=int, default=64, help="test points (x_test of reprior.sample)")
    p.add_argument("--iterations", type=int, default=100, help="iterations per timed run")
    p.add_argument("--num-warmup", type=int, default=20, help="warm-up iterations of each reprior.sample run")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (bare, thinning 1, thinning 10)")
    p.add_argument("--part-rounds", type=int, default=15, help="interleaved rounds of the draw's parts")
    p.add_argument("--keep", default="readout", choices=["all", "readout", "none"], help="reprior.sample's keep")
    p.add_argument("--name", default="overhead", help="results file name")
    args = p.parse_args(argv)
    if args.quick:
        args.widths, args.n_train, args.n_test, args.iterations, args.num_warmup = [16], 16, 4, 10, 4
        args.rounds, args.part_rounds, args.name = 1, 3, "overhead_quick"
    info = common.header()
    common.print_header(info, "overhead: reprior.sample per iteration against the bare kernel step")
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(f"cpu affinity: {affinity}\n", flush=True)

    import jax

    rows = []
    with jax.enable_x64(True):
        for width in args.widths:
            for sampler in args.samplers.split(","):
                start = time.perf_counter()
                row = measure(sampler, width, args)
                row["wall_s"] = time.perf_counter() - start
                rows.append(row)
                print(f"{sampler} width {width}: bare {row['bare_ms']:.3g} ms, thinning 1 {row['t1_ms']:.3g} ms "
                      f"({row['ratio_t1']:.3g}x; without x_test {row['ratio_t1_no_test']:.3g}x), thinning 10 "
                      f"{row['t10_ms']:.3g} ms ({row['ratio_t10']:.3g}x), load {row['load_average'][0]:.2f}",
                      flush=True)
    print("\n## ms per iteration (median), ratio to the bare step\n")
    print(common.table(rows, [("sampler", "sampler", ""), ("width", "width", ""), ("bare_ms", "bare", ".3g"),
                              ("t1_ms", "thin 1", ".3g"), ("ratio_t1", "x", ".3f"),
                              ("t1_no_test_ms", "thin 1, no x_test", ".3g"), ("ratio_t1_no_test", "x", ".3f"),
                              ("t10_ms", "thin 10", ".3g"), ("ratio_t10", "x", ".3f")]))
    print("\n## thinning 1, the compiled draw chunk: an unmoved chain's position part reused or not "
          "(ms per iteration)\n")
    print(common.table(rows, [("sampler", "sampler", ""), ("width", "width", ""), ("chunk_accept", "accept", ".2f"),
                              ("chunk_bare_ms", "bare", ".3g"), ("chunk_reuse_ms", "reused", ".3g"),
                              ("ratio_chunk_reuse", "x", ".3f"), ("chunk_plain_ms", "not reused", ".3g"),
                              ("ratio_chunk_plain", "x", ".3f"), ("reuse_speedup", "speed-up", ".3f")]))
    print("\n## ms of each part of a recorded draw (median)\n")
    names = list(rows[0]["parts_ms"]) if rows else []
    part_rows = [{"sampler": r["sampler"], "width": r["width"], **r["parts_ms"]} for r in rows]
    print(common.table(part_rows, [("sampler", "sampler", ""), ("width", "width", "")]
                       + [(n, n, ".3g") for n in names]))
    common.write_json(args.name, {"benchmark": "overhead", "header": info, "cpu_affinity": affinity,
                                  "settings": vars(args), "rows": rows}, args.json)


if __name__ == "__main__":
    main()
