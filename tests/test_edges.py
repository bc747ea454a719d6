"""Trust at the edges: folders that are not ours, OS faults on paths, CSV semantics, pickles, the limits cache.

Every case asserts the exact outcome: a one-line error naming the argument (exit
status 2 from the command line, a ValueError from Python), nothing written or
half-written, or a correct result.  The guarantees are documented in
docs/reliability.md; the parametrized tables here (``FOREIGN``, ``OUT_FAULTS``,
``WRITE_FAULTS``, ...) are the catalogue of the bad inputs and faults tried.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from reprior._util import files as _files
from reprior.experiments import cli, preflight
from reprior.evaluation import limits
from reprior.experiments.data import load_dataset
from reprior.experiments.runner import ownership
from reprior.experiments.runner.store import CellStore
from reprior.experiments.runner.sweep import write_sweep_report

from cli_helpers import one_line_error, run  # tests/cli_helpers.py

ROOT = Path(__file__).resolve().parents[1]
SYN = ["--dataset", "synthetic", "--widths", "4", "--n-train", "8", "--n-test", "4"]


def tree(path: Path) -> dict:
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else "dir") for p in sorted(path.rglob("*"))}


# ---------------------------------------------------------------------------
# Ownership of output folders
# ---------------------------------------------------------------------------

FOREIGN = {
    "report.md": lambda d: (d / "report.md").write_text("someone else's report"),
    "summary.csv": lambda d: (d / "summary.csv").write_text("a,b\n1,2\n"),
    "report.html": lambda d: (d / "report.html").write_text("<html></html>"),
    "a folder": lambda d: (d / "photos").mkdir(),
    "a hidden file": lambda d: (d / ".hidden").write_text("x"),
    "cells without cell files": lambda d: (d / "cells" / "x").mkdir(parents=True),
}


@pytest.mark.parametrize("make", list(FOREIGN.values()), ids=list(FOREIGN))
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_a_folder_that_is_not_ours_is_refused(capsys, tmp_path, make, dry_run):
    out = tmp_path / "theirs"
    out.mkdir()
    make(out)
    before = tree(out)
    message = one_line_error(*run(capsys, "sweep", *SYN, "--out", out, *(["--dry-run"] if dry_run else []))[::2])
    assert message.startswith(f"out (--out): expected a new or empty folder, or one written by reprior, "
                               f"received {str(out)!r}, which holds "), message
    assert "--force" in message
    assert tree(out) == before


def test_force_adopts_a_foreign_folder(capsys, tmp_path):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = run(capsys, "sweep", *SYN, "--out", out, "--dry-run", "--force")
    assert code == 0, err
    assert not (out / ownership.MARKER_FILE).exists()  # a dry run writes nothing
    ownership.claim(out, force=True)
    assert (out / ownership.MARKER_FILE).is_file() and (out / "notes.txt").read_text() == "keep me"
    code, _, err = run(capsys, "sweep", *SYN, "--out", out, "--dry-run")  # now ours, no --force needed
    assert code == 0, err


def test_an_empty_or_missing_folder_is_claimed(tmp_path):
    for out in (tmp_path / "new" / "deeper", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        ownership.claim(out)
        marker = json.loads((out / ownership.MARKER_FILE).read_text())
        assert marker["written_by"] == "reprior"
        assert [p.name for p in out.iterdir()] == [ownership.MARKER_FILE]



def test_a_folder_another_reprior_is_claiming_is_not_foreign(tmp_path):
    """Two sweeps started together: the second may see the first's marker half-written (its temporary
    file, before the rename); that is a claim in progress, not someone else's file."""
    out = tmp_path / "shared"
    out.mkdir()
    (out / f".tmp-otherhost-4242-ab12cd-{ownership.MARKER_FILE}").write_text("{")
    ownership.claim(out)
    assert (out / ownership.MARKER_FILE).is_file()
    other = tmp_path / "other"
    other.mkdir()
    (other / ".tmp-otherhost-4242-ab12cd-data.csv").write_text("x")  # a temporary of some other file
    with pytest.raises(ownership.NotOurs, match="data.csv"):
        ownership.claim(other)

def test_an_earlier_reprior_sweep_folder_is_adopted(capsys, tmp_path):
    from test_faults import SETTINGS, finished_cell

    out = tmp_path / "old"
    finished_cell(CellStore(out))
    (out / "report.md").write_text("an earlier reprior's report")
    assert ownership.is_ours(out) and not (out / ownership.MARKER_FILE).exists()
    code, _, err = run(capsys, "sweep", *SYN, "--out", out, "--dry-run")
    assert code == 0, err
    ownership.require_ours(out)
    assert (out / ownership.MARKER_FILE).is_file()
    assert SETTINGS["width"] == 3


