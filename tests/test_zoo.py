"""
The rl-zoo3 integration, tested the way users run it: the real ``python -m rl_zoo3.train`` /
``rl_zoo3.enjoy`` / ``rl_zoo3.plots`` commands in subprocesses of this interpreter, with rl-zoo3
unmodified. They need sb3-cemah pip-installed (``pip install -e .[zoo,envs]``): the plug-in is the
``sb3_cemah_zoo.pth`` file that the install puts in site-packages.

Budgets are tiny (populations of 10, a few thousand steps, the maze cut to a few hundred steps per
episode with ``--env-kwargs max_steps:N``): these check the plumbing and the files rl-zoo3 writes,
not learning.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from sb3_cemah.zoo import ZOO_KEYS, constructor_parameters

REPO = Path(__file__).resolve().parents[1]
HYPERPARAMS = REPO / "hyperparams"
MAZE = "sb3_cemah/Maze-v0"
# rl-zoo3 names folders after the env id with "/" replaced by "-".
MAZE_FOLDER = "sb3_cemah-Maze-v0"
# Shared by every training command: one torch thread (the machine has 2 cores and rl-zoo3 may run envs
# in other processes), a fixed seed, short evaluations.
COMMON = ["--seed", "0", "--num-threads", "1", "--eval-episodes", "2"]


@pytest.fixture(scope="module", autouse=True)
def _plugin_installed() -> None:
    if importlib.util.find_spec("sb3_cemah_zoo_hook") is None:
        pytest.fail("sb3-cemah is not pip-installed: run `pip install -e .[zoo,envs]` (the rl-zoo3 hook comes with it)")


def run_python(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """
    Run ``python ARGS`` with this interpreter and fail with its output if it exits non-zero.

    :param args: Arguments after ``python``.
    :param cwd: Working directory (a temporary one, so that the checkout is not on ``sys.path``).
    :param timeout: Seconds before the command is killed.
    :return: The finished process, with ``stdout`` and ``stderr`` as text.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    process = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert process.returncode == 0, f"python {' '.join(args)} exited {process.returncode}\n{process.stdout}\n{process.stderr}"
    return process


def run_dir(log_folder: Path, algo: str, env_folder: str, run_id: int = 1) -> Path:
    """The folder of one rl-zoo3 run: ``<log_folder>/<algo>/<env>_<run_id>``."""
    return log_folder / algo / f"{env_folder}_{run_id}"


def assert_training_files(path: Path, env_folder: str, evaluations: bool = True) -> None:
    """Check the files rl-zoo3 writes for a finished training run."""
    assert (path / f"{env_folder}.zip").is_file()
    assert (path / env_folder / "config.yml").is_file()
    assert (path / env_folder / "args.yml").is_file()
    assert list(path.glob("*.monitor.csv"))
    if evaluations:
        with np.load(path / "evaluations.npz") as data:
            assert len(data["timesteps"]) >= 1
            assert data["results"].shape[1] == 2  # --eval-episodes 2
        assert (path / "best_model.zip").is_file()


def assert_config_read(stdout: str, algo: str) -> None:
    """Check that rl-zoo3 read this package's ``<algo>.yml`` (the checkout's, or the wheel's copy)."""
    from sb3_cemah.zoo import hyperparams_file

    line = next(line for line in stdout.splitlines() if line.startswith("Loading hyperparameters from: "))
    assert Path(line.split(": ", 1)[1]).samefile(hyperparams_file(algo))


# --- The hook itself ---------------------------------------------------------------------------------


def test_interpreter_start_is_lazy_and_silent(tmp_path: Path) -> None:
    # The .pth file runs in every Python process: it must only install the hook.
    code = (
        "import json, sys; print(json.dumps({'hook': 'sb3_cemah_zoo_hook' in sys.modules, "
        "'heavy': sorted(m for m in ('torch', 'numpy', 'rl_zoo3', 'sb3_cemah', 'optuna', 'yaml') if m in sys.modules)}))"
    )
    process = run_python("-c", code, cwd=tmp_path)
    assert json.loads(process.stdout) == {"hook": True, "heavy": []}
    assert process.stderr == ""


