"""Vectorised evaluation of a population of flat-weight policies on the slots of a VecEnv.

Each of the ``n_envs`` slots runs one candidate's episode; when it ends, the slot takes the next
candidate that has episodes left. Every VecEnv step computes the actions of all slots with one batched
forward pass over the stacked weights of the candidates they run, so the cost per step does not grow
with the number of candidates, and ``SubprocVecEnv`` spreads the env steps over cores.

On a plain ``DummyVecEnv`` (what ``make_vec_env`` and rl-zoo3 build when nothing wraps it) the slots are stepped
as ``DummyVecEnv.step`` does, into its own buffers, but without its deep copies of the observation buffer and of
every info dict at every step (a cost as large as the evaluator's own work); the infos are
the envs' own dicts, fresh at every step. Any other VecEnv is stepped through ``VecEnv.step``.

Returns are the env's own: under ``VecNormalize`` (rl-zoo3's ``normalize: true``) candidates are ranked on
the original rewards (``get_original_reward``), not on normalised ones whose scale drifts as the running
statistics change within a population.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, unwrap_vec_normalize
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from sb3_cemah.common.policy_network import FlatPolicyNetwork

__all__ = ["PopulationPolicy", "PopulationResult", "StepHook", "evaluate_population"]

# Called after every VecEnv step with (new_obs, rewards, dones, infos, counted); returning False stops the
# evaluation. ``counted`` (bool, ``(n_envs,)``) marks the slots that ran a candidate during that step: the
# others were idle (see evaluate_population), and their episodes belong to no candidate.
StepHook = Callable[[np.ndarray, np.ndarray, np.ndarray, list, np.ndarray], bool]


class PopulationPolicy(Protocol):
    """What the evaluator needs from a policy: the network layout and the observation/action conversions."""

    network: FlatPolicyNetwork

    def obs_to_features(self, observation: np.ndarray) -> th.Tensor:
        """Preprocessed, flattened observations: ``(batch, *obs_shape)`` -> ``(batch, input_dim)``."""
        ...

    def outputs_to_actions(self, outputs: th.Tensor, deterministic: bool) -> th.Tensor:
        """Network outputs ``(batch, output_dim)`` -> actions in the policy's convention: discrete indices ``(batch,)``
        or Box actions in [-1, 1] ``(batch, *action_shape)``."""
        ...

    def actions_to_env(self, actions: th.Tensor) -> np.ndarray:
        """Actions in the policy's convention -> actions the env accepts (Box rescaled to its bounds)."""
        ...


@dataclass
class PopulationResult:
    """
    Outcome of evaluating a population.

    :param returns: Mean episodic return of each candidate, shape ``(n_candidates,)``.
    :param episode_lengths: Mean episode length of each candidate (steps), shape ``(n_candidates,)``.
    :param completed: False when the step hook asked to stop before every episode finished.
    :param observations: When recording, the observation (as the policy saw it) of every step taken by a
        candidate, shape ``(n_recorded, *obs_shape)``; otherwise None. (The Ray evaluator returns the steps of
        the candidates the caller selected only, e.g. CEM-AH's elites.)
    :param actions: When recording, the actions taken at those steps in the policy's convention (discrete
        indices ``(n_recorded,)``, or Box actions in [-1, 1] ``(n_recorded, *action_shape)``).
    :param step_candidates: When recording, the candidate index of each recorded step, shape ``(n_recorded,)``.
    :param original_observations: When recording on a ``VecNormalize`` env, the unnormalised observations of
        the same steps (``get_original_obs``, shape ``(n_recorded, *original_obs_shape)``), which stay valid
        when the running statistics change; otherwise None.
    """

    returns: np.ndarray
    episode_lengths: np.ndarray
    completed: bool
    observations: np.ndarray | None = None
    actions: th.Tensor | None = None
    step_candidates: np.ndarray | None = None
    original_observations: np.ndarray | None = None


