"""
The paper's Figure 4: distributions of single policy weights under CEM and CEM-AH on the maze.

``CEM`` and ``CEMAH`` are trained on ``sb3_cemah/Maze-v0`` with the same seed, the same number of iterations
and the maze's settings of ``hyperparams/cem.yml`` and ``cemah.yml`` (population 100, 10 % elites, 8
``DummyVecEnv`` slots, the linear policy on standardised observations, stochastic candidates). Before the
first iteration and after every iteration, ``--samples`` flat weight vectors are drawn from each search
distribution: CEM's diagonal Gaussian (``policy.sample_weights``), CEM-AH's hypernetwork
(``policy.generate_weights``) and, for reference, CEM-AH's own guiding Gaussian (with the same seed it is
CEM's, which ``summary.json`` checks).

For every weight of every draw, a Gaussian kernel density estimate (Scott's bandwidth, as the paper's
dashed lines) gives the number of *modes*: local maxima of the density at least ``MODE_THRESHOLD`` times
its highest one. ``statistics.csv`` has, per distribution and iteration, the share of the weights with two
modes or more and the median std over the weights. The figure shows, at the ``--snapshots`` iterations,
histograms and density estimates of the weights ``--weights`` names (by default ``PLOTTED_WEIGHTS``
indices drawn at random with ``WEIGHT_CHOICE_SEED``, as the paper shows 3 randomly selected weights).

Run ``python -m benchmarks.weights --help`` for the options; ``--from docs/benchmarks/weights`` rebuilds the
figure, ``summary.json`` and the README's generated blocks from the saved ``statistics.csv`` and ``samples.npz``
without training.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from scipy.ndimage import gaussian_filter1d
from stable_baselines3.common.env_util import make_vec_env

import sb3_cemah  # noqa: F401  (registers the maze)
from benchmarks import common
from benchmarks.common import CEM_ENV_SETTINGS, Stopwatch, markdown_table
from sb3_cemah import CEM, CEMAH
from sb3_cemah.cemah.policies import CEMAHPolicy
from sb3_cemah.common.policy_network import FlatPolicyNetwork

TITLE = "Weight distributions of CEM and CEM-AH on the maze (the paper's Figure 4)"
ENV_ID = "sb3_cemah/Maze-v0"
# Distributions drawn from: (label, algorithm, which distribution of the trained model).
DISTRIBUTIONS = (
    ("CEM", "CEM", "gaussian"),
    ("CEM-AH", "CEMAH", "hypernetwork"),
    ("CEM-AH's guide", "CEMAH", "gaussian"),
)
# The figure compares the first two; the guide is CEM itself when the seeds agree (see summary.json).
PLOTTED_DISTRIBUTIONS = ("CEM", "CEM-AH")
COLORS = {"CEM": "tab:orange", "CEM-AH": "tab:red"}
PLOTTED_WEIGHTS = 3
WEIGHT_CHOICE_SEED = 0
# A local maximum of the density counts as a mode when it is at least this share of the highest one: smaller
# bumps are what a KDE of 1000 Gaussian samples shows in its tails.
MODE_THRESHOLD = 0.1
GRID_POINTS = 256
# Draws are seeded from the run's seed, this offset and the iteration, apart from the training's streams.
DRAW_SEED_OFFSET = 10_000


def kde(samples: np.ndarray, grid_points: int = GRID_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """
    Gaussian kernel density estimate of 1-D samples with Scott's bandwidth (``std * n ** -0.2``, scipy's
    default), on a regular grid over the samples' range widened by 3 bandwidths each side. The samples are
    binned on the grid and the histogram smoothed with the kernel: one pass per weight, where evaluating
    every kernel at every grid point would cost ``n_samples * grid_points``.

    :param samples: Shape ``(n_samples,)``.
    :param grid_points: Points of the grid.
    :return: The grid and the density on it; samples that are all equal give one point of density 1.
    """
    samples = np.asarray(samples, dtype=np.float64)
    std = float(samples.std(ddof=1)) if samples.size > 1 else 0.0
    if std <= 1e-9 * max(1.0, float(np.abs(samples).max())):
        return np.array([samples.mean()]), np.ones(1)
    bandwidth = std * samples.size**-0.2
    grid = np.linspace(samples.min() - 3 * bandwidth, samples.max() + 3 * bandwidth, grid_points)
    step = grid[1] - grid[0]
    counts, _ = np.histogram(samples, bins=grid_points, range=(grid[0] - step / 2, grid[-1] + step / 2))
    density = gaussian_filter1d(counts.astype(np.float64), sigma=bandwidth / step, mode="constant")
    return grid, density / (samples.size * step)


def count_modes(density: np.ndarray, threshold: float = MODE_THRESHOLD) -> int:
    """Local maxima of a density on a grid that reach ``threshold`` times its highest value."""
    padded = np.concatenate([[0.0], density, [0.0]])
    # ">" on the left, ">=" on the right: a flat top counts once.
    peaks = (padded[1:-1] > padded[:-2]) & (padded[1:-1] >= padded[2:]) & (padded[1:-1] >= threshold * density.max())
    return int(peaks.sum())


def weight_modes(draws: np.ndarray) -> np.ndarray:
    """The number of modes of every weight, ``draws`` of shape ``(n_samples, n_params)``."""
    return np.array([count_modes(kde(draws[:, index])[1]) for index in range(draws.shape[1])])


def repeated_share(draws: np.ndarray) -> float:
    """Share of the samples (rows of ``draws``) equal to another sample: the mass of the distribution's point masses."""
    _, inverse, counts = np.unique(draws, axis=0, return_inverse=True, return_counts=True)
    return float(np.mean(counts[inverse.ravel()] > 1))


