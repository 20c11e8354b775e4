"""CEM: the diagonal-Gaussian Cross-Entropy Method over flat policy weights (Algorithm 1)."""

from sb3_cemah.cem.cem import CEM
from sb3_cemah.cem.policies import CEMPolicy, MlpPolicy

__all__ = ["CEM", "CEMPolicy", "MlpPolicy"]
