"""Checks a command runs before it samples or writes anything.

Each check raises :class:`reprior.runner.grid.ConfigError` (a ``ValueError``)
whose message is one line naming the argument, what was expected and what was
received; the CLI prints it as ``reprior: error: ...`` with exit status 2.

* output directory: not a file, no file on its path, writable;
* sampler options: every cell's kernel is built once on a dummy potential
  (:func:`reprior.kernels.make_kernel`), so whatever the kernels validate
  (names, types, ranges) fails now, not in every cell at run time;
* data: every data setting is loaded (a bad file fails now);
* memory: a rough estimate of a cell's peak memory against this machine's
  (:func:`estimate_cell_bytes`), naming the width;
* ``reprior sbc``: plot and JSON paths, replications per rank bin.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .runner.grid import ConfigError

__all__ = ["check_chain_method", "check_memory", "check_out", "check_samplers", "check_sbc", "check_sweep",
           "estimate_cell_bytes", "machine_memory"]

#: Figure formats ``--plot`` accepts (matplotlib's raster and vector formats).
PLOT_FORMATS = (".png", ".pdf", ".svg", ".eps", ".ps", ".jpg", ".jpeg")
#: ``reprior sbc``: the fewest replications per rank bin for the chi-square test (expected count >= 5).
MIN_PER_BIN = 5


def check_sweep(options: dict, cells) -> dict:
    """Run every check of a sweep over ``cells``; return the loaded data, ``{data setting: Dataset}``."""
    from .runner.sweep import load_all_data

    check_out(options["out"], "out (--out)")
    check_samplers(cells)
    check_chain_method(options)
    datasets = load_all_data(cells)
    check_memory(cells, datasets)
    check_references(options, cells, datasets)
    return datasets


def check_references(options: dict, cells, datasets) -> None:
    """``reference = PATH``: every cell with test inputs has a certified reference of its setting there
    (ValueError naming ``reference`` otherwise: missing, corrupt or built for other inputs)."""
    path = options.get("reference", "off")
    if path in ("auto", "off"):
        return
    from .runner.references import cell_reference_id, reference_file
    from .runner.sweep import build_bnn

    for cell in cells:
        data = datasets[cell.data_settings()]
        if data.n_test:
            reference_file(path, cell_reference_id(cell.settings, build_bnn(cell.settings), data))


# -- paths -------------------------------------------------------------------------------
def check_out(path, argument: str) -> None:
    """``path`` must be a directory or creatable as one, with no file on the way, and writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{argument}: expected a directory, received {str(path)!r}, which is a file")
    parent = path
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"{argument}: expected a directory path, received {str(path)!r}, but "
                          f"{str(parent)!r} on its way is a file")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{argument}: expected a writable directory, received {str(path)!r}, but "
                          f"{str(parent)!r} is not writable")


