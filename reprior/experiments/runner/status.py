"""``reprior status DIR``: which cells of a sweep are done (or done with failed chains), running, failed or pending.

It reads only files: the cell store (manifests, locks, ``error.txt``), the
chain checkpoints and the job records ``DIR/jobs.jsonl`` that the ``local``
and ``slurm`` executors append (:mod:`reprior.experiments.runner.executors`), so it works
from any machine that sees the folder, while jobs run.

* done: the cell's files verify against its manifest;
* failed chains: done, but its chains failed by the reports' rule
  (:func:`reprior.inference.health.chain_failure` of its recorded settings and metrics:
  acceptance, divergent or non-finite draws, R-hat); the line gives the
  reasons.  Its files are whole, so a rerun skips it (another seed or longer
  chains is a new cell), and it does not make the exit status 1;
* running: a process holds the cell's lock;
* failed: the cell raised (``error.txt``) or its files do not verify; the
  line shows the last line of the job's log (or of the traceback);
* pending: submitted and not started, or stopped (pre-empted, interrupted)
  and waiting for a rerun, which resumes from the cell's checkpoint.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

from reprior.inference.health import chain_failure
from reprior.experiments.runner.executors import JOBS_FILE, read_jobs
from reprior.experiments.runner.grid import AXES, PARAMETERISATIONS
from reprior.experiments.runner.ownership import MARKER_FILE
from reprior.experiments.runner.store import ERROR_FILE, SETTINGS_FILE, CellStore
from reprior.experiments.runner.sweep import CHECKPOINT_DIR

__all__ = ["STATES", "CellStatus", "add_arguments", "command", "grid_order", "sweep_status"]

STATES = ("done", "failed chains", "running", "failed", "pending")


@dataclass(frozen=True)
class CellStatus:
    key: str
    state: str
    label: str = ""
    job_id: str = ""
    note: str = ""
    settings: dict | None = field(default=None, compare=False, repr=False)  # settings.json, where readable


def _settings(store: CellStore, key: str) -> dict | None:
    import json

    try:
        settings = json.loads((store.cell_dir(key) / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return settings if isinstance(settings, dict) else None


def _natural(value) -> tuple:
    """A sort key that orders numbers by value, then strings, then anything else (None last)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    if isinstance(value, str):
        return (1, 0.0, value)
    return (2, 0.0, "" if value is None else repr(value))


def grid_order(status: "CellStatus") -> tuple:
    """The sort key of a cell in grid order: the settings of :data:`reprior.experiments.runner.grid.AXES` in
    their expansion order (the first slowest; widths by value, parameterisations as listed in
    :data:`~reprior.experiments.runner.grid.PARAMETERISATIONS`); cells without readable settings last, by key."""
    if status.settings is None:
        return (1, (), status.key)
    s = status.settings
    key = []
    for name in AXES.values():
        value = s.get(name)
        if name == "parameterisation" and value in PARAMETERISATIONS:
            value = list(PARAMETERISATIONS).index(value)
        key.append(_natural(value))
    return (0, tuple(key), status.key)


def _last_line(path) -> str:
    try:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    return lines[-1] if lines else ""


def _label(settings: dict | None, job: dict | None) -> str:
    if job and job.get("label"):
        return job["label"]
    if settings is None:
        return ""
    s = settings
    return f"{s.get('arch')} w={s.get('width')} {s.get('parameterisation')} {s.get('sampler')} seed={s.get('seed')}"


def _checkpoint_note(store: CellStore, key: str) -> str:
    files = sorted((store.cell_dir(key) / CHECKPOINT_DIR).glob("chains-*.npz"))
    if not files:
        return ""
    when = datetime.datetime.fromtimestamp(max(f.stat().st_mtime for f in files)).strftime("%Y-%m-%d %H:%M:%S")
    return f"checkpoint of {when}: a rerun resumes from it"


def cell_status(store: CellStore, key: str, job: dict | None) -> CellStatus:
    """The :class:`CellStatus` of one cell."""
    settings = _settings(store, key)
    label, job_id = _label(settings, job), (job or {}).get("job_id", "")

    def status(state, note=""):
        return CellStatus(key, state, label, job_id, note, settings)

    state = store.state(key)
    if state.finished:
        record = store.read_record(key) or {}
        why = chain_failure({**(record.get("settings") or {}), **(record.get("metrics") or {})})
        return status("failed chains", why) if why else status("done")
    if state.state == "running" or store.is_locked(key):
        return status("running", _checkpoint_note(store, key))
    error = store.cell_dir(key) / ERROR_FILE
    if error.exists() or state.state == "broken":
        log = ""
        if job:
            log = _last_line(job.get("stderr", "")) or _last_line(job.get("stdout", ""))
        return status("failed", log or _last_line(error) or state.reason)
    if state.state == "missing":
        return status("pending", "submitted, not started" if job else "")
    return status("pending", _checkpoint_note(store, key) or "stopped before finishing")


def sweep_status(directory) -> list[CellStatus]:
    """Every cell of ``directory`` (on disk or submitted), in grid order (:func:`grid_order`)."""
    store = CellStore(directory)
    jobs = read_jobs(store.root)
    keys = set(jobs)
    if store.cells_dir.is_dir():
        keys |= {d.name for d in store.cells_dir.iterdir() if d.is_dir() and not d.name.startswith(".")}
    cells = [cell_status(store, key, jobs.get(key)) for key in keys]
    return sorted(cells, key=grid_order)


def add_arguments(parser) -> None:
    parser.add_argument("dir", metavar="DIR", help="the sweep's output directory")


def command(args, out=print) -> int:
    """Print the status of ``args.dir``; 0, or 1 when some cell failed (raised or does not verify).

    The totals name the failed-chains cells only when there are some."""
    directory = Path(args.dir)
    if not directory.is_dir():
        raise ValueError(f"DIR: expected a sweep's output directory, received {str(directory)!r}, which "
                         + ("is not a directory" if directory.exists() else "does not exist"))
    if not (directory / "cells").is_dir() and not (directory / JOBS_FILE).is_file() \
            and not (directory / MARKER_FILE).is_file():
        raise ValueError(f"DIR: expected a sweep's output directory (with cells/, {JOBS_FILE} or a "
                         f"{MARKER_FILE} marker), received {str(directory)!r}, which holds none of them")
    cells = sweep_status(directory)
    counts = {state: sum(c.state == state for c in cells) for state in STATES}
    shown = [s for s in STATES if s != "failed chains" or counts[s]]
    out(f"{directory}: {len(cells)} cells: " + ", ".join(f"{counts[s]} {s}" for s in shown))
    width = max([7] + [len(c.state) for c in cells])
    for c in cells:
        job = f"job {c.job_id}" if c.job_id else "-"
        out(f"{c.key}  {c.state:{width}s}  {job:18s}  {c.label}" + (f"  | {c.note}" if c.note else ""))
    return 1 if counts["failed"] else 0
