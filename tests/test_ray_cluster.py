"""The Ray evaluator on a cluster of a head without CPUs and two one-CPU worker nodes, on this machine: a node lost
mid-population, and models that release their workers when their learn returns."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch as th
from conftest import TINY_CEM_KWARGS
from stable_baselines3.common.callbacks import BaseCallback

from sb3_cemah import CEM

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

# One Ray session per test process (see test_ray_evaluator.py).
pytestmark = pytest.mark.xdist_group("ray")

# A node's death is noticed after a few missed health checks.
FAST_HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    if ray.is_initialized():
        ray.shutdown()
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "_system_config": FAST_HEALTH_CHECKS})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def cluster_cem(seed: int = 0) -> CEM:
    """A tiny CEM on the cluster's two CPUs; tasks of 2 candidates, so that results do not depend on the workers."""
    settings = {**TINY_CEM_KWARGS, "population_size": 12}
    evaluator_kwargs = {"num_workers": 2, "candidates_per_task": 2}
    return CEM("MlpPolicy", "CartPole-v1", evaluator="ray", evaluator_kwargs=evaluator_kwargs, seed=seed, **settings)


class NodeLoss(BaseCallback):
    """Removes a worker node at the first step both workers are live, adds one back ``add_after`` steps later, and
    counts episodes and the live workers seen after that."""

    def __init__(self, cluster: Any, add_after: int):
        super().__init__()
        self.cluster, self.add_after = cluster, add_after
        self.removed_at: int | None = None
        self.episodes = 0
        self.live_workers_after_return = 0

    def _on_step(self) -> bool:
        self.episodes += int(np.sum(self.locals["dones"]))
        evaluator = self.model._evaluator
        # Both workers live: the lost node's worker has a task in flight (the tasks are replayed as they finish).
        if self.removed_at is None:
            if len(evaluator.workers) < 2:
                time.sleep(0.01)  # slows the run down while the second worker starts
                return True
            self.cluster.remove_node(next(iter(self.cluster.worker_nodes)))
            self.removed_at = self.n_calls
        if self.removed_at is not None and self.n_calls == self.removed_at + self.add_after:
            self.cluster.add_node(num_cpus=1)
        if self.removed_at is not None and self.n_calls > self.removed_at + self.add_after:
            self.live_workers_after_return = max(self.live_workers_after_return, len(evaluator.workers))
            if self.live_workers_after_return < 2:
                time.sleep(0.03)  # slows the run down while the new node's worker starts
        return True


def test_a_lost_node_leaves_the_run_as_it_was(cluster: Any) -> None:
    undisturbed = cluster_cem()
    undisturbed.learn(6_000)
    steps_per_iteration = undisturbed.num_timesteps // undisturbed.n_iterations

    disturbed = cluster_cem()
    # Capacity comes back two populations after the loss.
    callback = NodeLoss(cluster, add_after=2 * steps_per_iteration)
    start = time.monotonic()
    disturbed.learn(6_000, callback=callback)
    assert time.monotonic() - start < 120

    assert callback.removed_at is not None and callback.removed_at < disturbed.num_timesteps / 2
    assert disturbed._evaluator.n_replaced_workers >= 1
    assert th.equal(disturbed.policy.mean, undisturbed.policy.mean)
    assert th.equal(disturbed.policy.std, undisturbed.policy.std)
    assert (disturbed.num_timesteps, disturbed.n_iterations) == (undisturbed.num_timesteps, undisturbed.n_iterations)
    # Each candidate's episode once: one reported episode per candidate.
    assert callback.episodes == disturbed.n_iterations * 12
    # The replacement joined the pool when the node came back.
    assert callback.live_workers_after_return == 2


def test_a_model_releases_its_workers_when_learn_returns(cluster: Any) -> None:
    cluster.wait_for_nodes()
    first = cluster_cem()
    first.learn(500)
    assert first._evaluator.workers == []
    second = cluster_cem(seed=1)
    start = time.monotonic()
    second.learn(500)  # needs both CPUs of the cluster
    # About 5 s on an idle 2-core machine; before, it waited 120 s for the first model's CPUs, then failed.
    assert time.monotonic() - start < 60
    first.learn(500, reset_num_timesteps=False)  # starts its workers again
    assert first.n_iterations >= 2
