"""Errors a user can act on: unsupported spaces, invalid hyper-parameters, NaN from the env, bad model files."""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import stable_baselines3.common.base_class
from conftest import SpacesEnv
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.save_util import save_to_pkl
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_cemah import CEM, CEMAH

ALGOS = {"CEM": CEM, "CEMAH": CEMAH}


BOX_OBS = spaces.Box(-1.0, 1.0, (3,), np.float32)


@pytest.mark.parametrize(
    ("observation_space", "action_space", "message"),
    [
        (BOX_OBS, spaces.MultiDiscrete([2, 3]), "action space MultiDiscrete"),
        (BOX_OBS, spaces.MultiBinary(3), "action space MultiBinary"),
        (spaces.Dict({"a": BOX_OBS}), spaces.Discrete(2), "observation space Dict"),
        (spaces.Tuple([BOX_OBS]), spaces.Discrete(2), "observation space Tuple"),
        (BOX_OBS, spaces.Box(-np.inf, np.inf, (2,), np.float32), "must be finite"),
        (
            BOX_OBS,
            spaces.Box(np.array([-1.0, -np.inf], np.float32), np.ones(2, np.float32), dtype=np.float32),
            "must be finite",
        ),
    ],
)
def test_unsupported_spaces(algo_name: str, observation_space: spaces.Space, action_space: spaces.Space, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        ALGOS[algo_name]("MlpPolicy", SpacesEnv(observation_space, action_space))
    assert algo_name in str(error.value)
    assert "MultiInputPolicy" not in str(error.value)  # SB3's advice for Dict observations does not apply here


@pytest.mark.parametrize(
    "observation_space",
    [spaces.Discrete(5), spaces.MultiDiscrete([2, 3]), spaces.MultiBinary(4), spaces.Box(0, 255, (2, 2), np.uint8)],
)
def test_supported_observation_spaces(algo_name: str, make_model: Callable, observation_space: spaces.Space) -> None:
    model = make_model(algo_name, SpacesEnv(observation_space, spaces.Discrete(2)), population_size=4, elite_frac=0.5)
    model.learn(8)
    observation_space.seed(0)
    observations = np.stack([observation_space.sample() for _ in range(32)])
    # The network's input: one-hot for Discrete, one one-hot per entry for MultiDiscrete, float values otherwise
    # (no image scaling), flattened.
    if isinstance(observation_space, spaces.Discrete):
        expected = np.eye(observation_space.n)[observations]
    elif isinstance(observation_space, spaces.MultiDiscrete):
        expected = np.concatenate([np.eye(n)[observations[:, i]] for i, n in enumerate(observation_space.nvec)], axis=1)
    else:
        expected = observations.reshape(len(observations), -1).astype(np.float32)
    features = model.policy.obs_to_features(observations)
    np.testing.assert_array_equal(features.numpy(), expected)

    actions = np.array([model.predict(observation, deterministic=True)[0] for observation in observations])
    if algo_name == "CEM":
        # The mean policy of the linear network: argmax of tanh(x W + b) (saturated outputs tie: the first wins).
        n_weights = features.shape[1] * 2
        weight = model.policy.mean[:n_weights].reshape(-1, 2).numpy()
        bias = model.policy.mean[n_weights:].numpy()
        np.testing.assert_array_equal(actions, np.argmax(np.tanh(expected.astype(np.float32) @ weight + bias), axis=1))
    assert set(actions.tolist()) <= {0, 1}


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"population_size": 1}, "population_size"),
        ({"population_size": 0}, "population_size"),
        ({"population_size": 10.0}, "population_size"),
        ({"elite_frac": 0.0}, "elite_frac"),
        ({"elite_frac": 1.5}, "elite_frac"),
        ({"elite_frac": -0.1}, "elite_frac"),
        ({"n_eval_episodes": 0}, "n_eval_episodes"),
        ({"initial_std": 0.0}, "initial_std"),
        ({"initial_std": float("inf")}, "initial_std"),
        ({"alive_bonus_offset": float("nan")}, "alive_bonus_offset"),
        ({"elite_weighting": "rank"}, "elite_weighting"),
        ({"min_std": -0.1}, "min_std"),
        ({"min_std": "lin_high"}, "min_std"),
        ({"min_std": "exp_0.3"}, "min_std"),
    ],
)
def test_invalid_cem_hyperparameters(algo_name: str, kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ALGOS[algo_name]("MlpPolicy", "CartPole-v1", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"buffer_size": 0}, "buffer_size"),
        ({"n_noise_samples": 0}, "n_noise_samples"),
        ({"policy_kwargs": {"ensemble_size": 0}}, "ensemble_size"),
        ({"adversarial_steps": -1}, "adversarial_steps"),
        ({"adversarial_steps": 2.5}, "adversarial_steps"),
        ({"imitation_states": "all"}, "imitation_states"),
        ({"imitation_target": "logits"}, "imitation_target"),
        ({"pretrain_steps": -1}, "pretrain_steps"),
        ({"batch_size": 50, "n_noise_samples": 100}, "batch_size \\(50\\) must be at least n_noise_samples"),
        ({"buffer_batches": 0}, "buffer_batches"),
        ({"imitation_loss": "l1"}, "imitation_loss"),
        ({"policy_kwargs": {"ensemble_method": "vote"}}, "ensemble_method"),
    ],
)
def test_invalid_cemah_hyperparameters(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        CEMAH("MlpPolicy", "CartPole-v1", **kwargs)


# --------------------------------------------------------------------------------------------------------------
# NaN from the env
# --------------------------------------------------------------------------------------------------------------


class NaNAfter(gym.Wrapper):
    """Returns a NaN observation or reward at the given step of the first episode (0: the reset observation)."""

    def __init__(self, env: gym.Env, what: str, at_step: int):
        super().__init__(env)
        self.what, self.at_step, self.steps = what, at_step, 0

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(**kwargs)
        if self.what == "observation" and self.at_step == 0:
            obs = np.full_like(obs, np.nan)
        return obs, info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps == self.at_step:
            if self.what == "observation":
                obs = obs.copy()
                obs[0] = np.nan
            else:
                reward = float("nan")
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize(("what", "at_step"), [("observation", 0), ("observation", 3), ("reward", 3)])
def test_nan_from_env_raises(algo_name: str, make_model: Callable, what: str, at_step: int) -> None:
    env = DummyVecEnv([lambda: NaNAfter(gym.make("CartPole-v1"), what, at_step)] * 2)
    model = make_model(algo_name, env)
    with pytest.raises(ValueError, match="NaN") as error:
        model.learn(1_000)
    assert what in str(error.value)


# --------------------------------------------------------------------------------------------------------------
# Bad model files
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def saved_model(algo_name: str, make_model: Callable, tmp_path: Path) -> Path:
    model = make_model(algo_name, "CartPole-v1")
    model.learn(200)
    path = tmp_path / "model.zip"
    model.save(path)
    return path


def test_load_missing_file(algo_name: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        ALGOS[algo_name].load(tmp_path / "nothing_here.zip")


def test_load_random_bytes(algo_name: str, tmp_path: Path) -> None:
    path = tmp_path / "garbage.zip"
    path.write_bytes(np.random.default_rng(0).bytes(4_000))
    with pytest.raises(ValueError, match="not a zip archive"):
        ALGOS[algo_name].load(path)


def test_load_truncated_file(algo_name: str, saved_model: Path) -> None:
    data = saved_model.read_bytes()
    saved_model.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(saved_model.name)):
        ALGOS[algo_name].load(saved_model)


def test_load_zip_with_corrupt_member(algo_name: str, saved_model: Path, tmp_path: Path) -> None:
    """A readable zip whose ``policy.pth`` is damaged."""
    corrupt = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(saved_model) as source, zipfile.ZipFile(corrupt, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            target.writestr(item, content[:10] if item.filename == "policy.pth" else content)
    with pytest.raises(ValueError, match=r"corrupt\.zip"):
        ALGOS[algo_name].load(corrupt)


def test_load_zip_that_is_not_a_model(algo_name: str, tmp_path: Path) -> None:
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match=r"other\.zip"):
        ALGOS[algo_name].load(path)


def test_load_ppo_file(algo_name: str, tmp_path: Path) -> None:
    PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64).save(tmp_path / "ppo")
    with pytest.raises(ValueError, match=f"not saved by {algo_name}"):
        ALGOS[algo_name].load(tmp_path / "ppo.zip")


