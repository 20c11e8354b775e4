"""Every code example of the README and the documentation runs: Python blocks as scripts, rl-zoo3 commands with tiny
budgets (a broken example fails here, not in a user's hands)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The pages whose examples users copy (the benchmark reports' commands are the benchmarks' own).
PAGES = ["README.md", "docs/getting_started.md", "docs/modules/cem.md", "docs/modules/cemah.md", "docs/modules/qtopt.md"]
PAGES += ["docs/guide/ray.md", "docs/guide/rl_zoo.md"]
#: Shell lines not run here: installs, cluster starts and the docs build (CI's own steps), and the benchmarks' long runs
#: (benchmarks/tests tests their harness).
NOT_RUN = ("pip ", ".venv/bin/pip", "python3 -m venv", "scripts/test.sh", "ray start", "RAY_ADDRESS=", "sphinx-build")
NOT_RUN += ("python -m benchmarks", "bash benchmarks/")
#: Tiny budgets for the rl-zoo3 commands: what is appended or replaced.
TRAIN_BUDGET = ["-n", "500", "--eval-freq", "500", "--eval-episodes", "2", "--num-threads", "1"]
TINY_PARAMS = ["population_size:4", "elite_frac:0.5", "n_envs:2"]
#: The maze's episodes last up to 10 000 steps: capped for the examples.
TINY_MAZE = ["--env-kwargs", "max_steps:200"]


def blocks(page: str, language: str) -> list[str]:
    text = (REPO / page).read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def python_examples() -> list[tuple[str, int, str]]:
    return [(page, i, code) for page in PAGES for i, code in enumerate(blocks(page, "python"))]


@pytest.mark.parametrize(("page", "index", "code"), python_examples(), ids=lambda value: str(value)[:30])
def test_python_example_runs(page: str, index: int, code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    process = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, f"{page}, Python block {index}:\n{process.stderr[-3000:]}"


def shell_lines(page: str) -> list[str]:
    lines = []
    for block in blocks(page, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].strip()
            if line and not line.startswith(NOT_RUN):
                lines.append(line)
    return lines


def tiny(line: str, python: str) -> str:
    """The command with this interpreter, a tiny budget and a small population (other -params kept)."""
    line = re.sub(r"^(\.venv/bin/)?python ", f"{python} ", line).replace("$(python ", f"$({python} ")
    words = shlex.split(line, posix=False)
    if "rl_zoo3.train" in line:
        for option in ("-n", "--n-trials", "--eval-freq", "--eval-episodes", "--num-threads"):
            if option in words:
                position = words.index(option)
                del words[position : position + 2]
        params = []
        if "-params" in words:
            position = words.index("-params")
            params = words[position + 1 :]
            del words[position:]
        words += TRAIN_BUDGET
        if "-optimize" in words:
            words += ["--n-trials", "2", "--n-evaluations", "1", "--n-startup-trials", "2"]
        else:
            params = [*params, *TINY_PARAMS]
        if params:
            words += ["-params", *params]
    elif "rl_zoo3.enjoy" in line and "-n" in words:
        words[words.index("-n") + 1] = "100"
    if "Maze-v0" in line and ("rl_zoo3.train" in line or "rl_zoo3.enjoy" in line):
        words += TINY_MAZE
    return " ".join(words)


@pytest.mark.parametrize("page", [page for page in PAGES if shell_lines(page)])
def test_shell_examples_run_with_tiny_budgets(page: str, tmp_path: Path) -> None:
    """The page's commands, in order, in one folder (``enjoy`` and the plots read what ``train`` wrote)."""
    for line in shell_lines(page):
        command = tiny(line, shlex.quote(sys.executable))
        env = {**os.environ, "MPLBACKEND": "Agg"}
        process = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
        assert process.returncode == 0, f"{page}: {command}\n{process.stdout[-1500:]}\n{process.stderr[-3000:]}"
