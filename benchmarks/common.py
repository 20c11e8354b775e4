"""Helpers shared by the benchmark scripts: machine description, statistics, CSV/JSON/markdown output."""

from __future__ import annotations

import contextlib
import csv
import datetime
import hashlib
import inspect
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from typing import Any

import numpy as np

__all__ = [
    "CEM_ENV_SETTINGS",
    "Stopwatch",
    "cemah_training_defaults",
    "command_line",
    "cpu_model_name",
    "format_spread",
    "machine_description",
    "machine_markdown",
    "markdown_table",
    "package_version",
    "quiet_native_stdout",
    "readme_header",
    "set_torch_threads",
    "spread",
    "write_csv",
    "write_json",
]

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

# Settings that belong to the env rather than to the algorithm, given to CEM and CEM-AH alike (as in
# hyperparams/cem.yml and cemah.yml): on the deterministic maze, argmax candidates loop until the
# 10 000-step limit, and the raw cell codes saturate tanh unless each observation is standardised (the
# authors' code does both).
CEM_ENV_SETTINGS: dict[str, dict[str, Any]] = {
    "sb3_cemah/Maze-v0": {"stochastic_candidates": True, "policy_kwargs": {"net_arch": [], "standardize_obs": True}},
    "ReacherBulletEnv-v0": {"policy_kwargs": {"net_arch": []}},
}


def command_line(module: str) -> str:
    """The command that reproduces this run, from the repository root (``argv`` quoted for a shell)."""
    return " ".join(["python", "-m", module, *map(shlex.quote, sys.argv[1:])])


def cpu_model_name() -> str:
    """The CPU model as ``lscpu`` names it."""
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown"
    for line in output.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _git_revision() -> str:
    """Commit of the checkout, with ``+dirty`` when tracked files differ from it (results depend on the code)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def _library_source_digest() -> str:
    """
    SHA-1 over the package's ``.py`` files: the code measured, even when the checkout has uncommitted edits
    (``git_revision`` then ends in ``+dirty`` and says nothing about which ones).
    """
    digest = hashlib.sha1()
    for path in sorted((REPO_ROOT / "sb3_cemah").rglob("*.py")):
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def package_version(distribution: str) -> str:
    """Installed version of a distribution from its metadata (some packages have no ``__version__``)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


class Stopwatch:
    """
    Wall-clock and CPU time of a ``with`` block. The CPU time is this process's (all its threads): on a
    machine shared with other jobs it stays close to what the block costs, while the wall-clock time also
    counts the waits for a core. Both are reported; with one torch thread and in-process envs they agree
    on an idle machine.
    """

    wall = 0.0
    cpu = 0.0

    def __enter__(self) -> Stopwatch:
        self._wall_start = time.perf_counter()
        self._cpu_start = time.process_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall = time.perf_counter() - self._wall_start
        self.cpu = time.process_time() - self._cpu_start


TRAINING_DEFAULTS = ("pretrain_steps", "discriminator_steps", "generator_steps", "learning_rate", "batch_size")


def cemah_training_defaults() -> dict[str, Any]:
    """CEMAH's default training hyper-parameters in the code being measured (they change as the library evolves)."""
    from sb3_cemah import CEMAH

    parameters = inspect.signature(CEMAH.__init__).parameters
    return {name: parameters[name].default for name in TRAINING_DEFAULTS}


def machine_description() -> dict[str, Any]:
    """CPU model, core count, load, library versions and torch threads: what the timings depend on."""
    import torch as th

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model_name(),
        "cores": os.cpu_count(),
        # Other jobs share this machine: the load average says how noisy the timings may be.
        "load_average_at_start": " ".join(f"{load:.2f}" for load in os.getloadavg()),
        "python": platform.python_version(),
        "torch": th.__version__,
        "torch_threads": th.get_num_threads(),
        "stable_baselines3": package_version("stable_baselines3"),
        "sb3_contrib": package_version("sb3_contrib"),
        "gymnasium": package_version("gymnasium"),
        "numpy": np.__version__,
        "git_revision": _git_revision(),
        "sb3_cemah_source_sha1": _library_source_digest(),
    }


def machine_markdown(machine: dict[str, Any]) -> str:
    """The machine description as a markdown bullet list."""
    return "\n".join(f"- {key.replace('_', ' ')}: {value}" for key, value in machine.items())


def readme_header(title: str, command: str, machine: dict[str, Any]) -> str:
    """Title, exact command and machine section that every benchmark README starts with."""
    return (
        f"# {title}\n\n"
        "Reproduce from the repository root (with the project's virtualenv: "
        "`PYTHONPATH=. .venv/bin/python -m ...`):\n\n"
        f"```\n{command}\n```\n\n"
        f"## Machine\n\n{machine_markdown(machine)}\n"
    )


def set_torch_threads(n_threads: int) -> None:
    """Fix torch's intra-op threads: the default (all cores) competes with the envs and other jobs for the CPU."""
    import torch as th

    th.set_num_threads(n_threads)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and quartiles of repeated measurements."""
    array = np.asarray(values, dtype=np.float64)
    return {
        "median": float(np.median(array)),
        "min": float(array.min()),
        "max": float(array.max()),
        "q1": float(np.percentile(array, 25)),
        "q3": float(np.percentile(array, 75)),
        "n": int(array.size),
    }


def format_spread(values: Sequence[float], fmt: str = ".2f") -> str:
    """``median [min, max]`` of repeated measurements, e.g. ``1.02 [0.97, 1.10]``."""
    stats = spread(values)
    return f"{stats['median']:{fmt}} [{stats['min']:{fmt}}, {stats['max']:{fmt}}]"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: pathlib.Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write dict rows (the keys of the first row are the columns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_json(path: pathlib.Path, data: Any) -> None:
    """Write indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def quiet_native_stdout() -> Iterator[None]:
    """
    Silence output written to file descriptor 1 by native code (pybullet prints ``argv[0]=`` for every
    env it creates, which Python's ``contextlib.redirect_stdout`` cannot catch).
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
