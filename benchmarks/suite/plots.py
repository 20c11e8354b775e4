"""
Learning-curve figures of the report: one PNG per env, training and test return against env steps and
against wall-clock, the mean over seeds with the min-max band.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.suite.protocol import EnvSpec

#: Training returns are averaged over this many consecutive episodes (one population of 100 candidates).
TRAIN_WINDOW = 100
GRID_POINTS = 200

COLORS = {
    "cemah": "tab:red",
    "cem": "tab:orange",
    "ars": "tab:green",
    "a2c": "tab:blue",
    "ddpg": "tab:purple",
    "dqn": "tab:brown",
    "qtopt": "tab:gray",
    "qtopt_ddpg": "tab:olive",
}


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each index (fewer at the start)."""
    if len(values) == 0:
        return values
    cumulative = np.cumsum(np.insert(values.astype(float), 0, 0.0))
    indices = np.arange(1, len(values) + 1)
    starts = np.maximum(indices - window, 0)
    return (cumulative[indices] - cumulative[starts]) / (indices - starts)


def spread(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """
    Mean, min and max over seeds on a common x grid.

    Each curve is interpolated inside its own x range only (NaN outside), so a seed that stopped earlier
    (a capped run) does not drag the mean; the grid goes up to the longest curve.

    :return: grid, mean, low, high.
    """
    curves = [(x, y) for x, y in curves if len(x) > 0]
    if not curves:
        empty = np.array([])
        return empty, empty, empty, empty
    x_max = max(float(x[-1]) for x, _ in curves)
    x_min = min(float(x[0]) for x, _ in curves)
    grid = np.linspace(x_min, x_max, GRID_POINTS)
    stacked = np.full((len(curves), GRID_POINTS), np.nan)
    for row, (x, y) in enumerate(curves):
        inside = (grid >= x[0]) & (grid <= x[-1])
        stacked[row, inside] = np.interp(grid[inside], x, y)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return grid, np.nanmean(stacked, axis=0), np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0)


def plot_env(
    env: EnvSpec,
    train: dict[str, list[dict[str, np.ndarray]]],
    test: dict[str, list[dict[str, np.ndarray]]],
    random_return: float | None,
    out: Path,
) -> None:
    """
    Write the env's 2x2 figure.

    :param train: algo -> one dict per seed with ``env_steps``, ``wall_s``, ``return_mean`` arrays (the training
        return's rolling mean of :data:`TRAIN_WINDOW` episodes, as :mod:`benchmarks.suite.store` keeps it).
    :param test: algo -> one dict per seed with ``env_steps``, ``wall_s``, ``mean_return`` arrays.
    :param random_return: A random policy's mean return, drawn as a dashed line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.artist import Artist

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    panels = [
        (axes[0, 0], train, "env_steps", "return_mean", f"training return (mean of {TRAIN_WINDOW} episodes)", "env steps"),
        (axes[0, 1], train, "wall_s", "return_mean", f"training return (mean of {TRAIN_WINDOW} episodes)", "wall-clock (min)"),
        (axes[1, 0], test, "env_steps", "mean_return", "test return (10 episodes)", "env steps"),
        (axes[1, 1], test, "wall_s", "mean_return", "test return (10 episodes)", "wall-clock (min)"),
    ]
    for axis, data, x_key, y_key, title, x_label in panels:
        for algo, seeds in data.items():
            curves = []
            for seed in seeds:
                x, y = seed[x_key], seed[y_key]
                keep = np.isfinite(x) & np.isfinite(y)
                x, y = x[keep], y[keep]
                if x_key == "wall_s":
                    x = x / 60.0
                curves.append((x, y))
            grid, mean, low, high = spread(curves)
            if len(grid) == 0:
                continue
            color = COLORS.get(algo)
            # A curve of one evaluation is a single point: draw it as a marker.
            marker = "o" if grid[0] == grid[-1] else None
            label = f"{algo} ({len(curves)} seed{'s' if len(curves) > 1 else ''})"
            axis.plot(grid, mean, color=color, marker=marker, markersize=3, markevery=max(len(grid) // 20, 1), label=label)
            if len(curves) > 1:
                axis.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)
        if random_return is not None:
            axis.axhline(random_return, color="grey", linestyle="--", linewidth=1, label="random policy")
        if y_key == "mean_return":
            for reference in env.references:
                axis.axhline(reference.value, color="black", linestyle=":", linewidth=0.8)
        axis.set_title(title)
        axis.set_xlabel(x_label)
        axis.grid(alpha=0.3)
    # One legend for all panels: an algorithm without evaluations appears in the training panels only.
    legend: dict[str, Artist] = {}
    for axis in axes.flat:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 7), frameon=False)
    references = ", ".join(f"{ref.label} {ref.value:g}" for ref in env.references)
    fig.suptitle(f"{env.env_id} (dotted: {references}); band: min-max over seeds", y=0.935, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