def test_an_earlier_sweep_with_only_jobs_or_references_is_adopted(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "jobs.jsonl").write_text('{"key": "abc"}\n')
    refs = tmp_path / "refs"
    (refs / "references" / "r1").mkdir(parents=True)
    (refs / "references" / "r1" / "diagnostics.json").write_text("{}")
    for folder in (jobs, refs):
        ownership.check_claimable(folder)
        assert ownership.looks_like_sweep(folder)


def test_the_report_is_written_only_into_our_folders(tmp_path):
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "report.md").write_text("theirs")
    with pytest.raises(ValueError, match="expected a folder written by reprior"):
        ownership.require_ours(folder)
    assert (folder / "report.md").read_text() == "theirs"


# ---------------------------------------------------------------------------
# OS faults on paths: one line naming the flag or file, nothing half-written
# ---------------------------------------------------------------------------


def _layout(name, kind):
    def make(out):
        out.mkdir(parents=True, exist_ok=True)
        ownership.claim(out)
        (out / name).mkdir() if kind == "dir" else (out / name).write_text("in the way")
    return make


OUT_FAULTS = {
    "under /proc": (lambda tmp: Path("/proc/reprior-out"), None,
                    ["out (--out)", "'/proc/reprior-out'", "no file can be created in '/proc'"]),
    "under /proc/self": (lambda tmp: Path("/proc/self/reprior"), None, ["out (--out)", "'/proc/self/reprior'"]),
    "name too long": (lambda tmp: tmp / ("x" * 300), None, ["out (--out)", "at most 255 bytes", "has 300"]),
    "a part too long": (lambda tmp: tmp / ("y" * 256) / "out", None, ["out (--out)", "at most 255 bytes"]),
    "file named cells": (lambda tmp: tmp / "o", _layout("cells", "file"),
                         ["out (--out)", "'cells' inside it to be a folder", "which is a file"]),
    "file named plots": (lambda tmp: tmp / "o", _layout("plots", "file"), ["'plots' inside it to be a folder"]),
    "file named limits": (lambda tmp: tmp / "o", _layout("limits", "file"), ["'limits' inside it to be a folder"]),
    "file named references": (lambda tmp: tmp / "o", _layout("references", "file"), ["'references'"]),
    "summary.csv a folder": (lambda tmp: tmp / "o", _layout("summary.csv", "dir"),
                             ["'summary.csv' inside it to be a file", "which is a folder"]),
    "report.md a folder": (lambda tmp: tmp / "o", _layout("report.md", "dir"), ["'report.md' inside it to be a file"]),
    "report.html a folder": (lambda tmp: tmp / "o", _layout("report.html", "dir"), ["'report.html'"]),
    "jobs.jsonl a folder": (lambda tmp: tmp / "o", _layout("jobs.jsonl", "dir"), ["'jobs.jsonl'"]),
    "marker a folder": (lambda tmp: tmp / "o", lambda out: (out.mkdir(), (out / ownership.MARKER_FILE).mkdir()),
                        ["'.reprior-output' inside it to be a file"]),
}


@pytest.mark.parametrize("where, make, fragments", list(OUT_FAULTS.values()), ids=list(OUT_FAULTS))
def test_out_faults_are_one_line(capsys, tmp_path, where, make, fragments):
    out = where(tmp_path)
    if make:
        make(out)
    before = tree(out) if make else None
    message = one_line_error(*run(capsys, "sweep", *SYN, "--out", out)[::2])
    for fragment in fragments:
        assert fragment in message, message
    if make:
        assert tree(out) == before
    else:
        assert not os.path.lexists(out) if len(out.name) < 255 else True


def _finished_sweep(out: Path) -> Path:
    from test_faults import finished_cell

    finished_cell(CellStore(out))
    ownership.claim(out)
    return out


REPORT_FAULTS = {
    "plots is a file": ("plots", "file", "'plots' inside it to be a folder"),
    "summary.csv is a folder": ("summary.csv", "dir", "'summary.csv' inside it to be a file"),
    "report.md is a folder": ("report.md", "dir", "'report.md' inside it to be a file"),
    "report.html is a folder": ("report.html", "dir", "'report.html' inside it to be a file"),
}


