"""The CEM-AH policy: the guiding CEM's Gaussian, the hypernetwork, the discriminator and the test-time ensemble."""

from __future__ import annotations

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from sb3_cemah.cem.policies import CEMPolicy
from sb3_cemah.cemah.networks import Discriminator, HyperNetwork

__all__ = ["DISCRETE_ENSEMBLE_METHODS", "ENSEMBLE_METHODS", "CEMAHPolicy", "MlpPolicy", "combine_box_actions"]

# How the test-time ensemble combines its members' Box actions (see combine_box_actions).
ENSEMBLE_METHODS = ("mean", "mean_preactivation", "median", "medoid", "medoid_half", "discriminator")
# How it combines their discrete action probabilities: their ``mean`` (the authors' code), or the paper's
# ``softmax_sum``, softmax of their sum, which sharpens with the number of members (near-greedy for 100).
DISCRETE_ENSEMBLE_METHODS = ("mean", "softmax_sum")


class CEMAHPolicy(CEMPolicy):
    """
    Holds everything CEM-AH trains and acts with.

    - the guiding CEM's Gaussian over flat weights (inherited ``mean`` and ``std``);
    - the hypernetwork ``h(z)`` generating flat weights of the same policy network;
    - the discriminator ``D(<s, a>)``;
    - a fixed set of ``ensemble_size`` noise vectors for reproducible (deterministic) acting.

    Acting (``predict``) uses an ensemble of ``ensemble_size`` generated policies, combined by ``ensemble_method``:
    for discrete actions their action probabilities (:data:`DISCRETE_ENSEMBLE_METHODS`: by default their mean, as
    the authors' code; argmax when deterministic, sampled otherwise), for Box actions their actions (see
    :data:`ENSEMBLE_METHODS`). ``deterministic=True`` uses the fixed noise vectors; ``deterministic=False``
    draws new ones at every call, as the authors' code does at every step.

    :param observation_space: Observation space.
    :param action_space: Action space (Discrete or bounded Box).
    :param lr_schedule: Learning rate schedule of both optimisers (Adam, betas (0.5, 0.999) as in the authors' code).
    :param net_arch: Hidden layer sizes of the generated policy network (``[]``: linear).
    :param activation_fn: Activation of the policy network's hidden layers.
    :param standardize_obs: Standardise each observation vector (see :class:`CEMPolicy`).
    :param noise_dim: Size of the hypernetwork's input noise ``z``.
    :param encoder_arch: Layer sizes of the hypernetwork's noise encoder.
    :param head_arch: Hidden layer sizes of each weight/bias head.
    :param discriminator_arch: Hidden layer sizes of the discriminator.
    :param discriminator_dropout: Dropout probability in the discriminator.
    :param ensemble_size: Number of generated policies that act together (the paper's K).
    :param ensemble_method: How the members are combined: one of :data:`DISCRETE_ENSEMBLE_METHODS` for discrete
        actions, of :data:`ENSEMBLE_METHODS` for Box actions.
    :param optimizer_class: Optimiser of the hypernetwork and of the discriminator.
    :param optimizer_kwargs: Extra keyword arguments of the optimisers. None: the authors' betas ``(0.5, 0.999)`` and
        torch's fused Adam (one kernel for all parameters: ~2.5x faster steps than the per-tensor loop torch uses on
        CPU by default, for this many small tensors).
    """

    ensemble_noise: th.Tensor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        standardize_obs: bool = False,
        noise_dim: int = 100,
        encoder_arch: list[int] | None = None,
        head_arch: list[int] | None = None,
        discriminator_arch: list[int] | None = None,
        discriminator_dropout: float = 0.2,
        ensemble_size: int = 100,
        ensemble_method: str = "mean",
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__(observation_space, action_space, net_arch, activation_fn, standardize_obs)
        if ensemble_size < 1 or noise_dim < 1:
            raise ValueError(f"ensemble_size and noise_dim must be >= 1, got {ensemble_size} and {noise_dim}")
        self.noise_dim = noise_dim
        self.encoder_arch = [150, 200] if encoder_arch is None else list(encoder_arch)
        self.head_arch = [200] if head_arch is None else list(head_arch)
        self.discriminator_arch = [200, 100] if discriminator_arch is None else list(discriminator_arch)
        self.discriminator_dropout = discriminator_dropout
        methods = DISCRETE_ENSEMBLE_METHODS if self.is_discrete else ENSEMBLE_METHODS
        if ensemble_method not in methods:
            space = "discrete" if self.is_discrete else "Box"
            raise ValueError(
                f"ensemble_method for {space} actions must be one of {', '.join(methods)}, got {ensemble_method!r}"
            )
        self.ensemble_size = ensemble_size
        self.ensemble_method = ensemble_method
        self.optimizer_class = optimizer_class
        self.optimizer_kwargs = {"betas": (0.5, 0.999), "fused": True} if optimizer_kwargs is None else optimizer_kwargs

        self.hypernetwork = HyperNetwork(self.network, noise_dim, self.encoder_arch, self.head_arch)
        self.discriminator = Discriminator(
            self.network.input_dim + self.network.output_dim, self.discriminator_arch, discriminator_dropout
        )
        self.register_buffer("ensemble_noise", th.randn(ensemble_size, noise_dim))
        # The fixed ensemble's generated weights and the (storage, version) of every tensor they came from.
        self._fixed_ensemble_cache: tuple[tuple[tuple[int, int], ...], th.Tensor] | None = None
        learning_rate = lr_schedule(1)
        self.generator_optimizer = optimizer_class(self.hypernetwork.parameters(), lr=learning_rate, **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.discriminator_optimizer = optimizer_class(  # type: ignore[call-arg]
            self.discriminator.parameters(), lr=learning_rate, **self.optimizer_kwargs
        )
        # A fused Adam step updates the parameters without bumping their version counters, which the cache key reads.
        self.generator_optimizer.register_step_post_hook(self._forget_fixed_ensemble)

    def _forget_fixed_ensemble(self, *_: Any) -> None:
        """Step hook of the generator's optimiser: the cached ensemble weights are stale."""
        self._fixed_ensemble_cache = None

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            noise_dim=self.noise_dim,
            encoder_arch=self.encoder_arch,
            head_arch=self.head_arch,
            discriminator_arch=self.discriminator_arch,
            discriminator_dropout=self.discriminator_dropout,
            ensemble_size=self.ensemble_size,
            ensemble_method=self.ensemble_method,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
        )
        return data

    def generate_weights(self, n_policies: int) -> th.Tensor:
        """:return: Flat weights of ``n_policies`` freshly sampled policies, shape ``(n_policies, n_params)``."""
        return self.hypernetwork(self.hypernetwork.sample_noise(n_policies))

    def fixed_ensemble_weights(self) -> th.Tensor:
        """
        Flat weights of the ``ensemble_size`` policies generated from the fixed noise vectors, without gradient.

        ``predict(deterministic=True)`` would otherwise run the hypernetwork at every env step for weights that
        only change when training does. The cached weights are reused while the noise and every hypernetwork
        parameter keep their storage and version counter and the generator's optimiser has not stepped (a fused step
        leaves the version counters alone); an optimiser step, ``load_state_dict`` (hence
        ``set_parameters`` and ``load``), any in-place change or ``.to(device)`` changes one of them. An edit
        through ``.data`` bypasses PyTorch's version counter and is not seen.

        :return: Shape ``(ensemble_size, n_params)``.
        """
        tensors = (self.ensemble_noise, *self.hypernetwork.parameters())
        key = tuple((tensor.data_ptr(), tensor._version) for tensor in tensors)
        if self._fixed_ensemble_cache is None or self._fixed_ensemble_cache[0] != key:
            with th.no_grad():
                self._fixed_ensemble_cache = (key, self.hypernetwork(self.ensemble_noise))
        return self._fixed_ensemble_cache[1]

    def ensemble_outputs(self, features: th.Tensor, deterministic: bool) -> th.Tensor:
        """
        Combined output of the ensemble, in the space of :meth:`outputs_to_targets`.

        :param features: Shape ``(batch, input_dim)``.
        :param deterministic: Use the fixed noise vectors instead of fresh ones.
        :return: The ``ensemble_method`` combination of the members' action probabilities (discrete) or of their
            [-1, 1] actions (Box), shape ``(batch, output_dim)``.
        """
        weights = self.fixed_ensemble_weights() if deterministic else self.generate_weights(self.ensemble_size)
        return self.combined_outputs(weights, features)

    def combined_outputs(self, weights: th.Tensor, features: th.Tensor) -> th.Tensor:
        """
        The ensemble's combination of any flat-weight policies (the generated members, or e.g. the elites themselves).

        :param weights: Shape ``(n_members, n_params)``.
        :param features: Shape ``(batch, input_dim)``.
        :return: As :meth:`ensemble_outputs`, shape ``(batch, output_dim)``.
        """
        preactivations = self.network.forward(weights, features.unsqueeze(0).expand(weights.shape[0], -1, -1), squash=False)
        if self.is_discrete:
            probabilities = self.outputs_to_targets(th.tanh(preactivations))
            if self.ensemble_method == "softmax_sum":
                return th.softmax(probabilities.sum(dim=0), dim=-1)
            return probabilities.mean(dim=0)
        return combine_box_actions(preactivations, self.ensemble_method, features, self.discriminator)

    def _predict(self, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:  # type: ignore[override]
        combined = self.ensemble_outputs(self.features(observation), deterministic)
        if not self.is_discrete:
            return combined.reshape(combined.shape[0], *self.action_space.shape)  # type: ignore[misc]
        if deterministic:
            return combined.argmax(dim=-1)
        return th.distributions.Categorical(probs=combined).sample()


def combine_box_actions(
    preactivations: th.Tensor, method: str, features: th.Tensor, discriminator: Discriminator
) -> th.Tensor:
    """
    One action per state from the ensemble members' Box actions.

    - ``mean``: the paper's average. Averaging two different gaits is neither gait: it can act worse than
      every member.
    - ``mean_preactivation``: tanh of the members' mean pre-activation. For the linear policy it is the policy
      with the members' mean weights, as CEM's mean policy is the mean of its elites.
    - ``median``: per action dimension.
    - ``medoid``: per state, the action of the member closest (L2, summed over the others) to all other
      members: an action some member really takes, from the largest group of members that agree.
    - ``medoid_half``: per state, the mean action of the half of the members closest to that medoid: the
      average within the largest group of members that agree, so that members imitating another gait (or none)
      do not pull the action between two gaits.
    - ``discriminator``: average weighted by ``softmax`` of the discriminator's logit of each ``<s, a_k>``
      (the paper's suggested weighted average; the discriminator must have been trained).

    :param preactivations: Members' outputs before their tanh, shape ``(n_members, batch, action_dim)``.
    :param method: One of :data:`ENSEMBLE_METHODS`.
    :param features: The states, shape ``(batch, input_dim)``.
    :param discriminator: Scores ``<s, a>`` for the ``discriminator`` method.
    :return: Shape ``(batch, action_dim)``.
    """
    if method == "mean_preactivation":
        return th.tanh(preactivations.mean(dim=0))
    actions = th.tanh(preactivations)
    if method == "mean":
        return actions.mean(dim=0)
    if method == "median":
        return actions.median(dim=0).values
    if method in ("medoid", "medoid_half"):
        by_state = actions.transpose(0, 1)  # (batch, n_members, action_dim)
        distances = th.cdist(by_state, by_state)  # (batch, n_members, n_members)
        states = th.arange(by_state.shape[0], device=actions.device)
        medoid = distances.sum(dim=-1).argmin(dim=-1)
        if method == "medoid":
            return by_state[states, medoid]
        nearest = distances[states, medoid].topk(max(1, by_state.shape[1] // 2), dim=-1, largest=False).indices
        return th.gather(by_state, 1, nearest.unsqueeze(-1).expand(-1, -1, by_state.shape[-1])).mean(dim=1)
    n_members, batch, _ = actions.shape
    was_training = discriminator.training
    discriminator.eval()
    logits = discriminator(features.repeat(n_members, 1), actions.reshape(n_members * batch, -1)).reshape(n_members, batch)
    discriminator.train(was_training)
    return (th.softmax(logits, dim=0).unsqueeze(-1) * actions).sum(dim=0)


MlpPolicy = CEMAHPolicy