def test_without_rl_zoo3(tmp_path: Path) -> None:
    # rl-zoo3 absent (None in sys.modules makes its import fail): sb3_cemah and sb3_cemah.zoo import
    # quietly, and sb3_cemah.zoo imports neither rl-zoo3 nor Optuna.
    code = (
        "import sys; sys.modules['rl_zoo3'] = None; import sb3_cemah, sb3_cemah.zoo; "
        "print(sys.modules['rl_zoo3'] is None and 'optuna' not in sys.modules)"
    )
    process = run_python("-c", code, cwd=tmp_path)
    assert process.stdout.strip() == "True"
    assert process.stderr == ""


def test_without_sb3_cemah(tmp_path: Path) -> None:
    # The package gone but its .pth file left (e.g. a moved editable checkout): rl-zoo3 works, silently.
    code = "import sys; sys.modules['sb3_cemah'] = None; from rl_zoo3 import ALGOS; print('ppo' in ALGOS, 'cemah' in ALGOS)"
    process = run_python("-c", code, cwd=tmp_path)
    assert process.stdout.split() == ["True", "False"]
    assert process.stderr == ""


def test_failed_patch_fails_loudly(tmp_path: Path) -> None:
    # The checkout's hook (the installed copy may predate it), installed in place of the site-packages one.
    code = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, 'is_sb3_cemah_zoo_hook', False)]; "
        "from sb3_cemah.zoo import _pth_hook; _pth_hook.install(); sys.modules['sb3_cemah.zoo'] = None; import rl_zoo3"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert process.returncode != 0
    assert "RuntimeError: sb3-cemah could not patch rl_zoo3.utils (ModuleNotFoundError" in process.stderr


def test_patches_check_what_they_rely_on() -> None:
    from sb3_cemah.zoo import RlZoo3PatchError, patch_experiment_manager, register_algos, register_samplers

    with pytest.raises(RlZoo3PatchError, match=r"rl_zoo3\.utils has no dict ALGOS.*tested with rl-zoo3>="):
        register_algos(types.ModuleType("rl_zoo3.utils"))
    hyperparams_opt = types.ModuleType("rl_zoo3.hyperparams_opt")
    hyperparams_opt.HYPERPARAMS_SAMPLER = {}  # type: ignore[attr-defined]
    with pytest.raises(RlZoo3PatchError, match="HYPERPARAMS_CONVERTER"):
        register_samplers(hyperparams_opt)

    class ExperimentManager:  # an rl-zoo3 whose manager takes the hyper-parameter file under another name
        def __init__(self, args: Any, algo: str, env_id: str, hyperparams_file: str = "") -> None: ...

    exp_manager = types.ModuleType("rl_zoo3.exp_manager")
    exp_manager.ExperimentManager = ExperimentManager  # type: ignore[attr-defined]
    with pytest.raises(RlZoo3PatchError, match=r"ExperimentManager\.__init__ with a parameter config"):
        patch_experiment_manager(exp_manager)
    assert "_sb3_cemah_patched" not in vars(ExperimentManager)


def test_installed_rl_zoo3_has_what_the_patches_rely_on() -> None:
    """Fails when rl-zoo3 changes what the patches use, or its version leaves the tested range."""
    import rl_zoo3.exp_manager
    import rl_zoo3.hyperparams_opt
    import rl_zoo3.utils
    from packaging.specifiers import SpecifierSet

    from sb3_cemah.zoo import RL_ZOO3_VERSIONS, patch_experiment_manager, register_algos, register_samplers

    # Idempotent, and they check before patching: this re-runs the checks on the real modules.
    register_algos(rl_zoo3.utils)
    register_samplers(rl_zoo3.hyperparams_opt)
    patch_experiment_manager(rl_zoo3.exp_manager)
    assert importlib.metadata.version("rl_zoo3") in SpecifierSet(RL_ZOO3_VERSIONS)
    # The zoo extra declares the same range.
    assert f'"rl-zoo3{RL_ZOO3_VERSIONS}"' in (REPO / "pyproject.toml").read_text()