@pytest.mark.parametrize("name, kind, fragment", list(REPORT_FAULTS.values()), ids=list(REPORT_FAULTS))
def test_report_faults_rewrite_nothing(capsys, tmp_path, name, kind, fragment):
    out = _finished_sweep(tmp_path / "o")
    (out / "summary.csv").write_text("the old summary") if name != "summary.csv" else None
    (out / name).mkdir() if kind == "dir" else (out / name).write_text("in the way")
    before = tree(out)
    message = one_line_error(*run(capsys, "report", out)[::2])
    assert message.startswith("DIR: expected") and fragment in message, message
    assert tree(out) == before  # summary.csv not rewritten before the fault was found


def test_report_adopts_an_earlier_sweep_folder(tmp_path, monkeypatch):
    from test_faults import finished_cell

    out = tmp_path / "o"
    finished_cell(CellStore(out))
    written = {}
    monkeypatch.setattr("reprior.experiments.report.write_report", lambda root, rows, **kw: written.setdefault("rows", rows))
    write_sweep_report(out)
    assert (out / ownership.MARKER_FILE).is_file() and len(written["rows"]) == 1


WRITE_FAULTS = {
    "read-only": (OSError(errno.EROFS, "Read-only file system"), "the file system is read-only"),
    "full": (OSError(errno.ENOSPC, "No space left on device"), "the file system is full"),
    "quota": (OSError(errno.EDQUOT, "Disk quota exceeded"), "the disk quota is exhausted"),
    "permission": (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
    "name too long": (OSError(errno.ENAMETOOLONG, "File name too long"), "too long"),
    "hdf5 read-only": (OSError("Unable to synchronously create file (unable to open file: name = "
                               "'/x/.tmp-h-1-ab-idata.nc', errno = 30, error message = 'Read-only file system')"),
                       "the file system is read-only"),
    "hdf5 unknown": (OSError("Unable to create file (name = '/x/.tmp-h-1-ab-idata.nc', strange failure)"),
                     "<temporary file>"),
}


@pytest.mark.parametrize("error, reason", list(WRITE_FAULTS.values()), ids=list(WRITE_FAULTS))
def test_a_failed_atomic_write_names_the_target_and_leaves_nothing(tmp_path, error, reason):
    target = tmp_path / "summary.csv"
    target.write_text("old")

    def write(tmp):
        Path(tmp).write_text("half")
        if error.filename is None and error.errno is not None:
            error.filename = str(tmp)
        raise error

    with pytest.raises(OSError) as caught:
        _files.atomic_write(target, write)
    assert caught.value.filename == str(target)
    line = _files.describe_os_error(caught.value)
    assert line.startswith(f"file: expected a path reprior can write, received {str(target)!r} (")
    assert reason in line and _files.TMP_MARK not in line, line
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.csv"]


def test_a_late_os_error_is_one_cli_line(capsys, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".tmp-h-1-ab-report.md"))

    from reprior.experiments import data

    monkeypatch.setattr(data, "list_datasets", boom)  # what `reprior datasets` lists
    message = one_line_error(*run(capsys, "datasets")[::2])
    assert message == f"file: expected a usable path, received {str(tmp_path / '<temporary file>')!r}" \
                      " (the file system is full)"


def test_writing_into_a_folder_in_the_way(tmp_path):
    (tmp_path / "report.md").mkdir()
    with pytest.raises(OSError) as caught:
        _files.atomic_write_text(tmp_path / "report.md", "x")
    assert "it is a folder, not a file" in _files.describe_os_error(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


SBC_PATHS = {
    "json under /proc": (["--json", "/proc/x.json"], ["--json", "'/proc/x.json'", "no file can be created"]),
    "plot under /proc": (["--plot", "/proc/x.png"], ["--plot", "no file can be created"]),
    "json name too long": (["--json", "{tmp}/" + "j" * 300 + ".json"], ["--json", "at most 255 bytes"]),
    "json in a file": (["--json", "{tmp}/f/x.json"], ["--json", "expected a path in an existing directory"]),
    "json is a dir": (["--json", "{tmp}/d.json"], ["--json", "expected a file path", "which is a directory"]),
}


@pytest.mark.parametrize("flags, fragments", list(SBC_PATHS.values()), ids=list(SBC_PATHS))
def test_sbc_output_paths_are_checked_before_the_work(capsys, tmp_path, monkeypatch, flags, fragments):
    (tmp_path / "f").write_text("a file")
    (tmp_path / "d.json").mkdir()
    monkeypatch.setattr("reprior.experiments.sbc.run_sbc", lambda **kw: pytest.fail("ran SBC before checking its paths"))
    before = tree(tmp_path)
    message = one_line_error(*run(capsys, "sbc", *[f.replace("{tmp}", str(tmp_path)) for f in flags])[::2])
    for fragment in fragments:
        assert fragment in message, message
    assert tree(tmp_path) == before


def test_sbc_json_is_written_atomically(capsys, tmp_path, monkeypatch):
    class Result:
        passed = True

        def table(self):
            return "table"

        def to_dict(self):
            return {"passed": True}

    monkeypatch.setattr("reprior.experiments.sbc.run_sbc", lambda **kw: Result())
    code, out, err = run(capsys, "sbc", "--json", tmp_path / "r.json")
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text()) == {"passed": True}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


