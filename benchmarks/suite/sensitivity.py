"""
The hyper-parameter sensitivity grid (the paper's Figure 6) from its run folders:
``python -m benchmarks.suite.sensitivity [--root DIR] [--out DIR]``.

The runs are those of ``python -m benchmarks.suite.run --suite sensitivity`` (:data:`protocol.SENSITIVITY`). Per env,
it plots the final test return of every variant of each method, and tabulates the spread (range and standard
deviation, raw and normalised by the env's score range) of the final returns over each learning-rate x batch-size
grid: the paper's claim is that CEM-AH's is the smallest. It reads the files :mod:`benchmarks.suite.report` reads,
so it can run while the grid is still running: the runs not done yet are listed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
from pathlib import Path

import numpy as np

from benchmarks.common import fill_readme, format_spread
from benchmarks.suite import aggregate, protocol, report, store
from benchmarks.suite.plots import COLORS
from benchmarks.suite.run import load_rates

SUITE = protocol.SENSITIVITY
OUT_DIR = report.DOCS_DIR / "sensitivity"
#: Variant groups that are single settings, not a grid: plotted apart, left out of the spreads of the grids.
SINGLE_GROUPS = ("defaults", "ablation")
#: What A2C's batch axis is (its rollout length per env), for the labels.
BATCH_AXIS = {"a2c": "n_steps"}


def cells(env: str) -> list[str]:
    """The algorithms of the grid on ``env``, in the env's order."""
    return [algo for algo in protocol.ENVS[env].algos if (env, algo) in (SUITE.variants or {})]


def variants(env: str, algo: str) -> tuple[protocol.Variant, ...]:
    """The variants of a cell of the grid."""
    return (SUITE.variants or {})[(env, algo)]


def grid_groups(env: str, algo: str) -> list[str]:
    """The learning-rate x batch grids of a cell (CEM-AH has one per policy size)."""
    groups = (variant.group for variant in variants(env, algo) if variant.group not in SINGLE_GROUPS)
    return list(dict.fromkeys(groups))


def members(env: str, algo: str, group: str) -> list[str]:
    """The names of a group's variants."""
    return [variant.name for variant in variants(env, algo) if variant.group == group]


def finals_by_variant(rep: report.Report, env: str, algo: str) -> dict[str, float]:
    """Final test return of each variant with results (finished, or stopped by the cap)."""
    return {
        result["variant"]: result["metrics"]["final_test_return"]
        for result in rep.ok(env, algo)
        if result.get("variant") and result["metrics"]["final_test_return"] is not None
    }


@dataclasses.dataclass(frozen=True)
class Spread:
    """
    The final test returns of a set of a method's variants on an env, and their scores: normalised as the suite's
    report does (:func:`aggregate.normalise`: the random policy 0, the env's score reference 1), so that a spread in
    scores is one in units of the env's score range. No scores without a measured random policy.
    """

    algo: str
    label: str
    n_variants: int
    finals: list[float]
    scores: list[float] | None
    #: Whether the set is one learning-rate x batch grid (comparable between methods) rather than all variants.
    is_grid: bool

    @property
    def range(self) -> float:
        return max(self.finals) - min(self.finals)

    @property
    def std(self) -> float:
        return float(np.std(self.finals))

    def score_spread(self) -> tuple[str, str]:
        """Range and std of the scores, as text."""
        if self.scores is None:
            return "n/a", "n/a"
        return report.fmt(max(self.scores) - min(self.scores), 3), report.fmt(float(np.std(self.scores)), 3)


def spread(rep: report.Report, env: str, algo: str, label: str, names: list[str], is_grid: bool) -> Spread:
    """The spread of the variants ``names`` of a cell."""
    by_variant = finals_by_variant(rep, env, algo)
    finals = [by_variant[name] for name in names if name in by_variant]
    scores = None
    if env in rep.random:
        reference = protocol.ENVS[env].score_reference.value
        scores = list(aggregate.normalise(finals, rep.random[env]["mean_return"], reference))
    return Spread(algo, label, len(names), finals, scores, is_grid)


def spreads(rep: report.Report, env: str) -> list[Spread]:
    """Per method, the spread of each grid, and for CEM-AH also of all its variants (defaults and ablations too)."""
    rows = []
    for algo in cells(env):
        axis = f"lr x {BATCH_AXIS.get(algo, 'batch')}"
        if len({variant.group for variant in variants(env, algo)}) > 1:
            rows.append(spread(rep, env, algo, "all variants", [v.name for v in variants(env, algo)], is_grid=False))
        for group in grid_groups(env, algo):
            label = axis if group == "grid" else f"{group}: {axis}"
            rows.append(spread(rep, env, algo, label, members(env, algo, group), is_grid=True))
    return rows


