"""
Run a benchmark suite: ``python -m benchmarks.suite.run --suite quick|full|medium|probe|sensitivity [options]``.

Each run is ``python -m rl_zoo3.train --algo A --env E -f <run>/raw/zoo --seed S -n BUDGET --eval-freq F
--eval-episodes 10 --num-threads 1 [-conf hyperparams/A.yml] [-params K:V ...]`` in a subprocess, started through
:mod:`benchmarks.suite.zoo_train` (rl-zoo3's ``train`` unmodified, plus evaluation timings and the
wall-clock cap). The runner:

- writes each run's folder below ``--root`` (``runs/suite``, git-ignored) and, when it stops, packs the finished
  runs into the suite's committed table (:mod:`benchmarks.suite.store`);
- skips finished runs (a row of the table, or a folder whose ``result.json``, written last and atomically, exists)
  and restarts an interrupted one from scratch (its folder has no ``result.json``: it is deleted first);
- runs ``--jobs`` runs at a time (two on this 2-core machine; each run uses one core);
- prints one line per run start and finish, with the elapsed time and an ETA;
- on Ctrl-C (or SIGTERM) stops the running runs and exits; finished runs are never touched, the
  stopped ones are restarted next time;
- ``--dry-run`` lists the runs with their state, commands and estimated core-hours.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import write_json
from benchmarks.suite import protocol, store
from benchmarks.suite.protocol import RunSpec
from benchmarks.suite.results import RESULT_FILE, collect, raw_dir

#: Step rates measured by the probe suite (``python -m benchmarks.suite.run --suite probe``).
RATES_FILE = protocol.REPO_ROOT / "docs" / "benchmarks" / "suite" / "step_rates.json"
#: After the cap, how long a run may take to notice it (an evaluation in progress) before it is killed.
KILL_GRACE_S = 300.0
POLL_S = 1.0


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def plain_command(run: RunSpec, root: Path) -> str:
    """The equivalent plain rl-zoo3 command (what a user types), for the record and the report."""
    zoo = _display_path(raw_dir(run.run_dir(root)) / "zoo")
    return shlex.join(["python", "-m", "rl_zoo3.train", *run.zoo_args(Path(zoo))])


def wrapper_command(run: RunSpec, root: Path, python: str) -> list[str]:
    """The command actually started: :mod:`benchmarks.suite.zoo_train` around rl-zoo3's train."""
    raw = raw_dir(run.run_dir(root))
    command = [python, "-m", "benchmarks.suite.zoo_train", "--out", str(raw), "--cap-s", str(run.cap_s)]
    command += ["--max-steps", str(run.budget)]
    if run.max_episodes is not None:
        command += ["--max-episodes", str(run.max_episodes)]
    return [*command, "--", *run.zoo_args(raw / "zoo")]


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(protocol.REPO_ROOT))
    except ValueError:
        return str(path)


def finished_runs(runs: list[RunSpec], root: Path) -> set[str]:
    """
    The ids of the runs that have a result: a finished folder below ``root``, or a row of their suite's table (read
    once per suite).
    """
    in_tables = {suite: store.finished_run_ids(suite, root) for suite in {run.suite for run in runs}}
    return {
        run.run_id
        for run in runs
        if (run.run_dir(root) / RESULT_FILE).is_file() or run.run_id.partition("/")[2] in in_tables[run.suite]
    }


def is_finished(run: RunSpec, root: Path) -> bool:
    """Whether one run has a result (see :func:`finished_runs`)."""
    return run.run_id in finished_runs([run], root)


