"""The settings of a ``reprior.sample`` call (:class:`reprior.inference.settings.SampleSettings`): frozen,
and checked once, with the messages ``reprior.sample`` gives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import reprior
from reprior.inference import sampling
from reprior.inference.settings import SampleSettings

ARGUMENTS = dict(parameterisation="reprior", readout="exact", sampler="nuts", num_warmup=None, num_samples=5,
                 num_chains=2, seed=0, chain_method="sequential", dtype=None, sampler_options=None, thinning=1,
                 keep="all", num_projections=10, form="auto", jitter=0.0, blas_threads=None, pointwise=True)


def test_the_settings_are_frozen_and_changed_by_replace():
    settings = SampleSettings.checked(**ARGUMENTS)
    assert (settings.num_warmup, settings.blas_threads, settings.pointwise) == (500, "default", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.num_samples = 7
    longer = dataclasses.replace(settings, num_samples=12)
    assert (settings.num_samples, longer.num_samples) == (5, 12)
    assert list(longer.attrs()) == [field.name for field in dataclasses.fields(SampleSettings)]
    assert longer.attrs()["dtype"] == "" and longer.attrs()["sampler_options"] == ""


def test_a_bad_value_is_refused_with_the_message_of_reprior_sample(monkeypatch):
    with pytest.raises(ValueError) as caught:
        SampleSettings.checked(**{**ARGUMENTS, "num_samples": 0})
    assert str(caught.value) == "argument `num_samples`: expected a positive integer, received 0"
    monkeypatch.setattr(sampling, "sample_with_settings", lambda *a, **k: pytest.fail("sampled a bad setting"))
    x = np.linspace(-1, 1, 8)[:, None]
    with pytest.raises(ValueError) as from_sample:
        reprior.sample(reprior.BNN(reprior.MLP(4), 0.3), x, x[:, 0], num_samples=0, progress_bar=False)
    assert str(from_sample.value) == str(caught.value)