def spread_table(rows: list[Spread]) -> list[str]:
    """An env's spreads as a markdown table; a range needs two results."""
    lines = [
        "| method | variants | with results | final test return: median [min, max] | range (max - min) | std "
        "| range / score range | std / score range |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        name = report.ALGO_NAMES[row.algo]
        if not row.finals:
            lines.append(f"| {name} | {row.label} | 0/{row.n_variants} | not run yet | | | | |")
            continue
        if len(row.finals) == 1:
            lines.append(f"| {name} | {row.label} | 1/{row.n_variants} | {report.fmt(row.finals[0])} | | | | |")
            continue
        score_range, score_std = row.score_spread()
        lines.append(
            f"| {name} | {row.label} | {len(row.finals)}/{row.n_variants} | {format_spread(row.finals)} | "
            f"{report.fmt(row.range)} | {report.fmt(row.std)} | {score_range} | {score_std} |"
        )
    return lines


def smallest_spread(env: str, rows: list[Spread]) -> str:
    """Which method's grid has the smallest spread (the paper's claim: CEM-AH's), among grids with two results or more."""
    grids = sorted((row for row in rows if row.is_grid and len(row.finals) >= 2), key=lambda row: row.range)
    if not grids:
        return f"- **{env}**: fewer than two results in every grid: no comparison yet."
    names = [f"{report.ALGO_NAMES[row.algo]} {row.label} (range {report.fmt(row.range)})" for row in grids]
    smallest_std = min(grids, key=lambda row: row.std)
    partial = [row for row in grids if len(row.finals) < row.n_variants]
    text = (
        f"- **{env}**: smallest spread of the final test return over a learning-rate x batch grid: "
        f"**{report.ALGO_NAMES[grids[0].algo]} {grids[0].label}**, range {report.fmt(grids[0].range)} "
        f"({grids[0].score_spread()[0]} of the score range). By range: {', '.join(names)}. Smallest std: "
        f"{report.ALGO_NAMES[smallest_std.algo]} {smallest_std.label} ({report.fmt(smallest_std.std)}). "
    )
    if len({row.algo for row in grids}) < 2:
        # CEM-AH's two policy sizes against each other say nothing about the claim.
        return (
            text + "The paper's claim (CEM-AH the least sensitive) cannot be judged yet: no other method's grid has results."
        )
    verdict = "holds" if grids[0].algo == "cemah" else "does not hold"
    text += f"The paper's claim (CEM-AH the least sensitive) {verdict} here"
    if partial:
        listed = ", ".join(f"{report.ALGO_NAMES[r.algo]} {r.label} {len(r.finals)}/{r.n_variants}" for r in partial)
        text += f" on partial grids ({listed})"
    return text + "."


def plot(rep: report.Report, env: str, out: Path) -> Path:
    """
    Write ``out``: one column per grid of each method (a box over its variants, and every variant as a point) and
    one for CEM-AH's defaults and ablations (named points); the random policy and the score reference as lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(11, 5))
    labels: list[str] = []
    for algo in cells(env):
        finals = finals_by_variant(rep, env, algo)
        columns = [(group, members(env, algo, group)) for group in grid_groups(env, algo)]
        singles = [v.name for v in variants(env, algo) if v.group in SINGLE_GROUPS]
        if singles:
            columns.append(("defaults & ablations", singles))
        for group, names in columns:
            x = len(labels)
            values = [finals[name] for name in names if name in finals]
            labels.append(
                f"{report.ALGO_NAMES[algo]}\n{group if group != 'grid' else 'lr x ' + BATCH_AXIS.get(algo, 'batch')}"
            )
            if len(values) >= 2 and group in grid_groups(env, algo):
                axis.boxplot(values, positions=[x], widths=0.5, showfliers=False)
            # Spread the points sideways, deterministically, so that equal returns stay visible.
            offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(len(values))
            marker = "*" if group == "defaults & ablations" else "o"
            axis.scatter(x + offsets, values, color=COLORS.get(algo), marker=marker, s=60 if marker == "*" else 20, zorder=3)
            if group == "defaults & ablations":
                for offset, name in zip(offsets, (n for n in names if n in finals), strict=True):
                    axis.annotate(name, (x + offset, finals[name]), textcoords="offset points", xytext=(6, 0), fontsize=8)
    if env in rep.random:
        axis.axhline(rep.random[env]["mean_return"], color="grey", linestyle="--", linewidth=1, label="random policy")
    reference = protocol.ENVS[env].score_reference
    axis.axhline(reference.value, color="black", linestyle=":", linewidth=1, label=f"score reference: {reference.label}")
    axis.set_xticks(range(len(labels)), labels, fontsize=8)
    axis.set_xlim(-0.5, len(labels) - 0.5)
    axis.set_ylabel("final test return (10 episodes)")
    axis.set_title(f"{protocol.ENVS[env].env_id}: final test return of every variant (one seed each)")
    axis.legend(loc="best", fontsize=8)
    axis.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def run_list(rep: report.Report) -> list[str]:
    """Every run of the grid: its variant's ``-params`` and its result, or that it is not done yet."""
    by_id = {f"{SUITE.name}/{result['run_id']}": result for result in rep.results}
    lines = [
        "| run | group | -params | status | stopped by | env steps | final test return |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in protocol.expand(SUITE):
        group = next(v.group for v in variants(run.env, run.algo) if v.name == run.variant)
        result = by_id.get(run.run_id)
        # The -params the run was made with (an older run keeps the option names of its time).
        params = " ".join(f"`{param}`" for param in (result["params"] if result else run.params)) or "(yml entry)"
        if result is None:
            lines.append(f"| {run.run_id} | {group} | {params} | not run yet | | | |")
            continue
        metrics = result["metrics"]
        lines.append(
            f"| {run.run_id} | {group} | {params} | {result['status']} | {report._reason(result)} | "
            f"{metrics['env_steps']:,} | {report.fmt(metrics['final_test_return'])} |"
        )
    return lines


def not_done(rep: report.Report) -> list[str]:
    """The grid's runs without a result in the table, by env and method, and the failed ones."""
    lines = []
    done = {f"{SUITE.name}/{result['run_id']}" for result in rep.results}
    runs = [run for run in protocol.expand(SUITE) if run.run_id not in done]
    for env in protocol.suite_envs(SUITE):
        for algo in cells(env):
            names = [str(run.variant) for run in runs if run.env == env and run.algo == algo]
            n_variants = len(variants(env, algo))
            if names:
                listed = f"all {n_variants}" if len(names) == n_variants else ", ".join(f"`{name}`" for name in names)
                lines.append(f"- {env} / {report.ALGO_NAMES[algo]}: {listed}")
    lines = [f"Not done yet ({len(runs)} runs):", "", *lines] if runs else ["Every run of the grid is done."]
    failed = [f"`{r['run_id']}`" for r in rep.results if r["status"] == "failed"]
    if failed:
        lines += ["", f"Failed ({len(failed)}; `--retry-failed` runs them again): {', '.join(failed)}."]
    return lines


def cost_table() -> list[str]:
    """Per cell: variants, budget, cap, evaluation interval and the dry run's estimate."""
    rates = load_rates()
    runs = protocol.expand(SUITE)
    lines = [
        "| env | method | variants | env steps per run | wall-clock cap | evaluation every | estimated core time |",
        "|---|---|---|---|---|---|---|",
    ]
    for env in protocol.suite_envs(SUITE):
        for algo in cells(env):
            cell = [run for run in runs if run.env == env and run.algo == algo]
            seconds = sum(protocol.estimate_seconds(run, rates) for run in cell)
            lines.append(
                f"| {env} | {report.ALGO_NAMES[algo]} | {len(cell)} | {cell[0].budget:,} | "
                f"{report.fmt_seconds(cell[0].cap_s)} | {cell[0].eval_freq:,} steps | {protocol.format_hours(seconds)} |"
            )
    total = sum(protocol.estimate_seconds(run, rates) for run in runs)
    return [
        *lines,
        "",
        f"{len(runs)} runs, estimated {total / 3600:.2f} core-hours (`--dry-run`, from the probe's rates in "
        f"`docs/benchmarks/suite/step_rates.json`), about {protocol.format_hours(total / 2)} wall-clock with `--jobs 2`.",
    ]


def build(root: Path | None, out_dir: Path) -> dict[str, str]:
    """
    The generated blocks of the README, by name; writes the plots into ``out_dir / "plots"``.

    :param root: A results root whose finished run folders are packed into the suite's table first; None reads the
        committed table as it is.
    """
    rep = report.Report(SUITE.name, root)
    envs = protocol.suite_envs(SUITE)
    all_spreads = {env: spreads(rep, env) for env in envs}
    n_capped = sum(bool(r.get("capped")) for r in rep.results)
    n_failed = sum(r["status"] == "failed" for r in rep.results)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    summary = [
        f"Generated by `python -m benchmarks.suite.sensitivity` on {now} from the table "
        f"`{protocol.repo_relative(store.table_path(SUITE.name, root))}`.",
        "",
        f"Runs: {len(rep.results)} of the {len(protocol.expand(SUITE))} of the grid have results ({n_capped} stopped by the "
        f"wall-clock cap, {n_failed} failed).",
        "",
        *not_done(rep),
    ]
    plots = [plot(rep, env, out_dir / "plots" / f"{env}.png") for env in envs if any(rep.ok(env, a) for a in cells(env))]
    blocks: dict[str, list[str]] = {
        "summary": summary,
        "claim": [smallest_spread(env, all_spreads[env]) for env in envs],
        "spread": [line for env in envs for line in (f"### {env}", "", *spread_table(all_spreads[env]), "")],
        "plots": [f"![{path.stem}]({os.path.relpath(path, out_dir)})" for path in plots] or ["(no results yet)"],
        "cost": cost_table(),
        "machine": ["Machines of the runs: " + "; ".join(store.machines(rep.results))],
        "runs": run_list(rep),
    }
    return {name: "\n".join(lines).rstrip("\n") for name, lines in blocks.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite.sensitivity", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root", type=Path, default=None, help="pack the finished run folders below this root into the table first"
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder of README.md and plots/")
    args = parser.parse_args(argv)
    out_dir: Path = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    title = "Hyper-parameter sensitivity (the paper's Figure 6)"
    path = fill_readme(out_dir / "README.md", title, build(args.root.resolve() if args.root else None, out_dir))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