STATUS_DIRS = {
    "/proc": (lambda tmp: Path("/proc"), "which holds none of them"),
    "an empty folder": (lambda tmp: tmp, "which holds none of them"),
    "a folder of photos": (lambda tmp: (tmp / "a.jpg").write_text("x") and tmp, "which holds none of them"),
    "missing": (lambda tmp: tmp / "nope", "which does not exist"),
    "a file": (lambda tmp: (tmp / "f").write_text("x") and tmp / "f", "which is not a directory"),
}


@pytest.mark.parametrize("where, fragment", list(STATUS_DIRS.values()), ids=list(STATUS_DIRS))
def test_status_refuses_a_folder_that_is_not_a_sweep(capsys, tmp_path, where, fragment):
    message = one_line_error(*run(capsys, "status", where(tmp_path))[::2])
    assert message.startswith("DIR: expected a sweep's output directory") and fragment in message, message


def test_status_of_a_new_sweep_folder_is_zero_cells(capsys, tmp_path):
    ownership.claim(tmp_path / "o")
    code, out, err = run(capsys, "status", tmp_path / "o")
    assert code == 0 and "0 cells" in out, err


# ---------------------------------------------------------------------------
# An empty config file does not start the default grid
# ---------------------------------------------------------------------------

EMPTY_CONFIGS = {"0 bytes": b"", "comments only": b"# nothing here\n\n", "blank lines": b"\n\n  \n",
                 "only out": b'out = "elsewhere"\n', "a byte-order mark": b"\xef\xbb\xbf"}


@pytest.mark.parametrize("content", list(EMPTY_CONFIGS.values()), ids=list(EMPTY_CONFIGS))
def test_an_empty_config_needs_yes(capsys, tmp_path, content):
    config = tmp_path / "empty.toml"
    config.write_bytes(content)
    message = one_line_error(*run(capsys, "sweep", "--config", config, "--out", tmp_path / "o")[::2])
    assert message.startswith(f"--config/--widths: expected a grid (a config file, e.g. --config "
                              f"experiments/quick.toml, or --widths), received a config file with no grid option, {str(config)!r}")
    assert "--yes" in message and not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------
# CSV semantics
# ---------------------------------------------------------------------------


