"""Repriorisation of the readout: every repriorised quantity, in one place.

Notation (Hron et al. 2022, section 3).  Features ``psi: (n, p)``, targets
``y: (n, k)``, noise standard deviation :math:`\\sigma`.  Given the hidden
weights, the readout posterior is Gaussian,

.. math::

    \\theta_{\\mathrm{out}} \\mid \\theta_{\\mathrm{hidden}}, Y
        \\sim \\mathcal N\\big(\\mu, \\sigma^2 G^{-1}\\big), \\qquad
    G = \\Psi^\\top \\Psi + \\sigma^2 I_p, \\qquad \\mu = G^{-1} \\Psi^\\top Y.

Repriorisation is the change of variables
:math:`\\theta_{\\mathrm{out}} = \\mu + \\sigma R\\, \\phi_{\\mathrm{out}}` with
:math:`R R^\\top = G^{-1}`; the hidden weights are unchanged.  Every root gives the
same density in :math:`\\phi`.  We take the root from the factorisation the density
evaluation holds (:func:`readout_factorisation`): in the dual form (``n <= p``) the
push-through Cholesky root of :class:`CholeskyReadout`, from the ``n x n`` factor of
:math:`I + \\Psi\\Psi^\\top/\\sigma^2`; in the primal form the symmetric root
:math:`G^{-1/2}` of :class:`ReadoutPosterior`, from the ``p x p`` eigendecomposition.
Both are equivariant under permutations of the hidden units (the paper's Cholesky
root of :math:`G` depends on their order), and neither forms a ``p x p`` matrix when
``p > n``.  The symmetric root stays available in both forms (:func:`readout_posterior`).
Its log-Jacobian is

.. math::

    \\log |\\det \\partial\\theta/\\partial\\phi|
        = k \\big(p \\log \\sigma - \\tfrac12 \\log\\det G\\big).

**The identity that makes it cheap.**  Writing
:math:`K = \\Psi\\Psi^\\top` (the empirical NNGP kernel),

.. math::

    \\log p(\\phi, Y) = \\log \\mathcal N(\\phi_{\\mathrm{out}}; 0, I)
        + \\log \\mathcal N(\\phi_{\\mathrm{hidden}}; 0, I)
        + \\sum_{j=1}^k \\log \\mathcal N(Y_{:j}; 0, K + \\sigma^2 I_n),

because :math:`p(\\theta_{\\mathrm{out}}, Y \\mid \\mathrm{hidden}) = p(Y \\mid
\\mathrm{hidden})\\, p(\\theta_{\\mathrm{out}} \\mid Y, \\mathrm{hidden})` and the
second factor becomes exactly :math:`\\mathcal N(0, I)` in :math:`\\phi`.  The
marginal likelihood has a *dual* form (Cholesky of the ``n x n`` matrix
:math:`K + \\sigma^2 I`) and a *primal* form (Cholesky of the ``p x p`` matrix
:math:`G`, via Woodbury and the matrix determinant lemma):

.. math::

    Y^\\top (K + \\sigma^2 I)^{-1} Y = \\sigma^{-2}\\big(Y^\\top Y
        - Y^\\top \\Psi G^{-1} \\Psi^\\top Y\\big), \\qquad
    \\log\\det(K + \\sigma^2 I) = (n - p)\\log\\sigma^2 + \\log\\det G.

``form="auto"`` takes the dual form when ``n <= p`` and the primal otherwise.
Only the marginal likelihood is differentiated; the transform, exact readout
draws and predictions are needed only when a draw is recorded, and there one
factorisation (:func:`readout_factorisation`, in the dual form the very Cholesky
factor of the density evaluation, :func:`log_marginal_likelihood_and_cholesky`)
serves them all: the readout draw, ``log_marginal_likelihood`` and ``predictive``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve, solve_triangular

from reprior.core.pytrees import squared_norm

FORMS = ("auto", "primal", "dual")
#: :math:`\\log 2\\pi`, the constant of every Gaussian log density (the one definition; import it).
LOG_2PI = math.log(2 * math.pi)


def use_dual(num_data: int, num_features: int, form: str = "auto") -> bool:
    """Whether ``form`` resolves to the dual (``n x n``) computation."""
    if form == "auto":
        return num_data <= num_features
    if form not in ("primal", "dual"):
        raise ValueError(f"argument `form`: expected one of {FORMS}, received {form!r}")
    return form == "dual"


def _eye(size: int, dtype) -> jax.Array:
    return jnp.eye(size, dtype=dtype)


def log_marginal_likelihood(psi, y, noise_std, form: str = "auto") -> jax.Array:
    """:math:`\\sum_j \\log \\mathcal N(Y_{:j}; 0, \\Psi\\Psi^\\top + \\sigma^2 I_n)`, constants included.

    Args:
        psi: features ``(n, p)``.
        y: targets ``(n, k)``.
        noise_std: :math:`\\sigma > 0`.
        form: ``"dual"`` (``n x n`` Cholesky), ``"primal"`` (``p x p``) or ``"auto"``.

    This is :func:`log_marginal_likelihood_unnormalised` plus
    :func:`gaussian_log_constant`.  A failed factorisation (not positive
    definite in finite precision) gives NaN, which samplers count as ``nonfinite``.
    """
    n, k = y.shape
    return log_marginal_likelihood_unnormalised(psi, y, noise_std, form) + gaussian_log_constant(n * k, noise_std)


def gaussian_log_constant(size: int, noise_std) -> jax.Array:
    """:math:`-\\tfrac{N}{2}\\log(2\\pi\\sigma^2)`: the constant of ``N`` Gaussian observations of std :math:`\\sigma`."""
    noise_std = jnp.asarray(noise_std)
    return -0.5 * size * (LOG_2PI + 2 * jnp.log(noise_std))


def log_marginal_likelihood_unnormalised(psi, y, noise_std, form: str = "auto", jitter: float = 0.0) -> jax.Array:
    """The marginal log likelihood without its constant, computed without cancellation.

    With :math:`A = \\Psi/\\sigma` (whitened features),

    .. math::

        \\ell(\\Psi) = -\\tfrac12\\Big[\\sigma^{-2}\\,\\mathrm{tr}\\big(Y^\\top (I_n + A A^\\top)^{-1} Y\\big)
            + k \\log\\det(I_n + A A^\\top)\\Big]
          = \\sum_j \\log \\mathcal N(Y_{:j}; 0, \\Psi\\Psi^\\top + \\sigma^2 I_n)
            + \\tfrac{nk}{2}\\log(2\\pi\\sigma^2).

    Both determinants are of matrices ``I + ...`` (every Cholesky diagonal entry is at
    least 1, so no large terms of opposite sign cancel), and Sylvester's identity
    :math:`\\det(I_n + AA^\\top) = \\det(I_p + A^\\top A)` makes the dual (``n x n``) and
    primal (``p x p``) forms equal with no form-dependent constant.  The primal quadratic
    form is written as a sum of squares,

    .. math::

        Y^\\top(K + \\sigma^2 I)^{-1}Y = \\sigma^{-2}\\big(|Y - \\Psi\\mu|^2 + \\sigma^2|\\mu|^2\\big),
        \\qquad \\mu = G^{-1}\\Psi^\\top Y,

    instead of the difference :math:`\\sigma^{-2}(|Y|^2 - |\\beta|^2)`, which cancels
    when the features explain the targets and :math:`\\sigma` is small.

    ``jitter > 0`` (opt-in) adds :math:`c = \\mathrm{jitter}\\cdot\\mathrm{mean}(\\mathrm{diag}\\,K)`
    to the diagonal of :math:`K + \\sigma^2 I`, i.e. uses the noise variance
    :math:`\\sigma^2 + c`; the value stays relative to the constant of :math:`\\sigma`
    (a term :math:`-\\tfrac{nk}{2}\\log(1 + c/\\sigma^2)` is added), so it is the
    log likelihood of the jittered model.  The default 0 is exact.
    """
    n = psi.shape[0]
    k = y.shape[1]
    noise_var = jnp.asarray(noise_std, psi.dtype) ** 2
    extra = 0.0
    if jitter:
        mean_diag = jnp.sum(psi**2) / n
        effective_var = noise_var + jitter * mean_diag
        extra = -0.5 * n * k * jnp.log(effective_var / noise_var)
        noise_var = effective_var
    value, _ = _whitened_log_marginal_likelihood(psi, y, noise_var, form)
    return value + extra


def log_marginal_likelihood_and_cholesky(psi, y, noise_std, form: str = "auto"):
    """:func:`log_marginal_likelihood_unnormalised` (no jitter) and the factor it was computed with.

    Returns ``(value, chol)``: ``chol`` is the lower Cholesky factor :math:`L` of
    :math:`I_n + AA^\top` (``A = psi / sigma``) in the dual form, the factor that
    :func:`readout_factorisation` takes so that a recorded draw factorises nothing
    again; ``None`` in the primal form.
    """
    value, chol = _whitened_log_marginal_likelihood(psi, y, jnp.asarray(noise_std, psi.dtype) ** 2, form)
    return value, chol if use_dual(*psi.shape, form) else None


def _dual_cholesky(a) -> jax.Array:
    """The lower Cholesky factor :math:`L` of :math:`I_n + AA^\\top` for whitened features ``a: (n, p)``."""
    return jnp.linalg.cholesky(_eye(a.shape[0], a.dtype) + a @ a.T)


def _whitened_log_marginal_likelihood(psi, y, noise_var, form):
    """``(value, chol)`` of the whitened computation documented in :func:`log_marginal_likelihood_unnormalised`."""
    n, p = psi.shape
    k = y.shape[1]
    scale = jnp.sqrt(noise_var)
    a = psi / scale
    if use_dual(n, p, form):
        chol = _dual_cholesky(a)
        quad = jnp.sum(solve_triangular(chol, y, lower=True) ** 2) / noise_var
    else:
        chol = jnp.linalg.cholesky(_eye(p, psi.dtype) + a.T @ a)
        # mu = G^-1 Psi^T Y = (I + A^T A)^-1 A^T Y / sigma
        mu = cho_solve((chol, True), a.T @ y) / scale
        quad = (jnp.sum((y - psi @ mu) ** 2) + noise_var * jnp.sum(mu**2)) / noise_var
    logdet = 2 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return -0.5 * (quad + k * logdet), chol


def log_standard_normal(tree) -> jax.Array:
    """:math:`\\sum \\log \\mathcal N(z; 0, 1)` over every leaf of a pytree."""
    size = sum(leaf.size for leaf in jax.tree_util.tree_leaves(tree))
    return -0.5 * (squared_norm(tree) + size * LOG_2PI)


def gaussian_log_likelihood(f, y, noise_std) -> jax.Array:
    """:math:`\\sum_{ij} \\log \\mathcal N(Y_{ij}; f_{ij}, \\sigma^2)`."""
    noise_var = jnp.asarray(noise_std, f.dtype) ** 2
    return -0.5 * (jnp.sum((y - f) ** 2) / noise_var + y.size * (jnp.log(noise_var) + LOG_2PI))


class ReadoutPosterior(NamedTuple):
    """Spectral form of the readout posterior, enough for :math:`G^{a}` and :math:`\\mu`.

    Dual (``n <= p``): ``basis`` holds the eigenvectors ``Q: (n, n)`` of
    :math:`K = \\Psi\\Psi^\\top = Q\\,\\mathrm{diag}(s)\\,Q^\\top` and

    .. math::

        G^{a} v = \\sigma^{2a} v + \\Psi^\\top Q\\, \\mathrm{diag}\\Big(
            \\frac{(s + \\sigma^2)^a - \\sigma^{2a}}{s}\\Big) Q^\\top \\Psi v,

    which is exact because :math:`G` acts as :math:`\\sigma^2` on the null space
    of :math:`\\Psi` and as :math:`s_i + \\sigma^2` on the span of
    :math:`\\Psi^\\top Q`.  Primal (``p < n``): ``basis`` holds the eigenvectors
    of :math:`\\Psi^\\top\\Psi` and :math:`G^a = Q\\,\\mathrm{diag}((s+\\sigma^2)^a)Q^\\top`.
    """

    psi: jax.Array  # (n, p)
    basis: jax.Array  # (n, n) dual or (p, p) primal
    eigenvalues: jax.Array  # (n,) or (p,), clipped at 0
    noise_std: jax.Array  # ()
    mean: jax.Array  # mu: (p, k)
    dual: bool

    @property
    def num_features(self) -> int:
        return self.psi.shape[1]

    def log_det_gram(self) -> jax.Array:
        """:math:`\\log\\det G`."""
        noise_var = self.noise_std**2
        extra = (self.num_features - self.eigenvalues.shape[0]) * jnp.log(noise_var)
        return jnp.sum(jnp.log(self.eigenvalues + noise_var)) + extra

    def log_marginal_likelihood(self, y) -> jax.Array:
        """:func:`log_marginal_likelihood` of ``y: (n, k)`` from this factorisation (no second one).

        With :math:`s_i` the eigenvalues (of :math:`K`, dual, or of :math:`\\Psi^\\top\\Psi`,
        primal) and :math:`\\log\\det(K + \\sigma^2 I_n) = n\\log\\sigma^2 + \\sum_i \\log(1 + s_i/\\sigma^2)`
        (Sylvester), in the whitened form of :func:`log_marginal_likelihood_unnormalised`
        (``log1p`` of :math:`s_i/\\sigma^2`: no large logarithms of opposite sign):

        .. math::

            \\ell = -\\tfrac12\\Big[Y^\\top (K + \\sigma^2 I)^{-1} Y + k \\sum_i \\log(1 + s_i/\\sigma^2)\\Big]
                - \\tfrac{nk}{2}\\log(2\\pi\\sigma^2),

        the quadratic form being :math:`\\sum_{ij} (Q^\\top Y)_{ij}^2 / (s_i + \\sigma^2)` (dual) or the
        sum of squares :math:`\\sigma^{-2}(|Y - \\Psi\\mu|^2 + \\sigma^2|\\mu|^2)` (primal): positive terms only.
        """
        n, k = y.shape
        noise_var = self.noise_std**2
        if self.dual:
            quad = jnp.sum((self.basis.T @ y) ** 2 / (self.eigenvalues + noise_var)[:, None])
        else:
            quad = (jnp.sum((y - self.psi @ self.mean) ** 2) + noise_var * jnp.sum(self.mean**2)) / noise_var
        logdet = jnp.sum(jnp.log1p(self.eigenvalues / noise_var))
        return -0.5 * (quad + k * logdet) + gaussian_log_constant(n * k, self.noise_std)

    def predictive(self, psi_test) -> tuple[jax.Array, jax.Array]:
        """:func:`predictive` at test features ``psi_test: (m, p)`` from this factorisation.

        Mean :math:`\\Psi_*\\mu` (push-through: equal to :math:`K_*^\\top (K + \\sigma^2 I)^{-1} Y`);
        variance, dual, :math:`|\\psi_*|^2 - \\sum_i (Q^\\top \\Psi\\psi_*)_i^2 / (s_i + \\sigma^2)`,
        primal, :math:`\\sigma^2 \\sum_i (Q^\\top\\psi_*)_i^2 / (s_i + \\sigma^2)`.
        Returns ``mean: (m, k)`` and ``var: (m,)``.
        """
        noise_var = self.noise_std**2
        scale = 1 / jnp.sqrt(self.eigenvalues + noise_var)
        if self.dual:
            w = scale[:, None] * (self.basis.T @ (self.psi @ psi_test.T))  # (n, m)
            var = jnp.sum(psi_test**2, axis=1) - jnp.sum(w**2, axis=0)
        else:
            w = scale[:, None] * (self.basis.T @ psi_test.T)  # (p, m)
            var = noise_var * jnp.sum(w**2, axis=0)
        return psi_test @ self.mean, jnp.clip(var, 0.0)

    def theta_out(self, phi_out) -> jax.Array:
        """:math:`\\mu + \\sigma G^{-1/2}\\phi_{\\mathrm{out}}`: the symmetric root."""
        return self.mean + self.noise_std * self.power(phi_out, -1)

    def phi_out(self, theta_out) -> jax.Array:
        """:math:`G^{1/2}(\\theta_{\\mathrm{out}} - \\mu)/\\sigma`, the inverse of :meth:`theta_out`."""
        return self.power(theta_out - self.mean, 1) / self.noise_std

    def power(self, v: jax.Array, half_power: int) -> jax.Array:
        """:math:`G^{a} v` for ``a = half_power / 2`` in ``{-1/2, +1/2}``; ``v: (p, k)``."""
        s, sigma = self.eigenvalues, self.noise_std
        root = jnp.sqrt(s + sigma**2)
        if not self.dual:
            scale = root if half_power == 1 else 1 / root
            return self.basis @ (scale[:, None] * (self.basis.T @ v))
        # ((s + sigma^2)^a - sigma^{2a}) / s, written without cancellation.
        if half_power == 1:
            ratio = 1 / (root + sigma)
        else:
            ratio = -1 / (sigma * root * (sigma + root))
        projected = self.basis.T @ (self.psi @ v)
        return sigma**half_power * v + self.psi.T @ (self.basis @ (ratio[:, None] * projected))


def readout_posterior(psi, y, noise_std, form: str = "auto") -> ReadoutPosterior:
    """Eigendecompose the smaller Gram matrix and compute :math:`\\mu = G^{-1}\\Psi^\\top Y`.

    In the dual form :math:`\\mu = \\Psi^\\top (K + \\sigma^2 I)^{-1} Y` (push-through).
    """
    n, p = psi.shape
    sigma = jnp.asarray(noise_std, psi.dtype)
    dual = use_dual(n, p, form)
    gram = psi @ psi.T if dual else psi.T @ psi
    eigenvalues, basis = jnp.linalg.eigh(gram)
    eigenvalues = jnp.clip(eigenvalues, 0.0)
    inv = 1 / (eigenvalues + sigma**2)
    if dual:
        mean = psi.T @ (basis @ (inv[:, None] * (basis.T @ y)))
    else:
        mean = basis @ (inv[:, None] * (basis.T @ (psi.T @ y)))
    return ReadoutPosterior(psi, basis, eigenvalues, sigma, mean, dual)


class CholeskyReadout(NamedTuple):
    """The readout posterior of the dual form (``n <= p``) from one Cholesky factor.

    With :math:`A = \\Psi/\\sigma` and :math:`L L^\\top = I_n + A A^\\top` (the factor the
    density evaluation computes, :func:`log_marginal_likelihood_and_cholesky`), so that
    :math:`K + \\sigma^2 I = \\sigma^2 L L^\\top` and
    :math:`\\sigma^2 G^{-1} = (I_p + A^\\top A)^{-1} = I_p - A^\\top (L L^\\top)^{-1} A`, and with
    :math:`w = L^{-1} Y / \\sigma` (``white_y``, ``(n, k)``):

    * mean :math:`\\mu = A^\\top L^{-\\top} w` (push-through);
    * the root :math:`\\sigma R = I_p - A^\\top L^{-\\top} (L + I_n)^{-1} A`, which satisfies
      :math:`(\\sigma R)(\\sigma R)^\\top = (I_p + A^\\top A)^{-1}` exactly: expanding the product
      and using :math:`AA^\\top = LL^\\top - I`, the middle terms reduce to
      :math:`A^\\top (LL^\\top)^{-1} A` because
      :math:`L(L + I)^\\top + (L + I)L^\\top - (LL^\\top - I) = (L + I)(L + I)^\\top`.
      It does not depend on the order of the hidden units (permuting them permutes the rows of
      :math:`\\sigma R` and its columns alike).  Its inverse is
      :math:`(\\sigma R)^{-1} = (\\sigma R)^\\top (I_p + A^\\top A)`.
    * :math:`\\log\\det G = p\\log\\sigma^2 + 2\\sum_i \\log L_{ii}` (Sylvester).

    A draw reads the features twice: :math:`\\theta_{\\mathrm{out}} = \\mu + \\sigma R\\phi_{\\mathrm{out}}
    = \\phi_{\\mathrm{out}} + A^\\top L^{-\\top}\\big(w - (L + I)^{-1} A\\phi_{\\mathrm{out}}\\big)` is one product
    with :math:`\\Psi` and one with :math:`\\Psi^\\top`, and :math:`\\mu` itself (``p x k``) is never
    formed for it; the predictive takes its mean from the same product as its variance.  No
    ``p x p`` matrix is ever formed, and every factor is of a matrix :math:`I + \\dots` (Cholesky
    diagonal at least 1): the whitened forms of :func:`log_marginal_likelihood_unnormalised`,
    safe in float32.
    """

    psi: jax.Array  # (n, p)
    chol: jax.Array  # (n, n) lower factor of I + A A^T
    noise_std: jax.Array  # ()
    white_y: jax.Array  # w = L^-1 Y / sigma: (n, k)

    dual = True

    @property
    def num_features(self) -> int:
        return self.psi.shape[1]

    @property
    def mean(self) -> jax.Array:
        """:math:`\\mu = A^\\top L^{-\\top} w`, ``(p, k)``."""
        return self.psi.T @ solve_triangular(self.chol, self.white_y, lower=True, trans="T") / self.noise_std

    def log_det_gram(self) -> jax.Array:
        """:math:`\\log\\det G`."""
        return (self.num_features * jnp.log(self.noise_std**2)
                + 2 * jnp.sum(jnp.log(jnp.diagonal(self.chol))))

    def log_marginal_likelihood(self, y) -> jax.Array:
        """:func:`log_marginal_likelihood` of ``y: (n, k)`` from this factor:
        :math:`-\\tfrac12[\\sigma^{-2}|L^{-1}Y|^2 + 2k\\sum_i\\log L_{ii}] - \\tfrac{nk}{2}\\log(2\\pi\\sigma^2)`."""
        n, k = y.shape
        quad = jnp.sum(solve_triangular(self.chol, y, lower=True) ** 2) / self.noise_std**2
        logdet = 2 * jnp.sum(jnp.log(jnp.diagonal(self.chol)))
        return -0.5 * (quad + k * logdet) + gaussian_log_constant(n * k, self.noise_std)

    def predictive(self, psi_test) -> tuple[jax.Array, jax.Array]:
        """Mean :math:`\\Psi_*\\mu = V^\\top w` and variance :math:`|\\psi_*|^2 - |V|^2` per test point, with
        :math:`V = L^{-1} A \\Psi_*^\\top` (:func:`predictive`: :math:`K_*^\\top (K + \\sigma^2 I)^{-1} K_* = V^\\top V`)."""
        v = solve_triangular(self.chol, self.psi @ psi_test.T / self.noise_std, lower=True)  # (n, m)
        var = jnp.sum(psi_test**2, axis=1) - jnp.sum(v**2, axis=0)
        return v.T @ self.white_y, jnp.clip(var, 0.0)

    def theta_out(self, phi_out) -> jax.Array:
        """:math:`\\mu + \\sigma R\\,\\phi_{\\mathrm{out}}` with the root of the class docstring."""
        chol, sigma = self.chol, self.noise_std
        shifted = chol + _eye(chol.shape[0], chol.dtype)
        projected = self.psi @ phi_out / sigma  # A phi_out: (n, k)
        inner = solve_triangular(chol, self.white_y - solve_triangular(shifted, projected, lower=True),
                                 lower=True, trans="T")
        return phi_out + self.psi.T @ inner / sigma

    def phi_out(self, theta_out) -> jax.Array:
        """:math:`(\\sigma R)^{-1}(\\theta_{\\mathrm{out}} - \\mu) = (\\sigma R)^\\top (d + A^\\top A d)`, the inverse of :meth:`theta_out`."""
        chol, sigma, psi = self.chol, self.noise_std, self.psi
        d = theta_out - self.mean
        x = d + psi.T @ (psi @ d) / sigma**2
        shifted = chol + _eye(chol.shape[0], chol.dtype)
        inner = solve_triangular(shifted, solve_triangular(chol, psi @ x / sigma, lower=True), lower=True, trans="T")
        return x - psi.T @ inner / sigma


def readout_factorisation(psi, y, noise_std, form: str = "auto", chol=None):
    """The readout posterior that the coordinate maps, the exact readout draw, the predictive and
    the recorded marginal likelihood use: one factorisation per set of hidden weights.

    Dual form (``n <= p``, the wide networks): :class:`CholeskyReadout`, from ``chol`` when
    given (the factor of :func:`log_marginal_likelihood_and_cholesky` at the same ``psi`` and
    ``noise_std``), else one Cholesky factorisation.  Primal form (``p < n``):
    :func:`readout_posterior` (the ``p x p`` eigendecomposition, the symmetric root).
    """
    n, p = psi.shape
    if not use_dual(n, p, form):
        return readout_posterior(psi, y, noise_std, form)
    sigma = jnp.asarray(noise_std, psi.dtype)
    if chol is None:
        chol = _dual_cholesky(psi / sigma)
    return CholeskyReadout(psi, chol, sigma, solve_triangular(chol, y, lower=True) / sigma)


def readout_root(num_data: int, num_features: int, form: str = "auto") -> str:
    """The root :func:`readout_factorisation` pairs ``phi_out`` with ``theta_out`` by: ``"cholesky"``
    (:class:`CholeskyReadout`, dual form) or ``"symmetric"`` (:math:`G^{-1/2}`, primal form)."""
    return "cholesky" if use_dual(num_data, num_features, form) else "symmetric"


def to_theta_out(posterior, phi_out) -> jax.Array:
    """:math:`\\theta_{\\mathrm{out}} = \\mu + \\sigma R\\,\\phi_{\\mathrm{out}}`, shapes ``(p, k)``: the root of
    ``posterior`` (:class:`CholeskyReadout`, or the symmetric :math:`G^{-1/2}` of :class:`ReadoutPosterior`)."""
    return posterior.theta_out(phi_out)


def to_phi_out(posterior, theta_out) -> jax.Array:
    """:math:`\\phi_{\\mathrm{out}} = (\\sigma R)^{-1} (\\theta_{\\mathrm{out}} - \\mu)`, inverse of :func:`to_theta_out`."""
    return posterior.phi_out(theta_out)


def log_abs_det_jacobian(posterior, out_dim: int) -> jax.Array:
    """:math:`k\\,(p \\log\\sigma - \\tfrac12 \\log\\det G)` for the map :math:`\\phi \\mapsto \\theta`."""
    p = posterior.num_features
    return out_dim * (p * jnp.log(posterior.noise_std) - 0.5 * posterior.log_det_gram())


def predictive(psi, y, psi_test, noise_std, form: str = "auto"):
    """Rao-Blackwellised predictive of the latent ``f`` at test inputs, given hidden weights.

    .. math::

        \\mathbb E[f_*] = K_*^\\top (K + \\sigma^2 I)^{-1} Y, \\qquad
        \\mathrm{Var}[f_*] = \\mathrm{diag}\\big(K_{**} - K_*^\\top (K + \\sigma^2 I)^{-1} K_*\\big),

    with :math:`K_* = \\Psi \\Psi_*^\\top`.  Primal form: mean :math:`\\Psi_*\\mu`,
    variance :math:`\\sigma^2\\,\\mathrm{diag}(\\Psi_* G^{-1} \\Psi_*^\\top)`.

    Returns ``mean: (m, k)`` and ``var: (m,)`` (the same for every output).
    """
    n, p = psi.shape
    noise_var = jnp.asarray(noise_std, psi.dtype) ** 2
    if use_dual(n, p, form):
        chol = jnp.linalg.cholesky(psi @ psi.T + noise_var * _eye(n, psi.dtype))
        cross = psi @ psi_test.T  # K_*: (n, m)
        a = solve_triangular(chol, cross, lower=True)
        alpha = solve_triangular(chol, y, lower=True)
        mean = a.T @ alpha
        var = jnp.sum(psi_test**2, axis=1) - jnp.sum(a**2, axis=0)
    else:
        chol = jnp.linalg.cholesky(psi.T @ psi + noise_var * _eye(p, psi.dtype))
        b = solve_triangular(chol, psi_test.T, lower=True)
        beta = solve_triangular(chol, psi.T @ y, lower=True)
        mean = b.T @ beta
        var = noise_var * jnp.sum(b**2, axis=0)
    return mean, jnp.clip(var, 0.0)
