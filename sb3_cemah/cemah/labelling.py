"""Elite labelling (Algorithm 2, lines 5-6): the ``<s, a>`` tuples an iteration's elites give the elite buffer."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch as th

from sb3_cemah.cemah.policies import CEMAHPolicy
from sb3_cemah.common.population import PopulationResult

__all__ = ["IMITATION_STATES", "LabelledStates", "label_elites", "recorded_candidates"]

#: Whose states the elite tuples hold: the elites' own steps (the paper), or states drawn from every candidate's.
IMITATION_STATES = ("population", "elite")


class LabelledStates(NamedTuple):
    """Tuples for :meth:`EliteBuffer.admit`: ``n`` states as stored, their targets and the elite of each."""

    states: th.Tensor  # (n, *state_shape): raw observations under VecNormalize, features otherwise
    targets: th.Tensor  # (n, output_dim)
    elites: th.Tensor  # (n,)


def recorded_candidates(states: str, elite: np.ndarray, n_candidates: int) -> np.ndarray:
    """The candidates whose steps labelling needs: the elites' with ``states="elite"``, every candidate's otherwise."""
    return elite if states == "elite" else np.arange(n_candidates)


def label_elites(
    policy: CEMAHPolicy,
    weights: th.Tensor,
    result: PopulationResult,
    elite: np.ndarray,
    states: str,
    target: str,
    max_tuples: int,
    deterministic: bool,
    normalized_features: Callable[[th.Tensor], th.Tensor] | None,
    generator: th.Generator | None = None,
) -> LabelledStates:
    """
    Label states with the elites' outputs. With ``states="elite"`` (the paper) the states are the steps of the
    elites' own episodes, each labelled by the elite that took it; with ``"population"``, the same states for every
    elite, drawn from every candidate's steps (``max_tuples // n_elite`` per elite at most): an elite's own episode
    visits few states, and labelled on the whole population's states (closer to where an imperfect imitation goes),
    each elite's policy is pinned down where it was only loosely fit, without extra env steps (in the spirit of
    DAgger). The label is what ``target`` says: the elite's pre-activation (its output before the tanh) or its action
    (with ``"elite"`` states, the action it took).

    :param policy: Gives the network and the observation/action conversions.
    :param weights: The evaluated candidates, shape ``(population_size, n_params)``.
    :param result: Their evaluation, with the steps of :func:`recorded_candidates`.
    :param elite: Indices of the elites, best first.
    :param states: One of :data:`IMITATION_STATES`.
    :param target: ``"preactivation"`` or ``"action"``.
    :param max_tuples: The elite buffer's capacity in tuples.
    :param deterministic: Greedy discrete actions (the candidates' own convention) for ``"action"`` labels.
    :param normalized_features: Under ``VecNormalize``, turns raw observations ``(n, *obs_shape)`` into the features
        the generated policies will see; the buffer then keeps raw observations. None without normalisation.
    :param generator: The random stream of the drawn population states and sampled actions (None: torch's global one).
    """
    assert result.observations is not None and result.actions is not None and result.step_candidates is not None
    recorded = np.flatnonzero(np.isin(result.step_candidates, recorded_candidates(states, elite, len(result.returns))))
    if states == "population":
        # Drawn before the features are computed: only the drawn states need them.
        per_elite = min(len(recorded), max_tuples // len(elite))
        drawn = th.randperm(len(recorded), generator=generator, device=policy.device)[:per_elite]
        recorded = recorded[drawn.cpu().numpy()]
    if normalized_features is not None:
        # Targets come from the features the coming generated policies act on: normalised with the statistics after
        # this rollout, not each step's.
        assert result.original_observations is not None
        raw = th.as_tensor(result.original_observations[recorded], dtype=th.float32, device=policy.device)
        stored, features = raw, normalized_features(raw)
    else:
        stored = features = policy.obs_to_features(result.observations[recorded]).to(policy.device)
    elite_weights = weights[th.as_tensor(elite, device=weights.device)]
    if states == "elite":
        candidates = result.step_candidates[recorded]
        if target == "action":
            taken = result.actions[th.as_tensor(recorded, device=result.actions.device)]
            return LabelledStates(stored, policy.actions_to_targets(taken), th.as_tensor(candidates))
        # Every elite on every elite step in one batched pass; each step keeps its own elite's output.
        position = np.empty(len(result.returns), dtype=np.int64)
        position[elite] = np.arange(len(elite))
        every_elite = _preactivations(policy, elite_weights, features.unsqueeze(0).expand(len(elite), -1, -1))
        own = th.as_tensor(position[candidates], device=features.device)
        targets = every_elite[own, th.arange(len(features), device=features.device)]
        return LabelledStates(stored, targets, th.as_tensor(candidates))
    preactivations = _preactivations(policy, elite_weights, features.unsqueeze(0).expand(len(elite), -1, -1))
    preactivations = preactivations.flatten(0, 1)
    if target == "preactivation":
        targets = preactivations
    else:
        targets = policy.actions_to_targets(policy.outputs_to_actions(th.tanh(preactivations), deterministic, generator))
    return LabelledStates(
        stored.repeat(len(elite), *(1,) * (stored.dim() - 1)),
        targets,
        th.arange(len(elite)).repeat_interleave(len(recorded)),
    )


def _preactivations(policy: CEMAHPolicy, weights: th.Tensor, features: th.Tensor) -> th.Tensor:
    """Outputs before the final tanh, without gradient: ``(n, batch, input_dim)`` -> ``(n, batch, output_dim)``."""
    with th.no_grad():
        return policy.network.forward(weights, features, squash=False)
