"""Tests for reprior.inference.driver: the chunked, pre-compiled chain loop around NumPyro kernels.

Targets here are small Gaussians, so that compilation is cheap and results
can be compared exactly between chain methods.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import HMC

from reprior.inference.driver import run_chains
from reprior.inference.kernels import hmc_stats

SCALES = np.array([1.0, 0.5, 2.0])


def gaussian_potential(z):
    return 0.5 * jnp.sum((z["x"] / SCALES) ** 2)


def collect(consts, key, z):
    """Keep the position, a function of it and an independent draw per recorded draw."""
    return {"x": z["x"], "shifted": z["x"] + consts["shift"], "noise": jax.random.normal(key, ())}


NUM_WARMUP, NUM_SAMPLES, NUM_CHAINS, THINNING, NUM_STEPS = 21, 27, 3, 2, 4  # chunks of 2: last ones partial


def make_kernel():
    return HMC(potential_fn=gaussian_potential, num_steps=NUM_STEPS, trajectory_length=None, step_size=0.5)


def run(chain_method, **kwargs):
    settings = dict(num_warmup=NUM_WARMUP, num_samples=NUM_SAMPLES, num_chains=NUM_CHAINS, thinning=THINNING)
    settings.update(kwargs)
    init = {"x": jnp.zeros((settings["num_chains"], 3))}
    calls = []
    out = run_chains(make_kernel(), hmc_stats, collect, init, rng_key=jax.random.key(0),
                     consts={"shift": jnp.ones(3)}, chain_method=chain_method,
                     progress=lambda done, phase: calls.append((done, phase)), **settings)
    return out, calls


@pytest.fixture(scope="module")
def runs():
    with jax.enable_x64(True):
        return {method: run(method) for method in ("sequential", "vectorized")}


@pytest.mark.parametrize("method", ["sequential", "vectorized"])
def test_shapes_chunks_and_trace_count(runs, method):
    out, calls = runs[method]
    assert out.draws["x"].shape == (3, 27, 3)
    assert out.draws["noise"].shape == (3, 27)
    np.testing.assert_allclose(out.draws["shifted"], out.draws["x"] + 1.0, rtol=1e-15)
    for name in ("num_steps", "accept_prob", "diverging", "energy", "num_grad_evals", "num_logdensity_evals"):
        assert out.stats[name].shape == (3, 27), name
        assert out.warmup_stats[name].shape == (3, 21), name
    # Thinning: each recorded draw costs two transitions of 4 leapfrog steps.
    np.testing.assert_array_equal(out.stats["num_grad_evals"], 8)
    np.testing.assert_array_equal(out.warmup_stats["num_grad_evals"], 4)
    # One trace of the warm-up chunk and one of the sampling chunk, whatever the number of chains and chunks.
    assert out.num_traces == 2
    assert out.num_resumed == 0
    assert set(out.timings) == {"compile_seconds", "warmup_seconds", "sample_seconds"}
    assert all(t > 0 for t in out.timings.values())


@pytest.mark.parametrize("method", ["sequential", "vectorized"])
def test_progress_compiling_first_then_exact_counts(runs, method):
    """A compiling phase first, then one call per chunk, ending at exactly chains x (warm-up + draws)."""
    _, calls = runs[method]
    assert calls[0] == (0, "compiling")
    assert [p for _, p in calls[1:]] == (["warmup"] * 11 + ["sampling"] * 14) * (3 if method == "sequential" else 1)
    done = [d for d, _ in calls]
    assert done == sorted(done)
    assert done[-1] == NUM_CHAINS * (NUM_WARMUP + NUM_SAMPLES)
    # The partial last chunks count only the iterations that ran.
    per_chunk = np.diff(done)
    width = 1 if method == "sequential" else NUM_CHAINS
    assert per_chunk[9] == 2 * width and per_chunk[10] == 1 * width  # warm-up chunks 10 and 11 of 11
    assert per_chunk[-1] == 1 * width  # sampling chunk 14 of 14


def test_exactly_the_requested_iterations_run(runs):
    """The driver's chain equals a plain loop of exactly 21 warm-up and 27 x 2 sampling transitions.

    One more (or one fewer) warm-up iteration would give another state, so this fixes the
    counts; the cost counts are those of the iterations that ran.
    """
    seq = runs["sequential"][0]
    with jax.enable_x64(True):
        kernel = make_kernel()
        init_key, _ = jax.random.split(jax.random.key(0))
        chain_keys = jax.random.split(init_key, NUM_CHAINS)
        state = kernel.init(chain_keys[1], NUM_WARMUP, {"x": jnp.zeros(3)}, (), {})
        step = jax.jit(lambda s: kernel.sample(s, (), {}))
        for _ in range(NUM_WARMUP):
            state = step(state)
        xs, grads = [], 0
        for _ in range(NUM_SAMPLES):
            for _ in range(THINNING):
                state = step(state)
                grads += int(hmc_stats(state)["num_grad_evals"])
            xs.append(np.asarray(state.z["x"]))
    np.testing.assert_allclose(seq.draws["x"][1], np.stack(xs), rtol=1e-9, atol=1e-12)
    assert grads == NUM_SAMPLES * THINNING * NUM_STEPS == int(seq.stats["num_grad_evals"][1].sum())
    assert int(seq.warmup_stats["num_grad_evals"][1].sum()) == NUM_WARMUP * NUM_STEPS


def test_sequential_and_vectorized_chains_are_the_same_chains(runs):
    """Same keys, same kernel: running chains one by one or batched changes nothing but rounding."""
    seq, vec = runs["sequential"][0], runs["vectorized"][0]
    for name in ("x", "noise"):
        np.testing.assert_allclose(seq.draws[name], vec.draws[name], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(seq.stats["accept_prob"], vec.stats["accept_prob"], rtol=1e-9)
    # Chains are different from each other, and draws differ within a chain.
    assert not np.allclose(seq.draws["x"][0], seq.draws["x"][1])
    assert np.unique(seq.draws["noise"]).size == seq.draws["noise"].size


@pytest.fixture(scope="module")
def mixed_run():
    """A run long enough for its Monte Carlo standard errors to be trusted: 4 chains of 500 draws.

    The fixture's runs above are too short for a moment check (21 warm-up iterations leave NumPyro's
    dual averaging two iterations after the mass-matrix window: two of the three chains accept about
    5% of proposals, ESS about 5). A longer run of the same 4-step HMC does not do either: once the
    mass matrix makes the target isotropic, a fixed number of leapfrog steps can rotate every
    coordinate by about pi, x -> -x, so |x| never changes and the sd never mixes (ArviZ's ESS of the
    sd is then below 10). One leapfrog step per iteration (MALA) has no such resonance.
    """
    with jax.enable_x64(True):
        kernel = HMC(potential_fn=gaussian_potential, num_steps=1, trajectory_length=None)
        return run_chains(kernel, hmc_stats, collect, {"x": jnp.zeros((4, 3))}, rng_key=jax.random.key(1),
                          consts={"shift": jnp.ones(3)}, chain_method="vectorized", num_warmup=200,
                          num_samples=500, num_chains=4)


def test_draws_target_the_gaussian(mixed_run):
    """Mean and sd of each coordinate within 4 Monte Carlo standard errors of N(0, SCALES^2).

    The standard errors are ArviZ's ``mcse`` (sd / sqrt(ESS) for the mean; the delta method on the
    ESS of the second moment for the sd), trusted only where the ESS of both exceeds 100. For a
    Gaussian the sd's relative error is about 1 / sqrt(2 ESS), so the sd band here is about
    SCALES x (1 +- 0.12) at an ESS of 500 (it was 0.4 to 1.8), and the mean band about 0.18 SCALES.
    """
    x = mixed_run.draws["x"]  # (chain, draw, 3)
    assert x.shape == (4, 500, 3)
    for i, scale in enumerate(SCALES):
        series = x[..., i]
        ess_mean, ess_sd = float(az.ess(series, method="mean")), float(az.ess(series, method="sd"))
        assert min(ess_mean, ess_sd) > 100, (i, ess_mean, ess_sd)  # the MCSEs below are then reliable
        se_mean, se_sd = float(az.mcse(series, method="mean")), float(az.mcse(series, method="sd"))
        assert abs(series.mean()) < 4 * se_mean, (i, series.mean(), se_mean)
        assert abs(series.std() - scale) < 4 * se_sd, (i, series.std(), scale, se_sd)
        assert se_sd < 0.2 * scale  # the band is tighter than +-20%: not a check that cannot fail
    # The independent draw recorded with each position is N(0, 1) (i.i.d.: its ESS is the draw count).
    noise = mixed_run.draws["noise"].ravel()
    assert abs(noise.mean()) < 4 / np.sqrt(noise.size) and abs(noise.std() - 1) < 4 / np.sqrt(2 * noise.size)


@pytest.mark.parametrize("num_samples, chunk", [(1, 1), (20, 1), (21, 2), (500, 25)])
def test_a_chunk_is_a_twentieth_of_the_run_rounded_up(num_samples, chunk):
    """Seen through the progress calls, one per chunk: ``ceil(total / 20)`` iterations each (at least one),
    so a run reports at most 20 times; the last chunk is partial (no warm-up: no warm-up calls)."""
    _, calls = run("vectorized", num_warmup=0, num_samples=num_samples, num_chains=1, thinning=1)
    assert calls[0] == (0, "compiling")
    assert calls[1:] == [(min(done, num_samples), "sampling") for done in range(chunk, num_samples + chunk, chunk)]


def test_unknown_chain_method_is_refused():
    with pytest.raises(ValueError, match=r"argument `chain_method`: expected one of .*'parallel'\), received 'pmap'"):
        run_chains(make_kernel(), hmc_stats, collect, {"x": jnp.zeros((2, 3))}, rng_key=jax.random.key(0),
                   consts={"shift": jnp.ones(3)}, num_warmup=2, num_samples=2, num_chains=2, chain_method="pmap")


def test_no_warmup():
    out, calls = run("vectorized", num_warmup=0, num_samples=3, num_chains=2, thinning=1)
    assert out.warmup_stats == {} and out.draws["x"].shape == (2, 3, 3)
    assert calls == [(0, "compiling"), (2, "sampling"), (4, "sampling"), (6, "sampling")]


PARALLEL_CHILD = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
sys.path.insert(0, sys.argv[1])
import test_driver as t
from reprior.inference import driver
assert jax.local_device_count() == 2, jax.local_devices()
with jax.enable_x64(True):
    runs = {m: t.run(m)[0] for m in ("sequential", "vectorized", "parallel")}
    # The parallel layout shards the chain axis over both devices (3 chains padded to 4).
    layout = driver.chain_layout("parallel", 3)
    placed = layout.place({"x": jnp.zeros((4, 5))}, ())[0]
    doubled = layout.jit(lambda s, k: {"x": s["x"] * k}, (0, None))(placed, 2.0)
    shards = sorted(tuple(s.index[0].indices(4)) for s in doubled["x"].addressable_shards)
par, vec, seq = runs["parallel"], runs["vectorized"], runs["sequential"]
print(json.dumps({
    "groups": [g.tolist() for g in layout.groups], "shards": shards,
    "devices": len(doubled["x"].sharding.device_set),
    "shape": list(par.draws["x"].shape), "warm_shape": list(par.warmup_stats["accept_prob"].shape),
    "equal_vectorized": all(np.array_equal(par.draws[k], vec.draws[k]) for k in vec.draws)
        and all(np.array_equal(par.stats[k], vec.stats[k]) for k in vec.stats),
    "max_diff_sequential": max(float(np.max(np.abs(par.draws[k] - seq.draws[k]))) for k in seq.draws),
    "grads": int(par.stats["num_grad_evals"].sum()), "traces": par.num_traces}))
"""


