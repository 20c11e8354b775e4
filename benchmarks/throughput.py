"""
Env steps per second of CEM compared, in the same run, with random actions on the same VecEnv and with
sb3-contrib's ARS.

Four measurements, interleaved and repeated (the order rotates every repetition, so that a burst of load
from other jobs on a shared machine hits all four alike):

- ``cem``: ``CEM("MlpPolicy", env)`` with its default hyper-parameters on ``n_envs`` ``DummyVecEnv`` slots
  (``make_vec_env``), ``--iterations`` populations per repetition;
- ``random``: the same VecEnv stepping uniformly random actions through ``VecEnv.step``, drawn in advance (outside
  the timing), so that the baseline is the VecEnv alone as every SB3 algorithm steps it (CEM's evaluator steps a
  plain DummyVecEnv without SB3's deep copies, see :mod:`sb3_cemah.common.population`, so it can exceed it);
- ``bare``: one env from ``gymnasium.make`` (no Monitor, no VecEnv) stepping random actions drawn in advance,
  reset when an episode ends: the env's own rate;
- ``ars``: ``ARS("LinearPolicy", env)`` with its default hyper-parameters on a one-slot VecEnv, its intended
  set-up (it evaluates candidates one after the other with ``evaluate_policy``; on an 8-slot VecEnv it would
  step 8 envs to finish one episode), for as many env steps as CEM took.

Rates count env steps as SB3's ``num_timesteps`` does (every slot of every VecEnv step). CEM's slots that
have no candidate left at the end of a population still step; the ``cem_useful`` rate counts only the
candidates' own steps. Each measurement records this process's CPU time and the wall-clock time: on a
machine shared with other jobs the CPU time is the robust one. The envs' own ``step`` (Monitor included) is timed
on its own in every method but ARS, which splits the CPU time per VecEnv step into the envs' part and the rest
(the VecEnv's bookkeeping, CEM's policy and callback). Unless ``--no-profile``, one more CEM population runs under
cProfile and the README lists where its time goes.

Run ``python -m benchmarks.throughput --help`` for the options.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from benchmarks import common
from benchmarks.common import CEM_ENV_SETTINGS, Stopwatch, format_spread, markdown_table, spread
from sb3_cemah import CEM
from sb3_cemah.common.population import PopulationResult

# Goals against the same VecEnv stepping random actions and one bare env's own rate, and against sb3-contrib's ARS.
GOAL_VS_RANDOM = 0.85
GOAL_VS_BARE = 0.8
GOAL_VS_ARS = 2.0
METHODS = ("cem", "random", "bare", "ars")


@dataclass
class Measurement:
    """One timed run of one method."""

    repetition: int
    method: str
    env_steps: int
    useful_steps: int
    seconds: float
    cpu_seconds: float
    # CPU seconds spent inside the envs' own step (Monitor included) and number of VecEnv steps (of one env for
    # ``bare``); for ARS, whose env is not instrumented, NaN and 0.
    env_cpu_seconds: float = float("nan")
    vec_steps: int = 0


class EnvStepTimer:
    """
    Adds up the CPU time of the envs' own ``step`` (Monitor included), whichever way they are stepped (``VecEnv.step``
    or the evaluator's copy-free step of a plain DummyVecEnv). Installed on the env instances, so that nothing between
    the caller and the envs changes. It costs two ``time.process_time`` calls per env step (~1 µs each here), paid by
    every instrumented method alike; ``remove`` takes it off (cProfile misattributes time to those calls on a loaded VM).

    :param envs: The envs to time (a DummyVecEnv's ``envs``, or one bare env).
    """

    def __init__(self, envs: list[Any]):
        self.cpu_seconds = 0.0
        self.calls = 0
        self.envs = envs
        for env in envs:
            env.step = self._timed(env.step)

    def _timed(self, step: Any) -> Any:
        def timed_step(action: Any) -> Any:
            start = time.process_time()
            result = step(action)
            self.cpu_seconds += time.process_time() - start
            self.calls += 1
            return result

        return timed_step

    def snapshot(self) -> tuple[float, int]:
        return self.cpu_seconds, self.calls

    def remove(self) -> None:
        for env in self.envs:
            del env.step  # the instance attribute: the class's step shows through again


class StepCountingCEM(CEM):
    """CEM that also adds up its candidates' episode lengths, to tell useful steps from idle slots' steps."""

    candidate_steps = 0

    def train(self, weights: th.Tensor, result: PopulationResult) -> None:
        self.candidate_steps += int(np.sum(result.episode_lengths) * self.n_eval_episodes)
        super().train(weights, result)


def time_cem(model: StepCountingCEM, timer: EnvStepTimer, n_iterations: int, repetition: int) -> Measurement:
    """Run ``n_iterations`` populations (``learn(1)`` runs exactly one) and time them together."""
    steps_before, useful_before = model.num_timesteps, model.candidate_steps
    env_cpu_before, calls_before = timer.snapshot()
    with Stopwatch() as watch:
        for _ in range(n_iterations):
            model.learn(1, reset_num_timesteps=False)
    env_steps = model.num_timesteps - steps_before
    useful_steps = model.candidate_steps - useful_before
    env_cpu, calls = (after - before for after, before in zip(timer.snapshot(), (env_cpu_before, calls_before), strict=True))
    n_vec_steps = int(calls) // len(timer.envs)
    return Measurement(repetition, "cem", env_steps, useful_steps, watch.wall, watch.cpu, env_cpu, n_vec_steps)


def random_actions(action_space: spaces.Space, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Uniform random actions of a Box or Discrete space, shape ``(*shape, *action_shape)``."""
    if isinstance(action_space, spaces.Discrete):
        return action_space.start + rng.integers(int(action_space.n), size=shape)
    assert isinstance(action_space, spaces.Box)
    low, high = action_space.low, action_space.high
    return rng.uniform(low, high, size=(*shape, *low.shape)).astype(action_space.dtype)


def time_random(env: VecEnv, timer: EnvStepTimer, n_env_steps: int, rng: np.random.Generator, repetition: int) -> Measurement:
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


def time_bare(env: Any, timer: EnvStepTimer, n_env_steps: int, rng: np.random.Generator, repetition: int) -> Measurement:
    """Step one bare env with uniform random actions drawn beforehand, resetting it when an episode ends."""
    actions = random_actions(env.action_space, (n_env_steps,), rng)
    env.reset()
    env_cpu_before = timer.cpu_seconds
    with Stopwatch() as watch:
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
    env_cpu = timer.cpu_seconds - env_cpu_before
    return Measurement(repetition, "bare", n_env_steps, n_env_steps, watch.wall, watch.cpu, env_cpu, n_env_steps)


def time_ars(model: Any, n_env_steps: int, repetition: int) -> Measurement:
    """ARS ``learn`` for ``n_env_steps`` more steps (it stops after the iteration that reaches them)."""
    steps_before = model.num_timesteps
    with Stopwatch() as watch:
        model.learn(n_env_steps, reset_num_timesteps=False)
    env_steps = model.num_timesteps - steps_before
    return Measurement(repetition, "ars", env_steps, env_steps, watch.wall, watch.cpu)


def profile_cem(model: StepCountingCEM, n_top: int = 25) -> dict[str, Any]:
    """
    One CEM population under cProfile: the top functions by own time (``file:line``) and the share of the
    population's time spent inside a few functions that matter (env step, policy forward, callbacks...).
    """
    profiler = cProfile.Profile()
    profiler.enable()
    model.learn(1, reset_num_timesteps=False)
    profiler.disable()
    stats = pstats.Stats(profiler)
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
        "the envs' step (incl. Monitor)": ("monitor.py", "step"),
        "the evaluator's DummyVecEnv step (envs + bookkeeping)": ("population.py", "_step_dummy_vec_env"),
        "FlatPolicyNetwork.forward_layers (batched policy)": ("policy_network.py", "forward_layers"),
        "FlatPolicy.obs_to_features": ("flat_policy.py", "obs_to_features"),
        "FlatPolicy.outputs_to_actions": ("flat_policy.py", "outputs_to_actions"),
        "FlatPolicy.actions_to_env": ("flat_policy.py", "actions_to_env"),
        "CEM._on_env_step (counters, info buffer, callback)": ("population_algorithm.py", "_on_env_step"),
        "_check_finite (obs and reward checks)": ("population.py", "_check_finite"),
        "VecEnv.reset": ("dummy_vec_env.py", "reset"),
    }
    breakdown = []
    for label, (file_suffix, function) in watched.items():
        cumulative = sum(value[3] for key, value in entries.items() if key[0].endswith(file_suffix) and key[2] == function)
        breakdown.append({"part": label, "cumulative_s": round(cumulative, 4), "share": round(cumulative / total, 4)})
    return {"total_s": round(total, 4), "top_own_time": top_rows, "breakdown": breakdown}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build the models, warm them up, then time the interleaved repetitions."""
    from sb3_contrib import ARS

    env = common.make_quiet_vec_env(args.env, args.n_envs, args.seed)
    timer = EnvStepTimer(env.envs)
    settings = CEM_ENV_SETTINGS.get(args.env, {})
    cem = StepCountingCEM("MlpPolicy", env, population_size=args.population_size, seed=args.seed, **settings)
    ars = ARS("LinearPolicy", common.make_quiet_vec_env(args.env, 1, args.seed), seed=args.seed)
    bare_env = common.make_quiet_env(args.env, args.seed)
    bare_timer = EnvStepTimer([bare_env])
    rng = np.random.default_rng(args.seed)

    # Warm-up (first calls allocate, import and connect lazily); it also gives CEM's steps per population,
    # which sets the step budget of the two other measurements.
    cem.learn(1)
    steps_per_population = cem.num_timesteps
    ars.learn(1)
    time_random(env, timer, 10 * args.n_envs, rng, repetition=-1)
    time_bare(bare_env, bare_timer, 10, rng, repetition=-1)
    n_env_steps = steps_per_population * args.iterations

    measurements: list[Measurement] = []
    for repetition, method in common.interleaved(args.repetitions, METHODS):
        if method == "cem":
            measurement = time_cem(cem, timer, args.iterations, repetition)
        elif method == "random":
            measurement = time_random(env, timer, n_env_steps, rng, repetition)
        elif method == "bare":
            measurement = time_bare(bare_env, bare_timer, n_env_steps, rng, repetition)
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
    bare_timer.remove()
    profile = None if args.no_profile else profile_cem(cem)
    env.close()
    bare_env.close()
    return {"measurements": measurements, "profile": profile, "steps_per_population": steps_per_population}


CLOCKS = ("cpu", "wall")
# (label, CEM counts only its candidates' steps, reference method, goal)
RATIOS = (
    ("CEM / random", False, "random", GOAL_VS_RANDOM),
    ("CEM (useful) / random", True, "random", GOAL_VS_RANDOM),
    ("CEM / bare env", False, "bare", GOAL_VS_BARE),
    ("CEM / ARS", False, "ars", GOAL_VS_ARS),
    ("CEM (useful) / ARS", True, "ars", GOAL_VS_ARS),
)


def rate(measurement: Measurement, clock: str, useful: bool = False) -> float:
    """Steps per second of CPU time (``clock="cpu"``) or of wall-clock time."""
    steps = measurement.useful_steps if useful else measurement.env_steps
    return steps / (measurement.cpu_seconds if clock == "cpu" else measurement.seconds)


def ratios(measurements: list[Measurement]) -> dict[str, list[float]]:
    """
    Per repetition and clock, CEM's rate over each reference method's (taken within a repetition, under the
    same load). Keys: ``"<clock>: <label>"``; ratios whose reference was not measured (runs recorded before the
    bare env joined) are left out.
    """
    by_rep: dict[int, dict[str, Measurement]] = {}
    for measurement in measurements:
        by_rep.setdefault(measurement.repetition, {})[measurement.method] = measurement
    result: dict[str, list[float]] = {}
    for clock in CLOCKS:
        for label, useful, reference, _ in measured_ratios(measurements):
            result[f"{clock}: {label}"] = [
                rate(rep["cem"], clock, useful) / rate(rep[reference], clock) for _, rep in sorted(by_rep.items())
            ]
    return result


def measured_ratios(measurements: list[Measurement]) -> list[tuple[str, bool, str, float]]:
    """The entries of ``RATIOS`` whose reference method was measured."""
    methods = {measurement.method for measurement in measurements}
    return [entry for entry in RATIOS if entry[2] in methods]


def rates_by_method(measurements: list[Measurement]) -> dict[str, list[float]]:
    """Every measured rate, keyed ``"<clock>: <method>"`` (with ``cem (useful)``)."""
    result: dict[str, list[float]] = {}
    for clock in CLOCKS:
        for method, useful in (("cem", False), ("cem (useful)", True), ("random", False), ("bare", False), ("ars", False)):
            selected = [m for m in measurements if m.method == method.split()[0]]
            result[f"{clock}: {method}"] = [rate(m, clock, useful) for m in selected]
    return result


def tables(measurements: list[Measurement], profile: dict[str, Any] | None) -> dict[str, str]:
    """The README's generated blocks: rates, ratios, CPU per VecEnv step and, when profiled, the profile."""
    rates, ratio_values = rates_by_method(measurements), ratios(measurements)
    rate_rows = [
        [method, format_spread(rates[f"cpu: {method}"], ".0f"), format_spread(rates[f"wall: {method}"], ".0f")]
        for method in ("cem", "cem (useful)", "random", "bare", "ars")
        if rates[f"cpu: {method}"]
    ]
    ratio_rows = [
        [
            label,
            format_spread(ratio_values[f"cpu: {label}"]),
            format_spread(ratio_values[f"wall: {label}"]),
            f"{_best_ratio(rates, useful, reference):.2f}",
            f">= {goal}",
            _verdict(ratio_values[f"cpu: {label}"], goal),
            _verdict(ratio_values[f"wall: {label}"], goal),
        ]
        for label, useful, reference, goal in measured_ratios(measurements)
    ]
    blocks = {
        "rates": markdown_table(["method", "CPU", "wall"], rate_rows),
        "ratios": markdown_table(
            [
                "ratio",
                "CPU",
                "wall",
                "best CPU rate / best CPU rate",
                "goal",
                "CPU median meets goal",
                "wall median meets goal",
            ],
            ratio_rows,
        ),
        "per_step": markdown_table(
            ["method", "inside the envs' step (µs)", "outside (µs)", "share of CPU inside the envs"],
            [[method, *cells] for method, cells in per_step_rows(measurements).items()],
        ),
    }
    if profile is not None:
        blocks["profile"] = (
            f"cProfile of one population: {profile['total_s']:.2f} s with profiling overhead.\n\n"
            + markdown_table(
                ["part (cumulative, nested parts overlap)", "seconds", "share"],
                [[row["part"], row["cumulative_s"], f"{100 * row['share']:.1f} %"] for row in profile["breakdown"]],
            )
            + "\n\nTop functions by own time:\n\n"
            + markdown_table(
                ["location", "calls", "own s", "cumulative s"],
                [[row["location"], row["calls"], row["own_s"], row["cumulative_s"]] for row in profile["top_own_time"][:15]],
            )
        )
    return blocks


