"""
Wall-clock cost of CEM-AH relative to CEM per training episode (the paper's Table 1 reports
4.8x on the maze and 144x on reacher).

For each env, one VecEnv (``make_vec_env``, ``n_envs`` DummyVecEnv slots) is shared by a ``CEM`` and a
``CEMAH`` built with the same population, seed and default hyper-parameters (plus the env's own policy
settings, the same for both). Their iterations alternate (``learn(1, reset_num_timesteps=False)`` runs
exactly one population), the order flipping every iteration, so that load from other jobs on a shared
machine hits both alike. Each iteration's wall-clock time is measured around ``learn``; CEM-AH's phases
come from its logger keys (``time/rollout_seconds``, ``time/pretrain_seconds``,
``time/adversarial_seconds``), read back from the SB3 CSV logger. A warm-up iteration of each is run
first and left out.

Seconds per training episode = iteration time / (``population_size * n_eval_episodes``): every candidate
of the guiding CEM plays one episode, and CEM-AH plays no other episode during training.

Run ``python -m benchmarks.cemah_overhead --help`` for the options.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecEnv

from benchmarks import common
from benchmarks.common import CEM_ENV_SETTINGS, Stopwatch, spread
from sb3_cemah import CEM, CEMAH

GOAL_RATIO = 1.5
# The paper's Table 1 (seconds per training episode, V100 + Xeon Gold 6148).
PAPER_SECONDS_PER_EPISODE = {"maze": {"CEM": 0.84, "CEMAH": 4.03}, "reacher": {"CEM": 0.03, "CEMAH": 4.32}}
SHORT_NAMES = {"sb3_cemah/Maze-v0": "maze", "ReacherBulletEnv-v0": "reacher"}
PHASES = ("rollout", "pretrain", "adversarial")
# Timed iterations per algorithm: a maze iteration (~1000 steps per stochastic candidate, 1e5 steps) costs
# several reacher ones (15 600 steps); these keep the default run within ~15 minutes on an idle 2-core machine.
DEFAULT_ITERATIONS = {"ReacherBulletEnv-v0": 10, "sb3_cemah/Maze-v0": 6}
FALLBACK_ITERATIONS = 6


@dataclass
class Iteration:
    """One timed iteration of one algorithm."""

    env: str
    algorithm: str
    iteration: int
    seconds: float
    cpu_seconds: float
    env_steps: int
    episodes: int
    rollout_s: float = float("nan")
    pretrain_s: float = float("nan")
    adversarial_s: float = float("nan")
    ep_len_mean: float = float("nan")

    @property
    def other_s(self) -> float:
        """Time outside the logged phases: the CEM refit, elite admission, diagnostics, logging."""
        phases = [self.rollout_s, self.pretrain_s if self.algorithm == "CEMAH" else 0.0]
        phases.append(self.adversarial_s if self.algorithm == "CEMAH" else 0.0)
        return self.seconds - sum(phases)


def n_iterations(env_id: str, args: argparse.Namespace) -> int:
    """Timed iterations of each algorithm on ``env_id``: ``--iterations`` or the env's default."""
    return args.iterations if args.iterations is not None else DEFAULT_ITERATIONS.get(env_id, FALLBACK_ITERATIONS)


def make_models(env_id: str, env: VecEnv, args: argparse.Namespace, log_folder: pathlib.Path) -> dict[str, CEM]:
    """CEM and CEMAH on the same VecEnv, each logging to its own CSV file."""
    models: dict[str, CEM] = {}
    for algorithm_class in (CEM, CEMAH):
        name = algorithm_class.__name__
        model = algorithm_class(
            "MlpPolicy", env, population_size=args.population_size, seed=args.seed, **CEM_ENV_SETTINGS.get(env_id, {})
        )
        model.set_logger(configure(str(log_folder / name), ["csv"]))
        models[name] = model
    return models


def time_iteration(model: CEM) -> tuple[float, float, int]:
    """Wall-clock and CPU seconds and env steps of one iteration (``learn(1)`` runs exactly one population)."""
    steps_before = model.num_timesteps
    with Stopwatch() as watch:
        model.learn(1, reset_num_timesteps=False)
    return watch.wall, watch.cpu, model.num_timesteps - steps_before


