"""
Post-import hook that plugs CEM and CEM-AH into an unmodified rl-zoo3.

rl-zoo3 has no plugin API, and ``python -m rl_zoo3.train --algo cemah`` checks ``--algo`` against
``rl_zoo3.utils.ALGOS`` before it imports anything the user names (``--gym-packages``). So the package
ships ``sb3_cemah_zoo.pth``, whose single line imports this module and calls :func:`install` at every
interpreter start. :func:`install` puts a finder first on ``sys.meta_path`` that watches three rl-zoo3
modules; right after one of them has executed, the matching function of :mod:`sb3_cemah.zoo` patches it
(algorithm table, Optuna samplers, default hyper-parameter files).

The wheel installs this file at the top of ``site-packages`` as ``sb3_cemah_zoo_hook`` (hatch
``force-include``, regular and editable wheels alike) so that it is importable while ``site`` processes
``.pth`` files, whatever their order and before an editable install has put the project on ``sys.path``.
An editable install therefore holds a copy of it: re-install after editing this file.

Because it runs in every Python process of the environment, this module imports only the standard
library, never torch, rl-zoo3 or :mod:`sb3_cemah`, and prints nothing. If rl-zoo3 is absent the watched
modules are never imported and nothing happens; if :mod:`sb3_cemah` is gone (uninstalled, or an editable
checkout that was moved) the patches are skipped silently. A patch that fails (an rl-zoo3 version whose
internals differ from the tested ones, or a broken install) fails the import of the rl-zoo3 module with the
reason: a warning is easy to miss, and a missing ``--algo cemah`` or a silently changed default is worse.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["WATCHED_MODULES", "install"]

#: rl-zoo3 module -> function of :mod:`sb3_cemah.zoo` applied to it once it has executed.
WATCHED_MODULES: dict[str, str] = {
    "rl_zoo3.utils": "register_algos",
    "rl_zoo3.hyperparams_opt": "register_samplers",
    "rl_zoo3.exp_manager": "patch_experiment_manager",
}


def _apply_patch(patch_name: str, module: ModuleType) -> None:
    """
    Apply ``sb3_cemah.zoo.<patch_name>`` to a freshly executed rl-zoo3 module.

    :param patch_name: Name of the patch function in :mod:`sb3_cemah.zoo`.
    :param module: The rl-zoo3 module to patch.
    :raises RuntimeError: When the patch fails, with the reason (the error of :mod:`sb3_cemah.zoo`, chained). Not an
        ImportError, which code that treats rl-zoo3 as optional (``pytest.importorskip``) would take for "absent".
    """
    if importlib.util.find_spec("sb3_cemah") is None:
        return
    try:
        zoo = importlib.import_module("sb3_cemah.zoo")
        getattr(zoo, patch_name)(module)
    except Exception as error:
        raise RuntimeError(
            f"sb3-cemah could not patch {module.__name__} ({type(error).__name__}: {error}). Uninstall sb3-cemah "
            "to use rl-zoo3 without it."
        ) from error


class _PatchingLoader(importlib.abc.Loader):
    """
    Wrap the real loader of a watched module: execute the module, then patch it.

    :param loader: The loader found by the regular import machinery.
    :param patch_name: Name of the patch function in :mod:`sb3_cemah.zoo`.
    """

    def __init__(self, loader: importlib.abc.Loader, patch_name: str) -> None:
        self._loader = loader
        self._patch_name = patch_name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Put the real loader back first, so that inspect, importlib.reload and resource readers see rl-zoo3's own.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _apply_patch(self._patch_name, module)

    def __getattr__(self, name: str) -> Any:
        # get_source, get_filename, ... of the wrapped loader, for anything that asks during execution.
        return getattr(self._loader, name)


class _RlZoo3Finder(importlib.abc.MetaPathFinder):
    """Find the watched rl-zoo3 modules with the other finders and wrap their loaders."""

    # Marks instances across copies of this module (the site-packages copy and, in an editable
    # install, the checkout's ``sb3_cemah.zoo._pth_hook``), so that the hook is installed once.
    is_sb3_cemah_zoo_hook = True

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        patch_name = WATCHED_MODULES.get(fullname)
        if patch_name is None:
            return None
        for finder in sys.meta_path:
            if getattr(finder, "is_sb3_cemah_zoo_hook", False) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return spec
            spec.loader = _PatchingLoader(spec.loader, patch_name)
            return spec
        return None


def install() -> None:
    """
    Put the finder first on ``sys.meta_path`` (once), and patch any watched module already imported.

    Called by ``sb3_cemah_zoo.pth`` at interpreter start.
    """
    if not any(getattr(finder, "is_sb3_cemah_zoo_hook", False) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RlZoo3Finder())
    for module_name, patch_name in WATCHED_MODULES.items():
        module = sys.modules.get(module_name)
        if module is not None:
            _apply_patch(patch_name, module)