def test_parallel_chains_on_two_devices_are_the_same_chains(tmp_path):
    """chain_method="parallel" on 2 forced CPU devices, 3 chains (more than devices, not a multiple):
    the same draws as "vectorized" (bit for bit) and as "sequential" (up to rounding)."""
    env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, "-c", PARALLEL_CHILD, str(Path(__file__).parent)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["groups"] == [[0, 1, 2, 2]]
    assert out["devices"] == 2 and out["shards"] == [[0, 2, 1], [2, 4, 1]]
    assert out["shape"] == [3, 27, 3] and out["warm_shape"] == [3, 21]
    assert out["equal_vectorized"] is True
    assert out["max_diff_sequential"] < 1e-9
    assert out["grads"] == NUM_CHAINS * NUM_SAMPLES * THINNING * NUM_STEPS
    assert out["traces"] == 2


def test_a_draw_is_divergent_when_any_iteration_of_its_thinning_window_was():
    """Stats of the thinned-away iterations count: HMC at a step far too large diverges on some iterations;
    with thinning 3 a recorded draw is ``diverging`` (``nonfinite``) exactly when one of its 3 iterations was,
    which the same chain run at thinning 1 shows iteration by iteration (same key: the same iterations)."""

    def wild():
        return HMC(potential_fn=lambda z: 0.5 * jnp.sum(z["x"] ** 4), num_steps=3, trajectory_length=None,
                   step_size=0.8, adapt_step_size=False)  # about 30% of iterations diverge

    def stats_of(thinning, num_samples):
        out = run_chains(wild(), hmc_stats, lambda consts, key, z: {}, {"x": jnp.ones((1, 3))},
                         rng_key=jax.random.key(3), num_warmup=0, num_samples=num_samples, num_chains=1,
                         thinning=thinning)
        return {name: np.asarray(out.stats[name])[0] for name in ("diverging", "num_grad_evals")}

    with jax.enable_x64(True):
        every, thinned = stats_of(1, 30), stats_of(3, 10)
    windows = every["diverging"].reshape(10, 3)
    assert np.any(windows.any(axis=1) & ~windows[:, -1])  # windows whose divergence is not at the recorded one
    np.testing.assert_array_equal(thinned["diverging"], windows.any(axis=1))
    np.testing.assert_array_equal(thinned["num_grad_evals"], every["num_grad_evals"].reshape(10, 3).sum(axis=1))


