"""The Ray evaluator's workers: what runs on a Ray actor (its env slots and a flat policy), the messages between the
head and the workers, and how a worker rebuilds the training env (see :mod:`sb3_cemah.common.ray_evaluator`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper, VecNormalize
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from sb3_cemah.common.flat_policy import FlatPolicy
from sb3_cemah.common.population import PopulationResult, evaluate_population

__all__ = [
    "NormalizeSettings",
    "ObservationMoments",
    "PopulationInputs",
    "PopulationWorker",
    "RecordedSteps",
    "Task",
    "TaskResult",
    "make_env_factory",
]

# The wrapper every SB3 VecEnv's envs carry (make_vec_env, BaseAlgorithm): the workers add their own.
_MONITOR_ENTRY_POINT = f"{Monitor.__module__}:{Monitor.__name__}"


@dataclass(frozen=True)
class Task:
    """Consecutive candidates of one population, evaluated together on one worker."""

    population: int
    index: int
    candidates: np.ndarray
    seed: int
    n_episodes: int
    deterministic: bool


@dataclass(frozen=True)
class PopulationInputs:
    """
    What every task of a population reads, put in Ray's object store once.

    :param weights: The candidates' flat weights, shape ``(n_candidates, n_params)``.
    :param obs_rms: The head's ``VecNormalize`` observation statistics, None without observation normalisation.
    """

    weights: np.ndarray
    obs_rms: RunningMeanStd | None


@dataclass(frozen=True)
class NormalizeSettings:
    """The head's ``VecNormalize`` settings the workers normalise observations with."""

    clip_obs: float
    epsilon: float


class ObservationMoments(VecEnvWrapper):
    """Running moments of the raw observations of every reset and step (what ``VecNormalize`` updates its statistics with)."""

    def __init__(self, venv: VecEnv):
        super().__init__(venv)
        self.restart()

    def restart(self) -> None:
        """Forget the observations seen so far (a new task)."""
        self.moments = RunningMeanStd(shape=self.observation_space.shape or ())

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        assert isinstance(obs, np.ndarray), "Dict observations are not supported"
        self.moments.update(obs)
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        assert isinstance(obs, np.ndarray), "Dict observations are not supported"
        self.moments.update(obs)
        return obs, rewards, dones, infos


@dataclass
class TaskResult:
    """
    What a worker returns for a task.

    :param returns: Mean return of each of the task's candidates, shape ``(n_task_candidates,)``.
    :param episode_lengths: Their mean episode lengths, shape ``(n_task_candidates,)``.
    :param env_steps: Env steps the task took (every slot of every VecEnv step, idle slots included).
    :param episodes: The Monitor records (``r``, ``l``, ``t``) of the candidates' episodes.
    :param obs_moments: Moments of the raw observations the task saw, with observation normalisation (else None).
    """

    returns: np.ndarray
    episode_lengths: np.ndarray
    env_steps: int
    episodes: list[dict[str, Any]]
    obs_moments: RunningMeanStd | None = None


@dataclass
class RecordedSteps:
    """
    Recorded steps of some candidates of a task.

    :param observations: As the candidates saw them, shape ``(n, *obs_shape)``.
    :param actions: The actions taken, shape ``(n, ...)``.
    :param candidates: Population-wide index of each step's candidate, shape ``(n,)``.
    :param original_observations: The raw observations under observation normalisation (else None).
    """

    observations: np.ndarray
    actions: th.Tensor
    candidates: np.ndarray
    original_observations: np.ndarray | None


