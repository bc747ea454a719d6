"""Which ArviZ reprior works with, read from the package metadata alone (nothing is imported).

``import reprior`` calls :func:`check_version`, so an ArviZ that cannot work is
refused at once, in one line, instead of failing after a run has sampled.
"""

from __future__ import annotations

import importlib.metadata
import re

#: What works, as the refusal says it.
SUPPORTED = "ArviZ 0.20 to 0.23, or ArviZ 1.x with arviz-base, arviz-stats and arviz-plots of the same minor version"


def _major_minor(version: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version)
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def version_problem(versions: dict[str, str | None]) -> str | None:
    """Why these installed versions cannot work (None if they can).

    ``versions`` maps ``arviz``, ``arviz-base``, ``arviz-stats`` and ``arviz-plots``
    to their versions (None where not installed).
    """
    arviz = versions.get("arviz")
    release = None if arviz is None else _major_minor(arviz)
    if release is not None and release[0] == 0 and release[1] >= 20:
        return None
    if release is not None and release[0] == 1:
        parts = {name: versions.get(name) for name in ("arviz-base", "arviz-stats", "arviz-plots")}
        minors = {None if v is None else _major_minor(v) for v in parts.values()}
        if None not in minors and len(minors) == 1:
            return None
        found = ", ".join(f"{name} {version or 'missing'}" for name, version in parts.items())
        return f"reprior needs {SUPPORTED}; found arviz {arviz} with {found}"
    return f"reprior needs {SUPPORTED}; found arviz {arviz or 'missing'}"


def check_version() -> None:
    """Raise ImportError (one line) if the installed ArviZ cannot work with reprior."""
    names = ("arviz", "arviz-base", "arviz-stats", "arviz-plots")
    problem = version_problem({name: _installed(name) for name in names})
    if problem is not None:
        raise ImportError(problem)
