"""CEM (Algorithm 1 of the CEM-AH paper) as a Stable-Baselines3 algorithm."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import pathlib
import sys
import time
import zipfile
from collections.abc import Iterable, Iterator
from numbers import Integral
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm, maybe_make_env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import safe_mean

from sb3_cemah.cem.policies import CEMPolicy, MlpPolicy
from sb3_cemah.common.evaluators import PopulationEvaluator, make_evaluator
from sb3_cemah.common.population import PopulationResult
from sb3_cemah.common.schedules import as_schedule
from sb3_cemah.common.spaces import check_spaces

# How the elites enter the refit (see CEM's ``elite_weighting``).
ELITE_WEIGHTINGS = ("uniform", "log")

__all__ = ["CEM"]

SelfCEM = TypeVar("SelfCEM", bound="CEM")


class CEM(BaseAlgorithm):
    """
    Cross-Entropy Method over the flat weights of a small policy network (Algorithm 1 of
    "CEM-AH: Cross-Entropy Method guided Adversarial Hypernetwork").

    Each iteration samples ``population_size`` weight vectors from ``N(mean, diag(std^2))``, runs
    ``n_eval_episodes`` episodes of each on the VecEnv slots (all slots at once, see
    :func:`sb3_cemah.common.population.evaluate_population`), keeps the ``elite_frac`` best and refits the
    mean and the per-weight std to them. One iteration costs about
    ``population_size * n_eval_episodes * episode_length`` env steps.

    :param policy: The policy model to use (``"MlpPolicy"`` or a :class:`CEMPolicy` subclass).
    :param env: The environment to learn from (if registered in Gym, can be str).
    :param population_size: Number of candidate policies per iteration (the paper's N, 100).
    :param elite_frac: Fraction of the population kept as elites, in (0, 1]; ``round(elite_frac * population_size)``
        must be at least 2 (the std is fitted to the elites' spread).
    :param elite_weighting: How the elites enter the refit: ``"uniform"`` (the paper's, each counts equally) or
        ``"log"`` (CMA-ES's recombination weights, the elite of rank ``i`` weighted ``log(n_elite + 1/2) - log(i)``,
        normalised), which pulls the mean and the spread toward the best elites.
    :param n_eval_episodes: Episodes per candidate; its return is the mean over them.
    :param alive_bonus_offset: Constant added to the reward at every step when the candidates are ranked (their
        return plus ``alive_bonus_offset`` times their episode length), to cancel out alive bonuses, as sb3-contrib's
        ARS does (-1 on Hopper, whose healthy reward is 1 per step): standing still for the whole episode then no
        longer outranks moving forward. The logged returns and Monitor's episodes keep the env's own rewards.
    :param initial_std: Initial standard deviation of every weight (the mean starts at 0).
    :param extra_noise: Extra variance added to the refitted variance, decaying linearly by ``extra_noise_decay``
        per iteration (Szita & Lorincz, 2006: "noisy CEM"); 0 disables it.
    :param extra_noise_decay: Decrease of the extra variance per iteration.
    :param min_std: Lower bound on each weight's std, against premature collapse: a number, a schedule of
        ``progress_remaining`` (SB3's convention for ``learning_rate``) or rl-zoo3's ``"lin_<x>"`` (a floor of ``x``
        at the start falling linearly to 0 at the end of ``learn``), so that a floor that keeps the search wide
        early can let it narrow later.
    :param std_reset_threshold: When the mean std falls below it, restart from ``N(0, initial_std^2)``
        (the authors' code resets at 0.3); 0 disables the reset.
    :param stochastic_candidates: Discrete actions only: candidates sample their action from the softmax of their
        outputs (the authors' code) instead of taking the argmax.
    :param evaluator: Where the populations run: ``"local"``, the slots of ``env`` in this process (or its
        ``SubprocVecEnv`` workers); ``"ray"``, Ray actors with their own env slots
        (:class:`~sb3_cemah.common.ray_evaluator.RayEvaluator`, needs ``pip install "sb3-cemah[ray]"``).
    :param evaluator_kwargs: Keyword arguments of the Ray evaluator (``num_workers``, ``envs_per_worker``,
        ``candidates_per_task``, ``address``, ``env_id``, ``env_kwargs``, ``env_factory``).
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over.
    :param tensorboard_log: The log location for tensorboard (if None, no logging).
    :param policy_kwargs: Keyword arguments for the policy on creation (``net_arch``, ``activation_fn``,
        ``standardize_obs``).
    :param verbose: Verbosity level: 0 no output, 1 info, 2 debug.
    :param seed: Seed for the pseudo random generators. Each population's weight noise and env seeds derive
        from it and the iteration number (the env's own seeds are replaced at every population), so that a run
        is a function of its seed and a resumed run equals an uninterrupted one; without a seed, one is drawn.
    :param device: Device (cpu, cuda, ...) on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    # Hyper-parameters that name one of a few choices, checked by _check_hyperparameters; subclasses add theirs.
    _choice_hyperparameters: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (("elite_weighting", ELITE_WEIGHTINGS),)
    policy: CEMPolicy
    # Whether populations keep every step's observation and output (CEM-AH's elite buffer needs them).
    _records_population = False

    def __init__(
        self,
        policy: str | type[CEMPolicy],
        env: GymEnv | str,
        population_size: int = 100,
        elite_frac: float = 0.1,
        elite_weighting: str = "uniform",
        n_eval_episodes: int = 1,
        alive_bonus_offset: float = 0.0,
        initial_std: float = 1.0,
        extra_noise: float = 0.0,
        extra_noise_decay: float = 0.0,
        min_std: float | str | Schedule = 0.0,
        std_reset_threshold: float = 0.0,
        stochastic_candidates: bool = False,
        evaluator: str = "local",
        evaluator_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        if env is not None:
            # Checked before BaseAlgorithm's own checks, whose messages (e.g. "use MultiInputPolicy") do not apply here.
            env = maybe_make_env(env, verbose)
            check_spaces(env.observation_space, env.action_space, type(self).__name__)
        super().__init__(
            policy,
            env,
            learning_rate=0.0,  # CEM has no gradient step; CEM-AH sets its own.
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            support_multi_env=True,
        )
        self.population_size = population_size
        self.elite_frac = elite_frac
        self.elite_weighting = elite_weighting
        self.n_eval_episodes = n_eval_episodes
        self.alive_bonus_offset = alive_bonus_offset
        self.initial_std = initial_std
        self.extra_noise = extra_noise
        self.extra_noise_decay = extra_noise_decay
        self.min_std = min_std
        self.std_reset_threshold = std_reset_threshold
        self.stochastic_candidates = stochastic_candidates
        self.evaluator = evaluator
        self.evaluator_kwargs = evaluator_kwargs
        # Built here to fail early on a wrong configuration; rebuilt for another env (set_env) or configuration
        # (load sets the saved one after construction); never saved.
        self._evaluator: PopulationEvaluator | None = None
        self._evaluator_config: tuple[str, dict[str, Any] | None] | None = None
        if self.env is not None:
            self._population_evaluator()
        self._n_iterations = 0
        self._n_std_resets = 0
        # Root of every population's env seeds and weight noise (see _population_rng); drawn when no seed is given.
        self._run_seed = seed if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        # Saved with the model so that load() can refuse a file written by another algorithm of this package.
        self._algorithm_name = type(self).__name__
        self._check_hyperparameters()
        if _init_setup_model:
            self._setup_model()

    @property
    def n_elite(self) -> int:
        """Number of elites kept per iteration: ``round(elite_frac * population_size)``, at least 1 (2 are required)."""
        return max(1, round(self.elite_frac * self.population_size))

    def _check_hyperparameters(self) -> None:
        """Reject invalid values before anything runs, naming the parameter."""
        checks = [
            (isinstance(self.population_size, Integral) and self.population_size >= 2, "population_size must be an int >= 2"),
            (0.0 < self.elite_frac <= 1.0, "elite_frac must be in (0, 1]"),
            (
                self.n_elite >= 2,
                f"elite_frac * population_size must be >= 1.5 (got {self.elite_frac} * {self.population_size}): "
                "the std is refitted to the spread of at least two elites, and a single elite sets it to 0, "
                "so that every later iteration would evaluate the same policy",
            ),
            (isinstance(self.n_eval_episodes, Integral) and self.n_eval_episodes >= 1, "n_eval_episodes must be an int >= 1"),
            (math.isfinite(self.alive_bonus_offset), "alive_bonus_offset must be a finite number"),
            (self.initial_std > 0.0, "initial_std must be > 0"),
            (self.extra_noise >= 0.0 and self.extra_noise_decay >= 0.0, "extra_noise and extra_noise_decay must be >= 0"),
            (
                (floor := as_schedule(self.min_std)) is not None and min(floor(1.0), floor(0.0)) >= 0.0,
                f"min_std must be a number >= 0, a schedule of progress_remaining or 'lin_<x>', got {self.min_std!r}",
            ),
            (self.std_reset_threshold >= 0.0, "std_reset_threshold must be >= 0"),
        ]
        checks += [
            (getattr(self, name) in choices, f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
            for name, choices in self._choice_hyperparameters
        ]
        for valid, message in checks:
            if not valid:
                raise ValueError(f"Invalid hyper-parameter for {type(self).__name__}: {message}.")

    def _setup_model(self) -> None:
        self.set_random_seed(self.seed)
        policy = self._make_policy()
        if not isinstance(policy, CEMPolicy):
            raise ValueError(f"{type(self).__name__} needs a CEMPolicy subclass, got {type(policy).__name__}.")
        self.policy = policy.to(self.device)
        min_std_schedule = as_schedule(self.min_std)
        assert min_std_schedule is not None, "checked by _check_hyperparameters"
        self._min_std_schedule = min_std_schedule
        self._reset_distribution()

    def _make_policy(self) -> BasePolicy:
        return self.policy_class(self.observation_space, self.action_space, **self.policy_kwargs)

    def _reset_distribution(self) -> None:
        """Start the search distribution at ``N(0, initial_std^2 I)``."""
        self.policy.mean.zero_()
        self.policy.std.fill_(self.initial_std)

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

    def _evaluate_population(
        self, weights: th.Tensor, callback: BaseCallback, env_seed: int, record: bool
    ) -> PopulationResult:
        """
        Evaluate candidate weights ``(n, n_params)`` with the configured evaluator, driving the callback at every
        (local) or every replayed (Ray) VecEnv step; when recording, the steps of ``_recorded_candidates`` are kept.
        """
        self.policy.set_training_mode(False)
        return self._population_evaluator().evaluate(
            self.policy,
            weights,
            n_episodes=self.n_eval_episodes,
            deterministic=not self.stochastic_candidates,
            seed=env_seed,
            step_hook=functools.partial(self._on_env_step, callback),
            select_recorded=self._recorded_candidates if record else None,
        )

    def _population_evaluator(self) -> PopulationEvaluator:
        """The evaluator of the current env and ``evaluator`` / ``evaluator_kwargs``, built when they changed."""
        assert self.env is not None
        config = (self.evaluator, self.evaluator_kwargs)
        if self._evaluator is None or self._evaluator.env is not self.env or self._evaluator_config != config:
            if self._evaluator is not None:
                self._evaluator.close()
            self._evaluator = make_evaluator(self.evaluator, self.evaluator_kwargs, self.env)
            self._evaluator_config = config
        return self._evaluator

    def learn(
        self: SelfCEM,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfCEM:
        """
        Run iterations until ``total_timesteps`` env steps (all slots counted) are reached. The last iteration
        finishes its population, so the count can overshoot by at most one population's steps.

        :param total_timesteps: Env steps to train for.
        :param callback: Callback(s) called at every VecEnv step; returning False stops training.
        :param log_interval: Dump the logs every this many iterations.
        :param tb_log_name: Name of the tensorboard run (default: the algorithm's class name, as SB3 does).
        :param reset_num_timesteps: Whether to reset the timestep counter (False continues a loaded model).
        :param progress_bar: Display a progress bar using tqdm and rich.
        :return: The trained model.
        """
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name or type(self).__name__, progress_bar
        )
        callback.on_training_start(locals(), globals())
        assert self.env is not None

        while self.num_timesteps < total_timesteps:
            # The progress at the start of the iteration, in (0, 1]: after the population it can be <= 0 (the last
            # population overshoots), and a learning-rate schedule would then give a zero or negative rate.
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            callback.on_rollout_start()
            rollout_start = time.perf_counter()
            with self._population_rng() as env_seed:
                weights = self.policy.sample_weights(self.population_size)
                result = self._evaluate_population(weights, callback, env_seed, record=self._records_population)
            self.logger.record("time/rollout_seconds", time.perf_counter() - rollout_start)
            callback.on_rollout_end()
            if not result.completed:
                break
            self._n_iterations += 1
            self.train(weights, result)
            if log_interval is not None and self._n_iterations % log_interval == 0:
                self.dump_logs()

        callback.on_training_end()
        return self

    @contextlib.contextmanager
    def _population_rng(self) -> Iterator[int]:
        """
        Make the population of the coming iteration a function of the run's seed and the iteration number.

        Inside the context, torch's RNG (weight noise, sampled actions, and any callback run during the
        evaluation) is seeded from ``(run seed, iteration)``, and the context gives the seed of the
        population's envs (the evaluator seeds its slots with it); torch's RNG state of before is restored on
        exit, so what runs between populations (CEM-AH's gradient steps) keeps its own stream. A model saved
        after an iteration therefore holds all that the next populations depend on (mean, std, iteration
        count), and ``load`` then ``learn(reset_num_timesteps=False)`` continues exactly as an uninterrupted
        run would.
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

    def _recorded_candidates(self, result: PopulationResult) -> np.ndarray:
        """The candidates whose steps a recording evaluation keeps (the elites; subclasses may want more)."""
        return self._elite_indices(result)

    def _fitness(self, result: PopulationResult) -> np.ndarray:
        """What the candidates are ranked on: return + ``alive_bonus_offset`` * episode length, ``(n_candidates,)``."""
        return result.returns + self.alive_bonus_offset * result.episode_lengths

    def _elite_indices(self, result: PopulationResult) -> np.ndarray:
        """Indices of the ``n_elite`` fittest candidates, best first (ties keep the lower index, for reproducibility)."""
        return np.argsort(-self._fitness(result), kind="stable")[: self.n_elite]

    def _elite_moments(self, elite_weights: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """
        Mean and variance of the elites' weights under ``elite_weighting``.

        :param elite_weights: The elites' flat weights, best first, shape ``(n_elite, n_params)``.
        :return: Mean and variance, each of shape ``(n_params,)``.
        """
        if self.elite_weighting == "uniform":
            return elite_weights.mean(dim=0), elite_weights.var(dim=0, unbiased=False)
        ranks = th.arange(1, len(elite_weights) + 1, dtype=elite_weights.dtype, device=elite_weights.device)
        log_weights = math.log(len(elite_weights) + 0.5) - th.log(ranks)
        recombination = (log_weights / log_weights.sum()).unsqueeze(1)
        mean = (recombination * elite_weights).sum(dim=0)
        return mean, (recombination * (elite_weights - mean) ** 2).sum(dim=0)

    def train(self, weights: th.Tensor, result: PopulationResult) -> None:
        """
        Refit the Gaussian to the elites (Algorithm 1, lines 8-11), with the optional extra noise, std floor and reset.

        :param weights: The evaluated candidates, shape ``(population_size, n_params)``.
        :param result: Their evaluation.
        """
        elite = self._elite_indices(result)
        elite_weights = weights[th.as_tensor(elite, device=weights.device)]
        mean, variance = self._elite_moments(elite_weights)
        extra_variance = max(self.extra_noise - self.extra_noise_decay * (self._n_iterations - 1), 0.0)
        min_std = self._min_std_schedule(self._current_progress_remaining)
        std = th.sqrt(variance + extra_variance).clamp_min(min_std)
        self.policy.mean.copy_(mean)
        self.policy.std.copy_(std)
        std_mean = float(std.mean())
        if std_mean < self.std_reset_threshold:
            self._reset_distribution()
            self._n_std_resets += 1

        self.logger.record("train/iterations", self._n_iterations)
        self.logger.record("train/return_mean", float(np.mean(result.returns)))
        self.logger.record("train/return_max", float(np.max(result.returns)))
        self.logger.record("train/elite_return_mean", float(np.mean(result.returns[elite])))
        self.logger.record("train/std_mean", std_mean)
        self.logger.record("train/std_resets", self._n_std_resets)
        self.logger.record("train/min_std", min_std)

    def dump_logs(self) -> None:
        """Write the SB3 ``time/`` and ``rollout/`` keys with the ``train/`` keys of the last iteration."""
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
        self.logger.dump(step=self.num_timesteps)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy"], []

    def _excluded_save_params(self) -> list[str]:
        # The evaluator holds the env (and Ray actors): a saved model is loaded and used without it.
        return [*super()._excluded_save_params(), "_evaluator", "_evaluator_config"]

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
        Load a model saved by :meth:`save`, after checking that the file is a readable SB3 archive written
        by this algorithm (a PPO or CEM-AH file given to ``CEM.load`` fails with a clear message).

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
