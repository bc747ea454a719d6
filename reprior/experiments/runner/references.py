"""The reference posteriors of a sweep, stored once per setting under ``OUT/references/``.

Layout::

    OUT/references/<id>/.lock              held while the reference is built
    OUT/references/<id>/reference.npz      the certified reference (ReferencePosterior.save)
    OUT/references/<id>/diagnostics.json   its diagnostics, the budget it was built with, and
                                           the sha256 of reference.npz (written last)

``<id>`` is :func:`reprior.evaluation.reference.reference_id` of the setting (data, test
inputs, architecture and width, noise, dtype), so the standard and repriorised
cells of a setting share one reference, whatever their sampler or seed.  A
reference is built under the setting's lock (an OS file lock): a second process
that wants it waits, then loads what the first built; it is built once.  A
setting that could not be certified keeps its ``diagnostics.json`` (``certified``
false, with the failing figures) and no ``reference.npz``: the next cell of the
same budget gets the same verdict without rebuilding, a larger budget tries
again.  A file that does not verify (truncated, edited, another format) is
rebuilt, never used.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from reprior._util.files import atomic_write_text

__all__ = ["DIAGNOSTICS_FILE", "REFERENCE_FILE", "REFERENCES_DIR", "ReferenceStore"]

REFERENCES_DIR = "references"
REFERENCE_FILE = "reference.npz"
DIAGNOSTICS_FILE = "diagnostics.json"
LOCK_FILE = ".lock"


def _sha256(path: Path) -> str:
    from reprior.experiments.runner.store import file_digest  # (store imports nothing from here)

    return file_digest(path)["sha256"]


class ReferenceStore:
    """References under ``root`` (a sweep's ``OUT/references``), one folder per setting id."""

    def __init__(self, root):
        self.root = Path(root)

    def folder(self, reference_id: str) -> Path:
        return self.root / reference_id

    def record(self, reference_id: str) -> dict | None:
        """The parsed ``diagnostics.json`` of ``reference_id``, or None if absent or unreadable."""
        try:
            record = json.loads((self.folder(reference_id) / DIAGNOSTICS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("reference_id") == reference_id else None

    def load(self, reference_id: str):
        """The stored certified reference, or None if there is none that verifies."""
        from reprior.evaluation.reference import ReferencePosterior

        record = self.record(reference_id)
        path = self.folder(reference_id) / REFERENCE_FILE
        if record is None or not record.get("certified") or not path.is_file():
            return None
        try:
            if _sha256(path) != record.get("sha256"):
                return None
            reference = ReferencePosterior.load(path)
        except (OSError, ValueError):
            return None
        return reference if reference.reference_id == reference_id and reference.certified else None

    def failure(self, reference_id: str, budget: dict) -> dict | None:
        """The diagnostics of a certification that failed with this ``budget``, if stored."""
        record = self.record(reference_id)
        if record is None or record.get("certified") or record.get("budget") != budget:
            return None
        return record

    def get_or_build(self, reference_id: str, budget: dict, build_fn):
        """The certified reference of ``reference_id``: loaded, or built by ``build_fn()`` under the lock.

        ``build_fn() -> ReferencePosterior`` raises
        :class:`~reprior.evaluation.reference.ReferenceNotCertified` when certification fails; that
        failure is stored with ``budget`` and raised again (from the store) for the same budget.
        """
        from filelock import FileLock

        from reprior.evaluation.reference import ReferenceNotCertified

        reference = self.load(reference_id)
        if reference is not None:
            return reference
        folder = self.folder(reference_id)
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder / LOCK_FILE)):  # blocks while another process builds it
            reference = self.load(reference_id)  # built meanwhile
            if reference is not None:
                return reference
            failed = self.failure(reference_id, budget)
            if failed is not None:
                raise ReferenceNotCertified(failed.get("message", "reference not certified"), failed["diagnostics"])
            start = time.perf_counter()
            try:
                reference = build_fn()
            except ReferenceNotCertified as err:
                self._write_record(reference_id, budget, err.diagnostics, certified=False, message=str(err),
                                   seconds=time.perf_counter() - start)
                raise
            path = reference.save(folder / REFERENCE_FILE)
            self._write_record(reference_id, budget, reference.diagnostics, certified=True,
                               seconds=time.perf_counter() - start, sha256=_sha256(path))
            return reference

    def _write_record(self, reference_id, budget, diagnostics, *, certified, seconds, message="", sha256=""):
        from reprior.experiments.runner.store import to_jsonable

        record = {"reference_id": reference_id, "certified": certified, "budget": budget, "message": message,
                  "build_seconds": seconds, "sha256": sha256, "diagnostics": to_jsonable(diagnostics)}
        atomic_write_text(self.folder(reference_id) / DIAGNOSTICS_FILE,
                          json.dumps(record, sort_keys=True, indent=1, allow_nan=True))

    def records(self) -> dict[str, dict]:
        """Every stored record, by id."""
        out = {}
        if self.root.is_dir():
            for folder in sorted(self.root.iterdir()):
                record = self.record(folder.name)
                if record is not None:
                    out[folder.name] = record
        return out


# -- a sweep's cells and their references -------------------------------------------------------
def reference_file(path, reference_id: str) -> Path:
    """The reference file of ``reference_id`` under ``path`` (``reference = PATH``): ``path`` itself when
    it is a file, else ``path/<id>/reference.npz`` or ``path/references/<id>/reference.npz``.

    Raises ValueError naming ``reference`` when there is none, or when the file is corrupt or
    built for another setting (other data, test inputs, architecture, noise or dtype)."""
    from reprior._util import checks as _checks
    from reprior.evaluation.reference import ReferencePosterior

    path = Path(path)
    if path.is_file():
        candidate = path
    else:
        found = [p for p in (path / reference_id / REFERENCE_FILE, path / REFERENCES_DIR / reference_id /
                             REFERENCE_FILE) if p.is_file()]
        if not found:
            raise _checks.fail("reference", f"a folder holding the reference {reference_id} of this setting",
                               f"{path}, which has none")
        candidate = found[0]
    reference = ReferencePosterior.load(candidate)
    if reference.reference_id != reference_id:
        raise _checks.fail("reference", f"a reference built for this setting ({reference_id}: data, test inputs, "
                           "architecture, noise, dtype)", f"{candidate}, built for {reference.reference_id}")
    if not reference.certified:
        raise _checks.fail("reference", "a certified reference", f"{candidate}, not certified")
    return candidate


def cell_reference_id(settings: dict, bnn, data) -> str:
    """The reference id of a cell (its data, test inputs, architecture, noise and dtype)."""
    from reprior.evaluation.reference import reference_id

    return reference_id(bnn, data.x_train, data.y_train, data.x_test, settings["dtype"])


def cell_reference(settings: dict, bnn, data, options: dict, out_root, *, say=None):
    """``(reference or None, failure, seconds, id)``: the cell's certified reference, built if missing.

    ``failure`` is "" with a reference, else why there is none ("reference off", "no test inputs",
    "no certified reference: <failing figures>").  ``say``: called with one line of text when a
    build starts, and when a build is not certified and is redone with more draws (:func:`next_num_samples`)."""
    from reprior.evaluation.reference import ReferenceNotCertified, ReferencePosterior, reference_posterior
    from reprior.experiments.runner.grid import reference_budget

    mode = options.get("reference", "off")
    if mode == "off":
        return None, "reference off", 0.0, ""
    if data.n_test == 0:
        return None, "no test inputs (n_test = 0)", 0.0, ""
    if bnn.inferred_noise:
        return None, "the cell infers its noise; reference posteriors need a fixed noise_std", 0.0, ""
    rid = cell_reference_id(settings, bnn, data)
    start = time.perf_counter()
    if mode != "auto":
        return ReferencePosterior.load(reference_file(mode, rid)), "", time.perf_counter() - start, rid
    budget = reference_budget(options)

    def tell(text):
        if say is not None:
            say(f"reference {rid} (width {settings['width']}): {text}")

    def build():  # more draws (next_num_samples) until certified or past the budget's most
        num_samples, runs = budget["num_samples"], None
        while True:
            tell(f"building from {', '.join(budget['samplers'])}, {budget['num_chains']} chains x "
                 f"{num_samples} draws each ..." if runs is None else
                 f"continuing its chains to {num_samples} draws each ...")
            try:
                return reference_posterior(
                    bnn, data.x_train, data.y_train, data.x_test, samplers=budget["samplers"],
                    num_chains=budget["num_chains"], num_warmup=budget["num_warmup"], num_samples=num_samples,
                    thinning=budget["thinning"], dtype=settings["dtype"], sampler_options=budget["sampler_options"],
                    threshold=budget["threshold"], init=runs)
            except ReferenceNotCertified as err:
                failing = "; ".join(err.diagnostics.get("failures", [])) or str(err)
                more = next_num_samples(num_samples, err.diagnostics, budget["max_num_samples"])
                if more is None:
                    tell(f"not certified at {num_samples} draws ({failing}); reference_max_num_samples reached")
                    err.runs = {}  # the chains are not kept past the last attempt
                    raise
                tell(f"not certified at {num_samples} draws ({failing}); continued to {more}")
                num_samples, runs = more, err.runs

    try:
        reference = ReferenceStore(Path(out_root) / REFERENCES_DIR).get_or_build(rid, budget, build)
    except ReferenceNotCertified as err:
        failures = err.diagnostics.get("failures", []) or [str(err)]
        return None, "no certified reference: " + "; ".join(failures), time.perf_counter() - start, rid
    return reference, "", time.perf_counter() - start, rid


def next_num_samples(num_samples: int, diagnostics: dict, max_num_samples: int) -> int | None:
    """The draws per chain of the next attempt at a reference that failed certification with
    ``num_samples``; None when ``max_num_samples`` is already spent.

    ESS grows in proportion to the draws, so the next attempt asks for enough to reach
    :data:`reprior.evaluation.reference.MIN_ESS` with a quarter to spare,
    :math:`N' = \\lceil N \\max(2, 1.25\\, \\mathrm{ESS}_{\\min} / \\mathrm{ESS}) \\rceil`
    (at least twice as many: R-hat and agreement failures need more draws too), capped at
    ``max_num_samples``; ``ESS`` is the smallest bulk or tail ESS of any kernel."""
    from reprior.evaluation.reference import MIN_ESS

    if num_samples >= max_num_samples:
        return None
    figures = [kernel.get(name) for kernel in diagnostics.get("kernels", {}).values()
               for name in ("ess_bulk_min", "ess_tail_min")]
    figures = [float(f) for f in figures if isinstance(f, (int, float)) and math.isfinite(f) and f > 0]
    factor = max(2.0, 1.25 * MIN_ESS / min(figures)) if figures else 2.0
    return min(max_num_samples, math.ceil(num_samples * factor))


def score_cell(idata, reference, failure: str, threshold: float, reference_id: str = "") -> tuple[dict, dict | None]:
    """``(accuracy columns, curve or None)`` of a cell: :func:`reprior.evaluation.accuracy.cost_to_accuracy`
    against ``reference``, or NaN figures (``b2_reached`` false) and ``reference_failure`` without one."""

    from reprior.evaluation.accuracy import ACCURACY_COLUMNS, cost_to_accuracy, error_curve, run_budget

    if reference is None:  # no errors, but the run's whole cost is known all the same
        figures = {name: math.nan for name in ACCURACY_COLUMNS}
        figures.update({"b2_threshold": threshold, "b2_reached": False, "b2_rb_reached": False,
                        "reference_id": reference_id, **run_budget(idata)})
        return {**figures, "reference_failure": failure}, None
    curve = error_curve(idata, reference)
    return {**cost_to_accuracy(idata, reference, threshold, curve=curve), "reference_failure": ""}, curve


def write_curve(path, curve: dict) -> Path:
    """A cell's error curve as CSV (columns :data:`reprior.evaluation.accuracy.CURVE_COLUMNS`), atomically."""
    import numpy as np

    from reprior.evaluation.accuracy import CURVE_COLUMNS

    rows = np.column_stack([np.asarray(curve[name], dtype=float) for name in CURVE_COLUMNS])
    lines = [",".join(CURVE_COLUMNS)] + [",".join(f"{v:.10g}" for v in row) for row in rows]
    return atomic_write_text(Path(path), "\n".join(lines) + "\n")


def build_references(options: dict, cells, datasets: dict, *, console=None) -> dict[str, dict]:
    """Build (or load) the reference of every distinct setting of ``cells``; ``{id: outcome}``.

    An outcome is ``{"setting", "certified", "failure", "seconds", "grad_evals", "logdensity_evals"}``.
    Settings are visited in grid order, one line each on ``console`` (a rich console) as they finish.
    """
    from reprior._util import interrupts
    from reprior.experiments.runner.sweep import build_bnn

    outcomes: dict[str, dict] = {}
    store = ReferenceStore(Path(options["out"]) / REFERENCES_DIR)
    for cell in cells:
        interrupts.checkpoint()
        data = datasets[cell.data_settings()]
        bnn = build_bnn(cell.settings)
        rid = cell_reference_id(cell.settings, bnn, data) if data.n_test and not bnn.inferred_noise else None
        if rid is None or rid in outcomes:
            continue
        setting = f"{cell.settings['arch']} d{cell.settings['depth']} w{cell.settings['width']} " \
                  f"noise {bnn.noise_description()} n_train {data.n_train}"
        if console is not None:
            console.print(f"reference {rid} ({setting}): building or loading ...", markup=False, highlight=False)
        say = None if console is None else (lambda text: console.print(text, markup=False, highlight=False,
                                                                        soft_wrap=True))
        reference, failure, seconds, _ = cell_reference(cell.settings, bnn, data, options, options["out"], say=say)
        record = store.record(rid) or {}
        diagnostics = record.get("diagnostics", {})
        outcomes[rid] = {"setting": setting, "certified": reference is not None, "failure": failure,
                         "seconds": seconds, "build_seconds": record.get("build_seconds", 0.0),
                         "grad_evals": diagnostics.get("grad_evals", 0),
                         "logdensity_evals": diagnostics.get("logdensity_evals", 0)}
        if console is not None:
            verdict = "certified" if reference is not None else failure
            console.print(f"reference {rid} ({setting}): {verdict}; built in "
                          f"{outcomes[rid]['build_seconds']:.0f} s, {outcomes[rid]['logdensity_evals']:,} "
                          "log-density evaluations", markup=False, highlight=False, soft_wrap=True)
    return outcomes


#: The start of ``reference_failure`` for a cell scored while its reference was not certified.
NO_CERTIFIED_REFERENCE = "no certified reference"


def awaits_reference(record: dict | None, options: dict) -> bool:
    """True when a finished cell's ``record`` was scored without a certified reference that a sweep
    with ``options`` (``reference = "auto"``) may be able to build now."""
    if options.get("reference", "off") != "auto" or not isinstance(record, dict):
        return False
    return str(record.get("metrics", {}).get("reference_failure", "")).startswith(NO_CERTIFIED_REFERENCE)


def rescore_cell(store, key: str, data, options: dict, *, say=None) -> dict | None:
    """Score a finished cell's stored draws again, now that its reference may be certified.

    A cell that finished while its reference failed certification keeps its draws
    (``idata.nc``), so a later sweep whose budget can certify the reference (a larger
    ``reference_max_num_samples``) builds it (:func:`cell_reference`) and scores the stored
    draws against it, rewriting ``metrics.json`` with the cost-to-accuracy columns and the
    manifest, instead of sampling the cell again.  Runs under the cell's lock; the two
    rewrites are made with interrupts deferred, so a Ctrl-C cannot leave one without the
    other.  Returns the new metrics, or None when the reference is still not certified (the
    cell is left as it was)."""
    from reprior.inference import arviz_compat as _arviz
    from reprior._util import interrupts
    from reprior.experiments.runner.sweep import build_bnn

    with store.lock(key):
        record = store.read_record(key)
        if not awaits_reference(record, options):
            return None
        settings = record["settings"]
        reference, failure, seconds, rid = cell_reference(settings, build_bnn(settings), data, options, store.root,
                                                          say=say)
        if reference is None:
            return None
        idata = _arviz.from_netcdf(store.idata_path(key))
        accuracy, curve = score_cell(idata, reference, failure, options["b2_threshold"], rid)
        metrics = {**record["metrics"], **accuracy}
        info = {**record.get("info", {}), "reference_seconds": record.get("info", {}).get("reference_seconds", 0.0)
                + seconds}
        with interrupts.deferred():
            if curve is not None:
                from reprior.evaluation.accuracy import CURVE_FILE

                write_curve(store.cell_dir(key) / CURVE_FILE, curve)
            store.finish(key, settings, metrics, info)
        return metrics
