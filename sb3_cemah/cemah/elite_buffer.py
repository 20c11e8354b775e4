"""The bounded FIFO buffer of elite ``<state, action>`` tuples (Algorithm 2, lines 5-6)."""

from __future__ import annotations

import torch as th

__all__ = ["EliteBuffer"]


class EliteBuffer:
    """
    Ring buffer of ``(features, target)`` tuples from the guiding CEM's elite episodes.

    A batch (all steps of one iteration's elite episodes) is admitted only when its elites' mean return
    is at least the mean over the tuples already stored (each tuple carries the elite mean return of
    the batch that brought it). When full, the oldest tuples are overwritten.

    Memory: ``buffer_size * (feature_dim + target_dim + 1) * 4`` bytes, preallocated on first admission
    (e.g. 100 000 maze tuples of 243 + 3 values: about 99 MB).

    :param buffer_size: Capacity in tuples.
    :param device: Where the tensors live (the device of the networks that train on them).
    """

    def __init__(self, buffer_size: int, device: th.device | str = "cpu"):
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        self.buffer_size = buffer_size
        self.device = th.device(device)
        self.features: th.Tensor | None = None
        self.targets: th.Tensor | None = None
        self.returns: th.Tensor | None = None
        self.position = 0
        self.size = 0

    @property
    def return_mean(self) -> float:
        """Mean elite return over the stored tuples (-inf when empty, so that the first batch is admitted)."""
        if self.returns is None or self.size == 0:
            return float("-inf")
        return float(self.returns[: self.size].mean())

    def admit(self, features: th.Tensor, targets: th.Tensor, elite_return: float) -> bool:
        """
        Add a batch of elite tuples if ``elite_return >= return_mean``.

        :param features: Shape ``(n, feature_dim)``.
        :param targets: Shape ``(n, target_dim)``.
        :param elite_return: Mean return of the elite episodes the tuples come from.
        :return: Whether the batch was admitted.
        """
        if elite_return < self.return_mean:
            return False
        if self.features is None or self.targets is None or self.returns is None:
            # Zeros, not empty: unused rows are then deterministic and compare equal after a save/load round trip.
            self.features = th.zeros(self.buffer_size, features.shape[1], device=self.device)
            self.targets = th.zeros(self.buffer_size, targets.shape[1], device=self.device)
            self.returns = th.zeros(self.buffer_size, device=self.device)
        # A batch larger than the buffer keeps only its newest tuples, as a FIFO would.
        features, targets = features[-self.buffer_size :], targets[-self.buffer_size :]
        indices = (self.position + th.arange(features.shape[0], device=self.device)) % self.buffer_size
        self.features[indices] = features.to(self.device, th.float32)
        self.targets[indices] = targets.to(self.device, th.float32)
        self.returns[indices] = elite_return
        self.position = int((self.position + features.shape[0]) % self.buffer_size)
        self.size = min(self.size + features.shape[0], self.buffer_size)
        return True

    def sample(self, batch_size: int) -> tuple[th.Tensor, th.Tensor]:
        """
        Uniform sample with replacement (torch's global RNG).

        :return: Features ``(batch_size, feature_dim)`` and targets ``(batch_size, target_dim)``.
        """
        if self.features is None or self.targets is None or self.size == 0:
            raise RuntimeError("The elite buffer is empty")
        indices = th.randint(0, self.size, (batch_size,), device=self.device)
        return self.features[indices], self.targets[indices]