def _csv(path: Path, header: str, rows) -> Path:
    path.write_text(header + "\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in rows) + "\n")
    return path


DUPLICATES = {
    "a,a,y": ("a,a,y", "'a' (columns 1, 2)"),
    "a,y,y": ("a,y,y", "'y' (columns 2, 3)"),
    "a,b,a,b,y": ("a,b,a,b,y", "'a', 'b' (columns 1, 3; 2, 4)"),
    "padded names": ("a, a ,y", "'a' (columns 1, 2)"),
    "empty names": (",,y", "'' (columns 1, 2)"),
}


@pytest.mark.parametrize("header, fragment", list(DUPLICATES.values()), ids=list(DUPLICATES))
def test_duplicate_csv_columns_are_refused(tmp_path, header, fragment):
    file = _csv(tmp_path / "d.csv", header, np.ones((6, header.count(",") + 1)))
    with pytest.raises(ValueError) as caught:
        load_dataset("csv", path=file, target_columns=["y"], n_train=4, n_test=2)
    message = str(caught.value)
    assert message.startswith(f"argument `path`: expected a .csv header of distinct column names, received "
                              f"{str(file)!r}, whose header repeats ") and fragment in message, message


OVERFLOWS = {
    "input 1e300": ("x1", 0, 1e300, "data (inputs)", "column 'x1'"),
    "input -1e300": ("x2", 1, -1e300, "data (inputs)", "column 'x2'"),
    "input 1e160": ("x1", 0, 1e160, "data (inputs)", "column 'x1'"),
    "target 1e300": ("y", 2, 1e300, "data (targets)", "column 'y'"),
}


@pytest.mark.parametrize("column, index, scale, argument, fragment", list(OVERFLOWS.values()), ids=list(OVERFLOWS))
def test_standardisation_that_overflows_is_refused(tmp_path, column, index, scale, argument, fragment):
    rows = np.random.default_rng(0).standard_normal((10, 3))
    rows[:, index] *= scale
    file = _csv(tmp_path / "d.csv", "x1,x2,y", rows)
    with pytest.raises(ValueError) as caught:
        load_dataset("csv", path=file, target_columns=["y"], n_train=6, n_test=4)
    message = str(caught.value)
    assert message.startswith(f"argument `{argument}`: expected columns whose standardisation") and fragment in message
    data = load_dataset("csv", path=file, target_columns=["y"], n_train=6, n_test=4, standardise=False)
    assert np.all(np.isfinite(data.x_train))  # without standardisation the values load as they are


def test_large_but_safe_columns_standardise(tmp_path):
    rows = np.random.default_rng(0).standard_normal((10, 3)) * np.array([1e150, 1e-150, 1.0])
    data = load_dataset("csv", path=_csv(tmp_path / "d.csv", "x1,x2,y", rows), target_columns=["y"],
                        n_train=6, n_test=4)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1.0, rtol=1e-10)


def test_npz_standardisation_overflow_names_the_column_index(tmp_path):
    x = np.random.default_rng(0).standard_normal((10, 3))
    x[:, 2] *= 1e300
    np.savez(tmp_path / "d.npz", x=x, y=np.ones(10))
    with pytest.raises(ValueError, match=r"argument `data \(inputs\)`: .*column 2, whose values overflow"):
        load_dataset("npz", path=tmp_path / "d.npz", n_train=6, n_test=4)


# ---------------------------------------------------------------------------
# No code from data files
# ---------------------------------------------------------------------------


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar_root(root: Path, payload=None, protocol=2) -> Path:
    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
        if payload is not None and name == "data_batch_3":
            batch[b"extra"] = payload
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return root


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_genuine_cifar_batches_load_with_every_protocol(tmp_path, protocol):
    data = load_dataset("cifar10", path=_cifar_root(tmp_path / "c", protocol=protocol), n_train=8, n_test=4)
    assert data.x_train.shape == (8, 32 * 32 * 3) or data.x_train.shape[0] == 8


PAYLOADS = {
    "os.system": lambda marker: _Evil(marker),
    "builtins.eval": lambda marker: type("E", (), {"__reduce__": lambda self: (eval, ("1",))})(),
    "subprocess.Popen": lambda marker: type("P", (), {"__reduce__": lambda self: (subprocess.Popen, (["true"],))})(),
    "a class instance": lambda marker: Path("/tmp"),
    "collections.OrderedDict": lambda marker: __import__("collections").OrderedDict(a=1),
}


