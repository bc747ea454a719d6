"""The cell store: one directory per grid cell, written atomically.

Layout under the sweep's output directory ``OUT``::

    OUT/cells/<key>/settings.json   the cell's settings (written first)
    OUT/cells/<key>/idata.nc        its InferenceData (ArviZ NetCDF)
    OUT/cells/<key>/metrics.json    {"key", "settings", "metrics", "info"} (written last)
    OUT/cells/<key>/error.txt       the traceback, if the cell failed (removed on success)

Every file is written to a temporary file in the same directory and moved
into place with :func:`os.replace`, so a reader sees either no file or a
whole one, whatever happens to the writer (Ctrl-C, ``kill -9``, a full disk).
A cell is *finished* only when ``metrics.json`` exists, parses, names the
same key and settings, and ``idata.nc`` exists beside it: ``metrics.json`` is
written last, so a finished cell's other files are complete.  Anything else
in a cell directory (``settings.json`` alone, a NetCDF without metrics,
temporary files) is a leftover that a rerun ignores and overwrites.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["CellStore", "atomic_write", "to_jsonable"]

SETTINGS_FILE = "settings.json"
IDATA_FILE = "idata.nc"
METRICS_FILE = "metrics.json"
ERROR_FILE = "error.txt"
_TMP_MARK = ".tmp-"


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


def atomic_write(path: Path, write_fn: Callable[[Path], None], *, suffix: str = "") -> Path:
    """Call ``write_fn(tmp)`` on a temporary path beside ``path``, fsync it, then move it to ``path``.

    The temporary file is removed if ``write_fn`` raises (including KeyboardInterrupt).
    """
    path = Path(path)
    tmp = path.with_name(f"{_TMP_MARK}{os.getpid()}-{path.name}{suffix}")
    try:
        write_fn(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, data) -> Path:
    text = json.dumps(to_jsonable(data), indent=1, sort_keys=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))


def _same(a, b) -> bool:
    """Equality of JSON values, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


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
            record = json.loads((self.cell_dir(key) / METRICS_FILE).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def is_finished(self, key: str, settings: dict[str, Any]) -> bool:
        """True when the cell has a whole ``metrics.json`` for these settings and its ``idata.nc``."""
        record = self.read_record(key)
        if record is None or record.get("key") != key or not isinstance(record.get("metrics"), dict):
            return False
        if record.get("settings") != to_jsonable(settings):
            return False
        return self.idata_path(key).is_file()

    def finished(self) -> dict[str, dict]:
        """``{key: record}`` of every finished cell on disk (any sweep, any shard), sorted by key."""
        out = {}
        if not self.cells_dir.is_dir():
            return out
        for directory in sorted(self.cells_dir.iterdir()):
            if not directory.is_dir() or directory.name.startswith("."):
                continue
            record = self.read_record(directory.name)
            if record is not None and isinstance(record.get("settings"), dict) \
                    and self.is_finished(directory.name, record["settings"]):
                out[directory.name] = record
        return out

    # -- writing ----------------------------------------------------------------------
    def start(self, key: str, settings: dict[str, Any]) -> Path:
        """Create the cell directory, drop an old ``metrics.json`` and write ``settings.json``."""
        directory = self.cell_dir(key)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / METRICS_FILE).unlink(missing_ok=True)  # never trust a stale one
        _write_json(directory / SETTINGS_FILE, settings)
        return directory

    def write_idata(self, key: str, idata) -> Path:
        """Write ``idata`` as NetCDF (``idata.to_netcdf``), atomically."""
        self.cell_dir(key).mkdir(parents=True, exist_ok=True)
        return atomic_write(self.idata_path(key), lambda tmp: idata.to_netcdf(str(tmp)), suffix=".nc")

    def finish(self, key: str, settings: dict[str, Any], metrics: dict, info: dict) -> Path:
        """Write ``metrics.json`` (which marks the cell finished) and remove leftovers."""
        directory = self.cell_dir(key)
        path = _write_json(directory / METRICS_FILE,
                           {"key": key, "settings": settings, "metrics": metrics, "info": info})
        (directory / ERROR_FILE).unlink(missing_ok=True)
        for leftover in directory.glob(f"{_TMP_MARK}*"):
            leftover.unlink(missing_ok=True)
        return path

    def fail(self, key: str, text: str) -> Path:
        """Record a failed cell's traceback in ``error.txt`` (the cell stays unfinished)."""
        directory = self.cell_dir(key)
        directory.mkdir(parents=True, exist_ok=True)
        return atomic_write(directory / ERROR_FILE, lambda tmp: tmp.write_text(text))
