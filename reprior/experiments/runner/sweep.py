"""Run the cells of a sweep: load data, build the BNN, sample, measure, store.

Each cell is one call of the public :func:`reprior.sample`, exactly as a user
would make it, followed by :func:`reprior.evaluation.diagnostics.cell_metrics`; its
results go to the :class:`~reprior.experiments.runner.store.CellStore`.  Finished cells
are skipped, so rerunning a sweep resumes it; a cell whose files do not verify
against its manifest is redone.  A cell runs only under its lock: a cell that
another process is running is skipped.  A cell that raises is recorded
(``error.txt``) and the sweep goes on.  Ctrl-C and SIGTERM are deferred to the
next safe point (between chunks of a chain, between cells; see
:mod:`reprior._util.interrupts`): the cell in progress is abandoned, every cell
finished before it stays finished, and the sweep says how to resume.
"""

from __future__ import annotations

import datetime
import json
import platform
import shutil
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reprior.inference import checkpoint
from reprior._util import interrupts
from reprior._util import checks as _checks
from reprior.evaluation.comparison import SETTINGS_COLUMNS  # the settings copied into every summary row, first
from reprior.evaluation.accuracy import CURVE_FILE as ACCURACY_CURVE_FILE  # a cell's running error, one row per draw
from reprior.experiments.report import CELL_WARNINGS_FILE
from reprior.evaluation.accuracy import DEFAULT_THRESHOLD
from reprior.experiments.runner import grid as grid_mod
from reprior.experiments.runner import ownership, references
from reprior.experiments.runner.store import CellBusy, CellStore, to_jsonable

__all__ = ["KEEP_BUDGET_BYTES", "SETTINGS_COLUMNS", "SweepResult", "build_bnn", "load_all_data", "load_cell_data", "plan",
           "plan_line", "report_rows", "resolve_keep", "run_cell", "run_sweep", "summary_line", "write_sweep_report"]

CHECKPOINT_DIR = "checkpoint"
"""A cell's chain checkpoints, under its directory (removed when the cell is finished)."""


WARNINGS_FILE = CELL_WARNINGS_FILE  # reprior.experiments.report reads it back
"""The warnings a cell raised (its own and its dependencies'), one per line; absent when none."""

KEEP_BUDGET_BYTES = 64 * 2**20
"""``keep="auto"``: the largest per-cell size of stored parameter draws."""

