"""A ResNet through ``reprior.sample``, in both parameterisations.

A tiny ResNet (width 1, depth 8: p = 4 x 1 + 1 = 5 readout features, about 450
parameters, as in tests/test_bnn.py) on n = 4 random 4 x 4 x 1 images, sampled
with HMC of a fixed number of leapfrog steps, so that its cost is known from the
settings alone: chains x iterations x num_steps gradients.  Then the agreement of the
predictive: NUTS in both parameterisations against the exact predictive moments computed
by importance sampling from the prior (``conftest.importance_sampling_predictive``).
Compilation of the ResNet's kernels costs tens of seconds of CPU, so these run with
``-m slow``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import assert_predictives_agree, importance_sampling_predictive, predictive_moments

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


@functools.lru_cache(maxsize=None)
def exact_reference():
    """The exact predictive moments at the test images, once for both parameterisations."""
    bnn, x, y, x_test = problem()
    return importance_sampling_predictive(bnn, x, y, x_test)


@pytest.mark.slow  # two NUTS runs of 2 x (300 + 1000) iterations on a ResNet: a few minutes of CPU
@pytest.mark.parametrize("parameterisation", ["standard", "reprior"])
def test_resnet_predictive_agrees_with_the_exact_reference(parameterisation):
    """Both parameterisations sample the ResNet's exact posterior predictive.

    Mean and sd of f at the test images within 4 combined standard errors (ArviZ MCSE
    from the chains' ESS; delta-method standard errors of the importance sampler),
    a tolerance below 0.2 posterior sd for the mean and 0.3 for the sd (asserted: the sd's
    standard error is about 0.06 sd here, from the ESS of the squared deviations), after
    checking that the chains mixed.
    """
    bnn, x, y, x_test = problem()
    idata = reprior.sample(bnn, x, y, x_test=x_test, parameterisation=parameterisation, sampler="nuts",
                           num_warmup=300, num_samples=1000, num_chains=2, chain_method="vectorized",
                           dtype="float64", progress_bar=False, keep="none", seed=3)
    moments = predictive_moments(idata)
    assert np.all(moments["rhat"] < 1.02) and np.all(moments["ess"] > 400), moments
    assert int(idata.sample_stats["diverging"].sum()) == 0
    reference = exact_reference()
    assert reference["ess"] > 2000
    assert_predictives_agree(moments, reference, f"ResNet {parameterisation} NUTS vs importance sampling",
                             sd_teeth=0.3)
