"""Checkpoints of a chain run: kernel states (adaptation included) and draws so far, in one ``.npz``.

:func:`reprior.inference.driver.run_chains` saves a checkpoint at chunk boundaries, at
most every ``every`` seconds, and when a run is interrupted (Ctrl-C, SIGTERM:
SLURM pre-emption); a rerun with the same arguments and the same checkpoint
path continues from it, and gives the draws an uninterrupted run gives
(bit for bit on CPU: the restored states are the exact arrays).

A checkpoint is one ``.npz`` file written atomically (:mod:`reprior._util.files`):
a reader sees the previous checkpoint or the whole new one.  Pytrees are
stored generically, by :func:`jax.tree_util.tree_flatten`: one array per leaf
(typed PRNG keys as their :func:`jax.random.key_data`, with the key
implementation recorded) and the tree structure as text, checked on load
against the run's own structure, so a checkpoint of another kernel, another
sampler setting or another reprior fails loudly instead of resuming wrongly.

``checkpointing(directory, every)`` sets a checkpoint directory for every
:func:`~reprior.inference.driver.run_chains` call in the block (the ``n``-th call of the
block uses ``directory/chains-<n>.npz``), so a caller can make a whole
:func:`reprior.sample` call resumable without passing anything through it.

This module imports JAX and NumPy only (and the leaf :mod:`reprior._util.files`).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from reprior._util.files import atomic_write

__all__ = ["Checkpoint", "CheckpointMismatch", "checkpointing", "current", "flatten_tree", "save_active",
           "unflatten_tree"]

FORMAT_VERSION = 1
DEFAULT_EVERY = 300.0
"""Seconds between checkpoints by default (``--checkpoint-every``)."""


class CheckpointMismatch(ValueError):
    """A checkpoint file that does not belong to this run."""


# ---------------------------------------------------------------------------
# Pytrees to arrays and back
# ---------------------------------------------------------------------------


def _is_key(leaf) -> bool:
    return jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)


def flatten_tree(tree) -> tuple[list[np.ndarray], dict]:
    """``(arrays, spec)``: the leaves of ``tree`` as NumPy arrays, and what rebuilds them.

    ``spec`` is JSON: the tree structure as text, and per leaf its shape,
    dtype and, for a typed PRNG key, the key implementation.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    arrays, kinds = [], []
    for leaf in leaves:
        if _is_key(leaf):
            kinds.append(str(jax.random.key_impl(leaf)))
            leaf = jax.random.key_data(leaf)
        else:
            kinds.append(None)
        arrays.append(np.asarray(jax.device_get(leaf)))
    spec = {"treedef": str(treedef), "keys": kinds,
            "shapes": [list(a.shape) for a in arrays], "dtypes": [a.dtype.str for a in arrays]}
    return arrays, spec


def unflatten_tree(arrays, spec: dict, like, *, what: str = "tree", batch_ndim: int = 0):
    """Rebuild a tree saved by :func:`flatten_tree`.

    ``like`` is either a ``PyTreeDef`` (the structure is checked) or a tree of
    arrays (the structure, and each leaf's dtype, key implementation and
    shape after its first ``batch_ndim`` dimensions, are checked).  Raises
    :class:`CheckpointMismatch` naming ``what`` when they differ from the saved ones.
    """
    if isinstance(like, jax.tree_util.PyTreeDef):
        treedef, expected = like, None
        if str(treedef) != spec["treedef"]:
            raise CheckpointMismatch(f"checkpoint {what}: expected the structure {treedef}, "
                                     f"received {spec['treedef']}")
    else:
        _, expected = flatten_tree(like)
        treedef = jax.tree_util.tree_structure(like)
        if (spec["treedef"], spec["keys"]) != (expected["treedef"], expected["keys"]):
            raise CheckpointMismatch(f"checkpoint {what}: expected the structure {expected['treedef']} "
                                     f"(keys {expected['keys']}), received {spec['treedef']} (keys {spec['keys']})")
    if len(arrays) != treedef.num_leaves:
        raise CheckpointMismatch(f"checkpoint {what}: expected {treedef.num_leaves} arrays, received {len(arrays)}")
    out = []
    for i, (array, kind) in enumerate(zip(arrays, spec["keys"])):
        if expected is not None:
            want = (tuple(expected["shapes"][i][batch_ndim:]), expected["dtypes"][i])
            got = (tuple(array.shape[batch_ndim:]), array.dtype.str)
            if want != got:
                raise CheckpointMismatch(f"checkpoint {what}, leaf {i}: expected (shape, dtype) {want}, "
                                         f"received {got}")
        out.append(jax.random.wrap_key_data(array, impl=kind) if kind else array)
    return jax.tree_util.tree_unflatten(treedef, out)


