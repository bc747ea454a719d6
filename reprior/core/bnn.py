"""A wide BNN with Gaussian likelihood: log densities in both coordinate systems.

``BNN(arch, noise_std)`` pairs an architecture with the likelihood
:math:`Y \\mid f \\sim \\mathcal N(f(X), \\sigma^2 I)` and the N(0, I) prior on
every parameter.  Parameters in *standard* coordinates (``theta``) and in
*repriorised* coordinates (``phi``) share one pytree layout; only the readout
differs (see :mod:`reprior.core.repriorise`).
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np

from reprior._util import checks as _checks
from reprior.core import repriorise as rp
from reprior.core.architectures import Architecture, readout_matrix, with_readout
from reprior.core.target import PARAMETERISATIONS, Target


def check_noise_prior(name: str, prior):
    """``prior`` if it is a scalar NumPyro distribution on (a subset of) the positive reals.

    A discrete distribution, a batched or multivariate one, or one whose support reaches
    below 0 raises ValueError naming ``name``.
    """
    import numpyro.distributions as dist

    if not isinstance(prior, dist.Distribution):
        raise _checks.fail(name, "a positive number or a NumPyro distribution on the positive reals", prior)
    support = prior.support
    if getattr(support, "is_discrete", False):
        raise _checks.fail(name, "a continuous prior on the positive reals (e.g. dist.HalfNormal(0.5))",
                           f"{prior!r}, discrete")
    if prior.batch_shape != () or prior.event_shape != ():
        raise _checks.fail(name, "a scalar prior (batch_shape () and event_shape ())",
                           f"{prior!r} of batch_shape {prior.batch_shape}, event_shape {prior.event_shape}")
    lower = getattr(support, "lower_bound", None)
    if lower is None or not np.all(np.asarray(lower) >= 0):
        raise _checks.fail(name, "a prior whose support lies in the positive reals (e.g. dist.HalfNormal(0.5), "
                                 "dist.LogNormal(0, 1))", f"{prior!r} with support {support}")
    return prior


def describe_noise_prior(prior) -> str:
    """JSON ``{"class": name, "args": {arg: value}}`` of a noise prior (NumPyro distributions of float args)."""
    args = {k: np.asarray(getattr(prior, k)).tolist() for k in sorted(prior.arg_constraints) if hasattr(prior, k)}
    return json.dumps({"class": type(prior).__name__, "args": args}, sort_keys=True)


def noise_prior_from_description(text: str, name: str = "idata"):
    """The distribution :func:`describe_noise_prior` described; ValueError naming ``name`` otherwise."""
    import numpyro.distributions as dist

    try:
        spec = json.loads(text)
        return check_noise_prior("noise_std", getattr(dist, spec["class"])(**spec["args"]))
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise _checks.fail(name, "a noise prior a file can hold (a numpyro.distributions class and its arguments)",
                           f"{text} ({error})") from None


def noise_prior_text(prior) -> str:
    """A noise prior as the text :func:`parse_noise_prior` reads back: ``"HalfNormal(scale=0.5)"``
    (the class and its arguments by name, in sorted order: one text per prior)."""
    spec = json.loads(describe_noise_prior(prior))
    args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in spec["args"].items())
    return f"{spec['class']}({args})"


def parse_noise_prior(text: str, name: str = "noise_prior"):
    """The noise prior a command line or config file gives as text: a ``numpyro.distributions``
    class and numeric arguments, positional or by name, as :meth:`BNN.noise_description` writes
    them: ``"HalfNormal(0.5)"``, ``"LogNormal(loc=-2, scale=0.5)"``, ``"InverseGamma(2, 0.1)"``.

    Only literal numbers are read (the text is parsed, never evaluated); the distribution is
    checked by :func:`check_noise_prior`.  Anything else raises ValueError naming ``name``.
    """
    import ast

    import numpyro.distributions as dist

    expected = "a prior such as HalfNormal(0.5) or LogNormal(loc=-2, scale=0.5) (a numpyro.distributions class)"
    try:
        call = ast.parse(str(text).strip(), mode="eval").body
    except SyntaxError:
        raise _checks.fail(name, expected, text) from None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise _checks.fail(name, expected, text)
    cls = getattr(dist, call.func.id, None)
    if not (isinstance(cls, type) and issubclass(cls, dist.Distribution)):
        raise _checks.fail(name, expected, f"{text} (no distribution {call.func.id!r} in numpyro.distributions)")

    def number(node):
        try:
            value = ast.literal_eval(node)
        except ValueError:
            value = None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{ast.unparse(node)} is not a number")
        return float(value)

    try:
        args = [number(a) for a in call.args]
        kwargs = {k.arg: number(k.value) for k in call.keywords if k.arg is not None}
        if len(kwargs) != len(call.keywords):
            raise ValueError("** arguments are not read")
        prior = cls(*args, **kwargs)
    except (ValueError, TypeError) as error:
        raise _checks.fail(name, expected, f"{text} ({error})") from None
    try:
        return check_noise_prior(name, prior)
    except ValueError as error:
        raise ValueError(str(error).replace(repr(prior), str(text))) from None


class BNN:
    """Bayesian neural network ``arch`` with Gaussian noise of std ``noise_std``.

    Args:
        arch: an :class:`~reprior.core.architectures.Architecture` (``MLP``, ``ResNet``).
        noise_std: :math:`\\sigma > 0`, the observation noise standard deviation; or a prior
            on it, a scalar NumPyro distribution on the positive reals (``dist.HalfNormal(0.5)``,
            ``dist.LogNormal(-1.0, 1.0)``, ``dist.InverseGamma(...)``): the noise is then
            inferred, sampled jointly with the weights in an unconstrained coordinate
            :math:`u = T^{-1}(\\sigma)`, :math:`T` = ``biject_to(prior.support)``
            (:class:`reprior.core.target.Target`).

    Attributes:
        noise_std: the number, or the prior as given.
        noise_prior: the prior, or ``None`` for a fixed noise.
    """

    def __init__(self, arch: Architecture, noise_std):
        if not isinstance(arch, Architecture):
            raise _checks.fail("arch", "a reprior architecture such as reprior.MLP(width=...)", arch)
        self.arch = arch
        import numpyro.distributions as dist

        if not isinstance(noise_std, dist.Distribution):
            self.noise_std = _checks.positive_float("noise_std", noise_std)
            self.noise_prior = None
        else:
            self.noise_std = self.noise_prior = check_noise_prior("noise_std", noise_std)

    @property
    def inferred_noise(self) -> bool:
        """Whether the noise has a prior (and is sampled) rather than a fixed value."""
        return self.noise_prior is not None

    def fixed_noise_std(self, what: str) -> float:
        """The fixed noise; ValueError naming ``noise_std`` when it is inferred (``what`` needs a number)."""
        if self.noise_prior is not None:
            raise _checks.fail("noise_std", f"a fixed noise (a number) for {what}", self.noise_prior)
        return self.noise_std

    def noise_description(self) -> str:
        """The noise as text: ``"0.1"`` or ``"HalfNormal(scale=0.5)"`` (:func:`noise_prior_text`)."""
        if self.noise_prior is None:
            return f"{self.noise_std:g}"
        return noise_prior_text(self.noise_prior)

    def _sigma(self, noise_std):
        """The noise of a density evaluation: the fixed one, or ``noise_std`` (required when inferred)."""
        if self.noise_prior is None:
            if noise_std is not None:
                raise _checks.fail("noise_std", "None for a BNN with a fixed noise", noise_std)
            return self.noise_std
        if noise_std is None:
            raise _checks.fail("noise_std", "the value of the inferred noise at which to evaluate", None)
        return noise_std

    def _noise_log_prior(self, noise_std):
        return 0.0 if self.noise_prior is None else self.noise_prior.log_prob(noise_std)

    def __repr__(self) -> str:
        return f"BNN({self.arch!r}, noise_std={self.noise_std})"

    @classmethod
    def from_idata(cls, idata) -> BNN:
        """The network of a result of :func:`reprior.sample` (or :func:`reprior.from_chains`),
        saved or not: its architecture with every hyperparameter, and ``noise_std``.

        Reads ``idata.attrs["arch_class"]``, ``["arch_settings"]`` (JSON) and ``["noise_std"]``;
        the architecture class must be loaded (reprior's own are; import your own first).
        Raises ValueError naming ``idata`` when they are missing.
        """
        attrs = getattr(idata, "attrs", None)
        if attrs is None:
            raise _checks.fail("idata", "a result of reprior.sample (arviz.InferenceData or xarray.DataTree)",
                               type(idata).__name__)
        arch = arch_from_attrs(attrs, "idata")
        if str(attrs.get("noise_prior", "")):
            return cls(arch, noise_prior_from_description(str(attrs["noise_prior"]), "idata"))
        if "noise_std" not in attrs:
            raise _checks.fail("idata", "a result of reprior.sample that records noise_std", f"attrs {sorted(attrs)}")
        return cls(arch, float(attrs["noise_std"]))

    # -- input checks -------------------------------------------------------------
    def check_data(self, x, y=None):
        """Validate shapes (always) and finiteness (for concrete arrays).

        ``y`` may be ``(n,)`` or ``(n, k)``; returns ``(x, y)`` with ``y`` 2-D.
        """
        self.arch.check_inputs(x, "x")
        if _checks.is_concrete(x):
            _checks.finite_array("x", x)
        if y is None:
            return x, None
        if jnp.ndim(y) == 1:
            y = y[:, None]
        if jnp.ndim(y) != 2:
            raise _checks.fail("y", "targets of shape (n,) or (n, out_dim)", f"array of shape {jnp.shape(y)}")
        if jnp.shape(y)[0] != jnp.shape(x)[0]:
            raise _checks.fail("y", f"{jnp.shape(x)[0]} rows to match `x`", f"array of shape {jnp.shape(y)}")
        if _checks.is_concrete(y):
            _checks.finite_array("y", y)
        return x, y

    # -- parameters -----------------------------------------------------------------
    def init(self, rng_key, x, out_dim: int) -> dict:
        """Draw parameters from the prior (every leaf i.i.d. N(0, 1))."""
        return self.arch.init(rng_key, x, out_dim)

    def features(self, params, x) -> jax.Array:
        """``Psi: (n, p)``; only ``params["hidden"]`` is used."""
        return self.arch.features(params, x)

    def _target(self, x, y, parameterisation: str = "reprior", readout: str = "sampled", form: str = "auto", *,
               noise_std=None) -> Target:
        """The :class:`reprior.core.target.Target` of this network on ``(x, y)`` (already checked) at the
        noise of an evaluation (:meth:`_sigma`: the fixed one, or ``noise_std`` for an inferred noise,
        which the target then holds fixed).  Every method below delegates to it: the maths of the
        densities, the coordinate maps and the predictive is written once, in the target."""
        return Target(self.arch, self._sigma(noise_std), x, y, parameterisation, readout, form)

    def readout_posterior(self, params, x, y, form: str = "auto", *, noise_std=None) -> rp.ReadoutPosterior:
        """The Gaussian readout posterior given ``params["hidden"]`` (spectral form).

        With an inferred noise, ``noise_std`` is the value of :math:`\\sigma` to condition on
        (the same keyword in every method below); with a fixed noise it must be ``None``.
        """
        return self._target(x, y, form=form, noise_std=noise_std).readout_posterior(params)

    def readout_factorisation(self, params, x, y, form: str = "auto", *, noise_std=None):
        """The readout posterior as the coordinate maps below and :func:`reprior.sample` use it:
        :func:`reprior.core.repriorise.readout_factorisation` (one Cholesky factor in the dual form)."""
        return self._target(x, y, form=form, noise_std=noise_std).readout_factorisation(params)

    # -- log densities --------------------------------------------------------------
    def log_density(self, params, x, y, parameterisation: str = "standard", *, form: str = "auto",
                    noise_std=None):
        """Log joint density ``log p(params, y)``, every normalising constant included.

        With an inferred noise, ``log p(params, sigma, y)`` at ``sigma = noise_std``: the
        prior's :math:`\\log p(\\sigma)` is added (a density in :math:`\\sigma` itself, no Jacobian
        of the unconstrained coordinate; :meth:`reprior.core.target.Target.log_density` has it).

        ``"standard"``: params are theta,

        .. math:: \\log \\mathcal N(\\theta; 0, I) + \\log \\mathcal N(Y; \\Psi\\theta_{\\mathrm{out}}, \\sigma^2 I).

        ``"reprior"``: params are phi, and the density (log-Jacobian included) is
        evaluated through the exact factorisation of :mod:`reprior.core.repriorise`
        in the ``form`` given (``"auto"``, ``"primal"`` or ``"dual"``).  Both are
        :meth:`Target.log_density <reprior.core.target.Target.log_density>` of the target.
        """
        _checks.one_of("parameterisation", parameterisation, PARAMETERISATIONS)
        _checks.one_of("form", form, rp.FORMS)
        x, y = self.check_data(x, y)
        self._check_params(params, x, y.shape[1])
        target = self._target(x, y, parameterisation, form=form, noise_std=noise_std)
        return target.log_density(params) + self._noise_log_prior(target.noise_std)

    def collapsed_log_density(self, hidden, x, y, *, form: str = "auto", noise_std=None) -> jax.Array:
        """Log density of the hidden weights with the readout integrated out.

        .. math:: \\log \\mathcal N(\\phi_{\\mathrm{hidden}}; 0, I) + \\log p(Y \\mid \\phi_{\\mathrm{hidden}}),

        which is the repriorised joint density minus :math:`\\log\\mathcal N(\\phi_{\\mathrm{out}}; 0, I)`:
        ``phi_out`` is exactly N(0, I) and independent of everything else.  With an inferred
        noise, :math:`\\log p(\\sigma)` at ``sigma = noise_std`` is added: the readout is
        integrated out given the hidden weights *and* :math:`\\sigma`.
        """
        _checks.one_of("form", form, rp.FORMS)
        x, y = self.check_data(x, y)
        target = self._target(x, y, readout="exact", form=form, noise_std=noise_std)
        return target.log_density({"hidden": hidden}) + self._noise_log_prior(target.noise_std)

    def log_abs_det_jacobian(self, phi_params, x, y, *, noise_std=None) -> jax.Array:
        """:math:`\\log|\\det \\partial\\theta/\\partial\\phi|` at ``phi_params`` (depends on the hidden weights
        and :math:`\\sigma` only)."""
        x, y = self.check_data(x, y)
        return rp.log_abs_det_jacobian(self.readout_factorisation(phi_params, x, y, noise_std=noise_std), y.shape[1])

    # -- coordinate maps ------------------------------------------------------------
    def to_theta(self, phi_params, x, y, *, form: str = "auto", noise_std=None) -> dict:
        """Map repriorised parameters to standard ones (hidden weights unchanged):
        :math:`\\theta_{\\mathrm{out}} = \\mu + \\sigma R\\,\\phi_{\\mathrm{out}}`, with the root of
        :meth:`readout_factorisation` (the one :func:`reprior.sample` records its draws with)."""
        x, y = self.check_data(x, y)
        self._check_params(phi_params, x, y.shape[1])
        theta, _ = self._target(x, y, form=form, noise_std=noise_std).to_params(phi_params, None)
        return theta

    def to_phi(self, theta_params, x, y, *, form: str = "auto", noise_std=None) -> dict:
        """Inverse of :meth:`to_theta`."""
        x, y = self.check_data(x, y)
        self._check_params(theta_params, x, y.shape[1])
        posterior = self.readout_factorisation(theta_params, x, y, form, noise_std=noise_std)
        return with_readout(theta_params, rp.to_phi_out(posterior, readout_matrix(theta_params)))

    def draw_readout(self, rng_key, params, x, y, *, form: str = "auto", noise_std=None):
        """Exact draw of the readout given ``params["hidden"]``.

        Returns ``(theta_params, phi_out)`` where ``phi_out: (p, k)`` is the
        N(0, I) draw and ``theta_params`` carries
        :math:`\\theta_{\\mathrm{out}} = \\mu + \\sigma R\\,\\phi_{\\mathrm{out}}` (:meth:`to_theta`).
        """
        x, y = self.check_data(x, y)
        theta, phi = self._target(x, y, readout="exact", form=form, noise_std=noise_std).to_params(params, rng_key)
        return theta, readout_matrix(phi)

    def predictive(self, params, x, y, x_test, *, form: str = "auto", noise_std=None):
        """Rao-Blackwellised predictive of ``f`` at ``x_test`` given the hidden weights.

        Returns ``mean: (n_test, k)`` and ``var: (n_test,)``; see :func:`reprior.core.repriorise.predictive`.
        """
        x, y = self.check_data(x, y)
        self.arch.check_inputs(x_test, "x_test")
        return self._target(x, y, form=form, noise_std=noise_std).predictive(params, x_test)

    def apply(self, params, x) -> jax.Array:
        """Network outputs ``f: (n, out_dim)`` (standard coordinates)."""
        return self.arch.apply(params, x)

    # -- helpers --------------------------------------------------------------------
    def param_shapes(self, x_shape, out_dim: int):
        """Shapes of the parameter pytree, without allocating it."""
        dummy = jax.ShapeDtypeStruct(tuple(x_shape), jnp.zeros(()).dtype)
        return jax.eval_shape(lambda x: self.arch.init(jax.random.key(0), x, out_dim), dummy)

    def _check_params(self, params, x, out_dim: int):
        if not isinstance(params, dict) or "hidden" not in params or "readout" not in params:
            raise _checks.fail("params", "a dict with keys 'hidden' and 'readout' (see MLP.init)", type(params).__name__)
        expected = self.param_shapes(np.shape(x), out_dim)
        got = jax.tree_util.tree_map(jnp.shape, params)
        want = jax.tree_util.tree_map(lambda s: s.shape, expected)
        if got != want:
            raise _checks.fail("params", f"the layout {want}", f"{got}")


# -- the network ----------------------------------------------------------------------------
def _jsonable(value):
    """A setting JSON cannot hold: a function as ``{"callable": "module.qualname"}``, else its repr."""
    if callable(value):
        return {"callable": f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"}
    return {"repr": repr(value)}


def describe_arch(arch) -> dict:
    """``{"arch_class": "module.QualName", "arch_settings": JSON of every hyperparameter}`` of ``arch``.

    A setting JSON cannot hold (the functions of a
    :class:`~reprior.core.architectures.FeatureArchitecture`) is recorded by name
    (``{"callable": "module.qualname"}``), which identifies the network but cannot rebuild it.
    """
    settings = {f.name: getattr(arch, f.name) for f in dataclasses.fields(arch)}
    return {"arch_class": f"{type(arch).__module__}.{type(arch).__qualname__}",
            "arch_settings": json.dumps(settings, sort_keys=True, default=_jsonable)}


def _architecture_classes() -> dict:
    """``{"module.QualName": class}`` of every loaded :class:`~reprior.core.architectures.Architecture` subclass."""
    found, todo = {}, list(Architecture.__subclasses__())
    while todo:
        cls = todo.pop()
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return found


def arch_from_attrs(attrs, name: str = "idata"):
    """The architecture described by ``attrs`` (:func:`describe_arch`); ValueError naming ``name`` otherwise.

    The class must be loaded already (reprior's own always are; import the module of your
    own architecture first): nothing is imported on the word of a file.
    """
    if "arch_class" not in attrs or "arch_settings" not in attrs:
        raise _checks.fail(name, "a result of reprior.sample that records its network (attrs arch_class "
                                 "and arch_settings)", f"attrs {sorted(attrs)}")
    classes = _architecture_classes()
    cls = classes.get(str(attrs["arch_class"]))
    if cls is None:
        raise _checks.fail(name, f"a network of a loaded architecture class ({', '.join(sorted(classes))}; "
                                 "import the module of your own first)", str(attrs["arch_class"]))
    settings = json.loads(str(attrs["arch_settings"]))
    unrecorded = sorted(k for k, v in settings.items() if isinstance(v, dict) and set(v) in ({"callable"}, {"repr"}))
    if unrecorded:
        raise _checks.fail(name, f"a network whose settings a file can hold ({cls.__name__}'s {unrecorded} are "
                                 "recorded by name only: build the network again)", str(attrs["arch_settings"]))
    try:
        return cls(**settings)
    except (TypeError, ValueError) as error:
        raise _checks.fail(name, f"settings of {cls.__name__}", f"{attrs['arch_settings']} ({error})") from None
