"""``reprior.from_chains``: draws a user made in their own loop, as the result of :func:`reprior.sample`.

Given draws of theta (standard coordinates) or of phi (repriorised; all of it, or
the hidden weights alone, whose readout is then drawn exactly as
``reprior.sample(readout="exact")`` draws it), every recorded quantity of a draw
is computed by the per-draw function of :func:`reprior.sample` itself
(:func:`reprior.inference.sampling.make_record_fn`): parameters, projections,
``log_marginal_likelihood``, the pointwise log likelihood, the predictive draws
of ``y`` and the test predictions.  The result has the same groups, variables,
dims and attrs, so :func:`reprior.evaluation.diagnostics.cell_metrics`, the reports and the
ArviZ workflow (``az.loo``, ``az.plot_ppc``, ...) read it as they read a run of
:func:`reprior.sample`.  The map between the coordinates is
:math:`\\theta_{\\mathrm{out}} = \\mu + \\sigma R\\,\\phi_{\\mathrm{out}}`
(:func:`reprior.core.repriorise.to_theta_out`) and its inverse.

Keys: a draw's key is the one :func:`reprior.sample` with the same ``seed`` gives
the same chain and draw, so the draws of ``reprior.sample``'s own chains come
back with the same exact readout draws and predictive draws of ``y``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from reprior._util import checks as _checks
from reprior.core import repriorise as rp
from reprior.core.architectures import readout_matrix, with_readout
from reprior.core.bnn import BNN, describe_arch
from reprior.core.pytrees import unflatten_params
from reprior.core.target import build_target

__all__ = ["from_chains", "draw_keys"]


def draw_keys(seed: int, num_chains: int):
    """The per-chain keys of :func:`reprior.sample`'s recorded draws, ``(num_chains,)`` typed keys;
    draw ``i`` of chain ``c`` uses ``jax.random.fold_in(keys[c], i)``.

    ``sample`` splits ``key(seed)`` into the initial points' key and the run's key, and the
    chain loop (:func:`reprior.inference.driver.run_chains`) the run's key into the kernels' initial
    keys and these.
    """
    _, run_key = jax.random.split(jax.random.key(seed))
    _, collect_key = jax.random.split(run_key)
    return jax.random.split(collect_key, num_chains)


def _as_tree(draws, name: str, template):
    """``draws`` in the layout of ``template`` (a pytree, or a ``{site name: array}`` dict)."""
    if not isinstance(draws, dict):
        raise _checks.fail(name, "a dict {'hidden': ..., 'readout': {'W', 'b'}} or {site name: array}",
                           type(draws).__name__)
    if "hidden" not in draws:
        try:
            draws = unflatten_params(draws, template)
        except KeyError as missing:
            raise _checks.fail(name, f"the sites of the network ({missing} missing)", sorted(draws)) from None
    got = jax.tree_util.tree_structure(draws)
    want = jax.tree_util.tree_structure(template)
    if got != want:
        raise _checks.fail(name, f"draws in the layout {want}", f"{got}")
    leaves = [np.asarray(a) for a in jax.tree_util.tree_leaves(draws)]
    lead = leaves[0].shape[:2]
    for leaf, shape in zip(leaves, jax.tree_util.tree_leaves(template)):
        if leaf.ndim < 2 or leaf.shape[:2] != lead or leaf.shape[2:] != tuple(shape.shape):
            raise _checks.fail(name, f"arrays of shape (chains, draws) + parameter shape, (chains, draws) = {lead}",
                               f"array of shape {leaf.shape} for a parameter of shape {tuple(shape.shape)}")
        if not np.all(np.isfinite(leaf)):
            raise _checks.fail(name, "finite draws", "non-finite values")
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves), lead


def from_chains(bnn: BNN, x, y, *, theta=None, phi=None, x_test=None, sample_stats: dict | None = None,
                warmup_sample_stats: dict | None = None, attrs: dict | None = None, keep: str = "all",
                num_projections: int = 10, projection_seed: int = 0, form: str = "auto", seed: int = 0,
                pointwise: bool = True):
    """Draws of theta or phi made elsewhere, as the result of :func:`reprior.sample`.

    Args:
        bnn: the :class:`~reprior.BNN` the draws are of.
        x, y: the training data, as for :func:`reprior.sample`.
        theta: draws in standard coordinates: reprior's parameter layout
            ``{"hidden": ..., "readout": {"W": ..., "b": ...}}`` (or its site names,
            ``{"hidden_0_W": ..., "readout_b": ...}``), every leaf ``(chains, draws) + shape``.
            The result is that of a ``parameterisation="standard"`` run.
        phi: draws in repriorised coordinates, the same layout; with ``{"hidden": ...}``
            alone (the collapsed sampler's variables) the readout is drawn exactly per draw,
            as ``readout="exact"`` does.  The result is that of a ``"reprior"`` run.  Give
            exactly one of ``theta`` and ``phi``.
        x_test: optional test inputs (``f_test``, ``y_test``, ``f_test_rb_*``).
        sample_stats, warmup_sample_stats: optional ``{name: (chains, draws) array}`` of the
            user's sampler (``accept_prob``, ``diverging``, ``num_grad_evals``, ...), stored as
            the groups of those names; the metrics read what they find there.
        attrs: extra attrs (``sampler``, ``sample_seconds``, ``grad_evals_sampling``, ...): the
            cost figures of :func:`reprior.evaluation.diagnostics.cell_metrics` come from them.
        keep, num_projections, projection_seed, form, pointwise: as in :func:`reprior.sample`.
        seed: the keys of the exact readout draws and the predictive draws: those of
            ``reprior.sample(seed=seed)`` (:func:`draw_keys`).

    Returns:
        ``InferenceData`` (a ``DataTree`` on ArviZ 1.x) with the layout of :func:`reprior.sample`
        (no ``sampler_state``: there is no kernel to continue).  The dtype is the draws'.
    """
    from reprior.inference.inference_data import to_inference_data
    from reprior.inference.sampling import KEEP

    if not isinstance(bnn, BNN):
        raise _checks.fail("bnn", "a reprior.BNN", bnn)
    bnn.fixed_noise_std("reprior.from_chains (draws of an inferred noise are not read yet)")
    if (theta is None) == (phi is None):
        raise _checks.fail("theta, phi", "exactly one of them", "both" if theta is not None else "neither")
    _checks.one_of("keep", keep, KEEP)
    _checks.nonnegative_int("num_projections", num_projections)
    _checks.nonnegative_int("seed", seed)
    _checks.one_of("form", form, rp.FORMS)
    pointwise = _checks.flag("pointwise", pointwise)
    if _checks.nonnegative_int("projection_seed", projection_seed) >= 2**32:
        raise _checks.fail("projection_seed", "an integer in [0, 2**32)", projection_seed)
    x = _checks.finite_array("x", x)
    y = _checks.finite_array("y", y, ndim=(1, 2))
    x, y = bnn.check_data(x, y)
    if x_test is not None:
        x_test = _checks.finite_array("x_test", x_test)
        bnn.arch.check_inputs(x_test, "x_test")
    name, draws = ("theta", theta) if theta is not None else ("phi", phi)
    template = bnn.param_shapes(x.shape, y.shape[1])
    collapsed = name == "phi" and isinstance(draws, dict) and (
        set(draws) == {"hidden"} or not any(k == "readout" or k.startswith("readout_") for k in draws))
    tree, (num_chains, num_draws) = _as_tree(draws, name, {"hidden": template["hidden"]} if collapsed else template)
    dtype = np.result_type(*jax.tree_util.tree_leaves(tree)).name
    if dtype not in ("float32", "float64"):
        raise _checks.fail(name, "float32 or float64 draws", dtype)
    with jax.enable_x64(dtype == "float64"):
        outputs = _record_all(bnn, x, y, x_test, tree, name, collapsed, dtype, keep, num_projections, projection_seed,
                              form, seed, pointwise)
        run_attrs = {
            "reprior_version": __import__("reprior").__version__, "source": "reprior.from_chains",
            "arch": type(bnn.arch).__name__.lower(), "arch_repr": repr(bnn.arch), **describe_arch(bnn.arch),
            "width": int(getattr(bnn.arch, "width", 0)), "depth": int(getattr(bnn.arch, "depth", 0)),
            "num_params": int(sum(math.prod(s.shape) for s in jax.tree_util.tree_leaves(template))),
            "noise_std": bnn.noise_std, "n_train": int(x.shape[0]), "out_dim": int(y.shape[1]),
            "projection_seed": projection_seed, "num_projections": num_projections, "keep": keep, "form": form,
            "parameterisation": "standard" if name == "theta" else "reprior",
            "readout": "exact" if collapsed else "sampled", "seed": seed, "pointwise": int(pointwise),
            "readout_root": rp.readout_root(int(x.shape[0]), int(template["readout"]["W"].shape[0]) + 1, form),
            "num_chains": num_chains, "num_samples": num_draws, "dtype": dtype, **(attrs or {})}
        from reprior.inference.driver import ChainRun

        run = ChainRun(draws=outputs, stats=_stats(sample_stats, "sample_stats", num_chains, num_draws),
                       warmup_stats=_stats(warmup_sample_stats, "warmup_sample_stats", num_chains, None))
        return to_inference_data(run, x=np.asarray(x), y=np.asarray(y),
                                 x_test=None if x_test is None else np.asarray(x_test), attrs=run_attrs)


def _stats(stats, name: str, num_chains: int, num_draws):
    if stats is None:
        return {}
    if not isinstance(stats, dict):
        raise _checks.fail(name, "a dict {name: (chains, draws) array}", type(stats).__name__)
    out = {str(k): np.asarray(v) for k, v in stats.items()}
    for key, value in out.items():
        if value.ndim < 2 or value.shape[0] != num_chains or (num_draws is not None and value.shape[1] != num_draws):
            want = f"({num_chains}, {num_draws if num_draws is not None else 'draws'}, ...)"
            raise _checks.fail(name, f"arrays of shape {want}", f"{key}: array of shape {value.shape}")
    return out


def _record_all(bnn, x, y, x_test, tree, name, collapsed, dtype, keep, num_projections, projection_seed, form,
                seed, pointwise):
    """Every draw through :func:`reprior.inference.sampling.make_record_fn`, chain by chain (one compiled
    ``lax.map`` over the draws of a chain): ``{name: (chains, draws, ...) array}``."""
    from reprior.inference.sampling import make_record_fn, run_projection_words

    target = build_target(bnn, jnp.asarray(x, dtype), jnp.asarray(y, dtype), parameterisation="reprior",
                          readout="exact" if collapsed else "sampled", form=form)
    jx_test = None if x_test is None else jnp.asarray(x_test, dtype)
    record = make_record_fn(target, jx_test, keep, num_projections, projection_seed, pointwise=pointwise)
    words = run_projection_words(target.num_params, num_projections, projection_seed)
    consts = {} if words is None else {"projection_words": words}
    standard = name == "theta"

    def one(consts, key, draw):
        readout_key, noise_key = jax.random.split(key)  # as reprior.sample's collect
        posterior = target.readout_factorisation(draw)
        psi = posterior.psi
        if standard:
            return record(consts, noise_key, draw, None, psi, posterior)
        if collapsed:
            theta, phi = target.to_params(draw, readout_key, psi, posterior)
        else:
            phi = draw
            theta = with_readout(draw, rp.to_theta_out(posterior, readout_matrix(draw)))
        return record(consts, noise_key, theta, phi, psi, posterior)

    @jax.jit
    def chain(consts, key, draws):
        indices = jnp.arange(jax.tree_util.tree_leaves(draws)[0].shape[0])
        return jax.lax.map(lambda a: one(consts, jax.random.fold_in(key, a[0]), a[1]), (indices, draws))

    keys = draw_keys(seed, jax.tree_util.tree_leaves(tree)[0].shape[0])
    per_chain = []
    for c in range(keys.shape[0]):
        draws = jax.tree_util.tree_map(lambda a: jnp.asarray(a[c], dtype), tree)
        per_chain.append(jax.device_get(chain(consts, keys[c], draws)))
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *per_chain)