# ---------------------------------------------------------------------------
# The checkpoint file
# ---------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """Where and how often a chain run saves its progress.

    Args:
        path: the ``.npz`` file (its directory is created on the first save).
        every: seconds; a chunk boundary saves when at least this long has
            passed since the run started or last saved (0: every chunk).
    """

    path: Path
    every: float = DEFAULT_EVERY
    _last: float = field(default_factory=time.monotonic, repr=False)

    def __post_init__(self):
        self.path = Path(self.path)
        if not (isinstance(self.every, (int, float)) and self.every >= 0):
            raise ValueError(f"argument `every`: expected a number of seconds >= 0, received {self.every!r}")

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, meta: dict, trees: dict) -> Path:
        """Write ``meta`` (JSON) and ``trees`` (``{name: pytree}``) atomically."""
        payload, specs = {}, {}
        for name, tree in trees.items():
            arrays, specs[name] = flatten_tree(tree)
            for i, array in enumerate(arrays):
                payload[f"{name}/{i}"] = array
        header = {"format": FORMAT_VERSION, "meta": meta, "specs": specs}
        payload["header"] = np.array(json.dumps(header))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda tmp: _savez(tmp, payload))
        self._last = time.monotonic()
        return self.path

    def load(self) -> tuple[dict, dict]:
        """``(meta, {name: (arrays, spec)})`` of the file; rebuild trees with :func:`unflatten_tree`."""
        with np.load(self.path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            if header.get("format") != FORMAT_VERSION:
                raise CheckpointMismatch(f"checkpoint {self.path}: expected format {FORMAT_VERSION}, "
                                         f"received {header.get('format')!r}")
            trees = {}
            for name, spec in header["specs"].items():
                arrays = [data[f"{name}/{i}"] for i in range(len(spec["keys"]))]
                trees[name] = (arrays, spec)
        return header["meta"], trees

    def clear(self) -> None:
        """Remove the checkpoint file (after its run's results are stored)."""
        self.path.unlink(missing_ok=True)


def _savez(tmp: Path, payload: dict) -> None:
    with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to a path
        np.savez(handle, **payload)


# ---------------------------------------------------------------------------
# A checkpoint directory for a block of code; saving from a signal handler
# ---------------------------------------------------------------------------


@dataclass
class _Scope:
    directory: Path
    every: float
    calls: int = 0


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("reprior_checkpoint_scope", default=None)
_active: list = []  # save functions of the runs in progress (innermost last)


@contextlib.contextmanager
def checkpointing(directory, every: float = DEFAULT_EVERY):
    """Checkpoint every :func:`~reprior.inference.driver.run_chains` call of the block under ``directory``."""
    token = _scope.set(_Scope(Path(directory), every))
    try:
        yield
    finally:
        _scope.reset(token)


def current() -> Checkpoint | None:
    """The :class:`Checkpoint` of the next run_chains call in a :func:`checkpointing` block, or None."""
    scope = _scope.get()
    if scope is None:
        return None
    path = scope.directory / f"chains-{scope.calls}.npz"
    scope.calls += 1
    return Checkpoint(path, scope.every)


@contextlib.contextmanager
def active(save_fn):
    """Register ``save_fn`` (saves the run's last chunk boundary) for :func:`save_active`."""
    _active.append(save_fn)
    try:
        yield
    finally:
        _active.remove(save_fn)


def save_active() -> bool:
    """Save the progress of the run in progress now (from a signal handler: submitit's
    pre-emption and timeout handler calls it before requeueing).  False if none runs."""
    if not _active:
        return False
    return bool(_active[-1]())
