"""
The Cross-Entropy Method over actions that Qt-Opt uses as its argmax, batched over states.

Every state of a batch runs its own CEM (its own Gaussian), but all of them advance together: one iteration
is one tensor pass over ``batch x n_samples`` candidate actions, so a mini-batch of targets costs
``n_iterations`` critic calls instead of one CEM per state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch as th
from gymnasium import spaces

__all__ = ["ActionCEM", "coded_action_dim", "decode_latent"]


def coded_action_dim(action_space: spaces.Space) -> int:
    """
    Size of the action vector the critic takes ("coded" action).

    :param action_space: ``Box`` (the action normalised to [-1, 1], as SB3's off-policy algorithms store it)
        or ``Discrete(n)`` (a probability vector over the ``n`` actions, as the paper's Qt-Opt baselines use).
    :return: ``action_space.shape[0]`` for a Box, ``n`` for a Discrete space.
    """
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        return int(action_space.shape[0])
    raise ValueError(
        f"Qt-Opt acts on a Discrete or a one-dimensional bounded Box action space, got {action_space}: "
        "wrap the env so that its actions are a flat vector."
    )


def decode_latent(latent: th.Tensor, action_space: spaces.Space) -> th.Tensor:
    """
    Map CEM samples to coded actions: a Gaussian sample is a candidate action clipped to [-1, 1] (Box) or the
    logits of a probability vector (Discrete, as in the authors' code).

    :param latent: Samples, shape (..., coded_action_dim).
    :param action_space: The env's action space.
    :return: Coded actions, same shape.
    """
    if isinstance(action_space, spaces.Discrete):
        return th.softmax(latent, dim=-1)
    return latent.clamp(-1.0, 1.0)


@dataclass(frozen=True)
class ActionCEM:
    """
    Batched CEM maximising an objective over coded actions (Qt-Opt, Kalashnikov et al. 2018, Sec. 4.2).

    Each state starts from ``N(0, I)`` over the latent, draws ``n_samples`` candidates per iteration, refits a
    diagonal Gaussian to the ``n_elites`` best ones, and the best candidate of the last iteration is the result.
    Samples come from torch's global RNG (seeded by SB3's ``set_random_seed``).

    :param n_samples: Candidates per state and iteration (Qt-Opt: 64).
    :param n_elites: Best candidates the Gaussian is refitted to (Qt-Opt: 6).
    :param n_iterations: CEM iterations (Qt-Opt: 2).
    """

    n_samples: int = 64
    n_elites: int = 6
    n_iterations: int = 2

    def __post_init__(self) -> None:
        if self.n_samples < 1 or self.n_iterations < 1:
            raise ValueError(f"cem_samples and cem_iterations must be >= 1, got {self.n_samples} and {self.n_iterations}")
        if not 1 <= self.n_elites <= self.n_samples:
            raise ValueError(f"cem_elites must be between 1 and cem_samples={self.n_samples}, got {self.n_elites}")

    def maximise(
        self,
        objective: Callable[[th.Tensor], th.Tensor],
        batch_size: int,
        action_space: spaces.Space,
        device: th.device | str = "cpu",
    ) -> th.Tensor:
        """
        :param objective: Maps coded actions of shape (batch_size, n_samples, coded_action_dim) to their values,
            shape (batch_size, n_samples); row ``i`` is scored for state ``i``.
        :param batch_size: Number of states.
        :param action_space: The env's action space (how samples become coded actions, :func:`decode_latent`).
        :param device: Device of the samples.
        :return: The best coded action found per state, shape (batch_size, coded_action_dim).
        """
        dim = coded_action_dim(action_space)
        mean = th.zeros(batch_size, 1, dim, device=device)
        std = th.ones(batch_size, 1, dim, device=device)
        for _ in range(self.n_iterations):
            latent = mean + std * th.randn(batch_size, self.n_samples, dim, device=device)
            actions = decode_latent(latent, action_space)
            values = objective(actions)
            elite_index = values.topk(self.n_elites, dim=1).indices.unsqueeze(-1).expand(-1, -1, dim)
            elites = latent.gather(1, elite_index)
            mean = elites.mean(dim=1, keepdim=True)
            std = elites.std(dim=1, unbiased=False, keepdim=True)
        best = values.argmax(dim=1)
        return actions[th.arange(batch_size, device=actions.device), best]