def load_rates(path: Path = RATES_FILE) -> dict[tuple[str, str], protocol.Rate]:
    """Measured rates, ``{(algo, env): Rate}``; empty if the probe has not been run."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    rates = {}
    for key, value in data.get("rates", {}).items():
        algo, env = key.split("/")
        rates[(algo, env)] = protocol.Rate(value["train_steps_per_s"], value.get("s_per_test_episode"))
    return rates


def save_probe_rates(root: Path, path: Path = RATES_FILE) -> dict[str, Any]:
    """
    Add the rates measured by the probe suite's finished runs under ``root`` to ``path``, over the rates already
    there: a probe of some algorithms (``--algos``), or in another ``--root``, keeps the others' measurements.
    """
    rates = json.loads(path.read_text()).get("rates", {}) if path.is_file() else {}
    for result_path in sorted((root / protocol.PROBE.name).glob(f"*/*/*/{RESULT_FILE}")):
        result = json.loads(result_path.read_text())
        found = result.get("metrics", {})
        if result.get("status") != "ok" or not found.get("train_steps_per_s"):
            continue
        # Per CPU-second when known: the machine is shared, and an estimate of core-hours is wanted.
        train_rate = found.get("train_steps_per_cpu_s") or found["train_steps_per_s"]
        test_s = found.get("s_per_test_episode_cpu") or found.get("s_per_test_episode")
        rates[f"{result['algo']}/{result['env']}"] = {
            "train_steps_per_s": round(train_rate, 1),
            "s_per_test_episode": test_s,
            "wall_clock_train_steps_per_s": round(found["train_steps_per_s"], 1),
            "measured": result.get("finished_utc"),
            "probe_cap_s": result.get("cap_s"),
        }
    data = {
        "note": "Measured by `python -m benchmarks.suite.run --suite probe` (90 s per run unless probe_cap_s says "
        "otherwise): env steps per CPU-second "
        "of training and CPU-seconds per test episode (wall-clock where CPU time was not recorded).",
        "rates": rates,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data)
    return data


@dataclasses.dataclass
class Running:
    """A run in progress."""

    run: RunSpec
    process: subprocess.Popen[bytes]
    started: float
    estimate_s: float
    log_file: Any
    interrupt_sent: float | None = None
    killed: bool = False


class Runner:
    """Launches runs ``jobs`` at a time and records each one's result."""

    def __init__(
        self, root: Path, jobs: int, python: str, rates: dict[tuple[str, str], protocol.Rate], poll_s: float = POLL_S
    ):
        self.root = root
        self.poll_s = poll_s
        self.jobs = jobs
        self.python = python
        self.rates = rates
        self.running: list[Running] = []
        self.start_time = time.monotonic()
        # Actual / estimated duration of the runs finished in this session, to correct the ETA.
        self.actual_s = 0.0
        self.estimated_s = 0.0

    def _log(self, message: str) -> None:
        print(f"[{dt.datetime.now(dt.timezone.utc):%H:%M:%S}] {message}", flush=True)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # One core per run: BLAS/OpenMP threads would oversubscribe the two cores shared by two runs.
        env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
        paths = [str(protocol.REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env

    def start(self, run: RunSpec) -> None:
        run_dir = run.run_dir(self.root)
        if run_dir.exists():
            # No result.json: an interrupted run. Start it again from scratch, not from its leftovers.
            shutil.rmtree(run_dir)
        raw = raw_dir(run_dir)
        raw.mkdir(parents=True)
        command = wrapper_command(run, self.root, self.python)
        write_json(
            raw / "run.json",
            {**dataclasses.asdict(run), "command": plain_command(run, self.root), "started_utc": utc_now()},
        )
        log_file = (raw / "stdout.log").open("wb")
        # A new session: a Ctrl-C in the terminal reaches the runner only, which then decides what to stop
        # (rl-zoo3 would take a SIGINT as "stop and save", and the run would look finished).
        process = subprocess.Popen(
            command,
            cwd=protocol.REPO_ROOT,
            env=self._env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        estimate = protocol.estimate_seconds(run, self.rates)
        self.running.append(Running(run, process, time.monotonic(), estimate, log_file))
        self._log(f"start  {run.run_id} (budget {run.budget:,} steps, cap {run.cap_s:.0f} s, est {estimate / 60:.1f} min)")

    def _watchdog(self, item: Running) -> None:
        """Interrupt, then kill, a run that overran its cap (the in-process cap fires between env steps only)."""
        elapsed = time.monotonic() - item.started
        if item.interrupt_sent is None and elapsed > item.run.cap_s + KILL_GRACE_S:
            self._log(f"cap+{KILL_GRACE_S:.0f} s passed, interrupting {item.run.run_id}")
            _signal_group(item.process, signal.SIGINT)
            item.interrupt_sent = time.monotonic()
        elif item.interrupt_sent is not None and time.monotonic() - item.interrupt_sent > 60.0:
            self._log(f"killing {item.run.run_id}")
            _signal_group(item.process, signal.SIGKILL)
            item.killed = True

    def finish(self, item: Running, remaining: list[RunSpec], n_total: int, n_done: int) -> None:
        item.log_file.close()
        run = item.run
        run_dir = run.run_dir(self.root)
        wall_s = time.monotonic() - item.started
        collected = collect(run_dir)
        returncode = item.process.returncode
        summary_ok = bool(collected["summary"])
        if item.killed or item.interrupt_sent is not None:
            status = "killed"
        elif returncode == 0 and summary_ok:
            status = "ok"
        else:
            status = "failed"
        started = json.loads((raw_dir(run_dir) / "run.json").read_text())
        result = {
            **started,
            "status": status,
            "returncode": returncode,
            "finished_utc": utc_now(),
            "wall_s": round(wall_s, 1),
            "stop_reason": collected["summary"].get("stop_reason"),
            "capped": collected["summary"].get("stop_reason") == "wall_clock_cap" or status == "killed",
            "stopped_at_step": collected["summary"].get("stop_step"),
            "stopped_at_s": collected["summary"].get("stop_s"),
            **collected,
        }
        if status != "ok":
            result["log_tail"] = _tail(raw_dir(run_dir) / "stdout.log", 40)
        write_json(run_dir / RESULT_FILE, result)
        self.actual_s += wall_s
        self.estimated_s += item.estimate_s
        final = result["metrics"].get("final_test_return")
        final_text = "n/a" if final is None else f"{final:.2f}"
        self._log(
            f"finish {run.run_id} {status} ({result['stop_reason']}) in {wall_s / 60:.1f} min: "
            f"{result['metrics']['env_steps']:,} steps, final test return {final_text} "
            f"| {n_done}/{n_total} done, elapsed {(time.monotonic() - self.start_time) / 60:.1f} min, "
            f"ETA {self.eta_s(remaining) / 60:.0f} min"
        )

    def eta_s(self, pending: list[RunSpec]) -> float:
        """Remaining wall-clock: estimated run durations over ``jobs``, scaled by how estimates fared so far."""
        scale = self.actual_s / self.estimated_s if self.estimated_s > 0 else 1.0
        now = time.monotonic()
        left = sum(protocol.estimate_seconds(run, self.rates) for run in pending)
        left += sum(max(item.estimate_s - (now - item.started), 0.0) for item in self.running)
        return scale * left / max(self.jobs, 1)

    def stop_all(self) -> None:
        """Stop the running runs without recording them: they are restarted next time."""
        for item in self.running:
            _signal_group(item.process, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for item in self.running:
            try:
                item.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                _signal_group(item.process, signal.SIGKILL)
                item.process.wait()
            item.log_file.close()
            self._log(f"stopped {item.run.run_id} (not recorded; it restarts next time)")
        self.running.clear()

    def expected_s(self, run: RunSpec) -> float:
        """A run's estimated duration, scaled by how the estimates of this session's finished runs fared."""
        scale = self.actual_s / self.estimated_s if self.estimated_s > 0 else 1.0
        return scale * protocol.estimate_seconds(run, self.rates)

    def run_all(self, runs: list[RunSpec], stop_launching_at: dt.datetime | None, finish_by: dt.datetime | None = None) -> int:
        """
        Run the unfinished runs of ``runs``; returns the number of runs not finished.

        :param stop_launching_at: Launch no run after this time.
        :param finish_by: Launch only runs expected to finish before this time (the others are skipped).
        """
        finished = finished_runs(runs, self.root)
        pending = [run for run in runs if run.run_id not in finished]
        n_total = len(runs)
        n_done = n_total - len(pending)
        self._log(f"{n_done}/{n_total} runs already finished, {len(pending)} to run with {self.jobs} jobs")
        self._log(f"estimated {self.eta_s(pending) / 60:.0f} min wall-clock")
        while pending or self.running:
            for item in list(self.running):
                if item.process.poll() is None:
                    self._watchdog(item)
                    continue
                self.running.remove(item)
                n_done += 1
                self.finish(item, pending, n_total, n_done)
            now = dt.datetime.now(dt.timezone.utc)
            if stop_launching_at is not None and now >= stop_launching_at and pending:
                self._log(f"past {stop_launching_at:%H:%M} UTC: not launching the {len(pending)} pending runs")
                pending = []
            while pending and len(self.running) < self.jobs:
                run = pending.pop(0)
                if finish_by is not None and now + dt.timedelta(seconds=self.expected_s(run)) > finish_by:
                    # It would not finish in time; a later (cheaper) run may.
                    self._log(f"skip   {run.run_id}: would not finish by {finish_by:%H:%M} UTC")
                    continue
                self.start(run)
            if self.running:
                time.sleep(self.poll_s)
        return n_total - n_done


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _tail(path: Path, n_lines: int) -> str:
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n_lines:])


def dry_run(runs: list[RunSpec], root: Path, rates: dict[tuple[str, str], protocol.Rate], python: str) -> None:
    """Print the runs, their state, estimated time and command, and the estimated core-hours."""
    total = left = 0.0
    finished = finished_runs(runs, root)
    for run in runs:
        estimate = protocol.estimate_seconds(run, rates)
        done = run.run_id in finished
        total += estimate
        left += 0.0 if done else estimate
        measured = "measured" if (run.algo, run.env) in rates else "guessed"
        print(f"{'done' if done else 'todo'}  {run.run_id:32s} budget {run.budget:>11,}  cap {run.cap_s / 60:5.0f} min  "
              f"est {estimate / 60:6.1f} min ({measured} rate)")  # fmt: skip
        print(f"      {plain_command(run, root)}")
    print(f"\n{len(runs)} runs, estimated {protocol.format_hours(total)} core time in all "
          f"({total / 3600:.2f} core-hours), {protocol.format_hours(left)} left; "
          f"runs use one core each, so about {protocol.format_hours(left / 2)} wall-clock with --jobs 2.")  # fmt: skip
    print(f"Started as: {shlex.join(wrapper_command(runs[0], root, python)) if runs else ''}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=sorted(protocol.SUITES), default="quick")
    parser.add_argument("--env", default="all", help="env keys of the suite, comma-separated, or all")
    parser.add_argument("--algos", nargs="+", choices=protocol.ALL_ALGOS, default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="instead of the suite's seeds")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help=f"only these variants of a grid (sensitivity) or arms; {YML_ENTRY}: the yml entries' own runs",
    )
    parser.add_argument("--budget", type=int, default=None, help="env steps per run instead of the suite's (a smoke test)")
    parser.add_argument("--cap-s", type=float, default=None, help="wall-clock cap per run instead of the suite's")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (each uses one core)")
    parser.add_argument("--root", type=Path, default=protocol.DEFAULT_RESULTS_ROOT, help="results folder")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the runs (with rl-zoo3)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and the estimated time only")
    parser.add_argument("--retry-failed", action="store_true", help="run failed/killed runs again")
    parser.add_argument("--stop-launching-at", default=None, help="HH:MM (UTC): launch no run after this time")
    parser.add_argument("--finish-by", default=None, help="HH:MM (UTC): launch only runs expected to end by then")
    return parser.parse_args(argv)


def select_envs(value: str, suite: protocol.SuiteSpec) -> list[str]:
    envs = protocol.suite_envs(suite)
    keys = envs if value == "all" else [key.strip() for key in value.split(",")]
    unknown = [key for key in keys if key not in envs]
    if unknown:
        raise SystemExit(f"env(s) {unknown} not in the {suite.name} suite; choose from {envs} or all")
    return keys


#: The ``--variants`` name of the runs of the yml entries as they are (beside a suite's arms).
YML_ENTRY = "yml"


def select_variants(runs: list[RunSpec], names: list[str]) -> list[RunSpec]:
    """The runs of the variants named (of any algorithm that has them; :data:`YML_ENTRY` for the runs without a
    variant); an unknown name is an error."""
    wanted = {None if name == YML_ENTRY else name for name in names}
    unknown = wanted - {run.variant for run in runs}
    if unknown:
        raise SystemExit(f"variant(s) {sorted(map(str, unknown))} not among the runs selected; see --dry-run")
    return [run for run in runs if run.variant in wanted]


def _deadline(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    hour, minute = (int(part) for part in value.split(":"))
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(hour=hour, minute=minute, second=0, microsecond=0)


def _forget_failed(runs: list[RunSpec], root: Path) -> None:
    for run in runs:
        path = run.run_dir(root) / RESULT_FILE
        if path.is_file() and json.loads(path.read_text()).get("status") != "ok":
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    suite = protocol.SUITES[args.suite]
    runs = protocol.expand(suite, envs=select_envs(args.env, suite), algos=args.algos, seeds=args.seeds)
    if args.variants is not None:
        runs = select_variants(runs, args.variants)
    # Overrides for smoke tests and short probes; give them their own --root, or their results count as the suite's.
    if args.budget is not None:
        runs = [dataclasses.replace(run, budget=args.budget, eval_freq=protocol.eval_freq_for(args.budget)) for run in runs]
    if args.cap_s is not None:
        runs = [dataclasses.replace(run, cap_s=args.cap_s) for run in runs]
    root = args.root.resolve()
    rates = load_rates()
    if args.dry_run:
        dry_run(runs, root, rates, args.python)
        return 0
    if args.retry_failed:
        _forget_failed(runs, root)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    runner = Runner(root, args.jobs, args.python, rates)
    try:
        left = runner.run_all(runs, _deadline(args.stop_launching_at), _deadline(args.finish_by))
    except KeyboardInterrupt:
        runner._log("interrupted: stopping the running runs; finished runs are kept")
        runner.stop_all()
        return 130
    finally:
        if suite is protocol.PROBE:
            save_probe_rates(root)
        if (root / suite.name).is_dir():
            runner._log(f"packed the finished runs into {protocol.repo_relative(store.pack(root, suite.name))}")
    runner._log(f"done; {left} runs not finished" if left else "all runs finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
