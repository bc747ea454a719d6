"""Registry of MCMC kernels: name -> builder of a NumPyro ``MCMCKernel``.

A builder's first parameter says what it is built on:

* ``density``: a :class:`~reprior.inference.samplers.base.Density` (the log likelihood
  and the log density of a target with an N(0, I) prior, constants left out;
  see :mod:`reprior.core.target`).  Every kernel of this package takes it.
* ``potential_fn``: ``z -> -log density`` (NumPyro's convention), for kernels
  such as NumPyro's ``NUTS`` and for kernels users register.

The keyword parameters after it are the kernel's options: the names that
``sampler_options`` (and the CLI's ``--sampler-option``) accept are read from
the builder's signature, so they cannot drift from what the builder takes.
``stats_fn(state) -> dict`` gives the per-iteration sample statistics,
including the cost counts ``num_grad_evals`` and ``num_logdensity_evals``
(a gradient evaluation also evaluates the density; a gradient-free
evaluation counts only in the latter) and ``nonfinite``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

from reprior._util import checks as _checks
from reprior.inference.samplers.base import Density

_INPUTS = ("density", "potential_fn")


@dataclass(frozen=True)
class KernelSpec:
    """How to build one sampler and read its statistics.

    Attributes:
        build: ``(density | potential_fn, **options) -> MCMCKernel``.
        stats_fn: ``state -> dict`` of per-iteration scalars.
        options: accepted option names; derived from ``build``'s signature when ``None``.
        description: one line for listings.
    """

    build: Callable
    stats_fn: Callable
    options: tuple[str, ...] | None = None
    description: str = ""
    input: str = field(init=False)

    def __post_init__(self):
        if not callable(self.build):
            raise _checks.fail("build", "a callable (density or potential_fn, **options) -> MCMCKernel", self.build)
        if not callable(self.stats_fn):
            raise _checks.fail("stats_fn", "a callable state -> dict", self.stats_fn)
        params = list(inspect.signature(self.build).parameters.values())
        first = params[0].name if params else None
        object.__setattr__(self, "input", "density" if first == "density" else "potential_fn")
        if self.options is None:
            names = tuple(p.name for p in params[1:] if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
            object.__setattr__(self, "options", names)
        else:
            object.__setattr__(self, "options", tuple(self.options))


_REGISTRY: dict[str, KernelSpec] = {}


def register_kernel(name: str, spec: KernelSpec, *, replace: bool = False) -> None:
    """Make ``name`` available to :func:`reprior.sample` and the CLI's ``--sampler``.

    Raises ``ValueError`` if ``name`` is taken, unless ``replace=True``.
    """
    if not isinstance(name, str) or not name:
        raise _checks.fail("name", "a non-empty string", name)
    if not isinstance(spec, KernelSpec):
        raise _checks.fail("spec", "a reprior.inference.kernels.KernelSpec", spec)
    if name in _REGISTRY and not replace:
        raise _checks.fail("name", f"a name not yet registered (pass replace=True to replace {name!r})", name)
    _REGISTRY[name] = spec


def kernel_names() -> tuple[str, ...]:
    """The registered kernel names, in registration order."""
    return tuple(_REGISTRY)


def get_kernel(name: str) -> KernelSpec:
    """The :class:`KernelSpec` registered as ``name``."""
    _checks.one_of("sampler", name, kernel_names())
    return _REGISTRY[name]


def check_options(name: str, options: dict | None) -> dict:
    """Refuse option names that the builder of ``name`` does not take; return a copy."""
    spec = get_kernel(name)
    if options is not None and not isinstance(options, dict):
        raise _checks.fail("sampler_options", "a dict of sampler settings", options)
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise _checks.fail("sampler_options", f"options of {name!r} among {list(spec.options)}", unknown)
    return options


def make_kernel(name: str, target, options: dict | None = None):
    """Build the kernel ``name`` on ``target``, validating ``options`` first.

    ``target`` is a :class:`reprior.core.target.Target`, a :class:`Density`, or a
    ``potential_fn`` (``z -> -log density``; a Gaussian-reference kernel then
    recovers the log likelihood as ``|z|^2/2 - potential``, which loses
    precision in float32 at large dimension: prefer a Target).
    """
    spec = get_kernel(name)
    options = check_options(name, options)
    density = Density.of(target)
    built_on = density if spec.input == "density" else density.potential_fn
    return spec.build(built_on, **options)


def _zero_potential(z):
    return 0.0


def validate_options(name: str, options: dict | None) -> dict:
    """Refuse ``options`` of the kernel ``name`` before anything is traced; return them (a copy).

    The option names are checked (:func:`check_options`) and the kernel is built once on a
    zero density, so whatever its builder validates (types, ranges) fails now, not inside a
    compiled run.  :func:`reprior.sample`, simulation-based calibration and a sweep's
    preflight checks all call it.
    """
    options = check_options(name, options)
    make_kernel(name, _zero_potential, options)
    return options
