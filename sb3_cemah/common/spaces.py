"""Which observation and action spaces the flat-weight policies support, checked with a message a user can act on."""

from __future__ import annotations

from gymnasium import spaces

__all__ = ["SUPPORTED_ACTION_SPACES", "SUPPORTED_OBSERVATION_SPACES", "check_spaces"]

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
