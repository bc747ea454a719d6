"""The settings of one :func:`reprior.sample` call: a frozen object, checked once, at the call.

:func:`reprior.sample` checks its data, then builds a :class:`SampleSettings` with
:meth:`SampleSettings.checked`, which refuses a bad value (``ValueError`` naming the
argument, :mod:`reprior._util.checks`) before anything is traced.  From there on the
settings are read by attribute, and a setting derived later (the whole run's
``num_samples`` of a continued run) is a new object, ``dataclasses.replace(settings, ...)``.
The fields are recorded, in this order and under these names, in the result's ``attrs``
(:meth:`SampleSettings.attrs`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from reprior._util import checks as _checks
from reprior._util.choices import CHAIN_METHODS, DTYPES
from reprior.core import repriorise as rp
from reprior.core.target import PARAMETERISATIONS, READOUTS
from reprior.inference.samplers.registry import kernel_names, validate_options

#: The values of ``keep``: which parameters a draw stores.
KEEP = ("all", "readout", "none")


@dataclass(frozen=True, kw_only=True)
class SampleSettings:
    """The settings of a :func:`reprior.sample` call that its result records in ``attrs``.

    Frozen: a field cannot be reassigned (``dataclasses.FrozenInstanceError``); a changed
    setting is a new object, ``dataclasses.replace(settings, num_samples=...)``.  The freeze
    is shallow: ``sampler_options`` is the caller's dict, as given.  Build one with
    :meth:`checked`, which checks every field; the plain constructor (and so
    ``dataclasses.replace``) checks nothing.

    Attributes:
        parameterisation: ``"standard"`` (sample theta, all weights) or ``"reprior"`` (sample phi).
        readout: for ``"reprior"``: ``"exact"`` (phi_out drawn i.i.d. exactly, only the hidden
            weights sampled) or ``"sampled"`` (phi_out sampled jointly).
        sampler: a registered kernel name (:func:`reprior.inference.kernels.kernel_names`).
        num_warmup: warm-up iterations per chain (``sample``'s ``None`` resolved: 500, or the
            earlier run's for a continued one, which does not warm up again).
        num_samples: recorded draws per chain (of a continued run's result: the whole run's).
        num_chains: number of chains.
        seed: seed of the sampler's PRNG key (its range is checked by ``sample`` after the data).
        chain_method: ``"sequential"``, ``"vectorized"`` or ``"parallel"``.
        dtype: ``"float64"``, ``"float32"`` or ``None`` as given (``None``: the platform's default,
            which ``sample`` resolves and records in place of this one).
        sampler_options: the kernel's settings (a dict) or ``None``.
        thinning: transitions per recorded draw.
        keep: which parameters a draw stores: ``"all"``, ``"readout"`` or ``"none"`` (:data:`KEEP`).
        num_projections: number of fixed random directions of ``theta_proj``/``phi_proj``.
        form: ``"auto"``, ``"primal"`` or ``"dual"`` linear algebra of the repriorised density.
        jitter: relative diagonal jitter of ``K + s^2 I`` (0: exact).
        blas_threads: the LAPACK threads during the call, or ``"default"`` for ``sample``'s
            ``None`` (the setting left alone); recorded as given (``sample`` checks it after the
            memory estimate).
        pointwise: 1 to record the pointwise log likelihood and predictive ``y``, 0 not to
            (``sample``'s flag, as an integer: NetCDF attrs hold no booleans).
    """

    parameterisation: str
    readout: str
    sampler: str
    num_warmup: int
    num_samples: int
    num_chains: int
    seed: int
    chain_method: str
    dtype: str | None
    sampler_options: dict | None
    thinning: int
    keep: str
    num_projections: int
    form: str
    jitter: float
    blas_threads: int | str
    pointwise: int

    @classmethod
    def checked(cls, *, parameterisation, readout, sampler, num_warmup, num_samples, num_chains, seed,
                chain_method, dtype, sampler_options, thinning, keep, num_projections, form, jitter,
                blas_threads, pointwise: bool) -> SampleSettings:
        """The settings of ``reprior.sample``'s arguments of these names, every one checked (the first
        bad one a ValueError naming it), values kept as given but three: ``num_warmup`` ``None`` is
        500, ``blas_threads`` ``None`` is ``"default"`` and ``pointwise`` (a bool) is ``int(pointwise)``."""
        settings = cls(parameterisation=parameterisation, readout=readout, sampler=sampler,
                       num_warmup=500 if num_warmup is None else num_warmup, num_samples=num_samples,
                       num_chains=num_chains, seed=seed, chain_method=chain_method, dtype=dtype,
                       sampler_options=sampler_options, thinning=thinning, keep=keep,
                       num_projections=num_projections, form=form, jitter=jitter,
                       blas_threads="default" if blas_threads is None else blas_threads,
                       pointwise=int(pointwise))
        settings._check()
        return settings

    def _check(self) -> None:
        _checks.one_of("parameterisation", self.parameterisation, PARAMETERISATIONS)
        _checks.one_of("readout", self.readout, READOUTS)
        _checks.one_of("sampler", self.sampler, kernel_names())
        _checks.nonnegative_int("num_warmup", self.num_warmup)
        _checks.positive_int("num_samples", self.num_samples)
        _checks.positive_int("num_chains", self.num_chains)
        _checks.positive_int("thinning", self.thinning)
        _checks.nonnegative_int("seed", self.seed)
        _checks.nonnegative_int("num_projections", self.num_projections)
        _checks.one_of("chain_method", self.chain_method, CHAIN_METHODS)
        _checks.one_of("keep", self.keep, KEEP)
        if self.keep == "none" and self.num_projections == 0:
            raise _checks.fail("num_projections", "at least 1 when keep='none' (else no posterior is recorded)", 0)
        _checks.one_of("form", self.form, rp.FORMS)
        if self.dtype is not None:
            _checks.one_of("dtype", self.dtype, DTYPES)
        validate_options(self.sampler, self.sampler_options)  # names and values, before any tracing
        _checks.nonnegative_float("jitter", self.jitter)

    def attrs(self) -> dict:
        """The fields as a result's ``attrs`` hold them, in field order: ``None`` as ``""``, a dict as its text."""
        return {field.name: _attr(getattr(self, field.name)) for field in dataclasses.fields(self)}


def _attr(value):
    return "" if value is None else (str(value) if isinstance(value, dict) else value)