@pytest.mark.parametrize("make", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_a_crafted_cifar_batch_runs_no_code(tmp_path, make):
    marker = tmp_path / "pwned"
    root = _cifar_root(tmp_path / "c", payload=make(marker))
    with pytest.raises(ValueError) as caught:
        load_dataset("cifar10", path=root, n_train=8, n_test=4)
    message = str(caught.value)
    assert message.startswith("argument `path`: expected a CIFAR-10 python batch of dicts, lists, bytes, strings, "
                              f"numbers and NumPy arrays, received {str(root / 'data_batch_3')!r}, which asks to "
                              "load the global "), message
    assert not marker.exists()


def test_the_npz_loader_refuses_pickled_objects(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([{"a": 1}] * 10, dtype=object), y=np.ones(10))
    with pytest.raises(ValueError, match="argument"):
        load_dataset("npz", path=tmp_path / "d.npz", n_train=6, n_test=4)


def test_a_pickle_named_csv_or_npz_is_refused(tmp_path):
    blob = pickle.dumps(_Evil(tmp_path / "pwned"))
    (tmp_path / "d.npz").write_bytes(blob)
    (tmp_path / "d.csv").write_bytes(blob)
    with pytest.raises(ValueError):
        load_dataset("npz", path=tmp_path / "d.npz")
    with pytest.raises(ValueError):
        load_dataset("csv", path=tmp_path / "d.csv", target_columns=["y"])
    assert not (tmp_path / "pwned").exists()


def test_no_loader_unpickles_freely():
    """Every ``np.load`` in the package passes ``allow_pickle=False``; ``pickle`` is used only through the
    restricted CIFAR-10 unpickler."""
    offenders = []
    for path in (ROOT / "reprior").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("#")[0]
            if "np.load(" in code and "allow_pickle=False" not in code:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
            if ("pickle.load(" in code or "pickle.loads(" in code) and "Unpickler" not in code:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


# ---------------------------------------------------------------------------
# The limits cache: atomic writes, unique temporary names, one build under a lock, corrupt entries rebuilt
# ---------------------------------------------------------------------------


def _reference():
    return limits.NNGPReference(np.eye(3), np.arange(2.0)[:, None], np.ones((2, 1)), -1.5)


def test_the_cache_writes_through_the_atomic_helper(tmp_path, monkeypatch):
    calls = []
    real = _files.atomic_write
    monkeypatch.setattr(_files, "atomic_write", lambda path, fn, **kw: calls.append(Path(path).name) or real(path, fn))
    limits.cached_nngp_reference(tmp_path, {"a": 1}, _reference)
    limits.cached_json(tmp_path, "evidence", {"a": 1}, lambda: {"log_evidence": 1.0})
    assert any(n.startswith("nngp-") and n.endswith(".npz") for n in calls)
    assert any(n.startswith("evidence-") for n in calls)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(_files.TMP_MARK)]


def test_a_cached_entry_is_reused(tmp_path):
    built = []
    for _ in range(3):
        ref = limits.cached_nngp_reference(tmp_path, {"a": 1}, lambda: built.append(1) or _reference())
    assert len(built) == 1 and ref.log_evidence == -1.5
    np.testing.assert_array_equal(ref.kernel, np.eye(3))


def _savez(path, **arrays):
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


CORRUPT_ENTRIES = {
    "truncated npz": ("nngp", lambda p: p.write_bytes(p.read_bytes()[:40])),
    "garbage npz": ("nngp", lambda p: p.write_bytes(b"not a zip file at all")),
    "empty npz": ("nngp", lambda p: p.write_bytes(b"")),
    "npz missing a key": ("nngp", lambda p: _savez(p, kernel=np.eye(3))),
    "npz with a pickle": ("nngp", lambda p: _savez(p, kernel=np.array([{}], dtype=object), mean=1, var=1,
                                                   log_evidence=1)),
    "truncated json": ("evidence", lambda p: p.write_text(p.read_text()[:10])),
    "json list": ("evidence", lambda p: p.write_text("[1, 2]")),
    "json without value": ("evidence", lambda p: p.write_text('{"description": {}}')),
    "empty json": ("evidence", lambda p: p.write_text("")),
    "binary json": ("evidence", lambda p: p.write_bytes(b"\xff\xfe\x00")),
}


@pytest.mark.parametrize("kind, corrupt", list(CORRUPT_ENTRIES.values()), ids=list(CORRUPT_ENTRIES))
def test_a_corrupt_entry_is_rebuilt(tmp_path, kind, corrupt):
    if kind == "nngp":
        def get():
            return limits.cached_nngp_reference(tmp_path, {"a": 1}, _reference)
    else:
        def get():
            return limits.cached_json(tmp_path, "evidence", {"a": 1}, lambda: {"log_evidence": 2.0})
    get()
    (entry,) = [p for p in tmp_path.iterdir() if p.name.startswith(kind) and p.suffix in (".npz", ".json")
                and not (kind == "nngp" and p.suffix == ".json")]
    corrupt(entry)
    value = get()
    if kind == "nngp":
        assert value.log_evidence == -1.5
    else:
        assert value == {"log_evidence": 2.0}
    assert get() == value if kind != "nngp" else get().log_evidence == -1.5


_BUILDER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from reprior import limits
    cache, log = Path(sys.argv[1]), Path(sys.argv[2])
    def build():
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\\n")
        time.sleep(1.5)  # long enough for the other process to arrive while this one builds
        return {"value_of": "the one entry", "pid": os.getpid()}
    print(json.dumps(limits.cached_json(cache, "evidence", {"setting": 1}, build)))
