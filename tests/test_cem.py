"""CEM: learning on real envs, the Gaussian update, and the SB3 contract (shared with CEM-AH, which subclasses CEM)."""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnMaxEpisodes,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecEnv

from sb3_cemah import CEM, CEMAH
from sb3_cemah.common.population import PopulationResult

ALGOS = {"CEM": CEM, "CEMAH": CEMAH}

# --------------------------------------------------------------------------------------------------------------
# Learning
# --------------------------------------------------------------------------------------------------------------


def test_cem_solves_cartpole() -> None:
    env = make_vec_env("CartPole-v1", n_envs=8, seed=0)
    model = CEM("MlpPolicy", env, seed=0, population_size=30, elite_frac=0.2).learn(60_000)
    eval_env = make_vec_env("CartPole-v1", n_envs=5, seed=123)
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    assert mean_return >= 475


def test_cem_improves_pendulum(tmp_path: Path, progress_csv: Callable) -> None:
    """The elites' mean return rises clearly from the first iteration (random weights) after a few iterations."""
    env = make_vec_env("Pendulum-v1", n_envs=8, seed=0)
    model = CEM("MlpPolicy", env, seed=0, population_size=30, elite_frac=0.2, policy_kwargs={"net_arch": []})
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(40_000)
    elite_returns = progress_csv(tmp_path)["train/elite_return_mean"]
    assert len(elite_returns) >= 6
    # Seeds 0-2 improve by 390-450 here; a single episode per candidate makes each iteration noisy.
    assert np.mean(elite_returns[-2:]) >= elite_returns[0] + 200


# --------------------------------------------------------------------------------------------------------------
# The Gaussian update (Algorithm 1)
# --------------------------------------------------------------------------------------------------------------


def make_train_input(model: CEM, returns: list[float]) -> tuple[th.Tensor, PopulationResult]:
    th.manual_seed(0)
    weights = th.randn(len(returns), model.policy.network.n_params)
    result = PopulationResult(returns=np.array(returns, dtype=float), episode_lengths=np.ones(len(returns)), completed=True)
    return weights, result


@pytest.fixture
def cem_for_train(cartpole_vec: Callable, tmp_path: Path) -> Callable[..., CEM]:
    def factory(**kwargs: object) -> CEM:
        kwargs = {"elite_frac": 0.2, **kwargs}
        model = CEM("MlpPolicy", cartpole_vec(n_envs=2), seed=0, population_size=10, **kwargs)  # type: ignore[arg-type]
        model.set_logger(configure(str(tmp_path), ["csv"]))
        model._n_iterations = 1
        return model

    return factory


def test_gaussian_is_refitted_to_the_elites(cem_for_train: Callable) -> None:
    model = cem_for_train(elite_frac=0.3)
    assert model.n_elite == 3
    weights, result = make_train_input(model, [5, 1, 9, 3, 7, 0, 2, 8, 4, 6])
    model.train(weights, result)
    elites = weights[[2, 7, 4]]
    th.testing.assert_close(model.policy.mean, elites.mean(dim=0))
    th.testing.assert_close(model.policy.std, elites.std(dim=0, unbiased=False))


def test_elite_ties_keep_lower_indices(cem_for_train: Callable) -> None:
    model = cem_for_train(elite_frac=0.2)
    _weights, result = make_train_input(model, [1, 3, 3, 3, 0, 3, 0, 0, 0, 0])
    np.testing.assert_array_equal(model.elite_indices(result), [1, 2])


def test_alive_bonus_offset_ranks_on_return_without_the_bonus(cem_for_train: Callable) -> None:
    model = cem_for_train(alive_bonus_offset=-1.0)
    weights, result = make_train_input(model, [100, 10, 60, 40, 5, 0, 0, 0, 0, 0])
    # Candidate 0 stood still for 100 steps at 1 per step; 2 and 3 moved and fell early.
    result.episode_lengths = np.array([100, 10, 20, 10, 5, 1, 1, 1, 1, 1], dtype=float)
    np.testing.assert_array_equal(model.elite_indices(result), [2, 3])
    model.train(weights, result)
    th.testing.assert_close(model.policy.mean, weights[[2, 3]].mean(dim=0))


