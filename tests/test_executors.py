"""Tests for reprior.experiments.runner.executors, reprior.experiments.runner.jobs and reprior.experiments.runner.status.

The ``local`` executor runs for real (tiny cells, a process each).  The
``slurm`` executor is checked with submitit's own mocked SLURM
(``submitit.slurm.test_slurm.mocked_slurm``): the generated sbatch script, the
array size, and one array task run in this process as SLURM would run it.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import submitit  # noqa: F401  (imported at collection: its logger then writes to the session's stderr, not
#                  to a test's captured stream that pytest closes when the test ends)

from reprior.experiments import cli
from reprior.experiments.runner import executors, status
from reprior.experiments.runner.store import CellStore

TINY = ["sweep", "--dataset", "synthetic", "--n-train", "8", "--n-test", "4", "--parameterisations", "reprior",
        "--num-warmup", "4", "--num-samples", "4", "--num-chains", "2", "--sampler", "hmc",
        "--sampler-option", "num_steps=2", "--num-projections", "2", "--no-report", "--quiet"]


def sweep(out, *flags):
    return cli.main([*TINY, "--out", str(out), *flags])


def status_lines(out, capsys):
    capsys.readouterr()
    code = cli.main(["status", str(out)])
    return code, capsys.readouterr().out.splitlines()


def posterior(out, key):
    import arviz as az

    idata = az.from_netcdf(str(CellStore(out).idata_path(key)))
    return {name: np.asarray(idata.posterior[name]) for name in idata.posterior.data_vars}


# ---------------------------------------------------------------------------
# local
# ---------------------------------------------------------------------------


@pytest.mark.e2e  # a process per cell: about 15 s
def test_local_executor_runs_each_cell_in_its_own_process(tmp_path, capsys):
    out = tmp_path / "local"
    assert sweep(out, "--widths", "2", "3", "--executor", "local", "--jobs", "2") == 0
    finished = CellStore(out).finished()
    assert len(finished) == 2
    jobs = executors.read_jobs(out)
    assert set(jobs) == set(finished)
    assert {j["executor"] for j in jobs.values()} == {"local"}
    assert len({j["job_id"] for j in jobs.values()}) == 2  # two processes
    for job in jobs.values():  # logs per cell, under OUT/submitit/<job id>/
        assert Path(job["stdout"]).parent == out / "submitit" / job["job_id"]
    assert not (out / "submitit" / "%j").exists()
    assert not any((out / "cells" / key / "checkpoint").exists() for key in finished)  # removed when finished
    code, lines = status_lines(out, capsys)
    assert code == 0
    # both cells finished; their tiny chains may have R-hat above 1.1, shown as failed chains (reprior.inference.health)
    summary = lines[0].replace(f"{out}: 2 cells: ", "")
    counts = {state: int(n) for n, state in (part.split(" ", 1) for part in summary.split(", "))}
    assert counts.get("done", 0) + counts.get("failed chains", 0) == 2
    assert (counts["running"], counts["failed"], counts["pending"]) == (0, 0, 0)
    assert all(f"job {jobs[line.split()[0]]['job_id']}" in line for line in lines[1:])
    assert len(lines) == 3
    for line in lines[1:]:  # each finished: done, or failed chains with the reasons
        assert re.match(r"^[0-9a-f]{16}  (done|failed chains) +job ", line), line
        assert ("failed chains" in line) == ("  | " in line), line


@pytest.mark.slow
def test_local_and_inline_give_the_same_cells_and_shards_work(tmp_path, capsys):
    local, inline = tmp_path / "local", tmp_path / "inline"
    assert sweep(local, "--widths", "2", "3", "--executor", "local", "--jobs", "2") == 0
    assert sweep(inline, "--widths", "2", "3", "--shard", "0/2") == 0
    [key] = CellStore(inline).finished()
    a, b = posterior(local, key), posterior(inline, key)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # The local executor on the same folder skips the finished cell and runs the other shard's.
    capsys.readouterr()
    assert sweep(inline, "--widths", "2", "3", "--executor", "local", "--jobs", "2") == 0
    assert "2 cells, 1 already finished, 1 to submit" in capsys.readouterr().out
    assert len(executors.read_jobs(inline)) == 1 and len(CellStore(inline).finished()) == 2


CTRL_C_CELL = ["sweep", "--dataset", "synthetic", "--n-train", "16", "--n-test", "4", "--widths", "64",
               "--parameterisations", "reprior", "--num-warmup", "2000", "--num-samples", "2000", "--num-chains", "1",
               "--sampler", "hmc", "--sampler-option", "num_steps=4", "--no-report", "--quiet",
               "--checkpoint-every", "0.5", "--executor", "local"]


def _checkpoint_done(out: Path):
    for path in out.glob("cells/*/checkpoint/chains-0.npz"):
        try:
            with np.load(path) as data:
                return json.loads(str(data["header"]))["meta"]["done"]
        except (OSError, ValueError, KeyError):
            return None
    return None


@pytest.mark.slow
def test_ctrl_c_stops_local_cells_at_a_chunk_and_keeps_their_checkpoints(tmp_path):
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "reprior.experiments.cli", *CTRL_C_CELL, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 500
    while proc.poll() is None and (_checkpoint_done(out) or 0) < 400 and time.monotonic() < deadline:
        time.sleep(0.2)
    at_signal = _checkpoint_done(out)
    proc.send_signal(signal.SIGINT)
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, text
    assert "interrupted: running cells were asked to stop at their next chunk" in text
    assert "Traceback" not in text
    assert _checkpoint_done(out) >= at_signal >= 400  # the cell saved before it stopped
    [line] = [line for line in cli_status(out) if "pending" in line and "checkpoint of" in line]
    assert line.endswith(": a rerun resumes from it")


def cli_status(out):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "reprior.experiments.cli", "status", str(out)], capture_output=True,
                          text=True).stdout.splitlines()


def test_executor_flags_are_checked(capsys):
    assert sweep("unused", "--widths", "2", "--executor", "local", "--jobs", "0") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reprior: error: argument --jobs: expected a positive integer, received '0'")
    assert len(err.splitlines()) == 1
    assert sweep("unused", "--widths", "2", "--executor", "ray") == 2
    assert "argument --executor: invalid choice: 'ray'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"--executor: expected one of inline, local, slurm, received 'ray'"):
        executors.ExecutorSettings(name="ray")


def test_slurm_without_slurm_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert sweep(out, "--widths", "2", "--executor", "slurm") == 2
    err = capsys.readouterr().err
    assert err.startswith("reprior: error: --executor: expected slurm on a SLURM login or compute node, "
                          "received a machine without SLURM") and err.count("\n") == 1
    assert not out.exists()


# ---------------------------------------------------------------------------
# slurm, through submitit's mocked SLURM
# ---------------------------------------------------------------------------


@pytest.fixture
def restore_signals():
    """submitit's job runner installs SIGUSR2/SIGTERM handlers; put ours back afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_slurm_executor_submits_one_array_and_a_task_runs_the_cell(tmp_path, capsys, restore_signals):
    from submitit.core import submission
    from submitit.core.core import Job
    from submitit.slurm.test_slurm import mocked_slurm

    out = tmp_path / "slurm"
    with mocked_slurm() as mock:
        code = sweep(out, "--widths", "2", "3", "4", "--executor", "slurm", "--slurm-partition", "gpu",
                     "--slurm-time", "120", "--slurm-gpus-per-job", "1", "--slurm-cpus-per-job", "4",
                     "--slurm-array-parallelism", "2", "--slurm-extra", "account=abc", "--slurm-extra", "qos=high")
        assert code == 0
        printed = capsys.readouterr().out
        jobs = executors.read_jobs(out)
        ids = sorted(j["job_id"] for j in jobs.values())
        array_id = ids[0].split("_")[0]
        assert ids == [f"{array_id}_{i}" for i in range(3)]  # one array, a task per cell
        assert f"submitted job array {array_id}: 3 tasks" in printed
        script = Job(out / "submitit" / "%j", job_id=array_id).paths.submission_file.read_text()
        sbatch = sorted(line for line in script.splitlines() if line.startswith("#SBATCH"))
        for line in ("#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --time=120",
                     "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=4", "#SBATCH --account=abc",
                     "#SBATCH --qos=high", "#SBATCH --requeue", "#SBATCH --signal=USR2@90",
                     f"#SBATCH --output={out}/submitit/%A_%a/%A_%a_0_log.out"):
            assert line in sbatch, (line, sbatch)
        # Nothing ran yet: every cell is pending, with its array task id.
        code, lines = status_lines(out, capsys)
        assert lines[0] == f"{out}: 3 cells: 0 done, 0 running, 0 failed, 3 pending"
    # Run task 0 as SLURM would, in this process (SLURM's environment variables set; outside the
    # mocked subprocess module, which refuses the `uname -p` that importing h5py runs).
    key0 = next(k for k, j in jobs.items() if j["job_id"] == f"{array_id}_0")
    with mock.job_context(f"{array_id}_0"):
        submission.process_job(Path(jobs[key0]["stdout"]).parent)
    assert list(CellStore(out).finished()) == [key0]
    code, lines = status_lines(out, capsys)
    # the task's 4-draw cell has R-hat far above 1.1: finished, with failed chains (reprior.inference.health)
    assert lines[0] == f"{out}: 3 cells: 0 done, 1 failed chains, 0 running, 0 failed, 2 pending"
    assert lines[1].startswith(f"{key0}  failed chains  job {array_id}_0")
    assert lines[1].split("  | ")[1].startswith("R-hat ")  # the reasons (reprior.inference.health.chain_failure)
    assert all("submitted, not started" in line for line in lines[2:])


