"""A policy over flat weight vectors: the network layout and the observation / action conversions that every
population algorithm and evaluator of the package shares (no weights of its own)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, preprocess_obs
from torch import nn

from sb3_cemah.common.policy_network import FlatPolicyNetwork
from sb3_cemah.common.threads import LIBRARY_THREADS, torch_threads

__all__ = ["FlatPolicy"]


class FlatPolicy(BasePolicy):
    """
    The layout of a :class:`FlatPolicyNetwork` and its conversions: observations to features, network outputs to
    actions. Subclasses add what acts (CEM's Gaussian mean, CEM-AH's generated ensemble).

    Discrete actions: the network's tanh outputs are the logits of a softmax (as in the paper's code);
    greedy acting takes the argmax. Box actions: the tanh outputs are scaled to the action bounds.

    :param observation_space: Observation space (Box, Discrete, MultiDiscrete or MultiBinary).
    :param action_space: Action space (Discrete or bounded Box).
    :param net_arch: Hidden layer sizes of the policy network; ``[]`` (default) is the paper's linear 2-layer policy.
    :param activation_fn: Activation of the hidden layers.
    :param standardize_obs: Standardise each observation vector to zero mean and unit variance over its own
        entries before the network, as the paper's code does for the maze (raw cell codes saturate tanh).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        standardize_obs: bool = False,
    ):
        super().__init__(observation_space, action_space, squash_output=isinstance(action_space, spaces.Box))
        self.net_arch = list(net_arch or [])
        self.activation_fn = activation_fn
        self.standardize_obs = standardize_obs
        self.is_discrete = isinstance(action_space, spaces.Discrete)
        output_dim = int(action_space.n) if isinstance(action_space, spaces.Discrete) else get_flattened_obs_dim(action_space)
        self.network = FlatPolicyNetwork(
            input_dim=get_flattened_obs_dim(observation_space),
            output_dim=output_dim,
            net_arch=tuple(self.net_arch),
            activation_fn=activation_fn,
        )
        if isinstance(action_space, spaces.Box):
            # Precomputed [-1, 1] -> [low, high] rescaling: SB3's unscale_action costs more than the policy per step.
            self._action_low = action_space.low.astype(np.float32)
            self._action_half_range = (0.5 * (action_space.high - action_space.low)).astype(np.float32)
        # An empty buffer that follows the policy's device (the flat policy has no parameters for SB3 to look at).
        self.register_buffer("_device_anchor", th.zeros(0), persistent=False)

    @property
    def _box_features_on_cpu(self) -> bool:
        """Whether :meth:`obs_to_features` can skip ``preprocess_obs``: Box observations, no standardisation, CPU."""
        return isinstance(self.observation_space, spaces.Box) and not self.standardize_obs and self.device.type == "cpu"

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        # BasePolicy's normalize_images does not apply: observations are flattened and never scaled as images.
        data.pop("normalize_images", None)
        data.update(net_arch=self.net_arch, activation_fn=self.activation_fn, standardize_obs=self.standardize_obs)
        return data

    @property
    def device(self) -> th.device:
        """The policy's device (SB3's default looks for parameters, which a flat policy may have none of)."""
        anchor = self._device_anchor
        assert isinstance(anchor, th.Tensor)
        return anchor.device

    def features(self, observation: th.Tensor) -> th.Tensor:
        """
        Preprocess (one-hot for discrete spaces, float cast for Box), flatten and optionally standardise.

        :param observation: Shape ``(batch, *obs_shape)``.
        :return: Shape ``(batch, input_dim)``, float32.
        """
        features = preprocess_obs(observation, self.observation_space, normalize_images=False)
        assert isinstance(features, th.Tensor)  # Dict observation spaces are rejected at construction
        features = features.float().reshape(features.shape[0], -1)
        if self.standardize_obs:
            mean = features.mean(dim=1, keepdim=True)
            std = features.std(dim=1, keepdim=True) if features.shape[1] > 1 else th.ones_like(mean)
            features = (features - mean) / (std + 1e-8)
        return features

    def obs_to_features(self, observation: np.ndarray) -> th.Tensor:
        """:param observation: Raw VecEnv observations ``(batch, *obs_shape)``.
        :return: Features ``(batch, input_dim)`` on the policy's device."""
        if self._box_features_on_cpu:
            # What features() computes for a Box space (float32 cast, flatten), in numpy and one zero-copy tensor:
            # this runs at every VecEnv step, where each torch op on such small tensors costs more than the numpy work.
            return th.from_numpy(np.asarray(observation, dtype=np.float32).reshape(len(observation), -1))
        return self.features(th.as_tensor(observation, device=self.device))

    def outputs_to_targets(self, outputs: th.Tensor) -> th.Tensor:
        """
        What the CEM-AH generator imitates and the discriminator sees as the action part of ``<s, a>``:
        the action probabilities (softmax of the outputs) for discrete actions, the tanh outputs for Box.

        :param outputs: Network outputs, shape ``(..., output_dim)``.
        :return: Same shape.
        """
        return th.softmax(outputs, dim=-1) if self.is_discrete else outputs

    def actions_to_targets(self, actions: th.Tensor) -> th.Tensor:
        """
        The action part of an elite ``<s, a>`` tuple, in the space of :meth:`outputs_to_targets`: the action the
        elite took, one-hot for discrete actions (greedy or sampled alike), the [-1, 1] action for Box.

        :param actions: Output of :meth:`outputs_to_actions`, shape ``(batch,)`` or ``(batch, *action_shape)``.
        :return: Shape ``(batch, output_dim)``, float32.
        """
        if self.is_discrete:
            return F.one_hot(actions.long(), self.network.output_dim).float()
        return actions.reshape(actions.shape[0], -1).float()

    def outputs_to_actions(self, outputs: th.Tensor, deterministic: bool, generator: th.Generator | None = None) -> th.Tensor:
        """
        Actions in the policy's convention: discrete indices, or Box actions in [-1, 1] (``predict``
        rescales them to the bounds).

        :param outputs: Network outputs ``(batch, output_dim)``.
        :param deterministic: Greedy discrete action when True, sampled from the softmax otherwise.
        :param generator: The random stream of the sampled actions (None: torch's global one).
        :return: ``(batch,)`` discrete actions, or ``(batch, *action_shape)`` in [-1, 1].
        """
        if self.is_discrete:
            if deterministic:
                return outputs.argmax(dim=-1)
            # multinomial rather than a Categorical distribution object: this runs at every env step.
            return th.multinomial(th.softmax(outputs, dim=-1), 1, generator=generator).squeeze(-1)
        return outputs.reshape(outputs.shape[0], *self.action_space.shape)  # type: ignore[misc]

    def actions_to_env(self, actions: th.Tensor) -> np.ndarray:
        """:param actions: Output of :meth:`outputs_to_actions`.
        :return: Actions the env accepts, rescaled to the Box bounds, as a numpy array."""
        actions_np = actions.cpu().numpy()
        return actions_np if self.is_discrete else self._action_low + (actions_np + 1.0) * self._action_half_range

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's ``predict``, on :data:`~sb3_cemah.common.threads.LIBRARY_THREADS` torch threads (the caller's count is
        restored): the networks are small, and more threads wait on each other when the cores are busy."""
        with torch_threads(LIBRARY_THREADS):
            return super().predict(observation, state, episode_start, deterministic)

    def _predict(self, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:  # type: ignore[override]
        raise NotImplementedError(f"{type(self).__name__} has no weights to act with: use a subclass that has.")