def test_log_elite_weighting_refits_toward_the_best_elites(cem_for_train: Callable) -> None:
    model = cem_for_train(elite_frac=0.3, elite_weighting="log")
    weights, result = make_train_input(model, list(range(10)))
    model.train(weights, result)
    # Ranks 1, 2, 3 (candidates 9, 8, 7) weigh log(3.5) - log(i), normalised.
    recombination = np.log(3.5) - np.log([1.0, 2.0, 3.0])
    recombination /= recombination.sum()
    elites = weights[[9, 8, 7]].double().numpy()
    mean = recombination @ elites
    np.testing.assert_allclose(model.policy.mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(model.policy.std.numpy() ** 2, recombination @ (elites - mean) ** 2, rtol=1e-4)
    assert not np.allclose(mean, elites.mean(axis=0))


@pytest.mark.parametrize(("elite_frac", "expected"), [(0.15, 2), (0.25, 2), (0.26, 3), (1.0, 10)])
def test_n_elite(cem_for_train: Callable, elite_frac: float, expected: int) -> None:
    assert cem_for_train(elite_frac=elite_frac).n_elite == expected


@pytest.mark.parametrize(("population_size", "elite_frac"), [(8, 0.1), (10, 0.14), (100, 0.01), (2, 0.5)])
def test_single_elite_is_refused(algo_name: str, population_size: int, elite_frac: float) -> None:
    """One elite has no spread: the refitted std would be 0 and every later iteration would run the same policy."""
    with pytest.raises(ValueError, match=r"elite_frac \* population_size must be >= 1\.5.*two elites"):
        ALGOS[algo_name]("MlpPolicy", "CartPole-v1", population_size=population_size, elite_frac=elite_frac)


def test_min_std_floor(cem_for_train: Callable) -> None:
    model = cem_for_train(elite_frac=0.3, min_std=0.5)
    weights, result = make_train_input(model, list(range(10)))
    weights[7:] = weights[9]  # identical elites: zero variance
    model.train(weights, result)
    assert th.all(model.policy.std == 0.5)
    th.testing.assert_close(model.policy.mean, weights[9])


@pytest.mark.parametrize("min_std", ["lin_0.5", lambda progress_remaining: 0.5 * progress_remaining])
def test_min_std_schedule_follows_progress(cem_for_train: Callable, min_std: Any) -> None:
    # rl-zoo3's "lin_0.5" and an SB3 schedule both mean a floor of 0.5 * progress_remaining.
    model = cem_for_train(elite_frac=0.3, min_std=min_std)
    weights, result = make_train_input(model, list(range(10)))
    weights[7:] = weights[9]  # identical elites: zero variance, so that the std is the floor
    for progress_remaining in (1.0, 0.4):
        model._current_progress_remaining = progress_remaining
        model.train(weights, result)
        th.testing.assert_close(model.policy.std, th.full_like(model.policy.std, 0.5 * progress_remaining))


def test_sampled_weights_follow_the_gaussian(cem_for_train: Callable) -> None:
    model = cem_for_train()
    n_params = model.policy.network.n_params
    model.policy.mean.copy_(th.linspace(-3, 3, n_params))
    model.policy.std.copy_(th.linspace(0.1, 2, n_params))
    samples = model.policy.sample_weights(20_000)
    assert samples.shape == (20_000, n_params)
    th.testing.assert_close(samples.mean(dim=0), model.policy.mean, atol=0.05, rtol=0)
    th.testing.assert_close(samples.std(dim=0), model.policy.std, atol=0.05, rtol=0.02)


# --------------------------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------------------------


def test_deterministic_predict_uses_the_mean_policy(cartpole_vec: Callable, pendulum_vec: Callable) -> None:
    model = CEM("MlpPolicy", cartpole_vec(n_envs=1), seed=0)
    controller = th.zeros(model.policy.network.n_params)
    controller[:8].view(4, 2)[2:] = th.tensor([-1.0, 1.0])  # push towards the side the pole falls to
    model.policy.mean.copy_(controller)
    obs = np.array([[0, 0, 0.1, 0.2], [0, 0, -0.1, 0.05], [0, 0, 0.05, -0.3]], dtype=np.float32)
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, [1, 0, 0])

    box_model = CEM("MlpPolicy", pendulum_vec(n_envs=1), seed=0)  # actions in [-2, 2], linear policy on 3 features
    box_model.policy.mean.copy_(th.tensor([0.0, 0.5, 0.0, 0.1]))  # W = (0, 0.5, 0) on (cos, sin, velocity), b = 0.1
    obs = np.array([[1.0, 0.6, 0.0], [0.0, -1.0, 3.0]], dtype=np.float32)
    actions, _ = box_model.predict(obs, deterministic=True)
    expected = 2.0 * np.tanh(0.5 * obs[:, 1] + 0.1)
    np.testing.assert_allclose(actions[:, 0], expected, rtol=1e-6)


