"""Stable-Baselines3 implementations of CEM and CEM-AH (Cross-Entropy Method guided Adversarial Hypernetwork)."""

from sb3_cemah.cem import CEM

__version__ = "0.1.0"

__all__ = ["CEM", "__version__"]
