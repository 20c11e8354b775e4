"""Which envs the population algorithms support (observation and action spaces, episodes that end), checked with a
message a user can act on."""

from __future__ import annotations

from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.vec_env import VecEnv

__all__ = ["SUPPORTED_ACTION_SPACES", "SUPPORTED_OBSERVATION_SPACES", "check_spaces", "check_time_limit"]

SUPPORTED_ACTION_SPACES = (spaces.Discrete, spaces.Box)
SUPPORTED_OBSERVATION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space, algorithm: str) -> None:
    """
    Raise a ``ValueError`` naming the offending space if the policy network cannot handle it.

    :param observation_space: The env's observation space.
    :param action_space: The env's action space.
    :param algorithm: Name used in the message.
    """
    if not isinstance(observation_space, SUPPORTED_OBSERVATION_SPACES):
        names = ", ".join(space.__name__ for space in SUPPORTED_OBSERVATION_SPACES)
        raise ValueError(
            f"{algorithm} does not support the observation space {observation_space}: supported are {names}. "
            "Flatten Dict/Tuple observations first (e.g. gymnasium.wrappers.FlattenObservation)."
        )
    if not isinstance(action_space, SUPPORTED_ACTION_SPACES):
        raise ValueError(
            f"{algorithm} does not support the action space {action_space}: supported are Discrete and Box. "
            "For MultiDiscrete or MultiBinary actions, use a wrapper that maps a Box of scores to your actions."
        )
    if isinstance(action_space, spaces.Box) and not (action_space.is_bounded("both")):
        raise ValueError(
            f"{algorithm} squashes actions to the bounds of the Box action space, which must be finite; got {action_space}."
        )


def check_time_limit(env: VecEnv, algorithm: str) -> None:
    """
    Raise a ``ValueError`` when nothing bounds the env's episodes: a population algorithm evaluates every candidate on
    whole episodes, so an episode that never ends would keep ``learn`` from returning.

    An episode counts as bounded when each slot's env is wrapped in ``gymnasium.wrappers.TimeLimit``, its spec has a
    ``max_episode_steps``, or the env itself truncates at ``max_steps`` (MiniGrid's convention).

    :param env: The training VecEnv.
    :param algorithm: Name used in the message.
    """
    try:
        wrapped = env.env_is_wrapped(TimeLimit)
        specs = env.get_attr("spec")
        own_limits = env.get_attr("max_steps") if env.has_attr("max_steps") else [None] * env.num_envs
    except (AttributeError, NotImplementedError):
        return  # a VecEnv that cannot tell: trust it
    for slot_wrapped, spec, own_limit in zip(wrapped, specs, own_limits, strict=True):
        limit = getattr(spec, "max_episode_steps", None)
        if not (slot_wrapped or limit is not None or isinstance(own_limit, int)):
            raise ValueError(
                f"{algorithm} evaluates each candidate on whole episodes, and nothing bounds this env's episodes (no "
                "TimeLimit wrapper, no max_episode_steps in its spec): learn could run for ever. Wrap the env, e.g. "
                "gymnasium.wrappers.TimeLimit(env, max_episode_steps=1000), or make_vec_env(..., "
                "wrapper_class=gymnasium.wrappers.TimeLimit, wrapper_kwargs=dict(max_episode_steps=1000))."
            )
