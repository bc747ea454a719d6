"""Thread count of the BLAS/LAPACK that JAX's CPU linear algebra calls.

On CPU, JAX's Cholesky factorisation and triangular solves call the LAPACK of
SciPy's bundled OpenBLAS.  Multi-threaded OpenBLAS on small matrices spins its
threads, which on a loaded machine makes a small Cholesky factorisation hundreds
of times slower (docs/performance.md has the measurement).  :func:`reprior.sample` therefore runs with
single-threaded BLAS by default (XLA's own matrix products, which dominate the
cost, keep their own thread pool).  Use :func:`blas_threads` around your own
``jit``-compiled calls of the log densities for the same protection.
"""

from __future__ import annotations

import contextlib


def blas_thread_info() -> list[dict]:
    """The BLAS libraries loaded in this process and their thread counts."""
    import scipy.linalg  # noqa: F401  (loads the OpenBLAS that JAX's LAPACK calls)
    from threadpoolctl import threadpool_info

    return [
        {"library": d.get("internal_api"), "num_threads": d.get("num_threads"), "path": d.get("filepath")}
        for d in threadpool_info() if d.get("user_api") == "blas"
    ]


@contextlib.contextmanager
def blas_threads(num_threads: int | None = 1):
    """Limit BLAS/LAPACK threads inside the ``with`` block (``None``: leave as is)."""
    if num_threads is None:
        yield
        return
    import scipy.linalg  # noqa: F401  (the library must be loaded before it can be limited)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=num_threads, user_api="blas"):
        yield
