"""Qt-Opt (Kalashnikov et al. 2018): Q-learning whose argmax over actions is a CEM, as an SB3 off-policy algorithm."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, ReplayBufferSamples, Schedule
from stable_baselines3.common.utils import get_parameters_by_name, polyak_update

from sb3_cemah.common.spaces import check_spaces
from sb3_cemah.qtopt.action_cem import ActionCEM
from sb3_cemah.qtopt.policies import QtOptPolicy, coded_action_space

__all__ = ["QtOpt"]


class QtOpt(OffPolicyAlgorithm):
    """
    Qt-Opt: off-policy Q-learning on a replay buffer, where the argmax over actions, both to act and for the
    TD target, is a small CEM over the action space (:class:`~sb3_cemah.qtopt.action_cem.ActionCEM`), run for
    all states of a mini-batch in one tensor pass. The TD target is clipped double Q: the CEM maximises the
    first target Q-network, and the target value is the minimum of the target Q-networks at that action.

    Box actions are searched in SB3's normalised [-1, 1] space; for a Discrete space the CEM searches the logits
    of a probability vector, the critic scores the probabilities, the buffer stores them, and the env action is
    sampled from them, as the paper's Qt-Opt baselines do on the maze.

    Paper: https://arxiv.org/abs/1806.10293 (Sec. 4.2); the MSE loss stands in for its cross-entropy loss, as in
    the CEM-AH authors' baselines.

    :param policy: The policy model to use (``MlpPolicy`` or a :class:`QtOptPolicy` subclass).
    :param env: The environment to learn from (if registered in Gym, can be str).
    :param learning_rate: Learning rate of Adam, constant or a function of the remaining progress (1 to 0).
    :param buffer_size: Size of the replay buffer, in transitions.
    :param learning_starts: Steps of uniformly random actions collected before learning starts.
    :param batch_size: Mini-batch size of each gradient step.
    :param tau: Polyak coefficient of the target Q-networks' update, after every gradient step (1 copies).
    :param gamma: Discount factor.
    :param train_freq: Update the model every ``train_freq`` steps, or ``(n, "episode")``.
    :param gradient_steps: Gradient steps after each rollout; -1: as many as env steps were collected.
    :param cem_samples: CEM candidate actions per state and iteration (Qt-Opt: 64).
    :param cem_elites: CEM elites per iteration (Qt-Opt: 6).
    :param cem_iterations: CEM iterations (Qt-Opt: 2).
    :param action_noise: Extra Gaussian-style exploration noise on Box actions (the CEM's sampling already
        explores); ignored for a Discrete space, which samples from the chosen probabilities.
    :param replay_buffer_class: Replay buffer class (default: ``ReplayBuffer``).
    :param replay_buffer_kwargs: Keyword arguments of the replay buffer.
    :param optimize_memory_usage: Memory-efficient replay buffer (see SB3's ``ReplayBuffer``).
    :param n_steps: n-step returns (Box action spaces only).
    :param stats_window_size: Episodes averaged in the rollout logs.
    :param tensorboard_log: The log location for tensorboard (if None, no logging).
    :param policy_kwargs: Keyword arguments of the policy (``net_arch``, ``n_critics``, ...).
    :param verbose: Verbosity level: 0 no output, 1 info, 2 debug.
    :param seed: Seed for the pseudo random generators (the CEM samples from torch's).
    :param device: Device (cpu, cuda, ...) on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": QtOptPolicy}
    policy: QtOptPolicy

    def __init__(
        self,
        policy: str | type[QtOptPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        cem_samples: int = 64,
        cem_elites: int = 6,
        cem_iterations: int = 2,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        if env is not None:
            # Checked before SB3's own check, whose message names no fix.
            env = maybe_make_env(env, verbose)
            check_spaces(env.observation_space, env.action_space, type(self).__name__)
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete),
            support_multi_env=True,
        )
        self._check_hyperparameters(cem_samples, cem_elites, cem_iterations)
        # The policy runs the CEM (to act and for the targets): it owns the settings, saved with it.
        self.policy_kwargs.update(cem_samples=cem_samples, cem_elites=cem_elites, cem_iterations=cem_iterations)
        if _init_setup_model:
            self._setup_model()

    def _check_hyperparameters(self, cem_samples: int, cem_elites: int, cem_iterations: int) -> None:
        """Reject invalid values before anything is built, naming the parameter."""
        ActionCEM(n_samples=cem_samples, n_elites=cem_elites, n_iterations=cem_iterations)
        checks = [
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (0.0 < self.tau <= 1.0, "tau must be in (0, 1]"),
            (0.0 <= self.gamma <= 1.0, "gamma must be in [0, 1]"),
            (
                self.n_steps == 1 or not isinstance(self.action_space, spaces.Discrete),
                "n_steps > 1 is not supported with a Discrete action space (its buffer stores probability vectors)",
            ),
        ]
        for valid, message in checks:
            if not valid:
                raise ValueError(f"Invalid hyper-parameter for {type(self).__name__}: {message}.")

    def _setup_model(self) -> None:
        if isinstance(self.action_space, spaces.Discrete) and self.replay_buffer is None:
            # The buffer stores the probability vectors the critic scores, not the sampled action indices.
            buffer_class = self.replay_buffer_class or ReplayBuffer
            self.replay_buffer = buffer_class(
                self.buffer_size,
                self.observation_space,
                coded_action_space(self.action_space),
                device=self.device,
                n_envs=self.n_envs,
                optimize_memory_usage=self.optimize_memory_usage,
                **self.replay_buffer_kwargs,
            )
        super()._setup_model()
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target
        # Batch-norm running statistics are copied to the target, not averaged (SB3 issue #996).
        self.critic_batch_norm_stats = get_parameters_by_name(self.critic, ["running_"])
        self.critic_batch_norm_stats_target = get_parameters_by_name(self.critic_target, ["running_"])

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        :return: The env actions, and the coded actions stored in the buffer, shape (n_envs, coded_action_dim):
            random ones before ``learning_starts``, else the CEM argmax of the critic (also for Qt-Opt+DDPG,
            whose actor only acts in ``predict``).
        """
        if self.num_timesteps < learning_starts:
            coded = self.policy.random_coded_actions(n_envs)
        else:
            assert self._last_obs is not None, "self._last_obs was not set"
            obs_tensor, _ = self.policy.obs_to_tensor(self._last_obs)
            coded = self.policy.cem_actions(obs_tensor).cpu().numpy()
        if isinstance(self.action_space, spaces.Discrete):
            return self.policy.env_actions(th.as_tensor(coded), deterministic=False).numpy(), coded
        if action_noise is not None:
            coded = np.clip(coded + action_noise(), -1.0, 1.0)
        return self.policy.unscale_action(coded), coded

    def _optimizers(self) -> list[th.optim.Optimizer]:
        """The optimisers whose learning rate follows ``learning_rate``."""
        return [self.critic.optimizer]

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self._optimizers())
        losses: dict[str, list[float]] = {}
        for _ in range(gradient_steps):
            self._n_updates += 1
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            for name, value in self._gradient_step(replay_data).items():
                losses.setdefault(name, []).append(value)
            polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
            polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for name, values in losses.items():
            self.logger.record(f"train/{name}", np.mean(values))

    def _gradient_step(self, replay_data: ReplayBufferSamples) -> dict[str, float]:
        """
        One critic update on a mini-batch.

        :param replay_data: The mini-batch.
        :return: The losses to log, by name (``critic_loss``: the sum of the critics' MSE to the TD target).
        """
        discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
        with th.no_grad():
            next_actions = self.policy.cem_actions(replay_data.next_observations, self.critic_target)
            next_q_values = th.cat(self.critic_target(replay_data.next_observations, next_actions), dim=1)
            next_q_values = next_q_values.min(dim=1, keepdim=True).values
            target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values
        current_q_values = self.critic(replay_data.observations, replay_data.actions)
        critic_loss = th.stack([F.mse_loss(current_q, target_q_values) for current_q in current_q_values]).sum()
        self.critic.optimizer.zero_grad()
        critic_loss.backward()
        self.critic.optimizer.step()
        return {"critic_loss": critic_loss.item()}

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "critic", "critic_target"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "critic.optimizer"], []
