"""Architectures from outside the package: ``--arch MODULE:CALLABLE`` and the ``reprior.core.architectures`` entry points.

A *reference* names an object in the user's code, as console scripts do::

    mypackage.module:make_arch       a module on sys.path (the working directory is tried too)
    path/to/file.py:make_arch        a Python file (stored as an absolute path)

The object is a callable that takes the cell's settings as keyword arguments
(``width``, ``depth``, ``activation``; only those its signature names, or all
of them with ``**kwargs``) and returns an architecture, e.g.::

    def make_arch(width, depth=1):
        return reprior.FeatureArchitecture(init=..., features=..., name="cnn")

    make_arch.image_inputs = True    # optional: inputs (n, H, W, C), not flattened (default False)
    make_arch.default_depth = 1      # optional: the depth of a sweep that gives none (default 1)

or an :class:`~reprior.core.architectures.registry.ArchitectureSpec` for full
control.  The reference itself is the architecture's name in a sweep's cell
settings, so every process that runs a cell (local processes, SLURM jobs)
imports it again: the module must be importable there too.

An installed package adds names to ``--arch`` through the entry-point group
``reprior.architectures`` (``[project.entry-points."reprior.architectures"]
cnn = "mypackage.module:make_arch"`` in its ``pyproject.toml``): the name is
listed at once and the object is imported when the name is first used.

A :class:`~reprior.core.architectures.user.FeatureArchitecture` built for a cell
records the cell's ``width`` and ``depth`` (and any further setting it was
given) in its fields, so caches and reports tell cells apart; one that
declares another width is refused.  :func:`check_widths` refuses a sweep whose
feature dimension does not grow with the width.  Every refusal is a
``ValueError`` naming ``arch`` whose ``expected`` and ``received`` attributes
hold its two parts (the command line prints them as one line).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path

from reprior._util import checks as _checks
from reprior.core.architectures.registry import ArchitectureSpec

__all__ = ["ENTRY_POINT_GROUP", "SETTINGS", "check_widths", "entry_point_names", "is_reference", "load_entry_point",
           "load_reference", "normalise_reference", "restored"]

ENTRY_POINT_GROUP = "reprior.architectures"
#: The cell settings a user's callable may take (as keyword arguments), besides its spec's own ``settings``.
SETTINGS = ("width", "depth", "activation")

_LOADED: dict[str, ArchitectureSpec] = {}  # normalised reference -> spec
_ENTRY_POINTS: dict | None = None  # name -> importlib.metadata.EntryPoint, read once


def _fail(expected: str, received) -> ValueError:
    error = _checks.fail("arch", expected, received)
    error.received = received
    return error


def is_reference(name) -> bool:
    """Whether ``name`` is a ``MODULE:CALLABLE`` (or ``FILE.py:CALLABLE``) reference, not a registered name."""
    return isinstance(name, str) and ":" in name


def _split(text: str) -> tuple[str, str, bool]:
    """``(module or file, attribute path, is a file)``."""
    module, _, attribute = text.rpartition(":")
    if not module or not attribute or not all(part.isidentifier() for part in attribute.split(".")):
        raise _fail("MODULE:CALLABLE (e.g. mypackage.archs:make_cnn) or FILE.py:CALLABLE", text)
    is_file = module.endswith(".py") or "/" in module or os.sep in module
    if not is_file and not all(part.isidentifier() for part in module.split(".")):
        raise _fail("MODULE:CALLABLE with a dotted module name, or FILE.py:CALLABLE", text)
    return module, attribute, is_file


def normalise_reference(text: str) -> str:
    """The reference as a cell stores it: a file's path made absolute, a module's name as given."""
    module, attribute, is_file = _split(text)
    return f"{Path(module).expanduser().resolve()}:{attribute}" if is_file else text


def _import_file(path: str, text: str):
    file = Path(path)
    if not file.is_file():
        raise _fail("FILE.py:CALLABLE naming an existing Python file", f"{text} ({path} is not a file)")
    name = "_reprior_user_" + file.stem.replace("-", "_") + "_" + hashlib.sha256(str(file).encode()).hexdigest()[:8]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and pickle look their module up
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise _fail("FILE.py:CALLABLE whose file runs", f"{text} ({type(err).__name__}: {err})") from err
    return module


def _import_module(name: str, text: str):
    """``importlib.import_module``, trying the working directory too (as ``python -m`` would have it)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        cwd = os.getcwd()
        if (name == missing or name.startswith(missing + ".")) and cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)  # the console script's path lacks it
            return _import_module(name, text)
        raise _fail("MODULE:CALLABLE naming an importable module (on PYTHONPATH or in the working directory)",
                    f"{text} (ModuleNotFoundError: {err})") from err
    except Exception as err:
        raise _fail("MODULE:CALLABLE whose module imports", f"{text} ({type(err).__name__}: {err})") from err


def _resolve(text: str):
    module_name, attribute, is_file = _split(text)
    module = _import_file(module_name, text) if is_file else _import_module(module_name, text)
    obj = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise _fail("MODULE:CALLABLE naming an attribute of the module", f"{text} (no attribute {part!r})")
        obj = getattr(obj, part)
    return obj


def load_reference(text: str) -> ArchitectureSpec:
    """The spec of a reference (imported once per process), named by :func:`normalise_reference`."""
    name = normalise_reference(text)
    if name not in _LOADED:
        _LOADED[name] = spec_from_object(_resolve(name), name)
    return _LOADED[name]


