"""Tests for reprior.experiments.runner: grid expansion, cell keys, shards, the cell store, resume after kill/Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from reprior.experiments.runner import grid
from reprior.experiments.runner.store import CellStore, atomic_write

NAMES = dict(samplers=("nuts", "hmc"), datasets=("synthetic", "digits", "diabetes"),
             activations=("relu", "erf", "gelu", "tanh"))


def _options(**overrides):
    return grid.validate(grid.merge(overrides), **NAMES)


def _cells(**overrides):
    return grid.expand(_options(**overrides), dtype="float64")


# ---------------------------------------------------------------------------
# Grid expansion
# ---------------------------------------------------------------------------


def test_expand_counts_and_order():
    cells = _cells(widths=[4, 8, 16], parameterisations=["standard", "reprior", "reprior-sampled"], seeds=[0, 1])
    assert len(cells) == 3 * 3 * 2
    assert [c.index for c in cells] == list(range(18))
    # seeds vary slower than widths, widths slower than parameterisations
    got = [(c.settings["seed"], c.settings["width"], c.settings["parameterisation"]) for c in cells]
    want = [(s, w, p) for s in (0, 1) for w in (4, 8, 16) for p in ("standard", "reprior", "reprior-sampled")]
    assert got == want
    assert len({c.key for c in cells}) == 18
    readouts = {c.settings["parameterisation"]: c.settings["readout"] for c in cells}
    assert readouts == {"standard": "sampled", "reprior": "exact", "reprior-sampled": "sampled"}


def test_expand_all_axes_multiply():
    cells = _cells(datasets=["synthetic", "diabetes"], n_train=[8, 16], depths=[1, 2], activations=["relu", "erf"],
                   noise_std=[0.1, 0.5], samplers=["nuts", "hmc"], seeds=[0, 1, 2], widths=[4, 8],
                   parameterisations=["standard", "reprior"])
    assert len(cells) == 2 * 2 * 2 * 2 * 2 * 2 * 3 * 2 * 2
    assert cells[0].settings["dataset"] == "synthetic" and cells[-1].settings["dataset"] == "diabetes"


def test_expand_architectures_and_their_depths():
    cells = _cells(archs=["mlp", "resnet"], residual_scalings=["uniform", "progressive"], widths=[2],
                   parameterisations=["reprior"])
    mlp = [c.settings for c in cells if c.settings["arch"] == "mlp"]
    resnet = [c.settings for c in cells if c.settings["arch"] == "resnet"]
    # default depths per architecture; residual scaling multiplies ResNet cells only
    assert [(s["depth"], "residual_scaling" in s) for s in mlp] == [(1, False)]
    assert sorted((s["depth"], s["residual_scaling"]) for s in resnet) == [(8, "progressive"), (8, "uniform")]
    assert cells[0].settings["arch"] == "mlp"
    with pytest.raises(grid.ConfigError, match="6k"):
        _options(archs=["resnet"], depths=[3])


def test_sampler_options_and_target_accept_in_settings():
    (cell,) = _cells(widths=[4], parameterisations=["reprior"], target_accept=0.9,
                     sampler_options={"max_tree_depth": 5})
    assert cell.settings["sampler_options"] == {"max_tree_depth": 5, "target_accept_prob": 0.9}


def test_config_file_then_flags(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('dataset = "synthetic"\nwidths = [4, 8]\nseeds = [0, 1]\nnum_samples = 50\n'
                    'parameterisation = "reprior"\n[sampler_options]\nmax_tree_depth = 4\n'
                    '[dataset_options]\nin_dim = 3\n')
    config = grid.load_config(path)
    assert config["out"] == str(Path("runs") / "mine")  # default output directory from the file name
    merged = grid.merge(config, {"widths": [16], "num_samples": None, "seeds": None})
    options = grid.validate(merged, **NAMES)
    assert options["widths"] == [16]  # flag wins
    assert options["seeds"] == [0, 1] and options["num_samples"] == 50  # None flags do not override
    assert options["parameterisations"] == ["reprior"]  # scalar alias becomes a one-value axis
    assert options["num_chains"] == grid.DEFAULTS["num_chains"]  # default where neither says
    cells = grid.expand(options, dtype="float64")
    assert len(cells) == 2
    assert cells[0].settings["dataset_options"] == {"in_dim": 3}


@pytest.mark.parametrize("text, match", [
    ("widths = [4,\n", "not valid TOML"),
    ("wdths = [4]\n", "unknown key 'wdths'"),
    ("width = 4\nwidths = [8]\n", "given twice"),
])
def test_bad_config_files(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(grid.ConfigError, match=match):
        grid.load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(grid.ConfigError, match="does not exist"):
        grid.load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("overrides, match", [
    (dict(widths=[4, -3]), "widths"), (dict(widths=[]), "at least one"), (dict(widths=[4, 4]), "distinct"),
    (dict(widths=[2.5]), "widths"), (dict(noise_std=[0.0]), "noise_std"), (dict(target_accept=1.5), "target_accept"),
    (dict(parameterisations=["sampled"]), "parameterisations"), (dict(samplers=["mala"]), "sampler"),
    (dict(datasets=["mnist"]), "dataset"), (dict(num_chains=0), "num_chains"), (dict(keep="some"), "keep"),
    (dict(sampler_options=[1]), "sampler_options"), (dict(report="yes"), "report"),
])
def test_validation_errors(overrides, match):
    with pytest.raises(grid.ConfigError, match=match):
        _options(**overrides)


# ---------------------------------------------------------------------------
# Cell keys
# ---------------------------------------------------------------------------

SETTINGS = {"arch": "mlp", "depth": 1, "width": 64, "activation": "relu", "dataset": "digits", "data_path": None,
            "dataset_options": {}, "n_train": 128, "n_test": 64, "data_seed": 0, "noise_std": 0.1,
            "parameterisation": "reprior", "readout": "exact", "sampler": "nuts", "sampler_options": {},
            "num_warmup": 300, "num_samples": 300, "num_chains": 2, "thinning": 1, "seed": 0,
            "chain_method": "sequential", "keep": "auto", "num_projections": 10, "dtype": "float64"}
GOLDEN_KEY = "4b8b85c22d9b991f"  # sha256 of the canonical JSON of SETTINGS: must never change


def test_cell_key_golden_and_order_independent():
    key = grid.cell_key(SETTINGS)
    assert len(key) == grid.KEY_LENGTH and int(key, 16) >= 0
    assert key == GOLDEN_KEY
    assert grid.cell_key(dict(reversed(list(SETTINGS.items())))) == key
    nested = dict(SETTINGS, sampler_options={"a": 1, "b": 2})
    assert grid.cell_key(nested) == grid.cell_key(dict(SETTINGS, sampler_options={"b": 2, "a": 1}))


def test_cell_key_changes_with_every_setting():
    key = grid.cell_key(SETTINGS)
    changed = {"arch": "resnet", "depth": 2, "width": 65, "activation": "erf", "dataset": "synthetic",
               "data_path": "x.npz", "dataset_options": {"in_dim": 3}, "n_train": 127, "n_test": 0, "data_seed": 1,
               "noise_std": 0.1000001, "parameterisation": "reprior-sampled", "readout": "sampled",
               "sampler": "hmc", "sampler_options": {"max_tree_depth": 8}, "num_warmup": 301, "num_samples": 1,
               "num_chains": 3, "thinning": 2, "seed": 1, "chain_method": "vectorized", "keep": "none",
               "num_projections": 0, "dtype": "float32"}
    assert set(changed) == set(SETTINGS)
    keys = {grid.cell_key(dict(SETTINGS, **{name: value})) for name, value in changed.items()}
    assert key not in keys and len(keys) == len(changed)
    assert grid.cell_key(dict(SETTINGS, residual_scaling="uniform")) != key


def test_cell_key_same_in_another_process():
    code = ("import json, sys; from reprior.experiments.runner.grid import cell_key; "
            "print(cell_key(json.loads(sys.stdin.read())))")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(SETTINGS), capture_output=True, text=True,
                         env=env, check=True, timeout=300)
    assert out.stdout.strip() == grid.cell_key(SETTINGS)


def test_expand_keys_are_reproducible():
    a = [c.key for c in _cells(widths=[4, 8], seeds=[0, 1])]
    b = [c.key for c in _cells(seeds=[0, 1], widths=[4, 8])]
    assert a == b
    float32 = grid.expand(_options(widths=[4, 8], seeds=[0, 1]), dtype="float32")
    assert not {c.key for c in float32} & set(a)  # the resolved dtype is a setting


# ---------------------------------------------------------------------------
# Shards
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7])
def test_shards_disjoint_and_cover_the_grid(count):
    cells = _cells(widths=[4, 8, 16, 32], parameterisations=["standard", "reprior", "reprior-sampled"], seeds=[0, 1])
    shards = [grid.select_shard(cells, (i, count)) for i in range(count)]
    keys = [c.key for shard in shards for c in shard]
    assert sorted(keys) == sorted(c.key for c in cells)  # union = grid, no cell twice
    assert all(abs(len(s) - len(cells) / count) < 1 for s in shards)  # balanced
    for shard in shards:  # grid order kept inside a shard
        assert [c.index for c in shard] == sorted(c.index for c in shard)
    # the split depends on the keys only, not on the order in which the grid was written
    reordered = _cells(seeds=[1, 0], parameterisations=["reprior-sampled", "standard", "reprior"],
                       widths=[32, 16, 8, 4])
    for i in range(count):
        assert {c.key for c in grid.select_shard(reordered, (i, count))} == {c.key for c in shards[i]}


@pytest.mark.parametrize("text", ["3/2", "2/2", "-1/2", "1/0", "1", "a/b", "1/2/3", ""])
def test_bad_shards(text):
    with pytest.raises(grid.ConfigError, match="shard"):
        grid.parse_shard(text)


def test_parse_shard():
    assert grid.parse_shard("0/1") == (0, 1)
    assert grid.parse_shard("3/4") == (3, 4)


# ---------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "file.json"
    target.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.json"]
    atomic_write(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.json"]


class _FakeIdata:
    def to_netcdf(self, path):
        Path(path).write_bytes(b"netcdf")


def test_store_trusts_only_whole_matching_records(tmp_path):
    store = CellStore(tmp_path)
    settings = dict(SETTINGS)
    key = grid.cell_key(settings)
    assert not store.is_finished(key, settings) and store.finished() == {}
    store.start(key, settings)
    assert not store.is_finished(key, settings)  # settings.json alone
    store.write_idata(key, _FakeIdata())
    assert not store.is_finished(key, settings)  # no metrics.json yet
    metrics_path = store.cell_dir(key) / "metrics.json"
    metrics_path.write_text('{"key": "' + key + '", "settings": {')  # truncated, as by a non-atomic writer
    assert not store.is_finished(key, settings)
    store.finish(key, settings, {"ess_bulk_pred_median": np.float64(3.5), "divergences": np.int64(0),
                                 "rhat_max": float("nan")}, {"keep": "all"})
    assert store.is_finished(key, settings)
    assert store.read_record(key)["metrics"]["divergences"] == 0
    assert not store.is_finished(key, dict(settings, width=65))  # different settings
    assert list(store.finished()) == [key]
    store.idata_path(key).unlink()
    assert not store.is_finished(key, settings)  # metrics without idata
    store.write_idata(key, _FakeIdata())
    store.start(key, settings)  # a rerun of the cell drops the old metrics first
    assert not store.is_finished(key, settings)



HEALTHY_METRICS = {"ess_per_grad_pred": 0.0123, "ess_bulk_pred_median": 345.6, "rhat_max": 1.004,
                   "accept_mean": 0.81, "divergences": 0, "nonfinite": 0, "num_draws": 600}


def _finish_cell(store: CellStore, settings: dict, **metrics) -> str:
    key = grid.cell_key(settings)
    store.start(key, settings)
    store.write_idata(key, _FakeIdata())
    store.finish(key, settings, {**HEALTHY_METRICS, **metrics}, {"keep": "all"})
    return key


def _status(out, capsys):
    from reprior.experiments import cli

    capsys.readouterr()
    code = cli.main(["status", str(out)])
    return code, capsys.readouterr().out.splitlines()


def test_status_shows_failed_chains_apart_from_done(tmp_path, capsys):
    out = tmp_path / "out"
    store = CellStore(out)
    healthy = _finish_cell(store, SETTINGS)
    code, lines = _status(out, capsys)  # no failed chains: the totals read as before
    assert code == 0
    assert lines == [f"{out}: 1 cells: 1 done, 0 running, 0 failed, 0 pending",
                     f"{healthy}  done     -                   mlp w=64 reprior nuts seed=0"]
    stuck = _finish_cell(store, dict(SETTINGS, seed=1), rhat_max=1.77)  # two chains stuck apart
    slow = _finish_cell(store, dict(SETTINGS, seed=2), accept_mean=0.005, divergences=72)
    lone = _finish_cell(store, dict(SETTINGS, seed=3, num_chains=1), rhat_max=None)  # one chain: no R-hat
    store.start("f" * 16, dict(SETTINGS, seed=4))
    store.fail("f" * 16, "Traceback (most recent call last):\nValueError: bad\n")
    code, lines = _status(out, capsys)
    assert code == 1  # for the cell that raised; failed chains alone leave the exit status 0
    assert lines[0] == f"{out}: 5 cells: 2 done, 2 failed chains, 0 running, 1 failed, 0 pending"
    assert lines[1:] == [  # in grid order (here: by seed), whatever their state
        f"{healthy}  done           -                   mlp w=64 reprior nuts seed=0",
        f"{stuck}  failed chains  -                   mlp w=64 reprior nuts seed=1  | R-hat 1.77",
        f"{slow}  failed chains  -                   mlp w=64 reprior nuts seed=2  | accept 0.005, 12% divergent",
        f"{lone}  done           -                   mlp w=64 reprior nuts seed=3",
        "f" * 16 + "  failed         -                   mlp w=64 reprior nuts seed=4  | ValueError: bad"]
    from reprior.inference.health import chain_failure
    from reprior.experiments.runner.status import sweep_status

    cells = {c.key: c for c in sweep_status(out)}
    for key in (healthy, stuck, slow, lone):  # the reports' rule, on the same record
        record = store.read_record(key)
        assert cells[key].note == chain_failure({**record["settings"], **record["metrics"]})
    shutil.rmtree(store.cell_dir("f" * 16))  # failed chains, no failed cell
    code, lines = _status(out, capsys)
    assert code == 0 and lines[0] == f"{out}: 4 cells: 2 done, 2 failed chains, 0 running, 0 failed, 0 pending"


@pytest.mark.parametrize("metrics, num_chains, tail", [
    ({}, 2, "1.5 s"),
    ({}, None, "1.5 s"),
    ({"rhat_max": 1.77}, 2, "1.5 s; FAILED (R-hat 1.77)"),
    ({"rhat_max": 1.77}, 1, "1.5 s"),  # one chain has no R-hat
    ({"rhat_max": 1.77}, None, "1.5 s"),  # the number of chains unknown: R-hat not judged
    ({"accept_mean": 0.005, "divergences": 72, "rhat_max": 1.77}, 2,
     "1.5 s; FAILED (accept 0.005, 12% divergent, R-hat 1.77)"),
    ({"nonfinite": 61}, None, "1.5 s; FAILED (10.2% non-finite)"),
])
def test_summary_line_says_when_the_chains_failed(metrics, num_chains, tail):
    from reprior.inference.health import chain_failure
    from reprior.experiments.runner.sweep import summary_line

    metrics = {**HEALTHY_METRICS, **metrics}
    line = summary_line(metrics, 1.5, num_chains=num_chains)
    accept = f"{metrics['accept_mean']:.3g}"
    assert line == f"ESS/grad(pred) 0.0123, ESS(pred) 346, R-hat {metrics['rhat_max']:.3g}, accept {accept}, " + tail
    assert ("FAILED" in line) == bool(chain_failure({**metrics, "num_chains": num_chains}))
    if num_chains is None:
        assert summary_line(metrics, 1.5) == line  # the default: unknown

def test_keep_auto_bounds_the_stored_draws():
    from reprior.experiments.runner.sweep import KEEP_BUDGET_BYTES, build_bnn, resolve_keep

    def keep(width, **extra):
        (cell,) = _cells(widths=[width], parameterisations=["reprior"], **{"num_samples": 150, **extra})
        return resolve_keep(cell.settings, build_bnn(cell.settings), (128, 64), 10)

    assert keep(64) == "all"  # ~5k parameters
    assert keep(1024) == "readout"  # 77k parameters: 90 MB of draws; the readout's 20k: 25 MB
    assert keep(1024, num_samples=2000) == "none"
    assert keep(1024, keep="all") == "all"  # an explicit choice is kept
    assert KEEP_BUDGET_BYTES == 64 * 2**20


# ---------------------------------------------------------------------------
# Resume after Ctrl-C and kill -9 (a real sweep process)
# ---------------------------------------------------------------------------

TINY = ["sweep", "--dataset", "synthetic", "--n-train", "8", "--n-test", "4", "--widths", "3",
        "--parameterisations", "standard", "reprior", "reprior-sampled", "--num-warmup", "10", "--num-samples", "8",
        "--num-chains", "2", "--sampler", "hmc", "--sampler-option", "num_steps=3", "--no-report", "--quiet"]


def _finished(out: Path) -> dict[str, float]:
    """{key: mtime_ns of metrics.json} of the finished cells (metrics.json parses)."""
    done = {}
    for path in (out / "cells").glob("*/metrics.json"):
        json.loads(path.read_text())  # never a half-written file
        done[path.parent.name] = path.stat().st_mtime_ns
    return done


def _start(out: Path):
    """The sweep in a child Python whose SIGINT turns into KeyboardInterrupt, as in a terminal, even
    when this test run was started in the background by a shell without job control (which starts
    it with SIGINT ignored, a setting children inherit)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    code = ("import signal, sys, reprior.experiments.cli; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "sys.exit(reprior.experiments.cli.main())")
    return subprocess.Popen([sys.executable, "-c", code, *TINY, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_cells(proc, out: Path, num: int, timeout: float = 600.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = _finished(out)
        if len(done) >= num:
            return done
        if proc.poll() is not None:
            pytest.fail(f"sweep exited early ({proc.returncode}): {proc.stdout.read()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no cell finished in time")


@pytest.mark.e2e  # a sweep process interrupted and killed: about 25 s
def test_resume_after_ctrl_c_and_kill(tmp_path):
    out = tmp_path / "sweep"
    # 1. Ctrl-C after the first finished cell: exit 130, finished cells whole, nothing half-written trusted
    proc = _start(out)
    _wait_for_cells(proc, out, 1)
    proc.send_signal(signal.SIGINT)
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    after_int = _finished(out)
    assert 1 <= len(after_int) < 3
    # 2. rerun, kill -9 once another cell has finished
    proc = _start(out)
    after_kill = _wait_for_cells(proc, out, len(after_int) + 1)
    proc.kill()
    proc.communicate(timeout=60)
    after_kill = _finished(out)
    assert all(after_kill[k] == t for k, t in after_int.items())  # skipped, not redone
    # 3. rerun to completion: the finished cells are skipped, the rest done
    proc = _start(out)
    text, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, text
    final = _finished(out)
    assert len(final) == 3
    assert all(final[k] == t for k, t in after_kill.items())
    assert f"{len(after_kill)} already finished" in text
    assert not list(out.glob("cells/*/.tmp-*"))
    for key in final:
        record = json.loads((out / "cells" / key / "metrics.json").read_text())
        assert record["key"] == key and grid.cell_key(record["settings"]) == key
        assert (out / "cells" / key / "idata.nc").stat().st_size > 0
