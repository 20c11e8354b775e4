"""Environments of the CEM-AH paper and wrappers to run SB3 algorithms on them.

Importing this package does not import ``minigrid``: the maze is registered through a string entry
point and :class:`~sb3_cemah.envs.maze.CrossingMaze` is loaded on first use.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from sb3_cemah.envs.wrappers import DiscreteToBoxActionWrapper

#: The paper's maze with its fixed layout.
MAZE_ID = "sb3_cemah/Maze-v0"
#: The same maze with a new random layout at every reset (generalisation tests).
MAZE_RANDOM_ID = "sb3_cemah/MazeRandom-v0"

_MAZE_ENTRY_POINT = "sb3_cemah.envs.maze:CrossingMaze"

__all__ = ["MAZE_ID", "MAZE_RANDOM_ID", "CrossingMaze", "DiscreteToBoxActionWrapper", "register_envs"]


def register_envs() -> None:
    """
    Register the package's gymnasium ids (idempotent: ids already registered are left as they are).

    - ``sb3_cemah/Maze-v0``: :class:`~sb3_cemah.envs.maze.CrossingMaze` with its default fixed layout
    - ``sb3_cemah/MazeRandom-v0``: the same with ``layout_seed=None`` (a random layout per episode)

    Both have the 10 000-step limit built in (``max_steps`` kwarg), not a ``TimeLimit`` wrapper.
    """
    ids: dict[str, dict[str, Any]] = {MAZE_ID: {}, MAZE_RANDOM_ID: {"layout_seed": None}}
    for env_id, kwargs in ids.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=_MAZE_ENTRY_POINT, kwargs=kwargs)


def __getattr__(name: str) -> Any:
    # Lazy import so that `import sb3_cemah.envs` works without minigrid installed.
    if name == "CrossingMaze":
        from sb3_cemah.envs.maze import CrossingMaze

        return CrossingMaze
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