@pytest.mark.parametrize(("saved_by", "loaded_by"), [("CEMAH", "CEM"), ("CEM", "CEMAH")])
def test_load_file_of_the_other_algorithm(saved_by: str, loaded_by: str, make_model: Callable, tmp_path: Path) -> None:
    make_model(saved_by, "CartPole-v1").save(tmp_path / "model")
    with pytest.raises(ValueError, match=rf"not saved by {loaded_by}\b.*{saved_by}"):
        ALGOS[loaded_by].load(tmp_path / "model.zip")


def test_failed_save_keeps_the_previous_file(
    algo_name: str, make_model: Callable, saved_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = saved_model.read_bytes()
    original = stable_baselines3.common.base_class.save_to_zip_file

    def fail_midway(save_path: Any, *args: Any, **kwargs: Any) -> None:
        original(save_path, *args, **kwargs)  # a complete file, then ...
        with open(save_path, "r+b") as file:  # ... damaged, and the disk is full
            file.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stable_baselines3.common.base_class, "save_to_zip_file", fail_midway)
    model = make_model(algo_name, "CartPole-v1", seed=5)
    with pytest.raises(OSError, match="No space left"):
        model.save(saved_model)
    monkeypatch.undo()

    assert saved_model.read_bytes() == before
    assert os.listdir(saved_model.parent) == [saved_model.name]  # no temporary file left behind
    ALGOS[algo_name].load(saved_model)


def test_load_elite_buffer_of_wrong_type(make_model: Callable, tmp_path: Path) -> None:
    save_to_pkl(tmp_path / "not_a_buffer.pkl", {"features": None})
    model = make_model("CEMAH", "CartPole-v1")
    with pytest.raises(ValueError, match="elite buffer"):
        model.load_elite_buffer(tmp_path / "not_a_buffer.pkl")
