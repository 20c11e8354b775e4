"""The imitation diagnostic (``benchmarks.imitation``): one run end to end, and re-evaluating kept models."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import imitation
from benchmarks.common import read_table, write_table

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
    path = tmp_path / imitation.RESULTS_TABLE
    returns = read_table(path)["defaults_CartPole-v1_0"]["returns"]
    draws = [f"ensemble_draw_{draw}" for draw in range(1, imitation.DRAWS + 1)]
    for name in ["guide", "ensemble", *draws, f"ensemble_k{imitation.LARGE_ENSEMBLE}"]:
        assert len(returns[name]) == EPISODES and np.all(np.asarray(returns[name]) >= 1.0), name
    assert "other draws" in (tmp_path / "README.md").read_text()

    # A result written without the draws, or before a combination existed, gets the same returns from its kept model.
    table = read_table(path)
    for name in [*draws, f"ensemble_k{imitation.LARGE_ENSEMBLE}", "ensemble_softmax_sum"]:
        del table["defaults_CartPole-v1_0"]["returns"][name]
    write_table(path, table)
    run_main(monkeypatch, "--add-missing", "--episodes", str(EPISODES), "--out", str(tmp_path))
    assert read_table(path)["defaults_CartPole-v1_0"]["returns"] == returns


def test_env_and_steps_are_required_without_add_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        run_main(monkeypatch, "--env", "CartPole-v1", "--out", str(tmp_path))
