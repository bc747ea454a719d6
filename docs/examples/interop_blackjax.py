"""The repriorised log density as a plain function in your own BlackJAX loop.

    python docs/examples/interop_blackjax.py --width 64
"""

import argparse
import math

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

import reprior


def make_arch(width: int) -> reprior.FeatureArchitecture:
    """One tanh layer in plain JAX (NTK scales inside the features)."""

    def init(rng_key, x):
        return {"W": jax.random.normal(rng_key, (x.shape[1], width)), "b": jnp.zeros(width)}

    def features(hidden, x):
        return jnp.tanh(x @ hidden["W"] / math.sqrt(x.shape[1]) + 0.1 * hidden["b"])

    return reprior.FeatureArchitecture(init=init, features=features, name="tanh-layer")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--n-train", type=int, default=32)
    parser.add_argument("--num-steps", type=int, default=300)
    args = parser.parse_args(argv)
    data = reprior.data.load_dataset("synthetic", n_train=args.n_train, n_test=8)
    bnn = reprior.BNN(make_arch(args.width), noise_std=0.1)

    # The target: the sampled variables z = {"hidden": phi_hidden}, prior N(0, I), and
    # logdensity(z) = l(z) - |z|^2 / 2, the collapsed repriorised log posterior up to a constant.
    target = reprior.build_target(bnn, data.x_train, data.y_train, parameterisation="reprior", readout="exact")
    start = jax.tree_util.tree_map(lambda a: a[0], target.initial_positions(jax.random.key(0), 1))

    warmup = blackjax.window_adaptation(blackjax.nuts, target.logdensity)
    (state, parameters), _ = warmup.run(jax.random.key(1), start, num_steps=args.num_steps)
    step = jax.jit(blackjax.nuts(target.logdensity, **parameters).step)

    def one_step(state, key):
        state, info = step(key, state)
        return state, state.position

    _, positions = jax.lax.scan(one_step, state, jax.random.split(jax.random.key(2), args.num_steps))

    # Back to the network: the readout drawn exactly given each draw of the hidden weights, and
    # the Rao-Blackwellised predictive mean at the test inputs.
    keys = jax.random.split(jax.random.key(3), args.num_steps)
    theta, _ = jax.vmap(target.to_params)(positions, keys)
    mean, _ = jax.vmap(lambda z: target.predictive(z, jnp.asarray(data.x_test)))(positions)
    rmse = float(np.sqrt(np.mean((np.asarray(mean).mean(0) - data.y_test) ** 2)))
    print(f"BlackJAX NUTS: {args.num_steps} draws of {target.num_dims} hidden weights, "
          f"readout {theta['readout']['W'].shape[1:]}, test RMSE {rmse:.3f}")


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    main()
