"""Policies of Qt-Opt and Qt-Opt+DDPG: twin Q-networks whose argmax over actions is a batched CEM."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from sb3_cemah.qtopt.action_cem import ActionCEM, coded_action_dim

__all__ = ["CodedActor", "QtOptDDPGPolicy", "QtOptPolicy", "coded_action_space"]


def coded_action_space(action_space: spaces.Space) -> spaces.Box:
    """
    The Box of the actions the critic takes and the replay buffer stores.

    :param action_space: The env's action space.
    :return: ``Box(-1, 1, (d,))`` for a Box (SB3's normalised actions); for ``Discrete(n)``, ``Box(0, 1, (n,))``
        holding probability vectors.
    """
    dim = coded_action_dim(action_space)
    low = 0.0 if isinstance(action_space, spaces.Discrete) else -1.0
    return spaces.Box(low=low, high=1.0, shape=(dim,), dtype=np.float32)


class QtOptPolicy(BasePolicy):
    """
    Qt-Opt's policy: ``n_critics`` Q-networks on (observation, coded action) with their Polyak targets; the
    action is the CEM argmax of the first Q-network.

    Coded actions: a Box action normalised to [-1, 1] (``squash_output``: ``predict`` rescales it to the bounds);
    for ``Discrete(n)``, a probability vector over the actions, from which the env action is sampled
    (``deterministic=True``: its argmax), as in the paper's Qt-Opt baselines on the maze.

    :param observation_space: Observation space.
    :param action_space: Action space (Discrete or bounded one-dimensional Box).
    :param lr_schedule: Learning rate schedule of the critics' optimiser.
    :param net_arch: Hidden layer sizes of each Q-network.
    :param activation_fn: Activation of the hidden layers.
    :param cem_samples: CEM candidates per state and iteration.
    :param cem_elites: CEM elites per iteration.
    :param cem_iterations: CEM iterations.
    :param features_extractor_class: Features extractor of the Q-networks.
    :param features_extractor_kwargs: Its keyword arguments.
    :param normalize_images: Whether to divide image observations by 255.
    :param optimizer_class: Optimiser of the critics.
    :param optimizer_kwargs: Its keyword arguments, besides the learning rate.
    :param n_critics: Number of Q-networks; the target is the minimum of their targets (clipped double Q).
    """

    critic: ContinuousCritic
    critic_target: ContinuousCritic

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        cem_samples: int = 64,
        cem_elites: int = 6,
        cem_iterations: int = 2,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
    ):
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=isinstance(action_space, spaces.Box),
            normalize_images=normalize_images,
        )
        if n_critics < 1:
            raise ValueError(f"n_critics must be >= 1, got {n_critics}")
        self.net_arch = [256, 256] if net_arch is None else list(net_arch)
        self.activation_fn = activation_fn
        self.n_critics = n_critics
        self.cem = ActionCEM(n_samples=cem_samples, n_elites=cem_elites, n_iterations=cem_iterations)
        self.coded_space = coded_action_space(action_space)
        self._build(lr_schedule)

    def _build(self, lr_schedule: Schedule) -> None:
        """Create the critics and their optimiser."""
        self.critic = self.make_critic()
        self.critic_target = self.make_critic()
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.set_training_mode(False)
        self.critic.optimizer = self.optimizer_class(self.critic.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def make_critic(self) -> ContinuousCritic:
        """A fresh set of ``n_critics`` Q-networks on (observation, coded action), with their own features extractor."""
        features_extractor = self.make_features_extractor()
        return ContinuousCritic(
            self.observation_space,
            self.coded_space,
            net_arch=self.net_arch,
            features_extractor=features_extractor,
            features_dim=features_extractor.features_dim,
            activation_fn=self.activation_fn,
            normalize_images=self.normalize_images,
            n_critics=self.n_critics,
            share_features_extractor=False,
        ).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            {
                "net_arch": self.net_arch,
                "activation_fn": self.activation_fn,
                "cem_samples": self.cem.n_samples,
                "cem_elites": self.cem.n_elites,
                "cem_iterations": self.cem.n_iterations,
                "n_critics": self.n_critics,
                "lr_schedule": self._dummy_schedule,
                "optimizer_class": self.optimizer_class,
                "optimizer_kwargs": self.optimizer_kwargs,
                "features_extractor_class": self.features_extractor_class,
                "features_extractor_kwargs": self.features_extractor_kwargs,
            }
        )
        return data

    def cem_actions(self, obs: PyTorchObs, critic: ContinuousCritic | None = None) -> th.Tensor:
        """
        The CEM argmax of the first Q-network of ``critic``, for every state of the batch in one pass.

        :param obs: Preprocessed-ready observations, batch of B.
        :param critic: ``self.critic`` (default: acting) or ``self.critic_target`` (TD targets).
        :return: Coded actions, shape (B, coded_action_dim), without gradient.
        """
        critic = self.critic if critic is None else critic
        with th.no_grad():
            # The features of each state are computed once, not once per candidate action.
            features = critic.extract_features(obs, critic.features_extractor)
            q_network = critic.q_networks[0]

            def q_values(actions: th.Tensor) -> th.Tensor:
                repeated = features.unsqueeze(1).expand(-1, actions.shape[1], -1)
                return q_network(th.cat([repeated, actions], dim=-1)).squeeze(-1)

            return self.cem.maximise(q_values, features.shape[0], self.action_space, device=features.device)

    def random_coded_actions(self, n_envs: int) -> np.ndarray:
        """
        Coded actions of the warm-up phase (before ``learning_starts``).

        :param n_envs: Number of actions.
        :return: Shape (n_envs, coded_action_dim): uniform Box actions (from the action space's seeded RNG),
            normalised; for a Discrete space, the softmax of ``N(0, I)`` logits (the CEM's initial distribution).
        """
        if isinstance(self.action_space, spaces.Discrete):
            logits = th.randn(n_envs, self.coded_space.shape[0])
            return th.softmax(logits, dim=-1).numpy()
        return self.scale_action(np.array([self.action_space.sample() for _ in range(n_envs)]))

    def env_actions(self, coded: th.Tensor, deterministic: bool) -> th.Tensor:
        """
        :param coded: Coded actions, shape (B, coded_action_dim).
        :param deterministic: For a Discrete space, take the most probable action instead of sampling one.
        :return: Box: ``coded`` (``predict`` rescales it); Discrete: action indices, shape (B,).
        """
        if not isinstance(self.action_space, spaces.Discrete):
            return coded
        if deterministic:
            return coded.argmax(dim=-1)
        return th.multinomial(coded, num_samples=1).squeeze(-1)

    def coded_actions(self, obs: PyTorchObs) -> th.Tensor:
        """The coded actions the policy takes: Qt-Opt's CEM argmax of the critic. Shape (B, coded_action_dim)."""
        return self.cem_actions(obs)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.env_actions(self.coded_actions(observation), deterministic)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def set_training_mode(self, mode: bool) -> None:
        self.critic.set_training_mode(mode)
        self.training = mode


class CodedActor(BasePolicy):
    """
    Deterministic actor of Qt-Opt+DDPG: an MLP whose output is a coded action (tanh for a Box, softmax over
    the actions for a Discrete space).

    :param observation_space: Observation space.
    :param action_space: The env's action space.
    :param net_arch: Hidden layer sizes.
    :param features_extractor: Network to extract features.
    :param features_dim: Number of features.
    :param activation_fn: Activation of the hidden layers.
    :param normalize_images: Whether to divide image observations by 255.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
    ):
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        self.net_arch = net_arch
        self.features_dim = features_dim
        self.activation_fn = activation_fn
        self.is_discrete = isinstance(action_space, spaces.Discrete)
        # tanh keeps Box actions in [-1, 1]; a softmax after the last layer makes Discrete outputs probabilities.
        output_layers = create_mlp(
            features_dim, coded_action_dim(action_space), net_arch, activation_fn, squash_output=not self.is_discrete
        )
        self.mu = nn.Sequential(*output_layers)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            {
                "net_arch": self.net_arch,
                "features_dim": self.features_dim,
                "activation_fn": self.activation_fn,
                "features_extractor": self.features_extractor,
            }
        )
        return data

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        """:return: Coded actions, shape (B, coded_action_dim)."""
        output = self.mu(self.extract_features(obs, self.features_extractor))
        return th.softmax(output, dim=-1) if self.is_discrete else output

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self(observation)


class QtOptDDPGPolicy(QtOptPolicy):
    """
    Qt-Opt+DDPG's policy (cross-entropy guided policies, Simmons-Edler et al. 2019): Qt-Opt's critics and
    CEM, plus a :class:`CodedActor` regressed onto the CEM's choices, which ``predict`` uses (one forward
    pass instead of a CEM). Training still explores with the CEM (:meth:`cem_actions`).

    :param actor_arch: Hidden layer sizes of the actor (default: ``net_arch``).
    Other parameters: see :class:`QtOptPolicy`.
    """

    actor: CodedActor

    def __init__(self, *args: Any, actor_arch: list[int] | None = None, **kwargs: Any):
        self.actor_arch = actor_arch
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        features_extractor = self.make_features_extractor()
        self.actor = CodedActor(
            self.observation_space,
            self.action_space,
            net_arch=self.net_arch if self.actor_arch is None else list(self.actor_arch),
            features_extractor=features_extractor,
            features_dim=features_extractor.features_dim,
            activation_fn=self.activation_fn,
            normalize_images=self.normalize_images,
        ).to(self.device)
        self.actor.optimizer = self.optimizer_class(self.actor.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(actor_arch=self.actor_arch)
        return data

    def coded_actions(self, obs: PyTorchObs) -> th.Tensor:
        """The actor's coded actions, shape (B, coded_action_dim)."""
        with th.no_grad():
            return self.actor(obs)

    def set_training_mode(self, mode: bool) -> None:
        super().set_training_mode(mode)
        self.actor.set_training_mode(mode)
