"""
Cost of one ``predict`` call on one observation (what rl-zoo3's ``EvalCallback`` and ``enjoy`` do at every
env step): CEM's mean policy against CEM-AH's ensemble of K = 10 generated policies, with the generated
weights cached (``deterministic=True``) and generated at every call (``deterministic=False``, which is
also what ``deterministic=True`` cost before the cache).

    python -m benchmarks.predict_speed [--envs ...] [--calls 2000] [--repetitions 7]

Writes ``docs/benchmarks/predict_speed/{README.md,summary.json}``. The variants are timed in interleaved
repetitions in one process and compared as ratios (CPU time; the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Callable

import numpy as np

from benchmarks.common import (
    REPO_ROOT,
    Stopwatch,
    command_line,
    format_spread,
    machine_description,
    markdown_table,
    quiet_native_stdout,
    readme_header,
    set_torch_threads,
    spread,
)

DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks" / "predict_speed"
VARIANTS = ("CEM mean policy", "CEM-AH ensemble, cached weights", "CEM-AH ensemble, weights generated per call")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--envs", nargs="+", default=["AntBulletEnv-v0", "sb3_cemah/Maze-v0"], help="gymnasium ids")
    parser.add_argument("--calls", type=int, default=2_000, help="predict calls per variant and repetition")
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def observations(env_id: str, n: int) -> np.ndarray:
    """``n`` observations of the env under random actions, shape ``(n, *obs_shape)``."""
    import gymnasium as gym

    with quiet_native_stdout():  # pybullet prints argv[0]= for every env
        env = gym.make(env_id)
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    collected = []
    for _ in range(n):
        collected.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.stack(collected)


def time_env(env_id: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Microseconds per predict call of each variant, one value per repetition."""
    import pybullet_envs_gymnasium  # noqa: F401  (registers the PyBullet ids)

    import sb3_cemah.envs  # noqa: F401  (registers the maze)
    from sb3_cemah import CEM, CEMAH

    with quiet_native_stdout():
        cem = CEM("MlpPolicy", env_id, seed=0, device="cpu")
        cemah = CEMAH("MlpPolicy", env_id, seed=0, device="cpu")
    obs = observations(env_id, args.calls)
    calls: dict[str, Callable[[np.ndarray], object]] = {
        VARIANTS[0]: lambda o: cem.predict(o, deterministic=True),
        VARIANTS[1]: lambda o: cemah.predict(o, deterministic=True),
        VARIANTS[2]: lambda o: cemah.predict(o, deterministic=False),
    }
    timings: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repetitions):
        for name, call in calls.items():
            with Stopwatch() as watch:
                for observation in obs:
                    call(observation)
            timings[name].append(watch.cpu / args.calls * 1e6)
    return timings


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_torch_threads(1)
    machine = machine_description()
    summary = {}
    rows = []
    for env_id in args.envs:
        timings = time_env(env_id, args)
        cem_us = np.asarray(timings[VARIANTS[0]])
        cached_ratio = np.asarray(timings[VARIANTS[1]]) / cem_us
        uncached_ratio = np.asarray(timings[VARIANTS[2]]) / cem_us
        summary[env_id] = {
            "us_per_call": {name: spread(values) for name, values in timings.items()},
            "cached_over_cem": spread(cached_ratio),
            "generated_per_call_over_cem": spread(uncached_ratio),
        }
        rows.append(
            [
                env_id,
                *(format_spread(timings[name], ".0f") for name in VARIANTS),
                format_spread(cached_ratio),
                format_spread(uncached_ratio),
            ]
        )
        print(rows[-1], flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "summary.json").write_text(json.dumps({"machine": machine, "results": summary}, indent=2) + "\n")
    table = markdown_table(
        ["env", *(f"{name} (us per call)" for name in VARIANTS), "cached / CEM", "generated per call / CEM"], rows
    )
    readme = readme_header("predict cost: CEM-AH's ensemble against CEM", command_line("benchmarks.predict_speed"), machine)
    readme += (
        f"\n## Results\n\nCPU microseconds per `predict` call on one observation, median [min, max] over "
        f"{args.repetitions} interleaved repetitions of {args.calls} calls; ratios per repetition. Untrained models "
        "with the default hyper-parameters (the cost does not depend on the weights' values).\n\n"
        f"{table}\n"
    )
    (args.output / "README.md").write_text(readme)


if __name__ == "__main__":
    main()
