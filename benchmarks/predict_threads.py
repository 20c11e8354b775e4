"""
Wall time of one ``predict`` call, idle and with the cores busy: SB3's ``predict`` on the caller's torch threads
(torch's default, one per core) against the library's, which runs each call on one thread.

    python -m benchmarks.predict_threads [--envs ...] [--calls 300] [--repetitions 7]

"Busy": one process spinning per core, started for the busy half of the run. The two variants are timed in
interleaved repetitions; the table is printed (docs/design.md, "Threads", holds the committed run).
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable

import torch as th
from stable_baselines3.common.policies import BasePolicy

from benchmarks import common
from sb3_cemah import CEM, CEMAH


def seconds_per_call(predict: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        predict()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["AntBulletEnv-v0", "sb3_cemah/Maze-v0"], help="gymnasium ids")
    parser.add_argument("--calls", type=int, default=300, help="predict calls per variant and repetition")
    parser.add_argument("--repetitions", type=int, default=7)
    args = parser.parse_args()
    import pybullet_envs_gymnasium  # noqa: F401  (registers the PyBullet ids)

    n_cores = os.cpu_count() or 1
    th.set_num_threads(n_cores)  # torch's default: the caller's threads
    rows = []
    for env_id in args.envs:
        env = common.make_quiet_vec_env(env_id, n_envs=1, seed=0)
        obs = env.reset()
        for busy in (False, True):
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n_cores if busy else 0)]
            try:
                time.sleep(1.0)
                for model in (CEM("MlpPolicy", env, seed=0), CEMAH("MlpPolicy", env, seed=0)):
                    model.predict(obs, deterministic=True)  # caches CEM-AH's ensemble
                    variants = {
                        "caller's threads": functools.partial(BasePolicy.predict, model.policy, obs, deterministic=True),
                        "one thread per call": functools.partial(model.predict, obs, deterministic=True),
                    }
                    times: dict[str, list[float]] = {name: [] for name in variants}
                    for _, name in common.interleaved(args.repetitions, tuple(variants)):
                        times[name].append(seconds_per_call(variants[name], args.calls) * 1e6)
                    cells = [common.format_spread(times[name], ".0f") for name in variants]
                    rows.append([env_id, type(model).__name__, "busy" if busy else "idle", *cells])
            finally:
                for spinner in spinners:
                    spinner.kill()
    headers = ["env", "model", "machine", *("µs per call, " + name for name in ("caller's threads", "one thread per call"))]
    print(f"{n_cores} cores, torch threads {n_cores} in the caller")
    print(common.markdown_table(headers, rows))


if __name__ == "__main__":
    main()
