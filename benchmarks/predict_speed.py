"""
Cost of one ``predict`` call on one observation (what rl-zoo3's ``EvalCallback`` and ``enjoy`` do at every
env step): CEM's mean policy against CEM-AH's default ensemble (``ensemble_size``, 100) of generated policies,
with the generated weights cached (``deterministic=True``) and generated at every call (``deterministic=False``, which is
also what ``deterministic=True`` cost before the cache).

    python -m benchmarks.predict_speed [--envs ...] [--calls 2000] [--repetitions 7]

The variants are timed in interleaved repetitions in one process and compared as ratios (CPU time; the
machine is shared).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks import common

VARIANTS = ("CEM mean policy", "CEM-AH ensemble, cached weights", "CEM-AH ensemble, weights generated per call")


def observations(env_id: str, n: int) -> np.ndarray:
    """``n`` observations of the env under random actions, shape ``(n, *obs_shape)``."""
    import gymnasium as gym

    with common.quiet_native_stdout():  # pybullet prints argv[0]= for every env
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


def time_env(env_id: str, calls: int, repetitions: int) -> list[dict[str, Any]]:
    """CPU microseconds per predict call, one row per variant and repetition."""
    import pybullet_envs_gymnasium  # noqa: F401  (registers the PyBullet ids)

    import sb3_cemah.envs  # noqa: F401  (registers the maze)
    from sb3_cemah import CEM, CEMAH

    with common.quiet_native_stdout():
        cem = CEM("MlpPolicy", env_id, seed=0, device="cpu")
        cemah = CEMAH("MlpPolicy", env_id, seed=0, device="cpu")
    obs = observations(env_id, calls)
    predict: dict[str, Callable[[np.ndarray], object]] = {
        VARIANTS[0]: lambda o: cem.predict(o, deterministic=True),
        VARIANTS[1]: lambda o: cemah.predict(o, deterministic=True),
        VARIANTS[2]: lambda o: cemah.predict(o, deterministic=False),
    }
    rows = []
    # Not rotated: the three variants' order stays as in the committed run.
    for repetition in range(repetitions):
        for name, call in predict.items():
            with common.Stopwatch() as watch:
                for observation in obs:
                    call(observation)
            rows.append({"env": env_id, "variant": name, "repetition": repetition, "us_per_call": watch.cpu / calls * 1e6})
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per env: each variant's microseconds per call and CEM-AH's over CEM's, per repetition."""
    results = {}
    for env_id in dict.fromkeys(row["env"] for row in rows):
        us = {
            name: np.array([r["us_per_call"] for r in rows if r["env"] == env_id and r["variant"] == name])
            for name in VARIANTS
        }
        results[env_id] = {
            "us_per_call": {name: common.spread(values) for name, values in us.items()},
            "cached_over_cem": common.spread(us[VARIANTS[1]] / us[VARIANTS[0]]),
            "generated_per_call_over_cem": common.spread(us[VARIANTS[2]] / us[VARIANTS[0]]),
        }
    return {"results": results}


def table(summary: dict[str, Any]) -> str:
    def cell(stats: dict[str, float], fmt: str) -> str:
        return f"{stats['median']:{fmt}} [{stats['min']:{fmt}}, {stats['max']:{fmt}}]"

    rows = [
        [
            env_id,
            *(cell(result["us_per_call"][name], ".0f") for name in VARIANTS),
            cell(result["cached_over_cem"], ".2f"),
            cell(result["generated_per_call_over_cem"], ".2f"),
        ]
        for env_id, result in summary["results"].items()
    ]
    headers = ["env", *(f"{name} (us per call)" for name in VARIANTS), "cached / CEM", "generated per call / CEM"]
    return common.markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> None:
    parser = common.parser("predict_speed", __doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--envs", nargs="+", default=["AntBulletEnv-v0", "sb3_cemah/Maze-v0"], help="gymnasium ids")
    parser.add_argument("--calls", type=int, default=2_000, help="predict calls per variant and repetition")
    parser.add_argument("--repetitions", type=int, default=7)
    run = common.Run.start("predict_speed", parser.parse_args(argv))
    args = run.args
    if args.from_dir is not None:
        rows = run.rows("measurements.csv")
    else:
        rows = [row for env_id in args.envs for row in time_env(env_id, args.calls, args.repetitions)]
    summary = summarise(rows)
    run.save("measurements.csv", rows, summary)
    print(run.report("predict cost: CEM-AH's ensemble against CEM", {"results": table(summary)}).read_text())


if __name__ == "__main__":
    main()
