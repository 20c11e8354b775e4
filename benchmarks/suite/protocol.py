"""
The benchmark protocols: which runs exist, their budgets, and the rl-zoo3 command of each.

Everything that decides *what* is run lives here, so the runner (:mod:`benchmarks.suite.run`) and the
report (:mod:`benchmarks.suite.report`) agree on it. Hyper-parameters are never set here: they come from
``hyperparams/<algo>.yml`` (the files users get) or from rl-zoo3's own files; the suite only chooses the
env-step budget (``-n``), the evaluation schedule, the seeds and a wall-clock cap; the exception is the
sensitivity suite, whose runs are variants of those files (``-params``, see :class:`Variant`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
HYPERPARAMS_DIR = REPO_ROOT / "hyperparams"
#: Where run folders are written (committed: small CSV/JSON files; rl-zoo3's model zips are ignored).
# The run folders while a suite runs (git-ignored); the finished runs are committed as one table per suite
# (benchmarks.suite.store).
DEFAULT_RESULTS_ROOT = REPO_ROOT / "runs" / "suite"

#: Evaluation: episodes per evaluation point and the number of points per run (rl-zoo3's EvalCallback).
EVAL_EPISODES = 10
EVAL_POINTS = 20

POPULATION_ALGOS = ("cemah", "cem", "ars")
#: The paper's CEM-based Q-learning baselines (``sb3_cemah.QtOpt``, ``QtOptDDPG``), run on every env.
QTOPT_ALGOS = ("qtopt", "qtopt_ddpg")
ALL_ALGOS = ("cemah", "cem", "ars", "a2c", "ddpg", "dqn", *QTOPT_ALGOS)


@dataclasses.dataclass(frozen=True)
class Reference:
    """A return from the paper (or rl-zoo3) that the report measures the time to reach."""

    label: str
    value: float


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """
    One benchmark environment.

    :param key: Short name used on the command line and in folder names.
    :param env_id: The gymnasium id given to rl-zoo3.
    :param max_episode_steps: Episode length limit (for the full protocol's 50k-episode ceiling).
    :param typical_episode_steps: Steps of an average episode, to convert the paper's episodes to steps.
    :param algos: Algorithms run on this env.
    :param references: Returns whose time-to-reach the report gives.
    :param score_reference: The return that normalises scores to 1 (the random policy's is 0) in the aggregate
        statistics: rl-zoo3's TD3 benchmark agent where it has one (its strongest published agent on these envs).
    :param env_steps_per_s: One core, random actions (DESIGN.md section 4): the physical limit.
    """

    key: str
    env_id: str
    max_episode_steps: int
    typical_episode_steps: int
    algos: tuple[str, ...]
    references: tuple[Reference, ...]
    score_reference: Reference
    env_steps_per_s: float


ENVS: dict[str, EnvSpec] = {
    "maze": EnvSpec(
        key="maze",
        env_id="sb3_cemah/Maze-v0",
        max_episode_steps=10_000,
        typical_episode_steps=1_000,
        algos=ALL_ALGOS,
        references=(
            Reference("paper CEM-AH @4k episodes", 884.55),
            Reference("paper CEM-AH final", 888.66),
            Reference("paper DDPG final", 909.90),
            # Ours: the goal within 100 steps (the optimum is 16 steps, 998.4); a random walk scores ~880.
            Reference("goal within 100 steps", 990.0),
        ),
        # rl-zoo3 has no agent for the paper's maze: the best possible return instead.
        score_reference=Reference("the 16-step optimum (no rl-zoo3 agent)", 998.4),
        env_steps_per_s=3_500.0,
    ),
    "reacher": EnvSpec(
        key="reacher",
        env_id="ReacherBulletEnv-v0",
        max_episode_steps=150,
        typical_episode_steps=150,
        algos=("cemah", "cem", "ars", "a2c", "ddpg", *QTOPT_ALGOS),
        # The paper's reacher is the authors' own env: its returns are not comparable, so rl-zoo3's.
        references=(
            Reference("rl-zoo3 ARS agent", -4.2),
            Reference("rl-zoo3 A2C", 15.0),
            Reference("rl-zoo3 DDPG", 15.6),
        ),
        score_reference=Reference("rl-zoo3 TD3 benchmark", 17.1),
        env_steps_per_s=6_600.0,
    ),
    "ant": EnvSpec(
        key="ant",
        env_id="AntBulletEnv-v0",
        max_episode_steps=1_000,
        typical_episode_steps=1_000,
        algos=("cemah", "cem", "ars", "a2c", "ddpg", *QTOPT_ALGOS),
        references=(
            Reference("paper CEM final", 739.59),
            Reference("paper CEM-AH final", 845.51),
        ),
        score_reference=Reference("rl-zoo3 TD3 benchmark (1M steps)", 3300.0),
        env_steps_per_s=1_100.0,
    ),
    "walker": EnvSpec(
        key="walker",
        env_id="Walker2DBulletEnv-v0",
        max_episode_steps=1_000,
        typical_episode_steps=1_000,
        algos=("cemah", "cem", "ars", "a2c", "ddpg", *QTOPT_ALGOS),
        references=(
            Reference("paper CEM final", 550.78),
            Reference("paper CEM-AH final", 640.54),
        ),
        score_reference=Reference("rl-zoo3 TD3 benchmark (1M steps)", 2214.0),
        env_steps_per_s=1_350.0,
    ),
}


def _mujoco(key: str, env_id: str, ars: Reference, td3: float, env_steps_per_s: float, *goals: Reference) -> EnvSpec:
    """A Gymnasium MuJoCo v5 env of the medium suite: rl-zoo3's references are its benchmark's (v3 envs, one run each)."""
    return EnvSpec(
        key=key,
        env_id=env_id,
        max_episode_steps=1_000,
        typical_episode_steps=1_000,
        algos=POPULATION_ALGOS,
        references=(ars, *goals),
        score_reference=Reference("rl-zoo3 TD3 benchmark (v3, 1M steps)", td3),
        env_steps_per_s=env_steps_per_s,
    )


# Goals for CEM-AH within 3M steps, beside rl-zoo3's ARS agents.
ENVS.update(
    {
        "halfcheetah": _mujoco(
            "halfcheetah", "HalfCheetah-v5", Reference("rl-zoo3 ARS (12M steps)", 4815.0), 9656.0, 19_000.0,
            Reference("goal", 3000.0),
        ),
        "swimmer": _mujoco("swimmer", "Swimmer-v5", Reference("rl-zoo3 ARS (2M steps)", 355.0), 359.0, 15_000.0),
        "hopper": _mujoco(
            "hopper", "Hopper-v5", Reference("rl-zoo3 ARS (7M steps)", 3344.0), 3606.0, 8_700.0, Reference("goal", 3000.0)
        ),
        "walker2d": _mujoco("walker2d", "Walker2d-v5", Reference("rl-zoo3 ARS (75M steps)", 2994.0), 4718.0, 4_900.0),
    }
)  # fmt: skip

#: Cheapest first: the order in which the runner launches envs.
ENV_ORDER = ("maze", "reacher", "ant", "walker", "halfcheetah", "swimmer", "hopper", "walker2d")
#: The paper's envs (the quick, full and probe suites).
PAPER_ENVS = ("maze", "reacher", "ant", "walker")
MUJOCO_ENVS = ("halfcheetah", "swimmer", "hopper", "walker2d")


@dataclasses.dataclass(frozen=True)
class SuiteSpec:
    """
    A protocol: per-env step budgets and caps, and seeds per algorithm.

    :param budgets: Env steps per run (``-n``), the same for every algorithm on an env.
    :param caps_s: Wall-clock cap per run in seconds for the gradient methods (a2c, ddpg, dqn), which may
        reach it before the budget; the run records where it stopped.
    :param population_cap_s: Wall-clock cap of the population methods, only a safety net (a run that hangs):
        they are meant to run their whole budget.
    :param max_episodes: Stop after this many training episodes (the paper's 50k), or None.
    :param population_seeds: Seeds of cemah, cem, ars.
    :param other_seeds: Seeds of a2c, ddpg, dqn.
    """

    name: str
    budgets: dict[str, int]
    caps_s: dict[str, float]
    population_cap_s: float
    max_episodes: int | None
    population_seeds: tuple[int, ...]
    other_seeds: tuple[int, ...]
    description: str
    #: ``--eval-freq`` per env instead of ``budget / EVAL_POINTS`` (the probe's budgets are ceilings).
    eval_freqs: dict[str, int] | None = None
    #: ``--eval-freq`` of single ``(env, algo)`` cells, before ``eval_freqs``: for runs that the cap stops long before
    #: the env's evaluation interval (Qt-Opt's), which would otherwise never be tested.
    cell_eval_freqs: dict[tuple[str, str], int] | None = None
    #: A hyper-parameter grid: only these ``(env, algo)`` cells are run, every variant with every seed.
    variants: dict[tuple[str, str], tuple[Variant, ...]] | None = None
    #: Arms: variants of an algorithm run beside its yml entry on every env, every seed, each a method of its own in
    #: the report (:func:`method_key`); not a grid.
    arms: dict[str, tuple[Variant, ...]] | None = None


@dataclasses.dataclass(frozen=True)
class Variant:
    """
    One hyper-parameter setting of a grid: rl-zoo3 ``-params`` over the run's yml entry.

    :param name: Its folder name, between the algorithm and the seed.
    :param params: ``key:value`` strings exactly as ``python -m rl_zoo3.train -params`` takes them (it evals the
        value, and a key replaces the entry's whole value: a ``policy_kwargs`` must repeat the entry's other keys).
    :param group: The variants compared with each other: a learning-rate x batch-size grid (``grid``, or one per
        policy size: ``2-layer``, ``3-layer``), else ``ablation`` or ``defaults``.
    """

    name: str
    params: tuple[str, ...] = ()
    group: str = "defaults"


def method_key(algo: str, variant: str | None) -> str:
    """A method of the report: the algorithm, or ``algo/variant`` for an arm (see :attr:`SuiteSpec.arms`)."""
    return algo if variant is None else f"{algo}/{variant}"


#: CEM-AH's closed loop whose one generated candidate is the acting ensemble's mean weights: the design screened for
#: the full measurement (docs/benchmarks/closed_loop), an arm of the quick and medium suites (``--variants
#: ensemble_mean`` runs it alone).
ENSEMBLE_MEAN_ARM = Variant("ensemble_mean", ("generated_candidates:1", "generated_from:'ensemble_mean'"), "closed_loop")
CLOSED_LOOP_ARMS: dict[str, tuple[Variant, ...]] = {"cemah": (ENSEMBLE_MEAN_ARM,)}


# Quick: about 7 core-hours in all (`--dry-run` prints the estimate), 1.4 of them Qt-Opt's 8 runs. The budgets come
# from the rates the probe suite measured on this machine (docs/benchmarks/suite/step_rates.json). The 20
# evaluations of 10 episodes cost as much as training on the PyBullet envs (CEM-AH acts at a few hundred steps per
# second there), which is why ant and walker get only 200k steps. DDPG, DQN, Qt-Opt and Qt-Opt+DDPG are cut by the
# 10-minute cap.
QUICK = SuiteSpec(
    name="quick",
    budgets={"maze": 1_000_000, "reacher": 500_000, "ant": 200_000, "walker": 200_000},
    caps_s=dict.fromkeys(PAPER_ENVS, 600.0),
    population_cap_s=3600.0,
    max_episodes=None,
    population_seeds=(0, 1, 2),
    other_seeds=(0,),
    description="3 seeds for cemah/cem/ars, 1 for the others, and CEM-AH's closed loop (ensemble_mean); about 8 core-hours.",
    arms=CLOSED_LOOP_ARMS,
    # After its 10k warm-up steps Qt-Opt trains at ~50 env steps/s on the maze, Qt-Opt+DDPG at ~16 (probe, wall-clock):
    # the cap stops them before the maze's first evaluation at 50k steps.
    cell_eval_freqs={("maze", algo): 5_000 for algo in QTOPT_ALGOS},
)

# Full: the paper's 50k training episodes (a step ceiling of 50k typical episodes, and the episode count
# enforced by the wrapper), 3 seeds for every algorithm; a 48 h cap keeps DDPG finite.
FULL = SuiteSpec(
    name="full",
    budgets={key: 50_000 * ENVS[key].typical_episode_steps for key in PAPER_ENVS},
    caps_s=dict.fromkeys(PAPER_ENVS, 48 * 3600.0),
    population_cap_s=48 * 3600.0,
    max_episodes=50_000,
    population_seeds=(0, 1, 2),
    other_seeds=(0, 1, 2),
    description="The paper's 50k episodes per run, 3 seeds for every algorithm; days of compute.",
)

# Medium: Gymnasium's MuJoCo v5 envs, 3M steps for the population methods (at least 60 iterations of the yml
# files' 50 candidates), 5 seeds; the estimate (`--dry-run`) comes from the probe's measured rates.
MEDIUM = SuiteSpec(
    name="medium",
    budgets=dict.fromkeys(MUJOCO_ENVS, 3_000_000),
    caps_s=dict.fromkeys(MUJOCO_ENVS, 3 * 3600.0),
    population_cap_s=3 * 3600.0,
    max_episodes=None,
    population_seeds=(0, 1, 2, 3, 4),
    other_seeds=(),
    description="MuJoCo v5 envs, 3M steps, 5 seeds of cemah/cem/ars, and CEM-AH's closed loop (ensemble_mean).",
    arms=CLOSED_LOOP_ARMS,
)

# Probe: ~1 minute per algorithm and env, to measure step rates (and check that every run works).
PROBE = SuiteSpec(
    name="probe",
    budgets=dict.fromkeys(ENVS, 10_000_000),
    caps_s=dict.fromkeys(ENVS, 90.0),
    population_cap_s=90.0,
    max_episodes=None,
    population_seeds=(0,),
    other_seeds=(0,),
    description="One 90 s run per algorithm and env, to measure step rates; not a result.",
    # A few evaluations within the 90 s, to time test episodes too.
    eval_freqs={"maze": 50_000, "reacher": 30_000, "ant": 15_000, "walker": 15_000, **dict.fromkeys(MUJOCO_ENVS, 20_000)},
    # Qt-Opt takes 10k random warm-up steps (hyperparams/qtopt.yml), then does a CEM-targeted gradient step per env
    # step: one evaluation soon after the warm-up.
    cell_eval_freqs={(env, algo): 12_000 for env in PAPER_ENVS for algo in QTOPT_ALGOS},
)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run: an algorithm on an env with a seed, under a suite's budget, and a grid's variant of its yml entry."""

    suite: str
    env: str
    algo: str
    seed: int
    budget: int
    eval_freq: int
    cap_s: float
    max_episodes: int | None
    #: The :class:`Variant`'s name and ``-params``; None and none for the yml entry as it is.
    variant: str | None = None
    params: tuple[str, ...] = ()

    @property
    def run_id(self) -> str:
        """Unique name, also the run's folder below the results root: ``suite/env/algo/[variant/]seed<n>``."""
        variant = [] if self.variant is None else [self.variant]
        return "/".join([self.suite, self.env, self.algo, *variant, f"seed{self.seed}"])

    @property
    def env_id(self) -> str:
        return ENVS[self.env].env_id

    def run_dir(self, root: Path) -> Path:
        return root / self.run_id

    def conf_file(self) -> Path | None:
        """``hyperparams/<algo>.yml`` if it has an entry for the env, else None (rl-zoo3's own file)."""
        return conf_file(self.algo, self.env_id)

    def zoo_args(self, log_folder: Path) -> list[str]:
        """Arguments of ``python -m rl_zoo3.train`` for this run."""
        args = [
            "--algo", self.algo,
            "--env", self.env_id,
            "-f", str(log_folder),
            "--seed", str(self.seed),
            "-n", str(self.budget),
            "--eval-freq", str(self.eval_freq),
            "--eval-episodes", str(EVAL_EPISODES),
            # One core per run: two runs share the two cores; torch threads would fight over them.
            "--num-threads", "1",
        ]  # fmt: skip
        conf = self.conf_file()
        if conf is not None:
            args += ["-conf", repo_relative(conf)]
        if self.params:
            args += ["-params", *self.params]
        return args


def repo_relative(path: Path) -> str:
    """A path relative to the repository root when possible (commands are run from there)."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def hyperparams(algo: str, env_id: str) -> dict[str, Any] | None:
    """The entry of ``env_id`` in ``hyperparams/<algo>.yml``, or None when the file or the entry is missing."""
    path = HYPERPARAMS_DIR / f"{algo}.yml"
    if not path.is_file():
        return None
    with path.open() as file:
        entries = yaml.safe_load(file) or {}
    return entries.get(env_id)


def conf_file(algo: str, env_id: str) -> Path | None:
    """
    The yml file a run names with ``-conf``: ``hyperparams/<algo>.yml`` when it has an entry for ``env_id``.

    rl-zoo3's own file is used otherwise (e.g. ``ddpg`` and ``ars`` on the PyBullet envs), exactly as a
    user who runs ``python -m rl_zoo3.train --algo ddpg --env AntBulletEnv-v0`` gets. ``a2c`` needs
    ``-conf`` on the PyBullet envs: without it rl-zoo3 reads its tuned A2C, not the REINFORCE-style one.
    """
    return HYPERPARAMS_DIR / f"{algo}.yml" if hyperparams(algo, env_id) is not None else None


def eval_freq_for(budget: int) -> int:
    """
    ``--eval-freq`` for ``EVAL_POINTS`` evaluations per run.

    rl-zoo3 divides ``--eval-freq`` by ``n_envs`` and every algorithm here calls the callback once per
    VecEnv step (``n_envs`` env steps), so the value given is in env steps whatever ``n_envs`` is.
    """
    return max(1, budget // EVAL_POINTS)


# The paper's Figure 6 (Sec. 5.2): learning rate x batch size (x 2 or 3 layers for CEM-AH), maze and reacher.
LEARNING_RATES = ("1e-3", "5e-3", "1e-4")
BATCH_SIZES = (50, 100, 1000)
#: Hidden units of CEM-AH's 3-layer policy: the authors' code's (the paper says N_h = 200).
HIDDEN_UNITS = 100
#: CEM-AH's generated policies per gradient step (the paper's M, cemah.yml's n_noise_samples).
N_NOISE_SAMPLES = 100


def lr_batch_grid(
    group: str, batch_params: Callable[[int], tuple[str, ...]], suffix: str = "", batch_name: str = "batch"
) -> tuple[Variant, ...]:
    """
    The 9 variants ``lr<rate>_<batch_name><size><suffix>`` of the paper's learning rates and batch sizes.

    :param batch_params: The ``-params`` of a batch size (the algorithm's name for it, and what goes with it).
    """
    return tuple(
        Variant(f"lr{rate}_{batch_name}{batch}{suffix}", (f"learning_rate:{rate}", *batch_params(batch)), group)
        for rate in LEARNING_RATES
        for batch in BATCH_SIZES
    )


def net_arch_param(algo: str, env_id: str, net_arch: list[int]) -> str:
    """
    ``policy_kwargs`` of the yml entry with another ``net_arch``: rl-zoo3's ``-params`` replaces the entry's whole
    ``policy_kwargs``, so its other keys (the maze's ``standardize_obs``) are repeated.
    """
    kwargs = (hyperparams(algo, env_id) or {}).get("policy_kwargs", {})
    kwargs = eval(kwargs) if isinstance(kwargs, str) else dict(kwargs)  # as rl-zoo3 reads it
    kwargs["net_arch"] = net_arch
    return "policy_kwargs:dict(" + ", ".join(f"{key}={value!r}" for key, value in kwargs.items()) + ")"


def _cemah_batch(batch: int) -> tuple[str, ...]:
    # CEMAH needs batch_size >= n_noise_samples (each generated policy imitates batch_size // n_noise_samples
    # states): the batch of 50 goes with 50 generated policies.
    return (f"batch_size:{batch}", *((f"n_noise_samples:{batch}",) if batch < N_NOISE_SAMPLES else ()))


def cemah_variants(env_id: str) -> tuple[Variant, ...]:
    """cemah.yml's defaults, the paper's ablations (Fig. 6g-h) and two more, and the grid for 2 and 3 layers."""

    def grid(layers: str, net_arch: list[int]) -> tuple[Variant, ...]:
        policy = net_arch_param("cemah", env_id, net_arch)
        return lr_batch_grid(layers, lambda batch: (*_cemah_batch(batch), policy), f"_{layers.replace('-', '')}")

    return (
        # Our default trains without the adversarial phase: it is the paper's ablation without the discriminator,
        # and adversarial_steps > 0 the paper's full method.
        Variant("defaults"),
        Variant("discriminator", ("adversarial_steps:10",), "ablation"),
        # The paper's ablation without pre-training keeps the adversarial phase. Without either (pretrain_steps=0 and
        # every other default) nothing trains the hypernetwork: the untrained ensemble, a floor.
        Variant("no_pretrain_discriminator", ("pretrain_steps:0", "adversarial_steps:10"), "ablation"),
        Variant("no_pretrain", ("pretrain_steps:0",), "ablation"),
        *grid("2-layer", []),
        *grid("3-layer", [HIDDEN_UNITS]),
    )


def _batch_size(batch: int) -> tuple[str, ...]:
    return (f"batch_size:{batch}",)


def _a2c_n_steps(batch: int) -> tuple[str, ...]:
    # A2C has no batch size: an update uses n_steps steps of each of its n_envs envs.
    return (f"n_steps:{batch}",)


SENSITIVITY_ENVS = ("maze", "reacher")
# Sensitivity: one seed per variant, 89 runs, about 6 core-hours (`--dry-run`); 10 evaluations per run but for:
# - the gradient methods, cut by a 5-minute cap (DDPG at ~20k steps, DQN at ~100k on the maze): evaluated more often,
#   to be evaluated before the cap (a maze test episode costs DDPG ~1 s, DQN ~2.5 s);
# - CEM-AH on the maze: 2 evaluations. rl-zoo3 tests minigrid envs with deterministic=False, so the ensemble is
#   generated anew at every step: an evaluation of the 3-layer policy (25k generated weights per member) took
#   ~170 CPU-s, 10 would take ~30 min per run.
SENSITIVITY = SuiteSpec(
    name="sensitivity",
    budgets={"maze": 500_000, "reacher": 300_000},
    caps_s=dict.fromkeys(SENSITIVITY_ENVS, 300.0),
    population_cap_s=1800.0,
    max_episodes=None,
    population_seeds=(0,),
    other_seeds=(0,),
    description="The paper's Figure 6: hyper-parameter variants of CEM-AH, DQN, DDPG and REINFORCE (A2C), one seed each.",
    eval_freqs={"maze": 50_000, "reacher": 30_000},
    cell_eval_freqs={("maze", "cemah"): 250_000, ("maze", "ddpg"): 5_000, ("reacher", "ddpg"): 2_500, ("maze", "dqn"): 25_000},
    variants={
        **{(env, "cemah"): cemah_variants(ENVS[env].env_id) for env in SENSITIVITY_ENVS},
        ("maze", "dqn"): lr_batch_grid("grid", _batch_size),
        **{(env, "ddpg"): lr_batch_grid("grid", _batch_size) for env in SENSITIVITY_ENVS},
        **{(env, "a2c"): lr_batch_grid("grid", _a2c_n_steps, batch_name="nsteps") for env in SENSITIVITY_ENVS},
    },
)

SUITES: dict[str, SuiteSpec] = {suite.name: suite for suite in (QUICK, MEDIUM, FULL, PROBE, SENSITIVITY)}


def suite_envs(suite: SuiteSpec) -> list[str]:
    """The envs of a suite, in launch order."""
    return [key for key in ENV_ORDER if key in suite.budgets]


def expand(
    suite: SuiteSpec,
    envs: Iterable[str] | None = None,
    algos: Iterable[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[RunSpec]:
    """
    The runs of a suite, cheapest env first, then by algorithm and seed (every algorithm's first run before
    the second ones, so that an interrupted suite has one run of each algorithm as early as possible); in a
    grid, an algorithm's runs are its variants, seed by seed.

    :param envs: Env keys to keep (all by default).
    :param algos: Algorithms to keep (all by default).
    :param seeds: Seeds to use instead of the suite's.
    """
    env_keys = [key for key in suite_envs(suite) if envs is None or key in set(envs)]
    algo_set = None if algos is None else set(algos)
    runs: list[RunSpec] = []
    for env_key in env_keys:
        env = ENVS[env_key]
        budget = suite.budgets[env_key]
        per_algo: dict[str, list[tuple[int, Variant | None]]] = {}
        for algo in env.algos:
            if algo_set is not None and algo not in algo_set:
                continue
            if suite.variants is not None and (env_key, algo) not in suite.variants:
                continue
            default_seeds = suite.population_seeds if algo in POPULATION_ALGOS else suite.other_seeds
            variants: tuple[Variant | None, ...] = (None,) if suite.variants is None else suite.variants[(env_key, algo)]
            variants += (suite.arms or {}).get(algo, ())
            per_algo[algo] = [
                (seed, variant) for seed in (seeds if seeds is not None else default_seeds) for variant in variants
            ]
        n_rounds = max((len(s) for s in per_algo.values()), default=0)
        for round_index in range(n_rounds):
            for algo, algo_runs in per_algo.items():
                if round_index < len(algo_runs):
                    seed, variant = algo_runs[round_index]
                    runs.append(
                        RunSpec(
                            suite=suite.name,
                            env=env_key,
                            algo=algo,
                            seed=seed,
                            budget=budget,
                            eval_freq=(suite.cell_eval_freqs or {}).get((env_key, algo))
                            or (suite.eval_freqs or {}).get(env_key)
                            or eval_freq_for(budget),
                            cap_s=suite.population_cap_s if algo in POPULATION_ALGOS else suite.caps_s[env_key],
                            max_episodes=suite.max_episodes,
                            variant=None if variant is None else variant.name,
                            params=() if variant is None else variant.params,
                        )
                    )
    return runs


@dataclasses.dataclass(frozen=True)
class Rate:
    """Measured speed of an algorithm on an env (one core): training steps/s and seconds per test episode."""

    train_steps_per_s: float
    s_per_test_episode: float | None = None


# Env steps per second of training on one core, (algo, env) -> rate, before any probe has been run:
# DESIGN.md section 4 (random actions, SB3 on ReacherBullet) scaled by a guess of each method's overhead.
_DEFAULT_OVERHEAD = {
    "cemah": 0.5, "cem": 0.8, "ars": 0.7, "a2c": 0.15, "ddpg": 0.01, "dqn": 0.2, "qtopt": 0.01, "qtopt_ddpg": 0.01
}  # fmt: skip


def default_rate(algo: str, env: str) -> float:
    """A guess of the training step rate, used by ``--dry-run`` when no probe has measured it."""
    return ENVS[env].env_steps_per_s * _DEFAULT_OVERHEAD.get(algo, 0.2)


#: Seconds rl-zoo3 takes to start (imports, env and model creation) on this machine.
SETUP_S = 15.0


def estimate_seconds(run: RunSpec, rates: dict[tuple[str, str], Rate]) -> float:
    """
    Wall-clock estimate of a run: its budget at the measured (or guessed) training rate, plus its
    ``EVAL_POINTS * EVAL_EPISODES`` test episodes (measured, or typical episodes at the env's raw rate),
    at most the cap.
    """
    env = ENVS[run.env]
    rate = rates.get((run.algo, run.env))
    train_rate = rate.train_steps_per_s if rate is not None else default_rate(run.algo, run.env)
    test_episode_s = rate.s_per_test_episode if rate is not None and rate.s_per_test_episode else None
    if test_episode_s is None:
        test_episode_s = env.typical_episode_steps / env.env_steps_per_s
    n_evals = run.budget // max(run.eval_freq, 1)
    seconds = SETUP_S + run.budget / max(train_rate, 1e-9) + n_evals * EVAL_EPISODES * test_episode_s
    return min(seconds, run.cap_s + SETUP_S)


def format_hours(seconds: float) -> str:
    """``1.23 h`` or ``12 min``."""
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{math.ceil(seconds / 60)} min"