def test_registration_in_process() -> None:
    from rl_zoo3 import ALGOS
    from rl_zoo3.exp_manager import ExperimentManager
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

    from sb3_cemah import CEM, CEMAH, QtOpt, QtOptDDPG
    from sb3_cemah.zoo import samplers

    assert ALGOS["cem"] is CEM and ALGOS["cemah"] is CEMAH
    assert ALGOS["qtopt"] is QtOpt and ALGOS["qtopt_ddpg"] is QtOptDDPG
    assert HYPERPARAMS_SAMPLER["cemah"] is samplers.sample_cemah_params
    assert HYPERPARAMS_CONVERTER["cem"] is samplers.convert_cem_params
    assert ExperimentManager.is_minigrid(MAZE) and not ExperimentManager.is_minigrid("CartPole-v1")


def test_default_config(tmp_path: Path) -> None:
    from sb3_cemah.zoo import default_config, hyperparams_dir, hyperparams_file

    assert hyperparams_file("cemah").is_file() and hyperparams_file("cem").is_file()
    zoo_dqn = tmp_path / "dqn.yml"
    zoo_dqn.write_text("CartPole-v1:\n  policy: MlpPolicy\n")
    # cem/cemah: always ours; a built-in algorithm: ours only for an env that only ours knows.
    assert default_config("cemah", "CartPole-v1", tmp_path / "cemah.yml") == hyperparams_dir() / "cemah.yml"
    assert default_config("dqn", MAZE, zoo_dqn) == hyperparams_dir() / "dqn.yml"
    assert default_config("dqn", "CartPole-v1", zoo_dqn) == zoo_dqn
    assert default_config("ppo", MAZE, tmp_path / "ppo.yml") == tmp_path / "ppo.yml"


def test_sampler_merges_base_policy_kwargs() -> None:
    optuna = pytest.importorskip("optuna")
    from sb3_cemah.zoo import samplers

    trial = optuna.trial.FixedTrial(
        {
            "population_size": 50,
            "elite_frac": 0.1,
            "initial_std": 1.0,
            "net_arch": "small",
            "learning_rate": 1e-4,
            "batch_size": 100,
            "pretrain_steps": 150,
            "buffer_batches": 2,
        }
    )
    with samplers.base_policy_kwargs({"standardize_obs": True, "net_arch": []}):
        params = samplers.sample_cemah_params(trial, 0, 1, {})
    assert params["policy_kwargs"] == {"standardize_obs": True, "net_arch": [64]}
    assert params["pretrain_steps"] == 150 and "net_arch" not in params
    # Without the context (a trial reloaded with --trial-id), only the sampled net_arch.
    assert samplers.convert_cem_params({"net_arch": "linear", "population_size": 20})["policy_kwargs"] == {"net_arch": []}


# --- The yml files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["cemah", "cem", "qtopt", "qtopt_ddpg", "dqn", "ddpg", "a2c", "ars"])
def test_yml_entries_fit_the_constructors(algo: str) -> None:
    from rl_zoo3 import ALGOS
    from rl_zoo3.utils import get_wrapper_class

    entries: dict[str, dict[str, Any]] = yaml.safe_load((HYPERPARAMS / f"{algo}.yml").read_text())
    cls = ALGOS[algo]
    accepted = constructor_parameters(cls)
    for env_id, entry in entries.items():
        assert "n_timesteps" in entry and "policy" in entry, env_id
        unknown = set(entry) - ZOO_KEYS - accepted
        assert not unknown, f"{algo}.yml {env_id}: {unknown} are not arguments of {cls.__name__}"
        policy_class = cls.policy_aliases[entry["policy"]]
        policy_kwargs = entry.get("policy_kwargs", {})
        if isinstance(policy_kwargs, str):
            policy_kwargs = eval(policy_kwargs)  # as rl-zoo3 does
        unknown = set(policy_kwargs) - constructor_parameters(policy_class)
        assert not unknown, f"{algo}.yml {env_id}: {unknown} are not arguments of {policy_class.__name__}"
        if "env_wrapper" in entry:
            assert get_wrapper_class(dict(entry)) is not None


# The envs that cem.yml and cemah.yml must cover: rl-zoo3 refuses an env its yml file has no entry for.
REQUIRED_ENVS = [MAZE, "ReacherBulletEnv-v0", "AntBulletEnv-v0", "Walker2DBulletEnv-v0", "CartPole-v1", "Pendulum-v1"]


