"""
The benchmark scripts' harness: options, the machine and command of a run, side-by-side timing, results to
CSV/JSON, and the generated blocks of each benchmark's ``README.md``.

A benchmark writes into its folder (``docs/benchmarks/<name>/`` by default) a CSV of its raw measurements,
``summary.json`` (command, machine, settings and the statistics) and the blocks of ``README.md`` between
``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->``: the run's command and machine, and its tables.
Everything else in the README is prose written by hand, which a new run leaves as it is; in a folder without a
README (e.g. a smoke test's ``--output /tmp/x``) the blocks alone are written. ``--from DIR`` rebuilds summary
and tables from an earlier run's files without measuring.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import gzip
import hashlib
import inspect
import json
import os
import pathlib
import platform
import re
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

# The benchmarks run one population per ``learn(1)`` on purpose (one iteration, timed or sampled): the library's warning
# that ``learn(1)`` ran a whole population says what they ask for.
warnings.filterwarnings("ignore", message=r"learn\(1\) ran", category=UserWarning)

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


TRAINING_DEFAULTS = (
    "pretrain_steps",
    "pretrain_lr_decay",
    "adversarial_steps",
    "learning_rate",
    "batch_size",
)


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


def set_torch_threads(n_threads: int) -> None:
    """Fix torch's intra-op threads: the default (all cores) competes with the envs and other jobs for the CPU."""
    import torch as th

    th.set_num_threads(n_threads)


def spread(values: Sequence[float] | np.ndarray) -> dict[str, float]:
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


def write_csv(path: pathlib.Path, rows: Sequence[dict[str, Any]], fields: Sequence[str] | None = None) -> None:
    """
    Write dict rows (columns: ``fields``, else the keys of the first row) to a temporary file renamed into place: a
    reader (the report of a suite still running) never sees half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(fields if fields is not None else rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def write_json(path: pathlib.Path, data: Any) -> None:
    """Write indented JSON, atomically as :func:`write_csv`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_table(path: pathlib.Path, key: str = "key") -> dict[str, dict[str, Any]]:
    """
    A study's results table written by :func:`write_table`: one JSON object per line, gzip-compressed.

    :param path: The table (``.jsonl.gz``); a missing file is an empty table.
    :param key: The field that names each row.
    :return: The rows by their ``key``.
    """
    if not path.is_file():
        return {}
    with gzip.open(path, "rt") as file:
        rows = [json.loads(line) for line in file if line.strip()]
    return {row[key]: row for row in rows}


def write_table(path: pathlib.Path, rows: dict[str, dict[str, Any]]) -> None:
    """
    Write a study's results as one compressed table, one JSON line per row in key order, atomically; the same rows
    give the same bytes (no time stamp in the gzip header).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    lines = "".join(json.dumps(rows[key], sort_keys=True) + "\n" for key in sorted(rows))
    with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as file:
        file.write(lines.encode())
    os.replace(tmp, path)


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


def read_csv_rows(path: pathlib.Path) -> list[dict[str, Any]]:
    """Rows written by :func:`write_csv`, numbers parsed back (ints stay ints), other cells as strings."""

    def parse(value: str) -> Any:
        for kind in (int, float):
            with contextlib.suppress(ValueError):
                return kind(value)
        return value

    with path.open() as file:
        return [{key: parse(value) for key, value in row.items()} for row in csv.DictReader(file)]


def make_quiet_vec_env(env_id: str, n_envs: int, seed: int) -> Any:
    """``make_vec_env`` (DummyVecEnv + Monitor), reset once, with pybullet's native start-up chatter silenced."""
    from stable_baselines3.common.env_util import make_vec_env

    if "Bullet" in env_id:
        import pybullet_envs_gymnasium  # noqa: F401  (registers the PyBullet ids)
    with quiet_native_stdout():
        env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
        env.reset()  # PyBullet connects on the first reset
    return env


def make_quiet_env(env_id: str, seed: int) -> Any:
    """One bare ``gymnasium.make`` env (no Monitor, no VecEnv), reset once with ``seed``, PyBullet chatter silenced."""
    import gymnasium as gym

    if "Bullet" in env_id:
        import pybullet_envs_gymnasium  # noqa: F401  (registers the PyBullet ids)
    with quiet_native_stdout():
        env = gym.make(env_id)
        env.reset(seed=seed)
    return env


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """
    The options every benchmark has: ``--output`` (its folder), ``--torch-threads`` and ``--from`` (rebuild from an
    earlier run's folder); the script adds what it measures.
    """
    result = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description)
    result.add_argument("--output", type=pathlib.Path, default=REPO_ROOT / "docs" / "benchmarks" / name, help="output folder")
    result.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads")
    result.add_argument(
        "--from", dest="from_dir", type=pathlib.Path, default=None, help="rebuild summary and tables from this run folder"
    )
    return result