def test_stochastic_predict_samples_actions_of_the_mean_policy(cartpole_vec: Callable, pendulum_vec: Callable) -> None:
    model = CEM("MlpPolicy", cartpole_vec(n_envs=1), seed=0)
    policy_mean = th.zeros(model.policy.network.n_params)
    policy_mean[8:10] = th.tensor([0.0, 1.0])  # zero weights, biases (0, 1): logits tanh(0), tanh(1)
    model.policy.mean.copy_(policy_mean)
    obs = np.tile(np.array([[0.1, -0.2, 0.05, 0.3]], dtype=np.float32), (20_000, 1))
    actions, _ = model.predict(obs, deterministic=False)
    expected_p1 = 1.0 / (1.0 + np.exp(-np.tanh(1.0)))  # 0.68; a sampled weight vector (std 1) would not give it
    assert abs(actions.mean() - expected_p1) < 0.015
    assert set(model.predict(obs[:100], deterministic=True)[0]) == {1}

    box_model = CEM("MlpPolicy", pendulum_vec(n_envs=1), seed=0)
    box_model.policy.mean.copy_(th.tensor([0.0, 0.5, 0.0, 0.1]))
    box_obs = np.array([[1.0, 0.6, 0.0], [0.0, -1.0, 3.0]], dtype=np.float32)
    stochastic = np.stack([box_model.predict(box_obs, deterministic=False)[0] for _ in range(5)])
    np.testing.assert_array_equal(
        stochastic, np.broadcast_to(box_model.predict(box_obs, deterministic=True)[0], stochastic.shape)
    )


# --------------------------------------------------------------------------------------------------------------
# Save / load, parameters, set_env (both algorithms)
# --------------------------------------------------------------------------------------------------------------


def probe_observations(env: VecEnv, n: int = 32) -> np.ndarray:
    space = env.observation_space
    space.seed(7)
    return np.stack([space.sample() for _ in range(n)])


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_save_load_gives_identical_deterministic_actions(
    algo_name: str, env_id: str, make_model: Callable, tmp_path: Path
) -> None:
    env = make_vec_env(env_id, n_envs=4, seed=0)
    model = make_model(algo_name, env)
    model.learn(1_000)
    obs = probe_observations(env)
    actions, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "model")

    loaded = ALGOS[algo_name].load(tmp_path / "model.zip", env=env)
    loaded_actions, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(loaded_actions, actions)
    assert th.equal(loaded.policy.mean, model.policy.mean)
    assert th.equal(loaded.policy.std, model.policy.std)
    assert len(np.unique(actions.round(4), axis=0)) > 1  # not a trivial constant policy
    # without an env too
    np.testing.assert_array_equal(ALGOS[algo_name].load(tmp_path / "model").predict(obs, deterministic=True)[0], actions)


