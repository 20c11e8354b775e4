"""Tests of the paper's maze (sb3_cemah.envs.maze) and the discrete adaptor wrapper."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections import deque
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

pytest.importorskip("minigrid")

from sb3_cemah.envs import MAZE_ID, MAZE_RANDOM_ID, DiscreteToBoxActionWrapper, register_envs
from sb3_cemah.envs.maze import DEFAULT_LAYOUT_SEED, CrossingMaze

register_envs()

LEFT, RIGHT, FORWARD = 0, 1, 2
WALL, GOAL, AGENT = 2, 8, 10
DIR_TO_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))

# The fixed layout of sb3_cemah/Maze-v0, rows top to bottom ('#' wall, 'G' goal, 'A' agent facing right).
# Pinned so that a change of minigrid's generator (which would change the benchmark) is noticed.
FIXED_LAYOUT = """
#########
#A#.#...#
#...#...#
#.#.#...#
#.#.#...#
#.#.#...#
###.#####
#.#....G#
#########
"""


def grid_of(obs: np.ndarray) -> np.ndarray:
    """:return: the observation as a (9, 9, 3) grid indexed [x, y, channel]"""
    return obs.reshape(9, 9, 3)


def ascii_layout(obs: np.ndarray) -> str:
    objects = grid_of(obs)[:, :, 0]
    chars = {1: ".", WALL: "#", GOAL: "G", AGENT: "A"}
    return "\n".join("".join(chars[int(objects[x, y])] for x in range(9)) for y in range(9))


def shortest_actions(obs: np.ndarray) -> list[int]:
    """BFS over (x, y, direction) on the layout seen in ``obs``: the shortest action sequence to the goal."""
    grid = grid_of(obs)
    (x0,), (y0,) = np.nonzero(grid[:, :, 0] == AGENT)
    start = (int(x0), int(y0), int(grid[x0, y0, 2]))
    parents: dict[tuple[int, int, int], tuple[tuple[int, int, int], int] | None] = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        x, y, d = state
        if grid[x, y, 0] == GOAL:
            actions = []
            while parents[state] is not None:
                state, action = parents[state]  # type: ignore[misc]
                actions.append(action)
            return actions[::-1]
        dx, dy = DIR_TO_VEC[d]
        moves = [((x, y, (d - 1) % 4), LEFT), ((x, y, (d + 1) % 4), RIGHT)]
        if grid[x + dx, y + dy, 0] != WALL:
            moves.append(((x + dx, y + dy, d), FORWARD))
        for nxt, action in moves:
            if nxt not in parents:
                parents[nxt] = (state, action)
                queue.append(nxt)
    raise AssertionError("goal unreachable")


def run(env: gym.Env, actions: list[int]) -> tuple[list[float], bool, bool, dict]:
    rewards: list[float] = []
    terminated = truncated = False
    info: dict = {}
    for action in actions:
        assert not (terminated or truncated)
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
    return rewards, terminated, truncated, info


@pytest.mark.parametrize("env_id", [MAZE_ID, MAZE_RANDOM_ID])
def test_env_checkers(env_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # gymnasium's checker also opens the "human" render mode: keep pygame headless.
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    env = gym.make(env_id)
    gym_check_env(env.unwrapped)
    sb3_check_env(env)
    sb3_check_env(DiscreteToBoxActionWrapper(gym.make(env_id)))


@pytest.mark.parametrize("env_id", [MAZE_ID, MAZE_RANDOM_ID])
def test_spaces(env_id: str) -> None:
    env = gym.make(env_id)
    assert env.observation_space.shape == (243,)
    assert env.observation_space.dtype == np.uint8
    assert env.action_space == spaces.Discrete(3)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (243,) and obs.dtype == np.uint8
    assert obs in env.observation_space
    assert getattr(env.unwrapped, "max_steps") == 10_000  # noqa: B009


def test_register_envs_is_idempotent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_envs()
        register_envs()
    assert gym.spec(MAZE_ID).entry_point == "sb3_cemah.envs.maze:CrossingMaze"
    assert gym.spec(MAZE_RANDOM_ID).kwargs == {"layout_seed": None}


def test_import_is_lazy() -> None:
    # The package and the registration work without minigrid (`sys.modules[name] = None` blocks an import).
    code = (
        "import sys; sys.modules['minigrid'] = None\n"
        "import gymnasium as gym, sb3_cemah, sb3_cemah.envs as e\n"
        "e.register_envs()\n"
        "assert e.MAZE_ID in gym.registry\n"
        "e.DiscreteToBoxActionWrapper(gym.make('CartPole-v1'))\n"
        "try:\n"
        "    gym.make(e.MAZE_ID)\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('minigrid was not needed')\n"
    )
    # cwd = repository root so the subprocess finds the package even when it is not installed.
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_fixed_layout_is_pinned() -> None:
    obs, _ = gym.make(MAZE_ID).reset(seed=0)
    assert ascii_layout(obs) == FIXED_LAYOUT.strip()
    assert DEFAULT_LAYOUT_SEED == 110
    # Start top-left facing right, goal bottom-right.
    assert tuple(grid_of(obs)[1, 1]) == (AGENT, 0, 0)
    assert grid_of(obs)[7, 7, 0] == GOAL


def test_matches_minigrid_simple_crossing() -> None:
    """Same layout as MiniGrid-SimpleCrossingS9N3-v0 for the same seed, and the same observations as its
    FullyObsWrapper along a random trajectory."""
    from minigrid.wrappers import FullyObsWrapper

    fixed_obs, _ = gym.make(MAZE_ID).reset(seed=0)
    reference = FullyObsWrapper(gym.make("MiniGrid-SimpleCrossingS9N3-v0", max_steps=10_000))
    ref_obs, _ = reference.reset(seed=DEFAULT_LAYOUT_SEED)
    np.testing.assert_array_equal(fixed_obs, ref_obs["image"].reshape(-1))

    env = gym.make(MAZE_RANDOM_ID)
    rng = np.random.default_rng(0)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        ref_obs, _ = reference.reset(seed=seed)
        np.testing.assert_array_equal(obs, ref_obs["image"].reshape(-1))
        for action in rng.integers(0, 3, size=2000).tolist():
            obs, _, terminated, _, _ = env.step(action)
            ref_obs, _, ref_terminated, _, _ = reference.step(action)
            np.testing.assert_array_equal(obs, ref_obs["image"].reshape(-1))
            assert terminated == ref_terminated
            if terminated:
                break


def test_optimal_path_return() -> None:
    env = gym.make(MAZE_ID)
    obs, _ = env.reset(seed=0)
    actions = shortest_actions(obs)
    assert len(actions) == 16  # 4 turns and 12 moves on the pinned layout
    rewards, terminated, truncated, info = run(env, actions)
    assert terminated and not truncated
    assert info["is_success"] is True
    # -0.1 per step; the goal step gets -0.1 + 1000.
    assert rewards[:-1] == pytest.approx([-0.1] * (len(actions) - 1))
    assert rewards[-1] == pytest.approx(999.9)
    assert sum(rewards) == pytest.approx(1000 - 0.1 * len(actions), abs=1e-6)


def test_optimal_path_random_layouts() -> None:
    env = gym.make(MAZE_RANDOM_ID)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        actions = shortest_actions(obs)
        rewards, terminated, truncated, _ = run(env, actions)
        assert terminated and not truncated
        assert sum(rewards) == pytest.approx(1000 - 0.1 * len(actions), abs=1e-6)


def test_timeout_return() -> None:
    env = gym.make(MAZE_ID)
    env.reset(seed=0)
    total, length = 0.0, 0
    terminated = truncated = False
    info: dict = {}
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(LEFT)
        total += float(reward)
        length += 1
    assert truncated and not terminated
    assert info["is_success"] is False
    assert length == 10_000
    assert total == pytest.approx(-1000.0, abs=1e-6)


def test_wall_blocks_forward() -> None:
    env = gym.make(MAZE_ID)
    obs, _ = env.reset(seed=0)
    # On the pinned layout the cell right of the start is a wall.
    next_obs, reward, terminated, truncated, _ = env.step(FORWARD)
    np.testing.assert_array_equal(next_obs, obs)
    assert reward == pytest.approx(-0.1) and not terminated and not truncated
    next_obs, *_ = env.step(RIGHT)
    assert grid_of(next_obs)[1, 1, 2] == 1  # now facing down


def test_fixed_layout_ignores_seed() -> None:
    env = gym.make(MAZE_ID)
    first, _ = env.reset(seed=0)
    for seed in (None, 1, 2, 12345):
        obs, _ = env.reset(seed=seed)
        np.testing.assert_array_equal(obs, first)
        run(env, [FORWARD, RIGHT, FORWARD, LEFT])
    other = gym.make(MAZE_ID)
    np.testing.assert_array_equal(other.reset(seed=7)[0], first)
    assert not np.array_equal(gym.make(MAZE_ID, layout_seed=0).reset(seed=0)[0], first)


def test_random_layout_changes() -> None:
    env = gym.make(MAZE_RANDOM_ID)
    by_seed = [env.reset(seed=seed)[0] for seed in range(10)]
    assert len({obs.tobytes() for obs in by_seed}) >= 5
    # Same seed, same layout (also from a fresh env).
    np.testing.assert_array_equal(env.reset(seed=3)[0], by_seed[3])
    np.testing.assert_array_equal(gym.make(MAZE_RANDOM_ID).reset(seed=3)[0], by_seed[3])
    # Without a seed, every episode gets a new layout from the stream.
    env.reset(seed=0)
    unseeded = [env.reset()[0] for _ in range(10)]
    assert len({obs.tobytes() for obs in unseeded}) >= 5
    # Every layout keeps the start and the goal in place.
    for obs in by_seed + unseeded:
        assert tuple(grid_of(obs)[1, 1]) == (AGENT, 0, 0) and grid_of(obs)[7, 7, 0] == GOAL


def test_seeded_trajectories_are_deterministic() -> None:
    actions = np.random.default_rng(1).integers(0, 3, size=500).tolist()
    trajectories = []
    for _ in range(2):
        env = gym.make(MAZE_RANDOM_ID)
        obs, _ = env.reset(seed=42)
        trajectory = [obs]
        for action in actions:
            obs, _, terminated, truncated, _ = env.step(action)
            trajectory.append(obs)
            if terminated or truncated:
                obs, _ = env.reset()
        trajectories.append(np.stack(trajectory))
    np.testing.assert_array_equal(trajectories[0], trajectories[1])


def test_render_rgb_array() -> None:
    env = gym.make(MAZE_ID, render_mode="rgb_array", tile_size=8)
    env.reset(seed=0)
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.shape == (72, 72, 3)


def test_invalid_action() -> None:
    env = CrossingMaze()
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(3)


# ----------------------------------------------------------------------------- wrapper


def test_wrapper_argmax() -> None:
    env = DiscreteToBoxActionWrapper(gym.make(MAZE_ID))
    assert env.action_space == spaces.Box(-1.0, 1.0, (3,), np.float32)
    assert env.action(np.array([0.9, -0.5, 0.1], dtype=np.float32)) == 0
    assert env.action(np.array([-1.0, 0.2, 0.1], dtype=np.float32)) == 1
    assert env.action(np.array([-1.0, -1.0, -0.99], dtype=np.float32)) == 2
    assert env.action(np.array([0.5, 0.5, 0.0], dtype=np.float32)) == 0  # first on ties
    # Out-of-range scores (e.g. unclipped noise) still map by argmax.
    assert env.action(np.array([3.0, -7.0, 2.0])) == 0
    np.testing.assert_array_equal(env.action_probabilities(np.array([0.0, 1.0, 0.5])), [0.0, 1.0, 0.0])

    # Stepping the wrapper is stepping the maze with the argmax action.
    obs, _ = env.reset(seed=0)
    reference = gym.make(MAZE_ID)
    reference.reset(seed=0)
    for scores in np.random.default_rng(0).uniform(-1, 1, size=(200, 3)).astype(np.float32):
        obs, reward, *_ = env.step(scores)
        ref_obs, ref_reward, *_ = reference.step(int(np.argmax(scores)))
        np.testing.assert_array_equal(obs, ref_obs)
        assert reward == ref_reward


def test_wrapper_softmax() -> None:
    env = DiscreteToBoxActionWrapper(gym.make(MAZE_ID), mode="softmax", temperature=0.5, seed=0)
    scores = np.array([1.0, 0.0, -1.0])
    probs = env.action_probabilities(scores)
    expected = np.exp(scores / 0.5) / np.exp(scores / 0.5).sum()
    np.testing.assert_allclose(probs, expected)
    counts = np.bincount([env.action(scores) for _ in range(20_000)], minlength=3) / 20_000
    np.testing.assert_allclose(counts, expected, atol=0.02)

    # reset(seed=...) re-seeds the sampling: same seed, same actions.
    draws = []
    for _ in range(2):
        env.reset(seed=5)
        draws.append([env.action(np.zeros(3)) for _ in range(50)])
    assert draws[0] == draws[1]
    assert len(set(draws[0])) == 3


def test_wrapper_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError):
        DiscreteToBoxActionWrapper(gym.make("Pendulum-v1"))
    with pytest.raises(ValueError):
        DiscreteToBoxActionWrapper(gym.make(MAZE_ID), mode="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DiscreteToBoxActionWrapper(gym.make(MAZE_ID), mode="softmax", temperature=0.0)


def test_wrapper_from_rl_zoo_hyperparams() -> None:
    zoo_utils = pytest.importorskip("rl_zoo3.utils")
    path = "sb3_cemah.envs.wrappers.DiscreteToBoxActionWrapper"
    for spec in (path, [{path: {"mode": "softmax", "seed": 1}}]):
        wrapper_class = zoo_utils.get_wrapper_class({"env_wrapper": spec})
        env = wrapper_class(gym.make(MAZE_ID))
        assert isinstance(env, DiscreteToBoxActionWrapper)
        assert isinstance(env.action_space, spaces.Box)
    assert env.mode == "softmax"


def test_ddpg_runs_on_wrapped_maze() -> None:
    from stable_baselines3 import DDPG

    env = DiscreteToBoxActionWrapper(gym.make(MAZE_ID, max_steps=50))
    model = DDPG("MlpPolicy", env, learning_starts=20, train_freq=10, batch_size=16, seed=0, device="cpu")
    model.learn(total_timesteps=60)
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert action.shape == (3,) and env.action(action) in (0, 1, 2)
