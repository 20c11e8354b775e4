"""CEM-AH's adversarial phase (Algorithm 2, lines 13-22): a discriminator on ``<s, a>`` tuples, and generator steps
against it that back-propagate through the generated weights into the hypernetwork."""

from __future__ import annotations

import torch as th
import torch.nn.functional as F

from sb3_cemah.cemah.elite_buffer import EliteBuffer
from sb3_cemah.cemah.imitation import Imitation
from sb3_cemah.cemah.networks import Discriminator
from sb3_cemah.cemah.policies import CEMAHPolicy

__all__ = ["AdversarialPhase"]

# Soft labels of the authors' code: real tuples are labelled 0.9, fake ones 0.1.
REAL_LABEL = 0.9
FAKE_LABEL = 0.1
# The discriminator of the authors' code: hidden sizes, dropout, and the largest std of the noise added to its inputs.
DISCRIMINATOR_ARCH = [200, 100]
DISCRIMINATOR_DROPOUT = 0.2
DISCRIMINATOR_NOISE = 0.1


class AdversarialPhase:
    """
    The discriminator ``D(<s, a>)`` with its optimiser, and one iteration's adversarial steps. Built by CEM-AH only
    when ``adversarial_steps > 0``; saved with the model (``adversary.discriminator``, ``adversary.optimizer``).

    :param policy: The policy whose generated policies ``D`` judges (the tuple sizes, the device, the optimiser class).
    :param learning_rate: Initial learning rate of the discriminator's optimiser (CEM-AH sets it every iteration).
    :param generator: The random stream of the input noise, the dropout and the sampled batches (None: torch's global
        one).
    """

    def __init__(self, policy: CEMAHPolicy, learning_rate: float, generator: th.Generator | None = None):
        self.generator = generator
        self.discriminator = Discriminator(
            policy.network.input_dim + policy.network.output_dim, DISCRIMINATOR_ARCH, DISCRIMINATOR_DROPOUT, generator
        ).to(policy.device)
        self.discriminator.eval()
        self.optimizer = policy.make_optimizer(self.discriminator.parameters(), learning_rate)

    def run(
        self,
        buffer: EliteBuffer,
        imitation: Imitation,
        generator_optimizer: th.optim.Optimizer,
        n_steps: int,
        batch_size: int,
        iteration: int,
    ) -> tuple[float, float]:
        """
        ``n_steps`` discriminator steps, then ``n_steps`` generator steps.

        :param buffer: The elite tuples (real).
        :param imitation: Generates the fake tuples (its ``generate_fake`` and ``actions_of``).
        :param generator_optimizer: The hypernetwork's optimiser.
        :param n_steps: Steps of each.
        :param batch_size: Tuples per step.
        :param iteration: The iteration number: the input noise is ``min(0.1, 1 / (1 + iteration))``.
        :return: Mean discriminator and generator losses.
        """
        self.discriminator.train()
        input_noise = min(DISCRIMINATOR_NOISE, 1.0 / (1.0 + iteration))
        d_losses = [self._discriminator_step(buffer, imitation, batch_size, input_noise) for _ in range(n_steps)]
        g_losses = [self._generator_step(buffer, imitation, generator_optimizer, batch_size) for _ in range(n_steps)]
        self.discriminator.eval()
        return sum(d_losses) / n_steps, sum(g_losses) / n_steps

    def _discriminator_step(self, buffer: EliteBuffer, imitation: Imitation, batch_size: int, input_noise: float) -> float:
        """One step of ``D`` on real elite tuples vs generated ones (lines 14-18)."""
        features, targets, _ = buffer.sample(batch_size, self.generator)
        with th.no_grad():
            used, preactivations = imitation.generate_fake(features)
            fake = imitation.actions_of(preactivations)
            real = imitation.target_actions(targets)
        # Real and fake tuples go through D as separate batches (a common GAN practice with BatchNorm): one joint batch,
        # with D in eval mode for the generator step, lets the generator collapse to a point.
        real_logits = self.discriminator(self._noisy(features, input_noise), self._noisy(real, input_noise))
        fake_logits = self.discriminator(self._noisy(used, input_noise), self._noisy(fake, input_noise))
        loss = F.binary_cross_entropy_with_logits(
            real_logits, th.full_like(real_logits, REAL_LABEL)
        ) + F.binary_cross_entropy_with_logits(fake_logits, th.full_like(fake_logits, FAKE_LABEL))
        optimizer_step(self.optimizer, loss)
        return loss.item()

    def _generator_step(
        self, buffer: EliteBuffer, imitation: Imitation, optimizer: th.optim.Optimizer, batch_size: int
    ) -> float:
        """One adversarial step of the hypernetwork: ``-log D(fake)``, back-propagated into ``h`` (lines 19-22)."""
        features, _, _ = buffer.sample(batch_size, self.generator)
        used, preactivations = imitation.generate_fake(features)
        logits = self.discriminator(used, imitation.actions_of(preactivations))
        loss = F.binary_cross_entropy_with_logits(logits, th.ones_like(logits))
        optimizer_step(optimizer, loss)
        return loss.item()

    def _noisy(self, tensor: th.Tensor, std: float) -> th.Tensor:
        """``tensor`` plus Gaussian noise of standard deviation ``std`` (from the phase's generator)."""
        noise = th.randn(tensor.shape, generator=self.generator, device=tensor.device, dtype=tensor.dtype)
        return tensor + std * noise


def optimizer_step(optimizer: th.optim.Optimizer, loss: th.Tensor) -> None:
    """Zero the gradients, back-propagate ``loss`` and step ``optimizer``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
