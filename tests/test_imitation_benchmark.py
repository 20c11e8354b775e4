"""The imitation diagnostic (``benchmarks.imitation``): one run end to end, and re-evaluating kept models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import imitation, imitation_combinations

EPISODES = 3


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["imitation", *args])
    imitation.main()


def test_run_then_add_missing_reproduces_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_main(
        monkeypatch,
        *("--env", "CartPole-v1", "--steps", "3000", "--seeds", "0", "--n-envs", "2", "--episodes", str(EPISODES)),
        *("--out", str(tmp_path), "--params", "population_size=10", "elite_frac=0.3", "pretrain_steps=20"),
    )
    path = tmp_path / "results" / "defaults_CartPole-v1_0.json"
    returns = json.loads(path.read_text())["returns"]
    draws = [f"ensemble_draw_{draw}" for draw in range(1, imitation.DRAWS + 1)]
    for name in ["guide", "ensemble", *draws, f"ensemble_k{imitation.LARGE_ENSEMBLE}"]:
        assert len(returns[name]) == EPISODES and np.all(np.asarray(returns[name]) >= 1.0), name
    assert "other draws" in (tmp_path / "README.md").read_text()

    # A result written without the draws, or before a combination existed, gets the same returns from its kept model.
    result = json.loads(path.read_text())
    for name in [*draws, f"ensemble_k{imitation.LARGE_ENSEMBLE}", "ensemble_softmax_sum"]:
        del result["returns"][name]
    path.write_text(json.dumps(result))
    run_main(monkeypatch, "--add-missing", "--episodes", str(EPISODES), "--out", str(tmp_path))
    assert json.loads(path.read_text())["returns"] == returns


def test_env_and_steps_are_required_without_add_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        run_main(monkeypatch, "--env", "CartPole-v1", "--out", str(tmp_path))


def test_combination_rows_compare_each_combination_with_the_guide(tmp_path: Path) -> None:
    """Two runs written as benchmarks.imitation writes them: means, runs at the guide and the worst ratio by hand."""
    for seed, (guide, mean, median) in enumerate([(100.0, 50.0, 120.0), (200.0, 300.0, 200.0)]):
        result = {"env": "E-v0", "config": "defaults", "seed": seed}
        result["returns"] = {
            "guide": [guide, guide],
            "ensemble_mean": [mean, mean],
            "ensemble_median": [median - 1, median + 1],
        }
        (tmp_path / "results").mkdir(exist_ok=True)
        (tmp_path / "results" / f"defaults_E-v0_{seed}.json").write_text(json.dumps(result))
    (runs,) = imitation_combinations.load_runs([tmp_path], envs=None).values()
    rows = imitation_combinations.combination_rows(runs)
    assert rows == [
        ["guide", "150.0", "", "", "100 / 200"],
        ["mean", "175.0", "1/2", "0.50", "50 / 300"],
    ]
    assert imitation_combinations.load_runs([tmp_path], envs=["Other-v0"]) == {}
