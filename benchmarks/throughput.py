"""
Env steps per second of CEM compared, in the same run, with random actions on the same VecEnv and with
sb3-contrib's ARS (issue 2).

Three measurements, interleaved and repeated (the order rotates every repetition, so that a burst of load
from other jobs on a shared machine hits all three alike):

- ``cem``: ``CEM("MlpPolicy", env)`` with its default hyper-parameters on ``n_envs`` ``DummyVecEnv`` slots
  (``make_vec_env``), ``--iterations`` populations per repetition;
- ``random``: the same VecEnv stepping uniformly random actions, drawn in advance (outside the timing) so
  that the baseline is the VecEnv alone: the rate no policy-search method on this VecEnv can beat;
- ``ars``: ``ARS("LinearPolicy", env)`` with its default hyper-parameters on a one-slot VecEnv, its intended
  set-up (it evaluates candidates one after the other with ``evaluate_policy``; on an 8-slot VecEnv it would
  step 8 envs to finish one episode), for as many env steps as CEM took.

Rates count env steps as SB3's ``num_timesteps`` does (every slot of every VecEnv step). CEM's slots that
have no candidate left at the end of a population still step; the ``cem_useful`` rate counts only the
candidates' own steps. Each measurement records this process's CPU time and the wall-clock time: on a
machine shared with other jobs the CPU time is the robust one, and the goals are judged on it. The VecEnv's
``step_wait`` is timed on its own, which splits CEM's CPU time per VecEnv step into the envs' part and
CEM's own (policy, bookkeeping, callback). Unless ``--no-profile``, one more CEM population runs under
cProfile and the README lists where its time goes.

Run ``python -m benchmarks.throughput --help`` for the options.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import json
import pathlib
import pstats
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

from benchmarks.common import (
    CEM_ENV_SETTINGS,
    Stopwatch,
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
from sb3_cemah import CEM
from sb3_cemah.common.population import PopulationResult

DEFAULT_OUTPUT = pathlib.Path("docs/benchmarks/throughput")
# Issue 2's goals.
GOAL_VS_RANDOM = 0.8
GOAL_VS_ARS = 2.0
METHODS = ("cem", "random", "ars")


@dataclass
class Measurement:
    """One timed run of one method."""

    repetition: int
    method: str
    env_steps: int
    useful_steps: int
    seconds: float
    cpu_seconds: float
    # CPU seconds spent inside the VecEnv's step_wait (the envs and Monitor) and number of VecEnv steps; for
    # ARS, whose env is not instrumented, NaN and 0.
    env_cpu_seconds: float = float("nan")
    vec_steps: int = 0


class StepWaitTimer:
    """
    Adds up the CPU time of a VecEnv's ``step_wait`` (the envs' own work). Installed on the instance, so that
    ``VecEnv.step`` calls it without any wrapper in between (no change to what the algorithm sees). It costs
    two ``time.process_time`` calls per VecEnv step (~2 µs each here), counted in both CEM's and the random
    baseline's time; ``remove`` takes it off (cProfile misattributes time to those calls on a loaded VM).
    """

    def __init__(self, env: VecEnv):
        self.cpu_seconds = 0.0
        self.calls = 0
        self.env = env
        step_wait = env.step_wait

        def timed_step_wait() -> Any:
            start = time.process_time()
            result = step_wait()
            self.cpu_seconds += time.process_time() - start
            self.calls += 1
            return result

        env.step_wait = timed_step_wait  # type: ignore[method-assign]

    def snapshot(self) -> tuple[float, int]:
        return self.cpu_seconds, self.calls

    def remove(self) -> None:
        del self.env.step_wait  # the instance attribute: the class's step_wait shows through again


class StepCountingCEM(CEM):
    """CEM that also adds up its candidates' episode lengths, to tell useful steps from idle slots' steps."""

    candidate_steps = 0

    def train(self, weights: th.Tensor, result: PopulationResult) -> None:
        self.candidate_steps += int(np.sum(result.episode_lengths) * self.n_eval_episodes)
        super().train(weights, result)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput",
        description="Env steps/s of CEM vs random actions on the same VecEnv vs sb3-contrib's ARS (interleaved repetitions).",
    )
    parser.add_argument("--env", default="ReacherBulletEnv-v0", help="gymnasium id (PyBullet ids are registered)")
    parser.add_argument("--n-envs", type=int, default=8, help="DummyVecEnv slots of CEM and of the random baseline")
    parser.add_argument("--population-size", type=int, default=100, help="CEM candidates per iteration (CEM's default)")
    parser.add_argument("--iterations", type=int, default=1, help="CEM populations per repetition")
    parser.add_argument("--repetitions", type=int, default=8, help="interleaved repetitions of the three measurements")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run of one CEM population")
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 repetitions, population 24, no profile")
    parser.add_argument(
        "--from-measurements",
        type=pathlib.Path,
        default=None,
        help="redo summary and README from an earlier run's measurements.csv, no measuring",
    )
    parser.add_argument("--reprofile", action="store_true", help="with --from-measurements: profile CEM again")
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT, help="output folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.repetitions, args.population_size, args.no_profile = 3, 24, True
    return args


def make_env(env_id: str, n_envs: int, seed: int) -> VecEnv:
    """``make_vec_env`` (DummyVecEnv + Monitor), with pybullet's native start-up chatter silenced."""
    if "Bullet" in env_id:
        import pybullet_envs_gymnasium  # noqa: F401  (registers the PyBullet ids)
    with quiet_native_stdout():
        env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
        env.reset()  # PyBullet connects on the first reset
    return env


