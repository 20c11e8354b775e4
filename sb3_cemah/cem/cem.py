"""CEM (Algorithm 1 of the CEM-AH paper) as a Stable-Baselines3 algorithm: the constructor and the refit."""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_cemah.cem.policies import CEMPolicy, MlpPolicy
from sb3_cemah.common.evaluators import PopulationEvaluator
from sb3_cemah.common.population import PopulationResult
from sb3_cemah.common.population_algorithm import PopulationAlgorithm
from sb3_cemah.common.schedules import as_schedule

# How the elites enter the refit (see CEM's ``elite_weighting``).
ELITE_WEIGHTINGS = ("uniform", "log")

__all__ = ["CEM"]


class CEM(PopulationAlgorithm):
    """
    Cross-Entropy Method over the flat weights of a small policy network (Algorithm 1 of
    "CEM-AH: Cross-Entropy Method guided Adversarial Hypernetwork").

    Each iteration samples ``population_size`` weight vectors from ``N(mean, diag(std^2))``, runs
    ``n_eval_episodes`` episodes of each on the VecEnv slots (all slots at once, see
    :func:`sb3_cemah.common.population.evaluate_population`), keeps the ``elite_frac`` best and refits the
    mean and the per-weight std to them. One iteration costs about
    ``population_size * n_eval_episodes * episode_length`` env steps. The trained policy acts with the mean weights.

    :param policy: The policy model to use (``"MlpPolicy"`` or a :class:`CEMPolicy` subclass).
    :param env: The environment to learn from (if registered in Gym, can be str); its episodes need a time limit.
    :param population_size: Number of candidate policies per iteration (the paper's N, 100).
    :param elite_frac: Fraction of the population kept as elites, in (0, 1]; ``round(elite_frac * population_size)``
        must be at least 2 (the std is fitted to the elites' spread).
    :param elite_weighting: How the elites enter the refit: ``"uniform"`` (the paper's, each counts equally) or
        ``"log"`` (CMA-ES's recombination weights, the elite of rank ``i`` weighted ``log(n_elite + 1/2) - log(i)``,
        normalised), which pulls the mean and the spread toward the best elites.
    :param n_eval_episodes: Episodes per candidate; its return is the mean over them.
    :param alive_bonus_offset: Constant added to the reward at every step when the candidates are ranked (their
        return plus ``alive_bonus_offset`` times their episode length), to cancel out alive bonuses, as sb3-contrib's
        ARS does (-1 on Hopper, whose healthy reward is 1 per step). The logged returns and Monitor's episodes keep
        the env's own rewards.
    :param initial_std: Initial standard deviation of every weight (the mean starts at 0).
    :param min_std: Lower bound on each weight's std, against premature collapse: a number, a schedule of
        ``progress_remaining`` (SB3's convention for ``learning_rate``) or rl-zoo3's ``"lin_<x>"`` (a floor of ``x``
        at the start falling linearly to 0 at the end of ``learn``).
    :param stochastic_candidates: Discrete actions only: candidates sample their action from the softmax of their
        outputs (the authors' code) instead of taking the argmax.
    :param evaluator: Where the populations run: ``"local"`` (the slots of ``env``), ``"ray"`` (Ray actors, needs
        ``pip install "sb3-cemah[ray]"``), or an evaluator object; see
        :class:`~sb3_cemah.common.population_algorithm.PopulationAlgorithm`.
    :param evaluator_kwargs: Keyword arguments of the Ray evaluator
        (see :class:`~sb3_cemah.common.ray_evaluator.RayEvaluator`).
    :param stats_window_size: Window size for the rollout logging, in episodes.
    :param tensorboard_log: The log location for tensorboard (if None, no logging).
    :param policy_kwargs: Keyword arguments for the policy on creation (``net_arch``, ``activation_fn``,
        ``standardize_obs``).
    :param verbose: Verbosity level: 0 no output, 1 info, 2 debug.
    :param seed: Seed for the pseudo random generators; a run is a function of it.
    :param device: Device (cpu, cuda, ...) on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    # Hyper-parameters that name one of a few choices, checked by _check_hyperparameters; subclasses add theirs.
    _choice_hyperparameters: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (("elite_weighting", ELITE_WEIGHTINGS),)
    policy: CEMPolicy

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
        min_std: float | str | Schedule = 0.0,
        stochastic_candidates: bool = False,
        evaluator: str | PopulationEvaluator = "local",
        evaluator_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        super().__init__(
            policy,
            env,
            learning_rate=0.0,  # CEM has no gradient step; CEM-AH sets its own.
            evaluator=evaluator,
            evaluator_kwargs=evaluator_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
        )
        self.population_size = population_size
        self.elite_frac = elite_frac
        self.elite_weighting = elite_weighting
        self.n_eval_episodes = n_eval_episodes
        self.alive_bonus_offset = alive_bonus_offset
        self.initial_std = initial_std
        self.min_std = min_std
        self.stochastic_candidates = stochastic_candidates
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
            (math.isfinite(self.initial_std) and self.initial_std > 0.0, "initial_std must be a finite number > 0"),
            (
                (floor := as_schedule(self.min_std)) is not None and min(floor(1.0), floor(0.0)) >= 0.0,
                f"min_std must be a number >= 0, a schedule of progress_remaining or 'lin_<x>', got {self.min_std!r}",
            ),
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
        self.policy.mean.zero_()
        self.policy.std.fill_(self.initial_std)

    def _make_policy(self) -> BasePolicy:
        return self.policy_class(self.observation_space, self.action_space, **self.policy_kwargs)

    def sample_population(self) -> th.Tensor:
        """:return: ``population_size`` weight vectors drawn from the Gaussian, shape ``(population_size, n_params)``."""
        return self.policy.sample_weights(self.population_size)

    def _fitness(self, result: PopulationResult) -> np.ndarray:
        """What the candidates are ranked on: return + ``alive_bonus_offset`` * episode length, ``(n_candidates,)``."""
        return result.returns + self.alive_bonus_offset * result.episode_lengths

    def elite_indices(self, result: PopulationResult) -> np.ndarray:
        """
        Indices of the ``n_elite`` fittest candidates of an evaluated population, best first (ties keep the lower index,
        for reproducibility).

        :param result: The population's evaluation.
        :return: Shape ``(n_elite,)``.
        """
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
        Refit the Gaussian to the elites (Algorithm 1, lines 8-11), with the std floor ``min_std``.

        :param weights: The evaluated candidates, shape ``(population_size, n_params)``.
        :param result: Their evaluation.
        """
        elite = self.elite_indices(result)
        mean, variance = self._elite_moments(weights[th.as_tensor(elite, device=weights.device)])
        min_std = self._min_std_schedule(self._current_progress_remaining)
        std = th.sqrt(variance).clamp_min(min_std)
        self.policy.mean.copy_(mean)
        self.policy.std.copy_(std)

        self.logger.record("train/iterations", self._n_iterations)
        self.logger.record("train/return_mean", float(np.mean(result.returns)))
        self.logger.record("train/return_max", float(np.max(result.returns)))
        self.logger.record("train/elite_return_mean", float(np.mean(result.returns[elite])))
        self.logger.record("train/std_mean", float(std.mean()))
        self.logger.record("train/min_std", min_std)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy"], []
