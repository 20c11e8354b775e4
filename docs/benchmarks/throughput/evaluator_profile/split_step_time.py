"""Split the wall time per env step of CEM's population and of random actions on the same 8-slot VecEnv into the
env's own step (under Monitor), the DummyVecEnv's bookkeeping (its copies of observations and infos, resets) and
the work outside ``step_wait`` (CEM's policy, population bookkeeping and callback).

    PYTHONPATH=. .venv/bin/python docs/benchmarks/throughput/evaluator_profile/split_step_time.py Hopper-v5 3
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import pybullet_envs_gymnasium  # noqa: F401  (registers the PyBullet ids)
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_cemah import CEM

th.set_num_threads(1)
ENV_ID, REPETITIONS = sys.argv[1], int(sys.argv[2])
venv = make_vec_env(ENV_ID, n_envs=8, seed=0)
totals = {"step_wait": 0.0, "env_step": 0.0}


def timed(function: Any, key: str) -> Any:
    def wrapper(*args: Any) -> Any:
        start = time.perf_counter()
        result = function(*args)
        totals[key] += time.perf_counter() - start
        return result

    return wrapper


venv.step_wait = timed(venv.step_wait, "step_wait")  # type: ignore[method-assign]
for monitor in venv.envs:
    monitor.env.step = timed(monitor.env.step, "env_step")  # type: ignore[method-assign]
model = CEM("MlpPolicy", venv, population_size=100, seed=0, policy_kwargs={"net_arch": []})
model.learn(1)
rng = np.random.default_rng(0)


def measure(kind: str) -> None:
    for key in totals:
        totals[key] = 0
    if kind == "cem":
        steps_before = model.num_timesteps
        start = time.perf_counter()
        model.learn(1, reset_num_timesteps=False)
        n_steps = model.num_timesteps - steps_before
    else:
        actions = rng.uniform(-1, 1, size=(1800, 8, *venv.action_space.shape)).astype(np.float32)
        venv.reset()
        start = time.perf_counter()
        for step_actions in actions:
            venv.step(step_actions)
        n_steps = actions.shape[0] * 8
    wall = time.perf_counter() - start
    per_step = {
        "total": wall,
        "env.step": totals["env_step"],
        "vecenv overhead": totals["step_wait"] - totals["env_step"],
        "outside step_wait": wall - totals["step_wait"],
    }
    cells = ", ".join(f"{name} {seconds / n_steps * 1e6:.1f} us" for name, seconds in per_step.items())
    print(f"{kind:6s} {n_steps / wall:7.0f} steps/s | per env step: {cells}", flush=True)


for _ in range(REPETITIONS):
    measure("cem")
    measure("random")
