"""The number of torch's intra-op threads around the library's own small computations."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch as th

__all__ = ["LIBRARY_THREADS", "torch_threads"]

#: Intra-op threads of the library's own computations (``learn``: the populations' forward passes, CEM-AH's
#: imitation). Their tensors are small: on a machine whose cores are busy, more threads wait on each other (see
#: docs/design.md, "Threads").
LIBRARY_THREADS = 1


@contextlib.contextmanager
def torch_threads(n_threads: int) -> Iterator[None]:
    """Run the block with ``n_threads`` torch intra-op threads, and restore the caller's count on exit."""
    previous = th.get_num_threads()
    if previous == n_threads:
        yield
        return
    th.set_num_threads(n_threads)
    try:
        yield
    finally:
        th.set_num_threads(previous)