def weight_label(network: FlatPolicyNetwork, index: int) -> str:
    """Where a flat weight sits in the policy network: ``W1[input, output]`` or ``b1[output]``."""
    start = 0
    for layer, (n_in, n_out) in enumerate(network.layer_shapes, start=1):
        if index < start + n_in * n_out:
            row, col = divmod(index - start, n_out)
            return f"W{layer}[{row}, {col}]"
        start += n_in * n_out
        if index < start + n_out:
            return f"b{layer}[{index - start}]"
        start += n_out
    raise IndexError(f"weight {index} is outside the network's {network.n_params} weights")


def draw(model: CEM, distribution: str, n_samples: int, seed: int) -> np.ndarray:
    """``n_samples`` flat weight vectors from the model's Gaussian or hypernetwork, without touching its RNG."""
    policy = model.policy
    with th.random.fork_rng(), th.no_grad():
        th.manual_seed(seed)
        if distribution == "hypernetwork":
            assert isinstance(policy, CEMAHPolicy)
            weights = policy.generate_weights(n_samples)
        else:
            weights = policy.sample_weights(n_samples)
    return weights.cpu().numpy()


def train_and_draw(algorithm_class: type[CEM], args: argparse.Namespace) -> dict[str, Any]:
    """
    Train one algorithm for ``args.iterations`` iterations; draw from its distributions before and after each.

    :return: ``statistics`` (one row per distribution and iteration), ``snapshots`` (the draws of the plotted
        weights at the snapshot iterations, by distribution and iteration), ``means`` (the Gaussian's mean per
        iteration) and ``cpu_s`` (training CPU seconds).
    """
    name = algorithm_class.__name__
    env = make_vec_env(ENV_ID, n_envs=args.n_envs, seed=args.seed)
    model = algorithm_class("MlpPolicy", env, population_size=args.population_size, seed=args.seed, **CEM_ENV_SETTINGS[ENV_ID])
    rows: list[dict[str, Any]] = []
    snapshots: dict[tuple[str, int], np.ndarray] = {}
    means: list[np.ndarray] = []
    cpu_s = 0.0
    for iteration in range(args.iterations + 1):
        if iteration > 0:
            with Stopwatch() as watch:
                model.learn(1, reset_num_timesteps=False)
            cpu_s += watch.cpu
        # After learn(1) the buffer (the last 100 episodes) holds the population just evaluated; none before.
        returns = [info["r"] for info in model.ep_info_buffer or []] or [float("nan")]
        means.append(model.policy.mean.cpu().numpy().copy())
        for label, row_algorithm, distribution in DISTRIBUTIONS:
            if row_algorithm != name:
                continue
            draws = draw(model, distribution, args.samples, args.seed + DRAW_SEED_OFFSET + iteration)
            modes = weight_modes(draws)
            rows.append(
                {
                    "distribution": label,
                    "iteration": iteration,
                    "episodes": model._episode_num,
                    "env_steps": model.num_timesteps,
                    "population_return_mean": float(np.mean(returns)),
                    "share_multimodal": float(np.mean(modes >= 2)),
                    "mean_modes": float(modes.mean()),
                    "max_modes": int(modes.max()),
                    "median_std": float(np.median(draws.std(axis=0))),
                    # Scale-free: the two distributions' weights differ in magnitude, not only in spread.
                    "relative_spread": float(np.median(draws.std(axis=0)) / np.sqrt(np.mean(draws.mean(axis=0) ** 2))),
                    "plotted_modes": " ".join(str(modes[index]) for index in args.weights),
                }
            )
            if iteration in args.snapshots:
                snapshots[(label, iteration)] = draws[:, args.weights]
        print(f"{name} iteration {iteration}: {model.num_timesteps} env steps, {cpu_s:.0f} CPU s", flush=True)
    env.close()
    return {"statistics": rows, "snapshots": snapshots, "means": means, "cpu_s": cpu_s, "network": model.policy.network}