def read_logged_phases(csv_path: pathlib.Path) -> list[dict[str, float]]:
    """The rows of an SB3 ``progress.csv`` (one per iteration) as floats; missing cells are NaN."""
    with csv_path.open() as file:
        return [{key: float(value) if value else float("nan") for key, value in row.items()} for row in csv.DictReader(file)]


def benchmark_env(env_id: str, args: argparse.Namespace) -> list[Iteration]:
    """Alternate the two algorithms' iterations on one env and return the timed ones with their phases."""
    env = common.make_quiet_vec_env(env_id, args.n_envs, args.seed)
    log_folder = args.output / "logs" / SHORT_NAMES.get(env_id, env_id.replace("/", "_"))
    models = make_models(env_id, env, args, log_folder)
    episodes = args.population_size * models["CEM"].n_eval_episodes
    for model in models.values():  # warm-up, left out
        model.learn(1, reset_num_timesteps=False)

    iterations: list[Iteration] = []
    for index in range(n_iterations(env_id, args)):
        order = ("CEM", "CEMAH") if index % 2 == 0 else ("CEMAH", "CEM")
        for name in order:
            seconds, cpu_seconds, steps = time_iteration(models[name])
            iterations.append(Iteration(env_id, name, index, seconds, cpu_seconds, steps, episodes))
            print(
                f"{env_id} {name:>5} iteration {index}: {seconds:.2f} s wall, {cpu_seconds:.2f} s CPU, {steps} steps",
                flush=True,
            )
    env.close()

    for name in models:
        logged = read_logged_phases(log_folder / name / "progress.csv")[1:]  # row 0 is the warm-up
        for record, row in zip((it for it in iterations if it.algorithm == name), logged, strict=True):
            record.rollout_s = row.get("time/rollout_seconds", float("nan"))
            record.pretrain_s = row.get("time/pretrain_seconds", float("nan"))
            record.adversarial_s = row.get("time/adversarial_seconds", float("nan"))
            record.ep_len_mean = row.get("rollout/ep_len_mean", float("nan"))
    return iterations


def _clock_seconds(iteration: Iteration, clock: str) -> float:
    return iteration.cpu_seconds if clock == "cpu" else iteration.seconds


def summarise_env(iterations: list[Iteration]) -> dict[str, Any]:
    """
    Per clock (``cpu``, ``wall``): seconds per episode, CEMAH/CEM ratios paired by iteration, of the totals and
    per env step; and CEM-AH's phase seconds (wall-clock, as logged) with their shares of its wall time.
    """
    by_algorithm = {name: [it for it in iterations if it.algorithm == name] for name in ("CEM", "CEMAH")}
    summary: dict[str, Any] = {}
    for clock in ("cpu", "wall"):
        per_episode = {name: [_clock_seconds(it, clock) / it.episodes for it in its] for name, its in by_algorithm.items()}
        per_step = {name: [_clock_seconds(it, clock) / it.env_steps for it in its] for name, its in by_algorithm.items()}
        totals = {name: sum(_clock_seconds(it, clock) for it in its) for name, its in by_algorithm.items()}
        paired = [ah / cem for cem, ah in zip(per_episode["CEM"], per_episode["CEMAH"], strict=True)]
        summary[clock] = {
            "seconds_per_episode": {name: spread(values) for name, values in per_episode.items()},
            "seconds_per_episode_mean_std": {n: (float(np.mean(v)), float(np.std(v))) for n, v in per_episode.items()},
            "ratio_paired": paired,
            "ratio_of_totals": totals["CEMAH"] / totals["CEM"],
            "ratio_per_env_step_paired": [ah / cem for cem, ah in zip(per_step["CEM"], per_step["CEMAH"], strict=True)],
        }
    cemah = by_algorithm["CEMAH"]
    wall_total = sum(it.seconds for it in cemah)
    phase_seconds = {phase: [getattr(it, f"{phase}_s") for it in cemah] for phase in PHASES}
    phase_seconds["other"] = [it.other_s for it in cemah]
    cem = by_algorithm["CEM"]
    summary.update(
        {
            "env_steps_per_iteration": {name: spread([it.env_steps for it in its]) for name, its in by_algorithm.items()},
            "ep_len_mean": {name: spread([it.ep_len_mean for it in its]) for name, its in by_algorithm.items()},
            "cem_rollout_share": sum(it.rollout_s for it in cem) / sum(it.seconds for it in cem),
            "cemah_phase_seconds": {phase: spread(values) for phase, values in phase_seconds.items()},
            "cemah_phase_share": {phase: float(np.sum(values) / wall_total) for phase, values in phase_seconds.items()},
        }
    )
    return summary