def evaluate_population(
    env: VecEnv,
    policy: PopulationPolicy,
    flat_weights: th.Tensor,
    n_episodes: int = 1,
    deterministic: bool = True,
    step_hook: StepHook | None = None,
    record: bool = False,
) -> PopulationResult:
    """
    Run ``n_episodes`` episodes of every candidate on the VecEnv slots and return their mean returns.

    The VecEnv is reset first (slots left mid-episode by the previous call must not leak into the new
    population). Slots that have no candidate left keep stepping (a VecEnv steps all slots together) with
    the last candidate's weights; those steps count as env steps but belong to no candidate: the step hook
    gets them marked as not ``counted``, so that their episodes stay out of the episode statistics.

    :param env: The vectorised environment; its ``num_envs`` slots evaluate candidates in parallel.
    :param policy: Supplies the network layout and the observation/action conversions.
    :param flat_weights: Weights of the candidates, shape ``(n_candidates, n_params)``.
    :param n_episodes: Episodes per candidate; the returns are averaged.
    :param deterministic: Greedy (argmax) discrete actions when True, sampled from the softmax otherwise.
    :param step_hook: Called after every VecEnv step; returning False stops the evaluation early.
    :param record: Keep every step's observation and action taken (for the CEM-AH elite buffer).
    :return: The candidates' mean returns (of the original rewards under ``VecNormalize``) and lengths, and
        the recorded steps if asked for.
    """
    n_candidates = flat_weights.shape[0]
    n_slots = env.num_envs
    # Job j is episode (j % n_episodes) of candidate (j // n_episodes): a candidate's episodes stay together.
    n_jobs = n_candidates * n_episodes
    job_returns = np.zeros(n_jobs, dtype=np.float64)
    job_lengths = np.zeros(n_jobs, dtype=np.int64)

    slot_job = np.full(n_slots, -1, dtype=np.int64)
    n_started = min(n_slots, n_jobs)
    slot_job[:n_started] = np.arange(n_started)
    next_job = n_started
    n_idle = n_slots - n_started
    n_finished = 0
    slot_return = np.zeros(n_slots, dtype=np.float64)
    slot_length = np.zeros(n_slots, dtype=np.int64)

    recorded_obs: list[np.ndarray] = []
    recorded_actions: list[th.Tensor] = []
    recorded_candidates: list[np.ndarray] = []
    recorded_original_obs: list[np.ndarray] = []
    vec_normalize = unwrap_vec_normalize(env)
    step = vec_env_step(env)

    # Each slot's weights live in one tensor whose rows change only when a slot takes a new candidate; its
    # per-layer views are split once, so a step costs one batched forward pass and no gathering.
    slot_weights = flat_weights[th.as_tensor(np.maximum(slot_job, 0) // n_episodes, device=flat_weights.device)].clone()
    slot_layers = policy.network.unflatten(slot_weights)

    obs = env.reset()
    assert isinstance(obs, np.ndarray), "Dict and Tuple observations are not supported"
    _check_finite(obs, "observation")
    completed = True
    with th.no_grad():
        while n_finished < n_jobs:
            active = slot_job >= 0
            features = policy.obs_to_features(obs)
            outputs = policy.network.forward_layers(slot_layers, features.unsqueeze(1)).squeeze(1)
            actions = policy.outputs_to_actions(outputs, deterministic)
            if record:
                # Every slot active (all but a population's last steps): no boolean indexing, which costs more than
                # the step's forward pass (a torch mask on the actions alone: 64 ms of a 1.2 s reacher population).
                taken = slice(None) if n_idle == 0 else np.flatnonzero(active)
                recorded_obs.append(obs[taken].copy())
                recorded_actions.append(actions[taken])
                recorded_candidates.append(slot_job[taken] // n_episodes)
                if vec_normalize is not None:
                    original_obs = vec_normalize.get_original_obs()
                    assert isinstance(original_obs, np.ndarray), "Dict observations are not supported"
                    recorded_original_obs.append(original_obs[taken].copy())

            new_obs, rewards, dones, infos = step(policy.actions_to_env(actions))
            assert isinstance(new_obs, np.ndarray)
            _check_finite(new_obs, "observation")
            _check_finite(rewards, "reward")
            env_rewards = rewards if vec_normalize is None else vec_normalize.get_original_reward()

            if n_idle == 0:  # boolean indexing costs more than the step's arithmetic: only at a population's end
                slot_return += env_rewards
                slot_length += 1
            else:
                slot_return[active] += env_rewards[active]
                slot_length[active] += 1
            for slot in np.flatnonzero(dones & active):
                job = slot_job[slot]
                job_returns[job] = slot_return[slot]
                job_lengths[job] = slot_length[slot]
                n_finished += 1
                slot_return[slot] = 0.0
                slot_length[slot] = 0
                if next_job < n_jobs:
                    slot_job[slot] = next_job
                    slot_weights[slot] = flat_weights[next_job // n_episodes]
                else:
                    # Idle: the slot steps with the last candidate's weights until all finish; discarded steps.
                    slot_job[slot] = -1
                    slot_weights[slot] = flat_weights[-1]
                    n_idle += 1
                next_job += 1
            obs = new_obs

            if step_hook is not None and not step_hook(new_obs, rewards, dones, infos, active):
                completed = False
                break

    result = PopulationResult(
        returns=job_returns.reshape(n_candidates, n_episodes).mean(axis=1),
        episode_lengths=job_lengths.reshape(n_candidates, n_episodes).mean(axis=1),
        completed=completed,
    )
    if record:
        result.observations = np.concatenate(recorded_obs)
        result.actions = th.cat(recorded_actions)
        result.step_candidates = np.concatenate(recorded_candidates)
        if vec_normalize is not None:
            result.original_observations = np.concatenate(recorded_original_obs)
    return result


def vec_env_step(env: VecEnv) -> Callable[[np.ndarray], VecEnvStepReturn]:
    """
    How the evaluator steps ``env``: ``env.step``, or for a plain ``DummyVecEnv`` of array observations (not a
    subclass, which may override its step) :func:`_step_dummy_vec_env`.
    """
    if type(env) is DummyVecEnv and list(env.buf_obs) == [None]:
        return functools.partial(_step_dummy_vec_env, env)
    return env.step


def _step_dummy_vec_env(env: DummyVecEnv, actions: np.ndarray) -> VecEnvStepReturn:
    """
    ``DummyVecEnv.step`` (SB3 2.x: the same buffers, ``TimeLimit.truncated``, ``terminal_observation`` and
    auto-reset) without its ``deepcopy`` of the observation buffer and of the infos: the observations are one array
    copy, the infos a new list of the dicts the envs returned at this step, which the next step does not touch.
    ``tests/test_population.py`` checks that both give the same steps.

    :param env: A plain DummyVecEnv whose observations are one array.
    :param actions: One action per slot, shape ``(n_envs, *action_shape)``.
    :return: Observations ``(n_envs, *obs_shape)``, rewards and dones ``(n_envs,)``, one info dict per slot.
    """
    env.actions = actions
    observations = env.buf_obs[None]  # type: ignore[index]  # SB3 keys a single array observation by None
    for slot, sub_env in enumerate(env.envs):
        obs, env.buf_rews[slot], terminated, truncated, env.buf_infos[slot] = sub_env.step(actions[slot])
        env.buf_dones[slot] = terminated or truncated
        env.buf_infos[slot]["TimeLimit.truncated"] = truncated and not terminated
        if env.buf_dones[slot]:
            env.buf_infos[slot]["terminal_observation"] = obs
            obs, env.reset_infos[slot] = sub_env.reset()
        observations[slot] = obs
    return observations.copy(), env.buf_rews.copy(), env.buf_dones.copy(), list(env.buf_infos)


def _check_finite(values: np.ndarray, name: str) -> None:
    """Fail early, with a message the user can act on, when the env returns NaN or inf."""
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        raise ValueError(
            f"The environment returned a non-finite {name} (NaN or inf). Check the env, or wrap it with "
            "stable_baselines3.common.vec_env.VecCheckNan to find the step that produces it."
        )
