"""Cost of one log-density-and-gradient evaluation, standard vs repriorised.

For each architecture, width and number of training points ``n`` (sklearn
digits, 10 outputs), every *variant* below is compiled as
``jax.jit(jax.value_and_grad(logdensity_fn))`` and timed side by side in the
same process (interleaved rounds, median; see :mod:`common`):

``standard``   ``BNN.log_density(theta, x, y, "standard")``: the baseline.
``primal``     ``BNN.log_density(phi, x, y, "reprior", form="primal")``: Cholesky of the ``p x p`` matrix G.
``dual``       the same, ``form="dual"``: Cholesky of the ``n x n`` matrix ``K + s^2 I``.
``auto``       the same, ``form="auto"`` (dual when ``n <= p``): what ``reprior.sample`` uses.
``collapsed``  ``BNN.collapsed_log_density(hidden, ...)``, ``form="auto"``: the target of
               ``readout="exact"`` (only the hidden weights are differentiated).
``paper_pxp``  the paper's cost model, implemented here as a baseline: at every gradient,
               Cholesky ``G = U^T U``, ``theta_out = mu + s U^{-1} phi_out``, then the
               standard log density at theta plus ``k (p log s - sum log diag U)``.

Profiling variants (not run by default; add them with ``--variants``) split the
cost of a repriorised gradient into its parts:

``features``        ``|Psi(x)|^2 / 2``: forward and backward pass of the hidden layers alone
                    (what every density pays).
``marglik_dual``    ``log_marginal_likelihood(Psi, y, form="dual")``, differentiated in ``Psi`` (given).
``marglik_primal``  the same, ``form="primal"``.
``chol_pxp``        ``sum log diag chol(Psi^T Psi + s^2 I)``, differentiated in ``Psi``: the ``p x p``
                    Cholesky with its gradient alone.

Every repriorised variant is the same function of phi (the paper's with a
different root of ``G^{-1}``, which leaves the density unchanged), so their
values and gradients are checked against each other (``max_rel_diff_*``).

Run ``python benchmarks/grad_cost.py`` (full) or ``--quick``; ``--help`` lists the sizes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

VARIANTS = ("standard", "primal", "dual", "auto", "collapsed", "paper_pxp")
PROFILE_VARIANTS = ("features", "marglik_dual", "marglik_primal", "chol_pxp")
REPRIOR_VARIANTS = ("primal", "dual", "auto", "paper_pxp")
PXP_VARIANTS = ("primal", "paper_pxp", "marglik_primal", "chol_pxp")


def paper_log_density(bnn, params, x, y):
    """The paper's repriorised log density: ``p x p`` Cholesky root, evaluated through theta.

    .. math::

        \\log p(\\phi \\mid D) = \\log p_{\\mathrm{std}}(T(\\phi) \\mid D)
            + k\\big(p\\log\\sigma - \\textstyle\\sum_i \\log U_{ii}\\big), \\qquad
        T(\\phi)_{\\mathrm{out}} = \\mu + \\sigma U^{-1}\\phi_{\\mathrm{out}}, \\quad G = U^\\top U

    (Hron et al. 2022, section 3), costing :math:`O(n p^2 + p^3)` per gradient.
    """
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_solve, solve_triangular

    from reprior.core import repriorise as rp
    from reprior.core.architectures import readout_matrix, with_readout

    psi = bnn.features(params, x)  # once: the standard density below reuses it
    n, p = psi.shape
    k = y.shape[1]
    sigma = jnp.asarray(bnn.noise_std, psi.dtype)
    lower = jnp.linalg.cholesky(psi.T @ psi + sigma**2 * jnp.eye(p, dtype=psi.dtype))  # G = L L^T, U = L^T
    mu = cho_solve((lower, True), psi.T @ y)
    theta_out = mu + sigma * solve_triangular(lower.T, readout_matrix(params), lower=False)
    log_standard = (rp.log_standard_normal(with_readout(params, theta_out))
                    + rp.gaussian_log_likelihood(psi @ theta_out, y, bnn.noise_std))
    log_jac = k * (p * jnp.log(sigma) - jnp.sum(jnp.log(jnp.diagonal(lower))))
    return log_standard + log_jac


def logdensity_fns(bnn):
    """``{variant: (fn(z, x, y), argument)}``; ``argument`` is what ``z`` is: ``"params"``
    (theta or phi), ``"hidden"`` (the hidden weights) or ``"psi"`` (the features, given)."""
    import jax.numpy as jnp

    from reprior.core import repriorise as rp

    def features(hidden, x, y):
        psi = bnn.features({"hidden": hidden}, x)
        return 0.5 * jnp.vdot(psi, psi)

    def chol_pxp(psi, x, y):
        gram = psi.T @ psi + bnn.noise_std**2 * jnp.eye(psi.shape[1], dtype=psi.dtype)
        return jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(gram))))

    return {
        "standard": (lambda z, x, y: bnn.log_density(z, x, y, "standard"), "params"),
        "primal": (lambda z, x, y: bnn.log_density(z, x, y, "reprior", form="primal"), "params"),
        "dual": (lambda z, x, y: bnn.log_density(z, x, y, "reprior", form="dual"), "params"),
        "auto": (lambda z, x, y: bnn.log_density(z, x, y, "reprior", form="auto"), "params"),
        "collapsed": (lambda z, x, y: bnn.collapsed_log_density(z, x, y, form="auto"), "hidden"),
        "paper_pxp": (lambda z, x, y: paper_log_density(bnn, z, x, y), "params"),
        "features": (features, "hidden"),
        "marglik_dual": (lambda z, x, y: rp.log_marginal_likelihood(z, y, bnn.noise_std, "dual"), "psi"),
        "marglik_primal": (lambda z, x, y: rp.log_marginal_likelihood(z, y, bnn.noise_std, "primal"), "psi"),
        "chol_pxp": (chol_pxp, "psi"),
    }


def make_arch(arch: str, width: int, depth: int):
    import reprior

    if arch == "mlp":
        return reprior.MLP(width=width, depth=depth)
    return reprior.ResNet(width=width, depth=depth)


def load_data(arch: str, n: int, seed: int):
    from reprior.experiments.data import load_dataset

    data = load_dataset("digits", n_train=n, n_test=0, seed=seed, flatten=(arch == "mlp"))
    return data.x_train, data.y_train


def _rel_diff(a, b) -> float:
    import jax
    import numpy as np

    la = np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(a)])
    lb = np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(b)])
    return float(np.max(np.abs(la - lb)) / max(np.max(np.abs(lb)), 1e-300))


def measure_config(arch: str, width: int, depth: int, n: int, *, noise_std: float = 0.1, seed: int = 0,
                   dtype: str = "float64", variants=VARIANTS, rounds: int = 7, max_seconds: float = 20.0) -> dict:
    """Compile and time every variant for one configuration; return one result row."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import reprior
    from reprior.core.repriorise import LOG_2PI

    with jax.enable_x64(dtype == "float64"):
        bnn = reprior.BNN(make_arch(arch, width, depth), noise_std)
        x_np, y_np = load_data(arch, n, seed)
        x, y = jnp.asarray(x_np, dtype), jnp.asarray(y_np, dtype)
        params = jax.tree_util.tree_map(lambda a: a.astype(dtype), bnn.init(jax.random.key(seed), x, y.shape[1]))
        p = bnn.arch.num_features(x.shape)
        fns = logdensity_fns(bnn)
        row = {"arch": arch, "depth": depth, "width": width, "n": n, "p": p, "k": int(y.shape[1]),
               "dtype": dtype, "auto_form": "dual" if n <= p else "primal",
               "num_params": int(sum(a.size for a in jax.tree_util.tree_leaves(params))),
               "num_hidden_params": int(sum(a.size for a in jax.tree_util.tree_leaves(params["hidden"])))}
        compiled, args = {}, {}
        psi = jax.jit(bnn.features)(params, x)
        for name in variants:
            fn, argument = fns[name]
            z = {"params": params, "hidden": params["hidden"], "psi": psi}[argument]
            compiled[name], row[f"compile_s_{name}"] = common.compile_fn(jax.value_and_grad(fn), z, x, y)
            args[name] = (z, x, y)
            row[f"xla_bytes_{name}"] = common.xla_bytes(compiled[name])
            row[f"xla_flops_{name}"] = common.xla_flops(compiled[name])
        outputs, warmed = {}, {}
        for name in variants:  # the untimed warm call: memory, and outputs for the agreement check
            mem = common.peak_rss_delta(compiled[name], *args[name])
            row[f"peak_rss_delta_bytes_{name}"] = mem["peak_rss_delta_bytes"]
            row["rss_method"] = mem["rss_method"]
            outputs[name], warmed[name] = jax.device_get(mem["output"]), mem["seconds"]
        timings = common.time_interleaved(compiled, args, rounds=rounds, max_seconds=max_seconds, warmed=warmed)
    for name in variants:
        row[f"s_{name}"] = timings[name]["median"]
        row[f"s_min_{name}"] = timings[name]["min"]
        row[f"times_{name}"] = timings[name]["times"]
    for name in variants:
        if name != "standard" and "standard" in variants:
            row[f"ratio_{name}"] = common.ratio(row[f"s_{name}"], row["s_standard"])
            row[f"ratio_min_{name}"] = common.ratio(row[f"s_min_{name}"], row["s_min_standard"])
    if "paper_pxp" in variants and "auto" in variants:
        row["speedup_auto_vs_paper"] = common.ratio(row["s_paper_pxp"], row["s_auto"])
    if "paper_pxp" in variants and "collapsed" in variants:
        row["speedup_collapsed_vs_paper"] = common.ratio(row["s_paper_pxp"], row["s_collapsed"])
    # Every repriorised variant is one function of phi: values and gradients must agree.
    ref = "auto" if "auto" in variants else None
    for name in variants:
        if ref and name in REPRIOR_VARIANTS and name != ref:
            value_diff = abs(float(outputs[name][0]) - float(outputs[ref][0])) / abs(float(outputs[ref][0]))
            row[f"max_rel_diff_{name}"] = max(value_diff, _rel_diff(outputs[name][1], outputs[ref][1]))
    if ref and "collapsed" in variants:
        phi_out = jax.tree_util.tree_leaves(params["readout"])
        log_prior_out = -0.5 * sum(float(np.sum(np.square(a))) + a.size * LOG_2PI for a in phi_out)
        expected = float(outputs[ref][0]) - log_prior_out
        row["max_rel_diff_collapsed"] = max(abs(float(outputs["collapsed"][0]) - expected) / abs(expected),
                                            _rel_diff(outputs["collapsed"][1], outputs[ref][1]["hidden"]))
    return row