def per_step_rows(measurements: list[Measurement]) -> dict[str, list[str]]:
    """Per instrumented method: CPU µs per VecEnv step (per env step for ``bare``) inside and outside the envs' step."""
    rows = {}
    for method in ("cem", "random", "bare"):
        selected = [m for m in measurements if m.method == method and m.vec_steps > 0]
        if not selected:  # not measured (runs recorded before the bare env joined)
            continue
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
    env = common.make_quiet_vec_env(args.env, args.n_envs, args.seed)
    settings = CEM_ENV_SETTINGS.get(args.env, {})
    cem = StepCountingCEM("MlpPolicy", env, population_size=args.population_size, seed=args.seed, **settings)
    cem.learn(1)
    profile = profile_cem(cem)
    env.close()
    return profile


def main(argv: list[str] | None = None) -> None:
    parser = common.parser(
        "throughput",
        "Env steps/s of CEM vs random actions on the same VecEnv vs sb3-contrib's ARS (interleaved repetitions).",
    )
    parser.add_argument("--env", default="ReacherBulletEnv-v0", help="gymnasium id (PyBullet ids are registered)")
    parser.add_argument("--n-envs", type=int, default=8, help="DummyVecEnv slots of CEM and of the random baseline")
    parser.add_argument("--population-size", type=int, default=100, help="CEM candidates per iteration (CEM's default)")
    parser.add_argument("--iterations", type=int, default=1, help="CEM populations per repetition")
    parser.add_argument("--repetitions", type=int, default=8, help="interleaved repetitions of the three measurements")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run of one CEM population")
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 repetitions, population 24, no profile")
    parser.add_argument("--reprofile", action="store_true", help="with --from: profile CEM again")
    args = parser.parse_args(argv)
    if args.quick:
        args.repetitions, args.population_size, args.no_profile = 3, 24, True
    run = common.Run.start("throughput", args)
    if args.from_dir is not None:
        fields = set(Measurement.__dataclass_fields__)
        measurements = [Measurement(**{k: v for k, v in row.items() if k in fields}) for row in run.rows("measurements.csv")]
        outcome = {"measurements": measurements, **{key: run.recorded[key] for key in ("profile", "steps_per_population")}}
        if args.reprofile:
            outcome["profile"] = reprofile(args)
    else:
        outcome = measure(args)
    measurements = outcome["measurements"]
    rows = [{**asdict(m), "wall_rate": round(rate(m, "wall"), 1), "cpu_rate": round(rate(m, "cpu"), 1)} for m in measurements]
    summary = {
        "steps_per_population": outcome["steps_per_population"],
        "rates": {name: spread(values) for name, values in rates_by_method(measurements).items()},
        "ratios": {name: spread(values) for name, values in ratios(measurements).items()},
        "goals": {"cem_vs_random": GOAL_VS_RANDOM, "cem_vs_bare": GOAL_VS_BARE, "cem_vs_ars": GOAL_VS_ARS},
        "profile": outcome["profile"],
        "cpu_us_per_vec_step_inside_outside_share": per_step_rows(measurements),
    }
    run.save("measurements.csv", rows, summary)
    print(run.report(f"CEM throughput on {args.env}", tables(measurements, outcome["profile"])).read_text())


if __name__ == "__main__":
    main()
