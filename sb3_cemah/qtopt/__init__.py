"""Qt-Opt and Qt-Opt+DDPG: Q-learning with a batched CEM over actions as the argmax (the paper's baselines)."""

from sb3_cemah.qtopt.action_cem import ActionCEM
from sb3_cemah.qtopt.policies import CodedActor, QtOptDDPGPolicy, QtOptPolicy
from sb3_cemah.qtopt.qtopt import QtOpt
from sb3_cemah.qtopt.qtopt_ddpg import QtOptDDPG

__all__ = ["ActionCEM", "CodedActor", "QtOpt", "QtOptDDPG", "QtOptDDPGPolicy", "QtOptPolicy"]
