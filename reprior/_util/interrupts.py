"""Deferred interrupts: SIGINT and SIGTERM stop a run at the next safe point, never inside XLA.

A signal that lands while XLA compiles or runs a chunk, and raises
:class:`KeyboardInterrupt` from a Python frame that C++ code called back into,
can leave the runtime half torn down (a segmentation fault at exit).  Inside
:func:`deferred`, the handler only *records* the signal; the run raises
:class:`Interrupted` at the next :func:`checkpoint` (between chunks of
iterations, between cells) or when the ``with`` block ends, from plain Python
code where unwinding is safe.  A second Ctrl-C while one is pending says that
the run is stopping; a third stops at once (the old, unsafe behaviour, for a
run stuck in a long compilation).

Only the main thread can install signal handlers: elsewhere :func:`deferred`
changes nothing.  Nested blocks share the outermost block's pending signal.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading

__all__ = ["Interrupted", "checkpoint", "deferred", "deferring", "exit_code", "pending", "terminate_as_interrupt"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_pending: list[int] = []
_depth = 0


class Interrupted(KeyboardInterrupt):
    """A run stopped by ``signum`` (SIGINT or SIGTERM); ``exit_code`` is ``128 + signum``."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(err: BaseException) -> int:
    """130 for Ctrl-C (a plain KeyboardInterrupt too), 143 for SIGTERM."""
    return err.exit_code if isinstance(err, Interrupted) else 128 + signal.SIGINT


def pending() -> int | None:
    """The signal received inside :func:`deferred` and not raised yet, or None."""
    return _pending[0] if _pending else None


def checkpoint() -> None:
    """Raise :class:`Interrupted` if a deferred signal is pending (call it at safe points)."""
    if _pending:
        signum = _pending[0]
        _pending.clear()
        raise Interrupted(signum)


def _handler(signum, frame):
    _pending.append(signum)
    if len(_pending) == 2:
        with contextlib.suppress(Exception):
            os.write(sys.stderr.fileno(), b"reprior: stopping at the next safe point "
                                          b"(press Ctrl-C again to stop at once)\n")
    elif len(_pending) >= 3:
        _pending.clear()
        raise Interrupted(signum)


@contextlib.contextmanager
def deferred():
    """Defer SIGINT and SIGTERM to :func:`checkpoint` calls and the end of the block."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    old = {}
    try:
        for signum in SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:  # e.g. SIGINT of a background job
                old[signum] = signal.signal(signum, _handler)
    except (ValueError, OSError):  # pragma: no cover - not allowed here
        for signum, handler in old.items():
            signal.signal(signum, handler)
        yield
        return
    _depth = 1
    _pending.clear()
    try:
        yield
    finally:
        _depth = 0
        for signum, handler in old.items():
            signal.signal(signum, handler)
    checkpoint()  # a signal that landed during the block's last stretch


def deferring(fn):
    """Decorate a chain loop ``fn(..., progress=None)``: run it inside :func:`deferred`, with a
    :func:`checkpoint` after every ``progress`` call (made between chunks), so a signal stops
    it at the next chunk boundary."""

    @functools.wraps(fn)
    def wrapper(*args, progress=None, **kwargs):
        def progress_then_check(*p_args, **p_kwargs):
            if progress is not None:
                progress(*p_args, **p_kwargs)
            checkpoint()

        with deferred():
            return fn(*args, progress=progress_then_check, **kwargs)

    return wrapper


@contextlib.contextmanager
def terminate_as_interrupt():
    """Make SIGTERM raise :class:`Interrupted` (like Ctrl-C) for the block, in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_term(signum, frame):
        raise Interrupted(signum)

    try:
        old = signal.signal(signal.SIGTERM, raise_term)
    except (ValueError, OSError):  # pragma: no cover
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
