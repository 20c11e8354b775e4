"""
``python -m rl_zoo3.train`` with timing and stopping instruments, for the benchmark runs.

Usage: ``python -m benchmarks.suite.zoo_train --out DIR [--cap-s S] [--max-steps N] [--max-episodes N]
-- <rl_zoo3.train arguments>``.

It runs rl-zoo3's own ``train`` module (``runpy``) with the given arguments, unmodified, so the run is
exactly ``python -m rl_zoo3.train <arguments>`` (same hyper-parameters, env wrappers, Monitor files and
``EvalCallback``), plus three things rl-zoo3 cannot do:

- it times every evaluation of ``EvalCallback`` and writes ``DIR/evals.jsonl`` (one line per evaluation,
  flushed at once: env steps, seconds since training started, seconds the evaluation took, mean return),
  for the test curve against wall-clock and the seconds per test episode;
- a callback (appended after ``EvalCallback``, so the evaluation at the last step still happens) stops
  training at the wall-clock cap, at the step budget (the population methods would otherwise finish
  their last population and overshoot it) or after ``--max-episodes`` training episodes (the full
  protocol's 50k). It raises ``KeyboardInterrupt``, which rl-zoo3 catches to save the model as after a
  Ctrl-C; the algorithm needs no support for early stopping (ARS ignores a callback's ``False``);
- it writes ``DIR/summary.json`` when training ends: why and where it stopped (steps, seconds), and for CEM the
  returns of the paper's test protocol (Sec. 4.1: one weight vector drawn from the Gaussian per test episode;
  ``EvalCallback`` tests the mean policy), on as many episodes as ``EvalCallback`` runs.

Only training episodes (Monitors with a log file) are counted: the evaluation env's Monitor has none.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import write_json

#: Why training stopped, in ``summary.json``.
STOP_BUDGET = "budget"
STOP_CAP = "wall_clock_cap"
STOP_EPISODES = "max_episodes"
STOP_ALGORITHM = "algorithm_finished"
#: Seed of the drawn weight vectors and of the test episodes of the paper's protocol (episode e: seed + e).
SAMPLED_TEST_SEED = 1000


class BenchStop(KeyboardInterrupt):
    """Raised by the stop callback; a KeyboardInterrupt so that rl-zoo3 saves the model and goes on."""


class _State:
    """Process-wide counters shared by the patches."""

    out_dir: Path = Path(".")
    cap_s: float | None = None
    max_steps: int | None = None
    max_episodes: int | None = None
    # perf_counter() at process start: the cap counts everything (env creation, evaluations).
    process_start: float = time.perf_counter()
    learn_start: float | None = None
    learn_start_unix: float | None = None
    learn_start_cpu: float = 0.0
    eval_cpu_seconds: float = 0.0
    train_episodes: int = 0
    n_evals: int = 0
    eval_seconds: float = 0.0
    eval_episodes: int = 0
    stop_reason: str | None = None
    stop_step: int | None = None
    stop_s: float | None = None


def _since_learn_start() -> float:
    return 0.0 if _State.learn_start is None else time.perf_counter() - _State.learn_start


def _install_patches() -> None:
    """Patch SB3's Monitor and EvalCallback and rl-zoo3's ExperimentManager in this process only."""
    from rl_zoo3.exp_manager import ExperimentManager
    from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
    from stable_baselines3.common.monitor import Monitor

    original_monitor_step = Monitor.step

    def monitor_step(self: Monitor, action: Any) -> Any:
        result = original_monitor_step(self, action)
        # result = obs, reward, terminated, truncated, info; training Monitors have a results writer.
        if (result[2] or result[3]) and self.results_writer is not None:
            _State.train_episodes += 1
        return result

    Monitor.step = monitor_step  # type: ignore[method-assign]

    original_eval_step = EvalCallback._on_step

    def eval_step(self: EvalCallback) -> bool:
        # BaseCallback.on_step has already incremented n_calls: this is the test EvalCallback makes.
        evaluating = self.eval_freq > 0 and self.n_calls % self.eval_freq == 0
        start = time.perf_counter()
        start_cpu = time.process_time()
        result = original_eval_step(self)
        if evaluating:
            seconds = time.perf_counter() - start
            _State.eval_cpu_seconds += time.process_time() - start_cpu
            _State.n_evals += 1
            _State.eval_seconds += seconds
            _State.eval_episodes += self.n_eval_episodes
            rewards = self.evaluations_results[-1] if self.evaluations_results else []
            lengths = self.evaluations_length[-1] if self.evaluations_length else []
            record = {
                "timesteps": int(self.num_timesteps),
                "t_s": _since_learn_start(),
                "eval_s": seconds,
                "mean_reward": float(sum(rewards) / max(len(rewards), 1)),
                "n_episodes": len(rewards),
                "episode_steps": int(sum(lengths)),
                "train_episodes": _State.train_episodes,
            }
            with (_State.out_dir / "evals.jsonl").open("a") as file:
                file.write(json.dumps(record) + "\n")
                file.flush()
        return result

    EvalCallback._on_step = eval_step  # type: ignore[method-assign]

    class StopCallback(BaseCallback):
        """Stops training at the cap, the step budget or the episode budget (checked every env step)."""

        def _on_step(self) -> bool:
            reason = None
            if _State.cap_s is not None and time.perf_counter() - _State.process_start >= _State.cap_s:
                reason = STOP_CAP
            elif _State.max_steps is not None and self.num_timesteps >= _State.max_steps:
                reason = STOP_BUDGET
            elif _State.max_episodes is not None and _State.train_episodes >= _State.max_episodes:
                reason = STOP_EPISODES
            if reason is not None:
                _State.stop_reason = reason
                _State.stop_step = int(self.num_timesteps)
                _State.stop_s = _since_learn_start()
                raise BenchStop(reason)
            return True

    original_create_callbacks = ExperimentManager.create_callbacks

    def create_callbacks(self: ExperimentManager) -> None:
        original_create_callbacks(self)
        if not self.optimize_hyperparameters:
            self.callbacks.append(StopCallback())

    ExperimentManager.create_callbacks = create_callbacks  # type: ignore[method-assign]

    original_learn = ExperimentManager.learn

    def learn(self: ExperimentManager, model: Any) -> None:
        _State.learn_start = time.perf_counter()
        _State.learn_start_unix = time.time()
        # CPU time too: the machine is shared, so wall-clock rates depend on the load; CPU rates less so.
        _State.learn_start_cpu = time.process_time()
        sampled_returns = None
        try:
            original_learn(self, model)
            sampled_returns = sampled_test_returns(self, model)
        finally:
            learn_s = _since_learn_start()
            write_json(
                _State.out_dir / "summary.json",
                {
                    "stop_reason": _State.stop_reason or STOP_ALGORITHM,
                    "stop_step": _State.stop_step,
                    "stop_s": _State.stop_s,
                    "num_timesteps": int(model.num_timesteps),
                    "learn_s": learn_s,
                    "learn_cpu_s": time.process_time() - _State.learn_start_cpu,
                    "eval_cpu_s": _State.eval_cpu_seconds,
                    "learn_start_unix": _State.learn_start_unix,
                    "setup_s": _State.learn_start - _State.process_start,
                    "train_episodes": _State.train_episodes,
                    "n_evals": _State.n_evals,
                    "eval_s": _State.eval_seconds,
                    "eval_episodes": _State.eval_episodes,
                    "cap_s": _State.cap_s,
                    "max_steps": _State.max_steps,
                    "max_episodes": _State.max_episodes,
                    "n_envs": int(getattr(self, "n_envs", 1)),
                    "sampled_test_returns": sampled_returns,
                },
            )

    ExperimentManager.learn = learn  # type: ignore[method-assign]


def sampled_test_returns(manager: Any, model: Any) -> list[float] | None:
    """
    CEM tested as the paper tests it: ``manager.n_eval_episodes`` episodes of rl-zoo3's evaluation env, episode ``e``
    played by its own weight vector drawn from the Gaussian (seeded), with ``EvalCallback``'s ``deterministic``;
    None for any other algorithm (CEM-AH acts with its ensemble).
    """
    import torch as th
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import sync_envs_normalization

    from sb3_cemah import CEM

    if type(model) is not CEM:
        return None
    env = manager.create_envs(n_envs=1, eval_env=True)
    training_env = model.get_env()
    if training_env is not None:  # VecNormalize: the training statistics, as EvalCallback syncs them
        sync_envs_normalization(training_env, env)
    policy = model.policy
    mean = policy.mean.clone()
    generator = th.Generator().manual_seed(SAMPLED_TEST_SEED)
    # One draw at a time (the stream of the committed runs), all before the mean is overwritten.
    draws = [policy.sample_weights(1, generator)[0] for _ in range(manager.n_eval_episodes)]
    returns = []
    try:
        for episode, weights in enumerate(draws):
            policy.mean.copy_(weights)  # the policy acts with its mean: here, the draw
            env.seed(SAMPLED_TEST_SEED + episode)
            episode_returns, _ = evaluate_policy(
                model, env, n_eval_episodes=1, deterministic=manager.deterministic_eval, return_episode_rewards=True
            )
            returns.append(float(episode_returns[0]))  # type: ignore[index]
    finally:
        policy.mean.copy_(mean)
        env.close()
    return returns


def _maybe_install_plugin_from_checkout() -> None:
    """
    With ``SB3_CEMAH_BENCH_SHIM=1``, install the rl-zoo3 plugin's import hook from the checkout.

    Only for developing the suite before the package (and its ``.pth`` file) is installed; results are
    produced with the installed plugin, as users run it.
    """
    if os.environ.get("SB3_CEMAH_BENCH_SHIM") != "1":
        return
    from sb3_cemah.zoo import _pth_hook

    _pth_hook.install()


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split ``argv`` at ``--`` into this wrapper's options and rl-zoo3's arguments."""
    if "--" not in argv:
        raise SystemExit("usage: python -m benchmarks.suite.zoo_train --out DIR [options] -- <rl_zoo3.train args>")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite.zoo_train")
    parser.add_argument("--out", type=Path, required=True, help="folder for evals.jsonl and summary.json")
    parser.add_argument("--cap-s", type=float, default=None, help="wall-clock cap in seconds")
    parser.add_argument("--max-steps", type=int, default=None, help="stop at this many env steps")
    parser.add_argument("--max-episodes", type=int, default=None, help="stop after this many training episodes")
    return parser.parse_args(argv[:split]), argv[split + 1 :]


def main(argv: list[str] | None = None) -> None:
    options, zoo_args = parse_args(sys.argv[1:] if argv is None else argv)
    options.out.mkdir(parents=True, exist_ok=True)
    _State.out_dir = options.out
    _State.cap_s = options.cap_s
    _State.max_steps = options.max_steps
    _State.max_episodes = options.max_episodes
    _maybe_install_plugin_from_checkout()
    _install_patches()
    sys.argv = ["rl_zoo3.train", *zoo_args]
    runpy.run_module("rl_zoo3.train", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
