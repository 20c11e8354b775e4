"""A small MLP policy computed functionally from flat weight vectors, for many policies at once.

CEM samples flat weight vectors from a Gaussian and the CEM-AH hypernetwork generates them; both need
the same network evaluated for P policies in one batched call (``torch.baddbmm``) rather than a Python
loop over policies. This module owns the flat layout of the weights.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch as th
from torch import nn

__all__ = ["FlatPolicyNetwork"]


@dataclass(frozen=True)
class FlatPolicyNetwork:
    """
    Layout and batched forward pass of ``tanh(W_L ... act(W_1 x + b_1) ... + b_L)``.

    The flat vector of one policy holds, layer after layer, the weight matrix of shape
    ``(in_features, out_features)`` (row-major) followed by the bias of shape ``(out_features,)``.

    :param input_dim: Size of the (flattened, preprocessed) observation.
    :param output_dim: Number of outputs: actions for ``Box``, action logits for ``Discrete``.
    :param net_arch: Hidden layer sizes. ``[]`` is the paper's 2-layer (linear) policy, ``[200]`` its 3-layer one.
    :param activation_fn: Activation of the hidden layers (the paper uses ReLU). The output always goes through tanh.
    """

    input_dim: int
    output_dim: int
    net_arch: tuple[int, ...] = ()
    activation_fn: type[nn.Module] = nn.ReLU
    _activation: nn.Module = field(init=False, repr=False, compare=False)

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(in_features, out_features)`` of each layer, input to output."""
        sizes = [self.input_dim, *self.net_arch, self.output_dim]
        return list(itertools.pairwise(sizes))

    @property
    def n_params(self) -> int:
        """Length of the flat weight vector of one policy."""
        return sum(n_in * n_out + n_out for n_in, n_out in self.layer_shapes)

    def unflatten(self, flat_weights: th.Tensor) -> list[tuple[th.Tensor, th.Tensor]]:
        """
        Split flat weight vectors into per-layer views.

        :param flat_weights: Shape ``(n_policies, n_params)``.
        :return: For each layer, weights of shape ``(n_policies, in, out)`` and biases ``(n_policies, 1, out)``.
        """
        if flat_weights.ndim != 2 or flat_weights.shape[1] != self.n_params:
            raise ValueError(f"Expected flat weights of shape (n_policies, {self.n_params}), got {tuple(flat_weights.shape)}")
        n_policies = flat_weights.shape[0]
        layers = []
        start = 0
        for n_in, n_out in self.layer_shapes:
            weight = flat_weights[:, start : start + n_in * n_out].reshape(n_policies, n_in, n_out)
            start += n_in * n_out
            bias = flat_weights[:, start : start + n_out].reshape(n_policies, 1, n_out)
            start += n_out
            layers.append((weight, bias))
        return layers

    def forward(self, flat_weights: th.Tensor, features: th.Tensor, squash: bool = True) -> th.Tensor:
        """
        Outputs of each policy on its own batch of observations.

        :param flat_weights: Shape ``(n_policies, n_params)``.
        :param features: Preprocessed observations, shape ``(n_policies, batch, input_dim)``, or ``(batch, input_dim)``
            when every policy acts on the same batch.
        :param squash: Apply the output tanh; False returns the last layer's pre-activations.
        :return: tanh outputs in [-1, 1] (or pre-activations), shape ``(n_policies, batch, output_dim)``.
        """
        return self.forward_layers(self.unflatten(flat_weights), features, squash)

    def forward_layers(self, layers: list[tuple[th.Tensor, th.Tensor]], features: th.Tensor, squash: bool = True) -> th.Tensor:
        """
        :meth:`forward` on weights already split by :meth:`unflatten` (views that stay valid when the flat
        tensor is updated in place: the population evaluator splits once per population, not per step).

        :param layers: Output of :meth:`unflatten`.
        :param features: Shape ``(n_policies, batch, input_dim)``, or ``(batch, input_dim)``: one batch for every policy.
        :param squash: Apply the output tanh.
        :return: Shape ``(n_policies, batch, output_dim)``.
        """
        hidden = features
        for index, (weight, bias) in enumerate(layers):
            # A batch shared by every policy (2-D): one matmul over all of them instead of P tiny ones.
            shared = hidden.ndim == 2
            hidden = th.einsum("bi,pio->pbo", hidden, weight) + bias if shared else th.baddbmm(bias, hidden, weight)
            if index < len(layers) - 1:
                hidden = self._activation(hidden)
        return th.tanh(hidden) if squash else hidden

    def __post_init__(self) -> None:
        # Built once: instantiating the module at every forward costs more than a linear policy's matmul.
        object.__setattr__(self, "_activation", self.activation_fn())
