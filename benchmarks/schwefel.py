"""
The paper's Figure 1: maximising the negative Schwefel function on two parameters with CEM and CEM-AH.

The "env" has one step: the observation is the constant ``[1.0]``, the action a point ``x`` in
``[-500, 500]^2`` and the reward ``f(x) = -schwefel(x)`` (global maximum 0 at ``x_i = 420.9687``). With
``net_arch=[]`` a policy is ``500 * tanh(W [1.0] + b)``: 4 weights that place one point, so a population of
policies is a cloud of points. CEM's search distribution is a diagonal Gaussian over those 4 weights;
CEM-AH's is the hypernetwork, trained on the elite points of its guiding CEM.

Both algorithms run with their default hyper-parameters (population 100, 10 % elites) for ``--iterations``
iterations and several seeds. After the iterations listed in ``--snapshots``, ``--n-points`` points are
drawn from each distribution: CEM's Gaussian, CEM-AH's hypernetwork (``policy.generate_weights``) and, for
reference, CEM-AH's own guiding Gaussian. The figure shows the first seed; the table counts, over all seeds,
how many of the function's basins of attraction hold the points (a multi-modal distribution occupies
several), how many points sit in the global maximum's basin, and their mean ``f``.

Run ``python -m benchmarks.schwefel --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.env_util import make_vec_env

from benchmarks import common
from sb3_cemah import CEM, CEMAH
from sb3_cemah.cem.policies import CEMPolicy
from sb3_cemah.cemah.policies import CEMAHPolicy

BOUND = 500.0
OPTIMUM = 420.9687
# Rows of the figure: (label, algorithm, which distribution of the trained model to draw from).
ROWS = (
    ("CEM (Gaussian)", "CEM", "gaussian"),
    ("CEM-AH (hypernetwork)", "CEMAH", "hypernetwork"),
    ("CEM-AH's guiding CEM", "CEMAH", "gaussian"),
)
# A basin counts as a mode when it holds at least this share of the drawn points.
MODE_SHARE = 0.05
# "Near the optimum": both coordinates within this distance of 420.97 (f > -160 there).
NEAR_OPTIMUM = 25.0


def negative_schwefel(points: np.ndarray) -> np.ndarray:
    """``-schwefel(x) = sum_i x_i sin(sqrt|x_i|) - 418.9829 d`` over the last axis (maximum 0)."""
    return np.sum(points * np.sin(np.sqrt(np.abs(points))), axis=-1) - 418.9829 * points.shape[-1]


class NegativeSchwefelEnv(gym.Env):
    """One-step env: constant observation ``[1.0]``, action a point of ``[-500, 500]^2``, reward ``-schwefel``."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, dim: int = 2):
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Box(-BOUND, BOUND, (dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.ones(1, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        point = np.clip(np.asarray(action, dtype=np.float64), -BOUND, BOUND)
        return np.ones(1, dtype=np.float32), float(negative_schwefel(point)), True, False, {}


def basin_edges() -> np.ndarray:
    """
    Boundaries of the 1-D basins of attraction of ``x sin(sqrt|x|)`` on [-500, 500] (its local minima).
    The 2-D function is a sum over coordinates, so its basins are the products of the 1-D ones.
    """
    grid = np.linspace(-BOUND, BOUND, 200_001)
    values = grid * np.sin(np.sqrt(np.abs(grid)))
    is_minimum = (values[1:-1] < values[:-2]) & (values[1:-1] < values[2:])
    return grid[1:-1][is_minimum]


def basin_ids(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """One integer per point naming its 2-D basin."""
    cells = np.digitize(points, edges)
    return cells[:, 0] * (len(edges) + 1) + cells[:, 1]


def draw_points(model: CEM, distribution: str, n_points: int) -> np.ndarray:
    """Points (actions on the constant observation) of ``n_points`` policies drawn from the model's distribution."""
    policy: CEMPolicy = model.policy
    with th.no_grad():
        if distribution == "hypernetwork":
            assert isinstance(policy, CEMAHPolicy)
            weights = policy.generate_weights(n_points)
        else:
            weights = policy.sample_weights(n_points)
        features = policy.obs_to_features(np.ones((1, 1), dtype=np.float32))
        outputs = policy.network.forward(weights, features.expand(n_points, 1, -1)).squeeze(1)
        return policy.actions_to_env(policy.outputs_to_actions(outputs, deterministic=True))


def run_seed(seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train CEM and CEM-AH with one seed; snapshot the distributions after the chosen iterations."""
    snapshots: list[dict[str, Any]] = []
    for algorithm_class in (CEM, CEMAH):
        name = algorithm_class.__name__
        # One step per episode; the algorithms ask for a declared bound on every env's episodes.
        env = make_vec_env(lambda: TimeLimit(NegativeSchwefelEnv(), max_episode_steps=1), n_envs=args.n_envs, seed=seed)
        kwargs: dict[str, Any] = {} if args.initial_std is None else {"initial_std": args.initial_std}
        if algorithm_class is CEMAH:
            kwargs.update(args.cemah_kwargs)
        model = algorithm_class("MlpPolicy", env, policy_kwargs={"net_arch": []}, seed=seed, **kwargs)
        th.manual_seed(seed + 12345)  # the snapshots' draws must not depend on how the models were built
        for iteration in range(1, max(args.snapshots) + 1):
            model.learn(1, reset_num_timesteps=False)
            if iteration not in args.snapshots:
                continue
            for label, row_algorithm, distribution in ROWS:
                if row_algorithm == name:
                    points = draw_points(model, distribution, args.n_points)
                    snapshots.append({"seed": seed, "row": label, "iteration": iteration, "points": points})
        print(f"seed {seed} {name}: done", flush=True)
    return snapshots


def snapshot_statistics(snapshot: dict[str, Any], edges: np.ndarray) -> dict[str, Any]:
    """Modes occupied, share of points in the global maximum's basin, mean and best ``f``."""
    points = snapshot["points"]
    ids = basin_ids(points, edges)
    _, counts = np.unique(ids, return_counts=True)
    optimum_id = basin_ids(np.full((1, 2), OPTIMUM), edges)[0]
    values = negative_schwefel(points.astype(np.float64))
    return {
        "seed": snapshot["seed"],
        "row": snapshot["row"],
        "iteration": snapshot["iteration"],
        "modes": int(np.sum(counts >= MODE_SHARE * len(points))),
        "basins_visited": len(counts),
        "share_in_global_basin": float(np.mean(ids == optimum_id)),
        # The basin reaches the border: saturated points (x_i = 500) belong to it but score about -1190.
        "share_near_optimum": float(np.mean(np.max(np.abs(points - OPTIMUM), axis=1) <= NEAR_OPTIMUM)),
        "share_on_border": float(np.mean(np.max(np.abs(points), axis=1) >= 0.99 * BOUND)),
        "mean_f": float(values.mean()),
        "best_f": float(values.max()),
        "std_x1": float(points[:, 0].std()),
        "std_x2": float(points[:, 1].std()),
    }


def plot(snapshots: list[dict[str, Any]], args: argparse.Namespace, edges: np.ndarray, path: pathlib.Path) -> None:
    """Grid of contour plots of ``f``: one row per distribution, one column per snapshot, first seed only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axis = np.linspace(-BOUND, BOUND, 401)
    grid_x1, grid_x2 = np.meshgrid(axis, axis)
    values = negative_schwefel(np.stack([grid_x1, grid_x2], axis=-1))
    seed = args.seeds[0]
    n_rows, n_cols = len(ROWS), len(args.snapshots)
    figure, axes = plt.subplots(
        n_rows, n_cols, figsize=(3.0 * n_cols + 1.2, 3.0 * n_rows + 0.6), squeeze=False, sharex=True, sharey=True
    )
    for row, (label, _, _) in enumerate(ROWS):
        for col, iteration in enumerate(args.snapshots):
            ax = axes[row][col]
            contour = ax.contourf(grid_x1, grid_x2, values, levels=30, cmap="viridis")
            snapshot = _find(snapshots, seed, label, iteration)
            points = snapshot["points"]
            # The star goes under the points: a collapsed distribution sits right on it.
            ax.plot(OPTIMUM, OPTIMUM, marker="*", markersize=14, color="yellow", markeredgecolor="black", zorder=2)
            ax.scatter(points[:, 0], points[:, 1], s=9, c="red", edgecolors="white", linewidths=0.4, zorder=3)
            stats = snapshot_statistics(snapshot, edges)
            note = f"{stats['modes']} mode(s)\n{100 * stats['share_near_optimum']:.0f}% near the optimum"
            ax.text(-480, -480, note, fontsize=7.5, color="white", va="bottom", zorder=4)
            # A margin, so that points on the border (saturated tanh outputs) stay visible.
            ax.set_xlim(-1.06 * BOUND, 1.06 * BOUND)
            ax.set_ylim(-1.06 * BOUND, 1.06 * BOUND)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
            if row == 0:
                ax.set_title(f"after iteration {iteration}", fontsize=10)
            if col == 0:
                ax.set_ylabel(f"{label}\n$x_2$", fontsize=10)
            if row == n_rows - 1:
                ax.set_xlabel("$x_1$", fontsize=9)
    figure.colorbar(contour, ax=axes, shrink=0.6, label="f(x) = -schwefel(x)")
    figure.suptitle(
        f"Negative Schwefel function, {args.n_points} points drawn from each distribution (seed {seed}; star: global "
        f"maximum;\nmodes: basins holding >= {MODE_SHARE:.0%} of the points; near the optimum: both coordinates within "
        f"{NEAR_OPTIMUM:.0f} of it)",
        fontsize=11,
    )
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def _find(snapshots: list[dict[str, Any]], seed: int, label: str, iteration: int) -> dict[str, Any]:
    """The snapshot of one seed, distribution and iteration."""
    return next(s for s in snapshots if s["seed"] == seed and s["row"] == label and s["iteration"] == iteration)


def summary_rows(statistics: list[dict[str, Any]], args: argparse.Namespace) -> list[list[Any]]:
    """Per distribution and snapshot: medians over seeds of the statistics (modes also with their range)."""
    rows = []
    for label, _, _ in ROWS:
        for iteration in args.snapshots:
            selected = [s for s in statistics if s["row"] == label and s["iteration"] == iteration]

            def median(key: str, selected: list[dict[str, Any]] = selected) -> float:
                return float(np.median([s[key] for s in selected]))

            modes = [s["modes"] for s in selected]
            rows.append(
                [
                    label,
                    iteration,
                    f"{median('modes'):.0f} ({min(modes)}-{max(modes)})",
                    f"{median('basins_visited'):.0f}",
                    f"{100 * median('share_in_global_basin'):.0f} %",
                    f"{100 * median('share_near_optimum'):.0f} %",
                    f"{100 * median('share_on_border'):.0f} %",
                    f"{median('mean_f'):.0f}",
                    f"{median('best_f'):.1f}",
                    f"{median('std_x1'):.0f} / {median('std_x2'):.0f}",
                ]
            )
    return rows


def load_points(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Snapshots from the rows of an earlier run's ``points.csv``."""
    grouped: dict[tuple[int, str, int], list[tuple[float, float]]] = {}
    for row in rows:
        grouped.setdefault((row["seed"], row["row"], row["iteration"]), []).append((row["x1"], row["x2"]))
    return [
        {"seed": seed, "row": label, "iteration": it, "points": np.array(points)}
        for (seed, label, it), points in grouped.items()
    ]


def main(argv: list[str] | None = None) -> None:
    parser = common.parser("schwefel", "The paper's Figure 1: CEM vs CEM-AH sampled points on the negative Schwefel function.")
    parser.set_defaults(output=common.REPO_ROOT / "docs" / "schwefel")
    parser.add_argument("--snapshots", type=int, nargs="+", default=[1, 5, 10, 20, 50], help="iterations to plot")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="the figure shows the first")
    parser.add_argument("--n-points", type=int, default=100, help="points drawn from each distribution per snapshot")
    parser.add_argument("--n-envs", type=int, default=10, help="DummyVecEnv slots")
    parser.add_argument("--initial-std", type=float, default=None, help="initial std of CEM's weights (default: CEM's)")
    parser.add_argument(
        "--cemah-kwargs",
        type=json.loads,
        default={},
        help="extra CEMAH keyword arguments as JSON, e.g. '{\"pretrain_steps\": 20}'",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: snapshots 1 2 3, one seed")
    args = parser.parse_args(argv)
    if args.quick:
        args.snapshots, args.seeds = [1, 2, 3], args.seeds[:1]
    args.snapshots = sorted(set(args.snapshots))
    run = common.Run.start("schwefel", args, cemah_training_defaults=common.cemah_training_defaults())
    if args.from_dir is not None:
        snapshots = load_points(run.rows("points.csv"))
    else:
        snapshots = [snapshot for seed in args.seeds for snapshot in run_seed(seed, args)]
    edges = basin_edges()
    statistics = [snapshot_statistics(snapshot, edges) for snapshot in snapshots]
    plot(snapshots, args, edges, args.output / "schwefel.png")
    points = [
        {"seed": s["seed"], "row": s["row"], "iteration": s["iteration"], "x1": float(x1), "x2": float(x2)}
        for s in snapshots
        for x1, x2 in s["points"]
    ]
    run.save("points.csv", points, {})
    common.write_csv(args.output / "statistics.csv", statistics)
    headers = [
        "distribution",
        "after iteration",
        f"modes (basins with >= {MODE_SHARE:.0%} of points): median (range)",
        "basins visited",
        "points in the global max's basin",
        f"points within {NEAR_OPTIMUM:.0f} of the optimum",
        "points on the border (abs(x_i) >= 495)",
        "mean f",
        "best f",
        "std x1 / x2",
    ]
    table = common.markdown_table(headers, summary_rows(statistics, args))
    run.report("CEM vs CEM-AH on the Schwefel function (the paper's Figure 1)", {"statistics": table})


if __name__ == "__main__":
    main()
