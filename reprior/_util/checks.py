"""Argument validation at the API boundary.

Every check raises :class:`ValueError` (or :class:`TypeError` for wrong kinds of
object) with a message naming the argument, what was expected and what was
received, *before* any JAX tracing happens.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np


def fail(name: str, expected: str, received, kind: type[Exception] = ValueError) -> Exception:
    """Build the one error message format used throughout reprior; ``.expected`` keeps what was expected.

    ``kind`` is the exception class: ``ValueError`` for a bad value, ``TypeError`` for a value of the
    wrong type or an argument a function does not take (as Python raises for unknown keywords).
    """
    error = kind(f"argument `{name}`: expected {expected}, received {received!r}")
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


MAX_SEED = 2**32 - 1
"""The largest seed: JAX and NumPy take seeds as unsigned 32-bit integers (as the command line)."""


def seed(name: str, value) -> int:
    """An integer in ``[0, 2**32 - 1]`` (the range the command line documents)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= MAX_SEED:
        raise fail(name, f"an integer in [0, {MAX_SEED}]", value)
    return int(value)


#: Head room below the square root of the largest float: sums over data points and hidden units.
_RANGE_MARGIN = 1e3


def _limits(dtype: str) -> tuple[float, float, float]:
    """``(largest safe magnitude, resolution eps, smallest normal)`` of ``dtype``."""
    info = np.finfo(np.dtype(dtype))
    return float(np.sqrt(info.max)) / _RANGE_MARGIN, float(info.eps), float(info.tiny)


def _max_abs(value) -> float:
    arr = np.asarray(value)
    return float(np.max(np.abs(arr))) if arr.size else 0.0


def numbers_fit(noise_std: float, x, y, x_test=None, *, dtype: str, names: dict | None = None) -> None:
    """Refuse numbers that the sampling ``dtype`` cannot carry, before any work.

    * ``x``, ``x_test``, ``y``: magnitudes below :math:`\\sqrt{\\max}/10^3` of the dtype
      (their squares, summed over points and units, stay finite: about ``1e151`` in
      float64, ``1.8e16`` in float32);
    * ``noise_std``: :math:`\\sigma^2` and :math:`1/\\sigma^2` finite and normal, and
      :math:`\\sigma \\ge \\varepsilon\\, s` with :math:`s = \\max(1, \\mathrm{rms}(y))`
      the scale of the targets (and of the prior predictive, about 1): a smaller noise
      vanishes next to the kernel in :math:`K + \\sigma^2 I` (it is :math:`\\varepsilon^2` of
      it), so the likelihood is a point mass the dtype cannot resolve;
    * ``max |y| / noise_std`` below the same safe magnitude (the squared residuals stay finite).

    ``noise_std`` None (an inferred noise): the data are checked, the noise is not (the sampler
    meets a noise too small for the dtype as failed factorisations, counted ``nonfinite``).

    ``names``: the argument names to report (default: ``noise_std``, ``x``, ``x_test``, ``y``).
    """
    names = {"noise_std": "noise_std", "x": "x", "x_test": "x_test", "y": "y", **(names or {})}
    safe, eps, tiny = _limits(dtype)
    for key, value in (("x", x), ("x_test", x_test), ("y", y)):
        if value is not None and _max_abs(value) > safe:
            raise fail(names[key], f"magnitudes at most {safe:.3g} in {dtype} (squares summed over points and "
                       "units must stay finite; rescale or standardise the data)",
                       f"values up to {_max_abs(value):.3g}")
    scale = max(1.0, float(np.sqrt(np.mean(np.square(np.asarray(y, np.float64))))) if np.size(y) else 1.0)
    low = max(eps * scale, float(np.sqrt(tiny)) * _RANGE_MARGIN)
    if noise_std is None:
        return
    if noise_std < low:
        advice = "use a larger noise_std" + (", or float64" if np.dtype(dtype) != np.float64 else "")
        raise fail(names["noise_std"], f"a noise std of at least {low:.3g} in {dtype} (eps x the target scale "
                   f"{scale:.3g}: a smaller one vanishes next to the kernel; {advice})", noise_std)
    if noise_std > safe:
        raise fail(names["noise_std"], f"a noise std of at most {safe:.3g} in {dtype} (its square must stay "
                   "finite)", noise_std)
    if np.size(y) and _max_abs(y) / noise_std > safe:
        raise fail(names["noise_std"], f"a noise std of at least {_max_abs(y) / safe:.3g} for targets up to "
                   f"{_max_abs(y):.3g} in {dtype} (the squared residuals over the noise must stay finite)",
                   noise_std)
