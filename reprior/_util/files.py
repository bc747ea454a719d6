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
import errno
import os
import platform
import re
import secrets
from pathlib import Path
from typing import Callable

__all__ = ["HOST", "TMP_MARK", "atomic_write", "atomic_write_text", "describe_os_error", "fsync_dir",
           "is_orphan_tmp", "is_own_tmp", "probe_writable", "tmp_owner"]

#: How every temporary file name starts.
TMP_MARK = ".tmp-"
#: This machine's name in temporary file names (``<host>`` above): its letters and digits, ``_`` for the
#: rest, ``host`` if it has none.
HOST = "".join(c if c.isalnum() else "_" for c in platform.node()) or "host"


def _prefix() -> str:
    # computed per call: a forked child has another pid
    return f"{TMP_MARK}{HOST}-{os.getpid()}-"


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
    if owner is None or owner[0] != HOST or owner[1] == os.getpid():
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


#: What an OS error on a path means, in the words of the one error vocabulary.
_REASONS = {
    errno.ENOENT: "a folder on its path does not exist",
    errno.ENOTDIR: "a part of its path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the file system is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.ENAMETOOLONG: "a name on its path is too long for the file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "something is already there",
    errno.EIO: "an input/output error",
    errno.EFBIG: "the file is too large for the file system",
    errno.ELOOP: "too many symbolic links on its path",
    errno.EINVAL: "the file system does not allow it there",
}


def _errno_of(err: OSError) -> int | None:
    """``err.errno``, or the ``errno = N`` that HDF5 writes into its messages."""
    if err.errno is not None:
        return err.errno
    found = re.search(r"errno = (\d+)", str(err))
    return int(found.group(1)) if found else None


_TMP_NAME = re.compile(re.escape(TMP_MARK) + r"[^\s'\",)/]*")


def _plain_reason(err: OSError) -> str:
    """The first line of an unknown OS error, without temporary file names."""
    text = err.strerror or (str(err).splitlines()[0] if str(err) else type(err).__name__)
    return _TMP_NAME.sub("<temporary file>", text)


def describe_os_error(err: OSError, argument: str = "file", *, path=None,
                      expected: str = "a path reprior can write") -> str:
    """One line for an OS fault on a path: ``argument: expected EXPECTED, received 'PATH' (why)``.

    ``path`` names the file the user knows (default ``err.filename``): never a temporary name."""
    code = _errno_of(err)
    reason = _REASONS.get(code) or _plain_reason(err)
    where = path if path is not None else err.filename
    if where is not None:
        where = _TMP_NAME.sub("<temporary file>", str(where))
    if where is None:
        return f"{argument}: expected {expected}, received an OS error ({reason})"
    return f"{argument}: expected {expected}, received {str(where)!r} ({reason})"


def _as_target_error(err: OSError, path: Path) -> OSError:
    """``err`` re-raised naming the target ``path`` instead of the temporary file."""
    code = _errno_of(err)
    reason = _REASONS.get(code) or _plain_reason(err)
    return OSError(code, reason, str(path))  # errno None keeps strerror: OSError(None, why, path)


def probe_writable(directory) -> None:
    """Create and remove a temporary file in ``directory`` (which must exist); raise OSError if that fails.

    ``os.access`` says yes to root on a read-only mount or under ``/proc``: only a write tells."""
    directory = Path(directory)
    probe = directory / f"{_prefix()}{secrets.token_hex(4)}-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def atomic_write(path, write_fn: Callable[[Path], None], *, suffix: str = "") -> Path:
    """Call ``write_fn(tmp)`` on a temporary path beside ``path``, fsync it, then move it to ``path``.

    The temporary file is removed if ``write_fn`` raises (KeyboardInterrupt included).  An
    :class:`OSError` (a read-only or full file system, a folder in the way) is re-raised naming
    ``path``, never the temporary file, with its ``errno``.
    """
    path = Path(path)
    tmp = path.with_name(f"{_prefix()}{secrets.token_hex(4)}-{path.name}{suffix}")
    try:
        write_fn(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise _as_target_error(err, path) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
