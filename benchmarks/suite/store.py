"""
The committed results of a suite: one compressed table, one row per finished run.

While a suite runs, each run has a folder below the results root (``runs/suite/<suite>/...``, git-ignored; see
:mod:`benchmarks.suite.results`). :func:`pack` turns the finished folders into ``docs/benchmarks/suite/data/<suite>.jsonl.gz``:
one JSON line per run with its ``result.json``, its evaluations (every one) and its training curve (the rolling mean
of :data:`TRAIN_WINDOW` episodes at no more than :data:`TRAIN_POINTS` points). Rows already in the table and not on
disk are kept, so that packing a partial re-run updates its runs only. The report and the plots read the table alone.

A re-run made below another root (``python -m benchmarks.suite.run --root runs/rerun ...``) replaces its runs in the
committed table with ``python -m benchmarks.suite.store --suite SUITE --from runs/rerun`` (:func:`merge`).
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import cpu_model_name, package_version, read_table, write_table
from benchmarks.suite import protocol
from benchmarks.suite.plots import TRAIN_WINDOW, rolling_mean
from benchmarks.suite.results import EVAL_CSV, TRAIN_CSV, load_results, read_csv

__all__ = ["DATA_DIR", "TRAIN_POINTS", "TRAIN_WINDOW", "load", "merge", "pack", "table_path"]

DATA_DIR = protocol.REPO_ROOT / "docs" / "benchmarks" / "suite" / "data"
#: Points kept per training curve.
TRAIN_POINTS = 300
EVAL_KEYS = ("env_steps", "wall_s", "mean_return", "std_return", "eval_s")


def machine_description() -> str:
    """CPU model, cores, memory and the library versions of the machine that made the runs (recorded when they are packed)."""
    memory = "?"
    try:
        with open("/proc/meminfo") as file:
            memory = f"{int(file.readline().split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    distributions = (
        "torch", "stable_baselines3", "sb3_contrib", "rl_zoo3", "gymnasium", "pybullet", "pybullet_envs_gymnasium", "minigrid"
    )  # fmt: skip
    versions = [f"{distribution} {package_version(distribution)}" for distribution in distributions]
    return (
        f"{cpu_model_name()}, {os.cpu_count()} cores, {memory} RAM, no GPU; Linux {platform.release()}, "
        f"Python {platform.python_version()}; {', '.join(versions)}."
    )


def machines(results: list[dict[str, Any]]) -> list[str]:
    """The machines the runs were made on (each run's ``machine``, recorded when it was packed), most runs first."""
    counts: dict[str, int] = {}
    for result in results:
        machine = result.get("machine", "not recorded")
        counts[machine] = counts.get(machine, 0) + 1
    return [f"{machine} ({count} runs)" for machine, count in sorted(counts.items(), key=lambda item: -item[1])]


def table_path(suite: str, root: Path | None = None) -> Path:
    """
    The table of ``suite``: the committed one (``docs/benchmarks/suite/data/<suite>.jsonl.gz``) for the default results
    root, ``<root>/<suite>.jsonl.gz`` for another root (a smoke test, a probe with its own ``--root``).
    """
    if root is None or root.resolve() == protocol.DEFAULT_RESULTS_ROOT.resolve():
        return DATA_DIR / f"{suite}.jsonl.gz"
    return root / f"{suite}.jsonl.gz"


def training_curve(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """
    The rolling mean of :data:`TRAIN_WINDOW` training returns (fewer at the start), at most :data:`TRAIN_POINTS` points.

    :param rows: One per training episode, with ``env_steps``, ``wall_s`` and ``return``.
    :return: Lists ``env_steps``, ``wall_s`` and ``return_mean`` of equal length.
    """
    if not rows:
        return {"env_steps": [], "wall_s": [], "return_mean": []}
    smoothed = rolling_mean(np.array([row["return"] for row in rows]), TRAIN_WINDOW)
    keep = np.unique(np.linspace(0, len(rows) - 1, min(TRAIN_POINTS, len(rows))).round().astype(int))
    return {
        "env_steps": [rows[i]["env_steps"] for i in keep],
        "wall_s": [round(rows[i]["wall_s"], 2) for i in keep],
        "return_mean": [round(float(smoothed[i]), 4) for i in keep],
    }


def _row(result: dict[str, Any], run_id: str) -> dict[str, Any]:
    run_dir = Path(result["_dir"])
    evals = read_csv(run_dir / EVAL_CSV)
    row = {key: value for key, value in result.items() if not key.startswith("_")}
    row["run_id"] = run_id
    # Packed right after the runs finish (benchmarks.suite.run): the machine they ran on.
    row.setdefault("machine", machine_description())
    row["eval"] = {key: [e.get(key) for e in evals] for key in EVAL_KEYS}
    row["train"] = training_curve(read_csv(run_dir / TRAIN_CSV))
    return row


def pack(root: Path, suite: str) -> Path:
    """
    Write (or update) the table of ``suite`` (:func:`table_path`) from the finished run folders below ``root``.

    :param root: The results root of the run folders (``<root>/<suite>/<env>/<algo>/[<variant>/]seed<n>``).
    :param suite: The suite's name.
    :return: The table's path.
    """
    path = table_path(suite, root)
    rows = read_table(path, key="run_id")
    for result in load_results(root, suite):
        run_id = str(Path(result["_dir"]).relative_to(root / suite))
        if run_id in rows and "machine" in rows[run_id]:
            result.setdefault("machine", rows[run_id]["machine"])  # re-packed: keep where it ran
        rows[run_id] = _row(result, run_id)
    write_table(path, rows)
    return path


def load(suite: str, root: Path | None = None) -> list[dict[str, Any]]:
    """
    The runs of ``suite`` from its table, each as its ``result.json`` plus ``run_id``, ``_eval`` (one dict per
    evaluation, keys :data:`EVAL_KEYS`) and ``_train`` (one dict per curve point: ``env_steps``, ``wall_s``,
    ``return_mean``), sorted by run id.
    """
    runs = []
    for row in read_table(table_path(suite, root), key="run_id").values():
        evals, train = row.pop("eval"), row.pop("train")
        row["_eval"] = [dict(zip(evals, values, strict=True)) for values in zip(*evals.values(), strict=True)]
        row["_train"] = [dict(zip(train, values, strict=True)) for values in zip(*train.values(), strict=True)]
        runs.append(row)
    return runs


def finished_run_ids(suite: str, root: Path | None = None) -> set[str]:
    """The runs of ``suite`` that its table (of the results root ``root``) holds."""
    return set(read_table(table_path(suite, root), key="run_id"))


def merge(source_root: Path, suite: str, target_root: Path | None = None) -> list[str]:
    """
    Pack the finished runs below ``source_root`` (:func:`pack`) and put them into the table of ``target_root`` (the
    committed one by default) in place of the rows with the same run ids; the target's other rows are kept.

    :return: The run ids written, sorted.
    """
    source = read_table(pack(source_root, suite), key="run_id")
    target_path = table_path(suite, target_root)
    if target_path.resolve() == table_path(suite, source_root).resolve():
        raise ValueError(f"{source_root} is the target's own results root: nothing to merge.")
    rows = read_table(target_path, key="run_id")
    rows.update(source)
    write_table(target_path, rows)
    return sorted(source)


def main() -> None:
    parser = argparse.ArgumentParser(description=merge.__doc__)
    parser.add_argument("--suite", required=True)
    parser.add_argument("--from", dest="source", type=Path, required=True, help="the results root of the re-run")
    args = parser.parse_args()
    merged = merge(args.source.resolve(), args.suite)
    print(f"{len(merged)} runs of {args.source} now in {table_path(args.suite)}: {', '.join(merged)}")


if __name__ == "__main__":
    main()
