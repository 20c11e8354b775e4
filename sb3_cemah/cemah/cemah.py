"""CEM-AH (Algorithm 2 of the paper) as an SB3 algorithm: the constructor and one iteration's training."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from numbers import Integral
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import update_learning_rate

from sb3_cemah.cem.cem import CEM
from sb3_cemah.cemah.adversarial import AdversarialPhase, optimizer_step
from sb3_cemah.cemah.elite_buffer import EliteBuffer
from sb3_cemah.cemah.imitation import IMITATION_LOSSES, IMITATION_TARGETS, make_imitation
from sb3_cemah.cemah.imitation_process import ImitationProcess, PendingImitation, can_fork
from sb3_cemah.cemah.labelling import IMITATION_STATES, label_elites, recorded_candidates
from sb3_cemah.cemah.policies import CEMAHPolicy, MlpPolicy
from sb3_cemah.common.evaluators import PopulationEvaluator
from sb3_cemah.common.population import PopulationResult
from sb3_cemah.common.population_algorithm import SAVE_FORMAT

__all__ = ["CEMAH", "PAPER_PRESET"]

# Share of each elite batch held out to judge the imitation (train/imitation_error).
HELD_OUT_FRACTION = 0.1
# Keys of the random streams of CEM-AH's training steps and of its generated candidates' noise, beside the
# populations' (see _iteration_seeds).
TRAINING_STREAM = 1
GENERATION_STREAM = 2
#: Where the closed loop's generated candidates come from: fresh noise vectors (each its own member), or the mean
#: weights of the acting ensemble (one candidate).
GENERATED_FROM = ("members", "ensemble_mean")

# Stored raw observations (n, *obs_shape) to the features (n, input_dim) the generated policies see.
Featurizer = Callable[[th.Tensor], th.Tensor]


class ObservationNormalization(NamedTuple):
    """A copy of ``VecNormalize``'s observation statistics: ``clip((obs - mean) / std, -clip, clip)``."""

    mean: np.ndarray
    std: np.ndarray
    clip: float


#: The paper's Algorithm 2 as written: ``CEMAH("MlpPolicy", env, **PAPER_PRESET)``. MSE imitation of the actions the
#: elites took on their own states, a buffer of the last 100 admitted iterations, Adam at a constant 1e-4, the
#: adversarial phase on, and an ensemble of K = 10 combined by the paper's formula (softmax of the summed
#: probabilities for discrete actions, the mean for Box actions).
PAPER_PRESET: dict[str, Any] = {
    "learning_rate": 1e-4,
    "pretrain_steps": 300,
    "pretrain_lr_decay": False,
    "buffer_batches": 100,
    "imitation_loss": "mse",
    "imitation_states": "elite",
    "imitation_target": "action",
    "adversarial_steps": 10,
    "policy_kwargs": {"ensemble_size": 10, "ensemble_method": "softmax_sum"},
}


