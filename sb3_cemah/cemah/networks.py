"""The two trained networks of CEM-AH: the hypernetwork ``h(z)`` (generator) and the discriminator ``D(<s, a>)``."""

from __future__ import annotations

import torch as th
from torch import nn

from sb3_cemah.common.policy_network import FlatPolicyNetwork

__all__ = ["Discriminator", "Dropout", "HyperNetwork"]


def _mlp(input_dim: int, hidden: list[int], output_dim: int) -> nn.Sequential:
    """``Linear -> ReLU`` for each hidden size, then a linear output layer."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(input_dim, size), nn.ReLU()]
        input_dim = size
    layers.append(nn.Linear(input_dim, output_dim))
    return nn.Sequential(*layers)


class HyperNetwork(nn.Module):
    """
    Maps noise ``z ~ N(0, I)`` to the flat weights of a policy network (the paper's Figure 2b).

    A noise encoder (``noise_dim -> encoder_arch``, ReLU between layers) feeds one weight head and one
    bias head per policy layer (``encoder_arch[-1] -> head_arch -> in*out`` and ``-> out``). The heads'
    outputs are concatenated in the layout of :class:`FlatPolicyNetwork`, so generated policies run
    through the same batched forward pass as CEM candidates.

    :param network: Layout of the generated policy network.
    :param noise_dim: Size of ``z`` (the paper's 100).
    :param encoder_arch: Layer sizes of the noise encoder (the authors' code: ``[150, 200]``).
    :param head_arch: Hidden layer sizes of each weight/bias head (the authors' code: ``[200]``).
    """

    def __init__(self, network: FlatPolicyNetwork, noise_dim: int, encoder_arch: list[int], head_arch: list[int]):
        super().__init__()
        if not encoder_arch:
            raise ValueError("encoder_arch needs at least one layer")
        self.network = network
        self.noise_dim = noise_dim
        # The encoder's last layer is followed by a ReLU too: the heads read its features.
        self.encoder = nn.Sequential(_mlp(noise_dim, encoder_arch[:-1], encoder_arch[-1]), nn.ReLU())
        embedding_dim = encoder_arch[-1]
        self.weight_heads = nn.ModuleList(_mlp(embedding_dim, head_arch, n_in * n_out) for n_in, n_out in network.layer_shapes)
        self.bias_heads = nn.ModuleList(_mlp(embedding_dim, head_arch, n_out) for _, n_out in network.layer_shapes)

    def forward(self, noise: th.Tensor) -> th.Tensor:
        """
        :param noise: Shape ``(n_policies, noise_dim)``.
        :return: Flat policy weights, shape ``(n_policies, n_params)``.
        """
        embedding = self.encoder(noise)
        parts = []
        for weight_head, bias_head in zip(self.weight_heads, self.bias_heads, strict=True):
            parts += [weight_head(embedding), bias_head(embedding)]
        return th.cat(parts, dim=1)

    def sample_noise(self, n_policies: int, generator: th.Generator | None = None) -> th.Tensor:
        """:return: ``z ~ N(0, I)`` of shape ``(n_policies, noise_dim)`` on the hypernetwork's device."""
        device = next(self.parameters()).device
        return th.randn(n_policies, self.noise_dim, generator=generator, device=device)


class Discriminator(nn.Module):
    """
    Scores ``<s, a>`` tuples: real (from the guiding CEM's elites) against fake (from generated policies).

    As in the authors' code: ``Linear -> BatchNorm -> ELU -> Dropout`` per hidden layer, one logit out
    (the sigmoid lives in the loss, ``BCEWithLogits``, for numerical stability).

    :param input_dim: Feature size of ``s`` plus size of ``a`` (action probabilities or Box outputs).
    :param net_arch: Hidden layer sizes (the authors' code: ``[200, 100]``).
    :param dropout: Dropout probability after each hidden layer.
    :param generator: The random stream of the dropout masks (None: torch's global one).
    """

    def __init__(self, input_dim: int, net_arch: list[int], dropout: float = 0.2, generator: th.Generator | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        for size in net_arch:
            layers += [nn.Linear(input_dim, size), nn.BatchNorm1d(size), nn.ELU(), Dropout(dropout, generator)]
            input_dim = size
        layers.append(nn.Linear(input_dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """
        :param features: Preprocessed states, shape ``(batch, obs_features)``.
        :param actions: Action part of the tuple, shape ``(batch, action_features)``.
        :return: Logits of "real", shape ``(batch,)``.
        """
        return self.net(th.cat([features, actions], dim=1)).squeeze(1)


class Dropout(nn.Module):
    """
    ``nn.Dropout`` drawing its masks from a given generator (``nn.Dropout`` only draws from torch's global one).

    :param p: Probability of zeroing an element in training mode (the kept ones are scaled by ``1 / (1 - p)``).
    :param generator: The random stream of the masks (None: torch's global one).
    """

    def __init__(self, p: float, generator: th.Generator | None = None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.generator = generator

    def forward(self, inputs: th.Tensor) -> th.Tensor:
        if not self.training or self.p == 0.0:
            return inputs
        keep = th.rand(inputs.shape, generator=self.generator, device=inputs.device) >= self.p
        return inputs * keep / (1.0 - self.p)