class PopulationWorker:
    """
    A Ray actor's state: ``n_envs`` env slots (``DummyVecEnv`` of Monitor-wrapped envs, under a frozen
    ``VecNormalize`` when the head normalises observations) and a flat policy with the head's network layout and
    conversions.

    :param make_env: Builds one env (called on the worker).
    :param n_envs: Env slots of the worker.
    :param policy: The conversions and layout (a :class:`FlatPolicy`; it has no weights of its own to keep in sync).
    :param normalize: The head's observation normalisation, None without.
    """

    def __init__(
        self, make_env: Callable[[], gym.Env], n_envs: int, policy: FlatPolicy, normalize: NormalizeSettings | None = None
    ):
        # One intra-op thread: a worker owns one CPU, and these networks are too small to split.
        th.set_num_threads(1)
        self.env: VecEnv = DummyVecEnv([lambda: Monitor(make_env())] * n_envs)
        self.moments: ObservationMoments | None = None
        if normalize is not None:
            self.moments = ObservationMoments(self.env)
            # training=False: the statistics are the head's, set before every task.
            self.env = VecNormalize(
                self.moments,
                training=False,
                norm_obs=True,
                norm_reward=False,
                clip_obs=normalize.clip_obs,
                epsilon=normalize.epsilon,
            )
        self.policy = policy
        self._recorded: dict[tuple[int, int], PopulationResult] = {}

    def ready(self) -> bool:
        """Returns once the envs are built: the head waits on it to surface construction errors."""
        return True

    def evaluate(self, inputs: PopulationInputs, task: Task, record: bool) -> TaskResult:
        """Evaluate the task's candidates; with ``record``, keep their steps for :meth:`recorded`."""
        if self._recorded and next(iter(self._recorded))[0] != task.population:
            self._recorded.clear()  # a new population: the last one's steps are no longer asked for
        episodes: list[dict[str, Any]] = []
        steps = [0]

        def count(new_obs: np.ndarray, rewards: np.ndarray, dones: np.ndarray, infos: list, counted: np.ndarray) -> bool:
            steps[0] += len(dones)
            episodes.extend(info["episode"] for info, done in zip(infos, dones & counted, strict=True) if done)
            return True

        if self.moments is not None:
            assert isinstance(self.env, VecNormalize) and inputs.obs_rms is not None
            self.env.obs_rms = inputs.obs_rms.copy()  # type: ignore[assignment]  # Box observations: not a dict
            self.moments.restart()
        self.env.seed(task.seed)
        with th.random.fork_rng():
            th.manual_seed(task.seed)  # stochastic candidates sample their actions with torch's RNG
            result = evaluate_population(
                self.env,
                self.policy,
                th.from_numpy(inputs.weights[task.candidates]),
                n_episodes=task.n_episodes,
                deterministic=task.deterministic,
                step_hook=count,
                record=record,
            )
        if record:
            self._recorded[(task.population, task.index)] = result
        moments = None if self.moments is None else self.moments.moments
        return TaskResult(result.returns, result.episode_lengths, steps[0], episodes, moments)

    def recorded(self, inputs: PopulationInputs, task: Task, candidates: np.ndarray) -> RecordedSteps:
        """
        The recorded steps of some of the task's candidates (population-wide indices), run again if this worker
        does not hold them (it replaced one that died): the task's outcome is the same on any worker.
        """
        result = self._recorded.get((task.population, task.index))
        if result is None:
            self.evaluate(inputs, task, record=True)
            result = self._recorded[(task.population, task.index)]
        assert result.observations is not None and result.actions is not None and result.step_candidates is not None
        step_candidates = task.candidates[result.step_candidates]
        keep = np.isin(step_candidates, candidates)
        original = None if result.original_observations is None else result.original_observations[keep]
        return RecordedSteps(result.observations[keep], result.actions[th.from_numpy(keep)], step_candidates[keep], original)


def make_env_factory(
    env: VecEnv,
    env_id: str | None,
    env_kwargs: dict[str, Any] | None,
    env_factory: Callable[[], gym.Env] | None,
) -> Callable[[], gym.Env]:
    """The workers' env builder (see :class:`RayEvaluator`), checked by pickling and building it once here."""
    if env_factory is not None:
        source = "evaluator_kwargs env_factory"
        factory = env_factory
    elif env_id is not None:
        source = f"env_id {env_id!r}"
        factory = functools.partial(gym.make, gym.spec(env_id), **(env_kwargs or {}))
    else:
        if env_kwargs:
            raise ValueError("evaluator_kwargs: env_kwargs needs env_id.")
        spec = env.get_attr("spec", indices=[0])[0]
        if spec is None:
            raise ValueError(
                "The Ray evaluator cannot rebuild the training env on its workers: it was not made by gym.make "
                "(no spec). Pass evaluator_kwargs=dict(env_id=..., env_kwargs=...) or env_factory=<a picklable "
                "function returning a new env>."
            )
        wrappers = tuple(wrapper for wrapper in spec.additional_wrappers if wrapper.entry_point != _MONITOR_ENTRY_POINT)
        for wrapper in wrappers:
            if wrapper.kwargs is None:
                raise ValueError(
                    f"The Ray evaluator cannot rebuild the training env's wrapper {wrapper.name} on its workers: it "
                    "does not record its constructor arguments (gymnasium.utils.RecordConstructorArgs). Pass "
                    "evaluator_kwargs=dict(env_factory=<a picklable function returning the wrapped env>)."
                )
        source = f"the training env's spec ({spec.id})"
        factory = functools.partial(gym.make, dataclasses.replace(spec, additional_wrappers=wrappers))
    import ray.cloudpickle as cloudpickle

    try:
        rebuilt = cloudpickle.loads(cloudpickle.dumps(factory))
        probe = rebuilt()
    except Exception as error:
        raise ValueError(
            f"The Ray evaluator cannot send {source} to its workers: {type(error).__name__}: {error}. Pass "
            "evaluator_kwargs=dict(env_factory=...) with a picklable function (e.g. a module-level one) that builds the env."
        ) from error
    try:
        if probe.observation_space != env.observation_space or probe.action_space != env.action_space:
            raise ValueError(
                f"The env built from {source} has spaces {probe.observation_space}, {probe.action_space}; the training "
                f"env has {env.observation_space}, {env.action_space}."
            )
    finally:
        probe.close()
    return factory
