"""The imitation losses of CEM-AH's pre-training (Algorithm 2, line 11): how the generated policies learn the elites.

Each loss is one object behind the :class:`Imitation` interface: ``loss(features, targets, elites)`` on a batch of
elite ``<s, a>`` tuples. The shared parts (generating policies, what of their output is compared with the buffered
targets, the imitation error that is logged) live in the base class.
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from sb3_cemah.cemah.policies import CEMAHPolicy

__all__ = ["IMITATION_LOSSES", "IMITATION_TARGETS", "AssignedEliteImitation", "Imitation", "MSEImitation", "make_imitation"]

#: What the generated policies match on the elite states: the elite's output before its tanh, or its action.
IMITATION_TARGETS = ("preactivation", "action")


class Imitation:
    """
    Base of the imitation losses: generated policies, the targets they match, and the imitation error.

    :param policy: The CEM-AH policy whose hypernetwork is trained.
    :param target: ``"preactivation"`` (targets are the elites' outputs before the final tanh, the logits for
        Discrete) or ``"action"`` (the paper: the action the elite took, one-hot for Discrete).
    :param n_noise_samples: Generated policies per gradient step (the paper's M).
    :param stochastic_candidates: Whether the elites sampled their discrete actions (the one-hot action the
        discriminator compares is then sampled too).
    :param generator: The random stream of the generated policies' noise and of sampled actions (None: torch's global
        one). CEM-AH gives its own, so that its training draws nothing from the global stream the populations use.
    """

    def __init__(
        self,
        policy: CEMAHPolicy,
        target: str,
        n_noise_samples: int,
        stochastic_candidates: bool = False,
        generator: th.Generator | None = None,
    ):
        self.policy = policy
        self.target = target
        self.n_noise_samples = n_noise_samples
        self.stochastic_candidates = stochastic_candidates
        self.generator = generator

    def loss(self, features: th.Tensor, targets: th.Tensor, elites: th.Tensor, noise: th.Tensor | None = None) -> th.Tensor:
        """
        The pre-training loss on a batch of elite tuples.

        :param features: Shape ``(batch, input_dim)``.
        :param targets: The buffered targets, shape ``(batch, output_dim)``.
        :param elites: Which elite took each tuple, shape ``(batch,)``.
        :param noise: The generated policies' noise ``(n_policies, noise_dim)``; None draws ``n_noise_samples`` new ones.
        :return: Scalar loss.
        """
        raise NotImplementedError

    def generated_weights(self, noise: th.Tensor | None = None) -> th.Tensor:
        """:return: Weights ``(n_policies, n_params)`` generated from ``noise``, or from ``n_noise_samples`` new vectors."""
        if noise is None:
            return self.policy.generate_weights(self.n_noise_samples, self.generator)
        return self.policy.hypernetwork(noise)

    def generate_fake(self, features: th.Tensor, noise: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor]:
        """
        ``GenerateFake`` of Algorithm 2: split the states among ``n_noise_samples`` freshly generated policies.

        :param features: Buffered states, shape ``(batch, input_dim)``.
        :param noise: The policies' noise ``(n_noise_samples, noise_dim)``; None draws new ones.
        :return: The states used (``n_policies * (batch // n_policies)`` of them, shape ``(n_used, input_dim)``),
            and the generated policies' pre-activations (outputs before the tanh) on them, ``(n_used, output_dim)``.
        """
        weights = self.generated_weights(noise)
        # Held-out sets can hold fewer states than policies (sampled batches cannot: batch_size >= n_noise_samples).
        n_policies = min(weights.shape[0], features.shape[0])
        per_policy = features.shape[0] // n_policies
        used = features[: n_policies * per_policy]
        outputs = self.policy.network.forward(weights[:n_policies], used.reshape(n_policies, per_policy, -1), squash=False)
        return used, outputs.reshape(n_policies * per_policy, -1)

    def imitated(self, preactivations: th.Tensor) -> th.Tensor:
        """What of a policy's pre-activations (any shape ``(..., output_dim)``) is compared with the buffered targets."""
        if self.target == "preactivation":
            return preactivations
        return self.policy.outputs_to_targets(th.tanh(preactivations))

    def actions_of(self, preactivations: th.Tensor) -> th.Tensor:
        """
        The action part of the ``<s, a>`` tuples the discriminator compares, from a policy's pre-activations: Box
        actions in [-1, 1]; for Discrete, the one-hot action the policy takes, with the softmax's gradient
        (straight-through), since the discriminator would otherwise tell soft probabilities from one-hot actions at a
        glance.

        :param preactivations: Network outputs before the tanh, ``(batch, output_dim)``.
        :return: Shape ``(batch, output_dim)``.
        """
        outputs = th.tanh(preactivations)
        if not self.policy.is_discrete:
            return outputs
        probabilities = self.policy.outputs_to_targets(outputs)
        actions = self.policy.outputs_to_actions(outputs, not self.stochastic_candidates, self.generator)
        return self.policy.actions_to_targets(actions) + probabilities - probabilities.detach()

    def target_actions(self, targets: th.Tensor) -> th.Tensor:
        """Buffered targets ``(batch, output_dim)`` as the actions of :meth:`actions_of`."""
        return self.actions_of(targets) if self.target == "preactivation" else targets

    def errors_per_elite(
        self, features: th.Tensor, targets: th.Tensor, elites: th.Tensor, noise: th.Tensor | None = None
    ) -> th.Tensor:
        """
        Imitation error of every generated policy on each elite's tuples: the share of states where its greedy action
        differs from the elite's (Discrete), or the action MSE (Box).

        :return: Shape ``(n_policies, n_elites_in_batch)``.
        """
        group, n_groups = _groups(elites)
        outputs = self.policy.network.forward(self.generated_weights(noise), features, squash=False)
        if self.policy.is_discrete:
            errors = (outputs.argmax(dim=-1) != targets.argmax(dim=-1)).to(outputs.dtype)
        else:
            errors = (th.tanh(outputs) - self.target_actions(targets)).square().mean(dim=-1)
        return _group_means(errors.T, group, n_groups).T

    def imitation_error(self, features: th.Tensor, targets: th.Tensor, elites: th.Tensor) -> float:
        """How far each generated policy is from the elite it is closest to (see :meth:`errors_per_elite`), averaged."""
        with th.no_grad():
            return float(self.errors_per_elite(features, targets, elites).min(dim=1).values.mean())


class MSEImitation(Imitation):
    """
    The paper's loss: ``GenerateFake`` splits the states among ``n_noise_samples`` generated policies, MSE against the
    elites' targets. Its minimiser is every policy acting the average of the elites on each state.
    """

    def loss(self, features: th.Tensor, targets: th.Tensor, elites: th.Tensor, noise: th.Tensor | None = None) -> th.Tensor:
        _, preactivations = self.generate_fake(features, noise)
        return F.mse_loss(self.imitated(preactivations), targets[: preactivations.shape[0]])


class AssignedEliteImitation(Imitation):
    """
    The generated policies are shared out among the batch's elites, equal numbers each, by the assignment of least
    total error (``scipy.optimize.linear_sum_assignment``), and each imitates the elite it was assigned: the
    ensemble then holds policies of every elite instead of their average.

    For the linear policy with pre-activation targets the per-elite errors come in closed form from the elites'
    state moments (:func:`_linear_squared_errors`) whenever that costs less than running every policy on every state.
    """

    def loss(self, features: th.Tensor, targets: th.Tensor, elites: th.Tensor, noise: th.Tensor | None = None) -> th.Tensor:
        errors = self.squared_errors_per_elite(features, targets, elites, noise)
        policies, assigned = _balanced_assignment(errors.detach())
        return errors[policies, assigned].mean()

    def squared_errors_per_elite(
        self, features: th.Tensor, targets: th.Tensor, elites: th.Tensor, noise: th.Tensor | None = None
    ) -> th.Tensor:
        """:return: MSE of every generated policy against each elite's targets, shape ``(n_policies, n_elites_in_batch)``."""
        weights = self.generated_weights(noise)
        group, n_groups = _groups(elites)
        network = self.policy.network
        linear = not network.net_arch
        cheaper = _moments_are_cheaper(features.shape[0], features.shape[1], targets.shape[1], n_groups)
        if linear and self.target == "preactivation" and cheaper:
            (layer,) = network.unflatten(weights)
            return _linear_squared_errors(layer, features, targets, group, n_groups)
        outputs = network.forward(weights, features, squash=False)  # every policy on every state
        errors = (self.imitated(outputs) - targets).square().mean(dim=-1)
        return _group_means(errors.T, group, n_groups).T


#: The values of CEM-AH's ``imitation_loss``.
IMITATION_LOSSES: dict[str, type[Imitation]] = {"assigned_elite": AssignedEliteImitation, "mse": MSEImitation}


def make_imitation(
    name: str,
    policy: CEMAHPolicy,
    target: str,
    n_noise_samples: int,
    stochastic_candidates: bool = False,
    generator: th.Generator | None = None,
) -> Imitation:
    """:return: The imitation loss ``name`` (a key of :data:`IMITATION_LOSSES`); see :class:`Imitation`."""
    return IMITATION_LOSSES[name](policy, target, n_noise_samples, stochastic_candidates, generator)


def _groups(elites: th.Tensor) -> tuple[th.Tensor, int]:
    """:return: Each tuple's elite as an index in ``[0, n_groups)``, and ``n_groups``."""
    _, group = th.unique(elites, return_inverse=True)
    return group, int(group.max()) + 1


def _balanced_assignment(errors: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """
    Share ``n_policies`` out among ``n_elites``, ``ceil(n_policies / n_elites)`` at most each, minimising the total error.

    :param errors: Cost of policy ``i`` imitating elite ``e``, shape ``(n_policies, n_elites)``.
    :return: Policy indices and the elite assigned to each, both of shape ``(n_policies,)``.
    """
    n_policies, n_elites = errors.shape
    capacity = -(-n_policies // n_elites)
    # Each elite appears ``capacity`` times as a column, so that a one-to-one assignment gives it that many policies.
    policies, slots = linear_sum_assignment(errors.repeat_interleave(capacity, dim=1).cpu().numpy())
    device = errors.device
    return th.as_tensor(policies, device=device), th.as_tensor(slots // capacity, device=device)


def _group_means(values: th.Tensor, group: th.Tensor, n_groups: int) -> th.Tensor:
    """
    :param values: Shape ``(batch, *rest)``.
    :param group: Group of each row, in ``[0, n_groups)``, shape ``(batch,)``; every group has a row.
    :return: Mean of each group's rows, shape ``(n_groups, *rest)``.
    """
    sums = values.new_zeros(n_groups, *values.shape[1:]).index_add_(0, group, values)
    counts = th.bincount(group, minlength=n_groups).to(values.dtype)
    return sums / counts.reshape(-1, *([1] * (values.ndim - 1)))


def _moments_are_cheaper(batch: int, input_dim: int, output_dim: int, n_groups: int) -> bool:
    """
    Whether :func:`_linear_squared_errors` costs less than running every policy on the batch: per policy, about
    ``(input_dim + 1)^2 * (output_dim + n_groups)`` multiplications against ``batch * (input_dim + 1) * output_dim``.
    """
    return (input_dim + 1) * (output_dim + n_groups) <= batch * output_dim


def _linear_squared_errors(
    layer: tuple[th.Tensor, th.Tensor], features: th.Tensor, targets: th.Tensor, group: th.Tensor, n_groups: int
) -> th.Tensor:
    """
    Mean squared error of linear policies' outputs ``x W + b`` against the targets of each group of states, from the
    groups' second moments instead of a pass of every policy over every state. With ``A = [W; b]``, shape
    ``(input_dim + 1, output_dim)``, and ``u = [x, 1]``: ``mean_s |u_s A - t_s|^2 = <A A^T, E[u u^T]>
    - 2 <A, E[u t^T]> + E[|t|^2]``.

    :param layer: The policies' only layer, from :meth:`FlatPolicyNetwork.unflatten`: weights
        ``(n_policies, input_dim, output_dim)`` and biases ``(n_policies, 1, output_dim)``.
    :param features: Shape ``(batch, input_dim)``.
    :param targets: Shape ``(batch, output_dim)``.
    :param group: Group of each state, shape ``(batch,)``.
    :return: Shape ``(n_policies, n_groups)``: the error averaged over the group's states and the outputs.
    """
    inputs = th.cat([features, features.new_ones(features.shape[0], 1)], dim=1)
    state_moments = _group_means((inputs[:, :, None] * inputs[:, None, :]).flatten(1), group, n_groups)
    cross_moments = _group_means((inputs[:, :, None] * targets[:, None, :]).flatten(1), group, n_groups)
    target_moments = _group_means(targets.square().sum(dim=1), group, n_groups)
    augmented = th.cat(layer, dim=1)  # A, (n_policies, input_dim + 1, output_dim)
    quadratic = th.bmm(augmented, augmented.transpose(1, 2)).flatten(1) @ state_moments.T
    cross = augmented.flatten(1) @ cross_moments.T
    return (quadratic - 2.0 * cross + target_moments) / targets.shape[1]
