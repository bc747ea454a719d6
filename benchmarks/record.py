"""The samplers' benchmark of record: every kernel, both parameterisations, by width, from one folder's summary.csv.

Reads the ``summary.csv`` of the sweeps of ``experiments/record.toml`` and
``experiments/record_gaussian.toml`` (same network, data and references; one
folder) and prints, per width and cell (sampler and its options):

* ``ess_per_grad_theta`` / ``ess_per_eval_theta`` / ``ess_per_second_theta``:
  median bulk ESS of the theta projections per gradient evaluation, per density
  evaluation and per second of the sampling phase, and the same for ``rb`` (the
  projections of the Rao-Blackwellised predictive mean);
* ``grads_to_b2`` / ``evals_to_b2`` / ``seconds_to_b2`` (and ``_rb``): the sampling cost (gradient
  evaluations, density evaluations -- the table's column, which counts pCN's and elliptical slice's
  gradient-free steps -- and seconds) at which the
  chains' predictions (hidden weights) first stay within the bias-squared
  threshold of the certified reference, **censored**: a cell that never got
  there gives ``>= budget`` (``reached`` false);
* ``failed``: why the chains failed (:func:`reprior.inference.health.chain_failure`);
  a failed cell's ESS is printed but never enters a target or a ratio.

Then the targets, each computed from healthy cells only, or reported as "no
result" where a side has none:

* ``split_hmc_over_nuts``: repriorised ``split_hmc`` theta ESS per gradient over the
  better repriorised NUTS cell, at the widest width;
* ``split_hmc_rising``: whether repriorised ``split_hmc``'s theta ESS per gradient
  rises with every step in width;
* ``split_hmc_over_pcnl``: repriorised ``split_hmc`` over repriorised pCNL at the
  widest width (the target is at least 0.8);
* ``standard_baseline``: standard ``split_hmc`` against standard NUTS, per width,
  by grads to b² (censored), else by theta ESS per gradient.

    python benchmarks/record.py runs/record --json docs/results/record_cpu.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from baselines import _number, read_rows  # noqa: E402

MEASURES = ("theta", "rb")
RATES = ("grad", "eval", "second")
COSTS = ("grads_to_b2", "evals_to_b2", "seconds_to_b2", "grads_to_b2_rb", "evals_to_b2_rb", "seconds_to_b2_rb")
#: The budget column that censors each cost.
_BUDGETS = {"grads": "budget_grads", "evals": "budget_evals", "seconds": "budget_seconds"}


def label(row: dict) -> str:
    """``"split_hmc (num_steps 12)"``: the sampler and its options, as the cell was run."""
    from reprior.evaluation.comparison import options_words

    words = options_words(row.get("sampler_options"))
    return f"{row.get('sampler')} ({words})" if words else str(row.get("sampler"))


def _reached(row: dict, cost: str) -> bool:
    flag = row.get("b2_rb_reached" if cost.endswith("_rb") else "b2_reached")
    return str(flag).strip().lower() == "true"


def cell_entry(row: dict) -> dict:
    """One cell of the table: its rates, its censored costs and its health."""
    from reprior.inference.health import chain_failure

    entry = {"width": int(_number(row.get("width"))), "parameterisation": row.get("parameterisation"),
             "sampler": row.get("sampler"), "label": label(row), "thinning": int(_number(row.get("thinning")) or 1),
             "num_samples": int(_number(row.get("num_samples"))), "grad_evals": _number(row.get("grad_evals")),
             "sample_seconds": _number(row.get("sample_seconds")), "accept_mean": _number(row.get("accept_mean")),
             "rhat_theta_max": _number(row.get("rhat_theta_max")), "failed": chain_failure(row),
             "reference_id": row.get("reference_id") or "", "cell": row.get("cell")}
    for measure in MEASURES:
        for rate in RATES:
            entry[f"ess_per_{rate}_{measure}"] = _number(row.get(f"ess_per_{rate}_{measure}"))
    for cost in COSTS:
        reached = _reached(row, cost)
        budget = _number(row.get(_BUDGETS[cost.split("_")[0]]))
        entry[cost] = _number(row.get(cost)) if reached else math.nan
        entry[f"{cost}_censored_at"] = math.nan if reached else budget
    return entry


def table(rows: list[dict]) -> list[dict]:
    """Cells sorted by width, parameterisation (repriorised first) and label."""
    cells = [cell_entry(r) for r in rows]
    return sorted(cells, key=lambda c: (c["width"], c["parameterisation"] != "reprior", c["label"]))


def _healthy(cells, width, parameterisation, sampler) -> list[dict]:
    return [c for c in cells if c["width"] == width and c["parameterisation"] == parameterisation
            and c["sampler"] == sampler and not c["failed"]]


def _best(cells, metric):
    """The cell with the largest finite ``metric``, or ``None``."""
    finite = [c for c in cells if math.isfinite(c[metric])]
    return max(finite, key=lambda c: c[metric]) if finite else None


def _cost_text(cell: dict, cost: str) -> str:
    if math.isfinite(cell[cost]):
        return common.fmt(cell[cost])
    bound = cell[f"{cost}_censored_at"]
    return f">= {common.fmt(bound)} (not reached)" if math.isfinite(bound) else "no reference"


def targets(cells: list[dict]) -> dict:
    """The issue's targets, computed from healthy cells; ``None`` values where a side has no healthy cell."""
    widths = sorted({c["width"] for c in cells})
    out: dict = {"widths": widths}
    if not widths:
        return out
    widest = widths[-1]
    metric = "ess_per_grad_theta"
    split = {w: _best(_healthy(cells, w, "reprior", "split_hmc"), metric) for w in widths}
    nuts = _best(_healthy(cells, widest, "reprior", "nuts"), metric)
    pcnl = _best(_healthy(cells, widest, "reprior", "pcnl"), metric)
    top = split[widest]
    out["split_hmc_over_nuts"] = {
        "width": widest, "split_hmc": top and top["label"], "nuts": nuts and nuts["label"],
        "ratio": common.ratio(top[metric], nuts[metric]) if top and nuts else None, "target": 2.0}
    out["split_hmc_over_pcnl"] = {
        "width": widest, "split_hmc": top and top["label"],
        "ratio": common.ratio(top[metric], pcnl[metric]) if top and pcnl else None, "target": 0.8}
    series = [split[w][metric] if split[w] else None for w in widths]
    out["split_hmc_rising"] = {
        "ess_per_grad_theta": dict(zip(map(str, widths), series)),
        "rising": (all(a < b for a, b in zip(series, series[1:])) if None not in series else None)}
    baseline = {}
    for w in widths:
        sides = {s: _healthy(cells, w, "standard", s) for s in ("split_hmc", "nuts")}
        every = {s: [c for c in cells if c["width"] == w and c["parameterisation"] == "standard"
                     and c["sampler"] == s] for s in ("split_hmc", "nuts")}
        by_cost = {s: min((c["grads_to_b2"] for c in every[s] if math.isfinite(c["grads_to_b2"])), default=None)
                   for s in every}
        entry = {"healthy": {s: [c["label"] for c in sides[s]] for s in sides},
                 "grads_to_b2": by_cost,
                 "failed": {s: [f"{c['label']}: {c['failed']}" for c in every[s] if c["failed"]] for s in every}}
        best = {s: _best(sides[s], metric) for s in sides}
        if best["split_hmc"] and best["nuts"]:
            entry["ess_per_grad_theta_ratio"] = common.ratio(best["split_hmc"][metric], best["nuts"][metric])
        baseline[str(w)] = entry
    out["standard_baseline"] = baseline
    return out


