"""Checks a command runs before it samples or writes anything.

Each check raises :class:`reprior.experiments.runner.grid.ConfigError` (a ``ValueError``)
whose message is one line naming the argument, what was expected and what was
received; the CLI prints it as ``reprior: error: ...`` with exit status 2.

* output directory: not a file, no file on its path, names the file system takes, writable
  (tried with a temporary file), reprior's entries inside it of the right kind, and reprior's
  own or empty (:mod:`reprior.experiments.runner.ownership`; ``--force`` to adopt another);
* sampler options: every cell's kernel is built once on a zero density
  (:func:`reprior.inference.kernels.validate_options`), so whatever the kernels validate
  (names, types, ranges) fails now, not in every cell at run time;
* data: every data setting is loaded (a bad file fails now);
* architectures: every cell's network is built and its features' shape read, and the feature
  dimension grows with the width (:func:`check_architectures`);
* numbers: noise, inputs and targets that the cell's dtype can carry
  (:func:`reprior._util.checks.numbers_fit`);
* memory: a rough estimate of a cell's peak memory against the job's limit, the smallest
  of physical memory, ``RLIMIT_AS``/``RLIMIT_DATA`` and the cgroup limit
  (:func:`estimate_cell_bytes`, :func:`reprior.inference.memory.job_memory_limit`), naming the width;
* ``reprior sbc``: plot and JSON paths, replications per rank bin.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np

from reprior.experiments.runner.grid import ConfigError

__all__ = ["check_chain_method", "check_memory", "check_out", "check_samplers", "check_sbc", "check_sweep",
           "estimate_cell_bytes", "machine_memory"]

#: Figure formats ``--plot`` accepts (matplotlib's raster and vector formats).
PLOT_FORMATS = (".png", ".pdf", ".svg", ".eps", ".ps", ".jpg", ".jpeg")
#: ``reprior sbc``: the fewest replications per rank bin for the chi-square test (expected count >= 5).
MIN_PER_BIN = 5


def check_sweep(options: dict, cells, *, force: bool = False) -> dict:
    """Run every check of a sweep over ``cells``; return the loaded data, ``{data setting: Dataset}``.

    ``force``: write into a non-empty ``out`` that reprior did not make (``--force``)."""
    from reprior.experiments.runner.sweep import load_all_data

    check_out(options["out"], "out (--out)", force=force)
    check_samplers(cells)
    check_chain_method(options)
    datasets = load_all_data(cells)
    check_architectures(cells, datasets)
    check_numbers(cells, datasets)
    check_memory(cells, datasets)
    check_references(options, cells, datasets)
    return datasets


def check_references(options: dict, cells, datasets) -> None:
    """``reference = PATH``: every cell with test inputs has a certified reference of its setting there
    (ValueError naming ``reference`` otherwise: missing, corrupt or built for other inputs)."""
    path = options.get("reference", "off")
    if path in ("auto", "off"):
        return
    from reprior.experiments.runner.references import cell_reference_id, reference_file
    from reprior.experiments.runner.sweep import build_bnn

    for cell in cells:
        data = datasets[cell.data_settings()]
        if data.n_test:
            reference_file(path, cell_reference_id(cell.settings, build_bnn(cell.settings), data))


def check_architectures(cells, datasets) -> None:
    """Every cell's network builds and takes its data, and its feature dimension grows with the width
    (:mod:`reprior.core.architectures.loading`); a ConfigError naming ``--arch`` otherwise."""
    from reprior.core.architectures.loading import check_widths
    from reprior.experiments.runner.sweep import build_bnn

    builds = {}
    try:
        for cell in cells:
            s = cell.settings
            arch = build_bnn(s).arch
            d = arch.feature_dim(datasets[cell.data_settings()].x_train.shape)
            group = json.dumps({k: v for k, v in s.items() if k not in ("width", "parameterisation", "readout",
                                                                       "sampler", "seed")}, sort_keys=True)
            builds.setdefault(group, {})[s["width"]] = (s["arch"], d)
        check_widths(builds)
    except ValueError as err:
        expected, received = getattr(err, "expected", None), getattr(err, "received", None)
        message = (f"expected {expected}, received {received!r}" if received is not None
                   else str(err).removeprefix("argument "))
        raise ConfigError(f"arch (--arch): {message}") from None


# -- paths -------------------------------------------------------------------------------
#: What reprior keeps inside an output folder: folders, and files (a file or folder in the way is refused).
OUT_FOLDERS = ("cells", "limits", "references", "plots", "submitit")
OUT_FILES = ("summary.csv", "report.md", "report.html", "jobs.jsonl", ".reprior-output")


def _existing_ancestor(path: Path) -> Path:
    parent = path
    while not parent.exists() and parent.parent != parent:
        parent = parent.parent
    return parent


def _check_names(path: Path, argument: str) -> None:
    for part in path.parts:
        if len(os.fsencode(part)) > 255:
            raise ConfigError(f"{argument}: expected names of at most 255 bytes, received {str(path)!r}, whose "
                              f"part {part[:20] + '...'!r} has {len(os.fsencode(part))}")


def _probe(directory: Path, path: Path, argument: str) -> None:
    from reprior._util.files import describe_os_error, probe_writable

    try:
        probe_writable(directory)
    except OSError as err:
        if err.errno == errno.ENOENT:  # the folder exists: a virtual file system (/proc) refuses new files
            raise ConfigError(f"{argument}: expected a path reprior can write, received {str(path)!r} (no file "
                              f"can be created in {str(directory)!r}: the file system refuses new files)") from None
        raise ConfigError(describe_os_error(err, argument, path=path).removesuffix(")")
                          + f": no file can be created in {str(directory)!r})") from None


def check_layout(path: Path, argument: str, *, folders=OUT_FOLDERS, files=OUT_FILES) -> None:
    """reprior's own entries inside an existing output folder must be of the right kind."""
    for name in folders:
        if (path / name).exists() and not (path / name).is_dir():
            raise ConfigError(f"{argument}: expected {name!r} inside it to be a folder, received "
                              f"{str(path / name)!r}, which is a file; move it away")
    for name in files:
        if (path / name).is_dir():
            raise ConfigError(f"{argument}: expected {name!r} inside it to be a file, received "
                              f"{str(path / name)!r}, which is a folder; move it away")


