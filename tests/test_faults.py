"""Faults and bad input: every case asserts the exact outcome (message, exit status, files untouched).

Fast cases run by default (in-process CLI calls that stop before sampling, the
cell store with small fake files, the report on fake rows); the cases that run
real sweeps in child processes (Ctrl-C, SIGTERM, two sweeps at once) are marked
slow.  The guarantees tested here are documented in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from reprior.inference.arviz_compat import from_dict
from reprior._util import checks as _checks, interrupts
from reprior.experiments import preflight
from reprior.evaluation import diagnostics as dg
from reprior.experiments import report as report_mod
from reprior.experiments.data import load_dataset
from reprior.experiments.runner import grid
from reprior.experiments.runner.store import CellBusy, CellStore
from reprior.experiments.runner.sweep import write_sweep_report

from cli_helpers import one_line_error, run  # tests/cli_helpers.py

ROOT = Path(__file__).resolve().parents[1]


def tree(path: Path) -> dict:
    """{relative path: bytes} of every file under ``path`` (empty if it does not exist)."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------
# Bad command lines: one line naming the argument, expected and received; exit 2; nothing written
# ---------------------------------------------------------------------------

SYN = ["--dataset", "synthetic", "--widths", "4", "--n-train", "8", "--n-test", "4"]

BAD_SWEEPS = {
    # flag values
    "negative seed": (["--seeds", "-1"], ["--seeds", "an integer in [0, 4294967295]", "'-1'"]),
    "seed 2**64": (["--seeds", str(2**64)], ["--seeds", "an integer in [0, 4294967295]", str(2**64)]),
    "seed 2**32": (["--seeds", str(2**32)], ["--seeds", "4294967295]", str(2**32)]),
    "data seed 2**64": (["--data-seed", str(2**64)], ["--data-seed", str(2**64)]),
    "seed not a number": (["--seeds", "x"], ["--seeds", "'x'"]),
    "shard -1/2": (["--shard", "-1/2"], ["--shard", "0 <= I < K", "'-1/2'"]),
    "shard 2/2": (["--shard", "2/2"], ["--shard", "'2/2'"]),
    "shard 0/0": (["--shard", "0/0"], ["--shard", "'0/0'"]),
    "shard 1/-2": (["--shard", "1/-2"], ["--shard", "'1/-2'"]),
    "shard words": (["--shard", "one/two"], ["--shard", "'one/two'"]),
    "width 0": (["--widths", "0"], ["--widths", "a positive integer", "'0'"]),
    "width float": (["--widths", "2.5"], ["--widths", "'2.5'"]),
    "width nan": (["--widths", "nan"], ["--widths", "'nan'"]),
    "n-train 0": (["--n-train", "0"], ["--n-train", "'0'"]),
    "n-test -1": (["--n-test", "-1"], ["--n-test", "'-1'"]),
    "num-samples 0": (["--num-samples", "0"], ["--num-samples", "'0'"]),
    "num-warmup -5": (["--num-warmup", "-5"], ["--num-warmup", "'-5'"]),
    "thinning 0": (["--thinning", "0"], ["--thinning", "'0'"]),
    "noise inf": (["--noise-std", "inf"], ["--noise-std", "'inf'"]),
    "noise -1": (["--noise-std", "-1"], ["--noise-std", "'-1'"]),
    "noise nan": (["--noise-std", "nan"], ["--noise-std", "'nan'"]),
    "target accept 0": (["--target-accept", "0"], ["--target-accept", "(0, 1)", "'0'"]),
    "target accept 1": (["--target-accept", "1"], ["--target-accept", "'1'"]),
    "num-projections -1": (["--num-projections", "-1"], ["--num-projections", "'-1'"]),
    "dtype float16": (["--dtype", "float16"], ["--dtype", "float16"]),
    "chain method threads": (["--chain-method", "threads"], ["--chain-method", "threads"]),
    "keep some": (["--keep", "some"], ["--keep", "some"]),
    "arch cnn": (["--arch", "cnn"], ["--arch", "cnn"]),
    "residual scaling": (["--residual-scaling", "none"], ["--residual-scaling", "none"]),
    "activation swish": (["--activation", "swish"], ["activation", "swish"]),
    "sampler mala": (["--sampler", "mala"], ["sampler", "mala"]),
    "dataset mnist": (["--dataset", "mnist"], ["dataset", "mnist"]),
    "duplicate widths": (["--widths", "4", "4"], ["widths", "distinct values"]),
    "option syntax": (["--sampler-option", "max_tree_depth"], ["--sampler-option", "KEY=VALUE"]),
    "option empty key": (["--sampler-option", "=3"], ["--sampler-option", "KEY=VALUE", "'=3'"]),
    # sampler options: names, types, ranges (built once up front)
    "option unknown": (["--sampler-option", "max_depth=3"], ["sampler_options", "max_depth"]),
    "tree depth abc": (["--sampler-option", "max_tree_depth=abc"],
                       ["sampler_options", "max_tree_depth", "a positive integer", "'abc'"]),
    "tree depth 0": (["--sampler-option", "max_tree_depth=0"], ["max_tree_depth", "a positive integer", "0"]),
    "tree depth -3": (["--sampler-option", "max_tree_depth=-3"], ["max_tree_depth", "-3"]),
    "tree depth 2.5": (["--sampler-option", "max_tree_depth=2.5"], ["max_tree_depth", "2.5"]),
    "tree depth true": (["--sampler-option", "max_tree_depth=true"], ["max_tree_depth", "True"]),
    "accept prob 2": (["--sampler-option", "target_accept_prob=2"], ["target_accept_prob", "(0, 1)", "2"]),
    "accept prob text": (["--sampler-option", "target_accept_prob=high"], ["target_accept_prob", "'high'"]),
    "hmc steps 0": (["--sampler", "hmc", "--sampler-option", "num_steps=0"], ["num_steps", "0"]),
    "hmc steps text": (["--sampler", "hmc", "--sampler-option", "num_steps=many"], ["num_steps", "'many'"]),
    "nuts option for hmc": (["--sampler", "hmc", "--sampler-option", "max_tree_depth=3"],
                            ["sampler_options", "'hmc'", "max_tree_depth"]),
    # devices, memory, outputs
    "width too large": (["--widths", "10000000000"], ["--widths", "width 10000000000", "GiB", "smaller width"]),
    "too many chains at once": (["--num-chains", "1000000000", "--chain-method", "vectorized"],
                                ["num_chains (--num-chains)", "1000000000 vectorized chains held at once",
                                 "--chain-method sequential"]),
    "synthetic data too large": (["--n-train", "1000000000"],
                                 ["argument `n_train`", "<= 2**31 values", "n_train 1,000,000,000"]),
    "data path for npz is a dir": (["--dataset", "npz", "--data-path", "/"],
                                   ["argument `path`", "which is not a file"]),
    "csv without target columns": (["--dataset", "csv", "--data-path", "/dev/null"],
                                   ["argument `target_columns`", "received None"]),
    "keep none, no projections": (["--keep", "none", "--num-projections", "0"],
                                  ["num_projections", "keep = 'none'", "0"]),
    "resnet on tables": (["--arch", "resnet"], ["resnet", "image"]),
    "resnet depth 5": (["--arch", "resnet", "--depth", "5", "--dataset", "digits"], ["depth", "6k + 2", "5"]),
    "too many points": (["--dataset", "diabetes", "--n-train", "5000"], ["n_train", "5000"]),
    "loader option": (["--dataset-option", "colour=1"], ["colour"]),
    "loader option value": (["--dataset-option", "in_dim=-2"], ["in_dim", "-2"]),
}


