"""
Raw results of one run: rl-zoo3's files turned into two small CSVs and a summary.

A finished run folder holds (written by :mod:`benchmarks.suite.run`) what the report and the plots read,
and which is committed:

- ``train.csv``: one row per training episode: ``env_steps,wall_s,return,length``;
- ``eval.csv``: one row per evaluation: ``env_steps,wall_s,mean_return,std_return,eval_s``;
- ``result.json``: the run's specification, status, timings and metrics; written last and atomically, its
  presence marks the run finished;

and, in ``raw/`` (git-ignored: about 20 files and 200 kB per run, models excluded), what they are made from:

- ``raw/zoo/``: rl-zoo3's log folder (``-f``): Monitor CSVs (training episodes), ``evaluations.npz``
  (``EvalCallback``), the model, ``config.yml``;
- ``raw/evals.jsonl``, ``raw/summary.json``: timings written by :mod:`benchmarks.suite.zoo_train`;
- ``raw/run.json``: the run's specification, written when it starts;
- ``raw/stdout.log``: rl-zoo3's output.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_csv

RESULT_FILE = "result.json"
TRAIN_CSV = "train.csv"
EVAL_CSV = "eval.csv"
#: Sub-folder of a run folder for the raw files (git-ignored).
RAW_DIR = "raw"


def raw_dir(run_dir: Path) -> Path:
    """The folder of a run's raw files: rl-zoo3's log folder, the wrapper's timings, the start record, the output."""
    return run_dir / RAW_DIR


def find_zoo_run(zoo_dir: Path) -> Path | None:
    """The ``<algo>/<env>_<n>`` folder rl-zoo3 created below ``zoo_dir`` (the latest if several)."""
    candidates = [p.parent for p in zoo_dir.glob("*/*/*") if p.is_file() and p.name.endswith((".csv", ".npz"))]
    candidates += [p for p in zoo_dir.glob("*/*") if p.is_dir()]
    if not candidates:
        return None
    return max(set(candidates), key=lambda p: p.stat().st_mtime)


def read_monitor_episodes(zoo_run: Path) -> list[tuple[float, float, int]]:
    """
    Training episodes of all Monitor files, ``(unix_time_at_end, return, length)`` sorted by time.

    Each ``<rank>.monitor.csv`` starts with a JSON header holding ``t_start``; its ``t`` column is the
    seconds from there to the end of the episode.
    """
    episodes: list[tuple[float, float, int]] = []
    for path in sorted(zoo_run.glob("*.monitor.csv")):
        with path.open() as file:
            header = file.readline()
            if not header.startswith("#"):
                continue
            t_start = float(json.loads(header[1:])["t_start"])
            for row in csv.DictReader(file):
                try:
                    episodes.append((t_start + float(row["t"]), float(row["r"]), int(float(row["l"]))))
                except (KeyError, ValueError):
                    continue  # a half-written last line of an interrupted run
    episodes.sort(key=lambda episode: episode[0])
    return episodes


def training_curve(zoo_run: Path, learn_start_unix: float | None) -> list[dict[str, float]]:
    """
    One row per training episode: env steps so far (sum of the lengths of finished episodes, an
    underestimate by the steps of episodes still running in other env slots), wall-clock seconds since
    training started, return, length.
    """
    episodes = read_monitor_episodes(zoo_run)
    if not episodes:
        return []
    origin = learn_start_unix if learn_start_unix is not None else episodes[0][0]
    rows = []
    steps = 0
    for end_time, episode_return, length in episodes:
        steps += length
        rows.append({"env_steps": steps, "wall_s": round(end_time - origin, 3), "return": episode_return, "length": length})
    return rows


def read_evals_jsonl(path: Path) -> list[dict[str, Any]]:
    """The evaluation records of :mod:`benchmarks.suite.zoo_train` (a torn last line is dropped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def evaluation_curve(zoo_run: Path | None, evals_jsonl: Path) -> list[dict[str, float]]:
    """
    One row per evaluation: env steps, wall-clock seconds since training started, mean and std of the
    test returns (``evaluations.npz``), seconds the evaluation took (``evals.jsonl``).
    """
    timing = read_evals_jsonl(evals_jsonl)
    timing_by_step = {record["timesteps"]: record for record in timing}
    rows: list[dict[str, float]] = []
    npz = zoo_run / "evaluations.npz" if zoo_run is not None else None
    if npz is not None and npz.is_file():
        data = np.load(npz)
        for step, results in zip(data["timesteps"], data["results"], strict=False):
            record = timing_by_step.get(int(step), {})
            rows.append(
                {
                    "env_steps": int(step),
                    "wall_s": round(float(record.get("t_s", float("nan"))), 3),
                    "mean_return": float(np.mean(results)),
                    "std_return": float(np.std(results)),
                    "eval_s": round(float(record.get("eval_s", float("nan"))), 3),
                }
            )
    else:
        # evaluations.npz is written after each evaluation, but keep the timing file's view if it is gone.
        for record in timing:
            rows.append(
                {
                    "env_steps": record["timesteps"],
                    "wall_s": round(record["t_s"], 3),
                    "mean_return": record["mean_reward"],
                    "std_return": float("nan"),
                    "eval_s": round(record["eval_s"], 3),
                }
            )
    return rows


def read_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a run's CSV, values as floats; none when the file is missing (a run not collected yet)."""
    if not path.is_file():
        return []
    with path.open() as file:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)]