def plot(snapshots: dict[tuple[str, int], np.ndarray], args: argparse.Namespace, labels: list[str], path: Path) -> None:
    """
    One column per plotted weight; per snapshot iteration, a CEM row above a CEM-AH row: histogram and density
    estimate. Every panel has its own axes (the two spreads differ by orders of magnitude, and a shared axis would
    show the narrower one as a line); the std in each panel gives the scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(args.snapshots) * len(PLOTTED_DISTRIBUTIONS), len(args.weights)
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 1.7 * n_rows + 0.8), squeeze=False)
    for snapshot_index, iteration in enumerate(args.snapshots):
        for col in range(n_cols):
            for offset, label in enumerate(PLOTTED_DISTRIBUTIONS):
                ax = axes[snapshot_index * len(PLOTTED_DISTRIBUTIONS) + offset][col]
                samples = snapshots[(label, iteration)][:, col]
                grid, density = kde(samples)
                color = COLORS[label]
                if len(grid) == 1:
                    ax.axvline(grid[0], color=color)
                else:
                    ax.hist(samples, bins=40, range=(grid[0], grid[-1]), density=True, color=color, alpha=0.45)
                    ax.plot(grid, density, "--", color="black", linewidth=1.0)
                ax.text(
                    0.02,
                    0.95,
                    f"{count_modes(density)} mode(s), std {samples.std():.3f}",
                    transform=ax.transAxes,
                    fontsize=7.5,
                    va="top",
                )
                ax.tick_params(labelsize=7)
                ax.set_yticks([])
                if col == 0:
                    ax.set_ylabel(f"{label}\nit. {iteration}", fontsize=9)
                if snapshot_index == 0 and offset == 0:
                    ax.set_title(f"weight {labels[col]}", fontsize=10)
    figure.suptitle(
        f"Maze: {args.samples} samples of single policy weights from CEM's Gaussian and CEM-AH's hypernetwork after "
        f"iterations {args.snapshots}\n({args.population_size} episodes per iteration; seed {args.seed}; dashed: kernel "
        f"density estimate, Scott's bandwidth; a mode is a peak >= {MODE_THRESHOLD:.0%} of the highest)",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def describe(
    statistics: list[dict[str, Any]],
    snapshots: dict[tuple[str, int], np.ndarray],
    args: argparse.Namespace,
    guide_difference: float,
) -> str:
    """Sentences computed from the statistics and the plotted samples: spread, multi-modality, point masses."""
    lines = []
    for label in PLOTTED_DISTRIBUTIONS:
        rows = {row["iteration"]: row for row in statistics if row["distribution"] == label}
        parts = [
            f"after iteration {iteration}: {100 * rows[iteration]['share_multimodal']:.1f} % of the weights multi-modal, "
            f"median std {rows[iteration]['median_std']:.3f} ({rows[iteration]['relative_spread']:.2f} of the RMS mean weight)"
            for iteration in (1, *args.snapshots[-1:])
            if iteration in rows
        ]
        peak = max(rows.values(), key=lambda row: row["share_multimodal"])
        parts.append(f"most multi-modal after iteration {peak['iteration']} ({100 * peak['share_multimodal']:.1f} %)")
        lines.append(f"- **{label}**: " + "; ".join(parts) + ".")
    repeated = {
        label: [repeated_share(snapshots[(label, iteration)]) for iteration in args.snapshots]
        for label in PLOTTED_DISTRIBUTIONS
    }
    lines.append(
        f"- Samples equal to another sample in all {len(args.weights)} plotted weights (a point mass: noise vectors the "
        f"hypernetwork maps to one policy) after iterations {args.snapshots}: "
        + "; ".join(f"{label} {', '.join(f'{100 * share:.1f} %' for share in shares)}" for label, shares in repeated.items())
        + "."
    )
    same = "the same" if guide_difference == 0.0 else f"not the same (largest difference of the means {guide_difference:.3g})"
    lines.append(
        f"- CEM's Gaussian and CEM-AH's guiding Gaussian are {same} at every iteration: the two runs share their "
        "populations, and the rows differ by the hypernetwork only."
    )
    return "\n".join(lines)


def readme_blocks(
    args: argparse.Namespace,
    statistics: list[dict[str, Any]],
    snapshots: dict[tuple[str, int], np.ndarray],
    summary: dict[str, Any],
) -> dict[str, str]:
    """The README's generated blocks: set-up (the run's settings), what it shows (computed), statistics per iteration."""
    headers = [
        "distribution",
        "after iteration",
        "episodes",
        "population mean return",
        "weights multi-modal",
        "mean modes per weight",
        "median std",
        "median std / RMS mean weight",
        "modes of the plotted weights",
    ]
    rows = [
        [
            row["distribution"],
            row["iteration"],
            row["episodes"],
            f"{row['population_return_mean']:.1f}",
            f"{100 * row['share_multimodal']:.1f} %",
            f"{row['mean_modes']:.2f}",
            f"{row['median_std']:.3f}",
            f"{row['relative_spread']:.2f}",
            row["plotted_modes"],
        ]
        for row in statistics
        if row["distribution"] in PLOTTED_DISTRIBUTIONS
    ]
    choice = (
        f"drawn at random (numpy seed {WEIGHT_CHOICE_SEED}) among the {summary['n_params']}"
        if args.weights_chosen_at_random
        else f"given with `--weights` among the {summary['n_params']}"
    )
    population = args.population_size
    setup = f"""- `CEM` and `CEMAH` on `{ENV_ID}`, seed {args.seed}, {args.iterations} iterations each of {population}
  candidates (one episode each), {args.n_envs} `DummyVecEnv` slots; the maze's settings of `hyperparams/cem.yml`
  and `cemah.yml` (`{summary["env_settings"]}`), CEM-AH's other hyper-parameters at their defaults. Training CPU
  time: CEM {summary["cpu_s"]["CEM"]:.0f} s, CEM-AH {summary["cpu_s"]["CEMAH"]:.0f} s.