def check_out(path, argument: str, *, force: bool = False) -> None:
    """``path`` must be a directory or creatable as one, with no file on the way, writable (tried with
    a temporary file), holding reprior's entries as the right kinds, and ours or empty
    (:func:`reprior.experiments.runner.ownership.check_claimable`; ``force`` adopts any folder)."""
    from reprior._util.files import describe_os_error
    from reprior.experiments.runner import ownership

    path = Path(path)
    _check_names(path, argument)
    try:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{argument}: expected a directory, received {str(path)!r}, which is a file")
        parent = _existing_ancestor(path)
        if not parent.is_dir():
            raise ConfigError(f"{argument}: expected a directory path, received {str(path)!r}, but "
                              f"{str(parent)!r} on its way is a file")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"{argument}: expected a writable directory, received {str(path)!r}, but "
                              f"{str(parent)!r} is not writable")
        _probe(parent, path, argument)
        if path.is_dir():
            check_layout(path, argument)
        ownership.check_claimable(path, argument, force=force)
    except OSError as err:
        raise ConfigError(describe_os_error(err, argument, path=path)) from None


def check_file_target(path, argument: str, formats=None) -> None:
    """``path`` can be written: the right suffix, not a folder, in an existing folder where a temporary
    file can be created (so a result computed for minutes is never lost to its path)."""
    from reprior._util.files import describe_os_error

    path = Path(path)
    if formats is not None and path.suffix.lower() not in formats:
        raise ConfigError(f"{argument}: expected a file name ending in {', '.join(formats)}, received "
                          f"{str(path)!r}")
    _check_names(path, argument)
    try:
        if path.is_dir():
            raise ConfigError(f"{argument}: expected a file path, received {str(path)!r}, which is a directory")
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise ConfigError(f"{argument}: expected a path in an existing directory, received {str(path)!r}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"{argument}: expected a path in a writable directory, received {str(path)!r}")
        _probe(parent, path, argument)
    except OSError as err:
        raise ConfigError(describe_os_error(err, argument, path=path)) from None


# -- samplers and devices ------------------------------------------------------------------
def check_samplers(cells) -> None:
    """Validate each distinct (sampler, options) once (:func:`reprior.inference.kernels.validate_options`)."""
    from reprior.inference.kernels import validate_options

    seen = set()
    for cell in cells:
        name, options = cell.settings["sampler"], cell.settings["sampler_options"]
        signature = (name, json.dumps(options, sort_keys=True))
        if signature in seen:
            continue
        seen.add(signature)
        try:
            validate_options(name, dict(options))
        except (ValueError, TypeError) as err:
            message = " ".join(str(err).split())
            raise ConfigError(f"sampler_options (--sampler-option): sampler {name!r} rejects "
                              f"{json.dumps(options, sort_keys=True)}: {message}") from None


def check_chain_method(options: dict) -> None:
    """Nothing to refuse: ``parallel`` runs any number of chains on any number of local devices
    (chains per device vectorised, :mod:`reprior.inference.driver`), and the grid checks the name."""
    return None


# -- numbers -------------------------------------------------------------------------------
_NUMBER_NAMES = {"noise_std": "noise_std (--noise-std)", "x": "data inputs (x_train)", "x_test": "data inputs (x_test)",
                 "y": "data targets (y_train)"}


def check_numbers(cells, datasets) -> None:
    """Every cell's noise, inputs and targets in its dtype (:func:`reprior._util.checks.numbers_fit`)."""
    from reprior._util.checks import numbers_fit

    seen = set()
    for cell in cells:
        s = cell.settings
        signature = (cell.data_settings(), s["noise_std"], s["dtype"])
        if signature in seen:
            continue
        seen.add(signature)
        data = datasets[cell.data_settings()]
        try:
            fixed = None if isinstance(s["noise_std"], str) else s["noise_std"]  # a prior's text: inferred
            numbers_fit(fixed, data.x_train, data.y_train, data.x_test if data.n_test else None,
                        dtype=s["dtype"], names=_NUMBER_NAMES)
        except ValueError as err:
            raise ConfigError(f"{err} (data set {s['dataset']!r})") from None


# -- memory --------------------------------------------------------------------------------
def machine_memory() -> int | None:
    """Bytes of memory this job may use on the default JAX device: on CPU the smallest of physical
    memory, ``RLIMIT_AS``/``RLIMIT_DATA`` and the cgroup limit (:func:`reprior.inference.memory.job_memory_limit`),
    else the device's limit."""
    limit = memory_limit()
    return None if limit is None else limit.num_bytes


def memory_limit():
    """:class:`reprior.inference.memory.MemoryLimit` of the default JAX device (None where unknown)."""
    from reprior.inference.memory import device_memory_limit

    return device_memory_limit()


def estimate_cell_bytes(settings: dict, x_shape: tuple, out_dim: int, n_test: int) -> int:
    """A rough, deliberately generous estimate of one cell's peak memory, in bytes
    (:func:`reprior.inference.memory.estimate_run_bytes` of the cell's network and settings)."""
    from reprior.inference.memory import count_params, estimate_run_bytes
    from reprior.experiments.runner.sweep import build_bnn

    bnn = build_bnn(settings)
    params, readout = count_params(bnn.param_shapes(tuple(x_shape), out_dim))
    pixels = int(np.prod(x_shape[1:-1]))  # images (n, H, W, C): H W; flat inputs (n, in_dim): 1
    held = 1 if settings["chain_method"] == "sequential" else settings["num_chains"]
    return estimate_run_bytes(num_params=params, num_readout=readout, num_data=int(x_shape[0]),
                              activations_per_point=pixels * settings["width"] * settings["depth"],
                              num_chains_held=held, num_draws=settings["num_samples"] * settings["num_chains"],
                              keep=settings["keep"], num_test=n_test, out_dim=out_dim,
                              bytes_per_float=4 if settings["dtype"] == "float32" else 8)


def _gib(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.3g} GiB"


def check_memory(cells, datasets, *, available: int | None = None) -> None:
    """Refuse a cell whose estimated memory (:func:`estimate_cell_bytes`) exceeds the machine's."""
    limit = memory_limit() if available is None else None
    available = (limit.num_bytes if limit else None) if available is None else available
    if not available:
        return
    where = "this machine's memory" if limit is None or limit.source == "physical memory" \
        else f"this job's memory limit ({limit.source})"
    worst = None
    for cell in cells:
        data = datasets[cell.data_settings()]
        need = estimate_cell_bytes(cell.settings, data.x_train.shape, data.out_dim, data.n_test)
        if worst is None or need > worst[0]:
            worst = (need, cell)
    if worst is not None and worst[0] > available:
        need, cell = worst
        s = cell.settings
        if s["chain_method"] == "sequential" or s["num_chains"] == 1:
            raise ConfigError(f"widths (--widths): expected widths whose cells fit in {where} "
                              f"({_gib(available)}), received width {s['width']}, whose cell "
                              f"({cell.label()}) needs about {_gib(need)}; use a smaller width")
        raise ConfigError(f"widths (--widths), num_chains (--num-chains): expected cells that fit in {where} "
                          f"({_gib(available)}), received width {s['width']} with {s['num_chains']} "
                          f"{s['chain_method']} chains held at once, whose cell ({cell.label()}) needs about "
                          f"{_gib(need)}; use a smaller width, fewer chains or --chain-method sequential")


# -- sbc -----------------------------------------------------------------------------------
def check_sbc(args) -> None:
    """``reprior sbc``: output paths and enough replications for the rank test."""
    if args.plot is not None:
        check_file_target(args.plot, "--plot", PLOT_FORMATS)
    if args.json is not None:
        check_file_target(args.json, "--json")
    for name in ("num_replications", "num_bins"):
        value = getattr(args, name)
        if value < 2:
            raise ConfigError(f"--{name.replace('_', '-')}: expected an integer >= 2, received {value}")
    from reprior.core.bnn import parse_noise_prior

    for flag in ("noise_prior", "sampler_noise_prior"):
        if getattr(args, flag, None) is not None:
            try:
                parse_noise_prior(getattr(args, flag), "--" + flag.replace("_", "-"))
            except ValueError as error:
                raise ConfigError(str(error)) from None
    if getattr(args, "sampler_noise_prior", None) is not None and getattr(args, "noise_prior", None) is None:
        raise ConfigError("--sampler-noise-prior: expected it only with --noise-prior (a fixed noise is not "
                          f"inferred), received {args.sampler_noise_prior!r} without --noise-prior")
    minimum = MIN_PER_BIN * args.num_bins
    if args.num_replications < minimum:
        raise ConfigError(f"--num-replications: expected at least {minimum} ({MIN_PER_BIN} per rank bin, "
                          f"--num-bins {args.num_bins}) for the chi-square test to mean anything, received "
                          f"{args.num_replications}")
