"""Tests for reprior.driver: the chunked, pre-compiled chain loop around NumPyro kernels.

Targets here are small Gaussians, so that compilation is cheap and results
can be compared exactly between chain methods.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import HMC

from reprior.driver import _chunk_size, run_chains
from reprior.kernels import hmc_stats

SCALES = np.array([1.0, 0.5, 2.0])


def gaussian_potential(z):
    return 0.5 * jnp.sum((z["x"] / SCALES) ** 2)


def collect(consts, key, z):
    """Keep the position, a function of it and an independent draw per recorded draw."""
    return {"x": z["x"], "shifted": z["x"] + consts["shift"], "noise": jax.random.normal(key, ())}


def run(chain_method, **kwargs):
    kernel = HMC(potential_fn=gaussian_potential, num_steps=4, trajectory_length=None, step_size=0.5)
    settings = dict(num_warmup=13, num_samples=27, num_chains=3, thinning=2)
    settings.update(kwargs)
    init = {"x": jnp.zeros((settings["num_chains"], 3))}
    calls = []
    out = run_chains(kernel, hmc_stats, collect, init, rng_key=jax.random.key(0), consts={"shift": jnp.ones(3)},
                     chain_method=chain_method, progress=lambda done, phase: calls.append((done, phase)), **settings)
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
        assert out.warmup_stats[name].shape == (3, 13), name
    # Thinning: each recorded draw costs two transitions of 4 leapfrog steps.
    np.testing.assert_array_equal(out.stats["num_grad_evals"], 8)
    np.testing.assert_array_equal(out.warmup_stats["num_grad_evals"], 4)
    # One trace of the warm-up chunk and one of the sampling chunk, whatever the number of chains and chunks.
    assert out.num_traces == 2
    assert set(out.timings) == {"compile_seconds", "warmup_seconds", "sample_seconds"}
    assert all(t > 0 for t in out.timings.values())
    # Progress is reported between chunks, in order, covering every iteration.
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] >= 3 * (13 + 27)
    num_groups = 3 if method == "sequential" else 1  # chains run one at a time, or all at once
    assert [p for _, p in calls].count("warmup") == num_groups * -(-13 // _chunk_size(13))
    assert [p for _, p in calls].count("sampling") == num_groups * -(-27 // _chunk_size(27))


def test_sequential_and_vectorized_chains_are_the_same_chains(runs):
    """Same keys, same kernel: running chains one by one or batched changes nothing but rounding."""
    seq, vec = runs["sequential"][0], runs["vectorized"][0]
    for name in ("x", "noise"):
        np.testing.assert_allclose(seq.draws[name], vec.draws[name], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(seq.stats["accept_prob"], vec.stats["accept_prob"], rtol=1e-9)
    # Chains are different from each other, and draws differ within a chain.
    assert not np.allclose(seq.draws["x"][0], seq.draws["x"][1])
    assert np.unique(seq.draws["noise"]).size == seq.draws["noise"].size


def test_draws_target_the_gaussian(runs):
    """Loose moment check (HMC with adapted step size on a 3-d Gaussian, 81 draws, ESS unknown but > 10)."""
    x = runs["sequential"][0].draws["x"].reshape(-1, 3)
    assert np.all(np.abs(x.mean(0)) < 4 * SCALES / np.sqrt(10))
    assert np.all((x.std(0) > 0.4 * SCALES) & (x.std(0) < 1.8 * SCALES))


def test_chunk_size():
    assert _chunk_size(0) == 1 and _chunk_size(1) == 1 and _chunk_size(20) == 1
    assert _chunk_size(21) == 2 and _chunk_size(500) == 25


def test_parallel_needs_enough_devices():
    if jax.local_device_count() >= 2:
        pytest.skip("several local devices")
    kernel = HMC(potential_fn=gaussian_potential, num_steps=2, trajectory_length=None)
    with pytest.raises(ValueError, match=r"`chain_method`: 'parallel' needs at least 2 local devices"):
        run_chains(kernel, hmc_stats, collect, {"x": jnp.zeros((2, 3))}, rng_key=jax.random.key(0),
                   consts={"shift": jnp.ones(3)}, num_warmup=2, num_samples=2, num_chains=2,
                   chain_method="parallel")
