"""Wrappers for running SB3 algorithms on the paper's environments."""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# Mixed into the reset seed so the wrapper's sampling stream differs from the env's own stream.
_SEED_SALT = 0x5EED


class DiscreteToBoxActionWrapper(gym.ActionWrapper):
    """
    Lets continuous-action algorithms (DDPG, TD3, SAC, CEM with a continuous head) act on a
    ``Discrete(n)`` env: the action space becomes ``Box(-1, 1, (n,), float32)``, one score per discrete
    action, and the score vector is mapped to a discrete action:

    - ``mode="argmax"`` (default): the action with the highest score (the first one on ties);
      deterministic.
    - ``mode="softmax"``: a sample from ``softmax(clip(scores, -1, 1) / temperature)``, like the authors'
      DDPG on the maze, which samples from a softmax over its tanh outputs. The RNG is seeded by
      ``seed`` and re-seeded by ``reset(seed=...)``.

    Usable from an rl-zoo3 hyperparameter file::

        env_wrapper: sb3_cemah.envs.wrappers.DiscreteToBoxActionWrapper
        # or, with kwargs:
        env_wrapper:
          - sb3_cemah.envs.wrappers.DiscreteToBoxActionWrapper:
              mode: softmax

    :param env: env with a ``Discrete`` action space
    :param mode: ``"argmax"`` or ``"softmax"``
    :param temperature: softmax temperature (``mode="softmax"`` only), > 0
    :param seed: seed of the sampling RNG (``mode="softmax"`` only)
    """

    def __init__(
        self,
        env: gym.Env,
        mode: Literal["argmax", "softmax"] = "argmax",
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> None:
        if not isinstance(env.action_space, spaces.Discrete):
            raise TypeError(f"{type(self).__name__} needs a Discrete action space, got {env.action_space}")
        if mode not in ("argmax", "softmax"):
            raise ValueError(f"mode must be 'argmax' or 'softmax', got {mode!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__(env)
        self.n_actions = int(env.action_space.n)
        self._start = int(env.action_space.start)
        self.mode = mode
        self.temperature = float(temperature)
        self._rng = np.random.default_rng(seed)
        self.action_space = spaces.Box(low=-1.0, high=1.0, shape=(self.n_actions,), dtype=np.float32)

    def action(self, action: Any) -> int:
        """
        :param action: scores, shape (n_actions,)
        :return: the discrete action
        """
        scores = np.asarray(action, dtype=np.float64).reshape(self.n_actions)
        if self.mode == "argmax":
            return self._start + int(np.argmax(scores))
        logits = np.clip(scores, -1.0, 1.0) / self.temperature
        probs = np.exp(logits - logits.max())
        cdf = np.cumsum(probs)
        # Inverse-CDF sampling: cheaper than `Generator.choice` with `p=` for a handful of actions.
        idx = int(np.searchsorted(cdf, self._rng.random() * cdf[-1], side="right"))
        return self._start + min(idx, self.n_actions - 1)

    def action_probabilities(self, action: Any) -> np.ndarray:
        """
        The distribution over discrete actions that ``action`` induces (one-hot for ``"argmax"``).

        :param action: scores, shape (n_actions,)
        :return: probabilities, shape (n_actions,)
        """
        scores = np.asarray(action, dtype=np.float64).reshape(self.n_actions)
        if self.mode == "argmax":
            probs = np.zeros(self.n_actions)
            probs[int(np.argmax(scores))] = 1.0
            return probs
        logits = np.clip(scores, -1.0, 1.0) / self.temperature
        probs = np.exp(logits - logits.max())
        return probs / probs.sum()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng([seed, _SEED_SALT])
        return self.env.reset(seed=seed, options=options)
