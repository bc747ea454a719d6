"""Comparison across cells of a sweep: seed averages and ratios between parameterisations and samplers.

:mod:`reprior.evaluation.diagnostics` measures *one* run; this module combines the
summary rows of many (plain dicts: a cell's settings and its metrics, as in
``summary.csv``).  Cells that agree on :data:`COMPARISON_KEYS` and ``width``
form a group; within it each metric is averaged over seeds,

.. math:: \\bar m = \\frac{1}{|S|} \\sum_{s \\in S} m_s

(finite values only), and compared as a ratio of seed averages, either with the
:data:`BASELINE` parameterisation (:func:`ratio_to_baseline`) or with the
:data:`REFERENCE` sampler on the same target (:func:`ratio_to_reference`).
The names also stay importable from :mod:`reprior.evaluation.diagnostics`.  NumPy only:
no ArviZ, no plotting.
"""

from __future__ import annotations

import json
import math

import numpy as np

from reprior.inference.health import as_number, finite_reduce, safe_ratio

__all__ = ["BASELINE", "COMPARISON_KEYS", "RATIO_METRICS", "REFERENCE", "SAMPLER_RATIO_METRICS", "SETTINGS_COLUMNS",
           "TARGET_KEYS", "average_over_seeds", "comparison_key", "options_key", "options_words", "ratio_to_baseline", "ratio_to_reference",
           "target_key"]

#: The settings of a cell, first in every summary row and in ``summary.csv``.
SETTINGS_COLUMNS = ("arch", "depth", "width", "activation", "dataset", "n_train", "n_test", "noise_std",
                    "parameterisation", "readout", "sampler", "seed", "num_chains", "num_warmup", "num_samples")
#: The figures compared as repriorised / standard (test-prediction projections).
RATIO_METRICS = ("ess_per_draw_pred", "ess_per_grad_pred", "ess_per_second_pred")
#: The figures compared across samplers, against standard NUTS (:data:`REFERENCE`).
SAMPLER_RATIO_METRICS = ("ess_per_eval_pred", "ess_per_second_pred", "ess_per_eval_theta")
#: Settings that, with ``width``, identify the cells compared with each other: every
#: setting except ``width``, ``parameterisation``, ``readout`` and ``seed``.
COMPARISON_KEYS = ("arch", "depth", "activation", "dataset", "n_train", "n_test", "noise_std", "sampler",
                   "sampler_options", "num_chains", "num_warmup", "num_samples")
#: Parameterisation that the ratios divide by.
BASELINE = "standard"


def _options_dict(options):
    """``sampler_options`` as a dict: from a dict (summary rows in memory), the JSON text of
    ``summary.csv``, or nothing (None, NaN, ``""``, ``"{}"``: ``{}``); text that is not JSON is
    returned as it is."""
    if options is None or (isinstance(options, float) and math.isnan(options)):
        return {}
    if isinstance(options, str):
        text = options.strip()
        try:
            return json.loads(text) if text else {}
        except json.JSONDecodeError:
            return text
    return dict(options)


def options_key(options) -> str:
    """A cell's ``sampler_options`` as one canonical string: sorted JSON, ``""`` for none.

    Cells whose samplers ran with different options (NUTS at tree depth 5 and 10, say) are
    different series, never averaged together as if they were seeds."""
    options = _options_dict(options)
    if isinstance(options, str):
        return options
    return json.dumps(options, sort_keys=True, default=str) if options else ""


def options_words(options) -> str:
    """``"max_tree_depth 5, step_size 0.1"``: a cell's ``sampler_options`` for labels, ``""`` for none."""
    options = _options_dict(options)
    if isinstance(options, str):
        return options
    return ", ".join(f"{k} {v}" for k, v in sorted(options.items()))


def comparison_key(row: dict) -> tuple:
    """The values of :data:`COMPARISON_KEYS` in ``row`` (None where absent; ``sampler_options`` as
    :func:`options_key`)."""
    return tuple(options_key(row.get(k)) if k == "sampler_options" else row.get(k) for k in COMPARISON_KEYS)


