"""The CEM-AH policy: the guiding CEM's Gaussian, the hypernetwork and the test-time ensemble."""

from __future__ import annotations

from typing import Any, Protocol

import torch as th
from gymnasium import spaces
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from sb3_cemah.cem.policies import CEMPolicy
from sb3_cemah.cemah.networks import HyperNetwork

__all__ = ["ENSEMBLE_METHODS", "CEMAHPolicy", "MlpPolicy"]

# How the test-time ensemble combines its members' discrete action probabilities: their ``mean`` (the authors' code),
# or the paper's ``softmax_sum``, softmax of their sum. Box actions are averaged under either (the paper's formula).
ENSEMBLE_METHODS = ("mean", "softmax_sum")


class PendingUpdate(Protocol):
    """A training step of the policy running elsewhere; ``result()`` waits for it and loads what it trained."""

    def result(self) -> Any: ...


class CEMAHPolicy(CEMPolicy):
    """
    Holds what CEM-AH trains and acts with.

    - the guiding CEM's Gaussian over flat weights (inherited ``mean`` and ``std``);
    - the hypernetwork ``h(z)`` generating flat weights of the same policy network, and its optimiser;
    - a fixed set of ``ensemble_size`` noise vectors for reproducible (deterministic) acting.

    Acting (``predict``) uses an ensemble of ``ensemble_size`` generated policies: for Box actions the mean of their
    actions; for discrete actions their action probabilities combined by ``ensemble_method`` (argmax when
    deterministic, sampled otherwise). ``deterministic=True`` uses the fixed noise vectors; ``deterministic=False``
    draws new ones at every call, as the authors' code does at every step.

    :param observation_space: Observation space.
    :param action_space: Action space (Discrete or bounded Box).
    :param lr_schedule: Learning rate schedule of the hypernetwork's optimiser (its value at progress 1 is the
        initial rate; CEM-AH sets the rate of every step).
    :param net_arch: Hidden layer sizes of the generated policy network (``[]``: linear).
    :param activation_fn: Activation of the policy network's hidden layers.
    :param standardize_obs: Standardise each observation vector (see :class:`CEMPolicy`).
    :param noise_dim: Size of the hypernetwork's input noise ``z``.
    :param encoder_arch: Layer sizes of the hypernetwork's noise encoder (default ``[150, 200]``).
    :param head_arch: Hidden layer sizes of each weight/bias head (default ``[200]``).
    :param ensemble_size: Number of generated policies that act together (the paper's K; it uses 10). 100 by default:
        an ensemble of 10 acts as well as the 10 noise vectors it happened to get; training does not depend on it.
    :param ensemble_method: How a discrete ensemble combines its members' action probabilities, one of
        :data:`ENSEMBLE_METHODS`.
    :param optimizer_class: Optimiser of the hypernetwork (and of the discriminator, when CEM-AH trains one).
    :param optimizer_kwargs: Extra keyword arguments of the optimisers. None: the authors' betas ``(0.5, 0.999)`` and
        torch's fused Adam (one kernel for all parameters).
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
        ensemble_size: int = 100,
        ensemble_method: str = "mean",
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__(observation_space, action_space, net_arch, activation_fn, standardize_obs)
        if not (isinstance(ensemble_size, int) and ensemble_size >= 1 and isinstance(noise_dim, int) and noise_dim >= 1):
            raise ValueError(f"ensemble_size and noise_dim must be ints >= 1, got {ensemble_size!r} and {noise_dim!r}.")
        if ensemble_method not in ENSEMBLE_METHODS:
            raise ValueError(f"ensemble_method must be one of {', '.join(ENSEMBLE_METHODS)}, got {ensemble_method!r}.")
        self.noise_dim = noise_dim
        self.encoder_arch = [150, 200] if encoder_arch is None else list(encoder_arch)
        self.head_arch = [200] if head_arch is None else list(head_arch)
        self.ensemble_size = ensemble_size
        self.ensemble_method = ensemble_method
        self.optimizer_class = optimizer_class
        self.optimizer_kwargs = {"betas": (0.5, 0.999), "fused": True} if optimizer_kwargs is None else optimizer_kwargs

        self.hypernetwork = HyperNetwork(self.network, noise_dim, self.encoder_arch, self.head_arch)
        self.register_buffer("ensemble_noise", th.randn(ensemble_size, noise_dim))
        # The fixed ensemble's generated weights and the (storage, version) of every tensor they came from.
        self._fixed_ensemble_cache: tuple[tuple[tuple[int, int], ...], th.Tensor] | None = None
        self.generator_optimizer = self.make_optimizer(self.hypernetwork.parameters(), lr_schedule(1))
        # A fused Adam step updates the parameters without bumping their version counters, which the cache key reads.
        self.generator_optimizer.register_step_post_hook(self._forget_fixed_ensemble)
        #: A training step of the hypernetwork running in the background (CEM-AH's imitation during the next
        #: population), which acting waits for; None when there is none.
        self.pending_update: PendingUpdate | None = None

    def make_optimizer(self, parameters: Any, learning_rate: float) -> th.optim.Optimizer:
        """An optimiser of ``optimizer_class`` with ``optimizer_kwargs`` (the hypernetwork's, or the discriminator's)."""
        return self.optimizer_class(parameters, lr=learning_rate, **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _forget_fixed_ensemble(self, *_: Any) -> None:
        """Step hook of the generator's optimiser: the cached ensemble weights are stale."""
        self._fixed_ensemble_cache = None

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            lr_schedule=self._dummy_schedule,  # as SB3's policies: the algorithm sets the rate, a saved policy acts
            noise_dim=self.noise_dim,
            encoder_arch=self.encoder_arch,
            head_arch=self.head_arch,
            ensemble_size=self.ensemble_size,
            ensemble_method=self.ensemble_method,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
        )
        return data

    def generate_weights(self, n_policies: int, generator: th.Generator | None = None) -> th.Tensor:
        """
        :param n_policies: How many policies to generate.
        :param generator: The random stream of their noise (None: torch's global one).
        :return: Flat weights of ``n_policies`` freshly sampled policies, shape ``(n_policies, n_params)``.
        """
        return self.hypernetwork(self.hypernetwork.sample_noise(n_policies, generator))

    def fixed_ensemble_weights(self) -> th.Tensor:
        """
        Flat weights of the ``ensemble_size`` policies generated from the fixed noise vectors, without gradient.

        ``predict(deterministic=True)`` would otherwise run the hypernetwork at every env step for weights that
        only change when training does. The cached weights are reused while the noise and every hypernetwork
        parameter keep their storage and version counter and the generator's optimiser has not stepped; an optimiser
        step, ``load_state_dict`` (hence ``set_parameters`` and ``load``), any in-place change or ``.to(device)``
        changes one of them. An edit through ``.data`` bypasses PyTorch's version counter and is not seen.

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
        :return: Shape ``(batch, output_dim)``: see :meth:`combined_outputs`.
        """
        if self.pending_update is not None:
            self.pending_update.result()  # act with a finished hypernetwork, never one in mid-step
        weights = self.fixed_ensemble_weights() if deterministic else self.generate_weights(self.ensemble_size)
        return self.combined_outputs(weights, features)

    def combined_outputs(self, weights: th.Tensor, features: th.Tensor) -> th.Tensor:
        """
        The ensemble's combination of any flat-weight policies (the generated members, or e.g. the elites themselves).

        :param weights: Shape ``(n_members, n_params)``.
        :param features: Shape ``(batch, input_dim)``.
        :return: The ``ensemble_method`` combination of the members' action probabilities (discrete) or the mean of
            their [-1, 1] actions (Box), shape ``(batch, output_dim)``.
        """
        outputs = self.network.forward(weights, features.unsqueeze(0).expand(weights.shape[0], -1, -1))
        if not self.is_discrete:
            return outputs.mean(dim=0)
        probabilities = self.outputs_to_targets(outputs)
        if self.ensemble_method == "softmax_sum":
            return th.softmax(probabilities.sum(dim=0), dim=-1)
        return probabilities.mean(dim=0)

    def _predict(self, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:  # type: ignore[override]
        combined = self.ensemble_outputs(self.features(observation), deterministic)
        if not self.is_discrete:
            return combined.reshape(combined.shape[0], *self.action_space.shape)  # type: ignore[misc]
        if deterministic:
            return combined.argmax(dim=-1)
        return th.distributions.Categorical(probs=combined).sample()


MlpPolicy = CEMAHPolicy
