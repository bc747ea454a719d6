"""The cell store: one directory per grid cell, verified by a manifest, locked while written.

Layout under the sweep's output directory ``OUT``::

    OUT/cells/<key>/.lock           the cell's lock (held while a process runs the cell)
    OUT/cells/<key>/settings.json   the cell's settings (written first)
    OUT/cells/<key>/command.txt     the command that (re)ran the cell: the one that repairs it
    OUT/cells/<key>/idata.nc        its InferenceData (ArviZ NetCDF)
    OUT/cells/<key>/metrics.json    {"key", "settings", "metrics", "info"}
    OUT/cells/<key>/manifest.json   size and sha256 of idata.nc and metrics.json (written last)
    OUT/cells/<key>/error.txt       the traceback, if the cell failed (removed on success)

Every file is written to a temporary file in the same directory and moved
into place with :func:`os.replace` (:mod:`reprior._util.files`), so a reader sees
either no file or a whole one.  A cell is *finished* only when its
``manifest.json`` parses, names the cell, and every file it lists has the
recorded size and sha256, and ``metrics.json`` names the same key and
settings.  A cell with a manifest or metrics that do not verify is *broken*
(a truncated or corrupted file, a disk error): the next sweep redoes it and
the report skips it with a warning.  Anything else in a cell directory is a
leftover that a rerun ignores and overwrites.

A process runs a cell only while it holds the cell's lock (an OS file lock,
:class:`filelock.FileLock`, released by the kernel when the holder dies, so a
crash leaves no stale lock); a second process finds the lock held and skips
the cell.  Temporary files are removed only by their writer, or, under the
lock, when their writer on this host no longer runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reprior._util.files import TMP_MARK, atomic_write, atomic_write_text, is_orphan_tmp, is_own_tmp

__all__ = ["CellBusy", "CellState", "CellStore", "atomic_write", "to_jsonable"]

SETTINGS_FILE = "settings.json"
COMMAND_FILE = "command.txt"
IDATA_FILE = "idata.nc"
METRICS_FILE = "metrics.json"
MANIFEST_FILE = "manifest.json"
ERROR_FILE = "error.txt"
LOCK_FILE = ".lock"
OWNER_FILE = ".lock.owner"
_TMP_MARK = TMP_MARK
MANIFEST_VERSION = 1


def to_jsonable(value):
    """NumPy scalars and arrays to Python numbers and lists (recursively); NaN/inf kept as floats."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    return value


def _write_json(path: Path, data) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(data), indent=1, sort_keys=False) + "\n")


def _same(a, b) -> bool:
    """Equality of JSON values, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def file_digest(path: Path) -> dict:
    """``{"size": bytes, "sha256": hex}`` of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return {"size": size, "sha256": digest.hexdigest()}


@dataclass(frozen=True)
class CellState:
    """What is on disk for one cell.

    ``state``: ``"finished"`` (verified), ``"broken"`` (a manifest or metrics
    that do not verify: ``reason`` says which file and how), ``"running"``
    (another process holds its lock), ``"unfinished"`` (started, failed or
    interrupted) or ``"missing"`` (no directory).
    """

    key: str
    state: str
    reason: str = ""
    record: dict | None = None

    @property
    def finished(self) -> bool:
        return self.state == "finished"


class CellBusy(RuntimeError):
    """The cell's lock is held by another process (``owner`` describes it, when known)."""

    def __init__(self, key: str, owner: str):
        super().__init__(f"cell {key} is being run by another process ({owner})")
        self.key, self.owner = key, owner