def average_over_seeds(rows: list[dict], metrics) -> list[dict]:
    """One dict per (comparison group, width, parameterisation), averaging ``metrics`` over seeds.

    Each output dict has the :data:`COMPARISON_KEYS`, ``width``,
    ``parameterisation``, ``num_seeds`` (number of rows averaged) and, for each
    metric, the mean over those rows of its finite values (NaN if none).
    Sorted by comparison group (first appearance), width, then parameterisation
    (``standard`` first).
    """
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault((comparison_key(row), as_number(row.get("width")), row.get("parameterisation")),
                         []).append(row)
    order = {key: i for i, key in enumerate(dict.fromkeys(comparison_key(r) for r in rows))}
    out = []
    for (key, width, param), members in cells.items():
        entry = dict(zip(COMPARISON_KEYS, key, strict=True))
        entry.update(width=int(width) if np.isfinite(width) else width, parameterisation=param,
                     num_seeds=len(members))
        for metric in metrics:
            entry[metric] = finite_reduce(np.mean, [as_number(m.get(metric)) for m in members])
        out.append(entry)
    return sorted(out, key=lambda e: (order[comparison_key(e)], as_number(e["width"]),
                                      e["parameterisation"] != BASELINE, str(e["parameterisation"])))


def ratio_to_baseline(averaged: list[dict], metrics) -> list[dict]:
    """Add ``ratio_<metric>`` to each averaged entry: its value / the baseline's at the same width.

    The ratio of seed averages,
    :math:`\\overline{\\mathrm{ESS/grad}}_{\\mathrm{reprior}} / \\overline{\\mathrm{ESS/grad}}_{\\mathrm{standard}}`
    (and likewise per draw and per second), within the same comparison group
    and width; NaN where that group has no :data:`BASELINE` cell.  Returns new dicts.
    """
    return _divide_by(averaged, metrics, comparison_key, lambda e: e["parameterisation"] == BASELINE, "ratio_")


def _divide_by(averaged: list[dict], metrics, group_of, is_reference, prefix: str) -> list[dict]:
    """Copies of ``averaged`` with ``<prefix><metric>``: the entry's value over that of the first
    reference entry (``is_reference``) with the same ``group_of(entry)`` and width; NaN if none."""
    base: dict[tuple, dict] = {}
    for entry in averaged:
        if is_reference(entry):
            base.setdefault((group_of(entry), entry["width"]), entry)
    out = []
    for entry in averaged:
        entry = dict(entry)
        ref = base.get((group_of(entry), entry["width"]))
        for metric in metrics:
            entry[f"{prefix}{metric}"] = math.nan if ref is None else safe_ratio(entry[metric], ref[metric])
        out.append(entry)
    return out


#: The settings that fix the *target* (network, data, noise): cells that agree on them sample the
#: same posterior, whatever the sampler and chain lengths, and are compared across samplers.
TARGET_KEYS = tuple(k for k in COMPARISON_KEYS
                    if k not in ("sampler", "sampler_options", "num_chains", "num_warmup", "num_samples"))
#: The (parameterisation, sampler) that :func:`ratio_to_reference` divides by.
REFERENCE = ("standard", "nuts")


def target_key(row: dict) -> tuple:
    """The values of :data:`TARGET_KEYS` in ``row`` (None where absent)."""
    return tuple(row.get(k) for k in TARGET_KEYS)


def ratio_to_reference(averaged: list[dict], metrics, reference: tuple[str, str] = REFERENCE) -> list[dict]:
    """Add ``vs_reference_<metric>`` to each entry of :func:`average_over_seeds`: its value over
    that of the ``reference`` (parameterisation, sampler) cell of the same target and width.

    This compares *samplers*: a repriorised elliptical-slice run against standard NUTS on
    the same network and data, whatever their chain lengths.  With several reference
    entries at a target and width (different chain settings) the first is used.  NaN where
    there is none.  Returns new dicts.
    """
    reference = tuple(reference)
    return _divide_by(averaged, metrics, target_key,
                      lambda e: (e.get("parameterisation"), e.get("sampler")) == reference, "vs_reference_")