@dataclass
class Run:
    """How a benchmark run was made: its command, machine and settings (those of the earlier run with ``--from``)."""

    args: argparse.Namespace
    command: str
    machine: dict[str, Any]
    #: ``summary.json`` of the earlier run with ``--from``, else empty.
    recorded: dict[str, Any]

    @classmethod
    def start(cls, name: str, args: argparse.Namespace, **machine_extra: Any) -> Run:
        """
        Set torch's threads and describe the run; with ``--from``, restore the earlier run's settings into ``args``
        (all but the folders), so that tables describe the run that measured.
        """
        set_torch_threads(args.torch_threads)
        args.output.mkdir(parents=True, exist_ok=True)
        if args.from_dir is None:
            return cls(args, command_line(f"benchmarks.{name}"), {**machine_description(), **machine_extra}, {})
        recorded = json.loads((args.from_dir / "summary.json").read_text())
        for key, value in recorded.get("settings", {}).items():
            if key in vars(args) and key not in ("output", "from_dir"):
                setattr(args, key, value)
        return cls(args, recorded["command"], recorded["machine"], recorded)

    def rows(self, file_name: str) -> list[dict[str, Any]]:
        """The raw measurements of the earlier run (``--from``)."""
        assert self.args.from_dir is not None
        return read_csv_rows(self.args.from_dir / file_name)

    def save(self, file_name: str, rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> None:
        """The raw measurements as CSV, and ``summary.json``: command, machine, settings, ``summary``."""
        write_csv(self.args.output / file_name, rows)
        settings = {key: str(value) if isinstance(value, pathlib.Path) else value for key, value in vars(self.args).items()}
        write_json(
            self.args.output / "summary.json",
            {"command": self.command, "machine": self.machine, "settings": settings, **summary},
        )

    def report(self, title: str, tables: dict[str, str]) -> pathlib.Path:
        """Fill ``README.md``'s generated blocks: ``run`` (command and machine) and one per table."""
        machine = "\n".join(f"- {key.replace('_', ' ')}: {value}" for key, value in self.machine.items())
        blocks = {
            "run": "Reproduce from the repository root (with the project's virtualenv: `PYTHONPATH=. .venv/bin/python -m "
            f"...`):\n\n```\n{self.command}\n```\n\n## Machine\n\n{machine}",
            **tables,
        }
        return fill_readme(self.args.output / "README.md", title, blocks)


def fill_readme(path: pathlib.Path, title: str, blocks: dict[str, str]) -> pathlib.Path:
    """
    Replace each block between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->`` in ``path`` (the
    rest is prose, kept); a block the file lacks is appended, a missing file starts with ``title``.
    """
    text = path.read_text() if path.is_file() else f"# {title}\n"
    for name, body in blocks.items():
        block = f"<!-- generated: {name} -->\n{body}\n<!-- end generated: {name} -->"
        pattern = re.compile(rf"<!-- generated: {name} -->.*?<!-- end generated: {name} -->", re.DOTALL)
        if pattern.search(text):
            # Split and join rather than pattern.sub: the block is literal text (sub would expand its backslashes).
            before, after = pattern.split(text, maxsplit=1)
            text = before + block + after
        else:
            text = f"{text}\n{block}\n"
    path.write_text(text)
    return path


def interleaved(repetitions: int, variants: Sequence[str]) -> Iterator[tuple[int, str]]:
    """
    ``(repetition, variant)`` in the order of side-by-side timing: every variant once per repetition, the order
    rotating each time, so that a burst of load from other jobs on a shared machine hits all variants alike.
    """
    for repetition in range(repetitions):
        shift = repetition % len(variants)
        for variant in (*variants[shift:], *variants[:shift]):
            yield repetition, variant


class IterationClock(BaseCallback):
    """
    Timestamps (wall, process CPU) and env steps at the start of each of ``n_starts`` populations, then stops
    training at the first step of the last one (that population is not trained on).
    """

    def __init__(self, n_starts: int):
        super().__init__()
        self.n_starts = n_starts
        self.starts: list[tuple[float, float, int]] = []

    def _on_rollout_start(self) -> None:
        self.starts.append((time.perf_counter(), time.process_time(), self.model.num_timesteps))

    def _on_step(self) -> bool:
        return len(self.starts) < self.n_starts