def test_the_chain_functions_run_whole_give_the_chunked_runs_chains_and_window_reductions():
    """:func:`chain_functions` called once per phase (as SBC calls it, inside its compiled replications)
    runs the same chain as :func:`run_chains` in chunks of 2, from the same keys; a custom
    ``window_stats`` reduces each thinning window (mean acceptance, summed divergences), checked against
    the same chain recorded at thinning 1."""
    from numpyro.infer import HMC

    from reprior.inference.driver import chain_functions

    def wild():
        return HMC(potential_fn=lambda z: 0.5 * jnp.sum(z["x"] ** 4), num_steps=3, trajectory_length=None,
                   step_size=0.8, adapt_step_size=False)

    def whole(thinning, num_samples, window_stats=None):
        kernel = wild()
        init_key, collect_key = jax.random.split(jax.random.key(3))
        z0 = {"x": jnp.ones(3)}
        state = kernel.init(jax.random.split(init_key, 1)[0], 0, z0, (), {})
        warmup, draw = chain_functions(kernel, hmc_stats, collect, num_warmup=0, num_samples=num_samples,
                                       thinning=thinning, window_stats=window_stats)
        state, warm = warmup(state, 0)
        _, (outputs, stats) = draw(state, {"shift": jnp.ones(3)}, jax.random.split(collect_key, 1)[0], 0)
        return outputs, stats

    with jax.enable_x64(True):
        chunked = run_chains(wild(), hmc_stats, collect, {"x": jnp.ones((1, 3))}, rng_key=jax.random.key(3),
                             consts={"shift": jnp.ones(3)}, num_warmup=0, num_samples=10, num_chains=1, thinning=3)
        outputs, stats = whole(3, 10)
        every = whole(1, 30)[1]
        reduced = whole(3, 10, {"accept_prob": jnp.mean, "diverging": jnp.sum})[1]
    stats, every, reduced = (jax.tree_util.tree_map(np.asarray, tree) for tree in (stats, every, reduced))
    for name in ("x", "shifted", "noise"):
        np.testing.assert_array_equal(np.asarray(outputs[name]), np.asarray(chunked.draws[name])[0])
    for name in ("diverging", "num_grad_evals", "accept_prob"):
        np.testing.assert_array_equal(stats[name], np.asarray(chunked.stats[name])[0])
    np.testing.assert_allclose(reduced["accept_prob"], every["accept_prob"].reshape(10, 3).mean(axis=1),
                               rtol=1e-12)
    np.testing.assert_array_equal(reduced["diverging"], every["diverging"].reshape(10, 3).sum(axis=1))
    assert int(np.sum(reduced["diverging"])) > int(np.sum(stats["diverging"]))  # some windows diverge twice or more


