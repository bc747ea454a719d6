"""Named choices shared by the library, the runner and the command line.

Pure Python and a leaf of the import graph, so that the JAX-free sweep grid
(:mod:`reprior.experiments.runner.grid`) and the CLI's flag choices read the same tuples
as :func:`reprior.sample` and the chain driver validate against.
"""

from __future__ import annotations

__all__ = ["CHAIN_METHODS", "DTYPES", "default_dtype"]

#: Floating-point types of a run (``dtype=None`` means float64 on CPU, float32 on accelerators).
DTYPES = ("float64", "float32")

#: How chains run: one after another, vectorised with ``vmap``, or one per device with ``shard_map``.
CHAIN_METHODS = ("sequential", "vectorized", "parallel")


def default_dtype() -> str:
    """The dtype of a run given none: ``"float64"`` on the CPU, ``"float32"`` on accelerators."""
    import jax  # here, not at the top: this module stays importable without JAX

    return "float64" if jax.default_backend() == "cpu" else "float32"