""")


def test_two_processes_build_one_entry_once(tmp_path):
    cache, log = tmp_path / "limits", tmp_path / "builds.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _BUILDER, str(cache), str(log)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    results = [json.loads(out) for out, _ in outs]
    assert results[0] == results[1]  # the second loaded what the first built
    assert len(log.read_text().split()) == 1  # built once
    entry = next(cache.glob("evidence-*.json"))
    assert json.loads(entry.read_text())["value"] == results[0]  # never corrupt
    assert not [p.name for p in cache.iterdir() if p.name.startswith(_files.TMP_MARK)]


def test_preflight_reuses_the_path_checks(tmp_path):
    """``reprior sbc`` checks ``--plot`` and ``--json`` with :func:`preflight.check_file_target`, the one check."""
    from reprior.experiments.runner.grid import ConfigError

    for flag, path, formats in (("--plot", tmp_path / "ranks.txt", preflight.PLOT_FORMATS),
                                ("--json", tmp_path / "no" / "r.json", None)):
        with pytest.raises(ConfigError) as sbc:
            preflight.check_sbc(cli.build_parser().parse_args(["sbc", flag, str(path)]))
        with pytest.raises(ConfigError) as direct:
            preflight.check_file_target(path, flag, formats)
        assert str(sbc.value) == str(direct.value)


# ---------------------------------------------------------------------------
# Numbers judged before the work
# ---------------------------------------------------------------------------


def _bnn(noise_std=0.1, width=3):
    import reprior

    return reprior.BNN(reprior.MLP(width=width, depth=1), noise_std=noise_std)


_X, _Y = np.linspace(-1, 1, 8).reshape(4, 2), np.linspace(0, 1, 4)
NUMBERS = {
    "noise 1e-300 float64": (dict(noise_std=1e-300), {}, "float64", "noise_std", "at least 2.22e-16 in float64"),
    "noise 1e-20 float64": (dict(noise_std=1e-20), {}, "float64", "noise_std", "vanishes next to the kernel"),
    "noise 1e-10 float32": (dict(noise_std=1e-10), {}, "float32", "noise_std", "or float64"),
    "noise 1e300": (dict(noise_std=1e300), {}, "float64", "noise_std", "at most 1.34e+151"),
    "noise 1e20 float32": (dict(noise_std=1e20), {}, "float32", "noise_std", "at most 1.84e+16 in float32"),
    "noise small for large targets": (dict(noise_std=1e-6), dict(y=_Y * 1e12), "float64", "noise_std",
                                      "eps x the target scale"),
    "inputs 1e200": ({}, dict(x=_X * 1e200), "float64", "x", "values up to 1e+200"),
    "targets 1e200": ({}, dict(y=_Y * 1e200), "float64", "y", "magnitudes at most"),
    "inputs 1e30 float32": ({}, dict(x=_X * 1e30), "float32", "x", "in float32"),
    "test inputs 1e200": ({}, dict(x_test=_X * 1e200), "float64", "x_test", "values up to 1e+200"),
    "seed 2**64": ({}, dict(seed=2**64), "float64", "seed", "an integer in [0, 4294967295]"),
    "seed 2**32": ({}, dict(seed=2**32), "float64", "seed", "an integer in [0, 4294967295]"),
    "seed -1": ({}, dict(seed=-1), "float64", "seed", "non-negative"),
    "check_memory 1": ({}, dict(check_memory=1), "float64", "check_memory", "True or False"),
}


@pytest.mark.parametrize("bnn_kw, kw, dtype, name, fragment", list(NUMBERS.values()), ids=list(NUMBERS))
def test_degenerate_numbers_are_refused_before_the_work(monkeypatch, bnn_kw, kw, dtype, name, fragment):
    import reprior
    from reprior.inference import sampling

    monkeypatch.setattr(sampling, "sample_with_settings", lambda *a, **k: pytest.fail("sampled before judging the numbers"))
    call = dict(x=_X, y=_Y, num_warmup=1, num_samples=1, num_chains=1, progress_bar=False, dtype=dtype)
    call.update(kw)
    with pytest.raises(ValueError) as caught:
        reprior.sample(_bnn(**bnn_kw), call.pop("x"), call.pop("y"), **call)
    message = str(caught.value)
    assert message.startswith(f"argument `{name}`: expected ") and fragment in message, message


def test_numbers_at_the_edge_of_the_range_pass(monkeypatch):
    import reprior
    from reprior.inference import sampling

    monkeypatch.setattr(sampling, "sample_with_settings", lambda *a, **k: "sampled")
    for noise, dtype in ((1e-12, "float64"), (1e-3, "float32"), (1e100, "float64")):
        assert reprior.sample(_bnn(noise), _X * 1e100 if dtype == "float64" else _X, _Y, num_warmup=1,
                              num_samples=1, num_chains=1, progress_bar=False, dtype=dtype,
                              seed=2**32 - 1) == "sampled"


CLI_NUMBERS = {
    "--noise-std 1e-300": (["--noise-std", "1e-300"], "noise_std (--noise-std)"),
    "--noise-std 1e300": (["--noise-std", "1e300"], "noise_std (--noise-std)"),
    "--noise-std 1e-10 float32": (["--noise-std", "1e-10", "--dtype", "float32"], "or float64"),
}


@pytest.mark.parametrize("flags, fragment", list(CLI_NUMBERS.values()), ids=list(CLI_NUMBERS))
def test_degenerate_numbers_on_the_command_line(capsys, tmp_path, flags, fragment):
    message = one_line_error(*run(capsys, "sweep", *SYN, "--out", tmp_path / "o", *flags)[::2])
    assert fragment in message and "(data set 'synthetic')" in message, message
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------
# Memory against the job's limit
# ---------------------------------------------------------------------------


def test_cgroup_limits_v1_and_v2(tmp_path):
    from reprior.inference import memory as _memory

    (tmp_path / "job" / "step").mkdir(parents=True)
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "job" / "memory.max").write_text(f"{3 * 2**30}\n")
    (tmp_path / "job" / "step" / "memory.max").write_text(f"{5 * 2**30}\n")
    limit = _memory.cgroup_limit("0::/job/step\n", root=tmp_path)
    assert limit.num_bytes == 3 * 2**30 and "job/memory.max" in limit.source  # the parent's is smaller
    (tmp_path / "memory" / "slurm" / "uid").mkdir(parents=True)
    (tmp_path / "memory" / "slurm" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # unlimited
    (tmp_path / "memory" / "slurm" / "uid" / "memory.limit_in_bytes").write_text(f"{2**30}\n")
    limit = _memory.cgroup_limit("4:memory:/slurm/uid\n1:cpu:/\n", root=tmp_path)
    assert limit.num_bytes == 2**30
    assert _memory.cgroup_limit("0::/\n", root=tmp_path / "nothing") is None
    assert _memory.cgroup_limit("garbage", root=tmp_path) is None


def test_rlimit_as_lowers_the_job_limit():
    script = textwrap.dedent("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, resource.RLIM_INFINITY))
        from reprior.inference import memory
        limit = memory.job_memory_limit()
        print(limit.num_bytes, limit.source)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    num_bytes, source = out.stdout.split(" ", 1)
    assert int(num_bytes) <= 3 * 2**30 and (source.startswith("RLIMIT_AS") or "cgroup" in source)


def test_sample_refuses_a_width_beyond_the_job_limit(monkeypatch):
    import reprior
    from reprior.inference import memory as _memory, sampling

    monkeypatch.setattr(sampling, "sample_with_settings", lambda *a, **k: "sampled")
    monkeypatch.setattr(_memory, "device_memory_limit", lambda: _memory.MemoryLimit(2**20, "RLIMIT_AS (ulimit -v)"))
    with pytest.raises(ValueError) as caught:
        reprior.sample(_bnn(width=4096), _X, _Y, num_warmup=1, num_samples=1, num_chains=1, progress_bar=False)
    message = str(caught.value)
    assert message.startswith("argument `bnn`: expected a network whose run fits in the memory this job may use "
                              "(0.000977 GiB, RLIMIT_AS (ulimit -v))"), message
    assert "width 4096, needing about" in message and "check_memory=False" in message
    assert reprior.sample(_bnn(width=4096), _X, _Y, num_warmup=1, num_samples=1, num_chains=1, progress_bar=False,
                          check_memory=False) == "sampled"


def test_the_preflight_names_the_job_limit(monkeypatch):
    from reprior.inference import memory as _memory
    from reprior.experiments.runner import grid

    monkeypatch.setattr(_memory, "device_memory_limit", lambda: _memory.MemoryLimit(2**20, "cgroup limit /x"))
    options = grid.validate(grid.merge({"widths": [100000], "datasets": ["synthetic"], "n_train": [8], "n_test": 4}))
    cells = grid.expand(options, dtype="float64")
    data = load_dataset("synthetic", n_train=8, n_test=4, flatten=True)
    with pytest.raises(grid.ConfigError, match=r"fit in this job's memory limit \(cgroup limit /x\) \(0.000977 GiB\)"):
        preflight.check_memory(cells, {c.data_settings(): data for c in cells})
