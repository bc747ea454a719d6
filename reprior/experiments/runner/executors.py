"""Where the cells of a sweep run: in this process, as local processes, or as a SLURM job array.

``--executor inline`` (the default) is :func:`reprior.experiments.runner.sweep.run_sweep`
in this process.  The other two hand each cell to `submitit
<https://github.com/facebookincubator/submitit>`_ as one job, which runs
:class:`CellJob`: the same :func:`~reprior.experiments.runner.sweep.run_sweep`, restricted
to that cell, in its own process.  So every executor writes through the same
:class:`~reprior.experiments.runner.store.CellStore`, under the cell's lock, and they can
run side by side on one output directory (a cell that another process holds is
skipped).  submitit is imported only when a job is submitted.

* ``local``: processes on this machine, ``--jobs N`` at a time; this command
  waits for them, then writes the report.
* ``slurm``: one job array per sweep (a task per cell, at most
  ``--slurm-array-parallelism`` at once); this command returns once the array
  is submitted, or waits for it with ``--wait``.  Jobs are requeued after a
  pre-emption and resume from their cell's checkpoint (:mod:`reprior.inference.checkpoint`).

Every submitted cell is a line of ``OUT/jobs.jsonl`` (key, label, executor,
job id, log files), which ``reprior status OUT`` reads.  Logs are under
``OUT/submitit/<job id>/``.  No scheduler code here: submitit writes and
submits the sbatch script, requeues, and collects results.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprior._util import interrupts

__all__ = ["EXECUTORS", "JOBS_FILE", "ExecutorSettings", "SubmitResult", "add_arguments", "make_executor",
           "read_jobs", "settings_from_args", "submit_sweep"]

EXECUTORS = ("inline", "local", "slurm")
JOBS_FILE = "jobs.jsonl"
SUBMITIT_DIR = "submitit"


@dataclass
class ExecutorSettings:
    """The ``--executor``, ``--jobs``, ``--slurm-*``, ``--wait`` and ``--checkpoint-every`` flags."""

    name: str = "inline"
    jobs: int = 1
    wait: bool = False
    checkpoint_every: float = 300.0
    slurm_partition: str | None = None
    slurm_time: int = 60
    slurm_gpus_per_job: int = 0
    slurm_cpus_per_job: int = 1
    slurm_array_parallelism: int | None = None
    slurm_extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.name not in EXECUTORS:
            raise ValueError(f"--executor: expected one of {', '.join(EXECUTORS)}, received {self.name!r}")
        for name in ("jobs", "slurm_time", "slurm_cpus_per_job"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, "
                                 f"received {getattr(self, name)!r}")


def key_value(text: str) -> tuple[str, object]:
    """argparse ``type`` for ``KEY=VALUE``; VALUE is read as JSON (``8``, ``0.9``, ``true``, ``["a"]``) or else
    as a string.  Shared by every ``KEY=VALUE`` flag of the command line."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, received {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _positive(kind, expected):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected {expected}, received {text!r}")
        return value

    return parse


