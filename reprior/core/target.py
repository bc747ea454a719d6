"""The sampling target: built once, used by every consumer.

For a network, data and a choice of coordinates, :func:`build_target` gives
one :class:`Target` that says what a sampler explores and how a sampled point
maps back to the network.  :func:`reprior.sample`, simulation-based
calibration (:mod:`reprior.experiments.sbc`), the benchmarks and the NumPyro models all
use it, so "the target" is written once.

=====================  ===============================  ============================================
setting                sampled variables ``z``          log likelihood :math:`\\ell(z)` (no constant)
=====================  ===============================  ============================================
``standard``           theta (every weight)             :math:`-|Y - \\Psi\\theta_{\\mathrm{out}}|^2 / (2\\sigma^2)`
``reprior, sampled``   phi (hidden and ``phi_out``)     :math:`\\log\\mathcal N(Y; 0, K + \\sigma^2 I)` + const
``reprior, exact``     ``{"hidden": phi_hidden}``       the same, ``phi_out`` drawn exactly per draw
=====================  ===============================  ============================================

In every setting the sampled variables have the prior :math:`\\mathcal N(0, I)`
(:attr:`Target.prior`), so the posterior is

.. math::

    \\log p(z \\mid Y) = \\ell(z) - \\tfrac12 |z|^2 + c_{\\ell} + c_{\\mathrm{prior}} - \\log p(Y),

with :math:`c_\\ell = -\\tfrac{nk}{2}\\log(2\\pi\\sigma^2)` (:meth:`Target.log_likelihood_constant`)
and :math:`c_{\\mathrm{prior}} = -\\tfrac{d}{2}\\log 2\\pi`.  Samplers get :math:`\\ell`
itself (Gaussian-reference kernels: pCN, pCNL, elliptical slice) or
:math:`\\ell(z) - \\tfrac12|z|^2` (NUTS, HMC, MCLMC), never the constants: with
:math:`d = 10^6` weights in float32, :math:`c_{\\mathrm{prior}} \\approx -9\\times 10^5`
has a float32 spacing of 0.06, and recovering :math:`\\ell` as
``log_density(z) + |z|^2/2`` would carry errors of that size into every
acceptance ratio.  The constants enter only the reported log density
(:meth:`Target.log_density`, the ``lp`` sample statistic).

**Inferred noise.**  With a prior :math:`p_\\sigma` on the noise (``noise_prior``, a
distribution on the positive reals), the sampler also explores :math:`u` (the scalar
:data:`NOISE_KEY`), with :math:`\\sigma = T(u)`, :math:`T` = NumPyro's
``biject_to(prior.support)`` (:math:`\\exp` for ``positive``).  The density of :math:`u` is
:math:`p_U(u) = p_\\sigma(T(u))\\,|T'(u)|`.  ``u`` is given the N(0, 1) reference like every
other variable and its prior relative to it is moved into :math:`\\ell`, so that every kernel
(Gaussian-reference ones included) targets the right posterior:

.. math::

    \\ell(z) = \\ell_\\sigma(z) - nk\\log\\sigma
        + \\log p_\\sigma(\\sigma) + \\log|T'(u)| - \\log\\mathcal N(u; 0, 1), \\qquad \\sigma = T(u),

with :math:`\\ell_\\sigma` the fixed-noise :math:`\\ell` of the table at :math:`\\sigma` (the
:math:`\\sigma`-dependent part :math:`-nk\\log\\sigma` of :math:`c_\\ell` is kept; only
:math:`-\\tfrac{nk}{2}\\log 2\\pi` is left in the constant).

*Repriorised coordinates.*  :math:`\\theta = (\\phi_{\\mathrm{hidden}}, \\mu + \\sigma R\\phi_{\\mathrm{out}})`
depends on :math:`\\sigma`, so the map :math:`(\\phi, u) \\mapsto (\\theta, u)` has the block
triangular Jacobian :math:`\\begin{pmatrix} \\partial\\theta/\\partial\\phi & \\partial\\theta/\\partial u \\\\ 0 & 1 \\end{pmatrix}`,
whose determinant is :math:`\\det\\partial\\theta/\\partial\\phi = (\\sigma^p \\det G^{-1/2})^k`, the
fixed-noise one at :math:`\\sigma`: the :math:`\\partial\\theta/\\partial u` column does not enter.  Hence

.. math::

    \\log p(\\phi, u, Y) = \\log p(\\theta(\\phi, \\sigma), u, Y)
        + k\\big(p\\log\\sigma - \\tfrac12\\log\\det G_\\sigma\\big)
      = \\log\\mathcal N(\\phi; 0, I) + \\sum_j \\log\\mathcal N(Y_{:j}; 0, K + \\sigma^2 I_n) + \\log p_U(u),

the exact identity of :mod:`reprior.core.repriorise` at each :math:`\\sigma`, times the prior of
:math:`u`.  ``phi_out`` stays exactly N(0, I) and independent of :math:`(\\phi_{\\mathrm{hidden}}, u)`,
so the collapsed target (``readout="exact"``) samples :math:`(\\phi_{\\mathrm{hidden}}, u)` with the
readout integrated out given the hidden weights *and* :math:`\\sigma`, and each recorded draw
draws :math:`\\theta_{\\mathrm{out}} = \\mu_\\sigma + \\sigma G_\\sigma^{-1/2}\\phi_{\\mathrm{out}}` and the
Rao-Blackwellised predictive at that draw's :math:`\\sigma` (:meth:`Target.readout_posterior`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from reprior._util import checks as _checks
from reprior.core import repriorise as rp
from reprior.core.architectures import Architecture, readout_matrix, with_readout
from reprior.core.pytrees import squared_norm  # noqa: F401 (re-exported: reprior.core.target.squared_norm)

PARAMETERISATIONS = ("standard", "reprior")
READOUTS = ("sampled", "exact")
#: The sampled variable of an inferred noise: :math:`u = T^{-1}(\\sigma)`, a scalar.
NOISE_KEY = "noise_std_unconstrained"


@dataclass(frozen=True)
class Target:
    """What a sampler explores for ``(arch, noise_std, x, y, parameterisation, readout, form)``.

    Build it with :func:`build_target` (which validates); the fields may be
    traced arrays (``noise_std`` is traced in SBC, so that one executable serves
    several noise levels).

    Attributes:
        arch: the architecture.
        noise_std: :math:`\\sigma`, a float or a scalar array.
        x: training inputs; ``y``: targets ``(n, k)``.
        parameterisation, readout, form: as in :func:`reprior.sample`.
        jitter: opt-in diagonal jitter of the repriorised likelihood
            (:func:`reprior.core.repriorise.log_marginal_likelihood_unnormalised`); 0 is exact.
        noise_prior: ``None`` (fixed noise), or a prior on :math:`\\sigma` (a NumPyro
            distribution on the positive reals); then ``noise_std`` is unused and the noise is
            sampled, see "Inferred noise" in the module docstring.
    """

    arch: Architecture
    noise_std: object
    x: jax.Array
    y: jax.Array
    parameterisation: str = "reprior"
    readout: str = "exact"
    form: str = "auto"
    jitter: float = 0.0
    noise_prior: object = None

    #: The prior of the sampled variables: every scalar i.i.d. standard normal.
    prior = "N(0, I)"
    #: Its standard deviation (the reference of the Gaussian-reference kernels).
    prior_std = 1.0

    @property
    def collapsed(self) -> bool:
        """Whether only the hidden weights are sampled (``phi_out`` drawn exactly per draw)."""
        return self.parameterisation == "reprior" and self.readout == "exact"

    @property
    def out_dim(self) -> int:
        return self.y.shape[1]

    # -- what is sampled --------------------------------------------------------------
    def param_shapes(self):
        """Shapes of the full parameter pytree (``hidden`` and ``readout``), without allocating it."""
        dummy = jax.ShapeDtypeStruct(tuple(self.x.shape), self.x.dtype)
        return jax.eval_shape(lambda x: self.arch.init(jax.random.key(0), x, self.out_dim), dummy)

    def shapes(self):
        """Shapes of the sampled variables: the parameter pytree, or ``{"hidden": ...}`` when collapsed;
        with an inferred noise also :data:`NOISE_KEY`, a scalar."""
        shapes = self.param_shapes()
        out = {"hidden": shapes["hidden"]} if self.collapsed else shapes
        if self.noise_prior is not None:
            out = {**out, NOISE_KEY: jax.ShapeDtypeStruct((), self.x.dtype)}
        return out

    @property
    def num_dims(self) -> int:
        """Number of sampled scalars."""
        return sum(math.prod(s.shape) for s in jax.tree_util.tree_leaves(self.shapes()))

    @property
    def num_params(self) -> int:
        """Number of network parameters (theta), which is more than ``num_dims`` when collapsed."""
        return sum(math.prod(s.shape) for s in jax.tree_util.tree_leaves(self.param_shapes()))

    def initial_positions(self, rng_key, num_chains: int):
        """Prior draws, one per chain (leading axis ``num_chains``).

        For phi the prior is also the infinite-width posterior, so this is a
        good start in repriorised coordinates.
        """
        keys = jax.random.split(rng_key, num_chains)
        params = jax.vmap(lambda k: self.arch.init(k, self.x, self.out_dim))(keys)
        out = {"hidden": params["hidden"]} if self.collapsed else params
        if self.noise_prior is not None:  # the noise from its prior, in its unconstrained coordinate
            sigma = self.noise_prior.sample(jax.random.fold_in(rng_key, 0x0A15E), (num_chains,))
            out = {**out, NOISE_KEY: self.noise_transform().inv(sigma.astype(self.x.dtype))}
        return out

    # -- the inferred noise ---------------------------------------------------------------
    def noise_transform(self):
        """:math:`T`: unconstrained :math:`u \\mapsto \\sigma`, NumPyro's ``biject_to(prior.support)``."""
        from numpyro.distributions.transforms import biject_to  # NumPyro only where a noise is inferred

        return biject_to(self.noise_prior.support)

    def noise_std_at(self, z):
        """:math:`\\sigma` at the sampled point ``z``: ``T(z[NOISE_KEY])``, or the fixed ``noise_std``."""
        if self.noise_prior is None:
            return self.noise_std
        return self.noise_transform()(z[NOISE_KEY])

    def noise_log_prior(self, u) -> jax.Array:
        """:math:`\\log p_\\sigma(T(u)) + \\log|T'(u)| - \\log\\mathcal N(u; 0, 1)`: the prior of ``u``
        relative to the N(0, 1) reference that every sampled variable is given."""
        transform = self.noise_transform()
        sigma = transform(u)
        return (self.noise_prior.log_prob(sigma) + transform.log_abs_det_jacobian(u, sigma)
                + 0.5 * (u**2 + rp.LOG_2PI))

    # -- densities -----------------------------------------------------------------
    def features(self, z) -> jax.Array:
        """``Psi: (n, p)`` at the hidden weights of ``z``."""
        return self.arch.features({"hidden": z["hidden"]}, self.x)

    def log_likelihood(self, z) -> jax.Array:
        """:math:`\\ell(z)`: the log likelihood without the prior and without constants."""
        return self.evaluate(z)[0]

    def evaluate(self, z) -> tuple[jax.Array, "Evaluation"]:
        """``(l(z), evaluation)``: :meth:`log_likelihood` and what its computation leaves behind
        (:class:`Evaluation`), which a kernel carries with its accepted point so that a recorded
        draw recomputes neither the features nor the factorisation (:meth:`readout_factorisation`)."""
        psi = self.features(z)
        sigma = self.noise_std if self.noise_prior is None else self.noise_transform()(z[NOISE_KEY]).astype(psi.dtype)
        chol = None
        if self.parameterisation == "standard":
            residual = self.y - psi @ readout_matrix(z)
            fit = -0.5 * jnp.sum(residual**2) / jnp.asarray(sigma, psi.dtype) ** 2
        elif self.jitter:  # the jittered factor is not the readout posterior's: the draw factorises its own
            fit = rp.log_marginal_likelihood_unnormalised(psi, self.y, sigma, self.form, self.jitter)
        else:
            fit, chol = rp.log_marginal_likelihood_and_cholesky(psi, self.y, sigma, self.form)
        if self.noise_prior is not None:  # the sigma-dependent constant kept, and the prior of u
            fit = fit - self.y.size * jnp.log(sigma) + self.noise_log_prior(z[NOISE_KEY]).astype(psi.dtype)
        return fit, Evaluation(psi, chol)

    def logdensity(self, z) -> jax.Array:
        """:math:`\\ell(z) - \\tfrac12|z|^2`: the log posterior up to an additive constant."""
        return self.log_likelihood(z) - 0.5 * squared_norm(z)

    def log_likelihood_constant(self) -> jax.Array:
        """:math:`c_\\ell = -\\tfrac{nk}{2}\\log(2\\pi\\sigma^2)`, dropped from :meth:`log_likelihood`
        (with an inferred noise :math:`-\\tfrac{nk}{2}\\log 2\\pi`: the rest depends on :math:`\\sigma`)."""
        if self.noise_prior is not None:
            return jnp.asarray(-0.5 * self.y.size * rp.LOG_2PI, self.x.dtype)
        return rp.gaussian_log_constant(self.y.size, self.noise_std)

    def log_density_constant(self) -> jax.Array:
        """:math:`c_\\ell + c_{\\mathrm{prior}}`: what :meth:`logdensity` leaves out of the log joint."""
        return self.log_likelihood_constant() - 0.5 * self.num_dims * rp.LOG_2PI

    def log_density(self, z) -> jax.Array:
        """The log joint :math:`\\log p(z, Y)`, every normalising constant included (for reporting)."""
        return self.logdensity(z) + self.log_density_constant()

    # -- back to the network ----------------------------------------------------------
    def readout_factorisation(self, z, evaluation: "Evaluation | None" = None):
        """The readout posterior given the hidden weights of ``z``: the one factorisation of a recorded draw.

        :func:`reprior.core.repriorise.readout_factorisation` (a Cholesky factor in the dual form)
        serves :meth:`to_params`, :meth:`predictive` and its own ``log_marginal_likelihood``
        (pass it to each).  ``evaluation`` (:meth:`evaluate` at the same ``z``, as a kernel carries
        it) supplies the features and, when it holds one, the factor, so nothing is recomputed.
        With an inferred noise, at the draw's :math:`\\sigma` (:meth:`noise_std_at`).
        """
        psi = self.features(z) if evaluation is None else evaluation.features
        chol = None if evaluation is None else evaluation.chol
        return rp.readout_factorisation(psi, self.y, self.noise_std_at(z), self.form, chol)

    @property
    def readout_root(self) -> str:
        """The root of :meth:`readout_factorisation`: ``"cholesky"`` (the dual form's push-through
        Cholesky root) or ``"symmetric"`` (:math:`G^{-1/2}`, primal form)."""
        num_features = self.param_shapes()["readout"]["W"].shape[0] + 1  # the bias row
        return rp.readout_root(self.x.shape[0], num_features, self.form)

    def readout_posterior(self, z, psi=None) -> rp.ReadoutPosterior:
        """The readout posterior given the hidden weights of ``z`` in spectral form (an eigendecomposition,
        the symmetric root :math:`G^{-1/2}`); :meth:`readout_factorisation` is what a draw uses."""
        psi = self.features(z) if psi is None else psi
        return rp.readout_posterior(psi, self.y, self.noise_std_at(z), self.form)

    def to_params(self, z, rng_key, psi=None, posterior=None):
        """``(theta, phi)`` at a sampled point; ``phi`` is ``None`` for the standard parameterisation.

        When collapsed, ``phi_out`` is an exact draw from N(0, I) with ``rng_key``
        and :math:`\\theta_{\\mathrm{out}} = \\mu + \\sigma R\\,\\phi_{\\mathrm{out}}`
        (:func:`reprior.core.repriorise.to_theta_out`, the root of :meth:`readout_factorisation`).
        ``psi`` and ``posterior`` (:meth:`readout_factorisation`) may be passed when already computed.
        """
        if self.parameterisation == "standard":
            return (z, None) if self.noise_prior is None else ({"hidden": z["hidden"], "readout": z["readout"]}, None)
        if posterior is None:
            posterior = self.readout_factorisation(z, None if psi is None else Evaluation(psi, None))
        if self.collapsed:
            phi_out = jax.random.normal(rng_key, (posterior.num_features, self.out_dim), posterior.psi.dtype)
        else:
            phi_out = readout_matrix(z)
        hidden_only = {"hidden": z["hidden"], "readout": {"W": None, "b": None}}
        return with_readout(hidden_only, rp.to_theta_out(posterior, phi_out)), with_readout(hidden_only, phi_out)

    def predictive(self, z, x_test, psi=None, posterior=None):
        """Rao-Blackwellised predictive of ``f`` at ``x_test`` given the hidden weights of ``z``.

        Returns ``mean: (m, k)`` and ``var: (m,)`` (:func:`reprior.core.repriorise.predictive`;
        from ``posterior``, :meth:`readout_factorisation`, when given).
        """
        psi_test = self.arch.features({"hidden": z["hidden"]}, x_test)
        if posterior is not None:
            return posterior.predictive(psi_test)
        psi = self.features(z) if psi is None else psi
        return rp.predictive(psi, self.y, psi_test, self.noise_std_at(z), self.form)

    def flat(self, z) -> jax.Array:
        """``z`` as one flat vector (pytree order)."""
        return ravel_pytree(z)[0]