def main(argv=None) -> int:
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("folder", type=Path, help="a sweep folder (its summary.csv) or a summary.csv file")
    args = p.parse_args(argv)
    path = args.folder / "summary.csv" if args.folder.is_dir() else args.folder
    if not path.is_file():
        p.error(f"argument folder: expected a sweep folder holding summary.csv or a summary.csv file, received {str(args.folder)!r}")
    info = common.header()
    common.print_header(info, "benchmark of record: every kernel, both parameterisations")
    cells = table(read_rows([path]))
    for cell in cells:
        for cost in ("evals_to_b2", "evals_to_b2_rb"):
            cell[f"{cost}_text"] = _cost_text(cell, cost)
        cell["health"] = cell["failed"] or "ok"
    columns = [("width", "width", ""), ("parameterisation", "param", ""), ("label", "sampler", ""),
               ("ess_per_grad_theta", "ESS/grad theta", ".3g"), ("ess_per_eval_theta", "ESS/eval theta", ".3g"),
               ("ess_per_second_theta", "ESS/s theta", ".3g"), ("ess_per_grad_rb", "ESS/grad rb", ".3g"),
               ("ess_per_second_rb", "ESS/s rb", ".3g"), ("evals_to_b2_text", "evals to b2", ""),
               ("evals_to_b2_rb_text", "evals to b2 rb", ""), ("health", "chains", "")]
    print(common.table(cells, columns))
    result = targets(cells)
    print(json.dumps(result, indent=1, default=str))
    common.write_json("record", {"header": info, "summary": str(path), "cells": cells, "targets": result}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
