"""The scalar series of a result's groups, and the largest R-hat over them.

A result of :func:`reprior.sample` (``InferenceData`` on ArviZ 0.2x, ``DataTree`` on 1.x) carries
high-dimensional draws; their mixing is judged on scalar *groups* (Hron et al. 2022, section 5):
fixed unit-norm random projections of theta, of phi, of the test predictions ``f_test`` and of the
Rao-Blackwellised predictive mean, and ``f_test`` at a few test points.  :func:`group_series` takes
them out as ``(chain, draw, k)`` arrays; :func:`rhat_max` is what the failed-chain rule
(:mod:`reprior.inference.health`) reads.  The ESS figures built on the same series are in
:mod:`reprior.evaluation.diagnostics`.
"""

from __future__ import annotations

import numpy as np

from reprior.core.projections import projection_matrix
from reprior.inference import arviz_compat as _arviz
from reprior.inference.health import finite_reduce as _reduce

#: Groups of scalars whose mixing is measured, in report order.
GROUPS = ("theta", "phi", "pred", "rb", "points")

def variable(idata, group: str, name: str):
    """``idata.group[name]`` as a NumPy array, or None if the group or variable is absent."""
    if not hasattr(idata, group):
        return None
    dataset = getattr(idata, group)
    if name not in dataset:
        return None
    return np.asarray(dataset[name].values)


def _flat(values: np.ndarray) -> np.ndarray:
    """``(chain, draw, ...)`` -> ``(chain, draw, k)``."""
    return values.reshape(values.shape[0], values.shape[1], -1)


def group_series(idata, *, num_pred_points: int = 5, num_pred_projections: int = 10,
                 projection_seed: int = 0) -> dict[str, np.ndarray | None]:
    """The scalar series of each group in :data:`GROUPS`: ``(chain, draw, k)`` arrays, None if absent.

    ``pred`` projects each draw's flattened ``f_test`` (``m * out_dim`` numbers) on
    ``num_pred_projections`` unit-norm random directions,
    :func:`reprior.core.projections.projection_matrix` ``(m * out_dim, num, projection_seed)``;
    ``rb`` does the same with the Rao-Blackwellised predictive mean ``f_test_rb_mean``,
    which depends on the hidden weights only (``f_test`` also carries the readout's
    exact i.i.d. draw, which makes its ESS per draw saturate near 1 when the hidden
    weights mix slowly).
    """
    theta = variable(idata, "posterior", "theta_proj")
    phi = variable(idata, "posterior", "phi_proj")
    f_test = variable(idata, "posterior_predictive", "f_test")
    rb_mean = variable(idata, "posterior_predictive", "f_test_rb_mean")
    series = {
        "theta": None if theta is None or theta.shape[-1] == 0 else _flat(theta),
        "phi": None if phi is None or phi.shape[-1] == 0 else _flat(phi),
        "pred": None,
        "rb": None,
        "points": None,
    }
    if rb_mean is not None and rb_mean.size and num_pred_projections > 0:
        flat = _flat(rb_mean)
        series["rb"] = flat @ projection_matrix(flat.shape[-1], num_pred_projections, projection_seed)
    if f_test is not None and f_test.size:
        flat = _flat(f_test)
        if num_pred_projections > 0:
            series["pred"] = flat @ projection_matrix(flat.shape[-1], num_pred_projections, projection_seed)
        if num_pred_points > 0:
            series["points"] = _flat(f_test[:, :, :num_pred_points])
    return series



def arviz_stat(fn, values: np.ndarray, **kwargs) -> np.ndarray:
    """Apply ``az.ess``/``az.rhat``/``az.mcse`` (by the function or its name) to a ``(chain, draw, k)``
    array; returns ``(k,)``.  Tail ESS is at :data:`reprior.inference.arviz_compat.TAIL_PROB` on every ArviZ."""
    name = fn if isinstance(fn, str) else fn.__name__
    compat = {"ess": _arviz.ess, "rhat": _arviz.rhat, "mcse": _arviz.mcse}[name]
    return compat(values, **kwargs).reshape(-1)


def rhat_max(idata) -> float:
    """The largest R-hat over the groups of :data:`GROUPS`, as :func:`cell_metrics` gives ``rhat_max``,
    without their ESS; NaN with one chain or when no R-hat is defined."""
    return _reduce(np.max, [_reduce(np.max, arviz_stat("rhat", series)) for series in group_series(idata).values()
                            if series is not None and series.shape[0] > 1])
