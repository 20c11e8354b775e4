"""The loop every population algorithm of the package shares, as SB3's ``OnPolicyAlgorithm`` is PPO's and A2C's.

A population algorithm asks its search distribution for candidate weights (:meth:`PopulationAlgorithm.sample_population`),
has an evaluator run them, and updates on their returns (:meth:`PopulationAlgorithm.train`). This base class owns
everything around that: the SB3 ``learn`` loop with callbacks and logger, per-iteration seeding (a run is a function
of its seed; a resumed run equals an uninterrupted one), the evaluator's life cycle, an atomic ``save`` and a checked
``load``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
import sys
import time
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm, maybe_make_env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import safe_mean

from sb3_cemah.common.evaluators import PopulationEvaluator, make_evaluator
from sb3_cemah.common.population import PopulationResult
from sb3_cemah.common.spaces import check_spaces, check_time_limit
from sb3_cemah.common.threads import LIBRARY_THREADS, torch_threads

__all__ = ["SAVE_FORMAT", "PopulationAlgorithm"]

#: Version of the saved-model layout; a file of another version is refused by ``load`` with the reason.
SAVE_FORMAT = 2

SelfPopulationAlgorithm = TypeVar("SelfPopulationAlgorithm", bound="PopulationAlgorithm")


class PopulationAlgorithm(BaseAlgorithm):
    """
    Base class of CEM and CEM-AH: an iteration samples candidate weights, evaluates them on whole episodes and trains
    on the result. Subclasses implement :meth:`sample_population` and :meth:`train`.

    :param policy: The policy model to use.
    :param env: The environment to learn from (if registered in Gym, can be str). Its episodes must end: a time limit
        (``gymnasium.wrappers.TimeLimit`` or the registered ``max_episode_steps``) is required.
    :param learning_rate: Learning rate of the algorithm's gradient steps, if it has any.
    :param evaluator: Where the populations run: ``"local"``, the slots of ``env`` in this process (or its
        ``SubprocVecEnv`` workers); ``"ray"``, Ray actors with their own env slots
        (:class:`~sb3_cemah.common.ray_evaluator.RayEvaluator`, needs ``pip install "sb3-cemah[ray]"``); or an
        evaluator object (:class:`~sb3_cemah.common.evaluators.PopulationEvaluator`) built on ``env``.
    :param evaluator_kwargs: Keyword arguments of the Ray evaluator (``num_workers``, ``envs_per_worker``,
        ``candidates_per_task``, ``address``, ``env_id``, ``env_kwargs``, ``env_factory``).
    :param stats_window_size: Window size for the rollout logging, in episodes.
    :param tensorboard_log: The log location for tensorboard (if None, no logging).
    :param policy_kwargs: Keyword arguments for the policy on creation.
    :param verbose: Verbosity level: 0 no output, 1 info, 2 debug.
    :param seed: Seed for the pseudo random generators. Each population's weight noise and env seeds derive from it
        and the iteration number (the env's own seeds are replaced at every population), so that a run is a function
        of its seed and a resumed run equals an uninterrupted one; without a seed, one is drawn.
    :param device: Device (cpu, cuda, ...) on which the code should be run.
    """

    policy: BasePolicy
    # How each candidate is evaluated: episodes per candidate, and whether discrete actions are sampled (subclasses
    # that expose these as hyper-parameters set them per instance).
    n_eval_episodes: int = 1
    stochastic_candidates: bool = False
    # Whether populations keep every step's observation and output (CEM-AH's elite buffer needs them).
    _records_population = False

    def __init__(
        self,
        policy: str | type[BasePolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 0.0,
        evaluator: str | PopulationEvaluator = "local",
        evaluator_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
    ):
        if env is not None:
            # Checked before BaseAlgorithm's own checks, whose messages (e.g. "use MultiInputPolicy") do not apply here.
            env = maybe_make_env(env, verbose)
            check_spaces(env.observation_space, env.action_space, type(self).__name__)
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            support_multi_env=True,
        )
        if self.env is not None:
            check_time_limit(self.env, type(self).__name__)
        self.evaluator = evaluator
        self.evaluator_kwargs = evaluator_kwargs
        # Built here to fail early on a wrong configuration; rebuilt for another env (set_env) or configuration
        # (load sets the saved one after construction); never saved.
        self._evaluator: PopulationEvaluator | None = None
        self._evaluator_config: tuple[Any, dict[str, Any] | None] | None = None
        if self.env is not None:
            self._population_evaluator()
        self._n_iterations = 0
        # Root of every population's env seeds and weight noise (see _population_rng); drawn when no seed is given.
        self._run_seed = seed if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        # Saved with the model so that load() can refuse a file written by another algorithm or layout.
        self._algorithm_name = type(self).__name__
        self._save_format = SAVE_FORMAT

    @property
    def n_iterations(self) -> int:
        """Iterations (populations evaluated and trained on) so far, over every ``learn`` call."""
        return self._n_iterations

    # ------------------------------------------------------------------------------------------------------------------
    # What a subclass implements
    # ------------------------------------------------------------------------------------------------------------------

    def sample_population(self) -> th.Tensor:
        """:return: The candidates of the coming iteration, flat weights of shape ``(population_size, n_params)``."""
        raise NotImplementedError

    def train(self, weights: th.Tensor, result: PopulationResult) -> None:
        """
        Update on an evaluated population.

        :param weights: The evaluated candidates, shape ``(population_size, n_params)``.
        :param result: Their evaluation.
        """
        raise NotImplementedError

    def _recorded_candidates(self, result: PopulationResult) -> np.ndarray:
        """The candidates whose steps a recording evaluation keeps (only asked when ``_records_population``)."""
        return np.arange(len(result.returns))

    # ------------------------------------------------------------------------------------------------------------------
    # The loop
    # ------------------------------------------------------------------------------------------------------------------

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        """Set a new environment (same spaces, episodes with a time limit); see SB3's ``set_env``."""
        super().set_env(env, force_reset)
        assert self.env is not None
        check_time_limit(self.env, type(self).__name__)

    def learn(
        self: SelfPopulationAlgorithm,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPopulationAlgorithm:
        """
        Run iterations until ``total_timesteps`` env steps (all slots counted) are reached. A population always
        completes, so the count can overshoot by at most one population's steps (a warning says so when
        ``total_timesteps`` is below one population's steps).

        :param total_timesteps: Env steps to train for.
        :param callback: Callback(s) called at every VecEnv step; returning False stops training.
        :param log_interval: Dump the logs every this many iterations.
        :param tb_log_name: Name of the tensorboard run (default: the algorithm's class name, as SB3 does).
        :param reset_num_timesteps: Whether to reset the timestep counter (False continues a loaded model).
        :param progress_bar: Display a progress bar using tqdm and rich.
        :return: The trained model.
        """
        requested = total_timesteps
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name or type(self).__name__, progress_bar
        )
        callback.on_training_start(locals(), globals())
        assert self.env is not None
        start_timesteps = self.num_timesteps

        # The library's tensors are small: one torch thread is the fastest, and it leaves the other cores to the envs
        # (and to CEM-AH's imitation thread); the caller's count is restored on return.
        with torch_threads(LIBRARY_THREADS):
            try:
                population_steps = self._learn_loop(total_timesteps, callback, log_interval)
            finally:
                self._finish_training()
        callback.on_training_end()
        if population_steps is not None and requested < population_steps:
            warnings.warn(
                f"learn({requested}) ran {self.num_timesteps - start_timesteps} env steps: one population of "
                f"{type(self).__name__} takes {population_steps} here, and a population always completes. Ask for "
                "several populations' steps.",
                stacklevel=2,
            )
        return self

    def _learn_loop(self, total_timesteps: int, callback: BaseCallback, log_interval: int | None) -> int | None:
        """
        Run iterations until ``total_timesteps``, or until a callback stops training.

        :return: The env steps of the first population (None if none ran).
        """
        population_steps: int | None = None
        while self.num_timesteps < total_timesteps:
            # The progress at the start of the iteration, in (0, 1]: after the population it can be <= 0 (the last
            # population overshoots), and a learning-rate schedule would then give a zero or negative rate.
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            callback.on_rollout_start()
            rollout_start = time.perf_counter()
            iteration_start = self.num_timesteps
            with self._population_rng() as env_seed:
                weights = self.sample_population()
                result = self._evaluate_population(weights, callback, env_seed)
            population_steps = population_steps or self.num_timesteps - iteration_start
            self.logger.record("time/rollout_seconds", time.perf_counter() - rollout_start)
            callback.on_rollout_end()
            if not result.completed:
                break
            self._n_iterations += 1
            self.train(weights, result)
            if log_interval is not None and self._n_iterations % log_interval == 0:
                self.dump_logs()
        return population_steps

    def _finish_training(self) -> None:
        """
        Called when ``learn`` stops (also on an error): finish any training still running in the background, and
        release the evaluator's workers (Ray actors and their CPUs; the next ``learn`` starts them again).
        """
        if self._evaluator is not None:
            self._evaluator.close()

    def _on_env_step(
        self,
        callback: BaseCallback,
        new_obs: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        infos: list,
        counted: np.ndarray,
    ) -> bool:
        """
        Account one VecEnv step the SB3 way: timesteps, episode statistics, then ``callback.on_step()``.

        Every slot's step counts in ``num_timesteps`` (they are env steps), but only the episodes of slots that
        ran a candidate (``counted``) enter ``ep_info_buffer``, ``_episode_num`` and the callback's ``dones`` and
        ``infos``: the episodes that idle slots play at the end of a population (with another candidate's
        weights, see :func:`~sb3_cemah.common.population.evaluate_population`) would otherwise skew
        ``rollout/ep_rew_mean`` and stop ``StopTrainingOnMaxEpisodes`` early.

        :param callback: The callback to drive.
        :param new_obs: Observations after the step, shape ``(n_envs, *obs_shape)``.
        :param rewards: Rewards of the step, shape ``(n_envs,)``.
        :param dones: Episode ends, shape ``(n_envs,)``.
        :param infos: The VecEnv's infos, one per slot.
        :param counted: Slots that ran a candidate during the step, bool ``(n_envs,)``.
        :return: False to stop training.
        """
        assert self.env is not None
        self.num_timesteps += self.env.num_envs
        if not counted.all():  # only at the end of a population: no per-step list rebuilding otherwise
            dones = dones & counted
            # An idle slot's info without its episode record: callbacks that read Monitor infos skip it too.
            infos = [info if slot_counted else {} for info, slot_counted in zip(infos, counted, strict=True)]
        n_episodes = int(np.count_nonzero(dones))
        if n_episodes > 0:  # Monitor's episode records and success flags come with an episode's end only
            self._episode_num += n_episodes
            self._update_info_buffer(infos, dones)
        self._last_obs = new_obs  # type: ignore[assignment]
        # Gives callbacks the same locals as SB3's on-policy rollouts: new_obs, rewards, dones, infos.
        callback.update_locals(locals())
        return callback.on_step()

    def _evaluate_population(self, weights: th.Tensor, callback: BaseCallback, env_seed: int) -> PopulationResult:
        """
        Evaluate candidate weights ``(n, n_params)`` with the configured evaluator, driving the callback at every
        (local) or every replayed (Ray) VecEnv step; with ``_records_population``, the steps of
        ``_recorded_candidates`` are kept.
        """
        self.policy.set_training_mode(False)
        return self._population_evaluator().evaluate(
            self.policy,  # type: ignore[arg-type]
            weights,
            n_episodes=self.n_eval_episodes,
            deterministic=not self.stochastic_candidates,
            seed=env_seed,
            step_hook=functools.partial(self._on_env_step, callback),
            select_recorded=self._recorded_candidates if self._records_population else None,
        )

    def _population_evaluator(self) -> PopulationEvaluator:
        """The evaluator of the current env and ``evaluator`` / ``evaluator_kwargs``, built when they changed."""
        assert self.env is not None
        config = (self.evaluator, self.evaluator_kwargs)
        if self._evaluator is None or self._evaluator.env is not self.env or self._evaluator_config != config:
            if self._evaluator is not None and self._evaluator is not self.evaluator:
                self._evaluator.close()
            self._evaluator = make_evaluator(self.evaluator, self.evaluator_kwargs, self.env)
            self._evaluator_config = config
        return self._evaluator

    # ------------------------------------------------------------------------------------------------------------------
    # Seeding
    # ------------------------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _population_rng(self) -> Iterator[int]:
        """
        Make the population of the coming iteration a function of the run's seed and the iteration number.

        Inside the context, torch's RNG (weight noise, sampled actions, and any callback run during the
        evaluation) is seeded from ``(run seed, iteration)``, and the context gives the seed of the
        population's envs (the evaluator seeds its slots with it); torch's RNG state of before is restored on
        exit, so what runs between populations (CEM-AH's gradient steps) keeps its own stream. A model saved
        after an iteration therefore holds all that the next populations depend on, and ``load`` then
        ``learn(reset_num_timesteps=False)`` continues exactly as an uninterrupted run would.
        """
        torch_seed, env_seed = self._iteration_seeds(2)
        with self._seeded_torch(torch_seed):
            yield env_seed

    def _iteration_seeds(self, n_seeds: int, *stream: int) -> list[int]:
        """
        Seeds that depend only on the run's seed, the iteration number and ``stream`` (a key that keeps the
        populations' draws and, e.g., CEM-AH's training steps apart).

        :param n_seeds: How many seeds to draw.
        :param stream: Extra keys of the seed sequence (none for the populations).
        :return: ``n_seeds`` 32-bit seeds.
        """
        state = np.random.SeedSequence([self._run_seed, self._n_iterations, *stream]).generate_state(n_seeds)
        return [int(seed) for seed in state]

    @contextlib.contextmanager
    def _seeded_torch(self, seed: int) -> Iterator[None]:
        """Run the block with torch's RNG (CPU, and this model's GPU) seeded with ``seed``; restore it on exit."""
        cuda_devices = []
        if self.device.type == "cuda":
            cuda_devices = [self.device.index if self.device.index is not None else th.cuda.current_device()]
        with th.random.fork_rng(devices=cuda_devices):
            th.manual_seed(seed)
            yield

    # ------------------------------------------------------------------------------------------------------------------
    # Logging, saving, loading
    # ------------------------------------------------------------------------------------------------------------------

    def dump_logs(self) -> None:
        """Write the SB3 ``time/`` and ``rollout/`` keys with the ``train/`` keys of the last iteration."""
        self._record_iteration_logs()
        self.logger.dump(step=self.num_timesteps)

    def _record_iteration_logs(self) -> None:
        """Record the ``time/`` and ``rollout/`` keys of :meth:`dump_logs`."""
        time_elapsed = max((time.time_ns() - self.start_time) / 1e9, sys.float_info.epsilon)
        fps = int((self.num_timesteps - self._num_timesteps_at_start) / time_elapsed)
        self.logger.record("time/iterations", self._n_iterations, exclude="tensorboard")
        if self.ep_info_buffer is not None and len(self.ep_info_buffer) > 0:
            self.logger.record("rollout/ep_rew_mean", safe_mean([info["r"] for info in self.ep_info_buffer]))
            self.logger.record("rollout/ep_len_mean", safe_mean([info["l"] for info in self.ep_info_buffer]))
        if self.ep_success_buffer is not None and len(self.ep_success_buffer) > 0:
            self.logger.record("rollout/success_rate", safe_mean(self.ep_success_buffer))
        self.logger.record("time/fps", fps)
        self.logger.record("time/time_elapsed", int(time_elapsed), exclude="tensorboard")
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")

    def _excluded_save_params(self) -> list[str]:
        # The evaluator holds the env (and Ray actors): a saved model is loaded and used without it. An evaluator
        # object given by the user is not saved either (a loaded model uses the local one unless told otherwise).
        excluded = [*super()._excluded_save_params(), "_evaluator", "_evaluator_config"]
        if not isinstance(self.evaluator, str):
            excluded.append("evaluator")
        return excluded

    def save(
        self,
        path: str | pathlib.Path | Any,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """
        Save as SB3 does, but write to a temporary file first and move it into place, so that a crash or a
        full disk during saving never destroys a model saved earlier at the same path.

        :param path: Path to the file (``.zip`` is appended when it has no suffix), or a file-like object.
        :param exclude: Names of parameters that should be excluded in addition to the default ones.
        :param include: Names of parameters that might be excluded but should be included anyway.
        """
        if not isinstance(path, (str, pathlib.Path)):
            super().save(path, exclude=exclude, include=include)
            return
        path = pathlib.Path(path)
        if path.suffix == "":
            path = path.with_suffix(".zip")
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary_path = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            super().save(temporary_path, exclude=exclude, include=include)
            os.replace(temporary_path, path)
        finally:
            temporary_path.unlink(missing_ok=True)

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: str | pathlib.Path | Any,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> Any:
        """
        Load a model saved by :meth:`save`, after checking that the file is a readable SB3 archive written by this
        algorithm in this package's save format (a PPO or CEM-AH file given to ``CEM.load`` fails with a clear
        message).

        The parameters are those of :meth:`stable_baselines3.common.base_class.BaseAlgorithm.load`.
        """
        cls._check_saved_file(path, custom_objects)
        return super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)

    @classmethod
    def _check_saved_file(cls, path: str | pathlib.Path | Any, custom_objects: dict[str, Any] | None) -> None:
        if isinstance(path, (str, pathlib.Path)):
            path = pathlib.Path(path)
            if not path.exists() and path.with_suffix(".zip").exists():
                path = path.with_suffix(".zip")
            if not path.is_file():
                raise FileNotFoundError(f"No saved model at {path}.")
            if not zipfile.is_zipfile(path):
                raise ValueError(f"{path} is not a model saved by {cls.__name__}: not a zip archive (truncated or corrupt?).")
        try:
            data, _, _ = load_from_zip_file(path, device="cpu", custom_objects=custom_objects, load_data=True)
        except Exception as error:
            raise ValueError(f"Cannot read the saved model {path}: {error}") from error
        finally:
            if hasattr(path, "seek"):
                path.seek(0)
        data = data or {}
        policy_class = data.get("policy_class")
        expected_policy = cls.policy_aliases["MlpPolicy"]
        saved_by = data.get("_algorithm_name", "another algorithm")
        if not (isinstance(policy_class, type) and issubclass(policy_class, expected_policy)) or saved_by != cls.__name__:
            found = getattr(policy_class, "__name__", policy_class)
            raise ValueError(
                f"{path} was not saved by {cls.__name__} (saved by {saved_by}, policy {found}). "
                "Load it with the algorithm class that saved it."
            )
        cls._check_save_format(path, data.get("_save_format", 1))

    @classmethod
    def _check_save_format(cls, path: Any, save_format: int) -> None:
        """Refuse a file whose layout this version cannot restore (subclasses accept older layouts they can read)."""
        if save_format > SAVE_FORMAT:
            raise ValueError(
                f"{path} was saved by a newer sb3-cemah (save format {save_format}, this one reads {SAVE_FORMAT}): "
                "upgrade sb3-cemah to load it."
            )
