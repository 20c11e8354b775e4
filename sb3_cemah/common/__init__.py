"""Parts shared by CEM and CEM-AH: batched functional policy networks and population evaluation on a VecEnv."""