_EXTRA_SETTINGS = ("residual_scaling", "data_seed", "thinning", "chain_method", "dtype", "num_projections")


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: keys skipped (finished before), run now, failed; the report's files."""

    cells: list
    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    busy: dict[str, str] = field(default_factory=dict)
    redone: dict[str, str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # finished, but its chains failed (the health rule)
    rescored: list[str] = field(default_factory=list)  # finished before, scored again against a new reference
    strict: bool = False  # broken chains make the exit status 1
    interrupted: bool = False
    signum: int = 2
    report: dict | None = None
    report_error: str | None = None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + self.signum
        return 1 if self.failed or self.report_error or (self.strict and self.broken) else 0


def plan(options: dict[str, Any], *, dtype: str, shard: tuple[int, int] | None = None):
    """``(all_cells, selected_cells)`` of validated ``options``."""
    cells = grid_mod.expand(options, dtype=dtype)
    return cells, grid_mod.select_shard(cells, shard)


# ---------------------------------------------------------------------------
# One cell
# ---------------------------------------------------------------------------


def load_cell_data(settings: dict[str, Any]):
    """The :class:`reprior.experiments.data.Dataset` of a cell: flat inputs, or images for an architecture on images."""
    from reprior.experiments.data import load_dataset

    images = grid_mod.architecture_spec(settings["arch"]).image_inputs
    data = load_dataset(settings["dataset"], n_train=settings["n_train"], n_test=settings["n_test"],
                        seed=settings["data_seed"], path=settings["data_path"],
                        flatten=None if images else True, **settings["dataset_options"])
    if images and data.image_shape is None:
        raise _checks.fail("arch", f"an architecture for the inputs of data set {settings['dataset']!r}, of shape "
                           f"{data.x_train.shape} (an MLP; image architectures need inputs (n, H, W, C): digits, "
                           "cifar10 or an image .npz)", settings["arch"])
    return data


def load_all_data(cells) -> dict:
    """``{cell.data_settings(): Dataset}``: each distinct data setting of ``cells`` loaded once."""
    datasets = {}
    for cell in cells:
        interrupts.checkpoint()  # a Ctrl-C while loading stops here (nothing written yet)
        if cell.data_settings() not in datasets:
            datasets[cell.data_settings()] = load_cell_data(cell.settings)
    return datasets


def noise_order(noise) -> tuple:
    """A sort key of a ``noise_std`` setting: fixed noises by value, then priors by their text."""
    return (0, float(noise), "") if isinstance(noise, (int, float)) else (1, 0.0, str(noise))


def build_bnn(settings: dict[str, Any]):
    """The :class:`reprior.BNN` of a cell: its architecture built by the registered
    :attr:`~reprior.core.architectures.registry.ArchitectureSpec.from_settings`."""
    from reprior import BNN
    from reprior.core.bnn import parse_noise_prior

    noise = settings["noise_std"]  # a number, or a prior's text (an inferred noise)
    noise = parse_noise_prior(noise, "noise_std") if isinstance(noise, str) else noise
    return BNN(grid_mod.architecture_spec(settings["arch"]).from_settings(settings), noise)


def resolve_keep(settings: dict[str, Any], bnn, x_shape, out_dim: int, budget: int = KEEP_BUDGET_BYTES) -> str:
    """``keep="auto"``: ``"all"`` if every parameter's draws fit in ``budget`` bytes, else
    ``"readout"`` if the readout's do, else ``"none"`` (projections and predictions are always kept)."""
    import jax

    if settings["keep"] != "auto":
        return settings["keep"]
    shapes = bnn.param_shapes(x_shape, out_dim)
    num_all = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes))
    num_readout = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes["readout"]))
    if settings["parameterisation"] != "standard":
        num_readout *= 2  # theta_out and phi_out
    draws = settings["num_chains"] * settings["num_samples"]
    bytes_per = 4 if settings["dtype"] == "float32" else 8
    if (num_all + num_readout) * draws * bytes_per <= budget:
        return "all"
    if num_readout * draws * bytes_per <= budget:
        return "readout"
    return "none"


