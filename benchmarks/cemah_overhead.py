"""
Wall-clock cost of CEM-AH relative to CEM per training episode (the paper's Table 1 reports
4.8x on the maze and 144x on reacher).

For each env, one VecEnv (``make_vec_env``, ``n_envs`` DummyVecEnv slots) is shared by three models built
with the same population, seed and default hyper-parameters (plus the env's own policy settings, the same
for all): ``CEM``, ``CEMAH`` (its imitation runs in a process of its own beside the next population), and
``CEMAH_in_turn``, the ablation with the imitation between the populations (the same result). They take
turns in chunks: each chunk is one ``learn`` call of ``--iterations-per-chunk + 2`` populations, as a user
runs them; the time from one population's start to the next is an iteration's time, and the chunk's first
iteration (no imitation runs beside it yet) and last population (stopped at its first step) are left out.
The order rotates every chunk, so that load from other jobs on a shared machine hits all alike. CEM-AH's
phases come from its logger keys (``time/rollout_seconds``, ``time/pretrain_seconds``,
``time/adversarial_seconds``), read back from the SB3 CSV logger. A warm-up iteration of each is run first.

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
from benchmarks.common import CEM_ENV_SETTINGS, spread
from sb3_cemah import CEM, CEMAH

GOAL_RATIO = 1.05
# The paper's Table 1 (seconds per training episode, V100 + Xeon Gold 6148).
PAPER_SECONDS_PER_EPISODE = {"maze": {"CEM": 0.84, "CEMAH": 4.03}, "reacher": {"CEM": 0.03, "CEMAH": 4.32}}
SHORT_NAMES = {"sb3_cemah/Maze-v0": "maze", "ReacherBulletEnv-v0": "reacher"}
PHASES = ("rollout", "pretrain", "adversarial")


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
        cemah = self.algorithm != "CEM"
        phases = [self.rollout_s, self.pretrain_s if cemah else 0.0, self.adversarial_s if cemah else 0.0]
        return self.seconds - sum(phases)


VARIANTS = ("CEM", "CEMAH", "CEMAH_in_turn")


def make_models(env_id: str, env: VecEnv, args: argparse.Namespace, log_folder: pathlib.Path) -> dict[str, CEM]:
    """CEM, CEMAH and CEMAH with its imitation in turn (not beside the next population) on the same VecEnv, each
    logging to its own CSV file."""
    models: dict[str, CEM] = {}
    for name in VARIANTS:
        algorithm_class = CEM if name == "CEM" else CEMAH
        model = algorithm_class(
            "MlpPolicy", env, population_size=args.population_size, seed=args.seed, **CEM_ENV_SETTINGS.get(env_id, {})
        )
        if isinstance(model, CEMAH) and name == "CEMAH_in_turn":
            model._overlap_imitation = False  # the ablation of the overlap; the same result
        model.set_logger(configure(str(log_folder / name), ["csv"]))
        models[name] = model
    return models


def time_chunk(model: CEM, n_iterations: int) -> list[tuple[float, float, int]]:
    """
    Run ``n_iterations + 1`` iterations in one ``learn`` (as a user does) and return the wall, CPU seconds and env
    steps of the last ``n_iterations`` of them, from one population's start to the next: the first is left out
    (CEM-AH's imitation overlaps the populations after the first).
    """
    clock = common.IterationClock(n_iterations + 2)
    model.learn(10**12, callback=clock, reset_num_timesteps=False)
    return [
        (wall - wall0, cpu - cpu0, steps - steps0)
        for (wall0, cpu0, steps0), (wall, cpu, steps) in zip(clock.starts[1:-1], clock.starts[2:], strict=True)
    ]


def read_logged_phases(csv_path: pathlib.Path) -> list[dict[str, float]]:
    """The rows of an SB3 ``progress.csv`` (one per iteration) as floats; missing cells are NaN."""
    with csv_path.open() as file:
        return [{key: float(value) if value else float("nan") for key, value in row.items()} for row in csv.DictReader(file)]


def benchmark_env(env_id: str, args: argparse.Namespace) -> list[Iteration]:
    """Alternate the variants' chunks of iterations on one env and return the timed iterations with their phases."""
    env = common.make_quiet_vec_env(env_id, args.n_envs, args.seed)
    log_folder = args.output / "logs" / SHORT_NAMES.get(env_id, env_id.replace("/", "_"))
    models = make_models(env_id, env, args, log_folder)
    episodes = args.population_size * models["CEM"].n_eval_episodes
    for model in models.values():  # warm-up, left out
        model.learn(1, reset_num_timesteps=False)

    iterations: list[Iteration] = []
    logged_rows: dict[str, list[int]] = {name: [] for name in models}  # progress.csv row of each timed iteration
    for chunk in range(args.chunks):
        for name in VARIANTS[chunk % len(VARIANTS) :] + VARIANTS[: chunk % len(VARIANTS)]:
            model = models[name]
            first_row = model.n_iterations + 1  # row 0 is the warm-up; the chunk's first iteration is left out
            for offset, (seconds, cpu_seconds, steps) in enumerate(time_chunk(model, args.iterations_per_chunk)):
                index = len(logged_rows[name])
                iterations.append(Iteration(env_id, name, index, seconds, cpu_seconds, steps, episodes))
                logged_rows[name].append(first_row + offset)
                print(f"{env_id} {name:>13} iteration {index}: {seconds:.2f} s wall, {cpu_seconds:.2f} s CPU, {steps} steps")
    env.close()

    for name in models:
        logged = read_logged_phases(log_folder / name / "progress.csv")
        for record, row in zip((it for it in iterations if it.algorithm == name), logged_rows[name], strict=True):
            record.rollout_s = logged[row].get("time/rollout_seconds", float("nan"))
            record.pretrain_s = logged[row].get("time/pretrain_seconds", float("nan"))
            record.adversarial_s = logged[row].get("time/adversarial_seconds", float("nan"))
            record.ep_len_mean = logged[row].get("rollout/ep_len_mean", float("nan"))
    return iterations


def _clock_seconds(iteration: Iteration, clock: str) -> float:
    return iteration.cpu_seconds if clock == "cpu" else iteration.seconds


def summarise_env(iterations: list[Iteration]) -> dict[str, Any]:
    """
    Per clock (``cpu``, ``wall``): seconds per episode of each variant, and each CEM-AH variant's ratio to CEM,
    paired by iteration, of the totals and per env step; CEM-AH's phase seconds (wall-clock, as logged).
    """
    by_variant = {name: [it for it in iterations if it.algorithm == name] for name in VARIANTS}
    summary: dict[str, Any] = {}
    for clock in ("cpu", "wall"):
        per_episode = {name: [_clock_seconds(it, clock) / it.episodes for it in its] for name, its in by_variant.items()}
        per_step = {name: [_clock_seconds(it, clock) / it.env_steps for it in its] for name, its in by_variant.items()}
        totals = {name: sum(_clock_seconds(it, clock) for it in its) for name, its in by_variant.items()}
        summary[clock] = {
            "seconds_per_episode": {name: spread(values) for name, values in per_episode.items()},
            "seconds_per_episode_mean_std": {n: (float(np.mean(v)), float(np.std(v))) for n, v in per_episode.items()},
        }
        for name in VARIANTS[1:]:
            summary[clock][name] = {
                "ratio_paired": [ah / cem for cem, ah in zip(per_episode["CEM"], per_episode[name], strict=True)],
                "ratio_of_totals": totals[name] / totals["CEM"],
                "ratio_per_env_step_paired": [ah / cem for cem, ah in zip(per_step["CEM"], per_step[name], strict=True)],
            }
    cem = by_variant["CEM"]
    summary.update(
        {
            "env_steps_per_iteration": {name: spread([it.env_steps for it in its]) for name, its in by_variant.items()},
            "ep_len_mean": {name: spread([it.ep_len_mean for it in its]) for name, its in by_variant.items()},
            "cem_rollout_share": sum(it.rollout_s for it in cem) / sum(it.seconds for it in cem),
        }
    )
    for name in VARIANTS[1:]:
        variant = by_variant[name]
        phase_seconds = {phase: [getattr(it, f"{phase}_s") for it in variant] for phase in PHASES}
        summary[f"{name}_phase_seconds"] = {phase: spread(values) for phase, values in phase_seconds.items()}
    return summary


def tables(summaries: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The README's generated blocks: each CEM-AH variant / CEM per env, and CEM-AH's phases."""
    rows = []
    for env_id, summary in summaries.items():
        paper = PAPER_SECONDS_PER_EPISODE.get(SHORT_NAMES.get(env_id, env_id))
        cpu, wall = summary["cpu"], summary["wall"]
        for name in VARIANTS[1:]:
            cem_mean, cem_std = wall["seconds_per_episode_mean_std"]["CEM"]
            ah_mean, ah_std = wall["seconds_per_episode_mean_std"][name]
            rows.append(
                [
                    env_id,
                    name,
                    f"{1000 * cem_mean:.1f} ± {1000 * cem_std:.1f}",
                    f"{1000 * ah_mean:.1f} ± {1000 * ah_std:.1f}",
                    common.format_spread(wall[name]["ratio_paired"]),
                    common.format_spread(cpu[name]["ratio_paired"]),
                    f"{wall[name]['ratio_of_totals']:.2f}",
                    common.format_spread(wall[name]["ratio_per_env_step_paired"]),
                    f"{paper['CEMAH'] / paper['CEM']:.1f}" if paper else "n/a",
                    "yes" if wall[name]["ratio_of_totals"] <= GOAL_RATIO else "no",
                ]
            )
    headers = [
        "env",
        "variant",
        "CEM wall ms/episode",
        "variant wall ms/episode",
        "variant / CEM, wall (paired)",
        "CPU (paired)",
        "wall, totals",
        "wall per env step (paired)",
        "paper",
        f"wall totals <= {GOAL_RATIO}",
    ]
    phase_rows = [
        [env_id, name] + [f"{summary[f'{name}_phase_seconds'][phase]['median']:.3f}" for phase in PHASES]
        for env_id, summary in summaries.items()
        for name in VARIANTS[1:]
    ]
    phase_headers = ["env", "variant", "rollout s", "pretrain s", "adversarial s"]
    return {"ratios": common.markdown_table(headers, rows), "phases": common.markdown_table(phase_headers, phase_rows)}


def main(argv: list[str] | None = None) -> None:
    parser = common.parser(
        "cemah_overhead",
        "Seconds per training episode of CEMAH vs CEM (same env, VecEnv, population; alternating iterations).",
    )
    parser.add_argument("--envs", nargs="+", default=["ReacherBulletEnv-v0", "sb3_cemah/Maze-v0"], help="gymnasium ids")
    parser.add_argument("--chunks", type=int, default=4, help="learn calls per variant and env, in rotating order")
    parser.add_argument(
        "--iterations-per-chunk", type=int, default=3, help="timed iterations per learn call (one more runs untimed)"
    )
    parser.add_argument("--n-envs", type=int, default=8, help="DummyVecEnv slots")
    parser.add_argument("--population-size", type=int, default=100, help="candidates per iteration (the default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 chunk of 1 iteration, population 16")
    args = parser.parse_args(argv)
    if args.quick:
        args.chunks, args.iterations_per_chunk, args.population_size = 1, 1, 16
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
