"""
Env steps per second of CEM's population on one machine, per evaluator, side by side in one run,
and the time-per-iteration model that projects them to a cluster.

Four set-ups, two env slots in all, the same seeded populations, interleaved repetitions (the order rotates):

- ``local``: the local evaluator on a 2-slot ``DummyVecEnv`` (one process);
- ``subproc``: the local evaluator on a 2-process ``SubprocVecEnv``;
- ``ray-1``: the Ray evaluator, one worker with 2 slots;
- ``ray-2``: the Ray evaluator, two workers with one slot each.

A warm-up population per set-up (Ray's start, the workers' imports) is not timed. ``ray-1`` runs what
``local`` runs, in another process: their difference per population is the Ray evaluator's transfer and
scheduling cost, one input of the model (see ``docs/benchmarks/scaling/README.md``).

Run ``python -m benchmarks.scaling --help`` for the options; ``--population-size 8 --repetitions 1`` is a smoke test.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

from benchmarks import common
from sb3_cemah import CEM

SETUPS = ("local", "subproc", "ray-1", "ray-2")
GOAL_RAY2_VS_LOCAL = 1.8
WORKER_COUNTS = (16, 64, 256)
# The paper's population and the maze's inputs measured elsewhere in this repository (docs/benchmarks/README.md,
# suite "quick": CEM on the maze, 1,000,000 steps in 1,014 episodes at 19,059 env steps/s on one core).
PAPER_POPULATION = 100
MAZE_SECONDS_PER_STEP = 1 / 19_059
MAZE_EPISODE_LENGTH = 1_000_000 / 1_014
# CEM-AH's head step (pre-training of the hypernetwork on the elites, defaults): its median seconds per iteration.
CEMAH_OVERHEAD_SUMMARY = common.REPO_ROOT / "docs" / "benchmarks" / "cemah_overhead" / "summary.json"


def build(setup: str, env_id: str, population_size: int, seed: int) -> CEM:
    """The CEM model of a set-up (two env slots in all)."""
    if setup == "subproc":
        # "module:id": the subprocesses (forkserver) import the module that registers the PyBullet ids.
        module_id = f"pybullet_envs_gymnasium:{env_id}" if "Bullet" in env_id else env_id
        env = make_vec_env(module_id, n_envs=2, seed=seed, vec_env_cls=SubprocVecEnv)
    else:
        env = make_vec_env(env_id, n_envs=2 if setup == "local" else 1, seed=seed)
    kwargs: dict[str, Any] = {}
    if setup.startswith("ray"):
        num_workers = int(setup.split("-")[1])
        # The same tasks for both worker counts: results (and steps) do not depend on the worker count.
        kwargs = {
            "evaluator": "ray",
            "evaluator_kwargs": {"num_workers": num_workers, "envs_per_worker": 2 // num_workers, "candidates_per_task": 4},
        }
    model_kwargs: dict[str, Any] = {
        "population_size": population_size,
        "elite_frac": 0.25,
        "seed": seed,
        "policy_kwargs": {"net_arch": []},
    }
    return CEM("MlpPolicy", env, **model_kwargs, **kwargs)


def time_population(model: CEM) -> dict[str, float]:
    """
    The second population of a two-population ``learn``: its wall time (from its start to the end of its update)
    and the head's update time. The first population is not timed: ``learn`` starts the evaluator's workers (Ray's
    actors, ``SubprocVecEnv``'s are already up) and releases them when it returns.
    """
    train = model.train
    head: list[float] = []
    finished: list[tuple[float, int]] = []

    def timed_train(*args: Any) -> None:
        start = time.perf_counter()
        train(*args)
        end = time.perf_counter()
        head.append(end - start)
        finished.append((end, model.num_timesteps))

    clock = common.IterationClock(3)
    model.train = timed_train  # type: ignore[method-assign,assignment]
    model.learn(10**9, callback=clock, reset_num_timesteps=False)  # the clock stops it after two populations
    del model.train
    (start, _, steps), (end, end_steps) = clock.starts[1], finished[1]
    assert model.ep_info_buffer is not None
    episodes = list(model.ep_info_buffer)[-model.population_size :]
    return {
        "env_steps": end_steps - steps,
        "seconds": end - start,
        "head_seconds": head[1],
        "episode_length": float(np.mean([info["l"] for info in episodes])),
    }


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    import pybullet_envs_gymnasium  # noqa: F401  (registers the PyBullet ids)
    import ray

    # Three logical CPUs on two cores: ray-1's actor (idle while ray-2 runs) keeps its CPU reserved.
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    with common.quiet_native_stdout():
        models = {setup: build(setup, args.env, args.population_size, args.seed) for setup in SETUPS}
        for model in models.values():
            model.learn(1)  # warm-up (imports, Ray's start): not timed
    rows = []
    for repetition, setup in common.interleaved(args.repetitions, SETUPS):
        timing = time_population(models[setup])
        row = {"repetition": repetition, "setup": setup, **timing, "steps_per_second": timing["env_steps"] / timing["seconds"]}
        rows.append(row)
        print(f"rep {repetition} {setup:>8}: {row['env_steps']} steps in {row['seconds']:.1f} s", flush=True)
    for model in models.values():
        assert model.env is not None
        model.env.close()
    ray.shutdown()
    return rows


def projection(inputs: dict[str, float], n_workers: int) -> dict[str, float]:
    """
    ``T(W) = max(ceil(N / W) * t_episode + t_transfer, t_beside) + t_head`` (one candidate per task beyond
    ``N / W``; ``t_beside``, CEM-AH's imitation, runs beside the population; ``t_head`` is what the head does between
    populations), against one worker's ``T(1) = max(N * t_episode, t_beside) + t_head``: speed-up ``T(1) / T(W)``,
    efficiency ``speed-up / W``.
    """
    episodes = math.ceil(inputs["population"] / n_workers)
    beside = inputs.get("t_beside", 0.0)
    one = max(inputs["population"] * inputs["t_episode"], beside) + inputs["t_head"]
    many = max(episodes * inputs["t_episode"] + inputs["t_transfer"], beside) + inputs["t_head"]
    return {"workers": n_workers, "seconds_per_iteration": many, "speed_up": one / many, "efficiency": one / many / n_workers}


def summarize(rows: list[dict[str, Any]], env_id: str) -> dict[str, Any]:
    by_setup = {setup: [row for row in rows if row["setup"] == setup] for setup in SETUPS}
    rates = {setup: common.spread([row["steps_per_second"] for row in setup_rows]) for setup, setup_rows in by_setup.items()}
    paired = {
        setup: common.spread(
            [
                row["steps_per_second"] / local["steps_per_second"]
                for row, local in zip(by_setup[setup], by_setup["local"], strict=True)
            ]
        )
        for setup in SETUPS
    }
    local = by_setup["local"]
    seconds_per_step = float(np.median([row["seconds"] / row["env_steps"] for row in local]))
    # Transfer and scheduling per population: ray-1's time beyond its steps at local's per-step time (both one core).
    # Under other jobs' load it falls within the noise (negative estimates): the model then takes 0.
    transfer_estimates = [
        ray1["seconds"] - ray1["env_steps"] * row["seconds"] / row["env_steps"]
        for ray1, row in zip(by_setup["ray-1"], local, strict=True)
    ]
    measured_transfer = float(np.median(transfer_estimates))
    transfer = max(measured_transfer, 0.0)
    episode_length = float(np.median([row["episode_length"] for row in local]))
    cem_head = float(np.median([row["head_seconds"] for row in local]))
    # CEM-AH, from the overhead benchmark's run of the same env (else its reacher run): its imitation runs beside the
    # population, and what it adds between populations (sending the population, loading the trained state) is its
    # time per iteration beyond the longer of CEM's iteration and the imitation.
    overhead = json.loads(CEMAH_OVERHEAD_SUMMARY.read_text())

    def cemah_inputs(overhead_env: str) -> dict[str, Any]:
        source = overhead_env if overhead_env in overhead["envs"] else "ReacherBulletEnv-v0"
        measured = overhead["envs"][source]
        per_episode = measured["wall"]["seconds_per_episode"]
        population = overhead["settings"]["population_size"]
        beside = measured["CEMAH_phase_seconds"]["pretrain"]["median"]
        # The measured iteration is max(population, imitation) + head (the model's own form, one worker).
        iteration = per_episode["CEMAH"]["median"] * population
        return {
            "source": source,
            "t_beside": beside,
            "t_head": max(iteration - max(per_episode["CEM"]["median"] * population, beside), 0.0),
        }

    # The paper's ant runs 1000-step episodes (the time limit, Hopper's too); the timed populations' candidates, near
    # their random start, fall earlier.
    settings: dict[str, dict[str, Any]] = {
        env_id: {"t_episode": seconds_per_step * 1000, "cemah": cemah_inputs(env_id)},
        "maze": {"t_episode": MAZE_SECONDS_PER_STEP * MAZE_EPISODE_LENGTH, "cemah": cemah_inputs("sb3_cemah/Maze-v0")},
    }
    projections = []
    for env, setting in settings.items():
        cemah = setting["cemah"]
        for algorithm, head, beside in (("CEM", cem_head, 0.0), ("CEM-AH", cemah["t_head"], cemah["t_beside"])):
            inputs: dict[str, float] = {
                "population": PAPER_POPULATION,
                "t_episode": setting["t_episode"],
                "t_transfer": transfer,
                "t_head": head,
                "t_beside": beside,
            }
            for n_workers in WORKER_COUNTS:
                projections.append({"env": env, "algorithm": algorithm, **inputs, **projection(inputs, n_workers)})
    return {
        "env": env_id,
        "rates": rates,
        "ratio_to_local": paired,
        "model_inputs": {
            "seconds_per_env_step": seconds_per_step,
            "timed_episode_length": episode_length,
            "transfer_seconds_per_population": transfer,
            "transfer_estimates": transfer_estimates,
            "cem_head_seconds": cem_head,
            "cemah": {env: setting["cemah"] for env, setting in settings.items()},
            "maze_seconds_per_env_step": MAZE_SECONDS_PER_STEP,
            "maze_episode_length": MAZE_EPISODE_LENGTH,
        },
        "projections": projections,
    }


PROJECTION_HEADERS = (
    "env",
    "algorithm",
    "workers",
    "t_episode (s)",
    "t_transfer (s)",
    "t_head (s)",
    "t_beside (s)",
    "T(W) (s)",
    "speed-up",
    "efficiency",
)


def _cell(stats: dict[str, float], fmt: str) -> str:
    return f"{stats['median']:{fmt}} [{stats['min']:{fmt}}, {stats['max']:{fmt}}]"


def tables(summary: dict[str, Any]) -> dict[str, str]:
    """The README's generated blocks: rates, the model's measured inputs, the projection."""
    rates = common.markdown_table(
        ["set-up", "env steps/s", "ratio to local (paired)"],
        [[setup, _cell(summary["rates"][setup], ".0f"), _cell(summary["ratio_to_local"][setup], ".2f")] for setup in SETUPS],
    )
    ratio = summary["ratio_to_local"]["ray-2"]["median"]
    met = "met" if ratio >= GOAL_RAY2_VS_LOCAL else "not met"
    rates += f"\n\nGoal `ray-2` >= {GOAL_RAY2_VS_LOCAL}x `local`: {met} ({ratio:.2f}x)."
    inputs = summary["model_inputs"]
    estimates = ", ".join(f"{value:.2f}" for value in inputs["transfer_estimates"])
    inputs_text = "\n".join(
        [
            f"- `t_episode`, {summary['env']}: {inputs['seconds_per_env_step'] * 1e6:.0f} µs per env step (`local`) "
            f"x 1000 steps (this run's candidates averaged {inputs['timed_episode_length']:.0f}); maze: "
            f"{inputs['maze_seconds_per_env_step'] * 1e6:.0f} µs per step x {inputs['maze_episode_length']:.0f} steps.",
            f"- `t_transfer`: per repetition {estimates} s; "
            f"the model takes {inputs['transfer_seconds_per_population']:.3f} s.",
            f"- `t_head`: CEM's update {inputs['cem_head_seconds'] * 1e3:.1f} ms; CEM-AH's time per iteration beyond "
            "CEM's, and `t_beside`, its imitation step beside the population (overhead benchmark): "
            + "; ".join(
                f"{env}: {cemah['t_head']:.3f} s and {cemah['t_beside']:.2f} s (measured on {cemah['source']})"
                for env, cemah in inputs["cemah"].items()
            )
            + ".",
        ]
    )
    projection = common.markdown_table(
        PROJECTION_HEADERS,
        [
            [
                p["env"],
                p["algorithm"],
                p["workers"],
                f"{p['t_episode']:.2f}",
                f"{p['t_transfer']:.3f}",
                f"{p['t_head']:.3f}",
                f"{p.get('t_beside', 0.0):.3f}",
                f"{p['seconds_per_iteration']:.2f}",
                f"{p['speed_up']:.1f}",
                f"{100 * p['efficiency']:.0f} %",
            ]
            for p in summary["projections"]
        ],
    )
    return {"rates": rates, "inputs": inputs_text, "projection": projection}


def main(argv: list[str] | None = None) -> None:
    parser = common.parser("scaling", __doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--env", default="AntBulletEnv-v0")
    parser.add_argument("--population-size", type=int, default=16, help="candidates per timed population")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    run = common.Run.start("scaling", parser.parse_args(argv))
    rows = run.rows("measurements.csv") if run.args.from_dir is not None else measure(run.args)
    summary = summarize(rows, run.args.env)
    run.save("measurements.csv", rows, summary)
    run.report(f"Scaling CEM's population on {run.args.env}", tables(summary))


if __name__ == "__main__":
    main()