def metrics(summary: dict[str, Any], train_rows: list[dict[str, float]], eval_rows: list[dict[str, float]]) -> dict[str, Any]:
    """
    Derived numbers of one run (the report's table entries).

    Seconds per training episode are training time (learning minus evaluations) over training episodes;
    seconds per test episode are evaluation time over evaluation episodes (the paper's Table 1).
    """
    learn_s = float(summary.get("learn_s") or 0.0)
    eval_s = float(summary.get("eval_s") or 0.0)
    train_s = max(learn_s - eval_s, 0.0)
    n_train = int(summary.get("train_episodes") or len(train_rows))
    n_test = int(summary.get("eval_episodes") or 0)
    steps = int(summary.get("num_timesteps") or 0)
    last_eval = eval_rows[-1] if eval_rows else None
    train_cpu_s = float(summary.get("learn_cpu_s") or 0.0) - float(summary.get("eval_cpu_s") or 0.0)
    return {
        "env_steps": steps,
        "learn_s": round(learn_s, 2),
        "train_s": round(train_s, 2),
        "eval_s": round(eval_s, 2),
        "train_episodes": n_train,
        "test_episodes": n_test,
        "s_per_train_episode": train_s / n_train if n_train else None,
        "s_per_test_episode": eval_s / n_test if n_test else None,
        "train_steps_per_s": steps / train_s if train_s > 0 else None,
        "train_steps_per_cpu_s": steps / train_cpu_s if train_cpu_s > 0 else None,
        "s_per_test_episode_cpu": float(summary["eval_cpu_s"]) / n_test if n_test and "eval_cpu_s" in summary else None,
        "final_test_return": last_eval["mean_return"] if last_eval else None,
        # CEM only: the final model tested as the paper tests CEM (one weight vector drawn per test episode).
        "final_sampled_test_return": (
            float(np.mean(summary["sampled_test_returns"])) if summary.get("sampled_test_returns") else None
        ),
        "final_test_step": int(last_eval["env_steps"]) if last_eval else None,
        "best_test_return": max(row["mean_return"] for row in eval_rows) if eval_rows else None,
        "n_evals": len(eval_rows),
        "last_train_return_mean100": (float(np.mean([row["return"] for row in train_rows[-100:]])) if train_rows else None),
    }


def collect(run_dir: Path) -> dict[str, Any]:
    """
    Turn a run folder's raw files (in ``raw/``) into ``train.csv`` and ``eval.csv`` and return its metrics.

    Works on a finished run and on an interrupted one (whatever was flushed to disk).
    """
    raw = raw_dir(run_dir)
    summary_path = raw / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    zoo_run = find_zoo_run(raw / "zoo") if (raw / "zoo").is_dir() else None
    train_rows = training_curve(zoo_run, summary.get("learn_start_unix")) if zoo_run is not None else []
    eval_rows = evaluation_curve(zoo_run, raw / "evals.jsonl")
    write_csv(run_dir / TRAIN_CSV, train_rows, ["env_steps", "wall_s", "return", "length"])
    write_csv(run_dir / EVAL_CSV, eval_rows, ["env_steps", "wall_s", "mean_return", "std_return", "eval_s"])
    return {
        "summary": summary,
        "metrics": metrics(summary, train_rows, eval_rows),
        "zoo_run": str(zoo_run.relative_to(run_dir)) if zoo_run is not None else None,
    }


def in_run_folders(suite_dir: Path, relative: str) -> list[Path]:
    """The file ``relative`` of every run folder below ``suite_dir`` (``<env>/<algo>/[<variant>/]seed<n>``), sorted."""
    return sorted([*suite_dir.glob(f"*/*/*/{relative}"), *suite_dir.glob(f"*/*/*/*/{relative}")])


def load_results(root: Path, suite: str) -> list[dict[str, Any]]:
    """
    Every ``result.json`` of a suite below ``root``, sorted by env, algorithm, [variant,] seed: run folders are
    ``<env>/<algo>/seed<n>``, or ``<env>/<algo>/<variant>/seed<n>`` in a grid (:class:`protocol.RunSpec`).
    """
    results = []
    for path in in_run_folders(root / suite, RESULT_FILE):
        data = json.loads(path.read_text())
        data["_dir"] = str(path.parent)
        results.append(data)
    return results