@contextlib.contextmanager
def restored():
    """Inside the block, read architectures by reference or entry point afresh (a module or an
    installation changed since they were first loaded); on exit, forget what was loaded there and
    restore the caches as they were (:func:`reprior.core.architectures.registry.restored` also
    undoes registrations)."""
    global _LOADED, _ENTRY_POINTS
    saved = _LOADED, _ENTRY_POINTS
    _LOADED, _ENTRY_POINTS = {}, None
    try:
        yield
    finally:
        _LOADED, _ENTRY_POINTS = saved


def entry_point_names() -> tuple[str, ...]:
    """The names that installed packages add (entry points of :data:`ENTRY_POINT_GROUP`), unimported."""
    global _ENTRY_POINTS
    if _ENTRY_POINTS is None:
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        _ENTRY_POINTS = {ep.name: ep for ep in found}
    return tuple(_ENTRY_POINTS)


def load_entry_point(name: str) -> ArchitectureSpec:
    """Import the entry point ``name`` and return its spec, named ``name``."""
    entry_point_names()
    entry = _ENTRY_POINTS[name]
    try:
        obj = entry.load()
    except Exception as err:
        raise _fail(f"an importable architecture for the entry point {name!r} ({entry.value})",
                    f"{type(err).__name__}: {err}") from err
    return spec_from_object(obj, name)


def spec_from_object(obj, name: str) -> ArchitectureSpec:
    """An :class:`ArchitectureSpec` named ``name``: ``obj`` itself (renamed) or one around a callable."""
    if isinstance(obj, ArchitectureSpec):
        return dataclasses.replace(obj, name=name, from_settings=_Checked(obj.from_settings, name, takes_dict=True))
    if not callable(obj):
        raise _fail("a callable returning an architecture, or an ArchitectureSpec", f"{name} = {obj!r}")
    from reprior.core.architectures.base import Architecture

    return ArchitectureSpec(
        name=name, cls=Architecture, default_depth=getattr(obj, "default_depth", 1),
        from_settings=_Checked(obj, name, keywords=_keywords(obj, name)), image_inputs=bool(getattr(obj, "image_inputs", False)),
        help=f"the user's architecture {name}")


def _keywords(fn: Callable, name: str) -> tuple[str, ...] | None:
    """The settings ``fn`` takes as keywords (None: all of :data:`SETTINGS`, for ``**kwargs``)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    taken = tuple(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name in SETTINGS)
    required = [p.name for p in parameters if p.default is p.empty and p.kind is not p.VAR_POSITIONAL
                and p.name not in SETTINGS]
    if required:
        raise _fail(f"a callable taking keyword arguments among {', '.join(SETTINGS)}",
                    f"{name}, which also requires {', '.join(required)}")
    return taken


@dataclasses.dataclass(frozen=True)
class _Checked:
    """``from_settings`` of a user's object: called, its result checked and its settings recorded.

    ``keywords``: the settings passed as keyword arguments (None: every one of
    :data:`SETTINGS`); ``takes_dict``: ``fn`` is an ArchitectureSpec's own
    ``from_settings``, called with the settings dict.
    """

    fn: Callable
    name: str
    keywords: tuple[str, ...] | None = None
    takes_dict: bool = False

    def __call__(self, settings: dict):
        from reprior.core.architectures.base import Architecture

        names = SETTINGS if self.keywords is None else self.keywords
        given = None if self.takes_dict else {k: settings[k] for k in names if k in settings}
        try:
            arch = self.fn(settings) if given is None else self.fn(**given)
        except Exception as err:
            raise _fail(f"{self.name} to build an architecture from the cell's settings",
                        f"{type(err).__name__}: {err}") from err
        if not isinstance(arch, Architecture):
            raise _fail("a callable returning a reprior architecture (reprior.FeatureArchitecture, "
                        "reprior.from_flax, reprior.from_equinox, reprior.MLP, ...)",
                        f"{self.name} returning {type(arch).__name__} {_short(arch)}")
        return _declared(arch, settings, given, self.name)


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _declared(arch, settings: dict, given: dict | None, name: str):
    """``arch`` with the cell's width and depth recorded (FeatureArchitecture), refused if it declares others."""
    from reprior.core.architectures.user import FeatureArchitecture

    width, depth = settings.get("width"), settings.get("depth")
    declared = getattr(arch, "width", 0)
    if width is not None and declared and declared != width:
        raise _fail(f"{name} to build an architecture of the cell's width {width}",
                    f"{_short(arch)}, of width {declared}")
    if isinstance(arch, FeatureArchitecture):
        extra = {k: v for k, v in (given or {}).items() if k not in ("width", "depth")}
        changes = {"width": arch.width or (width or 0), "depth": arch.depth or (depth or 0),
                   "settings": {**dict(arch.settings), **extra}}
        arch = dataclasses.replace(arch, **changes)
    return arch


def check_widths(builds) -> None:
    """Refuse feature dimensions that do not grow with the width.

    Args:
        builds: ``{group: {width: (architecture name, feature dimension d)}}``, one group
            per setting that is not the width (architecture, depth, data, ...).
    """
    for widths in builds.values():
        ordered = sorted(widths.items())
        for (w1, (name, d1)), (w2, (_, d2)) in zip(ordered, ordered[1:]):
            if d2 <= d1:
                raise _fail("an architecture whose feature dimension grows with the width (--widths)",
                            f"{name} with d = {d1} at width {w1} and d = {d2} at width {w2}")
