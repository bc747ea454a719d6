"""The best standard sampler against the best repriorised kernel, per width, from sweeps' summary.csv.

The fair question a user asks: is repriorised sampling faster than the *best*
sampler on the standard parameterisation?  For each width and each metric,
this takes the best standard cell (NUTS, MCLMC, adjusted MCLMC, ...) and the
best repriorised cell and prints their ratio:

* ``ess_per_eval_theta`` / ``ess_per_eval_rb``: median bulk ESS of the theta
  projections / of the projections of the Rao-Blackwellised predictive mean
  ``f_test_rb_mean``, per density evaluation in the sampling phase (a gradient
  evaluation counts as one, so for gradient-based kernels this is ESS per
  gradient; gradient-free kernels are counted fairly);
* ``ess_per_second_theta`` / ``ess_per_second_rb``: per second of sampling.

Cells whose chains failed (:func:`reprior.inference.health.chain_failure`) are left out
and listed.  Rows are matched on the data and network (dataset, n_train,
depth, activation, noise); give several files to combine sweeps (e.g. NUTS
cells run separately).  Per-second ratios are meaningful only for cells timed
under the same conditions (same machine, same load, same pinning): the JSON
keeps each cell's ``sample_seconds``.

    python benchmarks/baselines.py runs/baselines/summary.csv --json docs/results/baselines_cpu.json
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

METRICS = ("ess_per_eval_theta", "ess_per_eval_rb", "ess_per_second_theta", "ess_per_second_rb")
MATCH = ("dataset", "n_train", "depth", "activation", "noise_std", "arch")


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_rows(paths) -> list[dict]:
    rows = []
    for path in paths:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                row["source"] = str(path)
                rows.append(row)
    return rows


def compare(rows: list[dict]) -> list[dict]:
    """One entry per (matched setting, width): best standard and best repriorised cell per metric."""
    from reprior.inference.health import chain_failure

    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = tuple(row.get(k, "") for k in MATCH) + (int(_number(row.get("width"))),)
        groups.setdefault(key, []).append(row)
    out = []
    for key, cells in sorted(groups.items(), key=lambda item: item[0][-1]):
        entry = {**dict(zip(MATCH, key[:-1])), "width": key[-1], "failed": []}
        healthy = []
        for row in cells:
            why = chain_failure(row)
            label = f"{row.get('parameterisation')} {row.get('sampler')}"
            if why:
                entry["failed"].append(f"{label}: {why}")
            else:
                healthy.append(row)
        for metric in METRICS:
            for side, is_side in (("standard", lambda r: r.get("parameterisation") == "standard"),
                                  ("reprior", lambda r: r.get("parameterisation") != "standard")):
                candidates = [(_number(r.get(metric)), r) for r in healthy if is_side(r)]
                candidates = [(v, r) for v, r in candidates if math.isfinite(v)]
                if candidates:
                    value, best = max(candidates, key=lambda item: item[0])
                    entry[f"{metric}_{side}"] = value
                    entry[f"{metric}_{side}_sampler"] = f"{best.get('parameterisation')} {best.get('sampler')}"
                else:
                    entry[f"{metric}_{side}"] = math.nan
                    entry[f"{metric}_{side}_sampler"] = ""
            entry[f"{metric}_ratio"] = common.ratio(entry[f"{metric}_reprior"], entry[f"{metric}_standard"])
        entry["cells"] = [{k: row.get(k) for k in ("parameterisation", "sampler", "num_samples", "thinning",
                                                    "sample_seconds", "accept_mean", *METRICS, "source")}
                          for row in cells]
        out.append(entry)
    return out


def main(argv=None) -> int:
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("summaries", nargs="+", type=Path, help="summary.csv files of sweeps")
    args = p.parse_args(argv)
    info = common.header()
    common.print_header(info, "best standard sampler vs best repriorised kernel")
    table = compare(read_rows(args.summaries))
    columns = [("width", "width", "")]
    for metric in METRICS:
        columns += [(f"{metric}_standard_sampler", f"best standard ({metric})", ""),
                    (f"{metric}_reprior_sampler", "best reprior", ""), (f"{metric}_ratio", "ratio", ".3g")]
    print(common.table(table, columns))
    for entry in table:
        for failure in entry["failed"]:
            print(f"width {entry['width']}: left out, failed chains: {failure}")
    common.write_json("baselines", {"header": info, "table": table}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