@pytest.mark.parametrize(
    ("algo", "required"),
    [("cemah", REQUIRED_ENVS), ("cem", REQUIRED_ENVS)]
    + [(algo, [env for env in REQUIRED_ENVS if env != "CartPole-v1"]) for algo in ("qtopt", "qtopt_ddpg")],
)
def test_yml_files_cover_the_paper_envs(algo: str, required: list[str]) -> None:
    from sb3_cemah.zoo import default_config

    config = default_config(algo, MAZE, Path("unused.yml"))
    entries = yaml.safe_load(config.read_text())
    assert set(required) <= set(entries)


# --- The commands --------------------------------------------------------------------------------------


def test_cemah_train_enjoy_plot(tmp_path: Path) -> None:
    # One user workflow in one test: under `pytest -n 2` a shared fixture would train once per worker.
    process = run_python(
        "-m", "rl_zoo3.train", "--algo", "cemah", "--env", "CartPole-v1", "-n", "2000", "-f", str(tmp_path),
        "--eval-freq", "1000", *COMMON, "-params", "population_size:10", "elite_frac:0.2", "pretrain_steps:5", "n_envs:4",
        cwd=tmp_path,
    )  # fmt: skip
    # No -conf: the package's cemah.yml, with -params applied on top.
    assert_config_read(process.stdout, "cemah")
    path = run_dir(tmp_path, "cemah", "CartPole-v1")
    assert_training_files(path, "CartPole-v1")
    config = dict(yaml.load((path / "CartPole-v1" / "config.yml").read_text(), Loader=yaml.UnsafeLoader))
    assert config["population_size"] == 10 and config["pretrain_steps"] == 5

    process = run_python(
        "-m", "rl_zoo3.enjoy", "--algo", "cemah", "--env", "CartPole-v1", "-f", str(tmp_path), "--no-render", "-n", "200",
        cwd=tmp_path,
    )  # fmt: skip
    assert "Episode Reward" in process.stdout

    # rl-zoo3's plot scripts need seaborn and scipy (the [zoo] extra installs them, rl-zoo3 does not).
    if importlib.util.find_spec("seaborn") is None or importlib.util.find_spec("scipy") is None:
        pytest.skip("seaborn or scipy missing: plots not tested")
    output = tmp_path / "results"
    run_python(
        "-m", "rl_zoo3.plots.plot_train", "-a", "cemah", "-e", "CartPole-v1", "-f", str(tmp_path), "-w", "5",
        cwd=tmp_path,
    )  # fmt: skip
    run_python(
        "-m", "rl_zoo3.plots.all_plots", "-a", "cemah", "-e", "CartPole-v1", "-f", str(tmp_path), "--no-display",
        "-o", str(output),
        cwd=tmp_path,
    )  # fmt: skip
    assert output.with_suffix(".pkl").is_file()


def test_train_cem_maze(tmp_path: Path) -> None:
    process = run_python(
        "-m", "rl_zoo3.train", "--algo", "cem", "--env", MAZE, "-n", "2000", "-f", str(tmp_path), "--eval-freq", "1000",
        *COMMON, "-params", "population_size:10", "elite_frac:0.2", "--env-kwargs", "max_steps:200",
        cwd=tmp_path,
    )  # fmt: skip
    assert_config_read(process.stdout, "cem")
    assert_training_files(run_dir(tmp_path, "cem", MAZE_FOLDER), MAZE_FOLDER)
    run_python(
        "-m", "rl_zoo3.enjoy", "--algo", "cem", "--env", MAZE, "-f", str(tmp_path), "--no-render", "-n", "300", cwd=tmp_path
    )


@pytest.mark.parametrize("algo", ["qtopt", "qtopt_ddpg"])
def test_qtopt_train_enjoy(algo: str, tmp_path: Path) -> None:
    # A tiny CEM and critic: the plumbing (registration, yml file, save, load), not learning.
    process = run_python(
        "-m", "rl_zoo3.train", "--algo", algo, "--env", "Pendulum-v1", "-n", "400", "-f", str(tmp_path),
        "--eval-freq", "200", *COMMON, "-params", "learning_starts:100", "batch_size:16", "cem_samples:16",
        "cem_elites:3", "policy_kwargs:dict(net_arch=[16])",
        cwd=tmp_path,
    )  # fmt: skip
    assert_config_read(process.stdout, algo)
    assert_training_files(run_dir(tmp_path, algo, "Pendulum-v1"), "Pendulum-v1")
    process = run_python(
        "-m", "rl_zoo3.enjoy", "--algo", algo, "--env", "Pendulum-v1", "-f", str(tmp_path), "--no-render", "-n", "200",
        cwd=tmp_path,
    )  # fmt: skip
    assert "Episode Reward" in process.stdout


