"""Tests for reprior.inference.checkpoint and resumable chains in reprior.inference.driver.

A run interrupted at a chunk boundary (Ctrl-C, SIGTERM) and rerun with the
same checkpoint path must give the draws, statistics and warm-up statistics of
an uninterrupted run, bit for bit (CPU, float64).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import HMC

from reprior.inference import checkpoint as ck
from reprior.inference.driver import run_chains
from reprior.inference.kernels import hmc_stats

SCALES = np.array([1.0, 0.5, 2.0])
SETTINGS = dict(num_warmup=9, num_samples=10, num_chains=2, thinning=1)  # chunks of 1: 19 chunks per chain


def potential(z):
    return 0.5 * jnp.sum((z["x"] / SCALES) ** 2)


def collect(consts, key, z):
    return {"x": z["x"], "noise": jax.random.normal(key, ())}


def run(method, checkpoint=None, stop_after=None, seed=0, on_progress=None):
    """Run the test chains; raise KeyboardInterrupt at the ``stop_after``-th progress call."""
    calls = []

    def progress(done, phase):
        calls.append((done, phase))
        if on_progress:
            on_progress(len(calls))
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt

    kernel = HMC(potential_fn=potential, num_steps=3, trajectory_length=None, step_size=0.4)
    out = run_chains(kernel, hmc_stats, collect, {"x": jnp.zeros((2, 3))}, rng_key=jax.random.key(seed),
                     chain_method=method, progress=progress, checkpoint=checkpoint, **SETTINGS)
    return out, calls


def assert_same_run(a, b):
    for group in ("draws", "stats", "warmup_stats"):
        left, right = getattr(a, group), getattr(b, group)
        assert sorted(left) == sorted(right), group
        for name in left:
            np.testing.assert_array_equal(left[name], right[name], err_msg=f"{group}/{name}")


@pytest.fixture(scope="module")
def reference():
    with jax.enable_x64(True):
        return {method: run(method) for method in ("sequential", "vectorized")}


# ---------------------------------------------------------------------------
# Pytrees
# ---------------------------------------------------------------------------


class State(NamedTuple):
    z: dict
    i: jax.Array
    rng_key: jax.Array


def test_tree_round_trip_with_typed_keys():
    with jax.enable_x64(True):
        state = State({"a": jnp.arange(6.0).reshape(2, 3), "b": jnp.float64(0.5)}, jnp.int32(7),
                      jax.random.split(jax.random.key(3), 2))
        arrays, spec = ck.flatten_tree(state)
        assert spec["keys"] == [None, None, None, "threefry2x32"]
        assert all(isinstance(a, np.ndarray) for a in arrays)
        back = ck.unflatten_tree([a.copy() for a in arrays], json.loads(json.dumps(spec)), state)
    assert isinstance(back, State)
    np.testing.assert_array_equal(back.z["a"], state.z["a"])
    assert back.z["a"].dtype == np.float64 and back.i.dtype == np.int32
    np.testing.assert_array_equal(jax.random.key_data(back.rng_key), jax.random.key_data(state.rng_key))
    assert jax.random.key_impl(back.rng_key) == jax.random.key_impl(state.rng_key)


def test_tree_mismatch_names_expected_and_received():
    state = {"a": np.zeros(3), "b": np.zeros(2)}
    arrays, spec = ck.flatten_tree(state)
    with pytest.raises(ck.CheckpointMismatch, match=r"checkpoint state: expected the structure .*'c'.*received .*'b'"):
        ck.unflatten_tree(arrays, spec, {"a": np.zeros(3), "c": np.zeros(2)}, what="state")
    with pytest.raises(ck.CheckpointMismatch, match=r"leaf 1: expected \(shape, dtype\) \(\(4,\), '<f8'\), "
                                                    r"received \(\(2,\), '<f8'\)"):
        ck.unflatten_tree(arrays, spec, {"a": np.zeros(3), "b": np.zeros(4)}, what="state")
    # With batch_ndim, only the trailing dimensions must agree (another number of chains is fine).
    back = ck.unflatten_tree(arrays, spec, {"a": np.zeros(5), "b": np.zeros(7)}, what="state", batch_ndim=1)
    assert back["a"].shape == (3,)
    with pytest.raises(ck.CheckpointMismatch, match="expected the structure"):
        ck.unflatten_tree(arrays, spec, jax.tree_util.tree_structure([0, 0]))


def test_checkpoint_every_is_validated(tmp_path):
    with pytest.raises(ValueError, match=r"argument `every`: expected a number of seconds >= 0, received -1"):
        ck.Checkpoint(tmp_path / "c.npz", every=-1)


def test_save_is_atomic_and_load_checks_the_format(tmp_path):
    c = ck.Checkpoint(tmp_path / "sub" / "c.npz", every=0)
    c.save({"n": 1}, {"t": {"x": np.arange(3.0)}})
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["c.npz"]  # no temporary file left
    meta, trees = c.load()
    assert meta == {"n": 1} and trees["t"][1]["treedef"] == str(jax.tree_util.tree_structure({"x": 0}))
    np.savez(tmp_path / "old.npz", header=np.array(json.dumps({"format": 0, "meta": {}, "specs": {}})))
    with pytest.raises(ck.CheckpointMismatch, match=r"expected format 1, received 0"):
        ck.Checkpoint(tmp_path / "old.npz").load()
    c.clear()
    assert not c.exists()


# ---------------------------------------------------------------------------
# Resuming chains
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("method, stop_after", [
    pytest.param("vectorized", 5, marks=pytest.mark.slow),   # in warm-up
    pytest.param("sequential", 20, marks=pytest.mark.slow),  # just after the first chain's last chunk (1 + 19 calls)
    ("sequential", 30),                                      # in the second chain's sampling
])
def test_interrupted_run_resumes_bit_for_bit(reference, tmp_path, method, stop_after):
    ref, ref_calls = reference[method]
    path = tmp_path / "chains.npz"
    with jax.enable_x64(True):
        with pytest.raises(KeyboardInterrupt):
            run(method, ck.Checkpoint(path, every=0), stop_after=stop_after)
        done_at_stop = ref_calls[stop_after - 1][0]
        out, calls = run(method, ck.Checkpoint(path, every=0))
    assert_same_run(ref, out)
    # Only what was not done before the interrupt runs again.
    assert out.num_resumed == done_at_stop
    assert calls[0] == (0, "compiling") and calls[1] == ref_calls[stop_after]
    assert calls[1:] == ref_calls[stop_after:]


@pytest.mark.slow
def test_every_limits_the_saves_and_an_interrupt_always_saves(reference, tmp_path):
    ref, ref_calls = reference["vectorized"]
    path = tmp_path / "chains.npz"
    seen = []
    with jax.enable_x64(True):
        run("vectorized", ck.Checkpoint(path, every=3600), on_progress=lambda n: seen.append(path.exists()))
        assert not any(seen) and not path.exists()  # a run shorter than `every` never saves
        with pytest.raises(KeyboardInterrupt):
            run("vectorized", ck.Checkpoint(path, every=3600), stop_after=12)
        assert path.exists()
        out, _ = run("vectorized", ck.Checkpoint(path, every=3600))
    assert out.num_resumed == ref_calls[11][0]
    assert_same_run(ref, out)


def test_a_finished_checkpoint_runs_nothing_again(reference, tmp_path):
    ref, ref_calls = reference["sequential"]
    path = tmp_path / "chains.npz"
    with jax.enable_x64(True):
        run("sequential", ck.Checkpoint(path, every=0))
        out, calls = run("sequential", ck.Checkpoint(path, every=0))
    assert out.num_resumed == ref_calls[-1][0] == 2 * (9 + 10)
    assert calls == [(0, "compiling")]
    assert_same_run(ref, out)


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    path = tmp_path / "chains.npz"
    with jax.enable_x64(True):
        with pytest.raises(KeyboardInterrupt):
            run("vectorized", ck.Checkpoint(path, every=0), stop_after=3)
        with pytest.raises(ck.CheckpointMismatch, match=r"written by another run .*'rng_key'"):
            run("vectorized", ck.Checkpoint(path, every=0), seed=1)
        with pytest.raises(ck.CheckpointMismatch, match=r"'batched': \(False, True\)"):
            run("sequential", ck.Checkpoint(path, every=0))


def test_checkpointing_block_gives_each_call_its_file(reference, tmp_path):
    with jax.enable_x64(True), ck.checkpointing(tmp_path / "cell", every=0):
        run("vectorized")
        run("vectorized")
    assert sorted(p.name for p in (tmp_path / "cell").iterdir()) == ["chains-0.npz", "chains-1.npz"]
    assert ck.current() is None


def test_save_active_saves_the_last_chunk_boundary(reference, tmp_path):
    """What submitit's pre-emption handler calls: a save now, outside the every-N-seconds schedule."""
    ref, ref_calls = reference["vectorized"]
    path = tmp_path / "chains.npz"
    assert ck.save_active() is False
    saved = []
    with jax.enable_x64(True):
        with pytest.raises(KeyboardInterrupt):
            run("vectorized", ck.Checkpoint(path, every=3600), stop_after=8,
                on_progress=lambda n: saved.append(ck.save_active()) if n == 6 else None)
        assert saved == [True]
        meta, _ = ck.Checkpoint(path).load()
        assert meta["done"] == ref_calls[7][0]  # the interrupt at call 8 saved again, later
    assert ck.save_active() is False


SIGTERM_CHILD = """
import os, signal, sys
import jax
sys.path.insert(0, sys.argv[1])
import test_checkpoint as t
from reprior import checkpoint as ck
from reprior._util.interrupts import Interrupted
kill = lambda n: os.kill(os.getpid(), signal.SIGTERM) if n == 14 else None
try:
    with jax.enable_x64(True):
        t.run(sys.argv[2], ck.Checkpoint(sys.argv[3], every=3600), on_progress=kill)
except Interrupted as err:
    sys.exit(err.exit_code)
"""


@pytest.mark.parametrize("method", [pytest.param("sequential", marks=pytest.mark.slow), "vectorized"])
def test_sigterm_saves_then_exits_and_another_process_resumes(reference, tmp_path, method):
    """SLURM pre-emption: SIGTERM stops the run at the next chunk boundary after saving it."""
    ref, ref_calls = reference[method]
    path = tmp_path / "chains.npz"
    proc = subprocess.run([sys.executable, "-c", SIGTERM_CHILD, os.path.dirname(__file__), method, str(path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    with jax.enable_x64(True):
        out, _ = run(method, ck.Checkpoint(path, every=3600))
    assert out.num_resumed == ref_calls[13][0]
    assert_same_run(ref, out)
