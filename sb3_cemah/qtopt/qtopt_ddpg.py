"""Qt-Opt+DDPG (cross-entropy guided policies, Simmons-Edler et al. 2019): Qt-Opt plus an actor imitating its CEM."""

from __future__ import annotations

from typing import ClassVar

import torch as th
import torch.nn.functional as F
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from sb3_cemah.qtopt.policies import CodedActor, QtOptDDPGPolicy
from sb3_cemah.qtopt.qtopt import QtOpt

__all__ = ["QtOptDDPG"]


class QtOptDDPG(QtOpt):
    """
    Qt-Opt+DDPG, the paper's [36] (CGP, https://arxiv.org/abs/1903.10605): Qt-Opt, whose CEM collects the
    experience, plus a deterministic actor trained by regression (MSE) onto the CEM's argmax of the current
    critic at the mini-batch's states. ``predict`` acts with the actor: one forward pass instead of a CEM.

    The parameters are those of :class:`QtOpt`; ``learning_rate`` also drives the actor's Adam, and
    ``policy_kwargs`` may set the actor's ``actor_arch``.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": QtOptDDPGPolicy}
    policy: QtOptDDPGPolicy
    actor: CodedActor

    def _setup_model(self) -> None:
        super()._setup_model()
        self.actor = self.policy.actor

    def _optimizers(self) -> list[th.optim.Optimizer]:
        return [*super()._optimizers(), self.actor.optimizer]

    def _gradient_step(self, replay_data: ReplayBufferSamples) -> dict[str, float]:
        """
        The critic update, then one actor update towards the CEM's choices.

        :param replay_data: The mini-batch.
        :return: ``critic_loss`` and ``actor_loss`` (MSE between the actor's and the CEM's coded actions).
        """
        losses = super()._gradient_step(replay_data)
        cem_actions = self.policy.cem_actions(replay_data.observations)
        actor_loss = F.mse_loss(self.actor(replay_data.observations), cem_actions)
        self.actor.optimizer.zero_grad()
        actor_loss.backward()
        self.actor.optimizer.step()
        return {**losses, "actor_loss": actor_loss.item()}

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "actor"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        return [*state_dicts, "actor.optimizer"], variables
