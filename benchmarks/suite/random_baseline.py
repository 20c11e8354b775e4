"""
Return of a uniformly random policy on each benchmark env: the floor every learning curve starts from.

``python -m benchmarks.suite.random_baseline`` writes ``docs/benchmarks/suite/random_baseline.json``
(10 episodes per env, seed 0, and the env's raw step rate on this machine). It matters most on the maze,
where a random walk already reaches the goal in about a thousand steps and scores about 900.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_json
from benchmarks.suite import protocol

RANDOM_FILE = protocol.REPO_ROOT / "docs" / "benchmarks" / "suite" / "random_baseline.json"


def random_returns(env_id: str, n_episodes: int, seed: int = 0) -> dict[str, Any]:
    """Mean and std of ``n_episodes`` random-action returns, their mean length and the env's steps/s."""
    import gymnasium as gym

    import sb3_cemah  # noqa: F401  (registers the maze)

    with contextlib.suppress(ImportError):
        import pybullet_envs_gymnasium  # noqa: F401  (registers the PyBullet envs)
    env = gym.make(env_id)
    env.action_space.seed(seed)
    returns, lengths = [], []
    steps = 0
    start = time.perf_counter()
    for episode in range(n_episodes):
        env.reset(seed=seed + episode)
        done, total, length = False, 0.0, 0
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            length += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(length)
        steps += length
    seconds = time.perf_counter() - start
    env.close()
    return {
        "env_id": env_id,
        "n_episodes": n_episodes,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean(lengths)),
        "env_steps_per_s": steps / seconds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite.random_baseline")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--envs", nargs="+", choices=protocol.ENV_ORDER, default=protocol.ENV_ORDER)
    parser.add_argument("--out", type=Path, default=RANDOM_FILE)
    args = parser.parse_args(argv)
    measured = {key: random_returns(protocol.ENVS[key].env_id, args.episodes) for key in args.envs}
    # The other envs' earlier measurements stay.
    data = {**(json.loads(args.out.read_text()) if args.out.is_file() else {}), **measured}
    for key, value in measured.items():
        print(f"{key:8s} {value['mean_return']:9.2f} ± {value['std_return']:7.2f}  "
              f"length {value['mean_length']:7.1f}  {value['env_steps_per_s']:7.0f} steps/s")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, data)


if __name__ == "__main__":
    main()
