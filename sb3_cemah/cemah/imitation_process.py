"""CEM-AH's imitation in a process of its own, beside the next population (see :meth:`CEMAH.train`).

In Algorithm 2 the guiding CEM never reads the hypernetwork: the imitation of iteration t's elites needs nothing from
population t+1, and the two can run at once. A thread of the training process does not do it: the imitation's
tensors are small, so that its time goes to Python and the dispatcher, which hold the GIL the env loop needs too (a
CEM population beside an imitation thread takes 1.6-1.8x its time, beside an imitation process 1.03x; see
docs/design.md, "Overlapped imitation"). So at its first iteration a ``learn`` call forks a child process (as
PyTorch's ``DataLoader`` workers are forked), which holds a copy of the model's training state: the hypernetwork, the
optimisers, the discriminator and the elite buffer. Each iteration the child receives the inputs of one imitation step
(the candidates' weights, their evaluation, the normalisation statistics, the learning rate, the seed of the step's
generator) and runs the same code the training process would (:meth:`CEMAH._imitate`); it answers with the step's
logger values and the trained networks' state, which the training process loads into its model when the step joins.
The result is the one of the sequential run, bit for bit. When ``learn`` returns, the elite buffer is taken back and
the child stops.

Where ``fork`` is not available (Windows, and macOS, where it is unsafe) or the model is on a GPU (CUDA does not
survive a fork), the imitation runs in turn, between the populations.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import sys
import traceback
from typing import TYPE_CHECKING, Any

import torch as th

if TYPE_CHECKING:
    from sb3_cemah.cemah.cemah import CEMAH

__all__ = ["ImitationProcess", "PendingImitation", "can_fork"]


def training_state(model: CEMAH) -> dict[str, Any]:
    """The state an imitation step changes besides the elite buffer: the hypernetwork, the optimisers, the discriminator."""
    state: dict[str, Any] = {
        "hypernetwork": model.policy.hypernetwork.state_dict(),
        "generator_optimizer": model.policy.generator_optimizer.state_dict(),
    }
    if model.adversary is not None:
        state["discriminator"] = model.adversary.discriminator.state_dict()
        state["discriminator_optimizer"] = model.adversary.optimizer.state_dict()
    return state


def load_training_state(model: CEMAH, state: dict[str, Any]) -> None:
    """Load a :func:`training_state` into ``model`` (in place: the optimisers keep training the same parameters)."""
    model.policy.hypernetwork.load_state_dict(state["hypernetwork"])
    model.policy.generator_optimizer.load_state_dict(state["generator_optimizer"])
    if model.adversary is not None:
        model.adversary.discriminator.load_state_dict(state["discriminator"])
        model.adversary.optimizer.load_state_dict(state["discriminator_optimizer"])


def can_fork(device: th.device) -> bool:
    """Whether the imitation of a model on ``device`` can run in a forked child (Linux, CPU)."""
    return sys.platform.startswith("linux") and device.type == "cpu" and "fork" in multiprocessing.get_all_start_methods()


def _serve(connection: multiprocessing.connection.Connection, model: CEMAH) -> None:
    """The child: run the imitation steps it is sent on its copy of the model until told to stop."""
    th.set_num_threads(1)
    while True:
        message = connection.recv()
        if message is None:
            return
        try:
            if message[0] == "imitate":
                _, seed, arguments = message
                model._training_generator.manual_seed(seed)
                logs = model._imitate(*arguments)
                connection.send(("done", logs, training_state(model)))
            else:  # "buffer"
                connection.send(("buffer", model.elite_buffer))
        except Exception:
            connection.send(("error", traceback.format_exc()))


class PendingImitation:
    """
    An imitation step running in the child; :meth:`result` waits for it, loads the trained state into the training
    process's model (once) and returns the step's logger values.
    """

    def __init__(self, process: ImitationProcess):
        self._process = process
        self._logs: dict[str, float] | None = None

    def result(self) -> dict[str, float]:
        if self._logs is None:
            _, logs, state = self._process.receive("done")
            load_training_state(self._process.model, state)
            self._logs = logs
        return self._logs


class ImitationProcess:
    """
    The child process of one ``learn`` call of a CEM-AH model.

    :param model: The model, whose training state the child gets a copy of (by the fork).
    """

    def __init__(self, model: CEMAH):
        self.model = model
        context = multiprocessing.get_context("fork")
        self._connection, child_connection = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_connection, model), name="cemah-imitation", daemon=True)
        self._process.start()
        child_connection.close()

    def submit(self, seed: int, arguments: tuple[Any, ...]) -> PendingImitation:
        """Start an imitation step: :meth:`CEMAH._imitate` of ``arguments`` with its generator seeded with ``seed``."""
        self._connection.send(("imitate", seed, arguments))
        return PendingImitation(self)

    def elite_buffer(self) -> Any:
        """The child's elite buffer (after the steps submitted so far)."""
        self._connection.send(("buffer",))
        return self.receive("buffer")[1]

    def receive(self, kind: str) -> tuple[Any, ...]:
        """The child's next answer, which must be of ``kind``; an error in the child is raised here."""
        try:
            message = self._connection.recv()
        except EOFError as error:
            raise RuntimeError(
                f"CEM-AH's imitation process ended unexpectedly (exit code {self._process.exitcode})"
            ) from error
        if message[0] == "error":
            raise RuntimeError(f"CEM-AH's imitation step failed in its process:\n{message[1]}")
        assert message[0] == kind, message[0]
        return message

    def close(self) -> None:
        """Stop the child (after the steps submitted so far)."""
        with contextlib.suppress(BrokenPipeError, OSError):  # a child that died has nothing to stop
            self._connection.send(None)
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._connection.close()
