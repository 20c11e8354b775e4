"""Where a population runs: the VecEnv of the training process (``"local"``) or Ray actors (``"ray"``).

CEM and CEM-AH pick one with their ``evaluator`` and ``evaluator_kwargs`` arguments; both evaluators give the
same :class:`~sb3_cemah.common.population.PopulationResult` and drive the same step hook, so that the algorithm
does not know where its candidates ran.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch as th
from stable_baselines3.common.vec_env import VecEnv

from sb3_cemah.common.population import PopulationPolicy, PopulationResult, StepHook, evaluate_population

__all__ = ["EVALUATORS", "LocalEvaluator", "PopulationEvaluator", "make_evaluator"]

#: The values of the algorithms' ``evaluator`` argument.
EVALUATORS = ("local", "ray")


class PopulationEvaluator(Protocol):
    """Evaluates the candidates of one iteration; see :class:`LocalEvaluator` for the meaning of the arguments."""

    env: VecEnv

    def evaluate(
        self,
        policy: PopulationPolicy,
        flat_weights: th.Tensor,
        n_episodes: int,
        deterministic: bool,
        seed: int,
        step_hook: StepHook,
        select_recorded: Callable[[PopulationResult], np.ndarray] | None,
    ) -> PopulationResult: ...

    def close(self) -> None:
        """Release what the evaluator holds besides the env (workers); the next ``evaluate`` starts them again. The
        algorithms call it when ``learn`` returns."""
        ...


class LocalEvaluator:
    """
    The population on the slots of the training VecEnv (:func:`~sb3_cemah.common.population.evaluate_population`),
    the step hook called at every VecEnv step.

    :param env: The training VecEnv.
    """

    def __init__(self, env: VecEnv):
        self.env = env

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
        """
        :param policy: The network layout and the observation/action conversions.
        :param flat_weights: The candidates, shape ``(n_candidates, n_params)``.
        :param n_episodes: Episodes per candidate.
        :param deterministic: Greedy discrete actions.
        :param seed: Seed of the population's envs (the slots get ``seed + slot``).
        :param step_hook: Called after every VecEnv step, see :data:`~sb3_cemah.common.population.StepHook`.
        :param select_recorded: None to record nothing; otherwise the candidates whose steps the caller needs,
            from their evaluation (here every candidate's steps are kept: they are in this process already).
        :return: The evaluation.
        """
        self.env.seed(seed)
        return evaluate_population(
            self.env,
            policy,
            flat_weights,
            n_episodes=n_episodes,
            deterministic=deterministic,
            step_hook=step_hook,
            record=select_recorded is not None,
        )

    def close(self) -> None:
        """Nothing to release: the VecEnv belongs to the algorithm."""


def make_evaluator(name: str | PopulationEvaluator, kwargs: dict[str, Any] | None, env: VecEnv) -> PopulationEvaluator:
    """
    Build the evaluator an algorithm's ``evaluator`` / ``evaluator_kwargs`` arguments ask for.

    :param name: ``"local"``, ``"ray"``, or an evaluator object (returned as it is; it must run ``env``).
    :param kwargs: Keyword arguments of the evaluator (none for ``"local"``; see
        :class:`~sb3_cemah.common.ray_evaluator.RayEvaluator`).
    :param env: The training VecEnv.
    :return: The evaluator; a Ray evaluator starts its workers at its first population.
    """
    kwargs = dict(kwargs or {})
    if not isinstance(name, str):
        if not (callable(getattr(name, "evaluate", None)) and callable(getattr(name, "close", None))):
            raise TypeError(f"evaluator must be 'local', 'ray' or a PopulationEvaluator object, got {name!r}.")
        if kwargs:
            raise ValueError("evaluator_kwargs apply to a named evaluator; configure an evaluator object when building it.")
        if getattr(name, "env", None) is not env:
            raise ValueError(
                "The evaluator object runs another env than the algorithm's: build it on the same VecEnv "
                "(e.g. LocalEvaluator(env) with the env given to the algorithm)."
            )
        return name
    if name == "local":
        if kwargs:
            raise ValueError(f"The local evaluator takes no evaluator_kwargs, got {sorted(kwargs)}.")
        return LocalEvaluator(env)
    if name == "ray":
        from sb3_cemah.common.ray_evaluator import RayEvaluator

        valid = [name for name in inspect.signature(RayEvaluator).parameters if name != "env"]
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ValueError(
                f"Unknown evaluator_kwargs for the Ray evaluator: {', '.join(unknown)} (valid: {', '.join(valid)})."
            )
        return RayEvaluator(env, **kwargs)
    raise ValueError(f"Unknown evaluator {name!r}: choose one of {', '.join(map(repr, EVALUATORS))}.")
