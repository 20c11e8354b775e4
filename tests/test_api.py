"""The public API around the algorithms: policies saved on their own, the paper's preset, envs whose episodes never
end, the learn warning, evaluator objects and the old save format."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_cemah import CEM, CEMAH, QtOpt, QtOptDDPG
from sb3_cemah.cemah import PAPER_PRESET
from sb3_cemah.common.evaluators import LocalEvaluator
from sb3_cemah.zoo import hyperparams_file


@pytest.mark.parametrize(
    ("algo", "env_id"),
    [(CEM, "CartPole-v1"), (CEMAH, "CartPole-v1"), (CEMAH, "Pendulum-v1"), (QtOpt, "Pendulum-v1"), (QtOptDDPG, "Pendulum-v1")],
)
def test_policy_save_and_load_round_trip(algo: Any, env_id: str, tmp_path: Path) -> None:
    """SB3's policy contract: ``policy.save`` then ``type(policy).load`` acts identically."""
    model = algo("MlpPolicy", env_id, seed=0)
    model.policy.save(tmp_path / "policy.pth")
    loaded = type(model.policy).load(tmp_path / "policy.pth")
    obs = np.stack([model.observation_space.sample() for _ in range(16)])
    th.manual_seed(1)  # Qt-Opt's action CEM samples
    expected = model.policy.predict(obs, deterministic=True)[0]
    th.manual_seed(1)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)


def test_paper_preset_builds_and_learns() -> None:
    """The paper's Algorithm 2 in one step: MSE on the elites' actions, the discriminator on, K = 10."""
    model = CEMAH("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=0), seed=0, population_size=20, **PAPER_PRESET)
    assert model.adversary is not None and model.policy.ensemble_size == 10
    assert model.policy.ensemble_method == "softmax_sum" and model.imitation_states == "elite"
    model.learn(20_000)
    returns = [info["r"] for info in model.ep_info_buffer]
    assert np.mean(returns[-20:]) > 2 * np.mean(returns[:20])  # the guide improves
    assert np.isfinite(model.logger.name_to_value.get("train/discriminator_loss", 0.0))


def test_paper_yml_is_the_preset_on_every_env() -> None:
    default = yaml.safe_load(hyperparams_file("cemah").read_text())
    paper = yaml.safe_load(hyperparams_file("cemah_paper").read_text())
    assert set(paper) == set(default) - {"default"}
    for entry in paper.values():
        assert {key: entry[key] for key in PAPER_PRESET if key != "policy_kwargs"} == {
            key: value for key, value in PAPER_PRESET.items() if key != "policy_kwargs"
        }
        assert "ensemble_size=10" in entry["policy_kwargs"]


class EndlessEnv(gym.Env):
    """Episodes that never end."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(2, np.float32), 1.0, False, False, {}


@pytest.mark.parametrize("algo", [CEM, CEMAH])
def test_env_whose_episodes_never_end_is_refused_with_the_fix(algo: Any) -> None:
    with pytest.raises(ValueError, match=r"nothing bounds this env's episodes.*TimeLimit"):
        algo("MlpPolicy", EndlessEnv())
    model = algo("MlpPolicy", TimeLimit(EndlessEnv(), max_episode_steps=4), population_size=4, elite_frac=0.5)
    with pytest.warns(UserWarning, match=r"learn\(3\) ran 16 env steps: one population .* takes 16"):
        model.learn(3)
    assert model.num_timesteps == 16


def test_no_warning_when_learn_asks_for_several_populations() -> None:
    model = CEM("MlpPolicy", "CartPole-v1", population_size=4, elite_frac=0.5, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.learn(2_000)


def test_evaluator_object_is_used_and_not_saved(tmp_path: Path) -> None:
    env = DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2)
    evaluator = LocalEvaluator(env)
    model = CEM("MlpPolicy", env, evaluator=evaluator, population_size=4, elite_frac=0.5, seed=0)
    assert model._population_evaluator() is evaluator
    model.learn(500)
    model.save(tmp_path / "model")
    assert CEM.load(tmp_path / "model").evaluator == "local"
    with pytest.raises(ValueError, match="runs another env"):
        CEM("MlpPolicy", DummyVecEnv([lambda: gym.make("CartPole-v1")]), evaluator=evaluator)
    with pytest.raises(TypeError, match="evaluator must be"):
        CEM("MlpPolicy", env, evaluator=object())  # type: ignore[arg-type]


def test_cemah_file_of_the_previous_version_is_refused_with_the_reason(tmp_path: Path) -> None:
    model = CEMAH("MlpPolicy", "CartPole-v1", population_size=4, elite_frac=0.5)
    model.save(tmp_path / "model.zip")
    # Rewrite the archive's data as 0.1 wrote it: no save format.
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(contents["data"])
    del data["_save_format"]
    contents["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(tmp_path / "old.zip", "w") as archive:
        for name, content in contents.items():
            archive.writestr(name, content)
    with pytest.raises(ValueError, match=r"saved by sb3-cemah 0.1.*cannot restore it"):
        CEMAH.load(tmp_path / "old.zip")
    assert (tmp_path / "old.zip").is_file()  # the file itself is left alone


DATA = Path(__file__).resolve().parent / "data"


def test_cem_file_of_the_previous_version_loads_and_trains_on() -> None:
    """``tests/data/cem_0.1.zip`` was saved by sb3-cemah 0.1 (CartPole, population 4, 300 steps)."""
    model = CEM.load(DATA / "cem_0.1.zip", env=gym.make("CartPole-v1"))
    obs = np.array([[0.01, 0.02, 0.03, 0.04]], dtype=np.float32)
    assert model.predict(obs, deterministic=True)[0].shape == (1,)
    start = model.num_timesteps
    model.learn(300, reset_num_timesteps=False)
    assert model.num_timesteps > start and model.n_iterations > 0


def test_cemah_file_of_the_previous_version_says_why_it_cannot_load() -> None:
    with pytest.raises(ValueError, match=r"saved by sb3-cemah 0\.1.*pip install sb3-cemah==0\.1"):
        CEMAH.load(DATA / "cemah_0.1.zip")


def test_learn_runs_on_one_torch_thread_and_restores_the_callers_count(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    model = CEMAH("MlpPolicy", "CartPole-v1", population_size=4, elite_frac=0.5, pretrain_steps=2, seed=0)
    model._overlap_imitation = False  # in this process, where it can be watched (its own process sets one thread too)
    train_generator = model._train_generator

    def recording(*args: Any) -> dict[str, float]:
        seen.append(th.get_num_threads())
        return train_generator(*args)

    monkeypatch.setattr(model, "_train_generator", recording)
    previous = th.get_num_threads()
    th.set_num_threads(2)
    try:
        model.learn(300)
        assert seen and set(seen) == {1}
        assert th.get_num_threads() == 2
    finally:
        th.set_num_threads(previous)


@pytest.mark.parametrize("algorithm_class", [CEM, CEMAH])
def test_predict_runs_on_one_torch_thread_and_restores_the_callers_count(
    algorithm_class: type[CEM], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    model = algorithm_class("MlpPolicy", "CartPole-v1", seed=0)
    predict = model.policy._predict

    def recording(*args: Any, **kwargs: Any) -> th.Tensor:
        seen.append(th.get_num_threads())
        return predict(*args, **kwargs)

    monkeypatch.setattr(model.policy, "_predict", recording)
    previous = th.get_num_threads()
    th.set_num_threads(2)
    try:
        model.predict(np.zeros(4, dtype=np.float32), deterministic=True)
        assert seen == [1]
        assert th.get_num_threads() == 2
    finally:
        th.set_num_threads(previous)
