"""Which Box ensemble combination acts best against its guide, over many runs of :mod:`benchmarks.imitation`?

Reads the result JSONs of one or more ``benchmarks.imitation --out`` folders and prints, per env and config, one
row per combination (``ensemble_<method>`` in each JSON): its mean return over the runs beside the guide's, on how
many runs it reaches the guide, and its worst ratio to the guide. Example::

    python -m benchmarks.imitation_combinations docs/benchmarks/imitation/ablation_v3 \
        docs/benchmarks/imitation/medoid_half_check --envs AntBulletEnv-v0 Walker2DBulletEnv-v0
"""

from __future__ import annotations

import argparse
import pathlib
from collections import defaultdict
from typing import Any

import numpy as np

from benchmarks.common import markdown_table
from benchmarks.imitation import load_results
from sb3_cemah.cemah.policies import ENSEMBLE_METHODS

HEADERS = ["combination", "mean return", "runs >= guide", "worst ratio to the guide", "per run"]


def load_runs(folders: list[pathlib.Path], envs: list[str] | None) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The results of every folder's ``results/*.json``, grouped by (env, config), seeds in file order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for folder in folders:
        for result in load_results(folder):
            if envs is None or result["env"] in envs:
                groups[(result["env"], result["config"])].append(result)
    return groups


def combination_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    """One row per Box combination present in every run: mean return, runs reaching the guide, worst ratio."""
    guide = np.array([np.mean(run["returns"]["guide"]) for run in runs])
    rows = [["guide", f"{guide.mean():.1f}", "", "", " / ".join(f"{value:.0f}" for value in guide)]]
    for method in ENSEMBLE_METHODS:
        key = f"ensemble_{method}"
        if not all(key in run["returns"] for run in runs):
            continue
        returns = np.array([np.mean(run["returns"][key]) for run in runs])
        # Returns can be negative (a fallen walker): a ratio to a guide near 0 says nothing, so it is left out there.
        ratios = returns / guide if np.all(guide > 1.0) else None
        rows.append(
            [
                method,
                f"{returns.mean():.1f}",
                f"{np.sum(returns >= guide)}/{len(runs)}",
                "" if ratios is None else f"{ratios.min():.2f}",
                " / ".join(f"{value:.0f}" for value in returns),
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=pathlib.Path, nargs="+", help="--out folders of benchmarks.imitation")
    parser.add_argument("--envs", nargs="+", help="only these env ids")
    args = parser.parse_args()
    for (env, config), runs in sorted(load_runs(args.folders, args.envs).items()):
        seeds = ", ".join(str(run["seed"]) for run in runs)
        print(f"\n**{env}**, config `{config}`, {len(runs)} runs (seeds {seeds}):\n")
        print(markdown_table(HEADERS, combination_rows(runs)))


if __name__ == "__main__":
    main()
