"""Argument validation at the API boundary.

Every check raises :class:`ValueError` (or :class:`TypeError` for wrong kinds of
object) with a message naming the argument, what was expected and what was
received, *before* any JAX tracing happens.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np


def fail(name: str, expected: str, received) -> ValueError:
    """Build the one error message format used throughout reprior; ``.expected`` keeps what was expected."""
    error = ValueError(f"argument `{name}`: expected {expected}, received {received!r}")
    error.expected = expected
    return error


def _describe(value) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"array of shape {tuple(value.shape)} and dtype {value.dtype}"
    return repr(value)


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise fail(name, "a positive integer", value)
    return int(value)


def nonnegative_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise fail(name, "a non-negative integer", value)
    return int(value)


def positive_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(name, "a positive finite number", value)
    if not np.isfinite(value) or value <= 0:
        raise fail(name, "a positive finite number", value)
    return float(value)


def nonnegative_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(name, "a non-negative finite number", value)
    if not np.isfinite(value) or value < 0:
        raise fail(name, "a non-negative finite number", value)
    return float(value)


def probability(name: str, value, *, open_interval: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(name, "a number in (0, 1)", value)
    ok = 0 < value < 1 if open_interval else 0 <= value <= 1
    if not ok:
        raise fail(name, "a number in (0, 1)" if open_interval else "a number in [0, 1]", value)
    return float(value)


def flag(name: str, value) -> bool:
    """A real ``bool`` (not 0/1 or a string)."""
    if not isinstance(value, bool):
        raise fail(name, "True or False", value)
    return value


def positive_fraction(name: str, value) -> float:
    """A number in ``(0, 1]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise fail(name, "a number in (0, 1]", value)
    return float(value)


def one_of(name: str, value, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise fail(name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def finite_array(name: str, value, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Convert to a float NumPy array, checking rank and finiteness."""
    try:
        arr = np.asarray(value)
    except Exception as err:  # pragma: no cover - exotic inputs
        raise fail(name, "an array of numbers", type(value).__name__) from err
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise fail(name, "an array of numbers", _describe(arr))
    if np.issubdtype(arr.dtype, np.complexfloating):  # casting would silently drop the imaginary part
        raise fail(name, "an array of real numbers", _describe(arr))
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise fail(name, f"an array with {want} dimensions", _describe(arr))
    if arr.size and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise fail(name, "finite values (no NaN or inf)", f"{bad} non-finite entries in {_describe(arr)}")
    return arr.astype(np.float64) if not np.issubdtype(arr.dtype, np.floating) else arr


def matching_rows(names: tuple[str, str], a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[0] != b.shape[0]:
        raise fail(
            names[1],
            f"{a.shape[0]} rows to match `{names[0]}` (shape {tuple(a.shape)})",
            f"array of shape {tuple(b.shape)}",
        )


def is_concrete(value) -> bool:
    """Whether ``value`` holds data (not a JAX tracer): data checks run only on concrete values."""
    import jax  # here: the checks stay importable without JAX

    return not isinstance(value, jax.core.Tracer)
