"""Fixed random projections for summarising high-dimensional draws (Hron et al. 2022, section 5).

A posterior over hundreds of thousands of weights is summarised by its
projections onto a fixed set of unit-norm random directions; ESS and R-hat of
those scalars stand for mixing of the whole vector.  The directions depend only
on ``(dim, num, seed)`` and are drawn with NumPy, so they are the same on every
machine, JAX version and device.
"""

from __future__ import annotations

import numpy as np


def projection_matrix(dim: int, num: int, seed: int = 0) -> np.ndarray:
    """``(dim, num)`` matrix of i.i.d. Gaussian directions normalised to unit length."""
    rng = np.random.default_rng([seed, dim, num])
    directions = rng.standard_normal((dim, num))
    return directions / np.linalg.norm(directions, axis=0, keepdims=True)