def add_arguments(parser) -> None:
    """The executor flags of ``reprior sweep``."""
    group = parser.add_argument_group("executors and checkpoints (docs/cluster.md)")
    group.add_argument("--executor", choices=EXECUTORS, default="inline",
                       help="inline: this process (default); local: a process per cell; slurm: a job array")
    group.add_argument("--jobs", type=_positive(int, "a positive integer"), default=1, metavar="N",
                       help="local executor: cells running at once (default: 1)")
    group.add_argument("--wait", action="store_true", help="slurm executor: wait for the array to finish")
    group.add_argument("--checkpoint-every", type=_positive(float, "a positive number of seconds"),
                       default=300.0, metavar="SECONDS",
                       help="seconds between checkpoints of a cell's chains (default: 300)")
    group.add_argument("--slurm-partition", metavar="NAME", help="SLURM partition")
    group.add_argument("--slurm-time", type=_positive(int, "a positive number of minutes"), default=60,
                       metavar="MINUTES", help="time limit per cell (default: 60)")
    group.add_argument("--slurm-gpus-per-job", type=_positive(int, "a positive integer"), default=None,
                       metavar="N", help="GPUs per cell (default: none)")
    group.add_argument("--slurm-cpus-per-job", type=_positive(int, "a positive integer"), default=1, metavar="N",
                       help="CPUs per cell (default: 1)")
    group.add_argument("--slurm-array-parallelism", type=_positive(int, "a positive integer"), default=None,
                       metavar="N", help="array tasks running at once (default: all)")
    group.add_argument("--slurm-extra", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, repeatable (e.g. account=abc, qos=high)")


def settings_from_args(args) -> ExecutorSettings:
    """The :class:`ExecutorSettings` of parsed ``args`` (see :func:`add_arguments`)."""
    return ExecutorSettings(name=args.executor, jobs=args.jobs, wait=args.wait, checkpoint_every=args.checkpoint_every,
                            slurm_partition=args.slurm_partition, slurm_time=args.slurm_time,
                            slurm_gpus_per_job=args.slurm_gpus_per_job or 0,
                            slurm_cpus_per_job=args.slurm_cpus_per_job,
                            slurm_array_parallelism=args.slurm_array_parallelism,
                            slurm_extra=dict(args.slurm_extra))


@dataclass
class SubmitResult:
    """What :func:`submit_sweep` did: cells submitted, skipped (finished), finished and failed (if waited)."""

    submitted: dict[str, str] = field(default_factory=dict)   # key -> job id
    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # finished, but its chains failed (the health rule)
    strict: bool = False  # broken chains make the exit status 1 (``reprior sweep --strict``)
    waited: bool = False
    interrupted: bool = False
    signum: int = 2
    report: dict | None = None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + self.signum
        return 1 if self.failed or (self.strict and self.broken) else 0


# ---------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------


def check_available(settings: ExecutorSettings) -> None:
    """Refuse ``--executor slurm`` on a machine without SLURM (no ``srun``) before anything is written."""
    import shutil

    if settings.name == "slurm" and shutil.which("srun") is None:
        raise ValueError("--executor: expected slurm on a SLURM login or compute node, received a machine "
                         "without SLURM (no srun on PATH); use --executor local here")


def make_executor(settings: ExecutorSettings, out: str | Path, num_cells: int):
    """The submitit executor of ``settings`` writing under ``out/submitit`` (logs per job)."""
    import submitit

    folder = Path(out) / SUBMITIT_DIR / "%j"
    if settings.name == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=7 * 24 * 60)
        return executor
    if settings.name != "slurm":
        raise ValueError(f"--executor: expected local or slurm for submitit, received {settings.name!r}")
    try:
        executor = submitit.SlurmExecutor(folder=folder)
    except RuntimeError as err:  # no srun: not a SLURM machine
        raise ValueError(f"--executor: expected slurm on a SLURM login or compute node, received a machine "
                         f"without SLURM ({err}); use --executor local here") from None
    params = dict(job_name="reprior-sweep", time=settings.slurm_time, cpus_per_task=settings.slurm_cpus_per_job,
                  array_parallelism=settings.slurm_array_parallelism or num_cells,
                  additional_parameters={"requeue": True, **settings.slurm_extra})
    if settings.slurm_partition:
        params["partition"] = settings.slurm_partition
    if settings.slurm_gpus_per_job:
        params["gpus_per_node"] = settings.slurm_gpus_per_job
    executor.update_parameters(**params)
    return executor


def submit_sweep(options: dict[str, Any], cells, *, dtype: str, settings: ExecutorSettings, command: str = "",
                 say=print, strict: bool = False) -> SubmitResult:
    """Submit the unfinished ``cells`` with the ``local`` or ``slurm`` executor.

    ``local`` waits for every job (``settings.jobs`` at a time) and writes the
    report; ``slurm`` returns once the array is submitted, unless ``settings.wait``.
    ``strict``: as for :func:`~reprior.experiments.runner.sweep.run_sweep`, a cell whose chains
    failed makes the exit status 1 (once the jobs are waited for); either way the
    final line counts them.
    """
    from reprior.experiments.runner.store import (CellStore)  # NumPy: loaded when a cell runs, not when the command line starts

    store = CellStore(options["out"])
    result = SubmitResult(strict=strict)
    todo = []
    for cell in cells:
        if store.state(cell.key, cell.settings).finished:
            result.skipped.append(cell.key)
        else:
            todo.append(cell)
    say(f"reprior sweep ({settings.name}): {len(cells)} cells, {len(result.skipped)} already finished, "
        f"{len(todo)} to submit; output in {store.root}")
    if not todo:
        return result
    from reprior.experiments.runner.jobs import CellJob

    from reprior.experiments.runner.ownership import check_claimable, claim

    check_claimable(store.root, "out (--out)")  # the CLI claimed it already (or refused it without --force)
    executor = make_executor(settings, store.root, len(todo))  # refuses slurm where there is none
    claim(store.root, "out (--out)")  # the marker
    args = [(options, dtype, cell.key, command, settings.checkpoint_every) for cell in todo]
    try:
        if settings.name == "slurm":
            jobs = _submit_array(executor, CellJob, todo, args, store.root, result, say)
            if not settings.wait:
                return result
            _wait_array(list(zip(todo, jobs)), result, say)
        else:
            _run_pool(executor, CellJob, todo, args, settings.jobs, store.root, result, say)
    except KeyboardInterrupt as err:
        result.interrupted, result.signum = True, interrupts.exit_code(err) - 128
        stopped = ("the array keeps running; watch it with: reprior status " + str(store.root)
                   if settings.name == "slurm" else
                   "running cells were asked to stop at their next chunk (their checkpoints are kept)")
        say(f"interrupted: {stopped}; resume with: {command or 'the same command'}")
        return result
    finally:
        with contextlib.suppress(OSError):  # submitit makes the folder pattern itself; jobs have their own
            (store.root / SUBMITIT_DIR / "%j").rmdir()
    result.waited = True
    broken = f" ({len(result.broken)} with failed chains)" if result.broken else ""
    say(f"done: {len(result.finished)} cells run{broken}, {len(result.skipped)} skipped, {len(result.failed)} failed")
    if result.broken and strict:
        say(f"--strict: {len(result.broken)} cells finished with failed chains: " + ", ".join(result.broken))
    if options.get("report") and (result.finished or result.skipped):
        result.report = _report(store.root, command, say)
    return result


