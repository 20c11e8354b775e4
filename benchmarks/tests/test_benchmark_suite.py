"""
The benchmark suite's runner (resumability, Ctrl-C) and report, on fake runs and one tiny real one.

The fake runs replace the interpreter the runner starts (``--python``) by a script that writes what
:mod:`benchmarks.suite.zoo_train` and rl-zoo3 write (Monitor CSV, ``evaluations.npz``, ``evals.jsonl``,
``summary.json``), so the runner's logic is checked in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rl_zoo3")
pytest.importorskip("matplotlib")

from benchmarks.suite import aggregate, protocol, report, results, store
from benchmarks.suite.run import Runner, is_finished, save_probe_rates
from benchmarks.suite.run import main as run_main

REPO_ROOT = Path(__file__).resolve().parents[2]

FAKE_PYTHON = textwrap.dedent(
    f"""\
    #!{sys.executable}
    # Stands for `python -m benchmarks.suite.zoo_train --out DIR ... -- <rl-zoo3 args>`.
    import json, os, sys, time
    from pathlib import Path
    import numpy as np

    argv = sys.argv[1:]
    out = Path(argv[argv.index("--out") + 1])
    zoo_args = argv[argv.index("--") + 1:]
    algo = zoo_args[zoo_args.index("--algo") + 1]
    seed = int(zoo_args[zoo_args.index("--seed") + 1])
    log_folder = Path(zoo_args[zoo_args.index("-f") + 1])
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(f"{{algo}}/{{seed}}\\n")
    if algo in os.environ.get("FAKE_FAIL", "").split(","):
        sys.exit(3)
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
    run = log_folder / algo / "Env_1"
    run.mkdir(parents=True)
    start = time.time()
    with open(run / "0.monitor.csv", "w") as f:
        f.write(json.dumps({{"t_start": start, "env_id": "Env"}}).join(["#", "\\n"]))
        f.write("r,l,t\\n")
        for i in range(1, 301):
            f.write(f"{{i + seed}},10,{{i * 0.01}}\\n")
    steps = np.array([1000, 2000, 3000])
    returns = np.array([[1.0, 2.0], [50.0, 60.0], [200.0 + seed, 210.0]])
    np.savez(run / "evaluations.npz", timesteps=steps, results=returns, ep_lengths=np.ones((3, 2)) * 10)
    with open(out / "evals.jsonl", "w") as f:
        for i, step in enumerate(steps):
            f.write(json.dumps({{"timesteps": int(step), "t_s": 1.0 + i, "eval_s": 0.2, "mean_reward": 0.0}}) + "\\n")
    # CEM's final model tested as the paper does: worse than its mean policy (205 + seed / 2).
    sampled = [100.0 + seed, 110.0] if algo == "cem" else None
    (out / "summary.json").write_text(json.dumps({{
        "stop_reason": "budget", "stop_step": 3000, "stop_s": 3.0, "num_timesteps": 3000, "learn_s": 3.0,
        "learn_start_unix": start, "train_episodes": 300, "n_evals": 3, "eval_s": 0.6, "eval_episodes": 6,
        "sampled_test_returns": sampled}}))
    """
)


@pytest.fixture
def fake_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "fake_python"
    path.write_text(FAKE_PYTHON)
    path.chmod(0o755)
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "launches.log"))
    return path


def _runs(algos: tuple[str, ...] = ("cemah", "cem"), seeds: tuple[int, ...] = (0, 1)) -> list[protocol.RunSpec]:
    return [
        protocol.RunSpec(
            suite="quick", env="reacher", algo=algo, seed=seed, budget=3000, eval_freq=1000, cap_s=60.0, max_episodes=None
        )
        for seed in seeds
        for algo in algos
    ]


def _launches(tmp_path: Path) -> list[str]:
    path = tmp_path / "launches.log"
    return path.read_text().split() if path.is_file() else []


def test_runner_skips_finished_and_restarts_interrupted(tmp_path: Path, fake_python: Path) -> None:
    root = tmp_path / "results"
    runs = _runs()
    # An interrupted run: started (run.json, partial files) but no result.json.
    leftover = runs[1].run_dir(root)
    results.raw_dir(leftover).mkdir(parents=True)
    (results.raw_dir(leftover) / "run.json").write_text("{}")
    (leftover / "stale.txt").write_text("from the interrupted attempt")

    assert Runner(root, jobs=2, python=str(fake_python), rates={}, poll_s=0.1).run_all(runs, None) == 0
    assert sorted(_launches(tmp_path)) == ["cem/0", "cem/1", "cemah/0", "cemah/1"]
    assert not (leftover / "stale.txt").exists()
    for run in runs:
        result = json.loads((run.run_dir(root) / results.RESULT_FILE).read_text())
        assert result["status"] == "ok"
        assert result["metrics"]["final_test_return"] == pytest.approx(np.mean([200.0 + run.seed, 210.0]))
        assert result["metrics"]["s_per_train_episode"] == pytest.approx(2.4 / 300)
        assert result["command"].startswith("python -m rl_zoo3.train --algo")
        rows = results.read_csv(run.run_dir(root) / results.EVAL_CSV)
        assert [row["env_steps"] for row in rows] == [1000, 2000, 3000]
        assert len(results.read_csv(run.run_dir(root) / results.TRAIN_CSV)) == 300
        # What the report reads (committed) beside the git-ignored raw files.
        assert sorted(path.name for path in run.run_dir(root).iterdir()) == ["eval.csv", "raw", "result.json", "train.csv"]

    # Second pass: everything is finished, nothing is launched again.
    (tmp_path / "launches.log").unlink()
    assert Runner(root, jobs=2, python=str(fake_python), rates={}, poll_s=0.1).run_all(runs, None) == 0
    assert _launches(tmp_path) == []


def test_failed_run_is_recorded_not_hidden(tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "cem")
    root = tmp_path / "results"
    runs = _runs(seeds=(0,))
    Runner(root, jobs=1, python=str(fake_python), rates={}, poll_s=0.1).run_all(runs, None)
    failed = json.loads((runs[1].run_dir(root) / results.RESULT_FILE).read_text())
    assert failed["status"] == "failed"
    assert failed["returncode"] == 3


def test_ctrl_c_keeps_finished_runs(tmp_path: Path, fake_python: Path) -> None:
    """A Ctrl-C stops the running runs unrecorded; the finished ones stay; a re-run completes the rest."""
    root = tmp_path / "results"
    script = tmp_path / "drive.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import signal, sys
            from pathlib import Path
            # A terminal's Ctrl-C; under a background shell (`cmd &`, nohup) SIGINT arrives ignored.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sys.path.insert(0, {str(REPO_ROOT)!r})
            from benchmarks.suite import protocol
            from benchmarks.suite.run import Runner
            runs = [protocol.RunSpec("quick", "reacher", "cemah", 0, 3000, 1000, 60.0, None),
                    protocol.RunSpec("quick", "reacher", "cem", 0, 3000, 1000, 60.0, None)]
            runner = Runner(Path({str(root)!r}), 1, {str(fake_python)!r}, {{}}, poll_s=0.1)
            try:
                runner.run_all(runs, None)
            except KeyboardInterrupt:
                runner.stop_all()
                sys.exit(130)
            """
        )
    )
    # One job and slow runs: the Ctrl-C arrives while the first run is running.
    process = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "FAKE_SLEEP": "20"})
    runs = _runs(seeds=(0,))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (results.raw_dir(runs[0].run_dir(root)) / "run.json").exists():
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    # The interrupted run left no result: it is not finished and will be restarted.
    assert not is_finished(runs[0], root)
    assert not is_finished(runs[1], root)
    assert (results.raw_dir(runs[0].run_dir(root)) / "run.json").exists()
    Runner(root, jobs=2, python=str(fake_python), rates={}, poll_s=0.1).run_all(runs, None)
    assert all(is_finished(run, root) for run in runs)


