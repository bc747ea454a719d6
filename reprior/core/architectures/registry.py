"""The architecture registry: one entry per network family, read by the runner, the CLI and the NNGP.

An architecture module registers itself when it is imported (every module of
:mod:`reprior.core.architectures` is imported with the package)::

    register_architecture(ArchitectureSpec(
        name="mlp", cls=MLP, default_depth=1, from_settings=_from_settings,
        nngp_kernel_parts=_nngp_kernel_parts, image_inputs=False))

and from then on it is a choice of ``--arch`` and of the ``archs`` option of a
sweep (:mod:`reprior.experiments.runner.grid`), the sweep builds it from a cell's settings
(:func:`reprior.experiments.runner.sweep.build_bnn`), and :func:`reprior.core.nngp.nngp_kernel`
computes its infinite-width limit.  Pure Python: nothing here imports JAX.

Architectures from outside the package (:mod:`reprior.core.architectures.loading`)
are found here too: ``get_architecture("mypackage.module:make_arch")`` imports
the user's callable, and the names of the ``reprior.core.architectures`` entry
points of installed packages are listed by :func:`architecture_names` and
registered when first used.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

__all__ = ["ArchitectureSpec", "architecture_names", "get_architecture", "register_architecture", "restored", "spec_of"]


@dataclasses.dataclass(frozen=True)
class ArchitectureSpec:
    """What the rest of the package needs to know about one architecture.

    Attributes:
        name: the name in sweeps and on the command line (``--arch NAME``).
        cls: the :class:`~reprior.core.architectures.base.Architecture` subclass.
        default_depth: the depth of a sweep that gives none.
        from_settings: ``settings -> Architecture``: the network of a sweep
            cell, from its flat settings dict (``width``, ``depth``,
            ``activation`` and any of :attr:`settings`).
        nngp_kernel_parts: ``(arch, x1, x2, expect) -> (diag K(x1, x1): (n1,),
            diag K(x2, x2): (n2,), K(x1, x2): (n1, n2))``, the infinite-width
            kernel, where ``expect(k11, k22, k12)`` is the dual activation
            :math:`\\mathbb E[\\phi(u)\\phi(v)]` supplied by :mod:`reprior.core.nngp`;
            pure JAX, traced once per architecture and input shape.  None: no
            NNGP limit (:func:`reprior.core.nngp.nngp_kernel` raises
            ``NotImplementedError``).
        image_inputs: inputs are images ``(n, H, W, C)``, not flat ``(n, in_dim)``.
        settings: further cell settings this architecture reads (grid axes
            such as ``residual_scaling``); other architectures' cells do not
            carry them.
        help: one line for the command line's help.
    """

    name: str
    cls: type
    default_depth: int
    from_settings: Callable
    nngp_kernel_parts: Callable | None = None
    image_inputs: bool = False
    settings: tuple[str, ...] = ()
    help: str = ""


_REGISTRY: dict[str, ArchitectureSpec] = {}


def register_architecture(spec: ArchitectureSpec) -> ArchitectureSpec:
    """Add ``spec`` under ``spec.name``; a name already taken is refused (ValueError)."""
    if not isinstance(spec, ArchitectureSpec):
        raise TypeError(f"argument `spec`: expected an ArchitectureSpec, received {spec!r}")
    if not isinstance(spec.name, str) or not spec.name.isidentifier() or spec.name != spec.name.lower():
        raise ValueError(f"argument `spec.name`: expected a lower-case identifier, received {spec.name!r}")
    if spec.name in _REGISTRY:
        raise ValueError(f"argument `spec.name`: expected a new architecture name, received {spec.name!r}, "
                         f"which is registered already (for {_REGISTRY[spec.name].cls.__name__})")
    _REGISTRY[spec.name] = spec
    return spec


@contextlib.contextmanager
def restored():
    """Undo, on exit, every registration made inside the block, and read the architectures loaded by
    reference (``module:function``, a file) or from entry points afresh inside it
    (:func:`reprior.core.architectures.loading.restored`): for tests, notebooks and tools that
    register an architecture for a while.

    Example::

        with registry.restored():
            register_architecture(ArchitectureSpec(name="toy", cls=Toy, default_depth=1, from_settings=...))
            ...                                  # "toy" is a choice of --arch here
        assert "toy" not in architecture_names()
    """
    from reprior.core.architectures import loading

    global _REGISTRY
    saved = dict(_REGISTRY)
    with loading.restored():
        try:
            yield
        finally:
            _REGISTRY = saved


def architecture_names() -> tuple[str, ...]:
    """The registered names, in registration order (``("mlp", "resnet", ...)``), then the entry points'."""
    from reprior.core.architectures import loading

    _load()
    return tuple(_REGISTRY) + tuple(n for n in loading.entry_point_names() if n not in _REGISTRY)


def get_architecture(name: str) -> ArchitectureSpec:
    """The spec registered under ``name``, of an entry point or of a ``MODULE:CALLABLE`` reference
    (:mod:`reprior.core.architectures.loading`); a ValueError naming the choices otherwise."""
    from reprior.core.architectures import loading

    _load()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if loading.is_reference(name):
        return loading.load_reference(name)
    if isinstance(name, str) and name in loading.entry_point_names():
        spec = loading.load_entry_point(name)
        return _REGISTRY[name] if name in _REGISTRY else register_architecture(spec)  # (or its module did)
    names = ", ".join(map(repr, architecture_names()))
    error = ValueError(f"argument `arch`: expected one of {names} or MODULE:CALLABLE, received {name!r}")
    error.expected, error.received = f"one of {names} or MODULE:CALLABLE", name
    raise error


def spec_of(arch) -> ArchitectureSpec | None:
    """The spec of an architecture instance (the most derived registered class), or None."""
    from reprior.core.architectures import loading

    _load()
    specs = [*_REGISTRY.values(), *(s for s in loading._LOADED.values() if s.nngp_kernel_parts is not None)]
    for cls in type(arch).__mro__:
        for spec in specs:
            if spec.cls is cls:
                return spec
    return None


def _load() -> None:
    """Import the architecture modules, so that every one has registered itself."""
    from reprior.core import architectures  # noqa: F401  (the package imports all its modules)
