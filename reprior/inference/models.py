"""The BNN posteriors as NumPyro programs, so any NumPyro inference runs on them.

Site names come from the parameter pytree paths: ``hidden_0_W``,
``hidden_0_b``, ..., ``readout_W``, ``readout_b``.  In repriorised
coordinates the readout sites are ``readout_W_reprior`` and
``readout_b_reprior`` (``phi_out``), and ``readout_W``/``readout_b`` become
deterministic sites (``theta_out``).  The names and the maps between a pytree and
``{site: array}`` (``site_name``, ``flatten_params``, ``unflatten_params``) live in
:mod:`reprior.core.pytrees` and are importable from here too.

The repriorised model is written through the exact factorisation of
:mod:`reprior.core.repriorise`:

.. math::

    \\phi_{\\mathrm{hidden}} \\sim \\mathcal N(0, I), \\quad
    Y_{:j} \\mid \\phi_{\\mathrm{hidden}} \\sim \\mathcal N(0, K + \\sigma^2 I_n), \\quad
    \\phi_{\\mathrm{out}} \\sim \\mathcal N(0, I),

whose joint density over :math:`(\\phi, Y)` is the repriorised density, with
:math:`\\theta_{\\mathrm{out}} = \\mu + \\sigma R\\,\\phi_{\\mathrm{out}}` (the root of
:func:`reprior.core.repriorise.readout_factorisation`) a
deterministic function of it.  With ``readout="exact"`` the ``phi_out`` sites are
left out (collapsed model).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from reprior._util import checks as _checks
from reprior.core import repriorise as rp
from reprior.core.architectures import readout_matrix, split_readout
from reprior.core.bnn import BNN
from reprior.core.pytrees import flatten_params, site_name, unflatten_params  # noqa: F401 (re-exported)
from reprior.core.target import PARAMETERISATIONS, READOUTS, Target


class FeatureMarginal(dist.Distribution):
    """Columns of ``Y: (n, k)`` i.i.d. :math:`\\mathcal N(0, \\Psi\\Psi^\\top + \\sigma^2 I_n)`.

    ``log_prob`` uses the cheaper of the primal and dual forms
    (:func:`reprior.core.repriorise.log_marginal_likelihood`).
    """

    arg_constraints = {"noise_std": constraints.positive}
    support = constraints.real_matrix

    def __init__(self, psi, noise_std, out_dim: int, validate_args=None):
        self.psi, self.noise_std = psi, noise_std
        super().__init__(batch_shape=(), event_shape=(psi.shape[0], out_dim), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        n, k = self.event_shape
        cov = self.psi @ self.psi.T + self.noise_std**2 * jnp.eye(n, dtype=self.psi.dtype)
        eps = jax.random.normal(key, sample_shape + (n, k), self.psi.dtype)
        return jnp.linalg.cholesky(cov) @ eps

    def log_prob(self, value):
        return rp.log_marginal_likelihood(self.psi, value, self.noise_std)


def _standard_normal_site(name: str, shape):
    return numpyro.sample(name, dist.Normal(0.0, 1.0).expand(shape).to_event(len(shape)))


def bnn_model(bnn: BNN, x, y=None, *, out_dim: int | None = None,
              parameterisation: str = "standard", readout: str = "sampled"):
    """NumPyro model of ``bnn`` on inputs ``x`` and targets ``y: (n, k)`` (or ``None``).

    Args:
        bnn: the :class:`~reprior.core.bnn.BNN`.
        x: inputs.
        y: observed targets, or ``None`` to draw them (then ``out_dim`` is needed).
        out_dim: number of outputs when ``y`` is ``None``.
        parameterisation: ``"standard"`` or ``"reprior"``.
        readout: for ``"reprior"``, ``"sampled"`` (phi_out is a latent site) or
            ``"exact"`` (phi_out integrated out).
    """
    _checks.one_of("parameterisation", parameterisation, PARAMETERISATIONS)
    _checks.one_of("readout", readout, READOUTS)
    x, y = bnn.check_data(x, y)
    if y is None and out_dim is None:
        raise _checks.fail("out_dim", "the number of outputs when `y` is None", None)
    k = y.shape[1] if y is not None else _checks.positive_int("out_dim", out_dim)
    shapes = bnn.param_shapes(jnp.shape(x), k)
    hidden_sites = flatten_params({"hidden": shapes["hidden"]})
    hidden = unflatten_params(
        {name: _standard_normal_site(name, s.shape) for name, s in hidden_sites.items()},
        {"hidden": shapes["hidden"]},
    )["hidden"]
    psi = bnn.arch.features({"hidden": hidden}, x)
    # an inferred noise is the site "noise_std" with its prior (NumPyro samples it unconstrained)
    sigma = bnn.noise_std if bnn.noise_prior is None else numpyro.sample("noise_std", bnn.noise_prior)
    if parameterisation == "standard":
        theta_out = readout_matrix({"readout": {
            "W": _standard_normal_site("readout_W", shapes["readout"]["W"].shape),
            "b": _standard_normal_site("readout_b", shapes["readout"]["b"].shape),
        }})
        f = psi @ theta_out
        numpyro.sample("y", dist.Normal(f, sigma).to_event(2), obs=y)
        return f
    y = numpyro.sample("y", FeatureMarginal(psi, sigma, k), obs=y)
    if readout == "exact":
        return None
    phi_out = readout_matrix({"readout": {
        "W": _standard_normal_site("readout_W_reprior", shapes["readout"]["W"].shape),
        "b": _standard_normal_site("readout_b_reprior", shapes["readout"]["b"].shape),
    }})
    phi = {"hidden": hidden, "readout": split_readout(phi_out)}
    theta, _ = Target(bnn.arch, sigma, x, y, parameterisation, readout).to_params(phi, None, psi)
    theta_out = readout_matrix(theta)
    for key, value in split_readout(theta_out).items():
        numpyro.deterministic(f"readout_{key}", value)
    return psi @ theta_out