- Before the first iteration (iteration 0) and after each, {args.samples} weight vectors of the linear policy
  ({summary["n_params"]} weights: `W1[input, action]` on the 243 standardised observation values, then `b1[action]`)
  are drawn from CEM's Gaussian and from CEM-AH's hypernetwork (the paper draws 100; more give steadier density
  estimates).
- Plotted weights: {", ".join(f"`{label}`" for label in summary["weight_labels"])} (flat indices {args.weights}),
  {choice}. Input `i` of the maze is cell `(x, y) = divmod(i // 3, 9)`, channel `i % 3` (object type, colour,
  direction); actions 0 left, 1 right, 2 forward.
- Modes: local maxima of a Gaussian kernel density estimate (Scott's bandwidth) at least {summary["mode_threshold"]:.0%} of the
  highest. Scott's bandwidth smooths multi-modal samples more than unimodal ones, so the count errs towards one mode.
  A *multi-modal* weight has two modes or more; CEM's Gaussian has one by construction, so its share is the count's
  false-positive rate."""
    return {
        "setup": setup,
        "findings": describe(statistics, snapshots, args, summary["guide_max_mean_difference"]),
        "statistics": markdown_table(headers, rows),
    }


def load_samples(path: Path) -> dict[tuple[str, int], np.ndarray]:
    """The draws of the plotted weights saved by an earlier run (``samples.npz``), by distribution and iteration."""
    with np.load(path) as saved:
        return {(key.rsplit("/", 1)[0], int(key.rsplit("/", 1)[1])): saved[key] for key in saved.files if key != "weights"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = common.parser(
        "weights", "The paper's Figure 4: samples of single policy weights from CEM's Gaussian and CEM-AH's hypernetwork."
    )
    parser.add_argument("--iterations", type=int, default=20, help="iterations of each algorithm (20: 2000 episodes)")
    parser.add_argument("--snapshots", type=int, nargs="+", default=[1, 5, 20], help="iterations shown in the figure")
    parser.add_argument("--weights", type=int, nargs="+", default=None, help="flat indices of the weights to plot")
    parser.add_argument("--samples", type=int, default=1000, help="weight vectors drawn from each distribution")
    parser.add_argument("--population-size", type=int, default=100, help="candidates per iteration (the yml's)")
    parser.add_argument("--n-envs", type=int, default=8, help="DummyVecEnv slots (the yml's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 iterations of 16 candidates, 200 samples")
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations, args.snapshots, args.population_size, args.samples = 2, [1, 2], 16, 200
    args.snapshots = sorted(set(args.snapshots))
    if args.snapshots[-1] > args.iterations:
        parser.error(f"--snapshots go up to {args.snapshots[-1]}, past --iterations {args.iterations}")
    args.weights_chosen_at_random = args.weights is None
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # With --from, the earlier run's settings (weights, snapshots, ...) replace the options.
    run = common.Run.start("weights", args, cemah_training_defaults=common.cemah_training_defaults())
    if args.from_dir is not None:
        statistics = run.rows("statistics.csv")
        snapshots = load_samples(args.from_dir / "samples.npz")
        recorded = run.recorded
        settings, n_params, labels = recorded["env_settings"], recorded["n_params"], recorded["weight_labels"]
        cpu_s, mode_threshold = recorded["cpu_s"], recorded["mode_threshold"]
        guide_difference = recorded["guide_max_mean_difference"]
    else:
        settings, mode_threshold = CEM_ENV_SETTINGS[ENV_ID], MODE_THRESHOLD
        n_params = CEM("MlpPolicy", ENV_ID, **settings).policy.network.n_params
        if args.weights is None:
            rng = np.random.default_rng(WEIGHT_CHOICE_SEED)
            args.weights = sorted(rng.choice(n_params, PLOTTED_WEIGHTS, replace=False).tolist())
        runs = {algorithm.__name__: train_and_draw(algorithm, args) for algorithm in (CEM, CEMAH)}
        statistics = [row for run_ in runs.values() for row in run_["statistics"]]
        snapshots = {key: value for run_ in runs.values() for key, value in run_["snapshots"].items()}
        guide_difference = float(
            max(np.abs(cem - guide).max() for cem, guide in zip(runs["CEM"]["means"], runs["CEMAH"]["means"], strict=True))
        )
        labels = [weight_label(runs["CEM"]["network"], index) for index in args.weights]
        cpu_s = {name: run_["cpu_s"] for name, run_ in runs.items()}

    plot(snapshots, args, labels, args.output / "weights.png")
    if args.from_dir is None or args.from_dir.resolve() != args.output.resolve():
        arrays: dict[str, Any] = {
            f"{label}/{iteration}": draws.astype(np.float32) for (label, iteration), draws in snapshots.items()
        }
        np.savez_compressed(args.output / "samples.npz", **arrays, weights=np.array(args.weights))
    summary = {
        "env_settings": settings,
        "n_params": n_params,
        "weight_labels": labels,
        "mode_threshold": mode_threshold,
        "cpu_s": cpu_s,
        # 0 when CEM-AH's guide is exactly CEM (same seed, same populations).
        "guide_max_mean_difference": guide_difference,
        "statistics": statistics,
    }
    run.save("statistics.csv", statistics, summary)
    print(run.report(TITLE, readme_blocks(args, statistics, snapshots, summary)).read_text())


if __name__ == "__main__":
    main()
