"""Ownership of output folders: reprior writes only into folders that it made or adopted.

Every output folder that reprior creates (a sweep's ``--out``) gets a marker
file, :data:`MARKER_FILE`, written first.  A folder is *ours* when it carries
the marker, or when it is a sweep folder made by an earlier reprior (before
markers existed): a ``cells/`` folder whose cells hold a ``settings.json``,
``metrics.json`` or ``manifest.json``, a ``jobs.jsonl`` of submitted cells, or
a ``references/`` folder of reference posteriors.  Such a folder is adopted:
the marker is added and it is used as before.

Any other non-empty folder belongs to someone else: :func:`claim` refuses it,
naming the argument and one of the files found, unless ``force`` is true (the
user's explicit ``--force``), in which case it is adopted too.  A missing or
empty folder is created or claimed.  Reports and summaries are written only
into folders that are ours (:func:`require_ours`).

This module imports only the standard library and :mod:`reprior._util.files`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from reprior._util.files import TMP_MARK, atomic_write_text, describe_os_error

__all__ = ["MARKER_FILE", "claim", "check_claimable", "is_ours", "looks_like_sweep", "require_ours"]

MARKER_FILE = ".reprior-output"
"""The marker of a folder written by reprior (JSON: who wrote it, when, with which version)."""

_CELL_FILES = ("settings.json", "metrics.json", "manifest.json")


class NotOurs(ValueError):
    """A folder that reprior did not make: refused (one line naming the argument and a file found)."""


def looks_like_sweep(root) -> bool:
    """True for a sweep folder of an earlier reprior: cells with their files, submitted jobs, or references."""
    root = Path(root)
    try:
        cells = root / "cells"
        if cells.is_dir():
            for cell in cells.iterdir():
                if cell.is_dir() and any((cell / name).is_file() for name in _CELL_FILES):
                    return True
        if (root / "jobs.jsonl").is_file():
            return True
        references = root / "references"
        if references.is_dir():
            for folder in references.iterdir():
                if folder.is_dir() and ((folder / "reference.npz").is_file()
                                        or (folder / "diagnostics.json").is_file()):
                    return True
    except OSError:
        return False
    return False


def is_ours(root) -> bool:
    """True when ``root`` carries the marker or is a sweep folder of an earlier reprior."""
    root = Path(root)
    return (root / MARKER_FILE).is_file() or looks_like_sweep(root)


def _is_marker_being_written(name: str) -> bool:
    """True for the temporary file of another reprior writing its marker (:func:`atomic_write_text`):
    the folder is being claimed by reprior, not filled by someone else."""
    return name.startswith(TMP_MARK) and name.endswith(f"-{MARKER_FILE}")


def _entries(root: Path) -> list[str]:
    """The entries of ``root`` that count against claiming it (a marker being written does not)."""
    try:
        return sorted(entry.name for entry in root.iterdir() if not _is_marker_being_written(entry.name))
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise
    except OSError as err:
        raise NotOurs(describe_os_error(err, "out (--out)", path=root)) from None


def check_claimable(root, argument: str = "out (--out)", *, force: bool = False) -> None:
    """Raise :class:`NotOurs` if ``root`` is a non-empty folder that is not ours (and not ``force``)."""
    root = Path(root)
    if force or not root.is_dir() or is_ours(root):
        return
    entries = _entries(root)
    if not entries:
        return
    others = f" and {len(entries) - 1} other entries" if len(entries) > 1 else ""
    raise NotOurs(f"{argument}: expected a new or empty folder, or one written by reprior, received "
                  f"{str(root)!r}, which holds {entries[0]!r}{others} and no {MARKER_FILE} marker; choose "
                  "another folder, or pass --force to write into it anyway")


def claim(root, argument: str = "out (--out)", *, force: bool = False) -> Path:
    """Check ``root`` (:func:`check_claimable`), create it, and write the marker if it is not there yet."""
    root = Path(root)
    check_claimable(root, argument, force=force)
    marker = root / MARKER_FILE
    if marker.is_file():
        return root
    try:
        root.mkdir(parents=True, exist_ok=True)
        from reprior import __version__

        atomic_write_text(marker, json.dumps({"written_by": "reprior", "version": __version__,
                                              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                              "host": os.uname().nodename}) + "\n")
    except OSError as err:
        raise NotOurs(describe_os_error(err, argument, path=root)) from None
    return root


def require_ours(root, argument: str = "DIR") -> None:
    """Refuse to write a report into ``root`` unless it is ours; adopt an earlier reprior's sweep folder."""
    root = Path(root)
    if (root / MARKER_FILE).is_file():
        return
    if not looks_like_sweep(root):
        raise NotOurs(f"{argument}: expected a folder written by reprior (with a {MARKER_FILE} marker or "
                      f"cells), received {str(root)!r}; reports are written only into reprior's own folders")
    claim(root, argument)
