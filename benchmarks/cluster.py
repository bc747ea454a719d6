"""Executors, checkpoints and parallel chains (issue 12; docs/cluster.md, "Measured").

Three measurements, each a subcommand:

* ``executors``: a 6-cell sweep with ``--executor local --jobs 2`` against inline
  on the same grid: wall times, and whether every cell's InferenceData and
  non-timing metrics are identical;
* ``kill-resume``: one cell killed (SIGKILL) once a checkpoint holds half of its
  iterations, then rerun: where it resumed, wall times, equality with an
  uninterrupted run;
* ``parallel``: ``reprior.sample`` with chain_method sequential, vectorized and
  parallel (run it with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``):
  wall times and the differences between the draws.

    python benchmarks/cluster.py executors --work /tmp/cluster --json executors.json
    python benchmarks/cluster.py kill-resume --work /tmp/cluster --json kill.json
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python benchmarks/cluster.py parallel --json parallel.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GRID = ["--dataset", "synthetic", "--n-train", "32", "--n-test", "8", "--widths", "16", "64", "256",
        "--parameterisations", "standard", "reprior", "--num-warmup", "100", "--num-samples", "100",
        "--num-chains", "2", "--sampler", "hmc", "--sampler-option", "num_steps=8", "--no-report", "--quiet"]
CELL = ["--dataset", "synthetic", "--n-train", "32", "--n-test", "8", "--widths", "256", "--parameterisations",
        "reprior", "--num-warmup", "400", "--num-samples", "400", "--num-chains", "2", "--sampler", "hmc",
        "--sampler-option", "num_steps=8", "--no-report", "--quiet", "--checkpoint-every", "1"]
CELL_ITERATIONS = 2 * (400 + 400)


def _reprior(*args) -> list[str]:
    return [sys.executable, "-m", "reprior.experiments.cli", *args]


def _timed(argv) -> tuple[int, float]:
    start = time.perf_counter()
    code = subprocess.run(argv).returncode
    return code, time.perf_counter() - start


def compare_cells(a: Path, b: Path) -> dict:
    """Cells of two sweep folders: arrays of every idata group, and metrics except the timing ones."""
    import arviz as az

    keys = sorted(p.name for p in (a / "cells").iterdir())
    differences = []
    for key in keys:
        ia, ib = (az.from_netcdf(str(root / "cells" / key / "idata.nc")) for root in (a, b))
        for group in ia.groups():
            for name in ia[group].data_vars:
                if not np.array_equal(np.asarray(ia[group][name]), np.asarray(ib[group][name]), equal_nan=True):
                    differences.append(f"{key} {group}/{name}")
        ma, mb = (json.loads((root / "cells" / key / "metrics.json").read_text())["metrics"] for root in (a, b))
        for name in ma:
            timing = "second" in name or "time" in name
            if not timing and ma[name] != mb.get(name) and not (ma[name] != ma[name] and mb[name] != mb[name]):
                differences.append(f"{key} metrics/{name}")
    return {"cells": keys, "differences": differences}


def executors(work: Path, jobs: int) -> dict:
    out = {}
    for name, flags in (("inline", []), ("local", ["--executor", "local", "--jobs", str(jobs)])):
        shutil.rmtree(work / name, ignore_errors=True)
        code, wall = _timed(_reprior("sweep", *GRID, "--out", str(work / name), *flags))
        out[name] = {"exit": code, "wall_seconds": wall}
    out["local_over_inline"] = out["local"]["wall_seconds"] / out["inline"]["wall_seconds"]
    out["comparison"] = compare_cells(work / "inline", work / "local")
    return out


def _checkpoint_done(out: Path) -> int | None:
    for path in out.glob("cells/*/checkpoint/chains-0.npz"):
        try:
            with np.load(path) as data:
                return json.loads(str(data["header"]))["meta"]["done"]
        except (OSError, ValueError, KeyError):
            return None
    return None


def kill_resume(work: Path) -> dict:
    full, killed = work / "full", work / "killed"
    for folder in (full, killed):
        shutil.rmtree(folder, ignore_errors=True)
    code, full_wall = _timed(_reprior("sweep", *CELL, "--out", str(full)))
    start = time.perf_counter()
    proc = subprocess.Popen(_reprior("sweep", *CELL, "--out", str(killed)), start_new_session=True)
    saved = None
    while proc.poll() is None:
        saved = _checkpoint_done(killed)
        if saved is not None and saved >= CELL_ITERATIONS // 2:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    killed_wall = time.perf_counter() - start
    resume_code, resume_wall = _timed(_reprior("sweep", *CELL, "--out", str(killed)))
    return {"uninterrupted": {"exit": code, "wall_seconds": full_wall},
            "killed": {"exit": proc.returncode, "wall_seconds": killed_wall, "checkpoint_iterations": saved,
                       "iterations": CELL_ITERATIONS},
            "resumed": {"exit": resume_code, "wall_seconds": resume_wall},
            "comparison": compare_cells(full, killed),
            "checkpoint_left": any(killed.glob("cells/*/checkpoint"))}


def parallel() -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import reprior
    from reprior.experiments.data import load_dataset

    data = load_dataset("synthetic", n_train=32, n_test=8)
    bnn = reprior.BNN(reprior.MLP(256, 1), 0.1)
    runs, out = {}, {"devices": [str(d) for d in jax.devices()]}
    for method in ("sequential", "vectorized", "parallel"):
        start = time.perf_counter()
        runs[method] = reprior.sample(bnn, data.x_train, data.y_train, x_test=data.x_test, sampler="hmc",
                                      sampler_options={"num_steps": 8}, num_warmup=300, num_samples=300,
                                      num_chains=4, chain_method=method, progress_bar=False)
        out[f"{method}_wall_seconds"] = time.perf_counter() - start
    for a, b in (("parallel", "vectorized"), ("parallel", "sequential"), ("vectorized", "sequential")):
        out[f"{a}_vs_{b}_max_abs_diff"] = {
            name: float(np.max(np.abs(np.asarray(runs[a].posterior[name]) - np.asarray(runs[b].posterior[name]))))
            for name in runs[a].posterior.data_vars}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("measure", choices=("executors", "kill-resume", "parallel"))
    parser.add_argument("--work", type=Path, default=Path("runs/cluster_benchmark"), help="folder for the sweeps")
    parser.add_argument("--jobs", type=int, default=2, help="executors: local jobs at once (default 2)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    result = {"executors": lambda: executors(args.work, args.jobs), "kill-resume": lambda: kill_resume(args.work),
              "parallel": parallel}[args.measure]()
    result["load_average"] = os.getloadavg()
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