def time_cem(model: StepCountingCEM, timer: StepWaitTimer, n_iterations: int, repetition: int) -> Measurement:
    """Run ``n_iterations`` populations (``learn(1)`` runs exactly one) and time them together."""
    steps_before, useful_before = model.num_timesteps, model.candidate_steps
    env_cpu_before, calls_before = timer.snapshot()
    with Stopwatch() as watch:
        for _ in range(n_iterations):
            model.learn(1, reset_num_timesteps=False)
    env_steps = model.num_timesteps - steps_before
    useful_steps = model.candidate_steps - useful_before
    env_cpu, calls = (after - before for after, before in zip(timer.snapshot(), (env_cpu_before, calls_before), strict=True))
    return Measurement(repetition, "cem", env_steps, useful_steps, watch.wall, watch.cpu, env_cpu, int(calls))


def random_actions(action_space: spaces.Space, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Uniform random actions of a Box or Discrete space, shape ``(*shape, *action_shape)``."""
    if isinstance(action_space, spaces.Discrete):
        return action_space.start + rng.integers(int(action_space.n), size=shape)
    assert isinstance(action_space, spaces.Box)
    low, high = action_space.low, action_space.high
    return rng.uniform(low, high, size=(*shape, *low.shape)).astype(action_space.dtype)


def time_random(env: VecEnv, timer: StepWaitTimer, n_env_steps: int, rng: np.random.Generator, repetition: int) -> Measurement:
    """Step the VecEnv with uniform random actions drawn beforehand (the drawing is not timed)."""
    n_vec_steps = -(-n_env_steps // env.num_envs)
    actions = random_actions(env.action_space, (n_vec_steps, env.num_envs), rng)
    env.reset()
    env_cpu_before = timer.cpu_seconds
    with Stopwatch() as watch:
        for step_actions in actions:
            env.step(step_actions)
    n_steps = n_vec_steps * env.num_envs
    env_cpu = timer.cpu_seconds - env_cpu_before
    return Measurement(repetition, "random", n_steps, n_steps, watch.wall, watch.cpu, env_cpu, n_vec_steps)


def time_ars(model: Any, n_env_steps: int, repetition: int) -> Measurement:
    """ARS ``learn`` for ``n_env_steps`` more steps (it stops after the iteration that reaches them)."""
    steps_before = model.num_timesteps
    with Stopwatch() as watch:
        model.learn(n_env_steps, reset_num_timesteps=False)
    env_steps = model.num_timesteps - steps_before
    return Measurement(repetition, "ars", env_steps, env_steps, watch.wall, watch.cpu)


def profile_cem(model: StepCountingCEM, output: pathlib.Path, n_top: int = 25) -> dict[str, Any]:
    """
    One CEM population under cProfile: the top functions by own time (``file:line``) and the share of the
    population's time spent inside a few functions that matter (env step, policy forward, callbacks...).
    """
    profiler = cProfile.Profile()
    profiler.enable()
    model.learn(1, reset_num_timesteps=False)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.dump_stats(str(output / "cem_population.prof"))
    entries = stats.stats  # type: ignore[attr-defined]
    total = max(entry[3] for entry in entries.values())  # cumulative time of the outermost call

    def location(key: tuple[str, int, str]) -> str:
        filename, line, function = key
        short = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        return f"{short}:{line} ({function})"

    top = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:n_top]
    top_rows = [
        {"location": location(key), "calls": value[1], "own_s": round(value[2], 4), "cumulative_s": round(value[3], 4)}
        for key, value in top
    ]
    # Cumulative time of named functions, to split a VecEnv step from CEM's own per-step work.
    watched = {
        "DummyVecEnv.step_wait (the envs, incl. Monitor)": ("dummy_vec_env.py", "step_wait"),
        "FlatPolicyNetwork.forward (batched policy)": ("policy_network.py", "forward"),
        "CEMPolicy.obs_to_features": ("policies.py", "obs_to_features"),
        "CEMPolicy.outputs_to_actions": ("policies.py", "outputs_to_actions"),
        "CEMPolicy.actions_to_env": ("policies.py", "actions_to_env"),
        "CEM._on_env_step (counters, info buffer, callback)": ("cem.py", "_on_env_step"),
        "_check_finite (obs and reward checks)": ("population.py", "_check_finite"),
        "VecEnv.reset": ("dummy_vec_env.py", "reset"),
    }
    breakdown = []
    for label, (file_suffix, function) in watched.items():
        cumulative = sum(value[3] for key, value in entries.items() if key[0].endswith(file_suffix) and key[2] == function)
        breakdown.append({"part": label, "cumulative_s": round(cumulative, 4), "share": round(cumulative / total, 4)})
    with (output / "cem_population_profile.txt").open("w") as file:
        stats.stream = file  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(40)
    return {"total_s": round(total, 4), "top_own_time": top_rows, "breakdown": breakdown}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the models, warm them up, then time the interleaved repetitions."""
    from sb3_contrib import ARS

    set_torch_threads(args.torch_threads)
    env = make_env(args.env, args.n_envs, args.seed)
    timer = StepWaitTimer(env)
    settings = CEM_ENV_SETTINGS.get(args.env, {})
    cem = StepCountingCEM("MlpPolicy", env, population_size=args.population_size, seed=args.seed, **settings)
    ars = ARS("LinearPolicy", make_env(args.env, 1, args.seed), seed=args.seed)
    rng = np.random.default_rng(args.seed)

    # Warm-up (first calls allocate, import and connect lazily); it also gives CEM's steps per population,
    # which sets the step budget of the two other measurements.
    cem.learn(1)
    steps_per_population = cem.num_timesteps
    ars.learn(1)
    time_random(env, timer, 10 * args.n_envs, rng, repetition=-1)
    n_env_steps = steps_per_population * args.iterations

    measurements: list[Measurement] = []
    for repetition in range(args.repetitions):
        order = METHODS[repetition % 3 :] + METHODS[: repetition % 3]
        for method in order:
            if method == "cem":
                measurement = time_cem(cem, timer, args.iterations, repetition)
            elif method == "random":
                measurement = time_random(env, timer, n_env_steps, rng, repetition)
            else:
                measurement = time_ars(ars, n_env_steps, repetition)
            measurements.append(measurement)
            print(
                f"rep {repetition} {method:>6}: {measurement.env_steps} steps in {measurement.seconds:.2f} s wall "
                f"({rate(measurement, 'wall'):.0f} steps/s), {measurement.cpu_seconds:.2f} s CPU "
                f"({rate(measurement, 'cpu'):.0f} steps/s)",
                flush=True,
            )

    timer.remove()
    profile = None if args.no_profile else profile_cem(cem, args.output)
    env.close()
    return {"measurements": measurements, "profile": profile, "steps_per_population": steps_per_population}


CLOCKS = ("cpu", "wall")
# (label, CEM counts only its candidates' steps, reference method, goal)
RATIOS = (
    ("CEM / random", False, "random", GOAL_VS_RANDOM),
    ("CEM (useful) / random", True, "random", GOAL_VS_RANDOM),
    ("CEM / ARS", False, "ars", GOAL_VS_ARS),
    ("CEM (useful) / ARS", True, "ars", GOAL_VS_ARS),
)


def rate(measurement: Measurement, clock: str, useful: bool = False) -> float:
    """Steps per second of CPU time (``clock="cpu"``) or of wall-clock time."""
    steps = measurement.useful_steps if useful else measurement.env_steps
    return steps / (measurement.cpu_seconds if clock == "cpu" else measurement.seconds)


def ratios(measurements: list[Measurement]) -> dict[str, list[float]]:
    """
    Per repetition and clock, CEM's rate over the random baseline's and over ARS's (taken within a
    repetition, under the same load). Keys: ``"<clock>: <label>"``.
    """
    by_rep: dict[int, dict[str, Measurement]] = {}
    for measurement in measurements:
        by_rep.setdefault(measurement.repetition, {})[measurement.method] = measurement
    result: dict[str, list[float]] = {}
    for clock in CLOCKS:
        for label, useful, reference, _ in RATIOS:
            result[f"{clock}: {label}"] = [
                rate(rep["cem"], clock, useful) / rate(rep[reference], clock) for _, rep in sorted(by_rep.items())
            ]
    return result


def rates_by_method(measurements: list[Measurement]) -> dict[str, list[float]]:
    """Every measured rate, keyed ``"<clock>: <method>"`` (with ``cem (useful)``)."""
    result: dict[str, list[float]] = {}
    for clock in CLOCKS:
        for method, useful in (("cem", False), ("cem (useful)", True), ("random", False), ("ars", False)):
            selected = [m for m in measurements if m.method == method.split()[0]]
            result[f"{clock}: {method}"] = [rate(m, clock, useful) for m in selected]
    return result


def write_outputs(args: argparse.Namespace, outcome: dict[str, Any], machine: dict[str, Any], command: str) -> None:
    """CSV of every measurement, JSON summary, markdown README."""
    measurements: list[Measurement] = outcome["measurements"]
    rows = [{**asdict(m), "wall_rate": round(rate(m, "wall"), 1), "cpu_rate": round(rate(m, "cpu"), 1)} for m in measurements]
    write_csv(args.output / "measurements.csv", rows)
    ratio_values = ratios(measurements)
    rates = rates_by_method(measurements)
    summary = {
        "command": command,
        "machine": machine,
        "settings": {key: str(value) if isinstance(value, pathlib.Path) else value for key, value in vars(args).items()},
        "steps_per_population": outcome["steps_per_population"],
        "rates": {name: spread(values) for name, values in rates.items()},
        "ratios": {name: spread(values) for name, values in ratio_values.items()},
        "goals": {"cem_vs_random": GOAL_VS_RANDOM, "cem_vs_ars": GOAL_VS_ARS},
        "profile": outcome["profile"],
        "cpu_us_per_vec_step_inside_outside_share": per_step_rows(measurements),
    }
    write_json(args.output / "summary.json", summary)
    (args.output / "README.md").write_text(readme(args, measurements, summary, rates, ratio_values, machine))


def readme(
    args: argparse.Namespace,
    measurements: list[Measurement],
    summary: dict[str, Any],
    rates: dict[str, list[float]],
    ratio_values: dict[str, list[float]],
    machine: dict[str, Any],
) -> str:
    """The markdown report."""
    text = readme_header(f"CEM throughput on {args.env} (issue 2)", summary["command"], machine)
    text += (
        f"\n## Set-up\n\n- `{args.n_envs}` `DummyVecEnv` slots (`make_vec_env`) for CEM and the random baseline; "
        f"CEM with its default hyper-parameters, `population_size={args.population_size}`, the env's settings "
        f"`{CEM_ENV_SETTINGS.get(args.env, {})}`, "
        f"{args.iterations} population(s) = {summary['steps_per_population'] * args.iterations} env steps per measurement.\n"
        "- random: the same VecEnv, uniform actions drawn before the timing (the VecEnv's own rate).\n"
        '- ARS: `ARS("LinearPolicy", env)` with sb3-contrib\'s defaults on a one-slot VecEnv (it evaluates candidates '
        "one after the other with `evaluate_policy`), the same number of env steps.\n"
        f"- {args.repetitions} repetitions, the order of the three rotating each time; ratios are taken within a "
        f"repetition. Cells: median [min, max]. torch threads: {args.torch_threads}.\n"
        "- `cem` counts env steps as SB3's `num_timesteps` (all slots); `cem (useful)` only the candidates' own steps "
        "(slots without a candidate left at the end of a population still step).\n"
        "- *CPU*: steps per second of this process's CPU time (`time.process_time`, everything runs in one process "
        "with one torch thread), robust to other jobs on the machine; *wall*: per second of wall-clock time, "
        "which other jobs inflate at random. The goals are judged on CPU time; wall-clock is the cross-check.\n"
    )
    rate_rows = [
        [method, format_spread(rates[f"cpu: {method}"], ".0f"), format_spread(rates[f"wall: {method}"], ".0f")]
        for method in ("cem", "cem (useful)", "random", "ars")
    ]
    text += "\n## Env steps per second\n\n" + markdown_table(["method", "CPU", "wall"], rate_rows) + "\n"
    ratio_rows = [
        [
            label,
            format_spread(ratio_values[f"cpu: {label}"]),
            format_spread(ratio_values[f"wall: {label}"]),
            f"{_best_ratio(rates, useful, reference):.2f}",
            f">= {goal}",
            _verdict(ratio_values[f"cpu: {label}"], goal),
        ]
        for label, useful, reference, goal in RATIOS
    ]
    headers = ["ratio", "CPU", "wall", "best CPU rate / best CPU rate", "goal", "CPU median meets goal"]
    text += (
        "\n## Ratios\n\nPer repetition, then median [min, max]; the *best* column divides the best rates over all "
        "repetitions (the least disturbed runs of each).\n\n" + markdown_table(headers, ratio_rows) + "\n"
    )
    text += (
        "\n## CPU time per VecEnv step, inside and outside the envs\n\n`step_wait` of the VecEnv (the envs and "
        "their Monitor) is timed on its own; *outside* is the rest: for CEM the batched policy, the bookkeeping of "
        "the population and SB3's per-step callback; for the random baseline the loop and `step_async`. "
        "Median [min, max] over repetitions, microseconds per VecEnv step "
        f"({args.n_envs} env steps).\n\n"
        + markdown_table(
            ["method", "inside step_wait (µs)", "outside (µs)", "share of CPU inside the envs"],
            [[method, *cells] for method, cells in per_step_rows(measurements).items()],
        )
        + "\n"
    )
    text += "\n" + diagnosis(measurements, machine, args.n_envs) + "\n"
    profile = summary["profile"]
    if profile is not None:
        text += (
            f"\n## Where one CEM population's time goes (cProfile, {profile['total_s']:.2f} s with profiling overhead)\n\n"
            + markdown_table(
                ["part (cumulative, nested parts overlap)", "seconds", "share"],
                [[row["part"], row["cumulative_s"], f"{100 * row['share']:.1f} %"] for row in profile["breakdown"]],
            )
            + "\n\nTop functions by own time:\n\n"
            + markdown_table(
                ["location", "calls", "own s", "cumulative s"],
                [[row["location"], row["calls"], row["own_s"], row["cumulative_s"]] for row in profile["top_own_time"][:15]],
            )
            + "\n\nFull listing: `cem_population_profile.txt`; raw profile: `cem_population.prof` (`python -m pstats`).\n"
        )
    text += "\n## Files\n\n- `measurements.csv`: every timed run\n- `summary.json`: medians, spreads, ratios, profile\n"
    return text


def diagnosis(measurements: list[Measurement], machine: dict[str, Any], n_envs: int) -> str:
    """
    Where CEM's CPU time outside the envs goes and what would remove it. The per-step costs of the parts were
    measured separately (micro-benchmarks, 8 slots, reacher shapes, one torch thread) on the code identified by
    the source digest; the file:line references are to that code.
    """
    cem = [m for m in measurements if m.method == "cem" and m.vec_steps > 0]
    outside = float(np.median([1e6 * (m.cpu_seconds - m.env_cpu_seconds) / m.vec_steps for m in cem]))
    inside = float(np.median([1e6 * m.env_cpu_seconds / m.vec_steps for m in cem]))
    return f"""## Diagnosis (sb3_cemah source {machine.get("sb3_cemah_source_sha1", "digest not recorded")})

The parts and the fix below were found on the evaluator before commit "Population evaluator: split slot weights
once per population..." (source digest e49559af80bd), when CEM's own work outside the envs was 500-560 µs per
VecEnv step and CEM ran at 0.73-0.77x the random rate, 1.7-1.9x ARS. That commit applies the fix (per-slot
weights split once per population, the activation built once, the device from the `mean` buffer, precomputed
action scaling, `th.multinomial`); the numbers of this run are measured on the code named in the heading.
The numpy forward pass is not done.

The envs cost CEM about what they cost the random baseline (table above); CEM's gap is its own work per
VecEnv step outside `step_wait`: {outside:.0f} µs median for {n_envs} env steps, next to {inside:.0f} µs inside
the envs. Its parts, timed separately (reacher shapes, 8 slots, one torch thread, loaded machine):

- `sb3_cemah/common/population.py:116`, `policy.obs_to_features(obs)`: ~45 µs. `CEMPolicy.obs_to_features`
  (`sb3_cemah/cem/policies.py:95`) reads `self.device`; SB3's `BaseModel.device` looks for a parameter and a
  `CEMPolicy` has none (only buffers), so every step falls back to `get_device("cpu")` (~8 µs); then
  `preprocess_obs`, `.float()` and `reshape`.
- `population.py:117`: the full weight rows of every slot's candidate are gathered again at every step
  (`flat_weights[th.as_tensor(slot_candidate)]`, ~19 µs), though a slot changes candidate once per episode.
- `population.py:118` -> `FlatPolicyNetwork.forward` (`sb3_cemah/common/policy_network.py:69-83`): ~90-110 µs.
  It re-`unflatten`s the flat vectors at every step (Python loop of slices and reshapes, line 77) and builds
  a new `nn.ReLU` module at every call (line 79, ~15 µs), even for `net_arch=[]`.
- `population.py:119` -> `outputs_to_env_actions` -> SB3's `unscale_action`: ~12-22 µs.
- the rest: two `_check_finite` calls (`population.py:127-128`), the slot bookkeeping of lines 113-141, and
  `CEM._on_env_step` (`sb3_cemah/cem/cem.py`: counters, `_update_info_buffer`, `callback.update_locals`).

Proposed fix, in `evaluate_population` and `FlatPolicyNetwork`: unflatten the population once per call and
keep per-slot weight and bias tensors `(n_slots, in, out)` / `(n_slots, 1, out)`, rewritten only for the
slots that take a new candidate when an episode ends; create the activation once (or use
`torch.nn.functional`); in `CEMPolicy`, take the device from the `mean` buffer instead of `BaseModel.device`
and, for a Box observation space without standardisation, use `th.from_numpy(obs)` directly; precompute the
action scaling `low`, `high - low`. A prototype of that loop measured 150-185 µs per VecEnv step instead of
330-410 µs for `evaluate_population` alone (no-cost env, same shapes), and on this reacher VecEnv (no
callback) 0.80 of the random rate instead of 0.70 (median of 4 interleaved repetitions). Each torch call
costs ~5-10 µs of dispatch on such small tensors: for a margin above 0.8, the per-step forward of small
policies on CPU could run in numpy (weights converted once per population): ~26 µs against ~120 µs for
the same `baddbmm` + `tanh` + scaling in torch, measured side by side.

On the maze (a cheap env, ~10 µs per env step, stochastic candidates, standardised observations) CEM's own
work is most of the time, and two more parts weigh (see the maze run's profile): sampling the discrete
action builds a `torch.distributions.Categorical` at every step (`sb3_cemah/cem/policies.py:119`; its
`__init__` alone is ~13 % of a profiled population, the sampling ~26 % with it): `th.multinomial(th.softmax(
outputs, -1), 1)` or a Gumbel-max on the logits skips the distribution object and its validation; and the
per-observation standardisation (`policies.py:86-89`, `mean`/`std` over 243 features per slot, in
`obs_to_features`, ~17 % with it).
"""


def per_step_rows(measurements: list[Measurement]) -> dict[str, list[str]]:
    """Per method with an instrumented VecEnv: CPU µs per VecEnv step inside and outside ``step_wait``."""
    rows = {}
    for method in ("cem", "random"):
        selected = [m for m in measurements if m.method == method and m.vec_steps > 0]
        inside = [1e6 * m.env_cpu_seconds / m.vec_steps for m in selected]
        outside = [1e6 * (m.cpu_seconds - m.env_cpu_seconds) / m.vec_steps for m in selected]
        share = [m.env_cpu_seconds / m.cpu_seconds for m in selected]
        rows[method] = [format_spread(inside, ".0f"), format_spread(outside, ".0f"), format_spread(share)]
    return rows


def _best_ratio(rates: dict[str, list[float]], useful: bool, reference: str) -> float:
    return max(rates["cpu: cem (useful)" if useful else "cpu: cem"]) / max(rates[f"cpu: {reference}"])


def _verdict(values: list[float], goal: float) -> str:
    return "yes" if float(np.median(values)) >= goal else "no"


def reprofile(args: argparse.Namespace) -> dict[str, Any]:
    """A fresh cProfile of one CEM population with the recorded settings (after one warm-up population)."""
    env = make_env(args.env, args.n_envs, args.seed)
    settings = CEM_ENV_SETTINGS.get(args.env, {})
    cem = StepCountingCEM("MlpPolicy", env, population_size=args.population_size, seed=args.seed, **settings)
    cem.learn(1)
    profile = profile_cem(cem, args.output)
    env.close()
    return profile


def load_run(path: pathlib.Path, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], str]:
    """
    An earlier run from its ``measurements.csv`` and the ``summary.json`` beside it (command, machine, settings,
    profile), to redo the summary and README without measuring again.
    """
    recorded = json.loads((path.parent / "summary.json").read_text())
    settings = recorded["settings"]
    args.env = settings["env"]
    for key in ("n_envs", "population_size", "iterations", "repetitions", "torch_threads", "seed"):
        setattr(args, key, int(settings[key]))
    with path.open() as file:
        measurements = [
            Measurement(
                repetition=int(row["repetition"]),
                method=row["method"],
                env_steps=int(row["env_steps"]),
                useful_steps=int(row["useful_steps"]),
                seconds=float(row["seconds"]),
                cpu_seconds=float(row["cpu_seconds"]),
                env_cpu_seconds=float(row["env_cpu_seconds"]),
                vec_steps=int(row["vec_steps"]),
            )
            for row in csv.DictReader(file)
        ]
    outcome = {
        "measurements": measurements,
        "profile": recorded["profile"],
        "steps_per_population": recorded["steps_per_population"],
    }
    return outcome, recorded["machine"], recorded["command"]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    set_torch_threads(args.torch_threads)
    if args.from_measurements is not None:
        outcome, machine, command = load_run(args.from_measurements, args)
        if args.reprofile:
            outcome["profile"] = reprofile(args)
    else:
        machine, command = machine_description(), command_line("benchmarks.throughput")
        outcome = run(args)
    write_outputs(args, outcome, machine, command)
    print((args.output / "README.md").read_text())


if __name__ == "__main__":
    main()
