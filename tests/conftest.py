"""Shared fixtures of the CEM / CEM-AH tests: small seeded envs, tiny model configurations, helper wrappers."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from sb3_cemah import CEM, CEMAH

# The test machines have few cores shared with other jobs (and CI runs `pytest -n 2`): intra-op threads only
# add contention for networks this small (a CEM-AH gradient step is ~10x slower with 2 threads under load).
th.set_num_threads(1)

#: A CEM-AH small enough that one iteration's training takes milliseconds; used wherever learning quality is
#: not what the test is about.
TINY_CEMAH_KWARGS: dict[str, Any] = {
    "population_size": 8,
    "elite_frac": 0.25,
    "buffer_size": 2_000,
    "batch_size": 64,
    "n_noise_samples": 8,
    "pretrain_steps": 3,
    "policy_kwargs": {"noise_dim": 8, "encoder_arch": [16], "head_arch": [16], "ensemble_size": 4},
}
TINY_CEM_KWARGS: dict[str, Any] = {"population_size": 8, "elite_frac": 0.25}

ALGOS = {"CEM": CEM, "CEMAH": CEMAH}
TINY_KWARGS = {"CEM": TINY_CEM_KWARGS, "CEMAH": TINY_CEMAH_KWARGS}


class FixedResetWrapper(gym.Wrapper):
    """Every ``reset`` reseeds the env with the same seed, so that every episode starts from the same state."""

    def __init__(self, env: gym.Env, reset_seed: int = 123):
        super().__init__(env)
        self.reset_seed = reset_seed

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        return self.env.reset(seed=self.reset_seed, options=options)


@pytest.fixture(params=["CEM", "CEMAH"])
def algo_name(request: pytest.FixtureRequest) -> str:
    """Runs a test for both algorithms."""
    return request.param


@pytest.fixture
def make_model() -> Callable[..., CEM]:
    """Build a tiny, seeded model of the named algorithm (extra keyword arguments override the tiny defaults)."""

    def factory(algo: str, env: Any, seed: int = 0, **kwargs: Any) -> CEM:
        return ALGOS[algo]("MlpPolicy", env, seed=seed, **{**TINY_KWARGS[algo], **kwargs})

    return factory


@pytest.fixture
def cartpole_vec() -> Callable[..., VecEnv]:
    """``make_vec_env("CartPole-v1")`` (Monitor-wrapped, seeded) with ``n_envs`` slots."""

    def factory(n_envs: int = 4, seed: int = 0) -> VecEnv:
        return make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)

    return factory


@pytest.fixture
def pendulum_vec() -> Callable[..., VecEnv]:
    """``make_vec_env("Pendulum-v1")`` (Monitor-wrapped, seeded) with ``n_envs`` slots."""

    def factory(n_envs: int = 4, seed: int = 0) -> VecEnv:
        return make_vec_env("Pendulum-v1", n_envs=n_envs, seed=seed)

    return factory


@pytest.fixture
def fixed_reset_vec() -> Callable[..., VecEnv]:
    """A DummyVecEnv whose slots all start every episode from the same state (see :class:`FixedResetWrapper`)."""

    def factory(env_id: str, n_envs: int, reset_seed: int = 123) -> VecEnv:
        return DummyVecEnv([lambda: FixedResetWrapper(gym.make(env_id), reset_seed)] * n_envs)

    return factory


@pytest.fixture
def fixed_reset_env() -> Callable[..., gym.Env]:
    """A single gymnasium env that starts every episode from the same state."""

    def factory(env_id: str, reset_seed: int = 123) -> gym.Env:
        return FixedResetWrapper(gym.make(env_id), reset_seed)

    return factory


def read_progress(folder: str | Path) -> dict[str, list[float]]:
    """The columns of the ``progress.csv`` an SB3 csv logger wrote in ``folder`` (empty cells are NaN)."""
    with open(Path(folder) / "progress.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows, f"no row logged in {folder}"
    return {key: [float(row[key]) if row[key] != "" else float("nan") for row in rows] for key in rows[0]}


@pytest.fixture
def progress_csv() -> Callable[[str | Path], dict[str, list[float]]]:
    """Reader of the ``progress.csv`` written by ``configure(folder, ["csv"])``: column name -> values."""
    return read_progress


class SpacesEnv(gym.Env):
    """A one-step env with the given spaces (``max_steps`` declares its episodes' bound)."""

    max_steps = 1

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        return self.observation_space.sample(), 0.0, True, False, {}