class CellStore:
    """The cells of one sweep, under ``root/cells/<key>/``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.cells_dir = self.root / "cells"

    def cell_dir(self, key: str) -> Path:
        return self.cells_dir / key

    def idata_path(self, key: str) -> Path:
        return self.cell_dir(key) / IDATA_FILE

    # -- reading ----------------------------------------------------------------------
    def read_record(self, key: str) -> dict | None:
        """The parsed ``metrics.json`` of ``key``, or None if absent or unreadable."""
        try:
            record = json.loads((self.cell_dir(key) / METRICS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def command(self, key: str) -> str | None:
        """The command recorded when the cell was last started (None if unreadable)."""
        try:
            text = (self.cell_dir(key) / COMMAND_FILE).read_text(encoding="utf-8").strip()
        except (OSError, ValueError):
            return None
        return text or None

    def state(self, key: str, settings: dict[str, Any] | None = None) -> CellState:
        """Verify the cell's files against its manifest (see the module docstring); ``"running"``
        where they do not verify but another process holds the cell's lock."""
        return self._verify_or_running(key, self._state(key, settings))

    def _state(self, key: str, settings: dict[str, Any] | None) -> CellState:
        directory = self.cell_dir(key)
        if not directory.is_dir():
            return CellState(key, "missing")
        manifest_path, metrics_path = directory / MANIFEST_FILE, directory / METRICS_FILE
        if not manifest_path.exists():
            if metrics_path.exists():
                return self._legacy_state(key, settings)
            return CellState(key, "unfinished", "no manifest")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            files = manifest["files"]
            assert manifest["key"] == key and isinstance(files, dict) and {IDATA_FILE, METRICS_FILE} <= set(files)
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            return CellState(key, "broken", f"{MANIFEST_FILE} is unreadable or incomplete")
        for name, want in files.items():
            try:
                got = file_digest(directory / name)
            except OSError:
                return CellState(key, "broken", f"{name} is missing")
            if got["size"] != want.get("size"):
                return CellState(key, "broken", f"{name} has {got['size']} bytes, the manifest says {want.get('size')}")
            if got["sha256"] != want.get("sha256"):
                return CellState(key, "broken", f"{name} does not match its sha256 in the manifest")
        record = self.read_record(key)
        if record is None or record.get("key") != key or not isinstance(record.get("metrics"), dict) \
                or not isinstance(record.get("settings"), dict):
            return CellState(key, "broken", f"{METRICS_FILE} is not a cell record")
        if settings is not None and record["settings"] != to_jsonable(settings):
            return CellState(key, "unfinished", "finished with other settings")
        return CellState(key, "finished", record=record)

    def _verify_or_running(self, key: str, state: CellState) -> CellState:
        """A broken-looking cell whose lock is held is being rewritten: ``"running"``, not broken."""
        if state.state == "broken" and self.is_locked(key):
            return CellState(key, "running", "being run by another process")
        return state

    def _legacy_state(self, key: str, settings: dict[str, Any] | None) -> CellState:
        """A cell with ``metrics.json`` but no manifest (written before manifests existed): finished
        if the record is whole and ``idata.nc`` opens as HDF5 (which catches truncation), else broken."""
        record = self.read_record(key)
        if record is None or record.get("key") != key or not isinstance(record.get("metrics"), dict) \
                or not isinstance(record.get("settings"), dict):
            return CellState(key, "broken", f"{METRICS_FILE} without {MANIFEST_FILE} is not a whole cell record")
        try:
            import h5py

            with h5py.File(self.idata_path(key), "r"):
                pass
        except Exception as err:  # h5py raises OSError, or others on garbage
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            return CellState(key, "broken", f"{IDATA_FILE} cannot be read ({first}) and there is no {MANIFEST_FILE}")
        if settings is not None and record["settings"] != to_jsonable(settings):
            return CellState(key, "unfinished", "finished with other settings")
        return CellState(key, "finished", "no manifest (an older reprior): checked by opening idata.nc", record)

    def is_finished(self, key: str, settings: dict[str, Any]) -> bool:
        """True when the cell's files verify against its manifest and its record has these settings."""
        return self.state(key, settings).finished

    def scan(self) -> tuple[dict[str, dict], dict[str, str]]:
        """``({key: record} of finished cells, {key: reason} of broken ones)``, sorted by key."""
        finished, broken = {}, {}
        if not self.cells_dir.is_dir():
            return finished, broken
        for directory in sorted(self.cells_dir.iterdir()):
            if not directory.is_dir() or directory.name.startswith("."):
                continue
            state = self.state(directory.name)
            if state.finished:
                finished[directory.name] = state.record
            elif state.state == "broken":
                broken[directory.name] = state.reason
        return finished, broken

    def finished(self) -> dict[str, dict]:
        """``{key: record}`` of every finished (verified) cell on disk (any sweep, any shard)."""
        return self.scan()[0]

    def repair_command(self, key: str) -> str:
        """The command that redoes cell ``key``: the one recorded when it was started."""
        recorded = self.command(key)
        if recorded:
            return recorded
        return f"rerun the sweep that wrote it (reprior sweep ... --out {self.root})"

    # -- locking ----------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str):
        """Hold the cell's lock for the ``with`` block; raise :class:`CellBusy` at once if held.

        An OS file lock (``flock``): released when the holder exits or dies, so
        no stale lock survives a crash.  ``.lock.owner`` names the holder.
        """
        from filelock import FileLock, Timeout

        directory = self.cell_dir(key)
        directory.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(directory / LOCK_FILE), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise CellBusy(key, self._owner(key)) from None
        try:
            with contextlib.suppress(OSError):
                atomic_write_text(directory / OWNER_FILE, json.dumps(
                    {"host": platform.node(), "pid": os.getpid(), "since": time.time()}))
            yield
        finally:
            with contextlib.suppress(OSError):
                (directory / OWNER_FILE).unlink(missing_ok=True)
            lock.release()

    def is_locked(self, key: str) -> bool:
        """True while another process holds the cell's lock."""
        from filelock import FileLock, Timeout

        path = self.cell_dir(key) / LOCK_FILE
        if not path.exists():
            return False
        lock = FileLock(str(path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return True
        except OSError:
            return False
        lock.release()
        return False

    def _owner(self, key: str) -> str:
        try:
            owner = json.loads((self.cell_dir(key) / OWNER_FILE).read_text(encoding="utf-8"))
            since = time.strftime("%H:%M:%S", time.localtime(float(owner["since"])))
            return f"host {owner['host']}, pid {owner['pid']}, since {since}"
        except (OSError, ValueError, KeyError, TypeError):
            return "owner unknown"

    # -- writing (under the lock) -----------------------------------------------------
    def start(self, key: str, settings: dict[str, Any], command: str = "") -> Path:
        """Create the cell directory, drop an old manifest and metrics, write ``settings.json``."""
        directory = self.cell_dir(key)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MANIFEST_FILE).unlink(missing_ok=True)  # never trust a stale one: it goes first
        (directory / METRICS_FILE).unlink(missing_ok=True)
        _write_json(directory / SETTINGS_FILE, settings)
        if command:
            atomic_write_text(directory / COMMAND_FILE, command + "\n")
        return directory

    def write_idata(self, key: str, idata) -> Path:
        """Write ``idata`` as NetCDF (``idata.to_netcdf``), atomically."""
        self.cell_dir(key).mkdir(parents=True, exist_ok=True)
        return atomic_write(self.idata_path(key), lambda tmp: idata.to_netcdf(str(tmp)), suffix=".nc")

    def finish(self, key: str, settings: dict[str, Any], metrics: dict, info: dict) -> Path:
        """Write ``metrics.json``, then the manifest (which marks the cell finished); tidy up."""
        directory = self.cell_dir(key)
        _write_json(directory / METRICS_FILE, {"key": key, "settings": settings, "metrics": metrics, "info": info})
        manifest = {"version": MANIFEST_VERSION, "key": key,
                    "files": {name: file_digest(directory / name) for name in (IDATA_FILE, METRICS_FILE)}}
        path = _write_json(directory / MANIFEST_FILE, manifest)
        (directory / ERROR_FILE).unlink(missing_ok=True)
        self.remove_leftovers(key)
        return path

    def remove_leftovers(self, key: str) -> list[str]:
        """Remove this process's temporary files in the cell, and those of dead writers on this host."""
        removed = []
        for leftover in self.cell_dir(key).glob(f"{TMP_MARK}*"):
            if is_own_tmp(leftover.name) or is_orphan_tmp(leftover.name):
                with contextlib.suppress(OSError):
                    leftover.unlink()
                    removed.append(leftover.name)
        return removed

    def fail(self, key: str, text: str) -> Path:
        """Record a failed cell's traceback in ``error.txt`` (the cell stays unfinished)."""
        directory = self.cell_dir(key)
        directory.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(directory / ERROR_FILE, text)
