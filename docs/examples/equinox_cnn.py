"""The CNN of docs/examples/cnn.py in Equinox, through reprior.from_equinox.

    python docs/examples/equinox_cnn.py --widths 32 128
"""

import argparse

import equinox as eqx
import jax

import reprior


class CNN(eqx.Module):
    """The same CNN on one image ``(H, W, C)`` (Equinox layers are unbatched; from_equinox vmaps over rows)."""

    convs: list

    def __init__(self, in_channels: int, width: int, depth: int, key):
        channels = [in_channels] + [width] * depth
        keys = jax.random.split(key, depth)
        self.convs = [eqx.nn.Conv2d(channels[i], width, kernel_size=3, padding="SAME", key=k)
                      for i, k in enumerate(keys)]

    def __call__(self, x):
        x = x.transpose(2, 0, 1)  # Equinox convolutions are channel-first: (C, H, W)
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return x.mean(axis=(1, 2))


def make_arch(width: int, depth: int = 1) -> reprior.FeatureArchitecture:
    # weights (C_out, C_in, 3, 3): fan_in = 9 C_in, as in the plain JAX and Flax versions
    return reprior.from_equinox(CNN(1, width, depth, jax.random.key(0)), scales="fan_in", name="equinox-cnn")


make_arch.image_inputs = True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--n-test", type=int, default=16)
    parser.add_argument("--num-warmup", type=int, default=200)
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--num-chains", type=int, default=2)
    parser.add_argument("--max-tree-depth", type=int, default=10)
    args = parser.parse_args(argv)
    data = reprior.data.load_dataset("digits", n_train=args.n_train, n_test=args.n_test)
    for width in args.widths:
        bnn = reprior.BNN(make_arch(width), noise_std=0.1)
        for parameterisation in ("standard", "reprior"):
            idata = reprior.sample(bnn, data.x_train, data.y_train, x_test=data.x_test,
                                   parameterisation=parameterisation, num_warmup=args.num_warmup,
                                   num_samples=args.num_samples, num_chains=args.num_chains, progress_bar=False,
                                   sampler_options={"max_tree_depth": args.max_tree_depth})
            metrics = reprior.diagnostics.cell_metrics(idata)
            print(f"width {width} {parameterisation:8s} ESS per gradient: theta {metrics['ess_per_grad_theta']:.3g}, "
                  f"predictions {metrics['ess_per_grad_pred']:.3g}")


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)  # float64 on CPU, as reprior's command line
    main()