def run_cell(cell, data, *, progress_bar: bool = False, limits_dir=None, reference_options: dict | None = None,
             out_root=None, say=None, nngp_width: int | None = None):
    """Sample one cell; return ``(idata, metrics, info)``.

    ``limits_dir``: the folder caching the cell's infinite-width limit (NNGP reference and
    evidence, :func:`reprior.evaluation.limits.limit_inputs`); None leaves the limit metrics NaN.
    ``reference_options``: the sweep's reference settings (``reference``, ``reference_*``,
    ``b2_threshold``; None: no reference); the cell's reference posterior is found or built
    under ``out_root/references`` (:mod:`reprior.experiments.runner.references`) and the cell is scored
    against it (:func:`reprior.evaluation.accuracy.cost_to_accuracy`); the error curve is returned
    in ``info["accuracy_curve"]``.  ``say``: where a reference build tells its progress (one line
    per attempt; None: silent).  ``nngp_width``: the width at which the NNGP kernel of an
    architecture without a closed form is estimated (:func:`reprior.evaluation.limits.nngp_reference`; a sweep
    passes its widest; None: the cell's own)."""
    from reprior.evaluation.diagnostics import cell_metrics, run_info
    from reprior.inference.sampling import sample

    s = cell.settings
    bnn = build_bnn(s)
    parameterisation, readout = grid_mod.PARAMETERISATIONS[s["parameterisation"]]
    keep = resolve_keep(s, bnn, data.x_train.shape, data.out_dim)
    has_test = data.n_test > 0
    start = time.perf_counter()
    with warnings.catch_warnings():  # failed chains: recorded in idata.attrs and said in the cell's line
        warnings.filterwarnings("ignore", message="reprior.sample: the chains", category=RuntimeWarning)
        idata = sample(bnn, data.x_train, data.y_train, x_test=data.x_test if has_test else None,
                       parameterisation=parameterisation, readout=readout, sampler=s["sampler"],
                       num_warmup=s["num_warmup"], num_samples=s["num_samples"], num_chains=s["num_chains"],
                       seed=s["seed"], progress_bar=progress_bar, chain_method=s["chain_method"], dtype=s["dtype"],
                       sampler_options=s["sampler_options"] or None, thinning=s["thinning"], keep=keep,
                       num_projections=s["num_projections"])
    wall = time.perf_counter() - start
    from reprior.inference import arviz_compat as _arviz
    from reprior.inference.inference_data import STATE_GROUP

    if keep != "all":  # the kernel states to continue from are about the size of the parameters, which
        _arviz.remove_group(idata, STATE_GROUP)  # such a cell does not keep either (continue: keep = "all")
    for group in _arviz.group_names(idata):
        idata[group].attrs["cell_key"] = cell.key
        idata[group].attrs["cell_settings"] = json.dumps(to_jsonable(s), sort_keys=True)
    limits, limits_info = _cell_limits(s, bnn, data, cell, limits_dir, nngp_width)
    metrics = cell_metrics(idata, y_test=data.y_test if has_test else None, limits=limits)
    options = reference_options or {"reference": "off", "b2_threshold": DEFAULT_THRESHOLD}
    reference, failure, reference_seconds, rid = references.cell_reference(s, bnn, data, options, out_root, say=say)
    accuracy, curve = references.score_cell(idata, reference, failure, options["b2_threshold"], rid)
    metrics.update(accuracy)
    info = {**run_info(idata), "keep": keep, "num_train": data.n_train, "num_test": data.n_test,
            "wall_seconds": wall, "host": platform.node(),
            "finished_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), **limits_info,
            "reference_seconds": reference_seconds, "accuracy_curve": curve}
    return idata, metrics, info


def _cell_limits(s, bnn, data, cell, limits_dir, nngp_width=None):
    """``(LimitInputs or None, info)``: the limit of the cell, cached under ``limits_dir``.
    A failure leaves the limit metrics NaN and is reported in ``info["limits_error"]``."""
    if limits_dir is None:
        return None, {}
    from reprior.evaluation.limits import limit_inputs
    from reprior.core.nngp import has_closed_form_kernel

    start = time.perf_counter()
    try:
        mc_arch = None  # an architecture without a closed-form kernel: estimated at the sweep's widest width
        if nngp_width is not None and not has_closed_form_kernel(bnn.arch):
            mc_arch = build_bnn({**s, "width": nngp_width}).arch
        limits = limit_inputs(bnn, data.x_train, data.y_train, data.x_test if data.n_test > 0 else None,
                              cache_dir=limits_dir, data_description=list(cell.data_settings()), seed=s["seed"],
                              dtype=s["dtype"], mc_arch=mc_arch)
    except Exception as err:  # the samples are good whatever the limit does
        return None, {"limits_error": f"{type(err).__name__}: {err}"}
    return limits, {"limits_seconds": time.perf_counter() - start}


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------


def _console():
    """Rich's global console: the per-cell progress bar of :func:`reprior.sample` nests in its live display."""
    import rich

    return rich.get_console()