def test_optimize_cemah(tmp_path: Path) -> None:
    # CartPole, not the maze: the sampler may pick the 3-layer policy, whose hypernetwork output grows with
    # the observation size (243 on the maze) and makes a trial take minutes. standardize_obs=True stands
    # for a yml setting that the sampled net_arch must not wipe out.
    trials = tmp_path / "trials"
    run_python(
        "-m", "rl_zoo3.train", "--algo", "cemah", "--env", "CartPole-v1", "-optimize", "--n-trials", "2", "-n", "500",
        "--n-evaluations", "1", "--n-startup-trials", "2", "--no-optim-plots", "-f", str(tmp_path),
        "--optimization-log-path", str(trials), *COMMON, "-params", "policy_kwargs:dict(net_arch=[],standardize_obs=True)",
        cwd=tmp_path,
    )  # fmt: skip
    from sb3_cemah import CEMAH
    from sb3_cemah.zoo.samplers import NET_ARCHS

    (report,) = (tmp_path / "cemah").glob("report_*.csv")
    with report.open() as file:
        rows = list(csv.DictReader(file))
    assert [row["state"] for row in rows] == ["COMPLETE", "COMPLETE"]
    for row in rows:
        model = CEMAH.load(trials / f"trial_{row['number']}" / "best_model.zip", device="cpu")
        # The sampled values are used, and the other policy_kwargs are kept.
        assert model.population_size == int(row["params_population_size"])
        assert model.pretrain_steps == int(row["params_pretrain_steps"])
        assert model.policy.net_arch == NET_ARCHS[row["params_net_arch"]]
        assert model.policy.standardize_obs


def logged(stdout: str, key: str) -> list[str]:
    """The values of ``key`` in the tables that SB3's logger prints (verbose=1), as printed."""
    return re.findall(rf"^\|\s+{re.escape(key)}\s+\|\s+(\S+)\s+\|$", stdout, flags=re.MULTILINE)


@pytest.mark.parametrize("algo", ["cem", "cemah"])
def test_train_with_vec_normalize(algo: str, tmp_path: Path) -> None:
    # rl-zoo3's `normalize: true` (its ARS configs use it) wraps the env in VecNormalize: candidates must be ranked
    # on the env's returns, which in CartPole are the episode lengths; normalised ones are small fractions.
    process = run_python(
        "-m", "rl_zoo3.train", "--algo", algo, "--env", "CartPole-v1", "-n", "2000", "-f", str(tmp_path),
        "--eval-freq", "1000", *COMMON, "-params", "population_size:10", "elite_frac:0.2", "n_envs:4", "normalize:True",
        *(["pretrain_steps:5"] if algo == "cemah" else []),
        cwd=tmp_path,
    )  # fmt: skip
    path = run_dir(tmp_path, algo, "CartPole-v1")
    assert_training_files(path, "CartPole-v1")
    assert (path / "CartPole-v1" / "vecnormalize.pkl").is_file()
    return_max = [float(value) for value in logged(process.stdout, "return_max")]
    assert len(return_max) >= 2 and all(value.is_integer() and 8 <= value <= 500 for value in return_max)
    # After the first population, the Monitor episodes (ep_info_buffer) are exactly the candidates' episodes.
    assert logged(process.stdout, "return_mean")[0] == logged(process.stdout, "ep_rew_mean")[0]
    if algo == "cemah":
        assert float(logged(process.stdout, "buffer_return_mean")[0]) >= 8