def _check_file_target(path, argument: str, formats=None) -> None:
    path = Path(path)
    if formats is not None and path.suffix.lower() not in formats:
        raise ConfigError(f"{argument}: expected a file name ending in {', '.join(formats)}, received "
                          f"{str(path)!r}")
    if path.is_dir():
        raise ConfigError(f"{argument}: expected a file path, received {str(path)!r}, which is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"{argument}: expected a path in an existing directory, received {str(path)!r}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{argument}: expected a path in a writable directory, received {str(path)!r}")


# -- samplers and devices ------------------------------------------------------------------
def _dummy_potential(z):
    return 0.0


def check_samplers(cells) -> None:
    """Build each distinct (sampler, options) kernel once, on a dummy potential."""
    from .kernels import make_kernel

    seen = set()
    for cell in cells:
        name, options = cell.settings["sampler"], cell.settings["sampler_options"]
        signature = (name, json.dumps(options, sort_keys=True))
        if signature in seen:
            continue
        seen.add(signature)
        try:
            make_kernel(name, _dummy_potential, dict(options))
        except (ValueError, TypeError) as err:
            message = " ".join(str(err).split())
            raise ConfigError(f"sampler_options (--sampler-option): sampler {name!r} rejects "
                              f"{json.dumps(options, sort_keys=True)}: {message}") from None


def check_chain_method(options: dict) -> None:
    """Nothing to refuse: ``parallel`` runs any number of chains on any number of local devices
    (chains per device vectorised, :mod:`reprior.driver`), and the grid checks the name."""
    return None


# -- memory --------------------------------------------------------------------------------
def machine_memory() -> int | None:
    """Bytes of memory of the default JAX device: the host's RAM on CPU, else the device's limit."""
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        try:
            return int(device.memory_stats()["bytes_limit"])
        except Exception:  # memory_stats is optional for a backend
            return None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return None


def estimate_cell_bytes(settings: dict, x_shape: tuple, out_dim: int, n_test: int) -> int:
    """A rough, deliberately generous estimate of one cell's peak memory, in bytes.

    .. math::

        B = b \\left[ 8 c P + 4 c n A + c S (P_\\mathrm{kept} + 2 m k) \\right]

    with ``b`` bytes per float, ``c`` chains held at once (1 if sequential), ``P``
    parameters (position, momentum, gradient, mass matrix, adaptation and tree
    proposals: about 8 copies), ``n`` training points times ``A`` hidden
    activations per point (forward and backward pass, about 4 copies), ``S``
    draws per chain of the ``P_kept`` stored parameters and ``m x k`` test
    predictions (and their Rao-Blackwellised means).
    """
    import jax

    from .runner.sweep import build_bnn

    bnn = build_bnn(settings)
    shapes = bnn.param_shapes(tuple(x_shape), out_dim)
    params = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes))
    readout = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes["readout"]))
    n = int(x_shape[0])
    pixels = int(np.prod(x_shape[1:-1]))  # images (n, H, W, C): H W; flat inputs (n, in_dim): 1
    activations = pixels * settings["width"] * settings["depth"]
    held = 1 if settings["chain_method"] == "sequential" else settings["num_chains"]
    kept = {"all": params, "readout": 2 * readout, "none": 0}.get(settings["keep"], 0)  # auto: none or less
    draws = settings["num_samples"] * settings["num_chains"]
    per_float = 4 if settings["dtype"] == "float32" else 8
    return per_float * (8 * held * params + 4 * held * n * activations + draws * (kept + 2 * n_test * out_dim)
                        + 2 * n * n)


def _gib(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.3g} GiB"


def check_memory(cells, datasets, *, available: int | None = None) -> None:
    """Refuse a cell whose estimated memory (:func:`estimate_cell_bytes`) exceeds the machine's."""
    available = machine_memory() if available is None else available
    if not available:
        return
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
            raise ConfigError(f"widths (--widths): expected widths whose cells fit in this machine's memory "
                              f"({_gib(available)}), received width {s['width']}, whose cell "
                              f"({cell.label()}) needs about {_gib(need)}; use a smaller width")
        raise ConfigError(f"widths (--widths), num_chains (--num-chains): expected cells that fit in this machine's "
                          f"memory ({_gib(available)}), received width {s['width']} with {s['num_chains']} "
                          f"{s['chain_method']} chains held at once, whose cell ({cell.label()}) needs about "
                          f"{_gib(need)}; use a smaller width, fewer chains or --chain-method sequential")


# -- sbc -----------------------------------------------------------------------------------
def check_sbc(args) -> None:
    """``reprior sbc``: output paths and enough replications for the rank test."""
    if args.plot is not None:
        _check_file_target(args.plot, "--plot", PLOT_FORMATS)
    if args.json is not None:
        _check_file_target(args.json, "--json")
    for name in ("num_replications", "num_bins"):
        value = getattr(args, name)
        if value < 2:
            raise ConfigError(f"--{name.replace('_', '-')}: expected an integer >= 2, received {value}")
    minimum = MIN_PER_BIN * args.num_bins
    if args.num_replications < minimum:
        raise ConfigError(f"--num-replications: expected at least {minimum} ({MIN_PER_BIN} per rank bin, "
                          f"--num-bins {args.num_bins}) for the chi-square test to mean anything, received "
                          f"{args.num_replications}")
