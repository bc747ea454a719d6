"""The memory reprior.sample estimates for a run at each width, as the table of docs/gpu.md.

    python examples/gpu_memory.py

The figures are those of the check ``reprior.sample`` makes before sampling
(``reprior.inference.memory.estimate_run_bytes``, deliberately generous), for a depth-1 MLP on digits
(n = 128 training and 64 test points, 10 outputs, 64 inputs), 4 chains of 1000 draws, in
float32 and float64, with the chains held one at a time (``chain_method="sequential"``) or
all at once (``"vectorized"``, ``"parallel"``), storing the readout (``keep="readout"``) or no
parameter (``keep="none"``).
"""

from __future__ import annotations

import numpy as np

import reprior
from reprior.inference.memory import count_params, estimate_run_bytes

N_TRAIN, N_TEST, IN_DIM, OUT_DIM, CHAINS, DRAWS = 128, 64, 64, 10, 4, 1000


def run_gib(width: int, *, dtype: str, held: int, keep: str) -> float:
    """The estimate for one setting, in GiB."""
    bnn = reprior.BNN(reprior.MLP(width=width, depth=1), noise_std=0.1)
    num_params, num_readout = count_params(bnn.param_shapes((N_TRAIN, IN_DIM), OUT_DIM))
    need = estimate_run_bytes(num_params=num_params, num_readout=num_readout, num_data=N_TRAIN,
                              activations_per_point=width, num_chains_held=held, num_draws=CHAINS * DRAWS,
                              keep=keep, num_test=N_TEST, out_dim=OUT_DIM,
                              bytes_per_float=4 if dtype == "float32" else 8)
    return need / 2**30


def main() -> None:
    print("| width | weights | float32, sequential, readout | float32, 4 chains at once, readout "
          "| float32, 4 at once, none | float64, sequential, readout |")
    print("|---|---|---|---|---|---|")
    for width in (1024, 4096, 16384, 65536, 262144):
        weights = int(np.prod((IN_DIM + 1, width))) + (width + 1) * OUT_DIM
        cells = [run_gib(width, dtype="float32", held=1, keep="readout"),
                 run_gib(width, dtype="float32", held=CHAINS, keep="readout"),
                 run_gib(width, dtype="float32", held=CHAINS, keep="none"),
                 run_gib(width, dtype="float64", held=1, keep="readout")]
        print(f"| {width} | {weights:,} | " + " | ".join(f"{gib:.3g} GiB" for gib in cells) + " |")


if __name__ == "__main__":
    main()
