"""Interrupt a small sweep at random moments and report how each run ended (issue 10's Ctrl-C measure).

    python tests/interrupt_trials.py --trials 20 --signal INT --out /tmp/trials

Each trial starts ``reprior sweep`` (4 tiny cells, a fresh output directory),
sends the signal to its process
group after a delay drawn uniformly from [0.2, MAX] seconds (import, data, compile,
sampling and writing all get hit), and records the exit status, whether the
output holds a traceback or a crash, and whether the store is consistent
afterwards (no broken cell, no temporary file).  Prints one JSON line per trial
and a summary.  Not a pytest module (its name does not start with ``test_``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

SWEEP = ["sweep", "--dataset", "synthetic", "--n-train", "8", "--n-test", "4", "--widths", "3", "5",
         "--parameterisations", "standard", "reprior", "--num-warmup", "20", "--num-samples", "20",
         "--num-chains", "2", "--sampler", "hmc", "--sampler-option", "num_steps=3", "--no-report"]
CHILD = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
         "import sys, reprior.experiments.cli; sys.exit(reprior.experiments.cli.main())")  # SIGINT as in a terminal, from the start


def trial(out: Path, signum: int, delay: float) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *SWEEP, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    time.sleep(delay)
    if proc.poll() is None:
        os.killpg(proc.pid, signum)  # as a terminal's Ctrl-C: the whole process group
        sent = True
    else:
        sent = False
    text, _ = proc.communicate(timeout=900)
    from reprior.experiments.runner.store import CellStore

    finished, broken = CellStore(out).scan()
    return {"delay": round(delay, 2), "signal_sent": sent, "exit": proc.returncode,
            "traceback": "Traceback" in text,
            # Python's own exit on an uncaught Ctrl-C is death by SIGINT (-2; a shell shows 130)
            "crash": (proc.returncode < 0 and proc.returncode != -signum) or proc.returncode == 139
            or "Segmentation" in text or "Fatal Python error" in text,
            "resume_hint": "resume with" in text or "interrupted" in text, "finished_cells": len(finished),
            "broken_cells": len(broken), "tmp_files": len(list(out.glob("cells/*/.tmp-*"))),
            "last_line": text.strip().splitlines()[-1] if text.strip() else ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--signal", choices=("INT", "TERM"), default="INT")
    parser.add_argument("--max-delay", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    signum = getattr(signal, f"SIG{args.signal}")
    results = []
    for i in range(args.trials):
        result = trial(args.out / f"trial{i:02d}", signum, rng.uniform(0.2, args.max_delay))
        results.append(result)
        print(json.dumps({"trial": i, **result}), flush=True)
    exits = {}
    for r in results:
        exits[r["exit"]] = exits.get(r["exit"], 0) + 1
    print(json.dumps({"summary": {"trials": len(results), "exits": exits,
                                  "crashes": sum(r["crash"] for r in results),
                                  "tracebacks": sum(r["traceback"] for r in results),
                                  "broken_after": sum(r["broken_cells"] > 0 for r in results),
                                  "tmp_after": sum(r["tmp_files"] > 0 for r in results)}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
