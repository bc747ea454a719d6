"""The settings of one simulation-based calibration: a frozen object, checked once.

:func:`reprior.evaluation.sbc.run_sbc` builds :class:`SBCSettings` from its keyword arguments
before anything is compiled; every argument is checked there, each error naming its argument.
The compiled replications are cached on :meth:`SBCSettings.compilation_key`, the settings that
shape the program (not the noise levels, the number of replications or the test's level).
"""

from __future__ import annotations

import dataclasses

from reprior._util import checks as _checks
from reprior._util.choices import DTYPES
from reprior.core import repriorise as rp
from reprior.core.architectures.layers import ACTIVATIONS
from reprior.core.target import PARAMETERISATIONS, READOUTS
from reprior.inference.samplers.registry import kernel_names, validate_options

__all__ = ["SBCSettings"]

_POSITIVE_INTS = ("num_replications", "num_draws", "thinning", "width", "depth", "num_data", "in_dim", "num_bins",
                  "batch_size")


@dataclasses.dataclass(frozen=True)
class SBCSettings:
    """Every setting of :func:`reprior.evaluation.sbc.run_sbc` (see its arguments), checked.

    ``sampler_options`` is held as sorted ``(name, value)`` pairs (hashable; :attr:`options` gives
    the dict); ``sampler_noise_std`` and ``sampler_noise_prior`` are resolved (the data's noise and
    prior when not given), ``batch_size`` is at most ``num_replications``, and ``noise_prior`` and
    ``sampler_noise_prior`` are the JSON texts of :func:`reprior.core.bnn.describe_noise_prior`.
    """

    sampler: str
    parameterisation: str
    readout: str
    sampler_options: tuple
    num_replications: int
    num_draws: int
    thinning: int
    num_warmup: int
    width: int
    depth: int
    activation: str
    num_data: int
    in_dim: int
    noise_std: float
    sampler_noise_std: float
    num_bins: int
    level: float
    seed: int
    batch_size: int
    dtype: str
    form: str
    noise_prior: str | None
    sampler_noise_prior: str | None

    def __post_init__(self):
        _checks.one_of("sampler", self.sampler, kernel_names())
        _checks.one_of("parameterisation", self.parameterisation, PARAMETERISATIONS)
        _checks.one_of("readout", self.readout, READOUTS)
        _checks.one_of("form", self.form, rp.FORMS)
        _checks.one_of("activation", self.activation, tuple(ACTIVATIONS))
        for name in _POSITIVE_INTS:
            _checks.positive_int(name, getattr(self, name))
        _checks.nonnegative_int("num_warmup", self.num_warmup)
        _checks.nonnegative_int("seed", self.seed)
        _checks.positive_float("noise_std", self.noise_std)
        _checks.positive_float("sampler_noise_std", self.sampler_noise_std)
        _checks.probability("level", self.level)
        if self.num_bins < 2 or (self.num_draws + 1) % self.num_bins:
            raise _checks.fail("num_bins", f"at least 2 and a divisor of num_draws + 1 = {self.num_draws + 1}",
                               self.num_bins)
        _checks.one_of("dtype", self.dtype, DTYPES)
        validate_options(self.sampler, self.options)  # names and values, before anything is traced

    @classmethod
    def build(cls, *, sampler_options, sampler_noise_std, noise_prior, sampler_noise_prior, dtype, **settings):
        """From :func:`~reprior.evaluation.sbc.run_sbc`'s arguments (noise priors already as texts):
        resolves the defaults, checks everything, and names the argument of any error."""
        from reprior._util.choices import default_dtype

        if noise_prior is None and sampler_noise_prior is not None:
            raise _checks.fail("sampler_noise_prior", "None unless noise_prior is given (a fixed noise is not "
                               "inferred)", sampler_noise_prior)
        if sampler_options is not None and not isinstance(sampler_options, dict):
            raise _checks.fail("sampler_options", "a dict of sampler settings", sampler_options)
        batch_size, num_replications = settings.pop("batch_size"), settings["num_replications"]
        _checks.positive_int("batch_size", batch_size)
        _checks.positive_int("num_replications", num_replications)
        return cls(sampler_options=tuple(sorted((sampler_options or {}).items())),
                   sampler_noise_std=settings["noise_std"] if sampler_noise_std is None else sampler_noise_std,
                   noise_prior=noise_prior,
                   sampler_noise_prior=noise_prior if sampler_noise_prior is None else sampler_noise_prior,
                   dtype=default_dtype() if dtype is None else dtype,
                   batch_size=min(batch_size, num_replications), **settings)

    @property
    def options(self) -> dict:
        """``sampler_options`` as a dict."""
        return dict(self.sampler_options)

    @property
    def inferred(self) -> bool:
        """Whether the noise is inferred (a ``noise_prior`` was given)."""
        return self.noise_prior is not None

    def compilation_key(self) -> "SBCSettings":
        """The settings with what the compiled program takes as data normalised: the noise levels
        (traced arguments), the number of replications (run in batches) and the test's level."""
        return dataclasses.replace(self, noise_std=1.0, sampler_noise_std=1.0, num_replications=self.batch_size,
                                   level=0.5)

    def as_dict(self) -> dict:
        """The settings as the result records them (``SBCResult.settings``): ``sampler_options`` a dict."""
        out = dataclasses.asdict(self)
        out["sampler_options"] = self.options
        return out
