"""Evaluate a population on Ray actors, each with its own env slots (``evaluator="ray"``).

The population is split into tasks of consecutive candidates (``candidates_per_task``). Each task runs on a
worker with :func:`~sb3_cemah.common.population.evaluate_population`, its envs and torch seeded from the
population's seed and the task's index only; a task's outcome therefore does not depend on the worker that
runs it, which gives three properties at once:

- reproducible: a fixed seed (and task size, by default a function of the worker count) gives the same run;
- fault tolerant: a task whose worker died is run again on another worker with the same outcome, and only
  finished tasks are counted, so that every candidate is evaluated exactly once. A replacement for the dead
  worker is asked for at once, but nothing waits for it: when the cluster has no CPU left for it (a lost
  node), the population goes on on the surviving workers, and the replacement joins the pool when capacity
  returns. The head never waits without a bound: with no live worker for ``WORKER_START_TIMEOUT`` seconds,
  the evaluation fails with the cluster's free CPUs in the message;
- CEM-AH's recorded steps stay on the workers until the head knows the elites, then only the steps it imitates
  are fetched (the elites', or every candidate's for population labels; a worker that died in between runs its
  task again to give them).

Per population the head puts the candidates' weights in Ray's object store once; a task carries only its
candidate indices, and returns the candidates' returns and lengths, its env-step count and its episodes'
Monitor records.

``VecNormalize`` (rl-zoo3's ``normalize: true``): the observation statistics are the head's. Each population
the workers normalise with a copy of them, frozen for the population (the local evaluator updates them at every
step); each task returns the moments of the raw observations it saw (resets and steps, as ``VecNormalize``
counts them), and the head merges them into its statistics in task order once the population is done.
Rewards are not normalised on the workers: candidates are ranked on the original returns either way, and the
head's reward statistics are left as they are.

Callbacks: the steps happen on the workers, and the head replays them when a task finishes, as
``step_hook`` calls of ``n_envs`` env steps each (``n_envs`` is the training VecEnv's, as for the local
evaluator, so that rl-zoo3's ``eval_freq // n_envs`` still means env steps). They come in bursts, one per
finished task; the task's episodes (Monitor records) come with them. A callback that stops training cancels
the tasks in flight. Steps short of a whole call carry over to the next population.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecNormalize

from sb3_cemah.common.flat_policy import FlatPolicy
from sb3_cemah.common.population import PopulationPolicy, PopulationResult, StepHook
from sb3_cemah.common.ray_worker import (
    NormalizeSettings,
    PopulationInputs,
    PopulationWorker,
    RecordedSteps,
    Task,
    TaskResult,
    make_env_factory,
)

__all__ = ["RayEvaluator"]

INSTALL_HINT = 'pip install "sb3-cemah[ray]"'
# Seconds to wait for a first live worker (actors wait for free CPUs without failing), at the start or when every
# worker has died.
WORKER_START_TIMEOUT = 120
# Seconds between checks for workers that started, while waiting on the tasks.
POLL_SECONDS = 1.0


class RayEvaluator:
    """
    Evaluate populations on Ray actors (see the module's docstring for the protocol and its guarantees).

    The env is rebuilt on the workers from, in this order: ``env_factory``, ``env_id`` (with ``env_kwargs``), or
    the gymnasium spec of the training VecEnv's envs (the id, its kwargs and its wrappers, which must be
    re-creatable by gymnasium, i.e. record their constructor arguments). What cannot be rebuilt fails here,
    not mid-run: the source is pickled, unpickled and built once in this process. Of the VecEnv wrappers only
    ``VecNormalize`` is run (see the module's docstring); others are refused: their state lives in the training
    process.

    ``ray.init`` follows Ray's conventions: a running Ray session is used as it is; otherwise ``address``
    (or, when None, ``RAY_ADDRESS``; without either, a new local cluster).

    :param env: The training VecEnv (its spaces, its spec, and ``num_envs``, the step unit of the callbacks).
    :param num_workers: Ray actors, one CPU each.
    :param envs_per_worker: Env slots of each worker (one batched forward pass steps them all).
    :param candidates_per_task: Candidates per task; None: ``ceil(n_candidates / (2 * num_workers))``, at least
        ``envs_per_worker`` (two tasks per worker balance the load). Results depend on it (and on nothing else
        about the cluster): fix it to get the same run with any worker count.
    :param address: Address of an existing Ray cluster (see above).
    :param env_id: Gymnasium id to build on the workers, instead of the training env's spec.
    :param env_kwargs: Keyword arguments of ``gym.make(env_id, ...)``.
    :param env_factory: A picklable callable returning a new ``gym.Env`` (no Monitor: the workers add it).
    """

    def __init__(
        self,
        env: VecEnv,
        num_workers: int = 2,
        envs_per_worker: int = 1,
        candidates_per_task: int | None = None,
        address: str | None = None,
        env_id: str | None = None,
        env_kwargs: dict[str, Any] | None = None,
        env_factory: Callable[[], gym.Env] | None = None,
    ):
        try:
            import ray
        except ImportError as error:
            raise ImportError(f"The Ray evaluator needs Ray: {INSTALL_HINT}") from error
        for name, value in (("num_workers", num_workers), ("envs_per_worker", envs_per_worker)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"evaluator_kwargs: {name} must be an int >= 1, got {value!r}.")
        if candidates_per_task is not None and not (isinstance(candidates_per_task, int) and candidates_per_task >= 1):
            raise ValueError(
                f"evaluator_kwargs: candidates_per_task must be None or an int >= 1, got {candidates_per_task!r}."
            )
        vec_normalize = env if isinstance(env, VecNormalize) else None
        inner = vec_normalize.venv if vec_normalize is not None else env
        if isinstance(inner, VecEnvWrapper):
            raise ValueError(
                f"The Ray evaluator cannot run a {type(inner).__name__}-wrapped VecEnv: the wrapper's state lives in "
                "the training process (of the VecEnv wrappers, only VecNormalize directly over the VecEnv is run on "
                "the workers). Use evaluator='local', or drop the wrapper (rl-zoo3: no frame_stack)."
            )
        self._vec_normalize = vec_normalize if vec_normalize is not None and vec_normalize.norm_obs else None
        self._ray = ray
        self.env = env
        self.num_workers = num_workers
        self.envs_per_worker = envs_per_worker
        self.candidates_per_task = candidates_per_task
        self.address = address
        self.make_env = make_env_factory(env, env_id, env_kwargs, env_factory)
        #: The live workers (Ray actor handles).
        self.workers: list[Any] = []
        #: Workers asked for to replace dead ones, since the evaluator was built.
        self.n_replaced_workers = 0
        # Workers asked for that have not started yet: the ref of their ready() -> the actor.
        self._starting: dict[Any, Any] = {}
        self._worker_class: Any = None
        self._n_populations = 0
        self._carried_steps = 0
        self._carried_episodes: deque[dict[str, Any]] = deque()

    # ------------------------------------------------------------------------------------------------------------------
    # Workers
    # ------------------------------------------------------------------------------------------------------------------

    def _start(self, policy: PopulationPolicy) -> None:
        """Connect to (or start) Ray and ask for the workers; return once one of them has built its envs."""
        ray = self._ray
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        assert isinstance(policy, FlatPolicy)
        # A flat policy with the same layout and conversions: the weights come with each task.
        self._worker_policy = FlatPolicy(
            policy.observation_space,
            policy.action_space,
            net_arch=policy.net_arch,
            activation_fn=policy.activation_fn,
            standardize_obs=policy.standardize_obs,
        )
        self._worker_class = ray.remote(num_cpus=1)(PopulationWorker)
        for _ in range(self.num_workers):
            self._ask_for_worker()
        self._wait_for_a_worker()

    def _ask_for_worker(self) -> None:
        """Ask Ray for a new worker; it joins ``workers`` once its envs are built (see :meth:`_admit_started`)."""
        vec_normalize = self._vec_normalize
        normalize = None if vec_normalize is None else NormalizeSettings(vec_normalize.clip_obs, vec_normalize.epsilon)
        worker = self._worker_class.remote(self.make_env, self.envs_per_worker, self._worker_policy, normalize)
        self._starting[worker.ready.remote()] = worker

    def _admit_started(self, ready_ref: Any) -> Any | None:
        """
        A worker asked for has answered ``ready``: add it to ``workers``; if it died before (its node was lost), ask
        for another. An env that cannot be built fails here.

        :return: The new live worker, or None.
        """
        ray = self._ray
        worker = self._starting.pop(ready_ref)
        try:
            ray.get(ready_ref)
        except ray.exceptions.RayError as error:
            if isinstance(error, ray.exceptions.RayActorError) and not error.actor_init_failed:
                self._ask_for_worker()  # it died with its node, not of its envs
                return None
            self.close()
            raise RuntimeError(f"The Ray workers could not build their envs: {error}") from error
        self.workers.append(worker)
        return worker

    def _lose(self, worker: Any) -> None:
        """A worker died: drop it from the pool and ask for a replacement, without waiting for it."""
        if worker not in self.workers:  # lost already
            return
        self.workers.remove(worker)
        self.n_replaced_workers += 1
        self._ask_for_worker()

    def _wait_for_a_worker(self) -> None:
        """Wait until a worker is live, at most ``WORKER_START_TIMEOUT`` seconds."""
        ray = self._ray
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while not self.workers:
            remaining = deadline - time.monotonic()
            ready, _ = ray.wait(list(self._starting), num_returns=1, timeout=max(remaining, 0.0))
            if ready:
                self._admit_started(ready[0])
            elif remaining <= 0:
                free, total = ray.available_resources().get("CPU", 0), ray.cluster_resources().get("CPU", 0)
                self.close()
                raise RuntimeError(
                    f"No Ray worker (one CPU each) could start within {WORKER_START_TIMEOUT} s; the cluster has {free} "
                    f"CPUs free of {total}. Ask for fewer num_workers, add nodes, or let other models' learn return "
                    "(a model releases its workers when its learn returns)."
                )

    def close(self) -> None:
        """Stop the workers, and those still starting (the Ray session stays: it may be the user's). The next
        population starts new ones."""
        for worker in [*self.workers, *self._starting.values()]:
            self._ray.kill(worker)
        self.workers = []
        self._starting = {}

    # ------------------------------------------------------------------------------------------------------------------
    # Populations
    # ------------------------------------------------------------------------------------------------------------------

    def evaluate(
        self,
        policy: PopulationPolicy,
        flat_weights: th.Tensor,
        n_episodes: int,
        deterministic: bool,
        seed: int,
        step_hook: StepHook,
        select_recorded: Callable[[PopulationResult], np.ndarray] | None,
    ) -> PopulationResult:
        """The arguments and the result are those of :meth:`sb3_cemah.common.evaluators.LocalEvaluator.evaluate`;
        with ``select_recorded``, only the selected candidates' steps are fetched from the workers."""
        if self._worker_class is None or not (self.workers or self._starting):
            self._start(policy)
        elif not self.workers:
            self._wait_for_a_worker()
        n_candidates = flat_weights.shape[0]
        obs_rms = None if self._vec_normalize is None else self._vec_normalize.obs_rms
        assert not isinstance(obs_rms, dict), "Dict observations are not supported"
        inputs = PopulationInputs(flat_weights.detach().cpu().numpy(), None if obs_rms is None else obs_rms.copy())
        inputs_ref = self._ray.put(inputs)  # once per population, whatever the number of tasks
        tasks = self._tasks(n_candidates, n_episodes, deterministic, seed)
        record = select_recorded is not None
        self._n_populations += 1

        returns = np.zeros(n_candidates)
        lengths = np.zeros(n_candidates)
        ran_on: dict[int, Any] = {}  # task index -> the worker that ran it
        obs_moments: dict[int, RunningMeanStd] = {}  # task index -> moments of its raw observations
        pending = deque(tasks)
        idle = deque(self.workers)
        in_flight: dict[Any, tuple[Any, Task]] = {}
        completed = True
        while pending or in_flight:
            while pending and idle:
                worker, task = idle.popleft(), pending.popleft()
                in_flight[worker.evaluate.remote(inputs_ref, task, record)] = (worker, task)
            ref = self._next_finished(in_flight, idle)
            if ref is None:  # a worker started and is idle
                continue
            worker, task = in_flight.pop(ref)
            try:
                outcome: TaskResult = self._ray.get(ref)
            except self._ray.exceptions.RayActorError:
                # The worker died (its task's partial steps are lost, uncounted): run the task again on another one.
                self._lose(worker)
                pending.appendleft(task)
                continue
            idle.append(worker)
            returns[task.candidates] = outcome.returns
            lengths[task.candidates] = outcome.episode_lengths
            ran_on[task.index] = worker
            if outcome.obs_moments is not None:
                obs_moments[task.index] = outcome.obs_moments
            if not self._replay(outcome, step_hook):
                for other in in_flight:
                    self._ray.cancel(other)  # a queued task is dropped; a running one finishes, unread
                completed = False
                break

        self._update_obs_statistics(obs_moments)
        result = PopulationResult(returns=returns, episode_lengths=lengths, completed=completed)
        if record and completed:
            assert select_recorded is not None
            self._fetch_recorded(result, select_recorded(result), tasks, ran_on, inputs_ref)
        return result

    def _next_finished(self, in_flight: dict[Any, tuple[Any, Task]], idle: deque[Any]) -> Any | None:
        """
        Wait for a task to finish or a worker to start (checked every ``POLL_SECONDS``), at most
        ``WORKER_START_TIMEOUT`` seconds while no worker is live.

        :return: The finished task's ref, or None when a worker started (it is then in ``idle``).
        """
        if not in_flight and not self.workers:
            self._wait_for_a_worker()
            idle.extend(self.workers)
            return None
        while True:
            ready, _ = self._ray.wait([*in_flight, *self._starting], num_returns=1, timeout=POLL_SECONDS)
            if not ready:
                continue
            if ready[0] in in_flight:
                return ready[0]
            worker = self._admit_started(ready[0])
            if worker is not None:
                idle.append(worker)
                return None

    def _update_obs_statistics(self, obs_moments: dict[int, RunningMeanStd]) -> None:
        """Merge the finished tasks' observation moments into the head's ``VecNormalize``, in task order (reproducible)."""
        vec_normalize = self._vec_normalize
        if vec_normalize is None or not vec_normalize.training:
            return
        assert isinstance(vec_normalize.obs_rms, RunningMeanStd)
        for index in sorted(obs_moments):
            vec_normalize.obs_rms.combine(obs_moments[index])

    def _tasks(self, n_candidates: int, n_episodes: int, deterministic: bool, seed: int) -> list[Task]:
        size = self.candidates_per_task or max(self.envs_per_worker, math.ceil(n_candidates / (2 * self.num_workers)))
        starts = range(0, n_candidates, size)
        seeds = np.random.SeedSequence(seed).generate_state(len(starts))
        return [
            Task(
                self._n_populations,
                index,
                np.arange(start, min(start + size, n_candidates)),
                int(task_seed),
                n_episodes,
                deterministic,
            )
            for index, (start, task_seed) in enumerate(zip(starts, seeds, strict=True))
        ]

    def _replay(self, outcome: TaskResult, step_hook: StepHook) -> bool:
        """
        Give the callbacks a finished task's steps as calls of ``n_envs`` env steps each, its episodes' Monitor
        records in the calls' ``infos`` (and ``dones``); a remainder short of a call waits for the next task.

        :return: False when the hook asks to stop.
        """
        n_envs = self.env.num_envs
        self._carried_steps += outcome.env_steps
        self._carried_episodes.extend(outcome.episodes)
        # The observation the callbacks see does not change: the head's env does not step.
        observation_space = self.env.observation_space
        new_obs = np.zeros((n_envs, *(observation_space.shape or ())), dtype=observation_space.dtype)
        rewards = np.zeros(n_envs, dtype=np.float32)
        counted = np.ones(n_envs, dtype=bool)
        while self._carried_steps >= n_envs:
            self._carried_steps -= n_envs
            dones = np.zeros(n_envs, dtype=bool)
            infos: list[dict[str, Any]] = [{} for _ in range(n_envs)]
            for slot in range(min(n_envs, len(self._carried_episodes))):
                dones[slot] = True
                infos[slot] = {"episode": self._carried_episodes.popleft()}
            if not step_hook(new_obs, rewards, dones, infos, counted):
                return False
        return True

    def _fetch_recorded(
        self,
        result: PopulationResult,
        selected: np.ndarray,
        tasks: list[Task],
        ran_on: dict[int, Any],
        inputs_ref: Any,
    ) -> None:
        """Fetch the selected candidates' recorded steps from the workers that ran them (or their replacements)."""
        wanted = [task for task in tasks if np.isin(task.candidates, selected).any()]
        parts: list[RecordedSteps] = []
        for task in wanted:
            worker = ran_on[task.index]
            while True:
                try:
                    parts.append(self._ray.get(worker.recorded.remote(inputs_ref, task, selected)))
                    break
                except self._ray.exceptions.RayActorError:
                    # Any other worker runs the task again to give them (same outcome on any worker).
                    self._lose(worker)
                    if not self.workers:
                        self._wait_for_a_worker()
                    worker = self.workers[task.index % len(self.workers)]
        result.observations = np.concatenate([part.observations for part in parts])
        result.actions = th.cat([part.actions for part in parts])
        result.step_candidates = np.concatenate([part.candidates for part in parts])
        if self._vec_normalize is not None:
            result.original_observations = np.concatenate([part.original_observations for part in parts])  # type: ignore[misc]

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("A RayEvaluator holds live Ray actors and cannot be pickled (the algorithms do not save it).")
