"""The Ray evaluator on a local two-CPU cluster: same results as itself and across worker counts, SB3 accounting,
a killed worker, CEM-AH's elite steps; and its errors, which need no cluster."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY_CEM_KWARGS, TINY_CEMAH_KWARGS
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.callbacks import BaseCallback, StopTrainingOnMaxEpisodes
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize

from sb3_cemah import CEM, CEMAH

ray = pytest.importorskip("ray")

# One cluster per test process: its start (~10 s on a loaded machine) is most of these tests' time.
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    # A new local cluster of 2 CPUs, whatever else runs on the machine (address=None would join one started by
    # another test module or by `ray start`).
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def ray_cem(algo: type[CEM] = CEM, num_workers: int = 2, env: Any = "CartPole-v1", **kwargs: Any) -> CEM:
    """A tiny model (CartPole by default) on the Ray evaluator; tasks of 2 candidates, so that results do not depend
    on the worker count."""
    settings: dict[str, Any] = {**(TINY_CEMAH_KWARGS if algo is CEMAH else TINY_CEM_KWARGS), "seed": 0}
    settings.update(kwargs)
    evaluator_kwargs = {"num_workers": num_workers, "candidates_per_task": 2, **settings.pop("evaluator_kwargs", {})}
    return algo("MlpPolicy", env, evaluator="ray", evaluator_kwargs=evaluator_kwargs, **settings)


class StepCounter(BaseCallback):
    """Counts on_step calls and the episodes they report; optionally kills a worker at the first call."""

    def __init__(self, kill_worker: bool = False):
        super().__init__()
        self.kill_worker = kill_worker
        self.episodes = 0

    def _on_step(self) -> bool:
        if self.kill_worker and self.n_calls == 1:
            ray.kill(self.model._evaluator.workers[0])
        self.episodes += int(np.sum(self.locals["dones"]))
        return True


@pytest.mark.usefixtures("ray_cluster")
def test_reproducible_across_runs_worker_counts_and_a_killed_worker() -> None:
    runs = []
    for num_workers, kill in ((2, False), (2, False), (1, False), (2, True)):
        model = ray_cem(num_workers=num_workers)
        counter = StepCounter(kill_worker=kill)
        model.learn(600, callback=counter)
        evaluator = model._evaluator
        replaced = evaluator.n_replaced_workers
        runs.append((model.policy.mean.clone(), model.num_timesteps, model._n_iterations, counter, replaced))
        assert evaluator.workers == []  # released when learn returned
    mean, timesteps, iterations, counter, _ = runs[0]
    for other_mean, other_timesteps, other_iterations, other_counter, _ in runs[1:]:
        assert th.equal(other_mean, mean)
        assert (other_timesteps, other_iterations, other_counter.episodes) == (timesteps, iterations, counter.episodes)
    # The killed worker was replaced and its task run again: the run equals the undisturbed ones (above).
    assert runs[-1][4] == 1 and runs[0][4] == 0
    # One on_step per n_envs (here 1) env steps; one reported episode per candidate; episode records in the buffer.
    assert counter.n_calls == timesteps
    assert counter.episodes == iterations * TINY_CEM_KWARGS["population_size"]
    assert len(runs[0][3].model.ep_info_buffer) == min(100, counter.episodes)
    assert iterations >= 2


@pytest.mark.usefixtures("ray_cluster")
def test_num_timesteps_are_the_workers_steps_and_callbacks_stop_the_run() -> None:
    model = ray_cem()
    model.learn(1)  # one population
    evaluator = model._evaluator
    # Idle slots aside (one slot per worker here: none), the workers' steps are the candidates' episode lengths.
    assert model.num_timesteps == sum(info["l"] for info in model.ep_info_buffer)
    stop = StopTrainingOnMaxEpisodes(max_episodes=3)
    model.learn(100_000, callback=stop, reset_num_timesteps=False)
    # The first task's episodes (2 candidates) come with its replayed steps; the run stops within the next task.
    assert model._n_iterations == 1
    assert stop.n_episodes >= 3
    assert evaluator.workers == []  # released when learn returned


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize("imitation_states", ["elite", "population"])
def test_cemah_fetches_the_steps_it_imitates_only(imitation_states: str) -> None:
    """The elites' steps (the paper's tuples), or every candidate's when the elites label the population's states."""
    model = ray_cem(CEMAH, imitation_states=imitation_states)
    records: list[Any] = []
    train = model.train

    def keep(weights: th.Tensor, result: Any) -> None:
        records.append(result)
        train(weights, result)

    model.train = keep  # type: ignore[method-assign]
    model.learn(1)
    (result,) = records
    recorded = model.elite_indices(result) if imitation_states == "elite" else np.arange(len(result.returns))
    assert set(np.unique(result.step_candidates)) == set(recorded.tolist())
    assert result.observations.shape[0] == result.step_candidates.shape[0] == result.actions.shape[0]
    assert result.observations.shape[0] == int(np.sum(result.episode_lengths[recorded]))
    assert model.elite_buffer.size > 0
    assert model._evaluator.workers == []


@pytest.mark.usefixtures("ray_cluster")
def test_vec_normalize_statistics_come_from_the_workers_observations() -> None:
    """rl-zoo3's ``normalize: true``: the head's statistics grow by the moments of the workers' raw observations."""
    statistics = []
    records: list[Any] = []  # the populations' results, as train() gets them
    for algo in (CEM, CEM, CEMAH):
        env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1, seed=0), norm_reward=False)
        model = ray_cem(algo, env=env)
        train = model.train

        def keep(weights: th.Tensor, result: Any, train: Any = train) -> None:
            records.append(result)
            train(weights, result)

        model.train = keep  # type: ignore[method-assign]
        model.learn(1)  # one population: 8 episodes of Pendulum's 200 steps, in 4 tasks of 2 candidates
        assert model._evaluator.workers == []
        statistics.append(env.obs_rms)
    cem_statistics = statistics[0]
    # Every step's observation, each task's first reset and the head's own reset at learn() (each moment carries
    # RunningMeanStd's 1e-4 pseudo-count).
    assert cem_statistics.count == pytest.approx(8 * 200 + 4 + 1, abs=1e-2)
    # Pendulum observes (cos, sin, angular velocity): E[cos^2] + E[sin^2] = 1 holds for real observations only.
    second_moments = cem_statistics.var + cem_statistics.mean**2
    assert second_moments[0] + second_moments[1] == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_array_equal(statistics[1].mean, cem_statistics.mean)  # reproducible
    np.testing.assert_array_equal(statistics[1].var, cem_statistics.var)
    # CEM-AH gets the raw observations of the steps it imitates beside the normalised ones the candidates saw, with
    # the head's statistics of before the population: those of its one reset observation (the env has not stepped).
    (result,) = records[-1:]
    before = RunningMeanStd(shape=(3,))
    before.update(env.get_original_obs())
    expected = np.clip((result.original_observations - before.mean) / np.sqrt(before.var + env.epsilon), -10, 10)
    np.testing.assert_allclose(result.observations, expected, rtol=1e-4, atol=1e-4)
    assert model.elite_buffer.size > 0


