"""The CEM policy: a diagonal Gaussian over the flat weights of a small policy network."""

from __future__ import annotations

import torch as th
from gymnasium import spaces
from torch import nn

from sb3_cemah.common.flat_policy import FlatPolicy

__all__ = ["CEMPolicy", "MlpPolicy"]


class CEMPolicy(FlatPolicy):
    """
    Diagonal Gaussian ``N(mean, diag(std^2))`` over the flat weights of a :class:`FlatPolicyNetwork`; it acts with
    the mean weights.

    :param observation_space: Observation space (Box, Discrete, MultiDiscrete or MultiBinary).
    :param action_space: Action space (Discrete or bounded Box).
    :param net_arch: Hidden layer sizes of the policy network; ``[]`` (default) is the paper's linear 2-layer policy.
    :param activation_fn: Activation of the hidden layers.
    :param standardize_obs: Standardise each observation vector to zero mean and unit variance over its own
        entries before the network, as the paper's code does for the maze (raw cell codes saturate tanh).
    """

    mean: th.Tensor
    std: th.Tensor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        standardize_obs: bool = False,
    ):
        super().__init__(observation_space, action_space, net_arch, activation_fn, standardize_obs)
        # Buffers, not parameters: no optimiser touches them, but they are saved and moved with the policy.
        self.register_buffer("mean", th.zeros(self.network.n_params))
        self.register_buffer("std", th.ones(self.network.n_params))

    def sample_weights(self, n_samples: int, generator: th.Generator | None = None) -> th.Tensor:
        """
        Draw flat weight vectors from the Gaussian.

        :param n_samples: Number of policies.
        :param generator: The random stream of the draws; None: torch's global RNG (which ``learn`` seeds from the
            run's seed and the iteration number before every population).
        :return: Shape ``(n_samples, n_params)``.
        """
        shape = (n_samples, self.network.n_params)
        if generator is None:
            noise = th.randn(shape, device=self.mean.device)
        else:
            noise = th.randn(shape, generator=generator, device=generator.device).to(self.mean.device)
        return self.mean + self.std * noise

    def _predict(self, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:  # type: ignore[override]
        """
        Act with the Gaussian's mean weights, the policy CEM returns (Algorithm 1). As in SB3,
        ``deterministic`` only decides how actions are drawn from that policy: greedy or sampled from the
        softmax for discrete actions; Box actions are the network's output either way. (Sampling a new
        weight vector per call would be neither the mean policy nor a CEM candidate, which keeps its
        weights for whole episodes.)

        :param observation: Shape ``(batch, *obs_shape)``.
        :param deterministic: Greedy discrete actions.
        """
        outputs = self.network.forward(self.mean.unsqueeze(0), self.features(observation).unsqueeze(0)).squeeze(0)
        return self.outputs_to_actions(outputs, deterministic)


MlpPolicy = CEMPolicy
