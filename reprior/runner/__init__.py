"""The experiment runner: sweep grids, the cell store, and running sweeps.

* :mod:`reprior.runner.grid`: options, config files, grid expansion, cell keys, shards;
* :mod:`reprior.runner.store`: one directory per cell, written atomically;
* :mod:`reprior.runner.sweep`: running cells through :func:`reprior.sample` and
  :func:`reprior.diagnostics.cell_metrics`, and the report over finished cells.

The command line (:mod:`reprior.cli`) is a thin layer over these.
"""

from .grid import Cell, ConfigError, cell_key, expand, load_config, merge, parse_shard, select_shard, validate

__all__ = ["Cell", "CellStore", "ConfigError", "cell_key", "expand", "load_config", "merge", "parse_shard",
           "run_sweep", "select_shard", "validate"]


def run_sweep(*args, **kwargs):
    """See :func:`reprior.runner.sweep.run_sweep` (imported lazily: it pulls in JAX)."""
    from .sweep import run_sweep as _run_sweep

    return _run_sweep(*args, **kwargs)


def __getattr__(name: str):
    """:class:`~reprior.runner.store.CellStore` loads on first use (it pulls in NumPy), keeping the
    command line's start light (:mod:`reprior.interrupts`)."""
    if name == "CellStore":
        from .store import CellStore

        return CellStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