def _cell_progress(console, enabled: bool):
    """A bar over cells: count, elapsed time, and an ETA from the mean time per finished cell."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class MeanEta(ProgressColumn):
        def render(self, task):
            if not task.completed or task.total is None or task.elapsed is None:
                return Text("ETA -:--:--", style="progress.remaining")
            seconds = int(task.elapsed / task.completed * max(task.total - task.completed, 0))
            return Text(f"ETA {seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
                        style="progress.remaining")

    return Progress(TextColumn("[bold]cells[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), MeanEta(), console=console, disable=not enabled, transient=False)


def _say(console, text: str, style: str | None = None) -> None:
    """Print plain text (no markup, no highlighting, no wrapping: paths stay whole)."""
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def summary_line(metrics: dict, wall: float, *, num_chains: int | None = None) -> str:
    """A finished cell's console line, as :func:`run_sweep` prints it after ``done <key> <label>:``.

    ``metrics``: the cell's metrics (:func:`run_cell`'s); ``wall``: its seconds.  The line gives the
    ESS per gradient evaluation, the ESS, R-hat and the acceptance (``-`` where missing) and ends in
    ``"; FAILED (<reasons>)"`` when the chains failed (:func:`reprior.inference.health.chain_failure`;
    ``num_chains=None``, unknown, leaves R-hat unjudged)."""
    from reprior.inference.health import chain_failure

    def fmt(name):
        value = metrics.get(name)
        try:
            return f"{float(value):.3g}"
        except (TypeError, ValueError):
            return "-"

    why = chain_failure({**metrics, "num_chains": num_chains})
    return (f"ESS/grad(pred) {fmt('ess_per_grad_pred')}, ESS(pred) {fmt('ess_bulk_pred_median')}, "
            f"R-hat {fmt('rhat_max')}, accept {fmt('accept_mean')}, {wall:.1f} s"
            + (f"; FAILED ({why})" if why else ""))


#: Cell settings that do not change a cell's reference posterior (the sampler and its chains).
_NOT_REFERENCE_SETTINGS = frozenset({"parameterisation", "readout", "sampler", "sampler_options", "seed", "num_chains",
                                     "num_warmup", "num_samples", "thinning", "chain_method", "keep",
                                     "num_projections"})


def plan_line(all_cells, cells, skipped, todo, shard, root, reference: str = "off") -> str:
    """The line :func:`run_sweep` opens with: the cells of the grid (``all_cells``), of this shard
    (``cells``; ``shard`` ``(index, count)`` or None), already finished (``skipped``) and to run
    (``todo``), the iterations and gradient evaluations these need, and the output folder ``root``.
    With ``reference="auto"`` it counts the reference posteriors the cells to run may build (one per
    setting that does not depend on the sampler, under ``root/references``)."""
    where = f"shard {shard[0]}/{shard[1]}: " if shard else ""
    iterations = sum(grid_mod.iterations(c.settings) for c in todo)
    grads = grid_mod.describe_grad_evals(c.settings for c in todo)
    settings = len({json.dumps({k: v for k, v in c.settings.items() if k not in _NOT_REFERENCE_SETTINGS},
                               sort_keys=True, default=str) for c in todo})
    extra = (f"; plus the reference posteriors of up to {settings} settings, each built once under "
             f"{Path(root) / references.REFERENCES_DIR} unless already there" if reference == "auto" and todo else "")
    return (f"reprior sweep: {len(all_cells)} cells in the grid, {where}{len(cells)} to do here, "
            f"{len(skipped)} already finished, {len(todo)} to run ({iterations:,} iterations, "
            f"{grads}{extra}); output in {root}")


def run_sweep(options: dict[str, Any], *, dtype: str, shard: tuple[int, int] | None = None, command: str = "",
              quiet: bool = False, report: bool | None = None, datasets: dict | None = None,
              keys=None, checkpoint_every: float = checkpoint.DEFAULT_EVERY, force: bool = False,
              strict: bool = False) -> SweepResult:
    """Run the (shard of the) grid of validated ``options``; skip finished cells.

    ``strict``: a cell that finished with failed chains (:func:`reprior.inference.health.chain_failure`)
    makes the exit status 1; either way they are counted in the final line.

    ``keys``: run only these cells (an executor's job runs one cell so).
    ``checkpoint_every``: seconds between checkpoints of a cell's chains, in
    ``OUT/cells/<key>/checkpoint/`` (:mod:`reprior.inference.checkpoint`): a rerun resumes
    an interrupted cell from there; the folder goes once the cell is finished.

    ``force``: write into a non-empty ``options["out"]`` that reprior did not make
    (:mod:`reprior.experiments.runner.ownership`; refused otherwise).

    ``datasets``: ``{cell.data_settings(): Dataset}`` already loaded (by
    :func:`reprior.experiments.preflight.check_sweep`); loaded here otherwise.

    Data are loaded once per data setting, before any sampling, so a missing
    file is reported before the first cell runs (the error propagates).
    Writes the report over every finished cell in the output directory at the
    end (only into a folder of reprior's, :func:`reprior.experiments.runner.ownership.require_ours`;
    whatever is in the way, a ``plots`` file or a ``summary.csv`` folder, is refused
    before any file is rewritten), unless ``report`` (default: ``options["report"]``) is false or the
    sweep was interrupted.
    """
    console = _console()
    store = CellStore(options["out"])
    ownership.check_claimable(store.root, "out", force=force)
    all_cells, cells = plan(options, dtype=dtype, shard=shard)
    if keys is not None:
        cells = [cell for cell in cells if cell.key in set(keys)]
    result = SweepResult(cells=cells, strict=strict)
    todo, rescore = _triage(cells, store, options, result)
    _say(console, plan_line(all_cells, cells, result.skipped, todo, shard, store.root, options["reference"]))
    for key, reason in result.redone.items():
        _say(console, f"redoing broken cell {key}: {reason}", style="yellow")

    if rescore and not quiet:
        _say(console, f"{len(rescore)} finished cells were scored without a certified reference: scored "
                      "again if it certifies now")
    if datasets is None or any(c.data_settings() not in datasets for c in todo + rescore):
        datasets = load_all_data(todo + rescore)  # every data set first: a bad path fails before any sampling

    ownership.claim(store.root, "out", force=force)  # the marker, before any cell
    reference_options = {k: v for k, v in options.items() if k.startswith("reference") or k == "b2_threshold"}
    widest = _widest(all_cells)
    progress = _cell_progress(console, enabled=not quiet and bool(todo) and console.is_terminal)
    try:
        _run_cells(todo, rescore, datasets, store, result, command=command, console=console, progress=progress,
                   quiet=quiet, reference_options=reference_options, widest=widest, checkpoint_every=checkpoint_every)
    except KeyboardInterrupt as err:
        result.interrupted = True
        result.signum = interrupts.exit_code(err) - 128
        name = "SIGTERM" if result.signum == 15 else "Ctrl-C"
        _say(console, f"interrupted ({name}): {len(result.finished)} cells finished in this run "
                      f"({len(result.skipped) + len(result.finished)} of {len(cells)} in all), the cell in "
                      f"progress stopped unfinished; resume with: {command or 'the same command'}")
        return result
    _say_outcome(console, result, store, strict)
    if report if report is not None else options["report"]:
        _report_sweep(console, result, store, command)
    return result


def _triage(cells, store: CellStore, options: dict[str, Any], result: SweepResult) -> tuple[list, list]:
    """``(todo, rescore)``: the cells to run (unfinished or broken, the broken ones noted in
    ``result.redone``) and the finished ones to score again (scored without a certified reference);
    every finished cell is noted in ``result.skipped``."""
    todo, rescore = [], []
    for cell in cells:
        state = store.state(cell.key, cell.settings)
        if state.finished:
            result.skipped.append(cell.key)
            if references.awaits_reference(state.record, options):
                rescore.append(cell)
        else:
            if state.state == "broken":
                result.redone[cell.key] = state.reason
            todo.append(cell)
    return todo, rescore


def _widest(all_cells) -> dict[str, int]:
    """Per architecture, the widest width over the whole plan: the width of a Monte Carlo NNGP kernel."""
    widest: dict[str, int] = {}
    for c in all_cells:
        widest[c.settings["arch"]] = max(widest.get(c.settings["arch"], 0), c.settings["width"])
    return widest


def _run_cells(todo, rescore, datasets, store: CellStore, result: SweepResult, *, command: str, console, progress,
               quiet: bool, reference_options: dict, widest: dict[str, int], checkpoint_every: float) -> None:
    """Run the cells ``todo`` (each checkpointed under its directory), then score ``rescore`` again;
    interrupts are deferred to between chunks and cells, and raise ``KeyboardInterrupt`` there."""
    lines = not quiet and not console.is_terminal  # a file or pipe: a line per cell instead of bars
    with interrupts.deferred(), progress:
        task = progress.add_task("", total=len(todo))
        for number, cell in enumerate(todo, 1):
            interrupts.checkpoint()
            progress.update(task, description=cell.label())
            if lines:
                _say(console, f"start {number}/{len(todo)} {cell.key} {cell.label()}")
            with checkpoint.checkpointing(store.cell_dir(cell.key) / CHECKPOINT_DIR, checkpoint_every):
                _run_one(cell, datasets[cell.data_settings()], store, result, command, progress, quiet,
                         reference_options, widest[cell.settings["arch"]])
            progress.advance(task)
        for cell in rescore:
            interrupts.checkpoint()
            _rescore_one(cell, datasets[cell.data_settings()], store, result, progress.console, quiet,
                         reference_options)


def _say_outcome(console, result: SweepResult, store: CellStore, strict: bool) -> None:
    """The sweep's closing lines: cells left to another process, failed cells, the counts, ``--strict``."""
    if result.busy:
        _say(console, f"{len(result.busy)} cells skipped: another process is running them: "
                      + "; ".join(result.busy.values()), style="yellow")
    if result.failed:
        _say(console, f"{len(result.failed)} cells failed (tracebacks in {store.cells_dir}/<key>/error.txt): "
             + ", ".join(result.failed), style="red")
    broken = f" ({len(result.broken)} with failed chains)" if result.broken else ""
    _say(console, f"done: {len(result.finished)} cells run{broken}, {len(result.skipped)} skipped, "
                  f"{len(result.failed)} failed" + (f", {len(result.busy)} left to another process"
                                                    if result.busy else ""))
    if result.broken and strict:
        _say(console, f"--strict: {len(result.broken)} cells finished with failed chains: "
                      + ", ".join(result.broken), style="red")


def _report_sweep(console, result: SweepResult, store: CellStore, command: str) -> None:
    """Write the report over every finished cell into ``result.report`` and name its files; a failure is
    kept in ``result.report_error`` (the cells are safe; ``reprior report`` redoes it)."""
    interrupts.checkpoint()  # a Ctrl-C after the last cell: skip the report (`reprior report` redoes it)
    try:
        result.report = write_sweep_report(store.root, command=command, console=console)
    except Exception as err:  # the cells are safe; the report can be redone alone
        result.report_error = f"{type(err).__name__}: {err}"
        _say(console, f"the report failed ({result.report_error}); retry with: reprior report {store.root}",
             style="red")
    if result.report:
        _say(console, f"report: {result.report['report_md']}")
        _say(console, f"        {result.report['report_html']}")
        _say(console, f"        {result.report['summary_csv']}")


def _rescore_one(cell, data, store, result, console, quiet, reference_options) -> None:
    """Score a finished cell's draws again against its reference (:func:`references.rescore_cell`)."""
    say = None if quiet else (lambda text: _say(console, text))
    try:
        metrics = references.rescore_cell(store, cell.key, data, reference_options, say=say)
    except CellBusy as busy:
        result.busy[cell.key] = str(busy)
        return
    except Exception as err:  # the cell stays as it was, scored without a reference
        _say(console, f"could not score {cell.key} {cell.label()} again: {type(err).__name__}: {err}", style="red")
        return
    if metrics is not None:
        result.rescored.append(cell.key)
        if not quiet:
            _say(console, f"scored again {cell.key} {cell.label()}: {_accuracy_phrase(metrics)}")


def _accuracy_phrase(metrics: dict) -> str:
    """Gradients to the threshold on the predictions and on the hidden weights, or the run's whole cost."""
    parts = []
    for label, reached, grads in (("predictions", "b2_reached", "grads_to_b2"),
                                  ("hidden weights", "b2_rb_reached", "grads_to_b2_rb")):
        if metrics.get(reached):
            parts.append(f"{label} below the threshold after {metrics[grads]:.3g} gradients")
        else:
            parts.append(f"{label} not below it in {metrics.get('budget_grads', float('nan')):.3g}")
    return "; ".join(parts)


def _write_warnings(path: Path, caught) -> Path | None:
    """The warnings a cell raised, one line each (category, message, where), in ``path``; None when none."""
    if not caught:
        return None
    from reprior._util.files import atomic_write_text

    lines = [f"{w.category.__name__}: {' '.join(str(w.message).split())} ({w.filename}:{w.lineno})" for w in caught]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def _run_one(cell, data, store, result, command, progress, quiet, reference_options, nngp_width=None):
    try:
        with store.lock(cell.key):
            if store.is_finished(cell.key, cell.settings):  # another process finished it meanwhile
                result.skipped.append(cell.key)
                return
            _run_locked(cell, data, store, result, command, progress, quiet, reference_options, nngp_width)
    except CellBusy as busy:
        result.busy[cell.key] = str(busy)
        if not quiet:
            _say(progress.console, f"skipped {cell.key} {cell.label()}: {busy}", style="yellow")


def _run_locked(cell, data, store, result, command, progress, quiet, reference_options, nngp_width=None):
    store.start(cell.key, cell.settings, command)
    try:
        with warnings.catch_warnings(record=True) as caught:  # to the cell's log, not between the console lines
            warnings.simplefilter("always")
            idata, metrics, info = run_cell(cell, data, progress_bar=not quiet and progress.console.is_terminal,
                                            limits_dir=store.root / "limits", reference_options=reference_options,
                                            out_root=store.root,
                                            say=None if quiet else (lambda text: _say(progress.console, text)),
                                            nngp_width=nngp_width)
        log = _write_warnings(store.cell_dir(cell.key) / WARNINGS_FILE, caught)
        info["warnings"] = len(caught)  # a summary.csv column: how many lines warnings.txt holds
        info["command"] = command
        curve = info.pop("accuracy_curve")
        if curve is not None:
            references.write_curve(store.cell_dir(cell.key) / ACCURACY_CURVE_FILE, curve)
        store.write_idata(cell.key, idata)
        store.finish(cell.key, cell.settings, metrics, info)
        shutil.rmtree(store.cell_dir(cell.key) / CHECKPOINT_DIR, ignore_errors=True)
    except Exception as err:  # a failed cell is recorded and the sweep goes on
        store.fail(cell.key, traceback.format_exc())
        result.failed[cell.key] = f"{type(err).__name__}: {err}"
        _say(progress.console, f"failed {cell.key} {cell.label()}: {type(err).__name__}: {err}", style="red")
        return
    except BaseException:  # Ctrl-C: the partial cell leaves no temporary file of ours
        store.remove_leftovers(cell.key)
        raise
    result.finished.append(cell.key)
    from reprior.inference.health import chain_failure

    why = chain_failure({**metrics, "num_chains": cell.settings["num_chains"]})
    if why:
        result.broken[cell.key] = why
    if not quiet:
        line = summary_line(metrics, info["wall_seconds"], num_chains=cell.settings["num_chains"])
        if log is not None:
            line += f"; {len(caught)} warning{'s' if len(caught) != 1 else ''} in {log}"
        _say(progress.console, f"done {cell.key} {cell.label()}: {line}")


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def current_metrics(store: CellStore, key: str, record: dict, data_cache: dict | None = None) -> dict:
    """A finished cell's metrics, recomputed from its NetCDF file when ``metrics.json`` lacks some
    of :func:`reprior.evaluation.diagnostics.metric_names` (a cell written by an earlier reprior, before
    those metrics existed).  ``metrics.json`` itself is left as it was written."""
    from reprior.evaluation.diagnostics import cell_metrics, metric_names

    metrics = record["metrics"]
    if set(metric_names()) <= set(metrics):
        return metrics
    from reprior.inference import arviz_compat as _arviz

    settings = record["settings"]
    data_key = json.dumps([settings.get(k) for k in ("dataset", "data_path", "dataset_options", "n_train", "n_test",
                                                      "data_seed", "arch")], sort_keys=True, default=str)
    cache = {} if data_cache is None else data_cache
    if data_key not in cache:
        cache[data_key] = load_cell_data(settings)
    data = cache[data_key]
    idata = _arviz.from_netcdf(store.idata_path(key))
    # Recomputed figures only fill the gaps: the limit metrics need the cell's NNGP reference and
    # evidence, which the recomputation lacks (it would give NaN), so the stored values stay.
    return {**cell_metrics(idata, y_test=data.y_test if data.n_test > 0 else None), **metrics}


def broken_cell_warnings(store: CellStore, broken: dict[str, str]) -> list[str]:
    """One line per broken cell: the cell, what is wrong, and the command that redoes it."""
    return [f"warning: skipped broken cell {key} ({reason}); repair with: {store.repair_command(key)}"
            for key, reason in broken.items()]


def report_rows(store: CellStore, finished: dict[str, dict] | None = None) \
        -> tuple[list[dict], dict[str, Path], list[str]]:
    """``(rows, {key: idata path}, commands)`` of every finished cell in ``store``, in grid-like order."""
    rows, paths, commands, data_cache = [], {}, [], {}
    for key, record in (store.finished() if finished is None else finished).items():
        s, info = record["settings"], record.get("info", {})
        row = {name: s.get(name) for name in SETTINGS_COLUMNS}
        for name, count in (("n_train", "num_train"), ("n_test", "num_test")):  # the data set's default or
            if not isinstance(row[name], int) and isinstance(info.get(count), int):  # "all": the number it gave
                row[name] = info[count]
        row.update(current_metrics(store, key, record, data_cache))
        row["cell"] = key
        row.update({name: s[name] for name in _EXTRA_SETTINGS if name in s})
        row["sampler_options"] = json.dumps(s.get("sampler_options", {}), sort_keys=True)
        row.update({k: v for k, v in info.items() if k not in row and k != "command"})
        rows.append(row)
        paths[key] = store.idata_path(key)
        if info.get("command") and info["command"] not in commands:
            commands.append(info["command"])

    def order(row):
        return (str(row["dataset"]), row["n_train"], str(row["arch"]), row["depth"], str(row["activation"]),
                noise_order(row["noise_std"]), str(row["sampler"]), row["seed"], row["width"],
                str(row["parameterisation"]))

    rows.sort(key=order)
    return rows, paths, commands


def write_sweep_report(out_dir: str | Path, *, command: str | None = None, console=None) -> dict[str, Path] | None:
    """Write the report of every finished cell under ``out_dir``; None if there is none.

    ``command``: the command quoted in the report (default: the commands that
    ran the cells, as recorded in their ``metrics.json``).  Broken cells (files
    that do not match their manifest) are left out, each with a one-line
    warning on ``console`` (default: stderr) naming the cell and the command
    that repairs it; the report lists them too.
    """
    from reprior.experiments.preflight import check_layout
    from reprior.experiments.report import write_report

    store = CellStore(out_dir)
    check_layout(store.root, "DIR", folders=("plots",), files=("summary.csv", "report.md", "report.html"))
    finished, broken = store.scan()
    warnings_ = broken_cell_warnings(store, broken)
    for line in warnings_:
        if console is None:
            print(line, file=sys.stderr)
        else:
            _say(console, line, style="yellow")
    rows, paths, commands = report_rows(store, finished)
    if not rows:
        return None
    ownership.require_ours(store.root, "DIR")  # reports go only into reprior's folders
    if command is None or not command:
        command = "\n".join(commands)
    elif commands and command not in commands:
        command = "\n".join(commands + [command])
    return write_report(store.root, rows, command=command, cells_idata={k: str(p) for k, p in paths.items()},
                        skipped_cells=[line.removeprefix("warning: ") for line in warnings_])