@pytest.mark.parametrize("flags, fragments", list(BAD_SWEEPS.values()), ids=list(BAD_SWEEPS))
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_bad_sweep_flags_one_line_exit_2_nothing_written(capsys, tmp_path, flags, fragments, dry_run):
    out = tmp_path / "out"
    argv = ["sweep", *SYN, "--out", out, *flags, *(["--dry-run"] if dry_run else [])]
    message = one_line_error(*run(capsys, *argv)[::2])
    for fragment in fragments:
        assert fragment in message, message
    assert not out.exists()


def test_out_is_a_file(capsys, tmp_path):
    target = tmp_path / "results"
    target.write_text("precious")
    message = one_line_error(*run(capsys, "sweep", *SYN, "--out", target)[::2])
    assert message == f"out (--out): expected a directory, received {str(target)!r}, which is a file"
    assert target.read_text() == "precious"


def test_out_below_a_file(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    message = one_line_error(*run(capsys, "sweep", *SYN, "--out", blocker / "sub" / "out")[::2])
    assert message == (f"out (--out): expected a directory path, received {str(blocker / 'sub' / 'out')!r}, "
                       f"but {str(blocker)!r} on its way is a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_out_not_writable(capsys, tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        message = one_line_error(*run(capsys, "sweep", *SYN, "--out", locked / "out")[::2])
    finally:
        locked.chmod(0o700)
    assert "out (--out): expected a writable directory" in message
    assert list(locked.iterdir()) == []


def test_bare_sweep_refuses_the_default_grid(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = one_line_error(*run(capsys, "sweep")[::2])
    assert message.startswith("--config/--widths: expected a grid")
    assert "received neither" in message and "--yes" in message and "6 cells" in message
    assert list(tmp_path.iterdir()) == []
    code, out, _ = run(capsys, "sweep", "--dry-run")  # a dry run shows the grid and the plan
    assert code == 0
    assert "6 cells in the grid, 6 selected (7,200 iterations, 7,200 to 7,365,600 gradient evaluations)" in out
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------
# Config files
# ---------------------------------------------------------------------------

BAD_CONFIGS = {
    "invalid utf-8": (b"widths = [4]\n\xff\xfe\n", "config (--config): expected a UTF-8 TOML file"),
    "latin-1 comment": ("# caf\u00e9\nwidths = [4]\n".encode("latin-1"), "not UTF-8 at offset 5"),
    "binary": (bytes(range(256)), "expected a UTF-8 TOML file"),
    "bad toml": (b"widths = [4,\n", "is not valid TOML"),
    "unknown key": (b"wdiths = [4]\n", "unknown key 'wdiths'"),
    "alias twice": (b"width = 4\nwidths = [8]\n", "given twice"),
    "string depth": (b'widths = [4]\n[sampler_options]\nmax_tree_depth = "deep"\n',
                     "sampler 'nuts' rejects {\"max_tree_depth\": \"deep\"}"),
    "seed 2**63-1": (b"widths = [4]\nseeds = [9223372036854775807]\n", "seeds (--seeds): expected an integer in"),
    "seed 2**64": (b"widths = [4]\nseeds = [18446744073709551616]\n",
                   "seeds (--seeds): expected an integer in [0, 4294967295], received 18446744073709551616"),
    "negative seed": (b"widths = [4]\nseeds = [-1]\n", "seeds (--seeds): expected an integer in [0, 4294967295]"),
    "widths text": (b"widths = 'many'\n", "widths (--widths): expected a positive integer, received 'many'"),
    "widths empty": (b"widths = []\n", "widths (--widths): expected at least one value"),
    "chains float": (b"widths = [4]\nnum_chains = 2.5\n", "num_chains (--num-chains): expected a positive integer"),
    "noise text": (b"widths = [4]\nnoise_std = 'low'\n", "noise_std (--noise-std): expected a positive number"),
    "report text": (b"widths = [4]\nreport = 'yes'\n", "report (--report): expected true or false"),
    "options not a table": (b"widths = [4]\nsampler_options = 3\n", "sampler_options (--sampler-option)"),
    "data path empty": (b"widths = [4]\ndata_path = ''\n", "data_path (--data-path): expected a file or directory"),
    "name number": (b"widths = [4]\nname = 3\n", "name: expected a string, received 3"),
    "keep none no projections": (b"widths = [4]\nkeep = 'none'\nnum_projections = 0\n", "num_projections"),
    "target accept 1.5": (b"widths = [4]\ntarget_accept = 1.5\n", "target_accept (--target-accept)"),
    "inf noise": (b"widths = [4]\nnoise_std = inf\n", "noise_std (--noise-std): expected a positive number"),
}


@pytest.mark.parametrize("content, fragment", list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS))
def test_bad_config_files(capsys, tmp_path, content, fragment):
    config = tmp_path / "bad.toml"
    config.write_bytes(content)
    out = tmp_path / "out"
    message = one_line_error(*run(capsys, "sweep", "--config", config, "--dataset", "synthetic", "--out", out)[::2])
    assert fragment in message, message
    assert not out.exists()


def test_config_out_not_a_path(capsys, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_bytes(b"widths = [4]\nout = 3\n")
    message = one_line_error(*run(capsys, "sweep", "--config", config)[::2])
    assert message == "out (--out): expected a directory path, received 3"


def test_config_that_is_a_directory(capsys, tmp_path):
    message = one_line_error(*run(capsys, "sweep", "--config", tmp_path)[::2])
    assert message == f"config (--config): expected a TOML file, received {str(tmp_path)!r}, a directory"


def test_config_with_a_byte_order_mark_is_read(tmp_path):
    config = tmp_path / "bom.toml"
    config.write_bytes(b"\xef\xbb\xbfwidths = [4]\n")
    assert grid.load_config(config)["widths"] == [4]


# ---------------------------------------------------------------------------
# Data files
# ---------------------------------------------------------------------------


def _csv_flags(path):
    return ["sweep", "--dataset", "csv", "--data-path", path, "--dataset-option", 'target_columns=["y"]',
            "--widths", "4", "--dry-run"]


def test_csv_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffa,b,y\n".encode() + b"".join(f"{i},{i * 2},{i % 3}\n".encode() for i in range(10)))
    data = load_dataset("csv", path=path, target_columns=["y"], n_train=6, n_test=4, standardise=False)
    assert data.info["input_columns"] == ["a", "b"]
    assert sorted(data.y_train[:, 0].tolist() + data.y_test[:, 0].tolist()) == sorted(i % 3 for i in range(10))


BAD_CSV = {
    "binary": (bytes(range(256)) * 4, "expected a text .csv file, received {path}, a binary file (NUL byte at offset 0)"),
    "gzip": (b"\x1f\x8b\x08\x00" + bytes(64), "a binary file (NUL byte at offset 3)"),
    "latin-1": ("caf\u00e9,y\n1,2\n".encode("latin-1"), "expected a UTF-8 text .csv file, received {path}, with a "
                                                          "byte that is not UTF-8 at offset 3"),
    "empty": (b"", "expected a .csv file with a header row, received {path}, which is empty"),
    "header only": (b"a,y\n", "expected data rows below the header"),
    "text cell": (b"a,y\n1,2\nabc,3\n", "line 3, column 'a': expected a number, received 'abc'"),
    "ragged": (b"a,y\n1,2\n1,2,3\n", "line 3: expected 2 cells like the header, received 3"),
    "nan cell": (b"a,y\n1,2\nnan,3\n", "argument `input_columns`: expected finite values"),
    "complex cell": (b"a,y\n1,2\n1+2j,3\n", "expected a number, received '1+2j'"),
    "missing target": (b"a,b\n1,2\n", "argument `target_columns`: expected columns of"),
    "unclosed quote": (b'a,y\n"1,2\n', "line 2: expected 2 cells like the header, received 1"),
}


@pytest.mark.parametrize("content, fragment", list(BAD_CSV.values()), ids=list(BAD_CSV))
def test_bad_csv_files(capsys, tmp_path, content, fragment):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    message = one_line_error(*run(capsys, *_csv_flags(path), "--out", tmp_path / "out")[::2])
    assert fragment.format(path=repr(str(path))) in message, message
    assert not (tmp_path / "out").exists()


def _npz_bytes(**arrays) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


GOOD = dict(x=np.arange(20.0).reshape(10, 2), y=np.arange(10.0))
BAD_NPZ = {
    "text file": (b"x,y\n1,2\n", "expected an .npz archive (a zip file), received {path}, which starts with b'x,y\\n1,2\\n'"),
    "empty file": (b"", "which is empty"),
    "pickle": (b"\x80\x04\x95" + bytes(20), "which starts with b'\\x80\\x04\\x95"),
    "truncated zip": (_npz_bytes(**GOOD)[:200], "expected"),
    "corrupt member": (_npz_bytes(**GOOD)[:60] + b"\x00" * 40 + _npz_bytes(**GOOD)[100:], "expected"),
    "complex x": (_npz_bytes(x=GOOD["x"] + 1j, y=GOOD["y"]), "argument `x`: expected an array of real numbers"),
    "string y": (_npz_bytes(x=GOOD["x"], y=np.array(["a"] * 10)), "argument `y`: expected an array of numbers"),
    "inf y": (_npz_bytes(x=GOOD["x"], y=np.r_[np.inf, GOOD["y"][1:]]), "argument `y`: expected finite values"),
    "rows differ": (_npz_bytes(x=GOOD["x"], y=GOOD["y"][:9]), "argument `y`: expected 10 rows"),
    "no x": (_npz_bytes(y=GOOD["y"]), "argument `x_key`: expected a key of"),
    "x 5-d": (_npz_bytes(x=np.zeros((10, 1, 1, 1, 1)), y=GOOD["y"]), "argument `x`: expected inputs of shape"),
    "x_test alone": (_npz_bytes(x_test=GOOD["x"], **GOOD), "argument `y_test_key`: expected a key of"),
}


@pytest.mark.parametrize("content, fragment", list(BAD_NPZ.values()), ids=list(BAD_NPZ))
def test_bad_npz_files(capsys, tmp_path, content, fragment):
    path = tmp_path / "data.npz"
    path.write_bytes(content)
    argv = ["sweep", "--dataset", "npz", "--data-path", path, "--widths", "4", "--out", tmp_path / "out"]
    message = one_line_error(*run(capsys, *argv)[::2])
    assert fragment.format(path=repr(str(path))) in message, message
    assert not (tmp_path / "out").exists()


def test_npy_given_as_npz(capsys, tmp_path):
    path = tmp_path / "data.npz"
    np.save(path.with_suffix(".npy"), GOOD["x"])
    path.with_suffix(".npy").rename(path)
    message = one_line_error(*run(capsys, "sweep", "--dataset", "npz", "--data-path", path, "--widths", "4",
                                  "--out", tmp_path / "out")[::2])
    assert message == f"argument `path`: expected an .npz archive, received {str(path)!r}, a single .npy array"


@pytest.mark.parametrize("value", [np.ones((4, 2)) * (1 + 1j), np.ones((4, 2), np.complex64)])
def test_complex_arrays_are_refused_not_truncated(value):
    with pytest.raises(ValueError, match=r"argument `x`: expected an array of real numbers, received 'array of "
                                         r"shape \(4, 2\) and dtype complex(64|128)'"):
        _checks.finite_array("x", value)


def test_complex_inputs_to_sample_are_refused():
    import reprior

    bnn = reprior.BNN(reprior.MLP(width=3, depth=1), noise_std=0.1)
    x = np.ones((4, 2)) + 1j
    with pytest.raises(ValueError, match=r"argument `x`: expected an array of real numbers"):
        reprior.sample(bnn, x, np.ones((4, 1)), num_warmup=1, num_samples=1, num_chains=1, progress_bar=False)


# ---------------------------------------------------------------------------
# sbc
# ---------------------------------------------------------------------------

BAD_SBC = {
    "too few replications": (["--num-replications", "2"],
                             "--num-replications: expected at least 50 (5 per rank bin, --num-bins 10) for the "
                             "chi-square test to mean anything, received 2"),
    "49 replications": (["--num-replications", "49"], "expected at least 50"),
    "one bin": (["--num-bins", "1"], "--num-bins: expected an integer >= 2, received 1"),
    "plot .txt": (["--plot", "{tmp}/ranks.txt"], "--plot: expected a file name ending in .png, .pdf"),
    "plot no extension": (["--plot", "{tmp}/ranks"], "--plot: expected a file name ending in"),
    "plot in missing dir": (["--plot", "{tmp}/no/ranks.png"], "--plot: expected a path in an existing directory"),
    "plot is a dir": (["--plot", "{tmp}/d.png"], "--plot: expected a file path, received"),
    "json in missing dir": (["--json", "{tmp}/no/r.json"], "--json: expected a path in an existing directory"),
}


@pytest.mark.parametrize("flags, fragment", list(BAD_SBC.values()), ids=list(BAD_SBC))
def test_bad_sbc_flags(capsys, tmp_path, flags, fragment):
    (tmp_path / "d.png").mkdir()
    before = tree(tmp_path)
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    message = one_line_error(*run(capsys, "sbc", *flags)[::2])
    assert fragment in message, message
    assert tree(tmp_path) == before


# ---------------------------------------------------------------------------
# The cell store: verified cells, broken cells, locks, other writers' files
# ---------------------------------------------------------------------------

SETTINGS = {"arch": "mlp", "depth": 1, "width": 3, "activation": "relu", "dataset": "synthetic", "data_path": None,
            "dataset_options": {}, "n_train": 8, "n_test": 4, "data_seed": 0, "noise_std": 0.1,
            "parameterisation": "reprior", "readout": "exact", "sampler": "hmc", "sampler_options": {},
            "num_warmup": 4, "num_samples": 6, "num_chains": 2, "thinning": 1, "seed": 0,
            "chain_method": "sequential", "keep": "all", "num_projections": 2, "dtype": "float64"}


def fake_idata(num_chains=2, num_draws=6, seed=0):
    rng = np.random.default_rng(seed)
    return from_dict({
        "posterior": {"theta_proj": rng.standard_normal((num_chains, num_draws, 4))},
        "posterior_predictive": {"f_test": rng.standard_normal((num_chains, num_draws, 4, 1))},
        "sample_stats": {"accept_prob": rng.uniform(0.5, 1, (num_chains, num_draws)),
                         "diverging": np.zeros((num_chains, num_draws), bool)}})


def fake_metrics(**overrides):
    metrics = dict.fromkeys(dg.metric_names(), 1.0)
    metrics.update(rhat_max=1.0, accept_mean=0.8, divergences=0, num_draws=12)
    metrics.update(overrides)
    return metrics


def finished_cell(store: CellStore, settings=SETTINGS, command="reprior sweep --widths 3 --out X", **metrics):
    key = grid.cell_key(settings)
    with store.lock(key):
        store.start(key, settings, command)
        store.write_idata(key, fake_idata(settings["num_chains"]))
        store.finish(key, settings, fake_metrics(**metrics), {"keep": "all"})
    return key


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


CORRUPTIONS = {
    "idata truncated": (lambda d: _truncate(d / "idata.nc"), "idata.nc has {n} bytes, the manifest says"),
    "idata one byte flipped": (lambda d: _flip_byte(d / "idata.nc"), "idata.nc does not match its sha256"),
    "idata emptied": (lambda d: (d / "idata.nc").write_bytes(b""), "idata.nc has 0 bytes"),
    "idata deleted": (lambda d: (d / "idata.nc").unlink(), "idata.nc is missing"),
    "metrics truncated": (lambda d: _truncate(d / "metrics.json"), "metrics.json has {n} bytes"),
    "metrics edited": (lambda d: (d / "metrics.json").write_text(
        (d / "metrics.json").read_text().replace('"accept_mean": 0.8', '"accept_mean": 0.9')),
        "metrics.json does not match its sha256"),
    "metrics deleted": (lambda d: (d / "metrics.json").unlink(), "metrics.json is missing"),
    "manifest truncated": (lambda d: _truncate(d / "manifest.json"), "manifest.json is unreadable or incomplete"),
    "manifest not json": (lambda d: (d / "manifest.json").write_text("[1, 2]"), "manifest.json is unreadable"),
    "manifest other key": (lambda d: (d / "manifest.json").write_text(
        (d / "manifest.json").read_text().replace(d.name, "0" * 16)), "manifest.json is unreadable or incomplete"),
    "no manifest, idata truncated": (lambda d: ((d / "manifest.json").unlink(), _truncate(d / "idata.nc")),
                                     "idata.nc cannot be read (Unable to "),
    "no manifest, metrics truncated": (lambda d: ((d / "manifest.json").unlink(), _truncate(d / "metrics.json")),
                                       "metrics.json without manifest.json is not a whole cell record"),
}


def test_a_cell_without_manifest_is_checked_by_opening_its_netcdf(tmp_path):
    """Cells written before manifests existed stay finished when their files are whole."""
    store = CellStore(tmp_path)
    key = finished_cell(store)
    (store.cell_dir(key) / "manifest.json").unlink()
    state = store.state(key, SETTINGS)
    assert state.finished and state.reason == "no manifest (an older reprior): checked by opening idata.nc"


@pytest.fixture
def fake_document(monkeypatch):
    """Replace the report's document (tables, plots) by a record of its rows and skipped cells."""
    calls = []

    def write_report(out_dir, rows, *, command, cells_idata=None, skipped_cells=None, **kwargs):
        calls.append({"cells": [r["cell"] for r in rows], "skipped": skipped_cells})
        path = Path(out_dir) / "report.md"
        path.write_text("\n".join(skipped_cells or []))
        return {"report_md": path, "report_html": path, "summary_csv": path}

    monkeypatch.setattr(report_mod, "write_report", write_report)
    return calls


@pytest.mark.parametrize("corrupt, reason", list(CORRUPTIONS.values()), ids=list(CORRUPTIONS))
def test_a_corrupt_cell_is_broken_redone_and_skipped_by_the_report(capsys, tmp_path, corrupt, reason, fake_document):
    store = CellStore(tmp_path)
    key = finished_cell(store)
    other = finished_cell(store, dict(SETTINGS, parameterisation="standard", readout="sampled"))
    assert store.is_finished(key, SETTINGS)
    corrupt(store.cell_dir(key))
    state = store.state(key, SETTINGS)
    size = (store.cell_dir(key) / reason.split(" ")[0]).stat().st_size if "{n}" in reason else None
    assert state.state == "broken"
    assert state.reason.startswith(reason.format(n=size)), state.reason
    assert not store.is_finished(key, SETTINGS)  # the next sweep redoes it
    assert list(store.finished()) == [other]
    # `reprior report` skips it with one warning line naming the cell and the repairing command, exit 0
    code, out, err = run(capsys, "report", tmp_path)
    assert code == 0, err
    assert err.strip().splitlines() == [f"warning: skipped broken cell {key} ({state.reason}); repair with: "
                                        "reprior sweep --widths 3 --out X"]
    assert fake_document == [{"cells": [other], "skipped": [
        f"skipped broken cell {key} ({state.reason}); repair with: reprior sweep --widths 3 --out X"]}]


def test_the_report_lists_a_skipped_cell(capsys, tmp_path):
    store = CellStore(tmp_path)
    key = finished_cell(store)
    other = finished_cell(store, dict(SETTINGS, parameterisation="standard", readout="sampled"))
    _truncate(store.idata_path(key))
    code, _, err = run(capsys, "report", tmp_path)
    assert code == 0 and err.startswith(f"warning: skipped broken cell {key} (idata.nc has ")
    text = (tmp_path / "report.md").read_text()
    assert "from 1 cells" in text and f"- skipped broken cell {key} (idata.nc has " in text
    assert "Warning: 1 cells were left out of this report:" in text
    assert other in (tmp_path / "summary.csv").read_text() and key not in (tmp_path / "summary.csv").read_text()


def test_report_of_only_broken_cells_is_an_error(capsys, tmp_path):
    store = CellStore(tmp_path)
    key = finished_cell(store)
    _truncate(store.idata_path(key))
    message = one_line_error(*run(capsys, "report", tmp_path)[::2])
    assert message == (f"DIR: expected finished cells under {str(tmp_path / 'cells')!r}, received none "
                       "(1 broken: rerun the sweep to redo them)")
    assert not (tmp_path / "report.md").exists()


def test_unfinished_cells_are_not_broken(tmp_path):
    store = CellStore(tmp_path)
    key = grid.cell_key(SETTINGS)
    assert store.state(key).state == "missing"
    with store.lock(key):
        store.start(key, SETTINGS, "cmd")
        assert store.state(key).state == "unfinished"
        store.write_idata(key, fake_idata())
        assert store.state(key).state == "unfinished"  # idata without manifest: not trusted, not broken
    assert store.scan() == ({}, {})


def test_a_cell_being_rewritten_is_running_not_broken(tmp_path):
    store = CellStore(tmp_path)
    key = finished_cell(store)
    _truncate(store.idata_path(key))  # a broken cell, as a rerun's start() begins to clear it
    (store.cell_dir(key) / "manifest.json").unlink()
    assert store.state(key).state == "broken"
    with store.lock(key):
        holder = subprocess.run([sys.executable, "-c", (
            "import sys; from reprior.experiments.runner.store import CellStore; "
            f"print(CellStore(sys.argv[1]).state({key!r}).state)"), str(tmp_path)],
            capture_output=True, text=True, timeout=120)
    assert holder.stdout.strip() == "running", holder.stderr


def test_settings_mismatch_is_unfinished(tmp_path):
    store = CellStore(tmp_path)
    key = finished_cell(store)
    assert store.state(key, dict(SETTINGS, width=4)).state == "unfinished"


def test_the_lock_excludes_a_second_writer(tmp_path):
    store = CellStore(tmp_path)
    key = grid.cell_key(SETTINGS)
    with store.lock(key):
        with pytest.raises(CellBusy, match=rf"cell {key} is being run by another process \(host .*, pid "
                                           rf"{os.getpid()}, since \d\d:\d\d:\d\d\)"):
            with CellStore(tmp_path).lock(key):
                pass
    with store.lock(key):  # released at the end of the block
        pass


def test_a_dead_holder_leaves_no_stale_lock(tmp_path):
    """kill -9 of the lock holder: the OS drops its lock, the next writer takes the cell."""
    store = CellStore(tmp_path)
    key = grid.cell_key(SETTINGS)
    code = ("import sys, time; from reprior.experiments.runner.store import CellStore; "
            f"s = CellStore(sys.argv[1]); l = s.lock({key!r}); l.__enter__(); print('held', flush=True); "
            "time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(CellBusy, match=f"pid {proc.pid}"):
            with store.lock(key):
                pass
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
    with store.lock(key):  # recovered at once, no waiting, no manual clean-up
        assert store.is_locked(key) is True  # held by us now: a third party sees it locked


def test_finishing_never_deletes_another_writers_temporary_file(tmp_path):
    store = CellStore(tmp_path)
    key = grid.cell_key(SETTINGS)
    store.cell_dir(key).mkdir(parents=True)
    foreign = store.cell_dir(key) / ".tmp-otherhost-4242-abcd1234-idata.nc"  # another machine's writer
    foreign.write_bytes(b"in progress")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        from reprior._util.files import HOST

        alive = store.cell_dir(key) / f".tmp-{HOST}-{sleeper.pid}-abcd1234-idata.nc"  # a live local writer
        alive.write_bytes(b"in progress")
        finished_cell(store)
        assert foreign.read_bytes() == b"in progress" and alive.read_bytes() == b"in progress"
    finally:
        sleeper.kill()
        sleeper.wait(timeout=60)


def test_finishing_removes_the_files_of_a_dead_local_writer(tmp_path):
    store = CellStore(tmp_path)
    key = grid.cell_key(SETTINGS)
    store.cell_dir(key).mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True, timeout=60)
    from reprior._util.files import HOST

    orphan = store.cell_dir(key) / f".tmp-{HOST}-{dead.stdout.strip()}-abcd1234-idata.nc"
    orphan.write_bytes(b"left by a crash")
    finished_cell(store)
    assert not orphan.exists()
    assert sorted(p.name for p in store.cell_dir(key).iterdir()) == [
        ".lock", "command.txt", "idata.nc", "manifest.json", "metrics.json", "settings.json"]


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    store = CellStore(tmp_path)
    key = finished_cell(store)
    before = tree(store.cell_dir(key))

    class Interrupting:
        def to_netcdf(self, path):
            Path(path).write_bytes(b"half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.write_idata(key, Interrupting())
    assert tree(store.cell_dir(key)) == before
    assert store.is_finished(key, SETTINGS)


# ---------------------------------------------------------------------------
# Reports that cannot mislead
# ---------------------------------------------------------------------------


def _row(width, param, seed=0, **metrics):
    row = {"arch": "mlp", "depth": 1, "width": width, "activation": "relu", "dataset": "digits", "n_train": 128,
           "n_test": 64, "noise_std": 0.1, "parameterisation": param, "readout": "exact", "sampler": "nuts",
           "seed": seed, "num_chains": 2, "num_warmup": 10, "num_samples": 10, "cell": f"{width}-{param}-{seed}"}
    row.update(dict.fromkeys(dg.metric_names(), 1.0))
    row.update(rhat_max=1.0, accept_mean=0.8, divergences=0, num_draws=20, ess_per_grad_pred=0.01)
    row.update(metrics)
    return row


def _results_table(markdown: str) -> list[dict]:
    section = markdown.split("## Results", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, [c.strip() for c in ln.strip("|").split("|")], strict=True)) for ln in lines[2:]]


@pytest.mark.parametrize("bad, why", [
    (dict(accept_mean=0.035, divergences=18), "90% divergent"),  # the case: 18 of 20 draws divergent
    (dict(accept_mean=0.005, divergences=18), "accept 0.005, 90% divergent"),
    (dict(accept_mean=0.0), "accept 0"),
    (dict(divergences=3), "15% divergent"),
    (dict(nonfinite=5), "25% non-finite"),
    (dict(rhat_max=1.5), "R-hat 1.5"),
])
def test_a_failed_baseline_is_flagged_everywhere(tmp_path, bad, why):
    rows = [_row(8, "standard", **bad, ess_per_grad_pred=0.001), _row(8, "reprior", ess_per_grad_pred=0.01),
            _row(64, "standard"), _row(64, "reprior", ess_per_grad_pred=0.05)]
    files = report_mod.write_report(tmp_path, rows, command="reprior sweep")
    text = files["report_md"].read_text()
    table = _results_table(text)
    assert [r["chains"] for r in table] == [f"FAILED: {why}", "ok", "ok", "ok"]
    assert table[1]["ratio/grad"] == "10 \u2020" and table[3]["ratio/grad"] == "5"
    assert "Warning: 1 of 4 cells have failed chains" in text
    assert ("`reprior`: failed chains (its own or the standard baseline's) at width 8: no comparison there. "
            "`reprior`: ESS per gradient evaluation (pred) above standard at every other width (ratio 5 to 5).") in text
    summary = report_mod.read_summary_csv(files["summary_csv"])
    assert [r["chain_failure"] for r in summary] == [why, None, None, None]


def test_a_failed_repriorised_cell_is_not_a_headline(tmp_path):
    rows = [_row(8, "standard"), _row(8, "reprior", accept_mean=0.001, ess_per_grad_pred=1.0)]
    text = report_mod.write_report(tmp_path, rows, command="c")["report_md"].read_text()
    assert "above standard" not in text
    assert "`reprior`: failed chains (its own or the standard baseline's) at width 8: no comparison there." in text


def test_a_failed_cell_is_marked_in_the_plots(tmp_path):
    from reprior.experiments import plots

    def hollow(fig):  # per panel: the failed points, drawn as hollow markers
        return [sum(line.get_gid() == plots.FAILED_GID for line in ax.get_lines()) for ax in fig.axes]

    rows = [_row(8, "standard", accept_mean=0.0), _row(8, "reprior"), _row(64, "standard"), _row(64, "reprior")]
    assert hollow(plots.metric_figure(rows)) == [1]  # the ESS panel
    assert hollow(plots.ratio_figure(rows)) == [1, 1, 1]  # each of the three ratio panels: its baseline failed
    healthy = [_row(8, "standard"), _row(8, "reprior")]
    assert hollow(plots.metric_figure(healthy)) == [0]


def test_single_chain_cells_explain_rhat_and_skip_rank_plots(tmp_path):
    idata = fake_idata(num_chains=1)
    path = tmp_path / "one.nc"
    idata.to_netcdf(str(path))
    rows = [dict(_row(8, "standard", rhat_max=float("nan")), num_chains=1, cell="one")]
    files = report_mod.write_report(tmp_path, rows, command="c", cells_idata={"one": str(path)})
    text = files["report_md"].read_text()
    assert _results_table(text)[0]["R-hat max"] == "n/a (1 chain)"
    assert "One-chain cells have no R-hat (it compares chains: run two or more) and no rank plot." in text
    assert "No rank plot: one chain (rank plots compare chains)." in text
    assert "rank_one" not in files and "trace_one" in files
    assert not (tmp_path / "plots" / "rank_one.png").exists()


def test_report_files_are_replaced_atomically(tmp_path, monkeypatch):
    rows = [_row(8, "standard"), _row(8, "reprior")]
    first = report_mod.write_report(tmp_path, rows, command="c")
    before = {name: Path(p).read_bytes() for name, p in first.items()}

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    from matplotlib.figure import Figure

    monkeypatch.setattr(Figure, "savefig", lambda self, path, **kw: (Path(path).write_bytes(b"half"), broken()))
    with pytest.raises(KeyboardInterrupt):
        report_mod.write_report(tmp_path, rows, command="c")
    assert {name: Path(p).read_bytes() for name, p in first.items()} == before
    assert not [p for p in tmp_path.rglob(".tmp-*")]


# ---------------------------------------------------------------------------
# Interrupts: deferred to safe points, exit 130 / 143
# ---------------------------------------------------------------------------


@pytest.fixture
def sigint_handled():
    """SIGINT handled as in an interactive session: a shell starts a background job with SIGINT
    ignored, and :func:`reprior._util.interrupts.deferred` leaves an ignored signal alone."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_waits_for_the_next_checkpoint(signum, code, sigint_handled):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    reached = []
    with pytest.raises(interrupts.Interrupted) as caught:
        with interrupts.deferred():
            os.kill(os.getpid(), signum)
            deadline = time.monotonic() + 5  # the kernel may hand the signal to another thread: wait for it
            while interrupts.pending() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            reached.append("after the signal")  # not raised inside "XLA"
            assert interrupts.pending() == signum
            interrupts.checkpoint()
            reached.append("after the checkpoint")
    assert reached == ["after the signal"]
    assert caught.value.signum == signum and caught.value.exit_code == code
    assert interrupts.exit_code(caught.value) == code
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored


def test_a_signal_at_the_end_of_a_deferred_block_is_raised_there(sigint_handled):
    with pytest.raises(interrupts.Interrupted):
        with interrupts.deferred():
            with interrupts.deferred():  # nested: the outer block owns the signal
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.01)
            assert interrupts.pending() == signal.SIGINT
    assert interrupts.pending() is None


def test_deferred_outside_the_main_thread_changes_nothing():
    seen = []

    def work():
        with interrupts.deferred():
            seen.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [before]


def test_deferring_stops_a_chain_loop_at_the_next_chunk_boundary(sigint_handled):
    done = []

    @interrupts.deferring
    def loop(*, progress=None):
        for chunk in range(3):
            if chunk == 0:  # the signal lands "inside XLA", during the first chunk
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.01)
            done.append(chunk)
            progress(chunk, "sampling")

    with pytest.raises(interrupts.Interrupted):
        loop()
    assert done == [0]


def test_the_driver_chain_loop_is_deferred():
    from reprior.inference import driver

    assert driver.run_chains.__wrapped__.__name__ == "run_chains"


# ---------------------------------------------------------------------------
# Preflight pieces
# ---------------------------------------------------------------------------


def test_memory_check_names_the_width():
    options = grid.validate(grid.merge({"widths": [4, 64], "datasets": ["synthetic"], "n_train": [8], "n_test": 4}))
    cells = grid.expand(options, dtype="float64")
    data = load_dataset("synthetic", n_train=8, n_test=4, flatten=True)
    datasets = {c.data_settings(): data for c in cells}
    need = {c.settings["width"]: preflight.estimate_cell_bytes(c.settings, data.x_train.shape, 1, 4) for c in cells}
    assert need[64] > need[4] > 0
    preflight.check_memory(cells, datasets, available=need[64])  # fits exactly
    with pytest.raises(grid.ConfigError, match=r"^widths \(--widths\): expected widths whose cells fit in this "
                                               r"machine's memory \(.* GiB\), received width 64, whose cell "
                                               r"\(mlp d1 w64 .*\) needs about .* GiB; use a smaller width$"):
        preflight.check_memory(cells, datasets, available=need[64] - 1)


# ---------------------------------------------------------------------------
# Real sweeps in child processes (slow)
# ---------------------------------------------------------------------------

TINY = ["sweep", "--dataset", "synthetic", "--n-train", "8", "--n-test", "4", "--widths", "3",
        "--parameterisations", "standard", "reprior", "--num-warmup", "10", "--num-samples", "8",
        "--num-chains", "2", "--sampler", "hmc", "--sampler-option", "num_steps=3", "--no-report"]


def _child(out: Path, *extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    code = ("import signal, sys, reprior.experiments.cli; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "sys.exit(reprior.experiments.cli.main())")
    return subprocess.Popen([sys.executable, "-c", code, *TINY, "--out", str(out), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, delay", [(signal.SIGINT, 130, 0.0), (signal.SIGTERM, 143, 0.0),
                                                 (signal.SIGINT, 130, 1.0), (signal.SIGTERM, 143, 1.0)])
def test_a_signal_mid_sweep_exits_cleanly(tmp_path, signum, code, delay):
    """A signal after the plan line (data loaded; compiling or sampling the first cell) stops the sweep at
    the next safe point: exit 130/143, the resume line, no traceback, nothing broken or left behind.
    (A signal while Python still imports JAX is outside reprior's reach: docs/reliability.md.)"""
    out = tmp_path / "out"
    proc = _child(out)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("reprior sweep: "):
            break
    time.sleep(delay)
    proc.send_signal(signum)
    rest, _ = proc.communicate(timeout=600)
    text = "".join(lines) + rest
    assert proc.returncode == code, text
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    last = text.strip().splitlines()[-1]
    assert last.startswith(f"interrupted ({name}): ") and last.endswith(
        f"resume with: reprior {' '.join(TINY)} --out {out}"), text
    assert "Traceback" not in text
    finished, broken = CellStore(out).scan()
    assert broken == {}
    assert not list(out.glob("cells/*/.tmp-*"))


@pytest.mark.slow
def test_two_sweeps_into_one_directory_run_each_cell_once(tmp_path):
    out = tmp_path / "out"
    first, second = _child(out), _child(out)
    texts = [p.communicate(timeout=900)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], texts
    for text in texts:  # the plan first; a line per cell, since the output is a pipe, not a terminal
        assert re.search(r"^reprior sweep: 2 cells in the grid, 2 to do here, [0-2] already finished, [0-2] to run "
                        r"\([0-9,]+ iterations, (about [0-9,]+|[0-9,]+ to [0-9,]+) gradient evaluations\); output in ", text, re.M), text
    assert "\nstart 1/" in texts[0]
    finished, broken = CellStore(out).scan()
    assert len(finished) == 2 and broken == {}
    ran = [line.split()[1] for t in texts for line in t.splitlines() if line.startswith("done ") and ":" in line]
    assert sorted(ran) == sorted(finished)  # each cell run by exactly one of the two sweeps
    assert not any(line.startswith("failed ") for t in texts for line in t.splitlines()), texts
    assert not list(out.glob("cells/*/.tmp-*"))


# ---------------------------------------------------------------------------
# The documentation's examples run
# ---------------------------------------------------------------------------


def test_reliability_page_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "docs" / "reliability.md").read_text(), re.S | re.M)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "reliability.md", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out == "0 finished, 0 broken\n[0, 1, 2]\n"
