"""Tests of reprior.core.nngp.monte_carlo_nngp_kernel against closed forms.

The standardised error ``z = (K_mc - K) / stderr`` of an entry is Student-t with
``S - 1`` degrees of freedom where the estimand is exact.  With ``S >= 96`` draws,
``P(|t| > 5) < 3e-6`` per entry, so by the union bound the maximum over the few
dozen entries of a test exceeds 5 with probability below 1e-4, whatever the
correlation between entries.  Fixed seeds, no seed hunting.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reprior import MLP, ResNet
from reprior.core import nngp
from reprior._util import checks as _checks
from reprior.core.architectures.base import Architecture, hyperparameter, readout_b_std, readout_w_std

Z_MAX = 5.0


@dataclasses.dataclass(frozen=True)
class RandomFourier(Architecture):
    """An architecture with no registered NNGP recursion: random Fourier features
    ``h = cos(x W s / sqrt(in_dim) + b)`` with ``b = pi/2 * bias_flag`` (cos or -sin),
    whose prior mean kernel is known in closed form (Rahimi & Recht 2007):
    ``E[cos(w.x) cos(w.x')] = (exp(-s^2 |x - x'|^2 / (2 in_dim)) + exp(-s^2 |x + x'|^2 / (2 in_dim))) / 2``."""

    width: int = hyperparameter(_checks.positive_int)
    scale: float = hyperparameter(_checks.positive_float, 1.0)
    out_w_std: float = readout_w_std()
    out_b_std: float = readout_b_std()

    def check_inputs(self, x, name: str = "x"):
        if len(np.shape(x)) != 2:
            raise _checks.fail(name, "inputs (n, in_dim)", np.shape(x))

    def feature_dim(self, x_shape) -> int:
        return self.width

    def init_hidden(self, rng_key, x):
        return {"W": jax.random.normal(rng_key, (np.shape(x)[1], self.width))}

    def hidden_features(self, hidden, x):
        return jnp.cos(self.scale / math.sqrt(x.shape[1]) * x @ hidden["W"])

    def limit(self, x1, x2):
        c = self.scale**2 / (2 * x1.shape[1])
        minus = np.sum((x1[:, None] - x2[None]) ** 2, axis=-1)
        plus = np.sum((x1[:, None] + x2[None]) ** 2, axis=-1)
        return self.out_w_std**2 * (np.exp(-c * minus) + np.exp(-c * plus)) / 2 + self.out_b_std**2


def _relu_fourth_moment(k11, k22, k12):
    """E[relu(u)^2 relu(v)^2] = k11 k22 J_2(theta) / (2 pi), the arc-cosine kernel of degree 2
    (Cho & Saul 2009, eq. 7): J_2 = 3 sin(t) cos(t) + (pi - t)(1 + 2 cos(t)^2)."""
    rho = np.clip(k12 / np.sqrt(k11 * k22), -1, 1)
    t = np.arccos(rho)
    return k11 * k22 / (2 * math.pi) * (3 * np.sin(t) * rho + (math.pi - t) * (1 + 2 * rho**2))


def _inputs(n, d=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def test_depth_one_mlp_matches_the_closed_form_and_its_standard_error():
    """Depth 1: the pre-activations are exactly Gaussian at any width, so E[Psi Psi^T] is the NNGP
    kernel exactly; the entry of one draw is a mean over d i.i.d. units, of variance
    sigma_out^4 (E[r^2 r'^2] - E[r r']^2) / d, so the standard error is known exactly too."""
    with jax.enable_x64(True):
        arch = MLP(width=64, depth=1, b_std=0.3)
        x1, x2 = _inputs(8), _inputs(5, seed=1)
        num_draws = 300
        est = nngp.monte_carlo_nngp_kernel(arch, x1, x2, rng_key=jax.random.key(0), num_draws=num_draws,
                                           batch_size=64)  # 300 = 4 full batches + a masked one
        kernel, stderr = est
        assert kernel.dtype == jnp.float64 and kernel.shape == stderr.shape == (8, 5)
        exact = np.asarray(nngp.nngp_kernel(arch, x1, x2))
        z = (np.asarray(kernel) - exact) / np.asarray(stderr)
        assert np.max(np.abs(z)) < Z_MAX
        s = arch.w_std**2 / 3
        k11, k22 = s * np.sum(x1**2, 1)[:, None] + arch.b_std**2, s * np.sum(x2**2, 1)[None] + arch.b_std**2
        k12 = s * x1 @ x2.T + arch.b_std**2
        mean_rr = (exact - arch.out_b_std**2) / arch.out_w_std**2
        var_unit = _relu_fourth_moment(k11, k22, k12) - mean_rr**2
        exact_se = arch.out_w_std**2 * np.sqrt(var_unit / arch.width / num_draws)
        # The sample sd of S = 300 nearly Gaussian draws has relative sd 1/sqrt(2 S) = 0.04: 0.25 is 6 sd.
        np.testing.assert_allclose(np.asarray(stderr) / exact_se, 1.0, atol=0.25)


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_symmetric_estimate_is_symmetric_and_matches(activation):
    with jax.enable_x64(True):
        arch = MLP(width=32, depth=1, activation=activation)
        x = _inputs(7)
        kernel, stderr = nngp.monte_carlo_nngp_kernel(arch, x, rng_key=jax.random.key(3), num_draws=128,
                                                      batch_size=128)
        np.testing.assert_array_equal(np.asarray(kernel), np.asarray(kernel).T)
        np.testing.assert_array_equal(np.asarray(stderr), np.asarray(stderr).T)
        z = (np.asarray(kernel) - np.asarray(nngp.nngp_kernel(arch, x))) / np.asarray(stderr)
        assert np.max(np.abs(z)) < Z_MAX


def test_deeper_mlp_within_its_standard_error_at_a_width_where_the_bias_is_below_it():
    """Depth 3: E_d[Psi Psi^T] = K_inf + c / d.  Measured (2000 draws, widths 32 and 128,
    docs/nngp.md): relative c ~ 1 and a per-draw relative sd ~ 2.5 / sqrt(d), so at d = 256 and
    S = 128 the bias (~0.004) is a quarter of the standard error (~0.014) and moves the
    union bound above only slightly (P(|t + 0.3| > 5) < 1e-5 per entry)."""
    with jax.enable_x64(True):
        arch = MLP(width=256, depth=3)
        x = _inputs(6)
        kernel, stderr = nngp.monte_carlo_nngp_kernel(arch, x, rng_key=jax.random.key(1), num_draws=128,
                                                      batch_size=32)
        z = (np.asarray(kernel) - np.asarray(nngp.nngp_kernel(arch, x))) / np.asarray(stderr)
        assert np.max(np.abs(z)) < Z_MAX


@pytest.mark.slow  # 25 s on one core, mostly compiling the ResNet
def test_resnet_within_its_standard_error():
    """ResNet (depth 8, 4x4x1 images): measured relative bias 0.019 at width 8 (400 draws), so ~0.01
    at width 16, against a relative standard error ~0.04 with 96 draws (docs/nngp.md)."""
    with jax.enable_x64(True):
        arch = ResNet(width=16, depth=8)
        x = np.random.default_rng(0).standard_normal((4, 4, 4, 1))
        kernel, stderr = nngp.monte_carlo_nngp_kernel(arch, x, rng_key=jax.random.key(2), num_draws=96,
                                                      batch_size=32)
        z = (np.asarray(kernel) - np.asarray(nngp.nngp_kernel(arch, x))) / np.asarray(stderr)
        assert np.max(np.abs(z)) < Z_MAX


def test_an_architecture_without_a_closed_form_is_estimated():
    """A user's architecture (no registered recursion): nngp_kernel refuses it, the Monte Carlo
    estimate agrees with its own closed form (random Fourier features, exact at every width)."""
    with jax.enable_x64(True):
        arch = RandomFourier(width=16, scale=1.5)
        assert not nngp.has_closed_form_kernel(arch)
        assert nngp.has_closed_form_kernel(MLP(width=4))
        x1, x2 = _inputs(6), _inputs(4, seed=2)
        with pytest.raises(NotImplementedError):
            nngp.nngp_kernel(arch, x1)
        kernel, stderr = nngp.monte_carlo_nngp_kernel(arch, x1, x2, rng_key=jax.random.key(4), num_draws=200,
                                                      batch_size=50)
        z = (np.asarray(kernel) - arch.limit(x1, x2)) / np.asarray(stderr)
        assert np.max(np.abs(z)) < Z_MAX


def test_float32_follows_the_inputs():
    kernel, stderr = nngp.monte_carlo_nngp_kernel(MLP(width=8), np.ones((3, 2), np.float32),
                                                  rng_key=jax.random.PRNGKey(0), num_draws=4, batch_size=3)
    assert kernel.dtype == jnp.float32 and bool(jnp.all(stderr >= 0))


@pytest.mark.parametrize(("kwargs", "match"), [({"num_draws": 1}, "num_draws"), ({"batch_size": 0}, "batch_size"),
                                               ({"num_draws": 2.5}, "num_draws")])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nngp.monte_carlo_nngp_kernel(MLP(width=4), np.ones((3, 2)), rng_key=jax.random.key(0),
                                     **{"num_draws": 4, "batch_size": 2, **kwargs})
    with pytest.raises(TypeError, match="arch"):
        nngp.monte_carlo_nngp_kernel("mlp", np.ones((3, 2)), rng_key=jax.random.key(0))
