"""
Optuna samplers for ``python -m rl_zoo3.train --algo cem|cemah -optimize``.

Each sampler has rl-zoo3's signature ``(trial, n_actions, n_envs, additional_args) -> hyperparams`` and
each converter turns the raw values of a trial (``study.best_trial.params``, or the trial given with
``--trial-id``) into constructor keyword arguments, as rl-zoo3's ``HYPERPARAMS_CONVERTER`` expects.

Unlike rl-zoo3's own samplers, which replace the ``policy_kwargs`` of the yml file with the sampled
ones, the sampled ``net_arch`` is merged into the yml file's ``policy_kwargs`` (e.g. the maze's
``standardize_obs=True`` survives the search): :func:`base_policy_kwargs` provides them while
rl-zoo3's ``ExperimentManager.objective`` runs (see :func:`sb3_cemah.zoo.patch_experiment_manager`).
When a trial is reloaded with ``--trial-id`` the converter has no such context and ``policy_kwargs``
holds the sampled ``net_arch`` only, as with rl-zoo3's samplers.

Optuna is only used through the ``trial`` argument, so importing this module does not import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = [
    "NET_ARCHS",
    "base_policy_kwargs",
    "convert_cem_params",
    "convert_cemah_params",
    "sample_cem_params",
    "sample_cemah_params",
]

#: Hidden layers of the policy network, by the name Optuna samples. ``linear`` is the paper's 2-layer
#: policy (its best setting), ``paper-3-layer`` its 3-layer one (N_h = 200 hidden units).
NET_ARCHS: dict[str, list[int]] = {"linear": [], "small": [64], "paper-3-layer": [200]}

# A ContextVar rather than a global: with ``--n-jobs > 1`` Optuna runs trials in threads.
_base_policy_kwargs: ContextVar[dict[str, Any] | None] = ContextVar("sb3_cemah_base_policy_kwargs", default=None)


@contextmanager
def base_policy_kwargs(policy_kwargs: dict[str, Any] | None) -> Iterator[None]:
    """
    Make ``policy_kwargs`` the base into which the converters merge the sampled ``net_arch``.

    :param policy_kwargs: The ``policy_kwargs`` of the yml entry (after rl-zoo3 has evaluated it).
    """
    token = _base_policy_kwargs.set(dict(policy_kwargs or {}))
    try:
        yield
    finally:
        _base_policy_kwargs.reset(token)


def _suggest_cem(trial: optuna.Trial) -> dict[str, Any]:
    """Suggest what CEM and CEM-AH share: the search distribution and the policy network."""
    return {
        # The paper uses N = 100 candidates per iteration.
        "population_size": trial.suggest_categorical("population_size", [20, 50, 100, 200]),
        # The paper keeps the top 10 %. From 0.1: the smallest population (20) then keeps the 2 elites CEM needs.
        "elite_frac": trial.suggest_float("elite_frac", 0.1, 0.3),
        "initial_std": trial.suggest_float("initial_std", 0.1, 2.0, log=True),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCHS)),
    }


def convert_cem_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn the raw values of a CEM or CEM-AH trial into constructor keyword arguments.

    :param sampled_params: Values as Optuna stores them (``net_arch`` is a name of :data:`NET_ARCHS`).
    :return: Keyword arguments for :class:`sb3_cemah.CEM` / :class:`sb3_cemah.CEMAH`.
    """
    hyperparams = dict(sampled_params)
    net_arch = NET_ARCHS[hyperparams.pop("net_arch")]
    hyperparams["policy_kwargs"] = {**(_base_policy_kwargs.get() or {}), "net_arch": net_arch}
    return hyperparams


#: CEM-AH's constructor takes the same arguments as CEM's plus its own, so the conversion is the same.
convert_cemah_params = convert_cem_params


def sample_cem_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for CEM: population size, elite fraction, initial std and network size.

    :param trial: The Optuna trial.
    :param n_actions: Size of a ``Box`` action space (unused, part of rl-zoo3's signature).
    :param n_envs: Number of envs (unused, part of rl-zoo3's signature).
    :param additional_args: rl-zoo3's extra arguments (unused).
    :return: Constructor keyword arguments.
    """
    return convert_cem_params(_suggest_cem(trial))


def sample_cemah_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for CEM-AH: what :func:`sample_cem_params` samples, plus what acts under CEM-AH's defaults: the learning
    rate, the mini-batch size, the pre-training steps per iteration and the buffer's capacity in iterations. (The
    ensemble size acts only at test time, and the adversarial phase is off by default: neither is sampled.)

    :param trial: The Optuna trial.
    :param n_actions: Size of a ``Box`` action space (unused, part of rl-zoo3's signature).
    :param n_envs: Number of envs (unused, part of rl-zoo3's signature).
    :param additional_args: rl-zoo3's extra arguments (unused).
    :return: Constructor keyword arguments.
    """
    sampled = _suggest_cem(trial)
    sampled.update(
        {
            # The paper's grid is {1e-3, 5e-3, 1e-4}, best 1e-4.
            "learning_rate": trial.suggest_float("learning_rate", 1e-5, 5e-3, log=True),
            # The paper's grid is {50, 100, 1000}; the authors' code uses 500. At least n_noise_samples (100).
            "batch_size": trial.suggest_categorical("batch_size", [100, 500, 1000]),
            # Pre-training steps per iteration, and the buffer's capacity in iterations.
            "pretrain_steps": trial.suggest_categorical("pretrain_steps", [50, 150, 500]),
            "buffer_batches": trial.suggest_categorical("buffer_batches", [1, 2, 5]),
        }
    )
    return convert_cemah_params(sampled)
