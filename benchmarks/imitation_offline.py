"""Imitation losses compared on one fixed elite buffer: which elites the generated policies imitate, and how they act.

Takes a model and its elite buffer saved by :mod:`benchmarks.imitation` (``<out>/models/NAME.zip`` and
``NAME_buffer.pkl``), and for each ``--losses`` entry re-initialises the hypernetwork, pre-trains it on the buffer
as one iteration of CEM-AH would (``CEMAH._pretrain``: ``pretrain_steps`` steps, the learning rate decaying to 0),
then reports:

- how many of ``--pool`` sampled generated policies have each buffered elite as their nearest (held-out error);
- the test returns (same seeded episodes as :mod:`benchmarks.imitation`) of ``ensemble_size`` generated members
  and of their ensemble.

Example::

    python -m benchmarks.imitation_offline --model docs/benchmarks/imitation/ablation/models/defaults_Walker2DBulletEnv-v0_2 \
        --env Walker2DBulletEnv-v0 --losses nearest_elite assigned_elite
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
import torch as th

from benchmarks.common import quiet_native_stdout, set_torch_threads
from benchmarks.imitation import ensemble_actor, flat_policies_actor, seeded_returns
from sb3_cemah import CEMAH


def retrain(path: pathlib.Path, imitation_loss: str, seed: int) -> CEMAH:
    """The saved model with a freshly initialised hypernetwork pre-trained on the saved buffer with ``imitation_loss``."""
    model = CEMAH.load(path, device="cpu", imitation_loss=imitation_loss)
    model.load_elite_buffer(path.with_name(path.name + "_buffer.pkl"))
    th.manual_seed(seed)
    for module in model.policy.hypernetwork.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    model.policy.generator_optimizer = model.policy.optimizer_class(
        model.policy.hypernetwork.parameters(), lr=model.lr_schedule(1.0), **model.policy.optimizer_kwargs
    )
    model.policy.set_training_mode(True)
    model._pretrain()
    model.policy.set_training_mode(False)
    return model


def nearest_elite_counts(model: CEMAH, n_policies: int) -> list[int]:
    """How many of ``n_policies`` generated policies have each buffered elite as the nearest (held-out tuples)."""
    with th.no_grad():
        noise = model.policy.hypernetwork.sample_noise(n_policies, generator=th.Generator().manual_seed(0))
        errors = model._errors_per_elite(*model._held_out_tuples(), squared=False, noise=noise)
    return th.bincount(errors.argmin(dim=1), minlength=errors.shape[1]).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, required=True, help="saved model path without .zip")
    parser.add_argument("--env", required=True)
    parser.add_argument("--losses", nargs="+", default=["nearest_elite", "assigned_elite"])
    parser.add_argument("--pool", type=int, default=200, help="generated policies counted per elite")
    parser.add_argument("--seed", type=int, default=0, help="seed of the re-initialisation and pre-training")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--eval-seed", type=int, default=1000)
    args = parser.parse_args()
    set_torch_threads(1)
    with quiet_native_stdout():
        import pybullet_envs_gymnasium  # noqa: F401  (registers the PyBullet ids)
    for loss in args.losses:
        model = retrain(args.model, loss, args.seed)
        members = model.policy.fixed_ensemble_weights()
        act = flat_policies_actor(model, members, args.episodes, deterministic=True)
        member_returns = seeded_returns(args.env, act, len(members), args.episodes, args.eval_seed).mean(axis=1)
        ensemble = seeded_returns(args.env, ensemble_actor(model, members, True), 1, args.episodes, args.eval_seed)
        result = {
            "loss": loss,
            "imitation_error": model._imitation_error(),
            "policies_nearest_to_each_elite": nearest_elite_counts(model, args.pool),
            "members": np.round(member_returns, 1).tolist(),
            "ensemble": round(float(ensemble.mean()), 1),
        }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
