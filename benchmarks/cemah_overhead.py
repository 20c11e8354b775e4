"""
Wall-clock cost of CEM-AH relative to CEM per training episode (issue 3; the paper's Table 1 reports
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
import json
import pathlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecEnv

from benchmarks.common import (
    CEM_ENV_SETTINGS,
    Stopwatch,
    cemah_training_defaults,
    command_line,
    format_spread,
    machine_description,
    markdown_table,
    quiet_native_stdout,
    readme_header,
    set_torch_threads,
    spread,
    write_csv,
    write_json,
)
from sb3_cemah import CEM, CEMAH

DEFAULT_OUTPUT = pathlib.Path("docs/benchmarks/cemah_overhead")
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cemah_overhead",
        description="Seconds per training episode of CEMAH vs CEM (same env, VecEnv, population; alternating iterations).",
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
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 iterations, population 16")
    parser.add_argument(
        "--from-iterations", type=pathlib.Path, default=None, help="re-summarise an earlier run's iterations.csv, no training"
    )
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT, help="output folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations = 2 if args.iterations is None else args.iterations
        args.population_size = 16
    return args


def n_iterations(env_id: str, args: argparse.Namespace) -> int:
    """Timed iterations of each algorithm on ``env_id``: ``--iterations`` or the env's default."""
    return args.iterations if args.iterations is not None else DEFAULT_ITERATIONS.get(env_id, FALLBACK_ITERATIONS)


def make_env(env_id: str, n_envs: int, seed: int) -> VecEnv:
    """``make_vec_env`` with pybullet's native start-up chatter silenced."""
    if "Bullet" in env_id:
        import pybullet_envs_gymnasium  # noqa: F401  (registers the PyBullet ids)
    with quiet_native_stdout():
        env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
        env.reset()
    return env


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
    env = make_env(env_id, args.n_envs, args.seed)
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


def readme(args: argparse.Namespace, summaries: dict[str, dict[str, Any]], machine: dict[str, Any], command: str) -> str:
    """The markdown report."""
    text = readme_header("CEM-AH overhead over CEM per training episode (issue 3, the paper's Table 1)", command, machine)
    text += (
        f"\n## Set-up\n\n- One VecEnv per env, `{args.n_envs}` `DummyVecEnv` slots (`make_vec_env`), shared by `CEM` and "
        f"`CEMAH`, both `population_size={args.population_size}`, `seed={args.seed}`, default hyper-parameters; the env's "
        "own policy settings for both alike: "
        + "; ".join(f"`{env}`: `{settings}`" for env, settings in CEM_ENV_SETTINGS.items() if env in args.envs)
        + ".\n"
        f"- {', '.join(f'{n_iterations(env, args)} ({env})' for env in args.envs)} timed iterations of each (after one "
        "warm-up each), alternating CEM/CEM-AH with the order "
        f"flipped every iteration; torch threads: {args.torch_threads}.\n"
        "- Seconds per training episode = iteration wall-clock / population size. *paired* ratio: CEM-AH's iteration "
        "over the CEM iteration next to it, median [min, max]; *totals*: sum over all timed iterations. *per env step*: "
        "the same paired ratio of seconds per env step (the two runs' episode lengths differ on the maze, where "
        "the policies learn). ms/episode: mean ± std over the timed iterations.\n"
        "- *CPU*: this process's CPU time (`time.process_time`; envs in-process, one torch thread), robust to other "
        "jobs on the shared machine; *wall*: wall-clock, which they inflate at random. The goal is judged on CPU "
        "time. CEM-AH's phases are logged as wall-clock time.\n"
    )
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
                format_spread(cpu["ratio_paired"]),
                format_spread(wall["ratio_paired"]),
                f"{cpu['ratio_of_totals']:.2f} / {wall['ratio_of_totals']:.2f}",
                format_spread(cpu["ratio_per_env_step_paired"]),
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
    text += "\n## CEM-AH / CEM\n\n" + markdown_table(headers, rows) + "\n"

    phase_rows = []
    for env_id, summary in summaries.items():
        seconds, share = summary["cemah_phase_seconds"], summary["cemah_phase_share"]
        phase_rows.append(
            [env_id]
            + [f"{seconds[phase]['median']:.3f} ({100 * share[phase]:.1f} %)" for phase in (*PHASES, "other")]
            + [f"{100 * summary['cem_rollout_share']:.1f} %"]
        )
    text += (
        "\n## CEM-AH's time per iteration by phase\n\nMedian seconds per iteration (share of CEM-AH's total time), from "
        "`time/rollout_seconds`, `time/pretrain_seconds`, `time/adversarial_seconds`; *other* is the rest of the "
        "iteration (CEM refit, elite admission, diagnostics, logging). The last column is the share of CEM's own "
        "time spent in its rollouts.\n\n"
        + markdown_table(["env", "rollout", "pretrain (MSE)", "adversarial", "other", "CEM: rollout share"], phase_rows)
        + "\n"
    )
    text += "\n## Verdict\n\n" + verdict(summaries) + "\n"
    text += (
        "\nWhy the paper's ratios are larger: its CEM-AH trains ~3000 generator/discriminator steps per iteration "
        "(300 MSE steps x up to 10 mini-batches, then ~20 adversarial mini-batches with 100 decaying D steps, lr 1e-4), "
        f"where `CEMAH`'s defaults in this run took {_defaults_text(machine)}. And its reacher was a cheap custom "
        "2-link arm (0.03 s per CEM episode), so that training, a fixed cost per iteration, dwarfed the rollouts.\n"
    )
    text += "\n## Files\n\n- `iterations.csv`: every timed iteration, with CEM-AH's phases\n"
    text += "- `summary.json`: the statistics above\n- `logs/<env>/<algorithm>/progress.csv`: the SB3 CSV logs\n"
    return text


