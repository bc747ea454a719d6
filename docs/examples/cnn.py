"""A small CNN in plain JAX as a reprior architecture, sampled in both parameterisations.

    python docs/examples/cnn.py --widths 32 128       # digits images, NUTS, ESS per gradient
    reprior sweep --arch docs/examples/cnn.py:make_arch --widths 32 128 --dataset digits ...

``make_arch(width, depth)`` is what ``--arch FILE.py:CALLABLE`` calls for each cell.
"""

import argparse
import math

import jax

import reprior

W_STD, B_STD = math.sqrt(2.0), 0.1


def make_arch(width: int, depth: int = 1) -> reprior.FeatureArchitecture:
    """``depth`` 3x3 convolutions of ``width`` channels (ReLU), then global average pooling: ``(n, width)``."""

    def init(rng_key, x):  # x: (n, H, W, C); only the structure of the result is used
        keys = jax.random.split(rng_key, 2 * depth)
        channels = [x.shape[-1]] + [width] * depth
        return [{"W": jax.random.normal(keys[2 * i], (3, 3, channels[i], width)),
                 "b": jax.random.normal(keys[2 * i + 1], (width,))} for i in range(depth)]

    def features(hidden, x):
        h = x
        for layer in hidden:  # NTK parameterisation: every weight N(0, 1), the scales here
            fan_in = 9 * h.shape[-1]
            h = jax.lax.conv_general_dilated(h, layer["W"], (1, 1), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            h = jax.nn.relu(W_STD / math.sqrt(fan_in) * h + B_STD * layer["b"])
        return h.mean(axis=(1, 2))  # (n, width)

    return reprior.FeatureArchitecture(init=init, features=features, name="cnn")


make_arch.image_inputs = True  # the sweep gives it images (n, H, W, C), not flattened rows


def ess_per_gradient(bnn, data, parameterisation: str, args) -> dict:
    """Median bulk ESS per gradient evaluation: theta's projections and the test predictions."""
    idata = reprior.sample(bnn, data.x_train, data.y_train, x_test=data.x_test, parameterisation=parameterisation,
                           num_warmup=args.num_warmup, num_samples=args.num_samples, num_chains=args.num_chains,
                           seed=args.seed, progress_bar=False, sampler_options={"max_tree_depth": args.max_tree_depth})
    metrics = reprior.diagnostics.cell_metrics(idata)
    return {group: metrics[f"ess_per_grad_{group}"] for group in ("theta", "pred")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--n-test", type=int, default=16)
    parser.add_argument("--num-warmup", type=int, default=200)
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--num-chains", type=int, default=2)
    parser.add_argument("--max-tree-depth", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = reprior.data.load_dataset("digits", n_train=args.n_train, n_test=args.n_test)  # images (n, 8, 8, 1)
    for width in args.widths:
        bnn = reprior.BNN(make_arch(width), noise_std=0.1)
        for parameterisation in ("standard", "reprior"):
            rate = ess_per_gradient(bnn, data, parameterisation, args)
            print(f"width {width} {parameterisation:8s} ESS per gradient: theta {rate['theta']:.3g}, "
                  f"predictions {rate['pred']:.3g}")


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)  # float64 on CPU, as reprior's command line
    main()
