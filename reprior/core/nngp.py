"""Infinite-width limits: the NNGP kernel and the NNGP posterior predictive.

As the width of every hidden layer grows, the prior over functions of a network
in NTK parameterisation with i.i.d. N(0, 1) weights tends to a Gaussian process,
the *neural network Gaussian process* (NNGP): Neal (1996) for one hidden layer,
Lee et al. (2018) and Matthews et al. (2018) for deep networks.  Its kernel is
the limit of the empirical kernel of :mod:`reprior.core.architectures`,

.. math::

    K_{\\mathrm{emp}}(x, x') = \\Psi(x)\\,\\Psi(x')^\\top
        = \\frac{\\sigma_{w,\\mathrm{out}}^2}{d_L}\\, h_L(x)^\\top h_L(x')
          + \\sigma_{b,\\mathrm{out}}^2
    \\;\\xrightarrow{\\;d \\to \\infty\\;}\\; K_\\infty(x, x').

For an :class:`~reprior.core.architectures.MLP` with ``depth = L`` hidden layers the
limit is computed by the layer recursion (Lee et al. 2018, eq. 4) on the
covariance of the pre-activations :math:`z_l`,

.. math::

    \\Sigma^{1}(x, x') = \\sigma_w^2\\, \\frac{x^\\top x'}{d_0} + \\sigma_b^2,
    \\qquad
    \\Sigma^{l+1}(x, x') = \\sigma_w^2\\, \\mathbb E\\big[\\phi(u)\\phi(v)\\big]
        + \\sigma_b^2, \\quad
    (u, v) \\sim \\mathcal N\\left(0, \\begin{bmatrix}
        \\Sigma^l(x, x) & \\Sigma^l(x, x') \\\\
        \\Sigma^l(x, x') & \\Sigma^l(x', x') \\end{bmatrix}\\right),

    K_\\infty(x, x') = \\sigma_{w,\\mathrm{out}}^2\\,
        \\mathbb E_{\\Sigma^L}\\big[\\phi(u)\\phi(v)\\big] + \\sigma_{b,\\mathrm{out}}^2.

For a :class:`~reprior.core.architectures.ResNet` the same recursion runs on
covariance tensors over pairs of pixels (Novak et al. 2019; Garriga-Alonso et
al. 2019), see :func:`reprior.core.architectures.resnet.nngp_kernel_parts`.
Each architecture registers its recursion with its
:class:`~reprior.core.architectures.registry.ArchitectureSpec`; this module supplies
the dual activation and the validation.

The Gaussian expectation :math:`\\mathbb E[\\phi(u)\\phi(v)]` (the "dual
activation") has closed forms for ReLU (the arc-cosine kernel of Cho & Saul
2009) and erf (the arcsine kernel of Williams 1997); for GELU and tanh it is
computed by a 2-D quadrature rule (see :func:`activation_expectation`), which
also runs for ReLU and erf so that it can be checked against the closed forms.

Everything here is pure JAX: dtypes follow the inputs (float64 under x64
mode), and the functions can be jitted with ``arch`` (a hashable frozen
dataclass) static, e.g. ``jax.jit(nngp_kernel, static_argnums=0)``.  Argument
checks look only at shapes, so they also run on tracers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_factor, cho_solve

from reprior._util import checks as _checks
from reprior.core.architectures import ACTIVATIONS, Architecture
from reprior.core.architectures.registry import architecture_names, get_architecture, spec_of

METHODS = ("auto", "closed_form", "quadrature")
CLOSED_FORMS = ("relu", "erf")
#: Default quadrature rule: Gauss-Legendre nodes per angular arc, radial nodes.
#: 4 * 24 * 64 = 6144 evaluations of phi(u) phi(v) per kernel entry; the error
#: is below 1e-7 (absolute, float64) for variances up to 50, see docs/nngp.md.
QUADRATURE_NODES = (24, 64)
#: Radial truncation of the standard normal in polar coordinates: the mass and
#: the second moment beyond r = 10 are below 1e-20.
_RADIUS = 10.0
#: Upper bound on the number of (kernel entry, node) pairs evaluated at once.
_MAX_BATCH_ELEMENTS = 2**22


# -- the dual activations ------------------------------------------------------------
def _correlation(k11, k22, k12):
    """:math:`\\rho = k_{12} / \\sqrt{k_{11} k_{22}}`, clipped to [-1, 1]; 0 where a variance is 0."""
    denom = jnp.sqrt(k11 * k22)
    positive = denom > 0
    rho = k12 / jnp.where(positive, denom, 1)
    return jnp.clip(jnp.where(positive, rho, 0), -1, 1)


def _relu_expectation(k11, k22, k12):
    """Arc-cosine kernel of degree 1 (Cho & Saul 2009, eq. 6).

    .. math::

        \\mathbb E[\\max(u, 0) \\max(v, 0)] = \\frac{\\sqrt{k_{11} k_{22}}}{2\\pi}
            \\big(\\sin\\theta + (\\pi - \\theta) \\cos\\theta\\big),
        \\qquad \\theta = \\arccos\\rho.
    """
    rho = _correlation(k11, k22, k12)
    theta = jnp.arccos(rho)
    sin_theta = jnp.sqrt(jnp.clip(1 - rho**2, 0))
    return jnp.sqrt(k11 * k22) / (2 * math.pi) * (sin_theta + (math.pi - theta) * rho)


def _erf_expectation(k11, k22, k12):
    """Arcsine kernel (Williams 1997, eq. 11, without the input augmentation).

    .. math::

        \\mathbb E[\\mathrm{erf}(u)\\, \\mathrm{erf}(v)] = \\frac{2}{\\pi}
            \\arcsin\\frac{2 k_{12}}{\\sqrt{(1 + 2 k_{11})(1 + 2 k_{22})}}.
    """
    arg = 2 * k12 / jnp.sqrt((1 + 2 * k11) * (1 + 2 * k22))
    return (2 / math.pi) * jnp.arcsin(jnp.clip(arg, -1, 1))


_CLOSED_FORM_FNS = {"relu": _relu_expectation, "erf": _erf_expectation}


@functools.lru_cache(maxsize=16)
def _reference_nodes(num_angle: int, num_radial: int):
    """Gauss-Legendre nodes on [-1, 1] (angles) and radial nodes/weights on [0, R]."""
    t_nodes, t_weights = np.polynomial.legendre.leggauss(num_angle)
    x, w = np.polynomial.legendre.leggauss(num_radial)
    r = _RADIUS * (x + 1) / 2
    # The radial density of a standard 2-D normal is r exp(-r^2 / 2) dr dt / (2 pi).
    r_weights = w * (_RADIUS / 2) * r * np.exp(-(r**2) / 2) / (2 * math.pi)
    return t_nodes, t_weights, r, r_weights


def _quadrature_one(phi, nodes, k11, k22, k12):
    """:math:`\\mathbb E[\\phi(u)\\phi(v)]` for one covariance (scalars), polar quadrature.

    With :math:`z = r(\\cos t, \\sin t)` standard normal and
    :math:`\\cos\\alpha = \\rho`, :math:`u = \\sqrt{k_{11}}\\, r \\cos t` and
    :math:`v = \\sqrt{k_{22}}\\, r \\cos(t - \\alpha)`.  The angles where
    :math:`u` or :math:`v` change sign split the circle into four arcs, each
    integrated by Gauss-Legendre; the radius by Gauss-Legendre on ``[0, R]``.
    """
    t_nodes, t_weights, r, r_weights = nodes
    alpha = jnp.arccos(_correlation(k11, k22, k12))
    half_pi = math.pi / 2
    start = jnp.stack([-half_pi, alpha - half_pi, half_pi, alpha + half_pi])  # (4,)
    length = jnp.stack([alpha, math.pi - alpha, alpha, math.pi - alpha])  # (4,), sums to 2 pi
    t = start[:, None] + length[:, None] * (t_nodes + 1) / 2  # (4, num_angle)
    t_w = length[:, None] * t_weights / 2  # (4, num_angle)
    u = jnp.sqrt(k11) * jnp.cos(t)[..., None] * r  # (4, num_angle, num_radial)
    v = jnp.sqrt(k22) * jnp.cos(t - alpha)[..., None] * r
    return jnp.sum(t_w[..., None] * r_weights * phi(u) * phi(v))


def _quadrature_expectation(phi, k11, k22, k12, quadrature_nodes, max_batch_elements=_MAX_BATCH_ELEMENTS):
    """Broadcast ``k11, k22, k12`` and apply :func:`_quadrature_one` entrywise, in batches
    of at most ``max_batch_elements`` (entry, node) pairs."""
    shape = jnp.broadcast_shapes(jnp.shape(k11), jnp.shape(k22), jnp.shape(k12))
    dtype = jnp.result_type(k11, k22, k12)
    nodes = tuple(jnp.asarray(a, dtype) for a in _reference_nodes(*quadrature_nodes))
    flat = [jnp.broadcast_to(k, shape).reshape(-1) for k in (k11, k22, k12)]
    one = functools.partial(_quadrature_one, phi, nodes)
    num_entries = flat[0].shape[0]
    batch_size = max(1, max_batch_elements // (4 * quadrature_nodes[0] * quadrature_nodes[1]))
    if num_entries <= batch_size:
        out = jax.vmap(one)(*flat)
    else:  # bound the memory: (batch_size, 4, num_angle, num_radial) at a time
        out = jax.lax.map(lambda ks: one(*ks), tuple(flat), batch_size=batch_size)
    return out.reshape(shape)


def activation_expectation(activation: str, k11, k22, k12, *, method: str = "auto",
                           quadrature_nodes: tuple[int, int] = QUADRATURE_NODES) -> jax.Array:
    """Dual activation :math:`\\mathbb E[\\phi(u)\\phi(v)]` of a bivariate normal.

    .. math::

        (u, v) \\sim \\mathcal N\\left(0, \\begin{bmatrix} k_{11} & k_{12} \\\\
            k_{12} & k_{22} \\end{bmatrix}\\right).

    ``method="closed_form"`` uses the arc-cosine kernel for ReLU (Cho & Saul
    2009) and the arcsine kernel for erf (Williams 1997); ``"quadrature"`` uses
    a polar product rule for every activation; ``"auto"`` takes the closed form
    where there is one.  The correlation is clipped to [-1, 1].

    **Quadrature.**  Writing a standard normal :math:`z = r (\\cos t, \\sin t)`,
    :math:`u = \\sqrt{k_{11}}\\, r\\cos t`, :math:`v = \\sqrt{k_{22}}\\, r\\cos(t -
    \\alpha)` with :math:`\\alpha = \\arccos\\rho`.  The four angles where ``u``
    or ``v`` changes sign cut the circle into arcs on which the integrand is
    smooth even for activations with a kink at 0 (ReLU), so Gauss-Legendre on
    each arc (``quadrature_nodes[0]`` nodes) and on the radius ``[0, 10]``
    (``quadrature_nodes[1]`` nodes, weight :math:`r e^{-r^2/2}`) converge
    geometrically.  A plain 2-D Gauss-Hermite rule converges only like
    :math:`1/N` for ReLU and needs over 120 nodes per axis for tanh at variance
    10 (see ``docs/nngp.md``).

    Args:
        activation: one of ``reprior.core.architectures.ACTIVATIONS``.
        k11, k22, k12: broadcastable arrays of variances and covariance.
        method: ``"auto"``, ``"closed_form"`` or ``"quadrature"``.
        quadrature_nodes: ``(nodes per arc, radial nodes)``.

    Returns:
        The broadcast shape of ``k11, k22, k12``.
    """
    _checks.one_of("activation", activation, tuple(ACTIVATIONS))
    method = _check_method(activation, method)
    quadrature_nodes = _check_nodes(quadrature_nodes)
    return _expectation_jit(activation, k11, k22, k12, method, quadrature_nodes)


def _expectation(activation, k11, k22, k12, method, quadrature_nodes):
    if method == "closed_form":
        return _CLOSED_FORM_FNS[activation](k11, k22, k12)
    return _quadrature_expectation(ACTIVATIONS[activation], k11, k22, k12, quadrature_nodes)


_expectation_jit = jax.jit(_expectation, static_argnums=(0, 4, 5))


# -- kernels -----------------------------------------------------------------------------
def nngp_kernel(arch: Architecture, x1, x2=None, *, method: str = "auto",
                quadrature_nodes: tuple[int, int] = QUADRATURE_NODES) -> jax.Array:
    """Infinite-width limit of ``arch.features(params, x1) @ arch.features(params, x2).T``.

    .. math::

        K_\\infty(x, x') = \\lim_{d \\to \\infty}
            \\mathbb E_{\\theta}\\big[\\Psi(x)\\,\\Psi(x')^\\top\\big]
            = \\sigma_{w,\\mathrm{out}}^2\\, \\mathbb E_{\\Sigma^L}[\\phi(u)\\phi(v)]
              + \\sigma_{b,\\mathrm{out}}^2,

    with the recursion for :math:`\\Sigma^l` of the module docstring (Neal
    1996; Lee et al. 2018; Matthews et al. 2018).  The empirical kernel
    converges to it almost surely, with fluctuations of order
    :math:`d^{-1/2}`.

    Args:
        arch: a :class:`~reprior.core.architectures.MLP`, a
            :class:`~reprior.core.architectures.ResNet` or any architecture
            registered with an NNGP recursion (others raise
            ``NotImplementedError``).  Its ``width`` is irrelevant.
        x1: inputs ``(n1, in_dim)`` (MLP) or ``(n1, H, W, C)`` (ResNet).
        x2: inputs shaped like ``x1``, ``(n2, ...)``; ``None`` means ``x1``
            (the result is then symmetrised exactly).
        method: how to compute the dual activation, see
            :func:`activation_expectation`.
        quadrature_nodes: ``(nodes per arc, radial nodes)`` of the quadrature.

    Returns:
        ``K: (n1, n2)``, in the floating dtype of the inputs.

    Cost: ``O(n1 n2 depth)`` dual-activation evaluations for an MLP, and
    ``O(n1 n2 (H W)^2 depth)`` for a ResNet (the covariance of every pair of
    pixels); the quadrature multiplies these by 6144 by default.
    """
    _check_arch(arch)
    method = _check_method(arch.activation, method)
    quadrature_nodes = _check_nodes(quadrature_nodes)
    x1, x2 = _check_pair(arch, x1, x2)
    if x2 is None:
        cross = _kernel_parts(arch, x1, x1, method, quadrature_nodes)[2]
        return (cross + cross.T) / 2
    return _kernel_parts(arch, x1, x2, method, quadrature_nodes)[2]


def _kernel_parts(arch, x1, x2, method, quadrature_nodes):
    """``(diag K(x1, x1): (n1,), diag K(x2, x2): (n2,), K(x1, x2): (n1, n2))`` for any supported ``arch``.

    The limit does not depend on the width, so the architecture passed to the
    jitted core has ``width=1`` (where it has a width): a sweep over widths
    compiles once.
    """
    return _registered_kernel_parts(_unit_width(arch), x1, x2, method, quadrature_nodes)


def _unit_width(arch):
    """``arch`` with ``width=1`` if it has a ``width`` field (the limit does not depend on it)."""
    if "width" in {f.name for f in dataclasses.fields(arch)}:
        return dataclasses.replace(arch, width=1)
    return arch


# The private core is jitted with its static arguments declared (as in
# jax.scipy.linalg), so a call compiles once per architecture and shape instead
# of once per primitive; it nests inside a caller's jit.
@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _registered_kernel_parts(arch: Architecture, x1, x2, method: str, quadrature_nodes: tuple[int, int]):
    """The recursion that ``arch``'s module registered (:mod:`reprior.core.architectures.registry`), with the
    dual activation of ``arch.activation`` computed by ``method`` (no validation)."""
    expect = functools.partial(_expectation, arch.activation, method=method, quadrature_nodes=quadrature_nodes)
    return spec_of(arch).nngp_kernel_parts(arch, x1, x2, expect)


def has_closed_form_kernel(arch) -> bool:
    """Whether :func:`nngp_kernel` computes ``arch``'s limit: its architecture is registered with an
    NNGP recursion (:class:`~reprior.core.architectures.registry.ArchitectureSpec` ``nngp_kernel_parts``).
    Otherwise :func:`monte_carlo_nngp_kernel` estimates it."""
    spec = spec_of(arch)
    return isinstance(arch, Architecture) and spec is not None and spec.nngp_kernel_parts is not None


class MonteCarloKernel(NamedTuple):
    """Result of :func:`monte_carlo_nngp_kernel`; unpacks as ``kernel, stderr = ...``.

    ``kernel: (n1, n2)`` is the mean of :math:`\\Psi(x_1)\\Psi(x_2)^\\top` over the prior
    draws, ``stderr: (n1, n2)`` its Monte Carlo standard error per entry.
    """

    kernel: jax.Array
    stderr: jax.Array


def monte_carlo_nngp_kernel(arch: Architecture, x1, x2=None, *, rng_key, num_draws: int = 256,
                            batch_size: int = 16) -> MonteCarloKernel:
    """Monte Carlo estimate of the NNGP kernel of any architecture, with its standard error.

    The NNGP kernel is the prior mean of the empirical kernel (see :func:`nngp_kernel`),

    .. math::

        K_d(x, x') = \\mathbb E_{\\theta_{\\mathrm{hidden}} \\sim \\mathcal N(0, I)}
            \\big[\\Psi(x)\\,\\Psi(x')^\\top\\big],
        \\qquad
        \\Psi = \\big[\\sigma_{w,\\mathrm{out}}\\, h(x) / \\sqrt{d},\\; \\sigma_{b,\\mathrm{out}}\\big],

    the readout scales and the bias column included, exactly the matrix whose limit
    :func:`nngp_kernel` computes.  From ``S = num_draws`` i.i.d. prior draws
    :math:`\\theta^{(s)}` of ``arch.init`` and :math:`K^{(s)} = \\Psi^{(s)}(x_1)\\Psi^{(s)}(x_2)^\\top`,

    .. math::

        \\hat K = \\frac1S \\sum_s K^{(s)}, \\qquad
        \\widehat{\\mathrm{se}} = \\Big(\\frac{1}{S(S - 1)} \\sum_s \\big(K^{(s)} - \\hat K\\big)^2\\Big)^{1/2}
        \\quad\\text{(entrywise)},

    unbiased for :math:`K_d` with the usual i.i.d. standard error (the draws are
    independent, so the ESS is ``S``); the per-batch moments are combined by Chan,
    Golub & LeVeque's (1979) pairwise update, so no cancellation.  The standard error
    falls as :math:`(S d)^{-1/2}`: :math:`K^{(s)}` averages ``d`` units of the last layer.

    **Which width.**  The estimate is of the prior mean at the width of ``arch`` (pass
    ``dataclasses.replace(arch, width=...)``, or an architecture built at the width you
    want).  With one nonlinear layer below the readout (a depth-1 MLP), the last
    pre-activations are exactly Gaussian at every width, so :math:`K_d = K_\\infty`
    exactly; deeper, the pre-activations are Gaussian only conditionally on the layer
    below and :math:`K_d = K_\\infty + O(1/d)` (Yaida 2020; Hanin 2023), a bias
    smaller than a single draw's fluctuation :math:`O(d^{-1/2})` by a factor
    :math:`d^{-1/2}`: use the widest width at hand.

    Cost: ``S`` forward passes of ``arch`` on ``n1 + n2`` inputs and ``S`` products
    ``(n1, p) @ (p, n2)``; memory ``batch_size`` draws of features ``(n1 + n2, p)`` (and
    the activations of one forward pass each) plus two ``(n1, n2)`` accumulators.

    Args:
        arch: any :class:`~reprior.core.architectures.Architecture` (hashable: it is static
            under ``jit``).
        x1: inputs ``(n1, ...)`` of ``arch``.
        x2: inputs ``(n2, ...)`` shaped like ``x1``; None means ``x1`` (the estimate
            and its standard error are then symmetrised exactly).
        rng_key: a JAX PRNG key (split into one key per draw).
        num_draws: ``S >= 2`` prior draws.
        batch_size: draws evaluated at once (vectorised), at most ``num_draws``.

    Returns:
        :class:`MonteCarloKernel` ``(kernel, stderr)``, both ``(n1, n2)`` in the
        floating dtype of the inputs.

    See Also:
        :func:`nngp_kernel` (the closed form, where one is registered),
        :func:`has_closed_form_kernel`.
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"argument `arch`: expected a reprior architecture, received {arch!r}")
    num_draws = _checks.positive_int("num_draws", num_draws)
    if num_draws < 2:
        raise _checks.fail("num_draws", "at least 2 draws (for a standard error)", num_draws)
    batch_size = min(_checks.positive_int("batch_size", batch_size), num_draws)
    x1, x2_or_none = _check_pair(arch, x1, x2)
    symmetric = x2_or_none is None
    x2 = x1 if symmetric else x2_or_none
    kernel, stderr = _monte_carlo_kernel(arch, x1, x2, rng_key, num_draws, batch_size)
    if symmetric:
        kernel, stderr = (kernel + kernel.T) / 2, (stderr + stderr.T) / 2
    return MonteCarloKernel(kernel, stderr)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _monte_carlo_kernel(arch: Architecture, x1, x2, rng_key, num_draws: int, batch_size: int):
    """Streaming mean and standard error of ``Psi(x1) Psi(x2)^T`` over ``num_draws`` prior draws,
    ``batch_size`` at a time (the last batch masked), moments merged pairwise (no validation)."""
    num_batches = -(-num_draws // batch_size)
    keys = jax.random.split(rng_key, num_batches * batch_size)
    keys = keys.reshape((num_batches, batch_size) + keys.shape[1:])  # raw or typed keys
    x_both = jnp.concatenate([x1, x2])
    n1, dtype = x1.shape[0], x1.dtype

    def one_kernel(key):
        psi = arch.features({"hidden": arch.init(key, x_both, 1)["hidden"]}, x_both).astype(dtype)
        return psi[:n1] @ psi[n1:].T

    def step(carry, batch):
        count, mean, m2 = carry
        index, batch_keys = batch
        mask = (index * batch_size + jnp.arange(batch_size) < num_draws).astype(dtype)  # (B,)
        kernels = jax.vmap(one_kernel)(batch_keys)  # (B, n1, n2)
        b_count = jnp.sum(mask)
        b_mean = jnp.tensordot(mask, kernels, axes=1) / b_count
        b_m2 = jnp.tensordot(mask, (kernels - b_mean) ** 2, axes=1)
        total = count + b_count
        delta = b_mean - mean
        mean = mean + delta * (b_count / total)
        m2 = m2 + b_m2 + delta**2 * (count * b_count / total)
        return (total, mean, m2), None

    zeros = jnp.zeros((n1, x2.shape[0]), dtype)
    (count, mean, m2), _ = jax.lax.scan(step, (jnp.zeros((), dtype), zeros, zeros),
                                        (jnp.arange(num_batches), keys))
    return mean, jnp.sqrt(m2 / (count - 1) / count)


# -- posterior -----------------------------------------------------------------------
def nngp_posterior(arch: Architecture, x_train, y_train, x_test, noise_std, *, method: str = "auto",
                   quadrature_nodes: tuple[int, int] = QUADRATURE_NODES):
    """NNGP posterior predictive of the latent ``f`` at ``x_test`` (Lee et al. 2018, eq. 2).

    .. math::

        \\mathbb E[f_*] = K_*^\\top (K + \\sigma^2 I)^{-1} Y, \\qquad
        \\mathrm{Var}[f_*] = \\mathrm{diag}\\big(K_{**} - K_*^\\top (K + \\sigma^2 I)^{-1} K_*\\big),

    with :math:`K = K_\\infty(X, X)`, :math:`K_* = K_\\infty(X, X_*)` and
    :math:`K_{**} = K_\\infty(X_*, X_*)`, through a Cholesky factorisation of
    :math:`K + \\sigma^2 I`.  It is the infinite-width limit of the
    Rao-Blackwellised predictive :func:`reprior.core.repriorise.predictive`.

    Args:
        arch: a :class:`~reprior.core.architectures.MLP` or
            :class:`~reprior.core.architectures.ResNet`.
        x_train: ``(n, in_dim)`` or ``(n, H, W, C)``.
        y_train: ``(n,)`` or ``(n, k)``; a vector counts as ``k = 1``.
        x_test: ``(m, ...)``, shaped like ``x_train``.
        noise_std: :math:`\\sigma > 0`.
        method, quadrature_nodes: as in :func:`nngp_kernel`.

    Returns:
        ``mean: (m, k)`` and ``var: (m,)`` (the same for every output; clipped
        at 0 against round-off).
    """
    _check_arch(arch)
    method = _check_method(arch.activation, method)
    quadrature_nodes = _check_nodes(quadrature_nodes)
    x_train, x_test = _check_pair(arch, x_train, x_test, names=("x_train", "x_test"))
    y_train = _check_targets(y_train, x_train)
    _check_noise(noise_std)
    arch = _unit_width(arch)  # as in _kernel_parts: one compilation for all widths
    return _posterior(arch, x_train, y_train, x_test, noise_std, method, quadrature_nodes)


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _posterior(arch: Architecture, x_train, y_train, x_test, noise_std, method: str,
               quadrature_nodes: tuple[int, int]):
    """The linear algebra of :func:`nngp_posterior` (no validation)."""
    n = x_train.shape[0]
    # One pass over [x_train; x_test] gives K, K_* and the diagonal of K_**.
    _, diag, cross = _kernel_parts(arch, x_train, jnp.concatenate([x_train, x_test]), method, quadrature_nodes)
    k_train = (cross[:, :n] + cross[:, :n].T) / 2  # (n, n)
    k_cross = cross[:, n:]  # (n, m)
    k_test = diag[n:]  # (m,)
    dtype = k_train.dtype
    noise_var = jnp.asarray(noise_std, dtype) ** 2
    factor = cho_factor(k_train + noise_var * jnp.eye(k_train.shape[0], dtype=dtype), lower=True)
    mean = k_cross.T @ cho_solve(factor, jnp.asarray(y_train, dtype))
    var = k_test - jnp.sum(k_cross * cho_solve(factor, k_cross), axis=0)
    return mean, jnp.clip(var, 0)


# -- diagnostics -----------------------------------------------------------------------
def kernel_distance(K_emp, K_inf) -> float:
    """Relative Frobenius distance of an empirical kernel from its limit.

    .. math::

        \\frac{\\lVert K_{\\mathrm{emp}} - K_\\infty \\rVert_F}{\\lVert K_\\infty \\rVert_F},

    of order :math:`d^{-1/2}` for width ``d`` (the empirical kernel is an
    average over ``d`` i.i.d. units in the last layer).  Computed in float64
    with NumPy, so call it outside ``jit``.

    Args:
        K_emp, K_inf: ``(n1, n2)`` arrays of the same shape.
    """
    K_emp = _checks.finite_array("K_emp", K_emp, ndim=2).astype(np.float64)
    K_inf = _checks.finite_array("K_inf", K_inf, ndim=2).astype(np.float64)
    if K_emp.shape != K_inf.shape:
        raise _checks.fail("K_inf", f"an array of the shape of `K_emp` {K_emp.shape}", f"shape {K_inf.shape}")
    norm = np.linalg.norm(K_inf)
    if norm == 0:
        raise _checks.fail("K_inf", "a kernel matrix with a non-zero entry", "all zeros")
    return float(np.linalg.norm(K_emp - K_inf) / norm)


# -- argument checks (shapes only, so they also run under jit) -----------------------
def _check_arch(arch) -> None:
    if not isinstance(arch, Architecture):
        raise TypeError(f"argument `arch`: expected a reprior architecture such as reprior.core.architectures.MLP, "
                        f"received {arch!r}")
    spec = spec_of(arch)
    if spec is None or spec.nngp_kernel_parts is None:
        with_limit = [name for name in architecture_names() if get_architecture(name).nngp_kernel_parts is not None]
        raise NotImplementedError(
            f"The NNGP kernel is implemented for the registered architectures {', '.join(with_limit)} only "
            f"(an ArchitectureSpec with nngp_kernel_parts); received {type(arch).__name__}.")


def _check_method(activation: str, method: str) -> str:
    method = _checks.one_of("method", method, METHODS)
    if method == "auto":
        return "closed_form" if activation in CLOSED_FORMS else "quadrature"
    if method == "closed_form" and activation not in CLOSED_FORMS:
        raise _checks.fail("method", f"'auto' or 'quadrature' (closed forms exist only for {CLOSED_FORMS}) "
                           f"with activation {activation!r}", method)
    return method


def _check_nodes(quadrature_nodes) -> tuple[int, int]:
    if not isinstance(quadrature_nodes, tuple | list) or len(quadrature_nodes) != 2:
        raise _checks.fail("quadrature_nodes", "a pair (nodes per arc, radial nodes)", quadrature_nodes)
    return tuple(_checks.positive_int("quadrature_nodes", q) for q in quadrature_nodes)


def _as_float(x) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _check_input(arch: Architecture, x, name: str) -> None:
    arch.check_inputs(x, name)
    if _checks.is_concrete(x):
        _checks.finite_array(name, x)


def _check_pair(arch: Architecture, x1, x2, names=("x1", "x2")):
    """Shapes (and, when concrete, finiteness) of two input arrays; returns them
    as floating arrays of one dtype (``x2`` may be None)."""
    _check_input(arch, x1, names[0])
    x1 = _as_float(x1)
    if x2 is None:
        return x1, None
    _check_input(arch, x2, names[1])
    if tuple(np.shape(x2)[1:]) != x1.shape[1:]:
        raise _checks.fail(names[1], f"inputs of shape (n, {', '.join(map(str, x1.shape[1:]))}) to match "
                           f"`{names[0]}`", f"array of shape {np.shape(x2)}")
    x2 = _as_float(x2)
    dtype = jnp.result_type(x1, x2)
    return x1.astype(dtype), x2.astype(dtype)


def _check_targets(y, x):
    shape = np.shape(y)
    if len(shape) not in (1, 2):
        raise _checks.fail("y_train", "targets of shape (n,) or (n, k)", f"array of shape {shape}")
    if shape[0] != x.shape[0]:
        raise _checks.fail("y_train", f"{x.shape[0]} rows to match `x_train`", f"array of shape {shape}")
    if _checks.is_concrete(y):
        _checks.finite_array("y_train", y)
    y = _as_float(y)
    return y[:, None] if y.ndim == 1 else y


def _check_noise(noise_std) -> None:
    if not _checks.is_concrete(noise_std):
        return
    if np.ndim(noise_std) != 0:
        raise _checks.fail("noise_std", "a positive finite number", noise_std)
    value = np.asarray(noise_std).item()
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise _checks.fail("noise_std", "a positive finite number", noise_std)
    _checks.positive_float("noise_std", value)