def _counted_collect(calls):
    """A ``collect`` in two parts (:class:`reprior.inference.sampling.CollectParts`) whose position part
    counts its executions (a host callback runs only when its branch does)."""
    from reprior.inference.sampling import CollectParts

    def position(consts, z, evaluation=None):
        # rows of x: one per chain evaluated, whether vmap calls back once per batch or per chain
        jax.debug.callback(lambda x: calls.append(np.asarray(x).reshape(-1, 3).shape[0]), z["x"])
        return {"square": jnp.sum(z["x"] ** 2) + consts["shift"][0], "dim": 3}  # "dim": a leaf fixed at trace time

    def per_draw(consts, key, z, evaluation, cache):
        return {"x": z["x"], "square": cache["square"] * cache["dim"] / 3, "noise": jax.random.normal(key, ())}

    def whole(consts, key, z, evaluation=None):
        return per_draw(consts, key, z, evaluation, position(consts, z, evaluation))

    whole.parts = CollectParts(position, per_draw)
    return whole


def test_an_unmoved_chain_reuses_its_previous_draws_position_part():
    """Sequential chains (unbatched) skip the position part of a draw whose position equals the
    previous draw's in the same chunk; vectorized chains compute it every draw.  Both record the same
    values, and the sequential run's position part runs exactly once per chunk start or move, the
    vectorized run's once per chain and draw."""
    def rejecting():  # a step too long for the narrow coordinate: many proposals rejected
        return HMC(potential_fn=gaussian_potential, num_steps=2, trajectory_length=None, step_size=1.3,
                   adapt_step_size=False)

    counts, runs = {}, {}
    with jax.enable_x64(True):
        for method in ("sequential", "vectorized"):
            calls = []
            runs[method] = run_chains(rejecting(), hmc_stats, _counted_collect(calls), {"x": jnp.ones((2, 3))},
                                      rng_key=jax.random.key(5), consts={"shift": jnp.ones(3)}, num_warmup=0,
                                      num_samples=40, num_chains=2, chain_method=method)
            jax.effects_barrier()
            counts[method] = sum(calls)
    seq, vec = runs["sequential"].draws, runs["vectorized"].draws
    for name in ("x", "square", "noise"):
        np.testing.assert_allclose(np.asarray(seq[name]), np.asarray(vec[name]), rtol=1e-13, atol=0)
    x = np.asarray(seq["x"])
    moved = np.any(x[:, 1:] != x[:, :-1], axis=-1)  # (chain, draw - 1)
    chunk = 2  # ceil(40 / 20): the driver's chunk of draws
    first_of_chunk = np.arange(1, 40) % chunk == 0
    expected = sum(1 + int(np.sum(moved[c] | first_of_chunk)) for c in range(2))
    assert 0 < int(np.sum(~moved)) < moved.size  # some draws rejected, some accepted
    assert counts["sequential"] == expected < counts["vectorized"] == 2 * 40