class Evaluation(NamedTuple):
    """What :meth:`Target.evaluate` computed on the way to :math:`\\ell(z)`.

    Fields:
        features: ``Psi: (n, p)`` at the hidden weights of ``z``.
        chol: the lower Cholesky factor of :math:`I_n + \\Psi\\Psi^\\top/\\sigma^2` (repriorised,
            dual form, no jitter: :func:`reprior.core.repriorise.log_marginal_likelihood_and_cholesky`),
            else ``None``.
    """

    features: jax.Array
    chol: jax.Array | None


def build_target(bnn, x, y, *, parameterisation: str = "reprior", readout: str = "exact", form: str = "auto",
                 jitter: float = 0.0) -> Target:
    """The :class:`Target` of ``bnn`` (a :class:`reprior.BNN`) on data ``(x, y)``, after validation.

    ``y`` may be ``(n,)`` or ``(n, k)``; arrays keep their dtype (convert them
    before calling to choose float32 or float64).
    """
    _checks.one_of("parameterisation", parameterisation, PARAMETERISATIONS)
    _checks.one_of("readout", readout, READOUTS)
    _checks.one_of("form", form, rp.FORMS)
    _checks.nonnegative_float("jitter", jitter)
    x, y = bnn.check_data(x, y)
    if bnn.noise_prior is not None:
        return Target(bnn.arch, None, jnp.asarray(x), jnp.asarray(y), parameterisation, readout, form,
                      float(jitter), bnn.noise_prior)
    return Target(bnn.arch, bnn.noise_std, jnp.asarray(x), jnp.asarray(y), parameterisation, readout, form,
                  float(jitter))