def test_save_to_and_load_from_a_file_object(algo_name: str, make_model: Callable, pendulum_vec: Callable) -> None:
    model = make_model(algo_name, pendulum_vec())
    model.learn(1_600)
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    loaded = ALGOS[algo_name].load(buffer)
    obs = probe_observations(model.get_env())
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_load_then_learn_continues_timesteps(
    algo_name: str, make_model: Callable, cartpole_vec: Callable, tmp_path: Path, progress_csv: Callable
) -> None:
    env = cartpole_vec(n_envs=4)
    model = make_model(algo_name, env)
    model.learn(1_000)
    saved_timesteps, saved_iterations = model.num_timesteps, model._n_iterations
    model.save(tmp_path / "model")

    loaded = ALGOS[algo_name].load(tmp_path / "model", env=cartpole_vec(n_envs=4, seed=1))
    assert loaded.num_timesteps == saved_timesteps
    loaded.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    loaded.learn(600, reset_num_timesteps=False)
    assert loaded.num_timesteps >= saved_timesteps + 600
    assert loaded._n_iterations > saved_iterations
    logged = progress_csv(tmp_path / "log")
    assert logged["time/total_timesteps"][0] > saved_timesteps
    assert logged["time/total_timesteps"][-1] == loaded.num_timesteps
    assert logged["train/iterations"][0] == saved_iterations + 1


class ReturnsRecordingCEM(CEM):
    """CEM that keeps every population's returns (what ranks the candidates)."""

    def train(self, weights: th.Tensor, result: PopulationResult) -> None:
        self.population_returns: list[np.ndarray] = [*getattr(self, "population_returns", []), result.returns]
        super().train(weights, result)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_resumed_run_equals_uninterrupted_run(env_id: str, tmp_path: Path) -> None:
    """learn, save, load, learn(reset_num_timesteps=False) gives the returns and weights of one uninterrupted run."""
    kwargs = {"population_size": 8, "elite_frac": 0.25, "seed": 5}
    # A budget of 1 step per call runs exactly one population (iteration) per learn() call.
    uninterrupted = ReturnsRecordingCEM("MlpPolicy", make_vec_env(env_id, n_envs=4, seed=0), **kwargs)
    for _ in range(4):
        uninterrupted.learn(1, reset_num_timesteps=False)

    first = ReturnsRecordingCEM("MlpPolicy", make_vec_env(env_id, n_envs=4, seed=0), **kwargs)
    for _ in range(2):
        first.learn(1, reset_num_timesteps=False)
    first.save(tmp_path / "model")
    th.manual_seed(123)  # whatever happens in between (other models, other seeds) must not matter
    np.random.seed(123)
    # Another env seed: the populations' env seeds derive from the run's seed and the iteration.
    resumed = ReturnsRecordingCEM.load(tmp_path / "model", env=make_vec_env(env_id, n_envs=4, seed=99))
    resumed.population_returns = []  # saved with the model: only the resumed populations
    for _ in range(2):
        resumed.learn(1, reset_num_timesteps=False)

    assert resumed._n_iterations == uninterrupted._n_iterations == 4
    assert resumed.num_timesteps == uninterrupted.num_timesteps
    returns = [*first.population_returns, *resumed.population_returns]
    np.testing.assert_array_equal(np.stack(returns), np.stack(uninterrupted.population_returns))
    assert th.equal(resumed.policy.mean, uninterrupted.policy.mean)
    assert th.equal(resumed.policy.std, uninterrupted.policy.std)
    assert len({tuple(population.round(3)) for population in returns}) == 4  # the populations differ