def test_cell_job_asks_submitit_to_requeue_the_same_call():
    """On SLURM's time-limit signal submitit calls ``checkpoint``: it saves the run in progress (none
    here) and returns the same call, which submitit requeues."""
    from reprior.experiments.runner.jobs import CellJob

    args = ({"out": "x"}, "float64", "0123456789abcdef", "reprior sweep ...", 5.0)
    delayed = CellJob().checkpoint(*args)
    assert isinstance(delayed.function, CellJob) and delayed.args == args and delayed.kwargs == {}


# ---------------------------------------------------------------------------
# status of failed, running and stopped cells
# ---------------------------------------------------------------------------


def test_status_failed_running_and_stopped_cells(tmp_path, capsys):
    out = tmp_path / "out"
    store = CellStore(out)
    for key in ("a" * 16, "b" * 16, "c" * 16):
        store.start(key, {"arch": "mlp", "width": 3, "parameterisation": "reprior", "sampler": "hmc", "seed": 0})
    store.fail("a" * 16, "Traceback (most recent call last):\nValueError: the data are bad\n")
    log = tmp_path / "a.err"
    log.write_text("starting\nsubmitit ERROR: job failed: ValueError: the data are bad\n\n")
    (out / executors.JOBS_FILE).write_text(json.dumps({"key": "a" * 16, "label": "mlp d1 w3 reprior hmc seed 0",
                                                       "job_id": "77_1", "stdout": "", "stderr": str(log)}) + "\n")
    (store.cell_dir("c" * 16) / "checkpoint").mkdir()
    (store.cell_dir("c" * 16) / "checkpoint" / "chains-0.npz").write_bytes(b"")
    with store.lock("b" * 16):
        code, lines = status_lines(out, capsys)
    assert code == 1
    assert lines[0] == f"{out}: 3 cells: 0 done, 1 running, 1 failed, 1 pending"
    # the cells share their settings, so the grid order leaves them in key order
    assert lines[1] == ("a" * 16 + "  failed   job 77_1            mlp d1 w3 reprior hmc seed 0  | "
                        "submitit ERROR: job failed: ValueError: the data are bad")
    assert lines[2] == ("b" * 16 + "  running  -                   mlp w=3 reprior hmc seed=0")
    assert lines[3].startswith("c" * 16 + "  pending  -                   mlp w=3 reprior hmc seed=0  | checkpoint of ")
    assert lines[3].endswith(": a rerun resumes from it")


