"""What an executor's job runs: one cell of a sweep, through the cell store, resumable.

Kept apart from :mod:`reprior.experiments.runner.executors` because it imports submitit
(its :class:`submitit.helpers.Checkpointable` is what lets SLURM requeue a
pre-empted or timed-out cell).
"""

from __future__ import annotations

from typing import Any

import submitit

__all__ = ["CellJob"]


class CellJob(submitit.helpers.Checkpointable):
    """One cell, run by :func:`~reprior.experiments.runner.sweep.run_sweep` in a job's process.

    Returns ``{"key", "outcome", "message"}`` (and ``"broken"``: whether a finished
    cell's chains failed, the message then saying how) with outcome ``finished``,
    ``skipped`` (finished before), ``busy`` (another process holds it) or
    ``failed`` (the traceback is in the cell's ``error.txt``).  On SLURM's
    pre-emption or time-limit signal, submitit calls :meth:`checkpoint`, which
    saves the chains in progress and asks submitit to requeue the same call.
    """

    def __call__(self, options: dict[str, Any], dtype: str, key: str, command: str,
                 checkpoint_every: float) -> dict:
        import jax

        from reprior.experiments.runner.sweep import run_sweep

        with jax.enable_x64(dtype == "float64"):
            result = run_sweep(options, dtype=dtype, keys=[key], command=command, quiet=True, report=False,
                               checkpoint_every=checkpoint_every)
        if key in result.finished:  # "broken": finished, but its chains failed (reprior.inference.health's rule)
            return {"key": key, "outcome": "finished", "message": result.broken.get(key, ""),
                    "broken": key in result.broken}
        if key in result.failed:
            return {"key": key, "outcome": "failed", "message": result.failed[key]}
        if key in getattr(result, "busy", {}):
            return {"key": key, "outcome": "busy", "message": result.busy[key]}
        if result.interrupted:
            raise KeyboardInterrupt(f"cell {key} interrupted; its checkpoint is kept")
        return {"key": key, "outcome": "skipped", "message": "finished before"}

    def checkpoint(self, *args, **kwargs):
        from reprior.inference.checkpoint import save_active

        save_active()
        return super().checkpoint(*args, **kwargs)
