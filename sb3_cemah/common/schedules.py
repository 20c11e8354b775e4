"""Hyper-parameters that may change over training, given as SB3 schedules or as rl-zoo3's ``"lin_<x>"`` strings."""

import math

from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.utils import FloatSchedule, LinearSchedule


def as_schedule(value: float | str | Schedule) -> FloatSchedule | None:
    """
    Turn a constant, a schedule or rl-zoo3's ``"lin_<x>"`` string into a schedule of ``progress_remaining``.

    rl-zoo3 turns ``"lin_<x>"`` into a linear schedule only for the parameters it knows (``learning_rate``,
    ``clip_range``, ...); its yml files and ``-params`` pass the string unchanged to any other parameter, so it is
    read here with rl-zoo3's meaning: ``x`` at the start of training, falling linearly to 0 at its end.

    :param value: A number, a callable of ``progress_remaining`` (1 at the start of ``learn``, 0 at its end) or
        ``"lin_<x>"``.
    :return: The schedule, returning floats; None when ``value`` is none of these.
    """
    if isinstance(value, str):
        prefix, _, start = value.partition("_")
        try:
            initial = float(start)
        except ValueError:
            return None
        return FloatSchedule(LinearSchedule(initial, 0.0, 1.0)) if prefix == "lin" and math.isfinite(initial) else None
    if isinstance(value, bool) or not (isinstance(value, (int, float)) or callable(value)):
        return None
    return FloatSchedule(value)
