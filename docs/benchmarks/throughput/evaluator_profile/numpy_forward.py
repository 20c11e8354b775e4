"""Would a numpy forward pass speed up the evaluator? Time the per-step forward of the 8 slots' linear policies
(``FlatPolicyNetwork.forward_layers`` on weights split once, as ``evaluate_population`` calls it) against the same
``einsum`` + ``tanh`` in numpy on the same float32 arrays, for the observation/action sizes of the reacher
(9 -> 2), Hopper-v5 (11 -> 3) and the PyBullet ant (28 -> 8). Microseconds per call, median of 7 blocks of 2000.

    PYTHONPATH=. .venv/bin/python docs/benchmarks/throughput/evaluator_profile/numpy_forward.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch as th

from sb3_cemah.common.policy_network import FlatPolicyNetwork

th.set_num_threads(1)
N_SLOTS, BLOCKS, CALLS = 8, 7, 2000


def microseconds_per_call(function: Callable[[], object]) -> float:
    for _ in range(CALLS):  # warm-up
        function()
    blocks = []
    for _ in range(BLOCKS):
        start = time.perf_counter()
        for _ in range(CALLS):
            function()
        blocks.append((time.perf_counter() - start) / CALLS * 1e6)
    return statistics.median(blocks)


def measure(name: str, n_in: int, n_out: int) -> str:
    """One table row: the two forward passes of 8 linear policies ``n_in -> n_out`` on the same inputs."""
    network = FlatPolicyNetwork(n_in, n_out, ())
    weights = th.randn(N_SLOTS, network.n_params)
    layers = network.unflatten(weights)
    observations = np.random.default_rng(0).standard_normal((N_SLOTS, n_in)).astype(np.float32)
    matrix = weights.numpy()[:, : n_in * n_out].reshape(N_SLOTS, n_in, n_out)
    bias = weights.numpy()[:, n_in * n_out :]

    def torch_forward() -> th.Tensor:
        return network.forward_layers(layers, th.from_numpy(observations).unsqueeze(1)).squeeze(1)

    def numpy_forward() -> np.ndarray:
        return np.tanh(np.einsum("si,sio->so", observations, matrix) + bias)

    torch_us, numpy_us = microseconds_per_call(torch_forward), microseconds_per_call(numpy_forward)
    difference = float(np.abs(torch_forward().numpy() - numpy_forward()).max())
    saved = (torch_us - numpy_us) / N_SLOTS
    return f"| {name} ({n_in} -> {n_out}) | {torch_us:.1f} | {numpy_us:.1f} | {saved:.2f} | {difference:.1e} |"


print("| shapes (obs -> actions) | torch (µs) | numpy (µs) | saved per env step (µs) | max abs difference |")
print("|---|---|---|---|---|")
for shapes in [("reacher", 9, 2), ("Hopper-v5", 11, 3), ("ant", 28, 8)]:
    print(measure(*shapes))