def test_get_and_set_parameters(algo_name: str, make_model: Callable, cartpole_vec: Callable) -> None:
    trained = make_model(algo_name, cartpole_vec())
    trained.learn(1_000)
    other = make_model(algo_name, cartpole_vec(), seed=1)
    obs = probe_observations(trained.get_env())
    params = trained.get_parameters()
    assert "policy" in params
    assert th.equal(params["policy"]["mean"], trained.policy.mean)

    other.set_parameters(params)
    assert th.equal(other.policy.mean, trained.policy.mean) and th.equal(other.policy.std, trained.policy.std)
    np.testing.assert_array_equal(other.predict(obs, deterministic=True)[0], trained.predict(obs, deterministic=True)[0])
    for name, value in trained.policy.state_dict().items():
        assert th.equal(other.policy.state_dict()[name], value), name


def test_set_env(algo_name: str, make_model: Callable, cartpole_vec: Callable, pendulum_vec: Callable) -> None:
    model = make_model(algo_name, cartpole_vec(n_envs=4))
    model.learn(500)
    new_env = cartpole_vec(n_envs=4, seed=3)
    model.set_env(new_env)
    assert model.get_env() is new_env
    seen = []

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            seen.append(self.training_env)
            return True

    model.learn(500, callback=Record())
    assert seen and all(env is new_env for env in seen)
    with pytest.raises(ValueError, match="space"):
        model.set_env(pendulum_vec(n_envs=4))


# --------------------------------------------------------------------------------------------------------------
# Reproducibility
# --------------------------------------------------------------------------------------------------------------


def seeded_run(
    algo: str, make_model: Callable, read_progress: Callable, folder: Path, seed: int
) -> tuple[CEM, dict[str, list[float]]]:
    model = make_model(algo, make_vec_env("CartPole-v1", n_envs=4, seed=0), seed=seed)
    model.set_logger(configure(str(folder), ["csv"]))
    model.learn(2_000)
    return model, read_progress(folder)


def test_same_seed_same_results_different_seed_differs(
    algo_name: str, make_model: Callable, progress_csv: Callable, tmp_path: Path
) -> None:
    first, first_log = seeded_run(algo_name, make_model, progress_csv, tmp_path / "a", seed=3)
    second, second_log = seeded_run(algo_name, make_model, progress_csv, tmp_path / "b", seed=3)
    other, other_log = seeded_run(algo_name, make_model, progress_csv, tmp_path / "c", seed=4)

    for name, value in first.policy.state_dict().items():
        assert th.equal(second.policy.state_dict()[name], value), name
    assert first.num_timesteps == second.num_timesteps
    for key in ["train/elite_return_mean", "train/return_mean", "rollout/ep_rew_mean", "time/total_timesteps"]:
        assert first_log[key] == second_log[key], key

    assert not th.equal(other.policy.mean, first.policy.mean)
    assert other_log["train/return_mean"] != first_log["train/return_mean"]


# --------------------------------------------------------------------------------------------------------------
# Callbacks and logging (the SB3 contract)
# --------------------------------------------------------------------------------------------------------------


class RecordingCallback(BaseCallback):
    """Checks the locals of every step and records when rollouts (populations) start."""

    def __init__(self, n_envs: int, stop_at: int | None = None):
        super().__init__()
        self.n_envs = n_envs
        self.stop_at = stop_at
        self.rollout_starts: list[int] = []
        self.episode_returns: list[float] = []
        self.training_ended = False

    def _on_rollout_start(self) -> None:
        self.rollout_starts.append(self.num_timesteps)

    def _on_step(self) -> bool:
        new_obs, rewards, dones, infos = (self.locals[key] for key in ("new_obs", "rewards", "dones", "infos"))
        assert new_obs.shape[0] == rewards.shape[0] == dones.shape[0] == len(infos) == self.n_envs
        assert self.num_timesteps == self.n_calls * self.n_envs
        assert self.model.num_timesteps == self.num_timesteps
        for done, info in zip(dones, infos, strict=True):
            assert bool(done) == ("episode" in info)  # Monitor reports each finished episode
            if done:
                self.episode_returns.append(info["episode"]["r"])
        return self.stop_at is None or self.num_timesteps < self.stop_at

    def _on_training_end(self) -> None:
        self.training_ended = True


