"""Progress of a sampling run: a rich bar on a terminal, plain lines elsewhere.

The driver calls ``update(num_iterations_done, phase)`` with phase
``"compiling"``, ``"warmup"`` or ``"sampling"``; the display shows the phase,
the iterations done, the elapsed time and (once iterations are being done) the
time remaining.  Without a terminal (a log file, a batch job) it prints one
line when the phase changes and at most one line every ``interval`` seconds,
so a log shows that a long run is alive.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


class _Lines:
    """Plain progress lines for a non-terminal stream."""

    def __init__(self, label: str, total: int, stream, interval: float):
        self.label, self.total, self.stream, self.interval = label, total, stream, interval
        self.start = time.perf_counter()
        self.last_time, self.last_phase = None, None

    def __call__(self, done: int, phase: str):
        now = time.perf_counter()
        if phase == self.last_phase and now - self.last_time < self.interval and done < self.total:
            return
        self.last_time, self.last_phase = now, phase
        print(f"{self.label} [{phase}] {min(done, self.total)}/{self.total} iterations, "
              f"{now - self.start:.0f} s elapsed", file=self.stream, flush=True)


@contextmanager
def progress_display(enabled: bool, total: int, label: str, *, stream=None, interval: float = 30.0):
    """Context manager yielding ``update(done, phase)``, or ``None`` when ``enabled`` is false."""
    if not enabled:
        yield None
        return
    stream = sys.stderr if stream is None else stream
    if not getattr(stream, "isatty", lambda: False)():
        yield _Lines(label, total, stream, interval)
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), transient=False)
    task = bar.add_task(f"{label} [starting]", total=total)

    def update(done, phase):
        bar.update(task, completed=min(done, total), description=f"{label} [{phase}]")

    bar.start()
    try:
        yield update
    finally:
        bar.stop()
