"""
Write ``docs/benchmarks/README.md`` (or ``docs/benchmarks/<suite>.md``) and the plots from a suite's committed table:
``python -m benchmarks.suite.report [--suite quick]``.

It reads only the table ``docs/benchmarks/suite/data/<suite>.jsonl.gz`` (:mod:`benchmarks.suite.store`), so it
regenerates every figure and table of the report from committed data. With ``--root`` it first packs the finished run
folders found there into the table (a suite still running, or interrupted: its unfinished runs are listed as such).
Every run of the table is listed, failed and capped ones included.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import fill_readme
from benchmarks.suite import aggregate, protocol, store
from benchmarks.suite.plots import plot_env
from benchmarks.suite.random_baseline import RANDOM_FILE
from benchmarks.suite.results import RAW_DIR, RESULT_FILE, in_run_folders

DOCS_DIR = protocol.REPO_ROOT / "docs" / "benchmarks"
README = DOCS_DIR / "README.md"
PLOTS_DIR = DOCS_DIR / "suite" / "plots"

ALGO_NAMES = {
    "cemah": "CEM-AH",
    "cem": "CEM",
    "ars": "ARS",
    "a2c": "REINFORCE (A2C)",
    "ddpg": "DDPG",
    "dqn": "DQN",
    "qtopt": "Qt-Opt",
    "qtopt_ddpg": "Qt-Opt+DDPG",
}
#: CEM's runs tested as the paper tests CEM (one weight vector drawn from the Gaussian per test episode, see
#: benchmarks.suite.zoo_train), beside the same runs' mean policy (EvalCallback's test, the "cem" rows).
CEM_SAMPLED = "cem_sampled"
ALGO_NAMES[CEM_SAMPLED] = "CEM drawn per test episode (the paper's test)"
# The suites' arms (protocol.SuiteSpec.arms), e.g. "cemah/ensemble_mean": "CEM-AH closed loop (ensemble_mean)"
# (no comma: rliable splits its pairs of names at commas).
ARMS = {
    protocol.method_key(algo, variant.name): (algo, variant.name)
    for suite in protocol.SUITES.values()
    for algo, variants in (suite.arms or {}).items()
    for variant in variants
}
ALGO_NAMES.update({key: f"{ALGO_NAMES[algo]} closed loop ({variant})" for key, (algo, variant) in ARMS.items()})
# The paper's CEM-AH over CEM (its Sec. 4.1 test of CEM).
PAPER_GAIN = 1.158

# DESIGN.md section 4: the paper's test reward after 50k episodes, (env, algo) -> value.
PAPER_FINAL = {
    ("maze", "cemah"): 888.66,
    ("maze", "ddpg"): 909.90,
    ("maze", "dqn"): 805.47,
    ("maze", "a2c"): 622.30,
    ("maze", "qtopt"): 724.47,
    ("maze", "qtopt_ddpg"): 767.54,
    ("ant", "cemah"): 845.51,
    ("ant", "cem"): 739.59,
    ("walker", "cemah"): 640.54,
    ("walker", "cem"): 550.78,
}
# The paper's seconds per training episode (V100 + Xeon).
PAPER_TRAIN_S = {
    ("maze", "cemah"): 4.03,
    ("reacher", "cemah"): 4.32,
    ("ant", "cemah"): 6.70,
    ("walker", "cemah"): 11.82,
    ("maze", "cem"): 0.84,
    ("reacher", "cem"): 0.03,
    ("maze", "qtopt"): 19.04,
    ("reacher", "qtopt"): 6.14,
    ("maze", "qtopt_ddpg"): 24.62,
    ("reacher", "qtopt_ddpg"): 6.47,
}
# rl-zoo3's benchmark (one run each, their budgets) and released ARS agents.
ZOO_REFERENCE = {
    ("ant", "a2c"): "2497 (A2C, 2M steps)",
    ("ant", "ddpg"): "2399 (1M steps)",
    ("ant", "ars"): "979 (released agent)",
    ("walker", "a2c"): "858 (A2C, 2M steps)",
    ("walker", "ddpg"): "1388 (1M steps)",
    ("walker", "ars"): "1887 (released agent)",
    ("reacher", "a2c"): "15.0 (A2C)",
    ("reacher", "ddpg"): "15.6",
    ("reacher", "ars"): "-4.2 (released agent)",
}


# How the per-env verdicts read (keys: aggregate.verdict's).
VERDICT_TEXT = {"beats": "Beats", "ties": "Ties with", "loses to": "Loses to", "no verdict (1 seed)": "One seed, no verdict:"}


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def fmt_seconds(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 60:
        return f"{value / 60:.1f} min"
    return f"{value:.0f} s"


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values)) if len(values) > 1 else None


def fmt_mean_std(values: list[float], digits: int = 2) -> str:
    mean, std = mean_std(values)
    if mean is None:
        return "n/a"
    n = len([v for v in values if v is not None])
    if std is None:
        return f"{fmt(mean, digits)} (1 seed)"
    return f"{fmt(mean, digits)} ± {fmt(std, digits)} ({n} seeds)"


def time_to_reach(eval_rows: list[dict[str, float]], value: float) -> tuple[float, float] | None:
    """Env steps and wall-clock seconds of the first evaluation whose mean test return is >= value."""
    for row in eval_rows:
        if row["mean_return"] >= value:
            return row["env_steps"], row["wall_s"]
    return None


class Report:
    """The data of a suite's runs, and the sections of the README built from them."""

    def __init__(self, suite: str, root: Path | None = None):
        """
        :param suite: The suite's name.
        :param root: A results root whose finished run folders are packed into the table first; None reads the
            committed table as it is.
        """
        self.root = root
        self.suite = protocol.SUITES[suite]
        if root is not None:
            store.pack(root, suite)
        self.results = store.load(suite, root)
        self.by_cell: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for result in self.results:
            # A grid's variants are runs of their algorithm (the sensitivity report); an arm is a method of its own.
            variant = None if self.suite.variants is not None else result.get("variant")
            self.by_cell[(result["env"], protocol.method_key(result["algo"], variant))].append(result)
        self.unfinished = self._unfinished_runs()
        self.random = json.loads(RANDOM_FILE.read_text()) if RANDOM_FILE.is_file() else {}

    def _unfinished_runs(self) -> list[str]:
        """Folders of runs started but not finished (interrupted, or running now)."""
        unfinished: list[str] = []
        if self.root is None:
            return unfinished
        for run_json in in_run_folders(self.root / self.suite.name, f"{RAW_DIR}/run.json"):
            run_dir = run_json.parent.parent
            if not (run_dir / RESULT_FILE).is_file():
                unfinished.append(str(run_dir.relative_to(self.root)))
        return unfinished

    def envs(self) -> list[str]:
        return [env for env in protocol.ENV_ORDER if any(key[0] == env for key in self.by_cell)]

    @staticmethod
    def methods(algos: list[str] | tuple[str, ...]) -> list[str]:
        """The algorithms, each followed by its arms."""
        return [key for algo in algos for key in (algo, *(arm for arm, (base, _) in ARMS.items() if base == algo))]

    def algos(self, env: str) -> list[str]:
        """The methods with runs on ``env``: its algorithms and their arms."""
        return [key for key in self.methods(protocol.ENVS[env].algos) if (env, key) in self.by_cell]

    def ok(self, env: str, algo: str) -> list[dict[str, Any]]:
        """Runs with data: finished normally or stopped by the cap (their data up to the stop); for
        :data:`CEM_SAMPLED`, CEM's runs tested as the paper does."""
        if algo == CEM_SAMPLED:
            return [r for r in self.ok(env, "cem") if r["metrics"].get("final_sampled_test_return") is not None]
        return [r for r in self.by_cell.get((env, algo), []) if r["status"] in ("ok", "killed")]

    def finals(self, env: str, algo: str) -> list[float]:
        key = "final_sampled_test_return" if algo == CEM_SAMPLED else "final_test_return"
        return [r["metrics"][key] for r in self.ok(env, algo) if r["metrics"][key] is not None]

    def tested_algos(self, env: str) -> list[str]:
        """:meth:`algos`, and CEM tested as the paper does after CEM where its runs have that test."""
        algos = self.algos(env)
        return [*algos, CEM_SAMPLED] if self.ok(env, CEM_SAMPLED) else algos

    # ---- sections -------------------------------------------------------------------------------------

    def final_table(self) -> list[str]:
        lines = [
            "| env | algorithm | final test return (mean ± std over seeds) | best test return | env steps run "
            "| wall-clock per run | stopped by |",
            "|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for env in self.envs():
            for algo in self.tested_algos(env):
                runs = self.ok(env, algo)
                if not runs:
                    lines.append(f"| {env} | {ALGO_NAMES[algo]} | no finished run | | | | |")
                    continue
                # CEM drawn per episode is tested once, at the end: no best over the evaluations.
                best = "" if algo == CEM_SAMPLED else fmt_mean_std([r["metrics"]["best_test_return"] for r in runs])
                steps = [r["metrics"]["env_steps"] for r in runs]
                walls = [r["wall_s"] for r in runs]
                reasons = sorted({_reason(r) for r in runs})
                lines.append(
                    f"| {env} | {ALGO_NAMES[algo]} | {fmt_mean_std(self.finals(env, algo))} | {best} | "
                    f"{_range(steps)} | {fmt_seconds(float(np.mean(walls)))} | {', '.join(reasons)} |"
                )
        return lines

    def reach_table(self) -> list[str]:
        lines = [
            "| env | reference | algorithm | seeds that reached it | env steps to reach (mean) | wall-clock to reach (mean) |",
            "|---|---|---|---|---|---|",
        ]
        for env in self.envs():
            for reference in protocol.ENVS[env].references:
                for algo in self.algos(env):
                    runs = self.ok(env, algo)
                    reached = [time_to_reach(r["_eval"], reference.value) for r in runs]
                    hits = [hit for hit in reached if hit is not None]
                    if not hits:
                        steps_text = wall_text = "not reached"
                    else:
                        steps_text = f"{np.mean([h[0] for h in hits]):,.0f}"
                        wall_text = fmt_seconds(float(np.mean([h[1] for h in hits])))
                    lines.append(
                        f"| {env} | {reference.label} ({reference.value:g}) | {ALGO_NAMES[algo]} | "
                        f"{len(hits)}/{len(runs)} | {steps_text} | {wall_text} |"
                    )
        return lines

    def timing_table(self) -> list[str]:
        lines = [
            "| env | algorithm | s per training episode (ours) | paper (V100 + Xeon) | s per test episode (ours) "
            "| training env steps/s | training episodes per run |",
            "|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for env in self.envs():
            for algo in self.algos(env):
                runs = self.ok(env, algo)
                train_s = [r["metrics"]["s_per_train_episode"] for r in runs]
                test_s = [r["metrics"]["s_per_test_episode"] for r in runs]
                rates = [r["metrics"]["train_steps_per_s"] for r in runs]
                episodes = [r["metrics"]["train_episodes"] for r in runs]
                paper = PAPER_TRAIN_S.get((env, algo))
                lines.append(
                    f"| {env} | {ALGO_NAMES[algo]} | {_mean_text(train_s, 3)} | {fmt(paper) if paper else ''} | "
                    f"{_mean_text(test_s, 3)} | {_mean_text(rates, 0)} | {_mean_text(episodes, 0)} |"
                )
        return lines

    def paper_table(self) -> list[str]:
        """The paper's and rl-zoo3's reference returns beside ours, on this suite's envs."""
        keys = sorted(
            (key for key in set(PAPER_FINAL) | set(ZOO_REFERENCE) if key[0] in self.suite.budgets),
            key=lambda k: (protocol.ENV_ORDER.index(k[0]), k[1]),
        )
        if not keys:
            return ["The paper reports none of this suite's envs."]
        lines = [
            "| env | algorithm | paper: test return after 50k episodes | ours: final test return | our budget "
            "| rl-zoo3 reference |",
            "|---|---|---|---|---|---|",
        ]
        for env, algo in keys:
            runs = self.ok(env, algo)
            episodes = [r["metrics"]["train_episodes"] for r in runs]
            steps = [r["metrics"]["env_steps"] for r in runs]
            budget = f"{_range(steps)} steps, ~{np.mean(episodes):,.0f} episodes" if runs else "not run yet"
            paper = PAPER_FINAL.get((env, algo))
            lines.append(
                f"| {env} | {ALGO_NAMES[algo]} | {fmt(paper) if paper else ''} | {fmt_mean_std(self.finals(env, algo))} | "
                f"{budget} | {ZOO_REFERENCE.get((env, algo), '')} |"
            )
        return lines

    def normalised(self, env: str, algo: str) -> list[float]:
        """Final test returns scaled to the random policy (0) and the env's score reference (1)."""
        reference = protocol.ENVS[env].score_reference.value
        return list(aggregate.normalise(self.finals(env, algo), self.random[env]["mean_return"], reference))

    def matrices(self) -> dict[str, np.ndarray]:
        """rliable's score matrices over the envs with a measured random policy (see :func:`aggregate.score_matrices`)."""
        envs = [env for env in self.envs() if env in self.random]
        algos = [key for key in self.methods(protocol.ALL_ALGOS) if any((env, key) in self.by_cell for env in envs)]
        if all(self.ok(env, CEM_SAMPLED) for env in envs if (env, "cem") in self.by_cell):
            algos += [CEM_SAMPLED] if "cem" in algos else []
        scores = {
            algo: {env: self.normalised(env, algo) for env in envs if (env, algo) in self.by_cell or self.ok(env, algo)}
            for algo in algos
        }
        return aggregate.score_matrices(scores, envs)

    def aggregate_section(self) -> list[str]:
        """Normalisation, IQM and probability of improvement (table and plots), and who is left out and why."""
        envs = [env for env in self.envs() if env in self.random]
        lines = [
            "| env | random policy (score 0) | score 1: reference return |",
            "|---|---|---|",
            *(
                f"| {env} | {fmt(self.random[env]['mean_return'])} | {fmt(protocol.ENVS[env].score_reference.value)}: "
                f"{protocol.ENVS[env].score_reference.label} |"
                for env in envs
            ),
            "",
        ]
        matrices = self.matrices()
        left_out = [
            ALGO_NAMES[key]
            for key in self.methods(protocol.ALL_ALGOS)
            if key not in matrices and any(k[1] == key for k in self.by_cell)
        ]
        if left_out:
            lines += [
                f"Left out of the aggregates: {', '.join(left_out)} (fewer than 2 seeds, or not run, on some env: a "
                "stratified bootstrap has nothing to resample from one run per env).",
                "",
            ]
        if "cemah" not in matrices:
            return [*lines, "No aggregate: CEM-AH has fewer than 2 seeds on some env."]
        iqm = aggregate.iqm(matrices)
        improvement = aggregate.probability_of_improvement(matrices, "cemah")
        lines += [
            f"| algorithm | runs per env | IQM of normalised scores [{aggregate.CONFIDENCE:.0%} CI] "
            f"| P(CEM-AH > algorithm) [{aggregate.CONFIDENCE:.0%} CI] |",
            "|---|---|---|---|",
        ]
        for algo, matrix in matrices.items():
            versus = improvement[algo].text() if algo in improvement else ""
            lines.append(f"| {ALGO_NAMES[algo]} | {matrix.shape[0]} | {iqm[algo].text()} | {versus} |")
        if "cem" in iqm and CEM_SAMPLED in iqm:
            gains = {algo: iqm["cemah"].value / iqm[algo].value for algo in ("cem", CEM_SAMPLED) if iqm[algo].value > 0}
            lines += ["", self._paper_gain_sentence(gains)]
        for arm in (key for key in matrices if key in ARMS):
            arm_improvement = aggregate.probability_of_improvement(matrices, arm)
            versus = "; ".join(
                f"P({ALGO_NAMES[arm]} > {ALGO_NAMES[other]}) {estimate.text()}"
                + (f", IQM {iqm[arm].value / iqm[other].value:.2f}x" if iqm[other].value > 0 else "")
                for other, estimate in arm_improvement.items()
                if other in ("cem", CEM_SAMPLED)
            )
            lines += ["", f"{versus}."]
        prefix = PLOTS_DIR / f"{self.suite.name}_aggregate"
        paths = aggregate.plot(matrices, "cemah", ALGO_NAMES, prefix)
        return [*lines, "", *(f"![{path.stem}](suite/plots/{path.name})" for path in paths)]

    @staticmethod
    def _paper_gain_sentence(gains: dict[str, float]) -> str:
        """Whether the paper's CEM-AH gain over CEM reproduces under each test of CEM (IQM ratios)."""
        parts = []
        for algo, test in (("cem", "against CEM's mean policy"), (CEM_SAMPLED, "under the paper's test of CEM")):
            if algo in gains:
                verb = "reproduces" if gains[algo] >= PAPER_GAIN else "does not reproduce"
                parts.append(f"{test}, CEM-AH's IQM is {gains[algo]:.2f}x CEM's: the paper's {PAPER_GAIN:.3f}x {verb}")
        return "; ".join(parts) + "."

    def verdicts(self) -> list[str]:
        """Per env, CEM-AH against each method by the bootstrap interval of the difference of mean final returns."""
        lines = []
        for env in self.envs():
            cemah = self.finals(env, "cemah")
            if not cemah:
                lines.append(f"- **{env}**: no finished CEM-AH run yet.")
                continue
            by_verdict: dict[str, list[str]] = defaultdict(list)
            for algo in self.tested_algos(env):
                if algo == "cemah" or not self.finals(env, algo):
                    continue
                difference = aggregate.difference(cemah, self.finals(env, algo))
                detail = f"difference {difference.text()}" if difference else f"{fmt(float(np.mean(self.finals(env, algo))))}"
                by_verdict[aggregate.verdict(difference)].append(f"{ALGO_NAMES[algo]} ({detail})")
            seeds = f"{len(cemah)} seed{'s' if len(cemah) > 1 else ''}"
            parts = [f"- **{env}**: CEM-AH final test return {fmt(float(np.mean(cemah)))} ({seeds})."]
            parts += [f"{VERDICT_TEXT[label]} {', '.join(items)}." for label, items in by_verdict.items()]
            episodes = float(np.mean([r["metrics"]["train_episodes"] for r in self.ok(env, "cemah")]))
            population = (protocol.hyperparams("cemah", protocol.ENVS[env].env_id) or {}).get("population_size")
            if population:
                parts.append(
                    f"Its runs trained on {episodes:,.0f} episodes, about {episodes / population:.0f} iterations of "
                    f"its {population}-candidate population."
                )
            cem_t = mean_std([r["metrics"]["s_per_train_episode"] for r in self.ok(env, "cem")])[0]
            cemah_t = mean_std([r["metrics"]["s_per_train_episode"] for r in self.ok(env, "cemah")])[0]
            if cem_t and cemah_t:
                parts.append(
                    f"Per training episode it takes {cemah_t / cem_t:.1f}x CEM's time ({cemah_t:.3f} s vs {cem_t:.3f} s)."
                )
            lines.append(" ".join(parts))
        return lines

    def run_list(self) -> list[str]:
        lines = [
            "| run | status | stopped by | env steps | training episodes | wall-clock | final test return (at step) "
            "| finished (UTC) |",
            "|---|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for result in self.results:
            m = result["metrics"]
            final = (
                f"{fmt(m['final_test_return'])} (@{m['final_test_step']:,})" if m["final_test_return"] is not None else "n/a"
            )
            stop = _reason(result)
            if result.get("capped"):
                stop += (
                    f" at {result.get('stopped_at_step') or m['env_steps']:,} steps, {fmt_seconds(result.get('stopped_at_s'))}"
                )
            lines.append(
                f"| {result['run_id']} | {result['status']} | {stop} | "
                f"{m['env_steps']:,} | {m['train_episodes']:,} | {fmt_seconds(result['wall_s'])} | {final} | "
                f"{result.get('finished_utc', '')} |"
            )
        for path in self.unfinished:
            lines.append(f"| {path} | not finished (interrupted or running) | | | | | | |")
        return lines

    def protocol_table(self) -> list[str]:
        """Budgets, seeds, caps and how many of each env's runs have results."""
        spec = self.suite
        lines = [
            "| env | gymnasium id | env steps per run | evaluation every | seeds (cemah, cem, ars / others) "
            "| algorithms | runs with results |",
            "|---|---|---|---|---|---|---|",
        ]
        expected = protocol.expand(spec)
        for key in protocol.suite_envs(spec):
            env = protocol.ENVS[key]
            env_runs = [run for run in expected if run.env == key]
            found = sum(1 for result in self.results if result["env"] == key)
            seeds = f"{len(spec.population_seeds)} / {len(spec.other_seeds)}"
            every = protocol.eval_freq_for(spec.budgets[key])
            lines.append(
                f"| {key} | `{env.env_id}` | {spec.budgets[key]:,} | {every:,} steps | {seeds} | {', '.join(env.algos)} "
                f"| {found}/{len(env_runs)} |"
            )
        return lines

    def missing_runs(self) -> list[str]:
        done = {f"{self.suite.name}/{r['run_id']}" for r in self.results}
        missing = [run.run_id for run in protocol.expand(self.suite) if run.run_id not in done]
        if not missing:
            return []
        return [f"Not run yet ({len(missing)}): " + ", ".join(f"`{run_id}`" for run_id in missing) + "."]

    def random_table(self) -> list[str]:
        if not self.random:
            return ["(not measured: run `python -m benchmarks.suite.random_baseline`)"]
        lines = [
            "| env | random policy return (10 episodes) | mean episode length | env steps/s (random actions, one core) |",
            "|---|---|---|---|",
        ]
        for key in protocol.suite_envs(self.suite):
            if key in self.random:
                v = self.random[key]
                lines.append(
                    f"| {key} | {fmt(v['mean_return'])} ± {fmt(v['std_return'])} | {v['mean_length']:.0f} "
                    f"| {v['env_steps_per_s']:.0f} |"
                )
        return lines

    def commands(self) -> list[str]:
        """The rl-zoo3 command of each algorithm and env (seed and folder vary)."""
        seen: dict[str, str] = {}  # env/algo[/variant] (the run id without its seed) -> command
        for result in self.results:
            seen.setdefault(result["run_id"].rpartition("/")[0], result["command"])
        return [
            f"    {command}"
            for _, command in sorted(seen.items(), key=lambda kv: (protocol.ENV_ORDER.index(kv[0].split("/")[0]), kv[0]))
        ]

    def plots(self) -> list[str]:
        lines = []
        for env in self.envs():
            train, test = {}, {}
            for algo in self.algos(env):
                runs = self.ok(env, algo)
                train[algo] = [_arrays(r["_train"], ("env_steps", "wall_s", "return_mean")) for r in runs]
                test[algo] = [_arrays(r["_eval"], ("env_steps", "wall_s", "mean_return")) for r in runs]
            path = PLOTS_DIR / f"{self.suite.name}_{env}.png"
            random_return = self.random.get(env, {}).get("mean_return")
            plot_env(protocol.ENVS[env], train, test, random_return, path)
            lines.append(f"![{env}](suite/plots/{path.name})")
        return lines


def _reason(result: dict[str, Any]) -> str:
    if result["status"] == "failed":
        return "failed"
    return {
        "budget": "budget",
        "wall_clock_cap": "wall-clock cap",
        "algorithm_finished": "budget",
        "max_episodes": "50k episodes",
    }.get(result.get("stop_reason") or "", result.get("stop_reason") or result["status"])


def _range(values: list[int]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def _mean_text(values: list[float | None], digits: int) -> str:
    mean = mean_std([v for v in values if v is not None])[0]
    return fmt(mean, digits)


def _arrays(rows: list[dict[str, float]], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {key: np.array([row[key] for row in rows], dtype=float) for key in keys}


def full_protocol_line() -> str:
    """What ``--suite full`` runs and its estimated cost, from the probe's measured rates."""
    from benchmarks.suite.run import load_rates

    runs = protocol.expand(protocol.FULL)
    seconds = sum(protocol.estimate_seconds(run, load_rates()) for run in runs)
    budgets = ", ".join(f"{env} {budget:,}" for env, budget in protocol.FULL.budgets.items())
    return (
        f"`--suite full` is the paper's protocol: {len(runs)} runs, 3 seeds for every algorithm, 50k training episodes "
        f"per run (stopped by an episode counter; step ceilings {budgets}), wall-clock cap 48 h per run; estimated "
        f"{seconds / 3600:,.0f} core-hours at this machine's measured rates (DDPG's runs end at the cap, and so do "
        "Qt-Opt's and Qt-Opt+DDPG's on the maze, ant and walker)."
    )


def build(suite: str, root: Path | None = None) -> dict[str, str]:
    """The generated blocks of a suite's report, by name (see :func:`benchmarks.common.fill_readme`)."""
    report = Report(suite, root)
    spec = report.suite
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_capped = sum(bool(r.get("capped")) for r in report.results)
    n_ok = sum(r["status"] == "ok" and not r.get("capped") for r in report.results)
    n_failed = sum(r["status"] == "failed" for r in report.results)
    summary = [
        f"Generated by `python -m benchmarks.suite.report --suite {spec.name}` on {now} from the table "
        f"`{protocol.repo_relative(store.table_path(spec.name, report.root))}`. Suite **{spec.name}**: {spec.description}",
        "",
        f"Runs: {len(report.results)} of the {len(protocol.expand(spec))} of the protocol have results ({n_ok} ran their "
        f"whole budget, {n_capped} were stopped by the wall-clock cap, {n_failed} failed); {len(report.unfinished)} were "
        "started and not finished. Every run is listed at the end.",
        *report.missing_runs(),
    ]
    caps = (
        f"Wall-clock caps per run ({spec.name}): a2c, ddpg, dqn, qtopt, qtopt_ddpg "
        + ", ".join(f"{env} {fmt_seconds(cap)}" for env, cap in spec.caps_s.items())
        + f"; cemah, cem, ars {fmt_seconds(spec.population_cap_s)} (a safety net only)."
    )
    blocks = {
        "summary": summary,
        "protocol": report.protocol_table(),
        "aggregate": report.aggregate_section(),
        "verdicts": report.verdicts(),
        "final": report.final_table(),
        "reach": report.reach_table(),
        "timing": report.timing_table(),
        "paper": report.paper_table(),
        "random": report.random_table(),
        "plots": report.plots(),
        "machine": ["Machines of the runs: " + "; ".join(store.machines(report.results))],
        "full": [full_protocol_line()],
        "commands": [*report.commands(), "", caps],
        "runs": report.run_list(),
    }
    return {name: "\n".join(lines) for name, lines in blocks.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite.report")
    parser.add_argument("--suite", choices=sorted(protocol.SUITES), default="quick")
    parser.add_argument(
        "--root", type=Path, default=None, help="pack the finished run folders below this root into the table first"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: docs/benchmarks/README.md (quick) or <suite>.md")
    args = parser.parse_args(argv)
    out = args.out or (README if args.suite == "quick" else DOCS_DIR / f"{args.suite}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"Benchmarks, suite {args.suite}: CEM-AH against CEM and the paper's baselines"
    fill_readme(out, title, build(args.suite, args.root.resolve() if args.root else None))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
