"""Learning-rate schedules see the remaining progress in (0, 1], never 0 or below (a negative Adam rate ascends)."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def test_schedule_progress_stays_positive(make_model: Callable, cartpole_vec: Callable) -> None:
    calls: list[float] = []

    def schedule(progress_remaining: float) -> float:
        calls.append(progress_remaining)
        return 1e-3 * progress_remaining  # rl-zoo3's lin_1e-3

    model = make_model("CEMAH", cartpole_vec(n_envs=4), learning_rate=schedule)
    # Several populations, the last of which overshoots the budget (CartPole episodes vary in length).
    model.learn(1_000)
    assert model._n_iterations >= 3 and model.num_timesteps > 1_000
    assert calls and min(calls) > 0.0 and max(calls) <= 1.0
    assert model.policy.generator_optimizer.param_groups[0]["lr"] > 0.0
    # The last iteration's rate: the progress at its start, 1 - steps before its population / budget; its
    # pre-training decayed it linearly, so the last of its steps ran at 1 / pretrain_steps of it.
    expected = schedule(model._current_progress_remaining)
    assert model.policy.generator_optimizer.param_groups[0]["lr"] == pytest.approx(expected / model.pretrain_steps)
    assert model._current_progress_remaining > 0.0
