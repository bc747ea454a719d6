"""A ResNet through ``reprior.sample``, in both parameterisations.

A tiny ResNet (width 1, depth 8: p = 4 x 1 + 1 = 5 readout features, about 450
parameters, as in tests/test_bnn.py) on n = 4 random 4 x 4 x 1 images, sampled
with HMC of a fixed number of leapfrog steps, so that its cost is known from the
settings alone: chains x iterations x num_steps gradients. Even this size costs about a
minute of CPU (compilation), so it runs with ``-m slow``; the agreement of the two
parameterisations' predictives on a ResNet is not tested yet (NUTS on a width-2 ResNet did
not finish 60 iterations in 400 s here).
"""

from __future__ import annotations

import numpy as np
import pytest

import reprior

NUM_STEPS, CHAINS, WARMUP, DRAWS = 3, 2, 10, 10


def problem():
    rng = np.random.default_rng(0)
    x, x_test = rng.standard_normal((4, 4, 4, 1)), rng.standard_normal((2, 4, 4, 1))
    y = x.mean(axis=(1, 2)) + 0.3 * rng.standard_normal((4, 1))
    return reprior.BNN(reprior.ResNet(1, depth=8), noise_std=0.5), x, y, x_test


@pytest.mark.slow  # compiling the ResNet's HMC step takes about 30 s of CPU per parameterisation here
@pytest.mark.parametrize("parameterisation", ["standard", "reprior"])
def test_resnet_runs_through_sample(parameterisation):
    bnn, x, y, x_test = problem()
    idata = reprior.sample(bnn, x, y, x_test=x_test, parameterisation=parameterisation, sampler="hmc",
                           sampler_options={"num_steps": NUM_STEPS}, num_warmup=WARMUP, num_samples=DRAWS,
                           num_chains=CHAINS, chain_method="vectorized", dtype="float64", progress_bar=False,
                           keep="readout")
    assert idata.attrs["arch"] == "resnet" and idata.attrs["depth"] == 8
    assert idata.attrs["grad_evals"] == CHAINS * (WARMUP + DRAWS) * NUM_STEPS
    f = idata.posterior_predictive["f_test"].values
    assert f.shape == (CHAINS, DRAWS, 2, 1) and np.all(np.isfinite(f))
    assert idata.posterior["readout_W"].shape == (CHAINS, DRAWS, 4, 1)  # 4 x width channels
    assert np.all(np.isfinite(idata.sample_stats["energy"])) and not np.all(idata.sample_stats["accept_prob"] == 0)