@pytest.mark.usefixtures("ray_cluster")
def test_save_and_load_do_not_need_ray(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ray_cem()
    model.learn(1)
    assert model._evaluator.workers == []
    model.save(tmp_path / "model.zip")
    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    loaded = CEM.load(tmp_path / "model.zip")
    assert loaded.evaluator == "ray" and loaded._evaluator is None
    action, _ = loaded.predict(np.zeros(4, dtype=np.float32), deterministic=True)
    assert th.equal(loaded.policy.mean, model.policy.mean) and action in (0, 1)
    # Continuing on this machine without Ray: the local evaluator, by name.
    continued = CEM.load(tmp_path / "model.zip", env=make_vec_env("CartPole-v1"), evaluator="local", evaluator_kwargs=None)
    continued.learn(1, reset_num_timesteps=False)


# ----------------------------------------------------------------------------------------------------------------------
# Errors: at construction, no cluster needed
# ----------------------------------------------------------------------------------------------------------------------


def test_without_ray_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match=r'pip install "sb3-cemah\[ray\]"'):
        CEM("MlpPolicy", "CartPole-v1", evaluator="ray")


def test_unknown_evaluator_and_kwargs() -> None:
    with pytest.raises(ValueError, match="Unknown evaluator 'dask'"):
        CEM("MlpPolicy", "CartPole-v1", evaluator="dask")
    with pytest.raises(ValueError, match="local evaluator takes no evaluator_kwargs"):
        CEM("MlpPolicy", "CartPole-v1", evaluator_kwargs={"num_workers": 2})
    with pytest.raises(ValueError, match=r"Unknown evaluator_kwargs for the Ray evaluator: num_cpus .valid: num_workers"):
        CEM("MlpPolicy", "CartPole-v1", evaluator="ray", evaluator_kwargs={"num_cpus": 2})
    with pytest.raises(ValueError, match="num_workers must be an int >= 1"):
        CEM("MlpPolicy", "CartPole-v1", evaluator="ray", evaluator_kwargs={"num_workers": 0})


def test_what_cannot_be_rebuilt_on_a_worker_fails_at_construction() -> None:
    lock = threading.Lock()

    def unpicklable_factory() -> gym.Env:
        with lock:  # a closure over a lock: cloudpickle cannot send it
            return gym.make("CartPole-v1")

    with pytest.raises(ValueError, match="cannot send evaluator_kwargs env_factory"):
        CEM("MlpPolicy", "CartPole-v1", evaluator="ray", evaluator_kwargs={"env_factory": unpicklable_factory})

    no_spec = DummyVecEnv([lambda: TimeLimit(gym.make("CartPole-v1").unwrapped, 500)])  # built without gym.make's spec
    no_spec.envs[0].unwrapped.spec = None
    with pytest.raises(ValueError, match="no spec"):
        CEM("MlpPolicy", no_spec, evaluator="ray")

    with pytest.raises(ValueError, match="VecFrameStack-wrapped"):
        CEM("MlpPolicy", VecFrameStack(make_vec_env("CartPole-v1"), 2), evaluator="ray")

    with pytest.raises(ValueError, match="spaces"):
        CEM("MlpPolicy", "CartPole-v1", evaluator="ray", evaluator_kwargs={"env_id": "MountainCar-v0"})
