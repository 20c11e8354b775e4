"""CEM-AH: the CEM-guided adversarially trained hypernetwork (Algorithm 2)."""

from sb3_cemah.cemah.cemah import CEMAH, PAPER_PRESET
from sb3_cemah.cemah.policies import CEMAHPolicy, MlpPolicy

__all__ = ["CEMAH", "PAPER_PRESET", "CEMAHPolicy", "MlpPolicy"]