@pytest.mark.xdist_group("ray")
def test_train_enjoy_on_the_ray_evaluator_with_vec_normalize(tmp_path: Path) -> None:
    # The README's cluster command, on a local cluster: the evaluator through -params, normalize: true on the
    # workers, the evaluations at rl-zoo3's step interval, and enjoy without Ray's evaluator.
    pytest.importorskip("ray")
    run_python(
        "-m", "rl_zoo3.train", "--algo", "cemah", "--env", "CartPole-v1", "-n", "2000", "-f", str(tmp_path),
        "--eval-freq", "1000", *COMMON, "-params", "population_size:10", "elite_frac:0.2", "n_envs:2", "normalize:True",
        "pretrain_steps:5", "evaluator:'ray'", "evaluator_kwargs:dict(num_workers=2)",
        cwd=tmp_path, timeout=300,
    )  # fmt: skip
    path = run_dir(tmp_path, "cemah", "CartPole-v1")
    assert_training_files(path, "CartPole-v1")
    with np.load(path / "evaluations.npz") as data:
        assert data["timesteps"][0] >= 1000 and np.all(np.diff(data["timesteps"]) >= 1000)
    with (path / "CartPole-v1" / "vecnormalize.pkl").open("rb") as file:
        statistics = pickle.load(file).obs_rms
    assert statistics.count > 2000 and np.all(statistics.var > 0)  # the workers' observations reached the head
    process = run_python(
        "-m", "rl_zoo3.enjoy", "--algo", "cemah", "--env", "CartPole-v1", "-f", str(tmp_path), "--no-render", "-n", "100",
        cwd=tmp_path,
    )  # fmt: skip
    assert "Episode Reward" in process.stdout


def test_train_subproc(tmp_path: Path) -> None:
    run_python(
        "-m", "rl_zoo3.train", "--algo", "cemah", "--env", "CartPole-v1", "--vec-env", "subproc", "-n", "1000",
        "-f", str(tmp_path), "--eval-freq", "500", *COMMON, "-params", "population_size:10", "elite_frac:0.2", "n_envs:2",
        "pretrain_steps:5",
        cwd=tmp_path,
    )  # fmt: skip
    assert_training_files(run_dir(tmp_path, "cemah", "CartPole-v1"), "CartPole-v1")


def test_train_cemah_pybullet(tmp_path: Path) -> None:
    pytest.importorskip("pybullet_envs_gymnasium")
    env = "ReacherBulletEnv-v0"
    # 150 steps per episode: one population of 10 is 1500 steps.
    run_python(
        "-m", "rl_zoo3.train", "--algo", "cemah", "--env", env, "-n", "1500", "-f", str(tmp_path), "--eval-freq", "1000",
        *COMMON, "-params", "population_size:10", "elite_frac:0.2", "pretrain_steps:5",
        cwd=tmp_path,
    )  # fmt: skip
    assert_training_files(run_dir(tmp_path, "cemah", env), env)


def test_baseline_dqn_maze(tmp_path: Path) -> None:
    run_python(
        "-m", "rl_zoo3.train", "--algo", "dqn", "--env", MAZE, "-conf", str(HYPERPARAMS / "dqn.yml"), "-n", "500",
        "-f", str(tmp_path), "--eval-freq", "250", *COMMON, "--env-kwargs", "max_steps:100",
        cwd=tmp_path,
    )  # fmt: skip
    assert_training_files(run_dir(tmp_path, "dqn", MAZE_FOLDER), MAZE_FOLDER)


def test_baseline_without_conf_uses_package_file(tmp_path: Path) -> None:
    # rl-zoo3's ddpg.yml has no maze entry: the package's is read, with its DiscreteToBoxActionWrapper.
    process = run_python(
        "-m", "rl_zoo3.train", "--algo", "ddpg", "--env", MAZE, "-n", "200", "-f", str(tmp_path), "--eval-freq", "-1",
        *COMMON, "--env-kwargs", "max_steps:100",
        cwd=tmp_path,
    )  # fmt: skip
    assert_config_read(process.stdout, "ddpg")
    assert_training_files(run_dir(tmp_path, "ddpg", MAZE_FOLDER), MAZE_FOLDER, evaluations=False)


def test_print_hyperparams_path(capsys: pytest.CaptureFixture[str]) -> None:
    from sb3_cemah.zoo import hyperparams_file
    from sb3_cemah.zoo.__main__ import main

    main(["a2c"])
    assert Path(capsys.readouterr().out.strip()) == hyperparams_file("a2c")
    with pytest.raises(SystemExit):
        main(["ppo"])
