"""Shared test set-up: environment, small data sets and helpers.

Nothing here changes JAX's global configuration: tests that need float64 use
``with jax.enable_x64(True):`` (the package must never depend on the global
flag).  ``jax_numpy_rank_promotion="raise"`` is *not* set: the NTK layers add
biases by broadcasting ``(n, d) + (d,)``, which is idiomatic and intended.
"""

from __future__ import annotations

import os

# One BLAS thread for the LAPACK behind JAX's CPU Cholesky/eigh (see reprior.blas):
# multi-threaded OpenBLAS on small matrices is up to 1000x slower on a busy machine.
# Must be set before SciPy's OpenBLAS is loaded, i.e. before the first JAX linear algebra.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Tests compile many small programs and run each for milliseconds: XLA's LLVM
# optimisations cost about a third of the CPU time of the suite and buy nothing here.
# Both flags are long-standing XLA debug options; set before JAX starts its backend.
_FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
_flags = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join([_flags, *(f for f in _FAST_COMPILE if f.split("=")[0] not in _flags)]).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def regression_data(n: int, in_dim: int = 2, out_dim: int = 1, *, seed: int = 0, noise: float = 0.2):
    """Smooth synthetic regression data as float64 NumPy arrays ``x: (n, in_dim)``, ``y: (n, out_dim)``."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, (n, in_dim))
    w = rng.standard_normal((in_dim, out_dim)) / np.sqrt(in_dim)
    y = np.sin(x @ w) + 0.5 * x[:, :1] + noise * rng.standard_normal((n, out_dim))
    return x, y


def float_dtype():
    """The default float dtype in the current x64 mode (float32 or float64)."""
    return jnp.zeros(()).dtype


def assert_tree_allclose(a, b, *, rtol, atol=0.0):
    """``np.testing.assert_allclose`` over two pytrees with the same structure."""
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.fixture
def rng():
    """A fresh, seeded NumPy generator per test."""
    return np.random.default_rng(0)