def test_on_step_once_per_vecenv_step_and_bounded_overshoot(
    algo_name: str, make_model: Callable, cartpole_vec: Callable
) -> None:
    model = make_model(algo_name, cartpole_vec(n_envs=4))
    callback = RecordingCallback(n_envs=4)
    model.learn(3_000, callback=callback)

    assert callback.n_calls * 4 == model.num_timesteps >= 3_000
    # Every population started below the budget: the overshoot is at most the last population's steps.
    assert len(callback.rollout_starts) == model._n_iterations >= 2
    assert all(start < 3_000 for start in callback.rollout_starts)
    assert callback.training_ended
    assert model._episode_num == len(callback.episode_returns) > 0
    assert list(model.ep_info_buffer)[-1]["r"] == callback.episode_returns[-1]


@pytest.mark.parametrize("stop_at", [400, 1_000])
def test_callback_returning_false_stops_at_that_step(
    algo_name: str, make_model: Callable, cartpole_vec: Callable, stop_at: int
) -> None:
    model = make_model(algo_name, cartpole_vec(n_envs=4))
    callback = RecordingCallback(n_envs=4, stop_at=stop_at)
    model.learn(100_000, callback=callback)
    assert model.num_timesteps == stop_at
    assert callback.n_calls == stop_at // 4
    assert callback.training_ended


def test_stop_training_on_max_episodes(algo_name: str, make_model: Callable, cartpole_vec: Callable) -> None:
    model = make_model(algo_name, cartpole_vec(n_envs=4))
    model.learn(100_000, callback=StopTrainingOnMaxEpisodes(max_episodes=5))
    # SB3 counts max_episodes per env: 5 * 4 episodes in total; one VecEnv step ends at most 4 episodes.
    assert 20 <= model._episode_num < 24
    assert model.num_timesteps < 100_000


def test_eval_callback(algo_name: str, make_model: Callable, cartpole_vec: Callable, tmp_path: Path) -> None:
    model = make_model(algo_name, cartpole_vec(n_envs=4))
    eval_callback = EvalCallback(
        cartpole_vec(n_envs=2, seed=5),
        eval_freq=100,
        n_eval_episodes=2,
        log_path=str(tmp_path),
        best_model_save_path=str(tmp_path),
    )
    model.learn(2_000, callback=eval_callback)
    evaluations = np.load(tmp_path / "evaluations.npz")
    n_evals = model.num_timesteps // 400
    np.testing.assert_array_equal(evaluations["timesteps"], 400 * np.arange(1, n_evals + 1))
    assert evaluations["results"].shape == (n_evals, 2)
    assert (tmp_path / "best_model.zip").is_file()
    best = ALGOS[algo_name].load(tmp_path / "best_model.zip")
    assert best.policy.mean.shape == model.policy.mean.shape
    assert eval_callback.best_mean_reward == pytest.approx(evaluations["results"].mean(axis=1).max())


def test_checkpoint_callback(algo_name: str, make_model: Callable, cartpole_vec: Callable, tmp_path: Path) -> None:
    model = make_model(algo_name, cartpole_vec(n_envs=4))
    model.learn(1_500, callback=CheckpointCallback(save_freq=100, save_path=str(tmp_path), name_prefix="ckpt"))
    expected = {f"ckpt_{steps}_steps.zip" for steps in range(400, model.num_timesteps + 1, 400)}
    assert len(expected) >= 3
    assert set(os.listdir(tmp_path)) == expected  # no temporary file left behind either
    checkpoint = ALGOS[algo_name].load(tmp_path / "ckpt_400_steps.zip")
    assert checkpoint.num_timesteps == 400


