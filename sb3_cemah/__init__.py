"""Stable-Baselines3 implementations of CEM and CEM-AH (Cross-Entropy Method guided Adversarial Hypernetwork), and of
the paper's Qt-Opt baselines.

Importing the package registers the paper's maze as ``sb3_cemah/Maze-v0`` (and ``sb3_cemah/MazeRandom-v0``).
"""

from sb3_cemah.cem import CEM
from sb3_cemah.cemah import CEMAH
from sb3_cemah.envs import register_envs
from sb3_cemah.qtopt import QtOpt, QtOptDDPG

__version__ = "0.2.0"

register_envs()

__all__ = ["CEM", "CEMAH", "QtOpt", "QtOptDDPG", "__version__"]