def tables(summaries: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The README's generated blocks: CEM-AH / CEM per env, and CEM-AH's phases."""
    rows = []
    for env_id, summary in summaries.items():
        paper = PAPER_SECONDS_PER_EPISODE.get(SHORT_NAMES.get(env_id, env_id))
        cpu, wall = summary["cpu"], summary["wall"]
        cem_mean, cem_std = cpu["seconds_per_episode_mean_std"]["CEM"]
        ah_mean, ah_std = cpu["seconds_per_episode_mean_std"]["CEMAH"]
        rows.append(
            [
                env_id,
                f"{1000 * cem_mean:.1f} ± {1000 * cem_std:.1f}",
                f"{1000 * ah_mean:.1f} ± {1000 * ah_std:.1f}",
                common.format_spread(cpu["ratio_paired"]),
                common.format_spread(wall["ratio_paired"]),
                f"{cpu['ratio_of_totals']:.2f} / {wall['ratio_of_totals']:.2f}",
                common.format_spread(cpu["ratio_per_env_step_paired"]),
                f"{paper['CEMAH'] / paper['CEM']:.1f}" if paper else "n/a",
                "yes" if np.median(cpu["ratio_paired"]) <= GOAL_RATIO else "no",
            ]
        )
    headers = [
        "env",
        "CEM CPU ms/episode",
        "CEM-AH CPU ms/episode",
        "CEM-AH / CEM, CPU (paired)",
        "wall (paired)",
        "totals CPU / wall",
        "CPU per env step (paired)",
        "paper",
        f"CPU median <= {GOAL_RATIO}",
    ]
    phase_rows = [
        [env_id]
        + [
            f"{summary['cemah_phase_seconds'][phase]['median']:.3f} ({100 * summary['cemah_phase_share'][phase]:.1f} %)"
            for phase in (*PHASES, "other")
        ]
        + [f"{100 * summary['cem_rollout_share']:.1f} %"]
        for env_id, summary in summaries.items()
    ]
    phase_headers = ["env", "rollout", "pretrain (MSE)", "adversarial", "other", "CEM: rollout share"]
    return {"ratios": common.markdown_table(headers, rows), "phases": common.markdown_table(phase_headers, phase_rows)}


def main(argv: list[str] | None = None) -> None:
    parser = common.parser(
        "cemah_overhead",
        "Seconds per training episode of CEMAH vs CEM (same env, VecEnv, population; alternating iterations).",
    )
    parser.add_argument("--envs", nargs="+", default=["ReacherBulletEnv-v0", "sb3_cemah/Maze-v0"], help="gymnasium ids")
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help=f"timed iterations per algorithm and env (default: {DEFAULT_ITERATIONS}, others {FALLBACK_ITERATIONS})",
    )
    parser.add_argument("--n-envs", type=int, default=8, help="DummyVecEnv slots")
    parser.add_argument("--population-size", type=int, default=100, help="candidates per iteration (the default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 iterations, population 16")
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations = 2 if args.iterations is None else args.iterations
        args.population_size = 16
    run = common.Run.start("cemah_overhead", args, cemah_training_defaults=common.cemah_training_defaults())
    if args.from_dir is not None:
        fields = set(Iteration.__dataclass_fields__)
        iterations = [Iteration(**{k: v for k, v in row.items() if k in fields}) for row in run.rows("iterations.csv")]
    else:
        iterations = [iteration for env_id in args.envs for iteration in benchmark_env(env_id, args)]
    summaries = {env_id: summarise_env([it for it in iterations if it.env == env_id]) for env_id in args.envs}
    run.save("iterations.csv", [{**asdict(it), "other_s": it.other_s} for it in iterations], {"envs": summaries})
    run.report("CEM-AH overhead over CEM per training episode (the paper's Table 1)", tables(summaries))


if __name__ == "__main__":
    main()