def configurations(args) -> list[tuple[str, int, int, int]]:
    """``(arch, width, depth, n)`` in the order they are measured."""
    configs = []
    for n in args.n:
        for depth in args.mlp_depths:
            configs += [("mlp", w, depth, n) for w in args.mlp_widths]
        configs += [("resnet", w, args.resnet_depth, n) for w in args.resnet_widths]
    skips = {tuple(int(v) if v.isdigit() else v for v in s.split(":")) for s in args.skip}
    return [c for c in configs if (c[0], c[1], c[2], c[3]) not in skips]


def print_tables(rows: list[dict], variants) -> None:
    cols = [("arch", "arch", ""), ("depth", "depth", ""), ("width", "width", ""), ("n", "n", ""),
            ("p", "p", ""), ("auto_form", "auto", "")]
    time_cols = [(f"s_{v}", f"{v} ms", ".3g") for v in variants]
    ms_rows = [{**r, **{f"s_{v}": 1e3 * r[f"s_{v}"] for v in variants if f"s_{v}" in r}} for r in rows]
    print("\n## seconds per value_and_grad (median, ms)\n")
    print(common.table(ms_rows, cols + time_cols))
    ratio_cols = [(f"ratio_{v}", f"{v}/std", ".3g") for v in variants if v != "standard"]
    extra = [("speedup_auto_vs_paper", "paper/auto", ".3g"), ("speedup_collapsed_vs_paper", "paper/collapsed", ".3g")]
    print("\n## ratios of medians to standard (same process), and speed-up over the paper's p x p form\n")
    print(common.table(rows, cols + ratio_cols + [c for c in extra if any(c[0] in r for r in rows)]))
    print("\n## ratios of the fastest calls (less sensitive to background load)\n")
    print(common.table(rows, cols + [(f"ratio_min_{v}", f"{v}/std", ".3g") for v in variants if v != "standard"]))
    print("\n## compile seconds and memory (XLA buffers MB / peak RSS rise MB)\n")
    mem_rows = []
    for r in rows:
        m = dict(r)
        for v in variants:
            if f"xla_bytes_{v}" in r:
                xb, rb = r[f"xla_bytes_{v}"], r[f"peak_rss_delta_bytes_{v}"]
                m[f"mem_{v}"] = f"{(xb or 0) / 2**20:.3g} / {(rb or 0) / 2**20:.3g}"
        mem_rows.append(m)
    print(common.table(mem_rows, cols + [(f"compile_s_{v}", f"{v} compile s", ".2g") for v in variants]
                       + [(f"mem_{v}", f"{v} MB", "") for v in variants]))
    diffs = [(f"max_rel_diff_{v}", f"{v} vs auto", ".1e") for v in ("primal", "dual", "paper_pxp", "collapsed")
             if any(f"max_rel_diff_{v}" in r for r in rows)]
    if diffs:
        print("\n## agreement of the repriorised forms (max relative difference of value and gradient)\n")
        print(common.table(rows, cols + diffs))


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--mlp-widths", type=common.int_list, default=[64, 256, 1024, 4096])
    p.add_argument("--mlp-depths", type=common.int_list, default=[1, 3])
    p.add_argument("--resnet-widths", type=common.int_list, default=[8, 32, 128])
    p.add_argument("--resnet-depth", type=int, default=8)
    p.add_argument("--n", type=common.int_list, default=[128, 1024], help="numbers of training points")
    p.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS))
    p.add_argument("--resnet-variants", type=lambda s: s.split(","), default=None,
                   help="variants for the ResNet (default: --variants)")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per configuration")
    p.add_argument("--max-seconds", type=float, default=20.0, help="timing budget per variant and configuration")
    p.add_argument("--skip", nargs="*", default=[], help="configurations to skip, as arch:width:depth:n")
    p.add_argument("--pxp-max-width", type=int, default=None,
                   help="skip the p x p variants (primal, paper_pxp, marglik_primal, chol_pxp) above this width")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--name", default="grad_cost", help="results file name")
    args = p.parse_args(argv)
    if args.quick:
        args.mlp_widths, args.mlp_depths, args.resnet_widths, args.n = [16, 32], [1], [1], [24]
        args.resnet_variants = ["standard", "auto"]  # ResNet gradients compile slowly
        args.rounds, args.max_seconds = 3, 1.0
        args.name += "_quick"
    args.resnet_variants = args.resnet_variants or args.variants
    for flag, chosen in (("--variants", args.variants), ("--resnet-variants", args.resnet_variants)):
        if sorted(set(chosen) - set(VARIANTS + PROFILE_VARIANTS)) or "standard" not in chosen:
            p.error(f"{flag}: expected 'standard' and names among {VARIANTS + PROFILE_VARIANTS}, received {chosen}")

    info = common.header()
    common.print_header(info, "grad_cost: seconds per log-density-and-gradient, standard vs repriorised")
    rows = []
    for arch, width, depth, n in configurations(args):
        variants = args.resnet_variants if arch == "resnet" else args.variants
        if args.pxp_max_width is not None and width > args.pxp_max_width:
            variants = [v for v in variants if v not in PXP_VARIANTS]
        row = measure_config(arch, width, depth, n, noise_std=args.noise_std, seed=args.seed, dtype=args.dtype,
                             variants=variants, rounds=args.rounds, max_seconds=args.max_seconds)
        rows.append(row)
        print(f"{arch} depth {depth} width {width} n {n}: " + ", ".join(
            f"{v} {1e3 * row[f's_{v}']:.3g} ms" for v in variants), flush=True)
    print_tables(rows, args.variants)
    result = {"benchmark": "grad_cost", "header": info, "settings": vars(args),
              "variants": list(args.variants), "rows": rows,
              "process_peak_rss_bytes": common.process_peak_rss_bytes()}
    common.write_json(args.name, result, args.json)
    return result


if __name__ == "__main__":
    main()
