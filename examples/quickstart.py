"""Quick start: a wide MLP on the digits data, standard vs repriorised NUTS.

Samples the posterior of a one-hidden-layer MLP (width 512, NTK
parameterisation, Gaussian likelihood) on 128 of scikit-learn's 8x8 digits,
once in the standard parameterisation (NUTS over every weight) and once
repriorised (NUTS over the hidden weights only, the readout drawn exactly), and
prints an effective sample size (ESS) summary:

* ESS bulk of 10 fixed random projections of the flattened weights
  (``theta_proj``) and of the predictions at the test inputs (``f_test``),
  averaged over projections (resp. test points and outputs);
* per draw, and per 1000 gradient evaluations (NUTS leapfrog steps, warm-up
  included), the cost measure that does not depend on the machine;
* the ratio repriorised / standard.

Both runs use the same budget: 2 chains, 100 warm-up iterations and 100 draws
each, NUTS trees capped at depth 5 (at most 31 gradient evaluations per
iteration).  With these defaults the script takes about 150 s of CPU time (2.5
minutes pinned to one CPU core, empty compilation cache).  Run ``python examples/quickstart.py --help`` for
the settings; longer chains (``--num-samples 500``) give steadier ESS figures.
"""

from __future__ import annotations

import argparse
import time


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=512, help="hidden units (default 512)")
    parser.add_argument("--depth", type=int, default=1, help="hidden layers (default 1)")
    parser.add_argument("--n-train", type=int, default=128, help="training points (default 128)")
    parser.add_argument("--n-test", type=int, default=64, help="test points (default 64)")
    parser.add_argument("--noise-std", type=float, default=0.1, help="observation noise std (default 0.1)")
    parser.add_argument("--num-warmup", type=int, default=100, help="warm-up iterations per chain (default 100)")
    parser.add_argument("--num-samples", type=int, default=100, help="draws per chain (default 100)")
    parser.add_argument("--num-chains", type=int, default=2, help="chains (default 2)")
    parser.add_argument("--max-tree-depth", type=int, default=5,
                        help="NUTS tree depth cap, at most 2**depth - 1 gradients per draw (default 5)")
    parser.add_argument("--readout", choices=("exact", "sampled"), default="exact",
                        help="repriorised readout: drawn exactly or sampled jointly (default exact)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    parser.add_argument("--progress-bar", action="store_true", help="show progress bars")
    return parser.parse_args(argv)


ROWS = {  # key: printed label
    "ess_theta": "ESS theta_proj",
    "ess_theta_per_draw": "  per draw",
    "ess_theta_per_grad": "  per 1000 grads",
    "ess_f": "ESS f_test",
    "ess_f_per_draw": "  per draw",
    "ess_f_per_grad": "  per 1000 grads",
    "grad_evals": "grad evals",
    "seconds": "sampling seconds",
    "compile_seconds": "compile seconds",
}


def ess_summary(idata) -> dict:
    """Mean ESS bulk of ``theta_proj`` and ``f_test``, per draw and per 1000 gradient evaluations."""
    import arviz as az

    num_draws = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    grad_evals = idata.attrs["grad_evals"]  # warm-up included: the whole cost of the run
    ess_theta = float(az.ess(idata.posterior, var_names=["theta_proj"], method="bulk")["theta_proj"].mean())
    ess_f = float(az.ess(idata.posterior_predictive, var_names=["f_test"], method="bulk")["f_test"].mean())
    return {
        "ess_theta": ess_theta,
        "ess_theta_per_draw": ess_theta / num_draws,
        "ess_theta_per_grad": 1000 * ess_theta / grad_evals,
        "ess_f": ess_f,
        "ess_f_per_draw": ess_f / num_draws,
        "ess_f_per_grad": 1000 * ess_f / grad_evals,
        "grad_evals": float(grad_evals),
        "seconds": idata.attrs["warmup_seconds"] + idata.attrs["sample_seconds"],
        "compile_seconds": idata.attrs["compile_seconds"],
    }


def print_table(standard: dict, reprior: dict) -> None:
    print(f"{'':20s} {'standard':>12s} {'reprior':>12s} {'ratio':>8s}")
    for key, label in ROWS.items():
        ratio = reprior[key] / standard[key] if standard[key] else float("nan")
        print(f"{label:20s} {standard[key]:12.3f} {reprior[key]:12.3f} {ratio:8.2f}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    import reprior
    from reprior.experiments.data import load_dataset

    data = load_dataset("digits", flatten=True, n_train=args.n_train, n_test=args.n_test)
    bnn = reprior.BNN(reprior.MLP(width=args.width, depth=args.depth), noise_std=args.noise_std)
    print(f"{bnn} on digits: x_train {data.x_train.shape}, y_train {data.y_train.shape}, "
          f"x_test {data.x_test.shape}")
    settings = dict(x_test=data.x_test, num_warmup=args.num_warmup, num_samples=args.num_samples,
                    num_chains=args.num_chains, seed=args.seed, progress_bar=args.progress_bar,
                    sampler_options={"max_tree_depth": args.max_tree_depth})
    summaries = {}
    for parameterisation in ("standard", "reprior"):
        start = time.perf_counter()
        idata = reprior.sample(bnn, data.x_train, data.y_train, parameterisation=parameterisation,
                               readout=args.readout, **settings)
        summaries[parameterisation] = ess_summary(idata)
        divergences = int(idata.sample_stats["diverging"].sum())
        print(f"{parameterisation:>8s}: {time.perf_counter() - start:6.1f} s in all, "
              f"{divergences} divergences, mean accept prob "
              f"{float(idata.sample_stats['accept_prob'].mean()):.2f}")
    print()
    print_table(summaries["standard"], summaries["reprior"])
    return summaries


if __name__ == "__main__":
    main()
