"""CEM-AH: the CEM-guided adversarially trained hypernetwork (Algorithm 2)."""

from sb3_cemah.cemah.cemah import CEMAH
from sb3_cemah.cemah.policies import CEMAHPolicy, MlpPolicy

__all__ = ["CEMAH", "CEMAHPolicy", "MlpPolicy"]
