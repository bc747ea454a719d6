"""Atomic file writes: a temporary file beside the target, fsync, then :func:`os.replace`.

A reader sees either the old file or the whole new one, whatever happens to
the writer (Ctrl-C, ``kill -9``, a full disk).  Temporary files are named
``.tmp-<host>-<pid>-<random>-<name>``, so a writer can tell its own leftovers
from another process's (on this machine or another one sharing the file
system) and never deletes a file that another writer is still filling.

This module is a leaf: it imports nothing from reprior.
"""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
from pathlib import Path
from typing import Callable

__all__ = ["TMP_MARK", "atomic_write", "atomic_write_text", "fsync_dir", "is_orphan_tmp", "is_own_tmp", "tmp_owner"]

TMP_MARK = ".tmp-"
_HOST = "".join(c if c.isalnum() else "_" for c in platform.node()) or "host"


def _prefix() -> str:
    # computed per call: a forked child has another pid
    return f"{TMP_MARK}{_HOST}-{os.getpid()}-"


def tmp_owner(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` of the writer of a temporary file named by :func:`atomic_write`, else None."""
    if not name.startswith(TMP_MARK):
        return None
    parts = name[len(TMP_MARK):].split("-", 3)
    if len(parts) < 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def is_own_tmp(name: str) -> bool:
    """True for a temporary file of this process."""
    return name.startswith(_prefix())


def is_orphan_tmp(name: str) -> bool:
    """True for a temporary file whose writer was a process of *this* host that no longer runs."""
    owner = tmp_owner(name)
    if owner is None or owner[0] != _HOST or owner[1] == os.getpid():
        return False
    try:
        os.kill(owner[1], 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by another user
        return False
    return False


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
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


def atomic_write(path, write_fn: Callable[[Path], None], *, suffix: str = "") -> Path:
    """Call ``write_fn(tmp)`` on a temporary path beside ``path``, fsync it, then move it to ``path``.

    The temporary file is removed if ``write_fn`` raises (KeyboardInterrupt included).
    """
    path = Path(path)
    tmp = path.with_name(f"{_prefix()}{secrets.token_hex(4)}-{path.name}{suffix}")
    try:
        write_fn(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
