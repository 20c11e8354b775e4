"""
Aggregate statistics of a suite across envs and seeds, with rliable (Agarwal et al., 2021, "Deep RL at the edge
of the statistical precipice"): IQM of normalised scores with stratified-bootstrap confidence intervals,
probability of improvement of CEM-AH over each other method, performance profiles; and, per env, whether
CEM-AH beats, ties or loses to each method by a bootstrap interval of the difference of their mean returns.

A run's score is its final test return normalised per env, ``(return - random) / (reference - random)``: 0 is
the random policy (``random_baseline.json``), 1 the env's ``score_reference`` (:mod:`benchmarks.suite.protocol`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

#: Coverage of every interval.
CONFIDENCE = 0.95
#: Bootstrap replications; the seed makes the report reproducible from the same runs.
REPS = 5_000
BOOTSTRAP_SEED = 0
#: Thresholds of the performance profiles (normalised score).
TAUS = np.linspace(-0.25, 1.25, 61)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval."""

    value: float
    low: float
    high: float

    def text(self, digits: int = 2) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def normalise(returns: Sequence[float], random: float, reference: float) -> np.ndarray:
    """Scores with the random policy at 0 and the reference return at 1."""
    return (np.asarray(returns, dtype=float) - random) / (reference - random)


def score_matrices(scores: Mapping[str, Mapping[str, Sequence[float]]], envs: Sequence[str]) -> dict[str, np.ndarray]:
    """
    rliable's input, ``algo -> (n_runs, n_envs)``, for the algorithms with at least two runs on every env.

    A stratified bootstrap resamples the runs within each env: with one run per env it has nothing to resample and
    its interval would have zero width, so single-seed algorithms are left out. An algorithm with more runs on some
    envs than on others keeps as many runs per env as its fewest (the first ones).

    :param scores: algo -> env -> normalised scores of its runs.
    """
    matrices = {}
    for algo, per_env in scores.items():
        n_runs = min((len(per_env.get(env, ())) for env in envs), default=0)
        if n_runs >= 2:
            matrices[algo] = np.stack([np.asarray(per_env[env][:n_runs]) for env in envs], axis=1)
    return matrices


def stratified_bootstrap(func: Callable[..., float | np.ndarray], *matrices: np.ndarray) -> np.ndarray:
    """
    ``func(*matrices)`` (a number or an array) and the bounds of its percentile interval, stacked ``(3, ...)``, from
    a stratified bootstrap: each replication resamples, for each matrix on its own, the runs within every env
    (column) with replacement.

    rliable's own ``get_interval_estimates`` goes through ``arch``'s bootstrap, which fails here with either arch
    release tried (arch 8.0 refuses rliable 1.2's ``random_state``; arch 7.2 does not import with pandas 3.1): the
    resampling is therefore done here, the statistics are rliable's.
    """
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    columns = [np.arange(matrix.shape[1]) for matrix in matrices]
    replications = np.array(
        [
            func(*(m[rng.integers(m.shape[0], size=m.shape), cols] for m, cols in zip(matrices, columns, strict=True)))
            for _ in range(REPS)
        ]
    )
    tail = 100 * (1 - CONFIDENCE) / 2
    return np.stack([np.asarray(func(*matrices)), *np.percentile(replications, [tail, 100 - tail], axis=0)])


def _estimate(func: Callable[..., float], *matrices: np.ndarray) -> Estimate:
    return Estimate(*(float(bound) for bound in stratified_bootstrap(func, *matrices)))


def iqm(matrices: Mapping[str, np.ndarray]) -> dict[str, Estimate]:
    """Interquartile mean of all runs' scores (pooled over envs), stratified-bootstrap interval."""
    from rliable import metrics

    return {algo: _estimate(metrics.aggregate_iqm, matrix) for algo, matrix in matrices.items()}


def probability_of_improvement(matrices: Mapping[str, np.ndarray], algo: str) -> dict[str, Estimate]:
    """P(``algo``'s run scores above the other's on an env), averaged over envs, for every other algorithm."""
    from rliable import metrics

    return {
        other: _estimate(metrics.probability_of_improvement, matrices[algo], matrix)
        for other, matrix in matrices.items()
        if other != algo
    }


def profile(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Performance profile (fraction of runs scoring above each of ``TAUS``) and its pointwise intervals, (2, n)."""
    bounds = stratified_bootstrap(lambda x: np.mean(x[..., None] > TAUS, axis=(0, 1)), matrix)
    return bounds[0], bounds[1:]


def difference(x: Sequence[float], y: Sequence[float]) -> Estimate | None:
    """
    ``mean(x) - mean(y)`` with a percentile-bootstrap interval, each sample's seeds resampled on their own; None
    when either has fewer than two values (no interval).
    """
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x_arr) < 2 or len(y_arr) < 2:
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    x_means = x_arr[rng.integers(len(x_arr), size=(REPS, len(x_arr)))].mean(axis=1)
    y_means = y_arr[rng.integers(len(y_arr), size=(REPS, len(y_arr)))].mean(axis=1)
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(x_means - y_means, [tail, 100 - tail])
    return Estimate(float(x_arr.mean() - y_arr.mean()), float(low), float(high))


def verdict(estimate: Estimate | None) -> str:
    """``beats`` / ``loses to`` when the interval of the difference excludes 0, else ``ties``."""
    if estimate is None:
        return "no verdict (1 seed)"
    if estimate.low > 0:
        return "beats"
    if estimate.high < 0:
        return "loses to"
    return "ties"


def plot(matrices: Mapping[str, np.ndarray], algo: str, names: Mapping[str, str], out_prefix: Path) -> list[Path]:
    """
    Write ``<prefix>_iqm.png`` (IQM with intervals), ``<prefix>_improvement.png`` (P(``algo`` > other)) and
    ``<prefix>_profiles.png`` (performance profiles: fraction of runs above each normalised score, with intervals).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = []

    estimates = iqm(matrices)
    points = {names[key]: np.array([e.value]) for key, e in estimates.items()}
    intervals = {names[key]: np.array([[e.low], [e.high]]) for key, e in estimates.items()}
    fig, _ = plot_utils.plot_interval_estimates(
        points, intervals, metric_names=["IQM"], algorithms=list(points), subfigure_width=5, xlabel_y_coordinate=-0.45
    )
    paths.append(_save(fig, out_prefix, "iqm"))

    improvement = probability_of_improvement(matrices, algo)
    if improvement:
        pairs = {f"{names[algo]},{names[other]}": e for other, e in improvement.items()}
        axis = plot_utils.plot_probability_of_improvement(
            {pair: e.value for pair, e in pairs.items()}, {pair: np.array([e.low, e.high]) for pair, e in pairs.items()}
        )
        paths.append(_save(axis.figure, out_prefix, "improvement"))

    profiles = {names[key]: profile(matrix) for key, matrix in matrices.items()}
    fig, axis = plt.subplots(figsize=(7, 4.5))
    curves, bands = {name: p[0] for name, p in profiles.items()}, {name: p[1] for name, p in profiles.items()}
    plot_utils.plot_performance_profiles(curves, TAUS, performance_profile_cis=bands, ax=axis)
    axis.legend(loc="upper right")
    paths.append(_save(fig, out_prefix, "profiles"))
    plt.close("all")
    return paths


def _save(fig: object, out_prefix: Path, name: str) -> Path:
    path = out_prefix.with_name(f"{out_prefix.name}_{name}.png")
    fig.savefig(path, dpi=90, bbox_inches="tight")  # type: ignore[attr-defined]
    return path
