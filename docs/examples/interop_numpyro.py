"""The NumPyro model of a BNN under numpyro.infer.MCMC, with the kernel of your choice.

    python docs/examples/interop_numpyro.py --kernel hmc
"""

import argparse
import math

import jax
import jax.numpy as jnp
import numpyro
from numpyro.infer import HMC, MCMC, NUTS, BarkerMH

import reprior

KERNELS = {"nuts": lambda model: NUTS(model, max_tree_depth=6), "hmc": lambda model: HMC(model, num_steps=8, trajectory_length=None),
           "barker": BarkerMH}


def make_arch(width: int) -> reprior.FeatureArchitecture:
    def init(rng_key, x):
        return {"W": jax.random.normal(rng_key, (x.shape[1], width)), "b": jnp.zeros(width)}

    def features(hidden, x):
        return jnp.tanh(x @ hidden["W"] / math.sqrt(x.shape[1]) + 0.1 * hidden["b"])

    return reprior.FeatureArchitecture(init=init, features=features, name="tanh-layer")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--n-train", type=int, default=32)
    parser.add_argument("--num-samples", type=int, default=300)
    parser.add_argument("--kernel", choices=sorted(KERNELS), default="hmc")
    args = parser.parse_args(argv)
    data = reprior.data.load_dataset("synthetic", n_train=args.n_train, n_test=0)
    bnn = reprior.BNN(make_arch(args.width), noise_std=0.1)

    # Sites: hidden_W, hidden_b (phi_hidden = theta_hidden), readout_W_reprior, readout_b_reprior (phi_out),
    # and the deterministic readout_W, readout_b (theta_out).  readout="exact" leaves phi_out out.
    mcmc = MCMC(KERNELS[args.kernel](reprior.bnn_model), num_warmup=args.num_samples,
                num_samples=args.num_samples, progress_bar=False)
    mcmc.run(jax.random.key(0), bnn, data.x_train, data.y_train, parameterisation="reprior", readout="sampled")
    samples = mcmc.get_samples()
    print(f"NumPyro {args.kernel}: sites {sorted(samples)}; readout_W {samples['readout_W'].shape}")
    return samples


if __name__ == "__main__":
    numpyro.enable_x64()
    main()