def _defaults_text(machine: dict[str, Any]) -> str:
    defaults = machine.get("cemah_training_defaults")
    if not defaults:
        return "(not recorded)"
    return (
        f"{defaults['pretrain_steps']} MSE + {defaults['discriminator_steps']} D + {defaults['generator_steps']} G steps "
        f"(lr {defaults['learning_rate']}, batch {defaults['batch_size']})"
    )


def verdict(summaries: dict[str, dict[str, Any]]) -> str:
    """One computed sentence per env: goal met or not, and which phase of CEM-AH's iteration dominates its extra cost."""
    lines = []
    for env_id, summary in summaries.items():
        ratio = float(np.median(summary["cpu"]["ratio_paired"]))
        share = summary["cemah_phase_share"]
        extra = max(("pretrain", "adversarial", "other"), key=lambda phase: share[phase])
        status = "meets" if ratio <= GOAL_RATIO else "misses"
        lines.append(
            f"- `{env_id}`: CEM-AH costs {ratio:.2f}x CEM per training episode (CPU, median of paired iterations), which "
            f"{status} the goal <= {GOAL_RATIO}. Rollouts take {100 * share['rollout']:.0f} % of CEM-AH's wall time; of "
            f"the rest, the largest phase is {extra} ({100 * share[extra]:.0f} %)."
        )
    return "\n".join(lines)


def load_iterations(path: pathlib.Path) -> list[Iteration]:
    """The timed iterations of an earlier run, from its ``iterations.csv``."""
    fields = {name: field.type for name, field in Iteration.__dataclass_fields__.items()}
    casts = {"str": str, "int": int, "float": float}
    with path.open() as file:
        return [
            Iteration(**{name: casts[str(kind)](row[name]) for name, kind in fields.items()}) for row in csv.DictReader(file)
        ]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    set_torch_threads(args.torch_threads)
    if args.from_iterations is not None:
        # Re-summarise an earlier run: its command, machine and settings come from the summary.json beside it.
        recorded = json.loads((args.from_iterations.parent / "summary.json").read_text())
        command, machine = recorded["command"], recorded["machine"]
        for key in ("envs", "iterations", "n_envs", "population_size", "seed", "torch_threads"):
            setattr(args, key, recorded["settings"][key])
        all_iterations = load_iterations(args.from_iterations)
    else:
        machine = {**machine_description(), "cemah_training_defaults": cemah_training_defaults()}
        command = command_line("benchmarks.cemah_overhead")
        all_iterations = [iteration for env_id in args.envs for iteration in benchmark_env(env_id, args)]
    summaries = {env_id: summarise_env([it for it in all_iterations if it.env == env_id]) for env_id in args.envs}
    write_csv(args.output / "iterations.csv", [{**asdict(it), "other_s": it.other_s} for it in all_iterations])
    settings = {key: str(value) if isinstance(value, pathlib.Path) else value for key, value in vars(args).items()}
    write_json(args.output / "summary.json", {"command": command, "machine": machine, "settings": settings, "envs": summaries})
    (args.output / "README.md").write_text(readme(args, summaries, machine, command))
    print((args.output / "README.md").read_text())


if __name__ == "__main__":
    main()