def _submit_array(executor, job_class, todo, args, root: Path, result: SubmitResult, say) -> list:
    """Submit one job array, a task per cell; record it."""
    jobs = executor.map_array(job_class(), *zip(*args))
    _record(root, todo, jobs, "slurm")
    result.submitted = {cell.key: job.job_id for cell, job in zip(todo, jobs)}
    array_id = jobs[0].job_id.split("_")[0]
    say(f"submitted job array {array_id}: {len(jobs)} tasks (logs in {root / SUBMITIT_DIR}); "
        f"watch with: reprior status {root}")
    return jobs


def _report(root: Path, command: str, say) -> dict | None:
    from reprior.experiments.runner.sweep import write_sweep_report

    try:
        files = write_sweep_report(root, command=command)
    except Exception as err:  # the cells are safe; the report can be redone alone
        say(f"the report failed ({type(err).__name__}: {err}); retry with: reprior report {root}")
        return None
    if files:
        say(f"report: {files['report_md']}")
    return files


def _run_pool(executor, job_class, todo, args, jobs: int, root: Path, result: SubmitResult, say) -> None:
    """Keep ``jobs`` local jobs running until every cell has run (one process per cell)."""
    waiting = list(zip(todo, args))
    running: list = []
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                cell, arg = waiting.pop(0)
                job = executor.submit(job_class(), *arg)
                _record(root, [cell], [job], "local")
                result.submitted[cell.key] = job.job_id
                running.append((cell, job))
            done = [(cell, job) for cell, job in running if job.done()]
            running = [pair for pair in running if pair not in done]
            _collect(done, result, say)
            interrupts.checkpoint()  # a deferred Ctrl-C/SIGTERM (reprior._util.interrupts) stops here
            if not done:
                time.sleep(0.2)
    except KeyboardInterrupt:
        # SIGTERM to each job's submitit controller (its id is the pid), which forwards it to the cell's
        # process: that stops at its next chunk boundary, saving its checkpoint (SIGINT would make the
        # controller kill the cell after one second).
        for _, job in running:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(job.job_id), signal.SIGTERM)
        for _, job in running:
            job.wait()
        raise


def _wait_array(pairs, result: SubmitResult, say) -> None:
    """``--wait``: collect the array's tasks as they end (a Ctrl-C stops the waiting, not the array)."""
    running = list(pairs)
    while running:
        done = [pair for pair in running if pair[1].done()]
        running = [pair for pair in running if pair not in done]
        _collect(done, result, say)
        interrupts.checkpoint()
        if not done:
            time.sleep(10)


def _collect(pairs, result: SubmitResult, say) -> None:
    """Wait for ``pairs`` of (cell, job) and record their outcomes."""
    for cell, job in pairs:
        try:
            outcome = job.result()
        except Exception as err:  # the job died: a crash, a kill, a failure submitit reports
            message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            outcome = {"key": cell.key, "outcome": "failed", "message": message}
        if outcome["outcome"] == "finished":
            result.finished.append(cell.key)
            failed_chains = ""
            if outcome.get("broken"):
                result.broken[cell.key] = outcome["message"]
                failed_chains = f": failed chains ({outcome['message']})" if outcome["message"] else ": failed chains"
            say(f"done {cell.key} {cell.label()} (job {job.job_id}){failed_chains}")
        elif outcome["outcome"] == "failed":
            result.failed[cell.key] = outcome["message"]
            say(f"failed {cell.key} {cell.label()} (job {job.job_id}): {outcome['message']}")
        else:
            result.skipped.append(cell.key)
            say(f"skipped {cell.key} {cell.label()}: {outcome['message']}")


# ---------------------------------------------------------------------------
# The job records
# ---------------------------------------------------------------------------


def _record(root: Path, cells, jobs, executor: str) -> None:
    """Append one line per submitted cell to ``root/jobs.jsonl`` (one write per line)."""
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    with open(root / JOBS_FILE, "a", encoding="utf-8") as handle:
        for cell, job in zip(cells, jobs):
            line = {"key": cell.key, "label": cell.label(), "executor": executor, "job_id": str(job.job_id),
                    "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr), "submitted_at": now}
            handle.write(json.dumps(line) + "\n")
            handle.flush()
        os.fsync(handle.fileno())


def read_jobs(root: str | Path) -> dict[str, dict]:
    """``{key: last record}`` of ``root/jobs.jsonl`` (unreadable lines skipped)."""
    jobs = {}
    try:
        lines = (Path(root) / JOBS_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return jobs
    for line in lines:
        try:
            record = json.loads(line)
            jobs[record["key"]] = record
        except (ValueError, KeyError, TypeError):
            continue
    return jobs
