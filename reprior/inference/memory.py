"""The memory this job may use, and a rough estimate of what one sampling run needs.

The limit is the smallest of the machine's physical memory, the process's own
``RLIMIT_AS`` and ``RLIMIT_DATA`` (``ulimit -v``, ``ulimit -d``), and the
memory limit of its cgroup (v2 ``memory.max``, v1 ``memory.limit_in_bytes``,
of its own cgroup and every one above it): the limits of a SLURM job or a
container, which a width that fits the machine may still exceed.

This module imports only the standard library and NumPy (JAX inside :func:`count_params`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["MemoryLimit", "cgroup_limit", "count_params", "estimate_run_bytes", "job_memory_limit"]

#: cgroup v1 writes "no limit" as a number near 2**63.
_UNLIMITED = 2**60


class MemoryLimit(NamedTuple):
    """``num_bytes`` and where that limit comes from (``"physical memory"``, ``"RLIMIT_AS"``, ``"cgroup ..."``)."""

    num_bytes: int
    source: str


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max" or not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value < _UNLIMITED else None


def cgroup_limit(proc_cgroup: str | None = None, root: str | Path = "/sys/fs/cgroup") -> MemoryLimit | None:
    """The smallest memory limit of this process's cgroups (v2 and v1) and their ancestors, or None.

    ``proc_cgroup``: the text of ``/proc/self/cgroup`` (read when None); ``root``: where cgroups are mounted."""
    root = Path(root)
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            proc_cgroup = ""
    candidates = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: one unified hierarchy
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        relative = Path(path.lstrip("/"))
        for folder in [relative, *relative.parents]:
            candidates.append(base / folder / name)
    best = None
    for file in dict.fromkeys(candidates):
        value = _read_limit(file)
        if value is not None and (best is None or value < best.num_bytes):
            best = MemoryLimit(value, f"cgroup limit {file}")
    return best


def _rlimits() -> list[MemoryLimit]:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return []
    found = []
    for name in ("RLIMIT_AS", "RLIMIT_DATA"):
        which = getattr(resource, name, None)
        if which is None:
            continue
        soft, _ = resource.getrlimit(which)
        if soft != resource.RLIM_INFINITY and soft > 0:
            found.append(MemoryLimit(int(soft), f"{name} (ulimit -{'v' if name == 'RLIMIT_AS' else 'd'})"))
    return found


def job_memory_limit() -> MemoryLimit | None:
    """The smallest of physical memory, ``RLIMIT_AS``/``RLIMIT_DATA`` and the cgroup limit (None if none is known)."""
    limits = []
    try:
        limits.append(MemoryLimit(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical memory"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        pass
    limits += _rlimits()
    group = cgroup_limit()
    if group is not None:
        limits.append(group)
    return min(limits, key=lambda limit: limit.num_bytes) if limits else None


def estimate_run_bytes(*, num_params: int, num_readout: int, num_data: int, activations_per_point: int,
                       num_chains_held: int, num_draws: int, keep: str, num_test: int, out_dim: int,
                       bytes_per_float: int) -> int:
    """A rough, deliberately generous estimate of one sampling run's peak memory, in bytes.

    .. math::

        B = b \\left[ 8 c P + 4 c n A + D (P_\\mathrm{kept} + 2 m k) + 2 n^2 \\right]

    with ``b`` bytes per float, ``c`` chains held at once, ``P`` parameters (position,
    momentum, gradient, mass matrix, adaptation and tree proposals: about 8 copies), ``n``
    training points times ``A`` hidden activations per point (forward and backward pass,
    about 4 copies), ``D`` draws in all of the ``P_kept`` stored parameters and ``m x k``
    test predictions (and their Rao-Blackwellised means), and the ``n x n`` kernel.
    """
    kept = {"all": num_params, "readout": 2 * num_readout, "none": 0}.get(keep, 0)
    return int(bytes_per_float * (8 * num_chains_held * num_params
                                  + 4 * num_chains_held * num_data * activations_per_point
                                  + num_draws * (kept + 2 * num_test * out_dim) + 2 * num_data * num_data))


def count_params(shapes) -> tuple[int, int]:
    """``(all parameters, readout parameters)`` of a ``param_shapes`` pytree with a ``"readout"`` entry."""
    import jax

    total = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes))
    readout = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes["readout"]))
    return total, readout


def _gib(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.3g} GiB"


def device_memory_limit() -> MemoryLimit | None:
    """The limit of the default JAX device: :func:`job_memory_limit` on CPU, the device's own elsewhere."""
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        return job_memory_limit()
    try:
        return MemoryLimit(int(device.memory_stats()["bytes_limit"]), f"{device.platform} device memory")
    except Exception:  # memory_stats is optional for a backend
        return None


def check_sample_memory(bnn, x_shape, out_dim: int, num_test: int, *, num_chains: int, chain_method: str,
                        num_samples: int, keep: str, dtype: str, limit: MemoryLimit | None = None) -> None:
    """Refuse a :func:`reprior.sample` run whose estimate (:func:`estimate_run_bytes`) exceeds the job's
    memory (``limit``, default :func:`device_memory_limit`), naming the width, the estimate and the limit."""
    limit = device_memory_limit() if limit is None else limit
    if limit is None:
        return
    num_params, num_readout = count_params(bnn.param_shapes(tuple(x_shape), out_dim))
    width, depth = int(getattr(bnn.arch, "width", 1)), int(getattr(bnn.arch, "depth", 1))
    held = 1 if chain_method == "sequential" else num_chains
    need = estimate_run_bytes(num_params=num_params, num_readout=num_readout, num_data=int(x_shape[0]),
                              activations_per_point=int(np.prod(x_shape[1:-1])) * width * depth,
                              num_chains_held=held, num_draws=num_samples * num_chains, keep=keep,
                              num_test=num_test, out_dim=out_dim, bytes_per_float=4 if dtype == "float32" else 8)
    if need <= limit.num_bytes:
        return
    from reprior._util.checks import fail

    chains = f" with {num_chains} {chain_method} chains held at once" if held > 1 else ""
    raise fail("bnn", f"a network whose run fits in the memory this job may use ({_gib(limit.num_bytes)}, "
               f"{limit.source}); use a smaller width, fewer chains, chain_method='sequential', keep='none', "
               "or check_memory=False to skip this estimate",
               f"width {width}{chains}, needing about {_gib(need)}")
