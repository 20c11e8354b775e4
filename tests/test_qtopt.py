"""Qt-Opt and Qt-Opt+DDPG: the batched CEM argmax, learning on Pendulum, save/load, the SB3 contract, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th
from conftest import SpacesEnv
from gymnasium import spaces
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from sb3_cemah import QtOpt, QtOptDDPG
from sb3_cemah.qtopt import ActionCEM

ALGOS = {"QtOpt": QtOpt, "QtOptDDPG": QtOptDDPG}
#: Small enough that a gradient step takes about a millisecond.
TINY_KWARGS: dict[str, Any] = {
    "learning_starts": 50,
    "batch_size": 16,
    "cem_samples": 16,
    "cem_elites": 3,
    "policy_kwargs": {"net_arch": [16]},
}


@pytest.fixture(params=list(ALGOS))
def algo(request: pytest.FixtureRequest) -> type[QtOpt]:
    """Runs a test for both algorithms."""
    return ALGOS[request.param]


# --- The batched CEM ----------------------------------------------------------------------------------


def quadratic(maximisers: th.Tensor, calls: list[tuple[int, ...]]) -> Callable[[th.Tensor], th.Tensor]:
    """``Q(s, a) = -||a - maximisers[s]||^2``, recording the shape of every call in ``calls``."""

    def objective(actions: th.Tensor) -> th.Tensor:
        calls.append(tuple(actions.shape))
        return -((actions - maximisers.unsqueeze(1)) ** 2).sum(dim=-1)

    return objective


def test_cem_finds_the_maximiser_of_each_state() -> None:
    th.manual_seed(0)
    maximisers = th.rand(50, 3) * 1.6 - 0.8  # one per state, inside [-1, 1]^3
    box = spaces.Box(-1.0, 1.0, (3,))
    calls: list[tuple[int, ...]] = []
    found = ActionCEM(n_samples=64, n_elites=6, n_iterations=8).maximise(quadratic(maximisers, calls), 50, box)
    assert found.shape == (50, 3)
    assert (found - maximisers).abs().max() < 0.05
    # One objective call per iteration, over all states at once.
    assert calls == [(50, 64, 3)] * 8
    # Qt-Opt's defaults (2 iterations): close, and much closer than the initial N(0, I) guess.
    coarse = ActionCEM().maximise(quadratic(maximisers, []), 50, box)
    assert (coarse - maximisers).norm(dim=1).mean() < 0.5 * maximisers.norm(dim=1).mean()


def test_cem_clips_box_actions_to_the_bounds() -> None:
    # The maximiser lies outside [-1, 1]: the best feasible action is the corner.
    maximisers = th.full((4, 2), 3.0)
    found = ActionCEM().maximise(quadratic(maximisers, []), 4, spaces.Box(-1.0, 1.0, (2,)))
    assert th.equal(found, th.ones(4, 2))


def test_cem_over_discrete_probabilities() -> None:
    # Q(s, p) = p . values[s]: the best probability vector puts most mass on the best action of each state.
    th.manual_seed(0)
    values = th.randn(20, 4)
    found = ActionCEM(n_iterations=4).maximise(lambda p: (p * values.unsqueeze(1)).sum(-1), 20, spaces.Discrete(4))
    assert th.allclose(found.sum(dim=1), th.ones(20))
    assert th.equal(found.argmax(dim=1), values.argmax(dim=1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_elites": 10, "n_samples": 8}, "cem_elites must be between 1 and cem_samples=8"),
        ({"n_elites": 0}, "cem_elites must be between 1"),
        ({"n_iterations": 0}, "cem_iterations must be >= 1"),
    ],
)
def test_cem_rejects_bad_settings(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ActionCEM(**kwargs)


# --- Learning ------------------------------------------------------------------------------------------


def test_qtopt_improves_pendulum(pendulum_vec: Callable[..., VecEnv]) -> None:
    # Measured (seeds 0 and 1): about -1300 untrained, -202 and -176 after 3000 steps (-768 and -263 after 2000).
    model = QtOpt(
        "MlpPolicy", pendulum_vec(n_envs=1), learning_starts=200, batch_size=64, gamma=0.98, tau=0.02,
        cem_samples=32, cem_elites=4, policy_kwargs={"net_arch": [64, 64]}, seed=0,
    )  # fmt: skip
    untrained, _ = evaluate_policy(model, pendulum_vec(n_envs=1, seed=100), n_eval_episodes=5)
    assert untrained < -900
    model.learn(3000)
    trained, _ = evaluate_policy(model, pendulum_vec(n_envs=1, seed=100), n_eval_episodes=5)
    assert trained > -600, f"{untrained} -> {trained}"


# --- The SB3 contract ------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_save_load_reproduces_predict(
    algo: type[QtOpt], env_id: str, tmp_path: Path, pendulum_vec: Callable, cartpole_vec: Callable
) -> None:
    make_env = pendulum_vec if env_id == "Pendulum-v1" else cartpole_vec
    model = algo("MlpPolicy", make_env(n_envs=2), seed=0, **TINY_KWARGS).learn(200)
    logged = model.logger.name_to_value
    assert "train/critic_loss" in logged and ("train/actor_loss" in logged) == (algo is QtOptDDPG)
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", env=make_env(n_envs=2))
    observations = np.stack([make_env(n_envs=1, seed=seed).reset() for seed in range(8)]).squeeze(1)
    for deterministic in (True, False):
        # The CEM samples from torch's RNG: the same seed gives the same actions.
        th.manual_seed(1)
        actions, _ = model.predict(observations, deterministic=deterministic)
        th.manual_seed(1)
        loaded_actions, _ = loaded.predict(observations, deterministic=deterministic)
        np.testing.assert_array_equal(actions, loaded_actions)
        assert model.action_space.contains(actions[0])
    assert loaded.policy.cem == model.policy.cem and loaded.num_timesteps == 200


def test_ddpg_actor_acts_without_the_cem(pendulum_vec: Callable) -> None:
    model = QtOptDDPG("MlpPolicy", pendulum_vec(n_envs=1), seed=0, **TINY_KWARGS).learn(100)
    observations = np.stack([pendulum_vec(n_envs=1, seed=seed).reset() for seed in range(4)]).squeeze(1)
    # No RNG involved: the same actions without reseeding, and they are the actor's rescaled outputs.
    first, _ = model.predict(observations)
    second, _ = model.predict(observations)
    np.testing.assert_array_equal(first, second)
    with th.no_grad():
        actor_output = model.actor(th.as_tensor(observations)).numpy()
    np.testing.assert_allclose(first, model.policy.unscale_action(actor_output), rtol=1e-6)


def test_discrete_buffer_stores_probabilities(cartpole_vec: Callable) -> None:
    model = QtOpt("MlpPolicy", cartpole_vec(n_envs=2), seed=0, **TINY_KWARGS).learn(100)
    stored = model.replay_buffer.actions[: model.replay_buffer.pos]  # type: ignore[union-attr]
    assert stored.shape == (50, 2, 2)
    np.testing.assert_allclose(stored.sum(axis=-1), 1.0, rtol=1e-5)


def test_learning_starts_train_freq_and_gradient_steps(pendulum_vec: Callable) -> None:
    kwargs = {**TINY_KWARGS, "learning_starts": 40, "train_freq": 4, "gradient_steps": 2}
    model = QtOpt("MlpPolicy", pendulum_vec(n_envs=1), seed=0, **kwargs).learn(100)
    # Rollouts of 4 steps, followed by two gradient steps once more than 40 steps are collected (SB3's rule):
    # after steps 44, 48, ..., 100.
    assert model._n_updates == 2 * len(range(44, 101, 4))


def test_same_seed_same_model(pendulum_vec: Callable) -> None:
    def train() -> np.ndarray:
        model = QtOpt("MlpPolicy", pendulum_vec(n_envs=1), seed=3, **TINY_KWARGS).learn(120)
        return th.nn.utils.parameters_to_vector(model.critic.parameters()).detach().numpy()

    np.testing.assert_array_equal(train(), train())


# --- Errors a user can act on ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action_space", "message"),
    [
        (spaces.MultiDiscrete([2, 3]), "does not support the action space MultiDiscrete"),
        (spaces.Box(-np.inf, np.inf, (2,)), "must be finite"),
        (spaces.Box(-1.0, 1.0, (2, 2)), "one-dimensional bounded Box"),
    ],
)
def test_unsupported_action_spaces(algo: type[QtOpt], action_space: spaces.Space, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        algo("MlpPolicy", SpacesEnv(spaces.Box(-1.0, 1.0, (3,)), action_space))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cem_samples": 4, "cem_elites": 6}, "cem_elites must be between 1 and cem_samples=4"),
        ({"tau": 0.0}, "tau must be in"),
        ({"n_steps": 3}, "n_steps > 1 is not supported with a Discrete action space"),
    ],
)
def test_bad_hyperparameters(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QtOpt("MlpPolicy", "CartPole-v1", **kwargs)
