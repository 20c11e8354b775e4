"""
rl-zoo3 integration: ``python -m rl_zoo3.train --algo cem|cemah|qtopt|qtopt_ddpg`` with rl-zoo3 unmodified.

The functions below patch rl-zoo3's modules right after they execute; the post-import hook that calls
them is installed at interpreter start by the ``sb3_cemah_zoo.pth`` file of the wheel (see
``sb3_cemah/zoo/_pth_hook.py``). They mutate rl-zoo3's dicts in place because rl-zoo3 imports them by
name elsewhere (``from rl_zoo3.utils import ALGOS``), so every holder sees the new entries. All are
idempotent.

- :func:`register_algos` (``rl_zoo3.utils``): ``cem``, ``cemah``, ``qtopt`` and ``qtopt_ddpg`` in ``ALGOS``;
  importing :mod:`sb3_cemah` for them registers the maze ids, so ``--env sb3_cemah/Maze-v0`` needs no ``--gym-packages``.
- :func:`register_samplers` (``rl_zoo3.hyperparams_opt``): Optuna samplers and converters for
  ``-optimize`` of ``cem`` and ``cemah`` (:mod:`sb3_cemah.zoo.samplers`; ``qtopt`` has none yet).
- :func:`patch_experiment_manager` (``rl_zoo3.exp_manager``): without ``-conf``, this package's algorithms
  read its ``<algo>.yml`` (``cem.yml``, ``cemah.yml``, ``qtopt.yml``, ``qtopt_ddpg.yml``), and a built-in
  algorithm reads this package's ``<algo>.yml`` for an env that only that file knows (e.g. ``--algo dqn --env
  sb3_cemah/Maze-v0``);
  the maze counts as a MiniGrid env, evaluated with stochastic actions.

The yml files live in the repository's top-level ``hyperparams/`` (rl-zoo3's layout, usable with
``-conf hyperparams/<algo>.yml`` from a checkout); the wheel maps them into the package as
``sb3_cemah/zoo/hyperparams/``. :func:`hyperparams_dir` finds whichever exists, so regular and editable
installs both work, and an editable install reads the checkout's files as they are edited.
``python -m sb3_cemah.zoo [ALGO]`` prints that folder (or the file of ``ALGO``), for ``-conf``.

The patches rely on rl-zoo3's internals, tested with the versions :data:`RL_ZOO3_VERSIONS` (the range the
``zoo`` extra declares). Each patch first checks what it relies on and raises :class:`RlZoo3PatchError`,
naming what is missing, when rl-zoo3 has changed: importing rl-zoo3 then fails with that reason instead of
``--algo cemah`` going missing or a default silently changing.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from sb3_cemah.zoo import samplers

__all__ = [
    "ALGO_NAMES",
    "RL_ZOO3_VERSIONS",
    "SAMPLED_ALGO_NAMES",
    "ZOO_KEYS",
    "RlZoo3PatchError",
    "constructor_parameters",
    "default_config",
    "hyperparams_dir",
    "hyperparams_file",
    "patch_experiment_manager",
    "register_algos",
    "register_samplers",
]

#: The names under which the algorithms are registered in rl-zoo3 (``--algo``).
ALGO_NAMES = ("cem", "cemah", "qtopt", "qtopt_ddpg")
#: The algorithms with Optuna samplers (``-optimize``).
SAMPLED_ALGO_NAMES = ("cem", "cemah")
#: The rl-zoo3 versions the patches are tested with; ``pyproject.toml``'s ``zoo`` extra declares the same range.
RL_ZOO3_VERSIONS = ">=2.9,<2.10"


#: Keys of a yml entry that rl-zoo3 consumes itself instead of passing them to the algorithm.
ZOO_KEYS = frozenset(
    {"n_timesteps", "n_envs", "normalize", "env_wrapper", "vec_env_wrapper", "frame_stack", "callback"}
    | {"monitor_kwargs", "env_kwargs", "noise_type", "noise_std"}
)


def constructor_parameters(cls: type) -> set[str]:
    """
    The keyword arguments ``cls(...)`` accepts: those of its ``__init__``, and of its base classes' as long as
    ``**kwargs`` passes them on. A yml entry's keys outside these and :data:`ZOO_KEYS` would fail in rl-zoo3.
    """
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass).parameters
        names |= set(parameters)
        if not any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
            break
    return names


class RlZoo3PatchError(RuntimeError):
    """The installed rl-zoo3 lacks something a patch relies on (it is not one of the tested versions)."""


def _require(valid: bool, module: ModuleType, what: str) -> None:
    """
    Raise :class:`RlZoo3PatchError` unless ``valid``.

    :param valid: Whether rl-zoo3 has what the patch relies on.
    :param module: The rl-zoo3 module being patched.
    :param what: What the patch relies on, e.g. ``"a dict ALGOS"``.
    """
    if valid:
        return
    try:
        version = importlib.metadata.version("rl_zoo3")
    except importlib.metadata.PackageNotFoundError:
        version = "(version unknown)"
    raise RlZoo3PatchError(
        f"sb3-cemah cannot plug into rl-zoo3 {version}: {module.__name__} has no {what}. sb3-cemah is tested with "
        f"rl-zoo3{RL_ZOO3_VERSIONS}: install one of those (pip install 'rl-zoo3{RL_ZOO3_VERSIONS}') or uninstall sb3-cemah."
    )


def _has_parameter(function: Any, name: str) -> bool:
    """Whether ``function`` is callable with a parameter called ``name``."""
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _source_mentions(function: Any, text: str) -> bool:
    """Whether the source code of ``function`` contains ``text``."""
    try:
        return text in inspect.getsource(function)
    except (OSError, TypeError):
        return False


def hyperparams_dir() -> Path:
    """
    Folder of this package's rl-zoo3 hyper-parameter files.

    :return: ``sb3_cemah/zoo/hyperparams`` in a wheel install, else the checkout's ``hyperparams/``.
    """
    packaged = Path(__file__).parent / "hyperparams"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "hyperparams"


def hyperparams_file(algo: str) -> Path:
    """
    :param algo: An rl-zoo3 algorithm name (``cemah``, ``dqn``, ...).
    :return: Path of this package's yml file for it (it may not exist, e.g. for ``ppo``).
    """
    return hyperparams_dir() / f"{algo}.yml"


def _has_entry(config: Path, env_id: str) -> bool:
    """Whether the yml file ``config`` exists and has an entry for ``env_id``."""
    # PyYAML comes with rl-zoo3 (the [zoo] extra), not with sb3-cemah itself.
    import yaml

    if not config.is_file():
        return False
    with config.open() as file:
        entries = yaml.safe_load(file) or {}
    return env_id in entries


def default_config(algo: str, env_id: str, zoo_config: Path) -> Path:
    """
    The hyper-parameter file used when the user gives no ``-conf``.

    :param algo: The ``--algo`` value.
    :param env_id: The gymnasium id of ``--env``.
    :param zoo_config: rl-zoo3's own choice, ``<rl_zoo3>/hyperparams/<algo>.yml``.
    :return: This package's file for its own algorithms (:data:`ALGO_NAMES`); for another algorithm, this package's file if it
        has an entry for ``env_id`` and rl-zoo3's has none (where rl-zoo3 would fail), else ``zoo_config``.
    """
    ours = hyperparams_file(algo)
    if algo in ALGO_NAMES:
        return ours
    if _has_entry(ours, env_id) and not _has_entry(zoo_config, env_id):
        return ours
    return zoo_config


def register_algos(utils: ModuleType) -> None:
    """
    Add this package's algorithms (:data:`ALGO_NAMES`) to ``rl_zoo3.utils.ALGOS``. Importing :mod:`sb3_cemah` also
    registers the paper's maze ids, before ``rl_zoo3.train`` checks ``--env`` against gymnasium's registry.

    :param utils: The ``rl_zoo3.utils`` module.
    """
    _require(isinstance(getattr(utils, "ALGOS", None), dict), utils, "dict ALGOS (the --algo table)")
    from sb3_cemah import CEM, CEMAH, QtOpt, QtOptDDPG

    utils.ALGOS.update({"cem": CEM, "cemah": CEMAH, "qtopt": QtOpt, "qtopt_ddpg": QtOptDDPG})


def register_samplers(hyperparams_opt: ModuleType) -> None:
    """
    Add the Optuna samplers and converters of ``cem`` and ``cemah`` to ``rl_zoo3.hyperparams_opt``.

    :param hyperparams_opt: The ``rl_zoo3.hyperparams_opt`` module.
    """
    for table in ("HYPERPARAMS_SAMPLER", "HYPERPARAMS_CONVERTER"):
        _require(isinstance(getattr(hyperparams_opt, table, None), dict), hyperparams_opt, f"dict {table}")
    hyperparams_opt.HYPERPARAMS_SAMPLER.update({"cem": samplers.sample_cem_params, "cemah": samplers.sample_cemah_params})
    hyperparams_opt.HYPERPARAMS_CONVERTER.update({"cem": samplers.convert_cem_params, "cemah": samplers.convert_cemah_params})


def patch_experiment_manager(exp_manager: ModuleType) -> None:
    """
    Wrap three methods of ``rl_zoo3.exp_manager.ExperimentManager`` (after checking, at every call, that rl-zoo3
    still has what the wrappers rely on):

    - ``__init__``: when no ``config`` (``-conf``) is given, replace rl-zoo3's default path by
      :func:`default_config`'s choice. ``__init__`` only stores the path; it is read later, in
      ``read_hyperparameters``.
    - ``objective``: for ``cem`` / ``cemah``, let the samplers merge the sampled ``net_arch`` into the yml
      file's ``policy_kwargs`` (:func:`sb3_cemah.zoo.samplers.base_policy_kwargs`).
    - ``is_minigrid``: also true for the paper's maze, a MiniGrid env that rl-zoo3 does not recognise (it
      looks for "minigrid" in the entry point). rl-zoo3 evaluates (``EvalCallback``, ``enjoy``) MiniGrid
      agents with stochastic actions, and the paper tests on the maze by sampling from the policy's
      softmax: a greedy policy can loop in the deterministic maze until the 10 000-step limit.

    :param exp_manager: The ``rl_zoo3.exp_manager`` module.
    """
    from sb3_cemah.envs import MAZE_ID, MAZE_RANDOM_ID

    manager = getattr(exp_manager, "ExperimentManager", None)
    _require(isinstance(manager, type), exp_manager, "class ExperimentManager")
    assert manager is not None
    name = "ExperimentManager"
    _require(_has_parameter(manager.__init__, "config"), exp_manager, f"{name}.__init__ with a parameter config")
    # __init__ stores the path in self.config and read_hyperparameters reads it later: replacing it after
    # __init__ only works that way.
    _require(
        _source_mentions(manager.read_hyperparameters, "self.config"),
        exp_manager,
        f"{name}.read_hyperparameters that reads self.config",
    )
    _require(
        _has_parameter(manager.objective, "trial") and _source_mentions(manager, "self._hyperparams"),
        exp_manager,
        f"{name}.objective(trial) with the yml entry in self._hyperparams",
    )
    _require(isinstance(vars(manager).get("is_minigrid"), staticmethod), exp_manager, f"static method {name}.is_minigrid")
    if "_sb3_cemah_patched" in vars(manager):
        return
    original_init: Callable[..., None] = manager.__init__
    original_objective: Callable[..., float] = manager.objective
    original_is_minigrid: Callable[[str], bool] = manager.is_minigrid
    init_signature = inspect.signature(original_init)

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if not init_signature.bind(self, *args, **kwargs).arguments.get("config"):
            self.config = str(default_config(self.algo, self.env_name.gym_id, Path(self.config)))

    @functools.wraps(original_objective)
    def objective(self: Any, trial: Any) -> float:
        if self.algo not in SAMPLED_ALGO_NAMES:
            return original_objective(self, trial)
        with samplers.base_policy_kwargs(self._hyperparams.get("policy_kwargs")):
            return original_objective(self, trial)

    def is_minigrid(env_id: str) -> bool:
        return env_id in (MAZE_ID, MAZE_RANDOM_ID) or original_is_minigrid(env_id)

    manager.__init__ = __init__
    manager.objective = objective
    manager.is_minigrid = staticmethod(is_minigrid)
    manager._sb3_cemah_patched = True
