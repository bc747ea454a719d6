"""The experiment runner: sweep grids, the cell store, and running sweeps.

* :mod:`reprior.experiments.runner.grid`: options, config files, grid expansion, cell keys, shards;
* :mod:`reprior.experiments.runner.store`: one directory per cell, written atomically;
* :mod:`reprior.experiments.runner.sweep`: running cells through :func:`reprior.sample` and
  :func:`reprior.evaluation.diagnostics.cell_metrics`, and the report over finished cells.

The command line (:mod:`reprior.experiments.cli`) is a thin layer over these.
"""

from reprior.experiments.runner.grid import (Cell, ConfigError, cell_key, expand, load_config, merge, parse_shard,
                                             select_shard, validate)

__all__ = ["Cell", "CellStore", "ConfigError", "cell_key", "expand", "load_config", "merge", "parse_shard",
           "run_sweep", "select_shard", "validate"]


def run_sweep(*args, **kwargs):
    """See :func:`reprior.experiments.runner.sweep.run_sweep` (imported lazily: it pulls in JAX)."""
    from reprior.experiments.runner.sweep import run_sweep as _run_sweep

    return _run_sweep(*args, **kwargs)


def __getattr__(name: str):
    """:class:`~reprior.experiments.runner.store.CellStore` loads on first use (it pulls in NumPy), keeping the
    command line's start light (:mod:`reprior._util.interrupts`)."""
    if name == "CellStore":
        from reprior.experiments.runner.store import CellStore

        return CellStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