def test_report_from_fake_runs(tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "results"
    runs = _runs(algos=("cemah", "cem", "ars"), seeds=(0, 1))
    Runner(root, jobs=2, python=str(fake_python), rates={}, poll_s=0.1).run_all(runs, None)
    # An unfinished run must be listed too.
    unfinished = protocol.RunSpec("quick", "reacher", "a2c", 0, 3000, 1000, 60.0, None).run_dir(root)
    results.raw_dir(unfinished).mkdir(parents=True)
    (results.raw_dir(unfinished) / "run.json").write_text("{}")
    monkeypatch.setattr(report, "PLOTS_DIR", tmp_path / "plots")
    blocks = report.build("quick", root)
    assert blocks["verdicts"].startswith("- **reacher**: CEM-AH final test return")
    text = "\n".join(blocks.values())
    assert "| reacher | CEM-AH | 205.25 ± 0.25 (2 seeds)" in text
    assert "reacher/a2c/seed0 | not finished" in text
    for algo in ("cemah", "cem", "ars"):
        for seed in (0, 1):
            assert f"reacher/{algo}/seed{seed}" in text
    assert "rl-zoo3 A2C (15) | CEM-AH | 2/2 | 2,000 |" in text
    assert (tmp_path / "plots" / "quick_reacher.png").stat().st_size > 10_000
    # The fake runs are identical but for the seed: every method ties, and the aggregates cover all three.
    assert "Ties with CEM (difference 0.00 [" in text
    assert "| CEM-AH | 2 | " in text
    for name in ("iqm", "improvement", "profiles"):
        assert (tmp_path / "plots" / f"quick_aggregate_{name}.png").is_file()
    # CEM's runs also tested as the paper tests CEM: a row, a verdict and the paper's gain under each test.
    assert "| reacher | CEM drawn per test episode (the paper's test) | 105.25 ± 0.25 (2 seeds) |  | " in text
    assert "CEM drawn per test episode (the paper's test) (difference 100.00 [" in text
    assert "against CEM's mean policy, CEM-AH's IQM is 1.00x CEM's: the paper's 1.158x does not reproduce" in text
    assert "under the paper's test of CEM, CEM-AH's IQM is" in text
    # The paper's table lists the paper's envs only in a suite that runs them.
    assert "| ant | CEM | 739.59 | n/a | not run yet |  |" in blocks["paper"]
    assert report.Report("medium", root).paper_table() == ["The paper reports none of this suite's envs."]


def test_closed_loop_arm_is_a_method_of_its_own(tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The medium and quick suites run CEM-AH's closed-loop arm beside its yml entry; the report shows it as a method
    of its own (rows, aggregate, its P(> CEM) and P(> CEM drawn)), not mixed into CEM-AH's runs."""
    arm_runs = [run for run in protocol.expand(protocol.MEDIUM) if run.variant == "ensemble_mean"]
    assert len(arm_runs) == 4 * 5 and {run.algo for run in arm_runs} == {"cemah"}
    assert arm_runs[0].params == ("generated_candidates:1", "generated_from:'ensemble_mean'")
    assert arm_runs[0].run_id.endswith("/cemah/ensemble_mean/seed0")
    root = tmp_path / "results"
    arm = [
        dataclasses.replace(run, variant="ensemble_mean", params=protocol.ENSEMBLE_MEAN_ARM.params)
        for run in _runs(("cemah",))
    ]
    Runner(root, jobs=2, python=str(fake_python), rates={}, poll_s=0.1).run_all([*_runs(("cemah", "cem")), *arm], None)
    monkeypatch.setattr(report, "PLOTS_DIR", tmp_path / "plots")
    text = "\n".join(report.build("quick", root).values())
    name = report.ALGO_NAMES["cemah/ensemble_mean"]
    assert name == "CEM-AH closed loop (ensemble_mean)"
    assert "| reacher | CEM-AH | 205.25 ± 0.25 (2 seeds)" in text  # the arm's runs are not CEM-AH's
    assert f"| reacher | {name} | 205.25 ± 0.25 (2 seeds)" in text
    assert f"| {name} | 2 | " in text
    assert f"P({name} > CEM) " in text and f"P({name} > CEM drawn per test episode (the paper's test)) " in text
    # The run list and the commands tell the arm's runs from CEM-AH's.
    assert "| reacher/cemah/seed0 | ok |" in text and "| reacher/cemah/ensemble_mean/seed0 | ok |" in text
    commands = [line for line in text.splitlines() if line.startswith("    python -m rl_zoo3.train --algo cemah")]
    assert len(commands) == 2 and sum("generated_from" in line for line in commands) == 1


def test_merge_replaces_the_rerun_runs_only(tmp_path: Path, fake_python: Path) -> None:
    """A re-run below another root replaces the rows of its run ids in the target table and keeps the others."""
    first, rerun = tmp_path / "first", tmp_path / "second"
    Runner(first, jobs=2, python=str(fake_python), rates={}, poll_s=0.1).run_all(_runs(seeds=(0, 1)), None)
    store.pack(first, "quick")
    Runner(rerun, jobs=2, python=str(fake_python), rates={}, poll_s=0.1).run_all(_runs(algos=("cem",), seeds=(1, 2)), None)
    before = store.load("quick", first)
    merged = store.merge(rerun, "quick", target_root=first)
    assert merged == ["reacher/cem/seed1", "reacher/cem/seed2"]
    after = {run["run_id"]: run for run in store.load("quick", first)}
    assert sorted(after) == [
        "reacher/cem/seed0",
        "reacher/cem/seed1",
        "reacher/cem/seed2",
        "reacher/cemah/seed0",
        "reacher/cemah/seed1",
    ]
    kept = {run["run_id"]: run for run in before}
    assert after["reacher/cem/seed0"] == kept["reacher/cem/seed0"]
    assert "/second/" in after["reacher/cem/seed1"]["command"] and "/second/" not in kept["reacher/cem/seed1"]["command"]
    with pytest.raises(ValueError, match="own results root"):
        store.merge(first, "quick", target_root=first)


def test_aggregate_statistics() -> None:
    scores = {"a": {"x": [1.0, 2.0, 3.0], "y": [1.0, 1.0]}, "b": {"x": [0.0, 0.1], "y": [0.0, 0.2]}, "c": {"x": [5.0]}}
    matrices = aggregate.score_matrices(scores, ["x", "y"])
    # Two runs per env at most for "a" (its fewest), none for the single-seed "c".
    assert sorted(matrices) == ["a", "b"]
    assert matrices["a"].shape == (2, 2)
    improvement = aggregate.probability_of_improvement(matrices, "a")["b"]
    assert improvement.value == 1.0 and improvement.low == 1.0
    assert aggregate.normalise([5.0], random=0.0, reference=10.0)[0] == 0.5
    assert aggregate.verdict(aggregate.difference([10.0, 11.0, 12.0], [0.0, 1.0, 2.0])) == "beats"
    assert aggregate.verdict(aggregate.difference([0.0, 10.0], [5.0, 6.0])) == "ties"
    assert aggregate.verdict(aggregate.difference([1.0, 2.0], [3.0])) == "no verdict (1 seed)"


def test_protocol_quick_suite() -> None:
    runs = protocol.expand(protocol.QUICK)
    assert {run.env for run in runs} == set(protocol.PAPER_ENVS)
    for env in protocol.PAPER_ENVS:
        env_runs = [run for run in runs if run.env == env]
        assert len({run.budget for run in env_runs}) == 1, "same budget for every algorithm on an env"
        overridden = protocol.QUICK.cell_eval_freqs or {}
        assert all(
            run.budget // run.eval_freq == protocol.EVAL_POINTS for run in env_runs if (env, run.algo) not in overridden
        )
    assert {(run.env, run.algo): run.eval_freq for run in runs if run.algo in protocol.QTOPT_ALGOS and run.env == "maze"} == {
        ("maze", "qtopt"): 5_000,
        ("maze", "qtopt_ddpg"): 5_000,
    }
    assert {run.env for run in runs if run.algo == "qtopt"} == set(protocol.PAPER_ENVS)
    assert sorted(run.seed for run in runs if run.env == "maze" and run.algo == "cemah" and run.variant is None) == [0, 1, 2]
    assert [run.seed for run in runs if run.env == "maze" and run.algo == "dqn"] == [0]
    assert not [run for run in runs if run.algo == "dqn" and run.env != "maze"]
    total_s = sum(protocol.estimate_seconds(run, {}) for run in runs)
    assert total_s < 9 * 3600


def test_probe_rates_keep_the_other_measurements(tmp_path: Path) -> None:
    """A probe of some algorithms (or in another root) adds its rates to the file and keeps the others'."""
    rates_file = tmp_path / "step_rates.json"
    rates_file.write_text(json.dumps({"rates": {"cem/maze": {"train_steps_per_s": 7000.0}}}))
    result = {"status": "ok", "algo": "qtopt", "env": "maze", "finished_utc": "now", "cap_s": 90.0}
    result["metrics"] = {"train_steps_per_s": 40.0, "train_steps_per_cpu_s": 50.0, "s_per_test_episode": 4.0}
    run_dir = tmp_path / "results" / "probe" / "maze" / "qtopt" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / results.RESULT_FILE).write_text(json.dumps(result))
    rates = save_probe_rates(tmp_path / "results", rates_file)["rates"]
    assert rates["cem/maze"] == {"train_steps_per_s": 7000.0}
    assert rates["qtopt/maze"]["train_steps_per_s"] == 50.0
    assert rates["qtopt/maze"]["probe_cap_s"] == 90.0
    assert json.loads(rates_file.read_text())["rates"] == rates


def test_protocol_medium_suite(capsys: pytest.CaptureFixture[str]) -> None:
    runs = protocol.expand(protocol.MEDIUM)
    assert len(runs) == 4 * 3 * 5 + 4 * 5  # 5 seeds of cemah, cem, ars, and of CEM-AH's closed-loop arm
    assert {run.env_id for run in runs} == {"Swimmer-v5", "Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"}
    assert {run.budget for run in runs} == {3_000_000}
    # rl-zoo3 2.9 has no v5 entries: every run names one of this repository's yml files.
    assert all(run.conf_file() is not None for run in runs)
    # The smoke-test overrides: one run, its own budget and evaluation schedule.
    assert run_main(["--suite", "medium", "--env", "hopper", "--algos", "cemah", "--seeds", "0", "--budget", "2000",
                     "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "2 runs" in out  # CEM-AH and its closed-loop arm
    assert "--algo cemah --env Hopper-v5" in out and "-n 2000 --eval-freq 100 " in out
    # `--variants yml` keeps the yml entry's run without the arm, `--variants ensemble_mean` the arm alone.
    for variant, params in (("yml", False), ("ensemble_mean", True)):
        assert run_main(["--suite", "medium", "--env", "hopper", "--algos", "cemah", "--seeds", "0", "--variants", variant,
                         "--dry-run"]) == 0  # fmt: skip
        out = capsys.readouterr().out
        assert "1 runs" in out and ("generated_from" in out) == params


def test_zoo_train_real_tiny_run(tmp_path: Path) -> None:
    """A real rl-zoo3 run through the wrapper: the step budget stops it and the timings are written."""
    out = tmp_path / "run"
    raw = results.raw_dir(out)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "benchmarks.suite.zoo_train", "--out", str(raw), "--cap-s", "120", "--max-steps", "1000"]
    command += ["--", "--algo", "a2c", "--env", "CartPole-v1", "-n", "1000", "-f", str(raw / "zoo"), "--seed", "0"]
    command += ["--eval-freq", "500", "--eval-episodes", "2", "--num-threads", "1"]
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=120)
    summary = json.loads((raw / "summary.json").read_text())
    assert summary["stop_reason"] == "budget"
    assert summary["num_timesteps"] == 1000
    assert summary["n_evals"] == 2
    collected = results.collect(out)
    # rl-zoo3's EvalCallback runs every eval_freq // n_envs VecEnv steps, each n_envs env steps.
    (config,) = (raw / "zoo").glob("a2c/CartPole-v1_*/CartPole-v1/config.yml")
    n_envs = dict(yaml.load(config.read_text(), Loader=yaml.UnsafeLoader))["n_envs"]
    assert n_envs > 1  # so that the evaluation steps differ from multiples of 500
    expected = [k * (500 // n_envs) * n_envs for k in (1, 2)]
    assert [row["env_steps"] for row in results.read_csv(out / results.EVAL_CSV)] == expected
    assert collected["metrics"]["train_episodes"] > 0


def test_zoo_train_tests_cem_as_the_paper_does(tmp_path: Path) -> None:
    """A real CEM run through the wrapper: its final model is also tested with one drawn weight vector per episode."""
    raw = results.raw_dir(tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "benchmarks.suite.zoo_train", "--out", str(raw), "--cap-s", "120", "--max-steps", "2000"]
    command += ["--", "--algo", "cem", "--env", "CartPole-v1", "-n", "2000", "-f", str(raw / "zoo"), "--seed", "0"]
    command += ["--eval-freq", "1000", "--eval-episodes", "3", "--num-threads", "1"]
    command += ["-params", "population_size:10", "elite_frac:0.2"]
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=120)
    summary = json.loads((raw / "summary.json").read_text())
    returns = summary["sampled_test_returns"]
    assert len(returns) == 3 and all(1 <= value <= 500 for value in returns)
    assert results.collect(tmp_path / "run")["metrics"]["final_sampled_test_return"] == pytest.approx(np.mean(returns))


def test_fill_readme_keeps_prose(tmp_path: Path) -> None:
    """The benchmark harness rewrites only its generated blocks, literally, and appends those a README lacks."""
    from benchmarks.common import fill_readme

    path = tmp_path / "README.md"
    fill_readme(path, "Title", {"table": "| a |"})
    assert path.read_text() == "# Title\n\n<!-- generated: table -->\n| a |\n<!-- end generated: table -->\n"
    path.write_text(path.read_text().replace("# Title\n", "# Title\n\nProse.\n") + "\nMore prose.\n")
    fill_readme(path, "Title", {"table": r"| b \1 |", "new": "x"})
    text = path.read_text()
    assert "Prose." in text and "More prose." in text and r"| b \1 |" in text and "| a |" not in text
    assert text.endswith("<!-- generated: new -->\nx\n<!-- end generated: new -->\n")