def test_status_of_a_missing_directory_is_one_line(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err == f"reprior: error: DIR: expected a sweep's output directory, received '{tmp_path / 'nope'}', " \
                  "which does not exist\n"


def test_a_job_reports_failed_chains_and_strict_makes_the_executor_exit_1(tmp_path, monkeypatch):
    """The child of an executor says whether its finished cell's chains failed; the parent counts them
    in its final line, and with ``--strict`` (``submit_sweep(strict=True)``) exits 1, as the inline sweep does."""
    from reprior.inference import health
    from reprior.experiments.runner import sweep as sweep_module
    from reprior.experiments.runner.jobs import CellJob

    monkeypatch.setattr(health, "chain_failure", lambda metrics: "R-hat 1.5 > 1.1")  # every cell: failed chains
    out = tmp_path / "out"
    args = cli.build_parser().parse_args([*TINY, "--widths", "3", "--out", str(out)])
    options = cli.sweep_options(args)
    [cell] = sweep_module.plan(options, dtype="float64")[1]
    outcome = CellJob()(options, "float64", cell.key, "", 60.0)
    assert outcome == {"key": cell.key, "outcome": "finished", "message": "R-hat 1.5 > 1.1", "broken": True}

    class Done:  # a finished submitit job, as submit_sweep waits for it
        job_id = "1"

        def __init__(self, folder):
            self.paths = type("Paths", (), {"stdout": folder / "1.out", "stderr": folder / "1.err"})

        def done(self):
            return True

        def result(self):
            return outcome

    class Finished:  # submitit's local executor, its job already run (by the CellJob call above)
        def __init__(self, out):
            self.folder = Path(out) / "submitit" / "1"

        def submit(self, job, *job_args):
            return Done(self.folder)

    monkeypatch.setattr(executors, "make_executor", lambda settings, out, num_cells: Finished(out))
    for strict, code in ((False, 0), (True, 1)):
        lines = []
        result = executors.submit_sweep(dict(options, out=str(tmp_path / f"strict-{strict}")), [cell],
                                        dtype="float64", settings=executors.ExecutorSettings(name="local"),
                                        say=lines.append, strict=strict)
        assert result.finished == [cell.key] and result.broken == {cell.key: "R-hat 1.5 > 1.1"}
        assert result.exit_code == code
        assert lines[1].endswith("(job 1): failed chains (R-hat 1.5 > 1.1)")
        assert lines[2] == "done: 1 cells run (1 with failed chains), 0 skipped, 0 failed"
        assert (f"--strict: 1 cells finished with failed chains: {cell.key}" in lines) == strict