@pytest.mark.filterwarnings("ignore::tqdm.TqdmExperimentalWarning")
def test_progress_bar(algo_name: str, make_model: Callable, cartpole_vec: Callable, capsys: pytest.CaptureFixture) -> None:
    model = make_model(algo_name, cartpole_vec(n_envs=4))
    model.learn(800, progress_bar=True)
    assert model.num_timesteps >= 800
    # The bar advanced by every slot's step: it ends at the model's step count (over the 800 of the last population).
    assert f"{model.num_timesteps}/800" in capsys.readouterr().out.replace(",", "")  # rich writes 1,488


def test_logger_writes_sb3_keys(
    algo_name: str, make_model: Callable, cartpole_vec: Callable, tmp_path: Path, progress_csv: Callable
) -> None:
    model = make_model(algo_name, cartpole_vec(n_envs=4))
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(2_000)
    logged = progress_csv(tmp_path)
    for key in ["rollout/ep_rew_mean", "rollout/ep_len_mean", "time/fps", "train/elite_return_mean", "train/std_mean"]:
        assert key in logged, key
        assert np.isfinite(logged[key]).all(), key
    assert len(logged["time/total_timesteps"]) == model._n_iterations
    assert logged["time/total_timesteps"][-1] == model.num_timesteps
    assert np.all(np.diff(logged["time/total_timesteps"]) > 0)
    episode_returns = [info["r"] for info in model.ep_info_buffer]
    assert logged["rollout/ep_rew_mean"][-1] == pytest.approx(np.mean(episode_returns))
    assert logged["train/std_mean"][-1] == pytest.approx(float(model.policy.std.mean()))


def test_tensorboard_log(algo_name: str, make_model: Callable, cartpole_vec: Callable, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = make_model(algo_name, cartpole_vec(n_envs=4), tensorboard_log=str(tmp_path))
    model.learn(1_000)
    events = glob.glob(str(tmp_path / "*_1" / "events.out.tfevents.*"))
    assert len(events) == 1, os.listdir(tmp_path)
    accumulator = EventAccumulator(events[0]).Reload()
    scalars = accumulator.Tags()["scalars"]
    for key in ["train/elite_return_mean", "rollout/ep_rew_mean", "time/fps"]:
        assert key in scalars, key
    assert accumulator.Scalars("train/std_mean")[-1].step == model.num_timesteps


def test_tensorboard_run_is_named_after_the_algorithm(
    algo_name: str, make_model: Callable, cartpole_vec: Callable, tmp_path: Path
) -> None:
    """As in SB3 (PPO_1, SAC_1, ...): CEM-AH runs must not be filed as CEM runs."""
    model = make_model(algo_name, cartpole_vec(n_envs=4), tensorboard_log=str(tmp_path))
    model.learn(300)
    assert os.listdir(tmp_path) == [f"{algo_name}_1"]


# --------------------------------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------------------------------


def test_explicit_cpu_device(algo_name: str, make_model: Callable, cartpole_vec: Callable) -> None:
    model = make_model(algo_name, cartpole_vec(), device="cpu")
    assert model.device == th.device("cpu")
    assert all(tensor.device == th.device("cpu") for tensor in model.policy.state_dict().values())
    initial_std = model.policy.std.clone()
    model.learn(300)
    assert not th.equal(model.policy.std, initial_std)  # trained
    assert all(tensor.device == th.device("cpu") for tensor in model.policy.state_dict().values())


@pytest.mark.parametrize("env_kind", ["id", "gym"])
def test_env_id_string_and_plain_gym_env(algo_name: str, make_model: Callable, env_kind: str) -> None:
    env = "Pendulum-v1" if env_kind == "id" else gym.make("Pendulum-v1")
    model = make_model(algo_name, env, population_size=4, elite_frac=0.5)
    assert isinstance(model.get_env(), VecEnv) and model.n_envs == 1
    model.learn(800)
    assert model.num_timesteps == 800  # 4 candidates x 200 steps, one slot
    assert model._n_iterations == 1
    action, _ = model.predict(model.get_env().reset(), deterministic=True)
    assert action.shape == (1, 1) and np.all(np.abs(action) <= 2.0)
