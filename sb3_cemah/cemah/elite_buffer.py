"""The bounded FIFO buffer of elite ``<state, action>`` tuples (Algorithm 2, lines 5-6)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch as th

__all__ = ["EliteBatch", "EliteBuffer", "EliteTuples"]


class EliteTuples(NamedTuple):
    """
    Elite ``<s, a>`` tuples and the elite policy that took each.

    :param features: States, shape ``(n, feature_dim)``: as stored, the states the algorithm admitted (raw
        observations under observation normalisation, see :meth:`EliteBuffer.set_featurizer`); as sampled, features.
    :param targets: The elites' actions, shape ``(n, target_dim)``.
    :param elites: Which elite policy took each tuple (ids unique within the buffer), shape ``(n,)``.
    """

    features: th.Tensor
    targets: th.Tensor
    elites: th.Tensor

    def __len__(self) -> int:  # type: ignore[override]
        return self.features.shape[0]

    def select(self, indices: th.Tensor | slice) -> EliteTuples:
        """:return: The tuples at ``indices``."""
        return EliteTuples(*(tensor[indices] for tensor in self))

    def to(self, device: th.device) -> EliteTuples:
        return EliteTuples(*(tensor.to(device) for tensor in self))

    @staticmethod
    def concatenate(parts: list[EliteTuples]) -> EliteTuples:
        return EliteTuples(*(th.cat(field) for field in zip(*parts, strict=True)))


@dataclass
class EliteBatch:
    """
    The tuples one iteration's elites brought, split into training and held-out tuples.

    :param training: Tuples the imitation trains on.
    :param held_out: Tuples it is judged on.
    :param elite_return: Mean episodic return of the elite policies the tuples come from.
    """

    training: EliteTuples
    held_out: EliteTuples
    elite_return: float

    @property
    def size(self) -> int:
        return len(self.training) + len(self.held_out)

    def to(self, device: th.device) -> EliteBatch:
        return EliteBatch(self.training.to(device), self.held_out.to(device), self.elite_return)

    def without(self, n: int) -> EliteBatch:
        """The batch without ``n`` of its tuples (training tuples first; held-out ones only when none are left)."""
        n_held_out = max(n - len(self.training), 0)
        return EliteBatch(
            self.training.select(slice(n, None)), self.held_out.select(slice(n_held_out, None)), self.elite_return
        )


class EliteBuffer:
    """
    FIFO of the elite batches admitted by the guiding CEM, one batch per iteration.

    A batch (all steps of one iteration's elite episodes) is admitted only when its elites' mean return is
    at least the mean over the batches already stored (each batch counts once, whatever its length: the
    paper compares the elites' mean returns). The oldest batches leave when more than ``max_batches`` are
    stored or when the tuples exceed ``buffer_size`` (a batch larger than the buffer keeps its newest tuples).

    The stored states become features through a featurizer (:meth:`set_featurizer`; none by default: the states are
    the features), applied to every stored state whenever it changes.

    A ``held_out_fraction`` of each batch's tuples is kept apart: the imitation is trained on the others and
    judged (``train/imitation_error``) on these.

    Memory: at most ``buffer_size * (feature_dim + target_dim) * 4`` bytes (e.g. 100 000 maze tuples of 243 + 3
    values: about 98 MB).

    :param buffer_size: Capacity in tuples.
    :param max_batches: Capacity in admitted batches (iterations); None bounds by ``buffer_size`` only.
    :param held_out_fraction: Share of each batch held out, in [0, 1); at least one tuple when a batch has two or more.
    :param device: Where the tensors live (the device of the networks that train on them). Saved files hold CPU
        tensors, so a buffer saved on a GPU machine loads on a CPU-only one.
    """

    def __init__(
        self,
        buffer_size: int,
        max_batches: int | None = None,
        held_out_fraction: float = 0.1,
        device: th.device | str = "cpu",
    ):
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be >= 1 or None, got {max_batches}")
        if not 0.0 <= held_out_fraction < 1.0:
            raise ValueError(f"held_out_fraction must be in [0, 1), got {held_out_fraction}")
        self.buffer_size = buffer_size
        self.max_batches = max_batches
        self.held_out_fraction = held_out_fraction
        self.device = th.device(device)
        self.batches: deque[EliteBatch] = deque()
        self._n_elites_seen = 0
        self._featurize: Callable[[th.Tensor], th.Tensor] | None = None
        # Derived from ``batches`` and the featurizer (see _concatenated): sampling at every gradient step reads them.
        self._training: EliteTuples | None = None
        self._held_out: EliteTuples | None = None

    @property
    def size(self) -> int:
        """Number of stored tuples (training and held-out)."""
        return sum(batch.size for batch in self.batches)

    @property
    def return_mean(self) -> float:
        """Mean of the stored batches' elite returns (-inf when empty, so that the first batch is admitted)."""
        if not self.batches:
            return float("-inf")
        return sum(batch.elite_return for batch in self.batches) / len(self.batches)

    def set_featurizer(self, featurize: Callable[[th.Tensor], th.Tensor] | None) -> None:
        """
        Set how stored states become the features that are sampled, and re-apply it to every stored state.

        Under ``VecNormalize`` the buffer stores raw observations and the featurizer normalises them with the current
        statistics (as SB3's replay buffers do when sampling): the statistics drift, and a state normalised when it
        was stored no longer says what a policy acting now sees in that state. The featurizer is not saved with the
        buffer: the algorithm sets it again.

        :param featurize: Stored states ``(n, *state_shape)`` to features ``(n, feature_dim)`` on the buffer's device;
            None: the stored states are the features.
        """
        self._featurize = featurize
        self._training = self._held_out = None

    def admit(
        self,
        features: th.Tensor,
        targets: th.Tensor,
        elite_return: float,
        elites: th.Tensor | None = None,
        generator: th.Generator | None = None,
    ) -> bool:
        """
        Add a batch of elite tuples if ``elite_return >= return_mean`` (the paper's gate; always into an empty buffer).

        :param features: The states to store, shape ``(n, *state_shape)`` (``(n, feature_dim)`` without featurizer).
        :param targets: Shape ``(n, target_dim)``.
        :param elite_return: Mean return of the elite episodes the tuples come from.
        :param elites: Which elite policy took each tuple (any integer labels), shape ``(n,)``; None: one elite.
        :param generator: The random stream of the held-out split (None: torch's global one).
        :return: Whether the batch was admitted.
        """
        if elite_return < self.return_mean:
            return False
        labels = th.zeros(features.shape[0], dtype=th.long) if elites is None else elites
        _, elite_ids = th.unique(labels[-self.buffer_size :].to(self.device), return_inverse=True)
        tuples = EliteTuples(
            features[-self.buffer_size :].to(self.device, th.float32),
            targets[-self.buffer_size :].to(self.device, th.float32),
            elite_ids + self._n_elites_seen,  # unique across batches
        )
        self._n_elites_seen = int(tuples.elites.max()) + 1
        n_held_out = round(self.held_out_fraction * len(tuples))
        if self.held_out_fraction > 0 and len(tuples) >= 2:
            n_held_out = max(n_held_out, 1)
        # Held-out tuples drawn at random: consecutive steps of an episode are alike.
        order = th.randperm(len(tuples), generator=generator, device=self.device)
        self.batches.append(EliteBatch(tuples.select(order[n_held_out:]), tuples.select(order[:n_held_out]), elite_return))
        while self.max_batches is not None and len(self.batches) > self.max_batches:
            self.batches.popleft()
        # The newest batch fits on its own (truncated above), so this only trims older batches.
        while self.size > self.buffer_size:
            excess = self.size - self.buffer_size
            if excess >= self.batches[0].size:
                self.batches.popleft()
            else:
                self.batches[0] = self.batches[0].without(excess)
        self._training = self._held_out = None
        return True

    def _concatenated(self) -> tuple[EliteTuples, EliteTuples]:
        """The training and held-out tuples of all stored batches, with features, concatenated once per change."""
        if not self.batches:
            raise RuntimeError("The elite buffer is empty")
        if self._training is None or self._held_out is None:
            training, held_out = (
                EliteTuples.concatenate([getattr(batch, part) for batch in self.batches]) for part in ("training", "held_out")
            )
            if self._featurize is not None:
                training, held_out = (
                    EliteTuples(self._featurize(tuples.features), tuples.targets, tuples.elites)
                    for tuples in (training, held_out)
                )
            self._training, self._held_out = training, held_out
        return self._training, self._held_out

    def sample(self, batch_size: int, generator: th.Generator | None = None) -> EliteTuples:
        """
        Uniform sample of training tuples, with replacement.

        :param batch_size: Tuples to draw.
        :param generator: The random stream of the draw (None: torch's global one).
        :return: Features ``(batch_size, feature_dim)``, targets ``(batch_size, target_dim)`` and the elite that took
            each tuple ``(batch_size,)``.
        """
        training, _ = self._concatenated()
        if len(training) == 0:
            raise RuntimeError("The elite buffer holds no training tuples")
        return training.select(th.randint(0, len(training), (batch_size,), generator=generator, device=self.device))

    def held_out(self) -> EliteTuples:
        """:return: All held-out features ``(n_held_out, feature_dim)``, targets ``(n_held_out, target_dim)`` and
        elites ``(n_held_out,)``."""
        return self._concatenated()[1]

    def tuples(self) -> EliteTuples:
        """:return: Every stored tuple, training then held-out: features, targets and elites."""
        return EliteTuples.concatenate(list(self._concatenated()))

    def to(self, device: th.device | str) -> EliteBuffer:
        """Move the stored tuples to ``device`` (in place) and return the buffer."""
        self.device = th.device(device)
        self.batches = deque(batch.to(self.device) for batch in self.batches)
        self._training = self._held_out = None
        return self

    def __getstate__(self) -> dict[str, Any]:
        # Pickled with CPU tensors (like SB3's numpy buffers), so that the file loads on a machine without the
        # GPU; the concatenated caches are left out and rebuilt when read, the featurizer (often a bound method of the
        # algorithm) is set again by the algorithm.
        state = {**self.__dict__, "device": th.device("cpu"), "_training": None, "_held_out": None, "_featurize": None}
        state["batches"] = deque(batch.to(th.device("cpu")) for batch in self.batches)
        return state
