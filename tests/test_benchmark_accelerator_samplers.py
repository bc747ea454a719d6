"""``benchmarks/accelerator.py --samplers``, the samplers table meant for a lent accelerator, run on
this CPU with ``--quick``: every (parameterisation, sampler) cell measured with the figures the docs
quote, and a budget that stops starting cells lists the rest as skipped rather than dropping them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "accelerator.py"
SAMPLERS = ["nuts", "split_hmc", "pcn", "pcnl", "elliptical_slice"]


def _run(tmp_path, *argv):
    out = tmp_path / "table.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--samplers", "--quick", "--json", str(out), *argv],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_the_samplers_table_on_the_cpu(tmp_path):
    data = _run(tmp_path)
    rows = data["samplers"]
    assert [(r["parameterisation"], r["sampler"]) for r in rows] == \
        [(p, s) for p in ("reprior", "standard") for s in SAMPLERS]
    assert data["skipped"] == [] and data["header"]["widths"] == [32]
    for row in rows:
        assert row["dtype"] == "float32" and row["width"] == 32
        assert row["logdensity_evals"] > 0 and row["sample_seconds"] > 0 and 0 <= row["accept_mean"] <= 1
        assert row["ess_per_eval_theta"] > 0 and row["ess_per_second_theta"] > 0
        gradient_free = row["sampler"] in ("pcn", "elliptical_slice")
        assert (row["grad_evals"] == 0) == gradient_free
        assert isinstance(row["failure"], str)
    # a budget of zero seconds starts no cell: all twenty are listed as skipped, none measured
    cut = _run(tmp_path, "--budget-seconds", "0", "--widths", "32", "48")
    assert cut["samplers"] == [] and len(cut["skipped"]) == 2 * 2 * len(SAMPLERS)