class CEMAH(CEM):
    """
    CEM-AH: Cross-Entropy Method guided Adversarial Hypernetwork (Algorithm 2 of the paper).

    One iteration:

    1. update the guiding CEM (Algorithm 1, on the same VecEnv slots, see :class:`CEM`);
    2. label states with the elites' outputs (:mod:`sb3_cemah.cemah.labelling`) and offer the tuples to a FIFO
       buffer of the last ``buffer_batches`` admitted iterations, admitted when their elites' mean fitness is at least
       the buffer's (the paper's gate);
    3. pre-train the hypernetwork for ``pretrain_steps`` steps of the ``imitation_loss``
       (:mod:`sb3_cemah.cemah.imitation`), its learning rate decaying linearly to 0 over them with
       ``pretrain_lr_decay``;
    4. with ``adversarial_steps > 0``, train a discriminator on real vs generated tuples, then the generator against
       it (:mod:`sb3_cemah.cemah.adversarial`).

    With ``generated_candidates > 0`` (a closed loop, not in the paper), the hypernetwork also takes part in the search:
    that many candidates of each population are policies it generates (from fresh noise; with
    ``generated_from="ensemble_mean"``, the acting ensemble's mean weights as one candidate), evaluated and ranked
    with the Gaussian's; elites of either origin refit the guide and label the elite buffer. They come from the hypernetwork
    of the imitation step before the latest (the latest runs beside the population, see :meth:`train`), from the
    third population on.

    Acting uses an ensemble of generated policies (see :class:`CEMAHPolicy`; its size and how it combines are
    ``policy_kwargs``). The paper's own settings are :data:`PAPER_PRESET`.
    Memory: the elite buffer holds at most ``buffer_size`` tuples of ``4 * (obs_features + n_actions)`` bytes
    (plus an 8-byte elite id); during an iteration the observations of the recorded candidates' steps are kept.

    :param policy: The policy model to use (``"MlpPolicy"`` or a :class:`CEMAHPolicy` subclass).
    :param env: The environment to learn from (if registered in Gym, can be str); its episodes need a time limit.
    :param learning_rate: Learning rate of the hypernetwork's (and the discriminator's) Adam, or a schedule of the
        remaining progress (1 to 0): the rate each iteration's pre-training starts from.
    :param buffer_size: Capacity of the elite buffer, in ``<s, a>`` tuples (a memory bound).
    :param buffer_batches: Capacity of the elite buffer in admitted iterations (the paper: 100); the default 1
        imitates the latest admitted elites only. None bounds the buffer by ``buffer_size`` only.
    :param batch_size: Buffered tuples per gradient step (the paper's ``|S_real|``).
    :param n_noise_samples: Generated policies per gradient step (the paper's M).
    :param pretrain_steps: Imitation steps of the hypernetwork per iteration (0: the paper's ablation without
        pre-training).
    :param pretrain_lr_decay: Decay the learning rate linearly from the schedule's value to 0 over each iteration's
        pre-training steps, so that the imitation ends settled (False: a constant rate, the paper).
    :param adversarial_steps: Discriminator steps, then as many adversarial generator steps, per iteration
        (0: the paper's ablation without the discriminator, the default; no discriminator is built).
    :param imitation_loss: ``"assigned_elite"`` (the generated policies are shared out among the elites, each
        imitating its own) or ``"mse"`` (the paper's: it imitates the average elite); see
        :mod:`sb3_cemah.cemah.imitation`.
    :param imitation_states: Whose states the tuples hold: ``"population"`` (each elite's label on states drawn from
        every candidate's steps) or ``"elite"`` (the paper: the elites' own steps).
    :param imitation_target: What the generated policies match: ``"preactivation"`` (each elite's output before the
        final tanh, the logits for Discrete) or ``"action"`` (the paper: the action, one-hot for Discrete).
    :param generated_candidates: Candidates per population generated by the hypernetwork instead of drawn from the
        guide's Gaussian (0, the paper: none; at most ``population_size - 1``).
    :param generated_from: ``"members"`` (each generated candidate from fresh noise) or ``"ensemble_mean"`` (the mean
        flat weights of the acting ensemble, ``generated_candidates`` must then be 1).
    :param population_size: See :class:`CEM`.
    :param elite_frac: See :class:`CEM`.
    :param elite_weighting: See :class:`CEM` (the guide's refit; the elite buffer keeps every elite's steps).
    :param n_eval_episodes: See :class:`CEM`.
    :param alive_bonus_offset: See :class:`CEM` (it also sets what the elite buffer compares).
    :param initial_std: See :class:`CEM`.
    :param min_std: See :class:`CEM`.
    :param stochastic_candidates: See :class:`CEM`.
    :param evaluator: See :class:`CEM` (with ``"ray"``, only the recorded steps CEM-AH labels leave the workers).
    :param evaluator_kwargs: See :class:`CEM`.
    :param stats_window_size: Window size for the rollout logging, in episodes.
    :param tensorboard_log: The log location for tensorboard (if None, no logging).
    :param policy_kwargs: Keyword arguments of :class:`CEMAHPolicy` (network sizes, ``ensemble_size``,
        ``ensemble_method``).
    :param verbose: Verbosity level: 0 no output, 1 info, 2 debug.
    :param seed: Seed for the pseudo random generators; a run is a function of it.
    :param device: Device (cpu, cuda, ...) on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    _choice_hyperparameters: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (
        *CEM._choice_hyperparameters,
        ("imitation_loss", tuple(IMITATION_LOSSES)),
        ("imitation_states", IMITATION_STATES),
        ("imitation_target", IMITATION_TARGETS),
    )
    policy: CEMAHPolicy
    _records_population = True
    # Whether the imitation runs while the next population is evaluated (see train); False runs it in turn, with the
    # same result.
    _overlap_imitation = True

    def __init__(
        self,
        policy: str | type[CEMAHPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-3,
        buffer_size: int = 100_000,
        buffer_batches: int | None = 1,
        batch_size: int = 500,
        n_noise_samples: int = 100,
        pretrain_steps: int = 150,
        pretrain_lr_decay: bool = True,
        adversarial_steps: int = 0,
        imitation_loss: str = "assigned_elite",
        imitation_states: str = "population",
        imitation_target: str = "preactivation",
        generated_candidates: int = 0,
        generated_from: str = "members",
        population_size: int = 100,
        elite_frac: float = 0.1,
        elite_weighting: str = "uniform",
        n_eval_episodes: int = 1,
        alive_bonus_offset: float = 0.0,
        initial_std: float = 1.0,
        min_std: float | str | Schedule = 0.0,
        stochastic_candidates: bool = False,
        evaluator: str | PopulationEvaluator = "local",
        evaluator_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        self.buffer_size = buffer_size
        self.buffer_batches = buffer_batches
        self.batch_size = batch_size
        self.n_noise_samples = n_noise_samples
        self.pretrain_steps = pretrain_steps
        self.pretrain_lr_decay = pretrain_lr_decay
        self.adversarial_steps = adversarial_steps
        self.imitation_loss = imitation_loss
        self.imitation_states = imitation_states
        self.imitation_target = imitation_target
        self.generated_candidates = generated_candidates
        self.generated_from = generated_from
        # The next population's generated candidates (generated_candidates > 0), shape (generated_candidates, n_params),
        # on the CPU; None before there are. Set here, not in _setup_model: load restores them after __init__, so that a
        # run resumed from a saved model equals an uninterrupted one.
        self._next_generated: np.ndarray | None = None
        super().__init__(
            policy,
            env,
            population_size=population_size,
            elite_frac=elite_frac,
            elite_weighting=elite_weighting,
            n_eval_episodes=n_eval_episodes,
            alive_bonus_offset=alive_bonus_offset,
            initial_std=initial_std,
            min_std=min_std,
            stochastic_candidates=stochastic_candidates,
            evaluator=evaluator,
            evaluator_kwargs=evaluator_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        self.learning_rate = learning_rate
        if _init_setup_model:
            self._setup_model()

    def _check_hyperparameters(self) -> None:
        super()._check_hyperparameters()
        minimums = {
            "buffer_size": 1,
            "batch_size": 1,
            "n_noise_samples": 1,
            "pretrain_steps": 0,
            "adversarial_steps": 0,
            "generated_candidates": 0,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if not (isinstance(value, Integral) and int(value) >= minimum):
                raise ValueError(
                    f"Invalid hyper-parameter for {type(self).__name__}: {name} must be an int >= {minimum}, got {value!r}."
                )
        if self.generated_candidates >= self.population_size:
            raise ValueError(
                f"Invalid hyper-parameter for {type(self).__name__}: generated_candidates ({self.generated_candidates}) "
                f"must be below population_size ({self.population_size}): the guide's Gaussian draws the others."
            )
        if self.generated_from not in GENERATED_FROM:
            raise ValueError(
                f"Invalid hyper-parameter for {type(self).__name__}: generated_from must be one of "
                f"{', '.join(GENERATED_FROM)}, got {self.generated_from!r}."
            )
        if self.generated_from == "ensemble_mean" and self.generated_candidates > 1:
            raise ValueError(
                f"Invalid hyper-parameter for {type(self).__name__}: generated_from='ensemble_mean' is one candidate, "
                f"so generated_candidates must be 0 or 1, got {self.generated_candidates}."
            )
        if self.batch_size < self.n_noise_samples:
            raise ValueError(
                f"Invalid hyper-parameter for {type(self).__name__}: batch_size ({self.batch_size}) must be at least "
                f"n_noise_samples ({self.n_noise_samples}): each generated policy gets batch_size // n_noise_samples states."
            )
        if self.buffer_batches is not None and not (isinstance(self.buffer_batches, Integral) and self.buffer_batches >= 1):
            raise ValueError(
                f"Invalid hyper-parameter for {type(self).__name__}: buffer_batches must be an int >= 1 or None, "
                f"got {self.buffer_batches!r}."
            )

    def _make_policy(self) -> BasePolicy:
        self._setup_lr_schedule()
        return self.policy_class(  # type: ignore[call-arg]
            self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs
        )

    def _setup_model(self) -> None:
        super()._setup_model()
        self.elite_buffer = EliteBuffer(self.buffer_size, self.buffer_batches, HELD_OUT_FRACTION, self.device)
        # The random stream of the imitation (labelling, buffer, gradient steps): seeded every iteration, apart from
        # torch's global one, which the populations and the user's callbacks draw from while the imitation runs.
        self._training_generator = th.Generator(device=self.device)
        self.imitation = make_imitation(
            self.imitation_loss,
            self.policy,
            self.imitation_target,
            self.n_noise_samples,
            self.stochastic_candidates,
            self._training_generator,
        )
        # The discriminator exists only when it is trained.
        self.adversary = None
        if self.adversarial_steps > 0:
            self.adversary = AdversarialPhase(self.policy, self.lr_schedule(1), self._training_generator)
        self._imitation_process: ImitationProcess | None = None
        self._pending_imitation: PendingImitation | None = None
        # The normalisation statistics of the latest imitation step (None without VecNormalize).
        self._normalization: ObservationNormalization | None = None
        # The log row of the iteration whose imitation runs (see dump_logs).
        self._deferred_log_row: dict[str, Any] | None = None

    def sample_population(self) -> th.Tensor:
        """
        :return: ``population_size`` candidates drawn from the guide's Gaussian, of which the last
            ``generated_candidates`` are replaced by the hypernetwork's (once there are), shape
            ``(population_size, n_params)``.
        """
        weights = super().sample_population()
        generated = self._next_generated
        if generated is not None:
            weights[len(weights) - len(generated) :] = th.as_tensor(generated, device=weights.device)
        return weights

    def train(self, weights: th.Tensor, result: PopulationResult) -> None:
        """
        Update the guiding CEM, then start the imitation of this iteration's elites (feed the elite buffer, train the
        hypernetwork and the discriminator) in a process of its own, where it runs while the next population is
        evaluated: the guide never reads the hypernetwork (Algorithm 2), so that the next population does not wait
        for it (see :mod:`sb3_cemah.cemah.imitation_process`). The imitation joins before the next one starts,
        before ``learn`` returns, and before anything reads the hypernetwork (``predict``, ``save``,
        ``get_parameters``, ``set_parameters``); the log row of its iteration waits for its logger keys. Its random
        draws come from its own generator, seeded from the run's seed and the iteration: the result is the same as
        if it ran in turn.

        :param weights: The evaluated CEM candidates, shape ``(population_size, n_params)``.
        :param result: Their evaluation, with the recorded steps.
        """
        super().train(weights, result)
        self._finish_imitation()
        self._generate_next_candidates(result)
        (training_seed,) = self._iteration_seeds(1, TRAINING_STREAM)
        rate = self.lr_schedule(self._current_progress_remaining)
        self.logger.record("train/learning_rate", rate)
        # Taken now: the next population moves the normalisation statistics and the iteration count.
        self._normalization = self._current_normalization()
        arguments = (weights, result, self._normalization, rate, self._n_iterations)
        if not (self._overlap_imitation and can_fork(self.device)):
            self._training_generator.manual_seed(training_seed)
            self._record(self._imitate(*arguments))
            return
        if self._imitation_process is None:
            self._imitation_process = ImitationProcess(self)
        self._pending_imitation = self._imitation_process.submit(training_seed, arguments)
        self.policy.pending_update = self._pending_imitation

    def _generate_next_candidates(self, result: PopulationResult) -> None:
        """
        With ``generated_candidates``, log the share of this population's elites that were generated
        (``train/generated_elite_frac``), then generate the next population's candidates with the hypernetwork as
        the previous imitation step left it (its noise from the run's seed and the iteration), before this
        iteration's imitation starts: the same candidates whether it runs in turn or beside the next population.
        """
        if self.generated_candidates == 0:
            return
        if self._next_generated is not None:  # this population's last candidates (sample_population)
            n_generated = len(self._next_generated)
            elite = self.elite_indices(result)
            self.logger.record("train/generated_elite_frac", float(np.mean(elite >= len(result.returns) - n_generated)))
        if self._n_iterations < 2:  # no imitation step has finished yet: the hypernetwork is untrained
            return
        if self.generated_from == "ensemble_mean":
            generated = self.policy.fixed_ensemble_weights().mean(dim=0, keepdim=True)
        else:
            (generation_seed,) = self._iteration_seeds(1, GENERATION_STREAM)
            generator = th.Generator(device=self.device).manual_seed(generation_seed)
            with th.no_grad():
                generated = self.policy.generate_weights(self.generated_candidates, generator)
        self._next_generated = generated.cpu().numpy()

    def _imitate(
        self,
        weights: th.Tensor,
        result: PopulationResult,
        normalization: ObservationNormalization | None,
        rate: float,
        iteration: int,
    ) -> dict[str, float]:
        """One iteration's imitation (Algorithm 2, lines 5-22); :return: its logger keys and values."""
        admitted = self._admit_elites(weights, result, normalization)
        logs = {
            "train/buffer_size": self.elite_buffer.size,
            "train/buffer_return_mean": self.elite_buffer.return_mean,
            "train/buffer_admitted": int(admitted),
        }
        return {**logs, **self._train_generator(rate, iteration)}

    def _finish_imitation(self) -> None:
        """
        Wait for the imitation running in the background, if any, and record its logger keys: into the log row of
        its iteration when that row waits for them (see :meth:`dump_logs`), which is then written.
        """
        pending, self._pending_imitation = self._pending_imitation, None
        if pending is None:
            return
        start = time.perf_counter()
        try:
            logs = pending.result()
        finally:
            self.policy.pending_update = None
        waited = time.perf_counter() - start
        row, self._deferred_log_row = self._deferred_log_row, None
        if row is None:
            self._record(logs)
        else:
            # Write the waiting row with the imitation's keys, then give back what the next iteration recorded since.
            logger, step = self.logger, row.pop("step")
            since = self._take_logger_values()
            self._put_logger_values(row)
            self._record(logs)
            logger.dump(step=step)
            self._put_logger_values(since)
        self.logger.record("time/imitation_wait_seconds", waited)

    def dump_logs(self) -> None:
        """
        Write the log row of the last iteration. While its imitation still runs in the background, the row waits
        for it (the ``train/`` keys of the imitation belong to it) and is written when it joins: during the next
        iteration's training, or when ``learn`` returns.
        """
        if self._pending_imitation is None:
            super().dump_logs()
            return
        self._record_iteration_logs()
        self._deferred_log_row = {**self._take_logger_values(), "step": self.num_timesteps}

    def _take_logger_values(self) -> dict[str, Any]:
        """Remove the recorded, not yet written values from the logger and return them."""
        logger = self.logger
        values = {"value": dict(logger.name_to_value), "count": dict(logger.name_to_count)}
        values["excluded"] = dict(logger.name_to_excluded)
        for recorded in (logger.name_to_value, logger.name_to_count, logger.name_to_excluded):
            recorded.clear()
        return values

    def _put_logger_values(self, values: dict[str, Any]) -> None:
        """Give the logger values taken by :meth:`_take_logger_values` back."""
        logger = self.logger
        logger.name_to_value.update(values["value"])
        logger.name_to_count.update(values["count"])
        logger.name_to_excluded.update(values["excluded"])

    def _finish_training(self) -> None:
        try:
            self._finish_imitation()
            self._stop_imitation_process()
        finally:
            super()._finish_training()

    def _stop_imitation_process(self) -> None:
        """Take the elite buffer back from the imitation process, if one runs, and stop it."""
        if self._imitation_process is None:
            return
        try:
            self._take_back_elite_buffer()
        finally:
            self._imitation_process.close()
            self._imitation_process = None

    def _take_back_elite_buffer(self) -> None:
        """Replace the elite buffer with the imitation process's (which the steps so far have changed)."""
        assert self._imitation_process is not None
        self.elite_buffer = self._imitation_process.elite_buffer().to(self.device)
        self.elite_buffer.set_featurizer(self._featurizer(self._normalization))

    def _record(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.logger.record(key, value)

    def _recorded_candidates(self, result: PopulationResult) -> np.ndarray:
        return recorded_candidates(self.imitation_states, self.elite_indices(result), len(result.returns))

    def _admit_elites(
        self, weights: th.Tensor, result: PopulationResult, normalization: ObservationNormalization | None
    ) -> bool:
        """
        Offer this iteration's elite tuples to the buffer (Algorithm 2, lines 5-6); see :func:`label_elites`.

        :param weights: The evaluated candidates, shape ``(population_size, n_params)``.
        :param result: Their evaluation, with the recorded steps.
        :param normalization: Under ``VecNormalize``, its statistics after the population
            (:meth:`_current_normalization`).
        """
        featurize = self._featurizer(normalization)
        # Every iteration, admitted or not: the rollout moved the normalisation statistics (and set_env may have
        # changed the env).
        self.elite_buffer.set_featurizer(featurize)
        elite = self.elite_indices(result)
        labelled = label_elites(
            self.policy,
            weights,
            result,
            elite,
            states=self.imitation_states,
            target=self.imitation_target,
            max_tuples=self.buffer_size,
            deterministic=not self.stochastic_candidates,
            normalized_features=featurize,
            generator=self._training_generator,
        )
        # The buffer compares what the elites were chosen on (with alive_bonus_offset, not the return itself).
        elite_fitness = float(np.mean(self._fitness(result)[elite]))
        return self.elite_buffer.admit(
            labelled.states, labelled.targets, elite_fitness, labelled.elites, generator=self._training_generator
        )

    def _train_generator(self, rate: float, iteration: int) -> dict[str, float]:
        """
        Pre-train the hypernetwork on the buffer, then the adversarial steps (Algorithm 2, lines 7-22).

        :param rate: The learning rate the iteration starts from.
        :param iteration: The iteration number (it sets the discriminator's input noise).
        :return: The logger keys and values of the step.
        """
        optimizer = self.policy.generator_optimizer
        self.policy.hypernetwork.train()
        logs: dict[str, float] = {}
        start = time.perf_counter()
        losses = []
        for step in range(self.pretrain_steps):
            decay = 1.0 - step / self.pretrain_steps if self.pretrain_lr_decay else 1.0
            update_learning_rate(optimizer, rate * decay)
            loss = self.imitation.loss(*self.elite_buffer.sample(self.batch_size, self._training_generator))
            optimizer_step(optimizer, loss)
            losses.append(loss.item())
        if losses:
            logs["train/imitation_loss"] = float(np.mean(losses))
        pretrain_end = time.perf_counter()
        if self.adversary is not None and self.adversarial_steps > 0:
            # The pre-training's decay left the generator's rate near 0: both optimisers start from the iteration's rate.
            for adversarial_optimizer in (optimizer, self.adversary.optimizer):
                update_learning_rate(adversarial_optimizer, rate)
            d_loss, g_loss = self.adversary.run(
                self.elite_buffer, self.imitation, optimizer, self.adversarial_steps, self.batch_size, iteration
            )
            logs["train/discriminator_loss"] = d_loss
            logs["train/generator_loss"] = g_loss
        adversarial_end = time.perf_counter()
        self.policy.hypernetwork.eval()
        logs["train/imitation_error"] = self.imitation.imitation_error(*self._held_out_tuples())
        logs["time/pretrain_seconds"] = pretrain_end - start
        logs["time/adversarial_seconds"] = adversarial_end - pretrain_end
        return logs

    def _held_out_tuples(self) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """The held-out features, targets and elite ids (a training sample when batches were too small to hold out)."""
        features, targets, elites = self.elite_buffer.held_out()
        if features.shape[0] == 0:
            return self.elite_buffer.sample(self.batch_size, self._training_generator)
        return features, targets, elites

    def _current_normalization(self) -> ObservationNormalization | None:
        """Under ``VecNormalize`` (rl-zoo3's ``normalize``), a copy of its current observation statistics; else None."""
        vec_normalize = self._vec_normalize_env
        if vec_normalize is None or not vec_normalize.norm_obs:
            return None
        assert isinstance(vec_normalize.obs_rms, RunningMeanStd)  # Dict observations are refused at construction
        std = np.sqrt(vec_normalize.obs_rms.var + vec_normalize.epsilon)
        return ObservationNormalization(vec_normalize.obs_rms.mean.copy(), std, vec_normalize.clip_obs)

    def _featurizer(self, normalization: ObservationNormalization | None) -> Featurizer | None:
        """
        How the elite buffer turns its stored raw observations ``(n, *obs_shape)`` into what the generated policies
        would see in those states: the features ``(n, input_dim)`` normalised with ``normalization``. None (the
        buffer stores features) without normalisation.
        """
        if normalization is None:
            return None
        mean, std, clip = normalization

        def featurize(observations: th.Tensor) -> th.Tensor:
            normalized = np.clip((observations.cpu().numpy() - mean) / std, -clip, clip)
            return self.policy.obs_to_features(normalized.astype(np.float32)).to(self.device)

        return featurize

    def get_parameters(self) -> dict[str, dict]:
        self._finish_imitation()
        return super().get_parameters()

    def set_parameters(self, *args: Any, **kwargs: Any) -> None:
        # During learn (a callback): the imitation process restarts from the new parameters at the next iteration.
        self._finish_imitation()
        self._stop_imitation_process()
        super().set_parameters(*args, **kwargs)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "policy.generator_optimizer"]
        if self.adversary is not None and self.adversarial_steps > 0:
            state_dicts += ["adversary.discriminator", "adversary.optimizer"]
        return state_dicts, []

    def _excluded_save_params(self) -> list[str]:
        # Like SB3's replay buffer: saved on request only (save_elite_buffer), since it can be large. The imitation
        # and the adversarial phase are rebuilt from the hyper-parameters; the discriminator's weights are saved above.
        # The imitation thread and its generator live only during learn (the generator is seeded every iteration).
        return [
            *super()._excluded_save_params(),
            "elite_buffer",
            "imitation",
            "adversary",
            "_training_generator",
            "_imitation_process",
            "_pending_imitation",
            "_deferred_log_row",
        ]

    @classmethod
    def _check_save_format(cls, path: Any, save_format: int) -> None:
        super()._check_save_format(path, save_format)
        if save_format < SAVE_FORMAT:
            raise ValueError(
                f"{path} was saved by sb3-cemah 0.1, whose CEM-AH kept the discriminator in the policy and had options "
                "that 0.2 removed (see the changelog): this version cannot restore it. Load it with "
                "`pip install sb3-cemah==0.1`, or train a new model."
            )

    def save_elite_buffer(self, path: str | pathlib.Path) -> None:
        """Save the elite buffer as a pickle file (``.pkl`` appended when the path has no suffix)."""
        self._finish_imitation()
        if self._imitation_process is not None:  # during learn (a callback): the process holds the current buffer
            self._take_back_elite_buffer()
        save_to_pkl(path, self.elite_buffer, self.verbose)

    def load_elite_buffer(self, path: str | pathlib.Path) -> None:
        """Load an elite buffer saved by :meth:`save_elite_buffer` (moved to this model's device)."""
        self._finish_imitation()
        self._stop_imitation_process()  # during learn: the process restarts from the loaded buffer
        buffer = load_from_pkl(path, self.verbose)
        if not isinstance(buffer, EliteBuffer):
            raise ValueError(f"{path} does not hold a CEM-AH elite buffer (found {type(buffer).__name__}).")
        self.elite_buffer = buffer.to(self.device)
