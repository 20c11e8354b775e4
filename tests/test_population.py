"""The batched flat-weight policy network and the vectorised population evaluator, against plain references."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize
from torch import nn

from sb3_cemah import CEM
from sb3_cemah.cem.policies import CEMPolicy
from sb3_cemah.common.policy_network import FlatPolicyNetwork
from sb3_cemah.common.population import evaluate_population, vec_env_step

# --------------------------------------------------------------------------------------------------------------
# FlatPolicyNetwork
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("net_arch", "expected"),
    [
        ((), 4 * 2 + 2),
        ((200,), 4 * 200 + 200 + 200 * 2 + 2),
        ((5, 3), 4 * 5 + 5 + 5 * 3 + 3 + 3 * 2 + 2),
    ],
)
def test_n_params_matches_layout(net_arch: tuple[int, ...], expected: int) -> None:
    network = FlatPolicyNetwork(input_dim=4, output_dim=2, net_arch=net_arch)
    assert network.n_params == expected
    sizes = [4, *net_arch, 2]
    assert network.layer_shapes == list(itertools.pairwise(sizes))


def test_unflatten_layout_is_weight_row_major_then_bias() -> None:
    network = FlatPolicyNetwork(input_dim=3, output_dim=2, net_arch=(4,))
    flat = th.arange(network.n_params, dtype=th.float32).repeat(2, 1)
    flat[1] += 1000.0
    (w1, b1), (w2, b2) = network.unflatten(flat)
    assert w1.shape == (2, 3, 4) and b1.shape == (2, 1, 4)
    assert w2.shape == (2, 4, 2) and b2.shape == (2, 1, 2)
    assert th.equal(w1[0], th.arange(12.0).reshape(3, 4))
    assert th.equal(b1[0, 0], th.arange(12.0, 16.0))
    assert th.equal(w2[0], th.arange(16.0, 24.0).reshape(4, 2))
    assert th.equal(b2[0, 0], th.arange(24.0, 26.0))
    assert th.equal(w1[1], w1[0] + 1000.0)


def test_unflatten_rejects_wrong_shape() -> None:
    network = FlatPolicyNetwork(input_dim=3, output_dim=2)
    with pytest.raises(ValueError, match=r"\(n_policies, 8\)"):
        network.unflatten(th.zeros(2, 9))
    with pytest.raises(ValueError, match="shape"):
        network.unflatten(th.zeros(8))


@pytest.mark.parametrize(
    ("net_arch", "activation_fn"),
    [((), nn.ReLU), ((200,), nn.ReLU), ((7, 5), nn.Tanh)],
)
def test_forward_equals_separate_linear_layers(net_arch: tuple[int, ...], activation_fn: type[nn.Module]) -> None:
    th.manual_seed(0)
    n_policies, batch, input_dim, output_dim = 6, 11, 4, 3
    network = FlatPolicyNetwork(input_dim, output_dim, net_arch, activation_fn)
    flat = th.randn(n_policies, network.n_params, dtype=th.float64)
    features = th.randn(n_policies, batch, input_dim, dtype=th.float64)

    outputs = network.forward(flat, features)
    assert outputs.shape == (n_policies, batch, output_dim)

    sizes = [input_dim, *net_arch, output_dim]
    for policy in range(n_policies):
        hidden = features[policy]
        start = 0
        for layer, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            weight = flat[policy, start : start + n_in * n_out].reshape(n_in, n_out)
            start += n_in * n_out
            bias = flat[policy, start : start + n_out]
            start += n_out
            hidden = F.linear(hidden, weight.T, bias)
            hidden = activation_fn()(hidden) if layer < len(sizes) - 2 else th.tanh(hidden)
        assert start == network.n_params
        th.testing.assert_close(outputs[policy], hidden, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("net_arch", [(), (5,)])
def test_forward_on_a_shared_batch_equals_the_batch_given_to_each_policy(net_arch: tuple[int, ...]) -> None:
    """A 2-D batch (CEM-AH's imitation loss: every policy on every state) is every policy's own copy of it."""
    th.manual_seed(0)
    network = FlatPolicyNetwork(4, 3, net_arch)
    flat = th.randn(6, network.n_params, dtype=th.float64)
    features = th.randn(11, 4, dtype=th.float64)
    shared = network.forward(flat, features, squash=False)
    assert shared.shape == (6, 11, 3)
    th.testing.assert_close(shared, network.forward(flat, features.expand(6, -1, -1), squash=False), rtol=1e-12, atol=1e-12)


def test_forward_gradient_reaches_flat_weights() -> None:
    """CEM-AH back-propagates through the generated weights: the forward pass must be differentiable in them."""
    network = FlatPolicyNetwork(3, 2, (4,))
    flat = th.randn(2, network.n_params, requires_grad=True)
    network.forward(flat, th.randn(2, 5, 3)).sum().backward()
    assert flat.grad is not None and bool((flat.grad != 0).any())


# --------------------------------------------------------------------------------------------------------------
# evaluate_population against a plain per-candidate rollout
# --------------------------------------------------------------------------------------------------------------


def plain_rollout(env: gym.Env, policy: CEMPolicy, weights: th.Tensor, n_episodes: int) -> dict[str, Any]:
    """
    One candidate at a time, one env, one observation at a time: the reference the vectorised evaluator must match.

    :return: ``return``: mean return with the rewards rounded to float32 as in a VecEnv's reward buffer,
        ``return64``: mean return with the env's float64 rewards, ``length``: mean length, ``observations``: every
        observation the policy acted on.
    """
    returns, returns64, lengths, observations = [], [], [], []
    for _ in range(n_episodes):
        obs, _ = env.reset()
        episode_return, episode_return64, length, done = 0.0, 0.0, 0, False
        while not done:
            observations.append(np.asarray(obs))
            with th.no_grad():
                features = policy.obs_to_features(np.asarray(obs)[None])
                outputs = policy.network.forward(weights[None], features[None])[0]
            action = policy.actions_to_env(policy.outputs_to_actions(outputs, deterministic=True))[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            episode_return += float(np.float32(reward))
            episode_return64 += float(reward)
            length += 1
            done = terminated or truncated
        returns.append(episode_return)
        returns64.append(episode_return64)
        lengths.append(length)
    return {
        "return": float(np.mean(returns)),
        "return64": float(np.mean(returns64)),
        "length": float(np.mean(lengths)),
        "observations": np.stack(observations),
    }


def cartpole_candidates(policy: CEMPolicy, n_random: int) -> th.Tensor:
    """Random linear policies plus a hand-made balancing controller (long episodes, up to truncation at 500)."""
    th.manual_seed(1)
    weights = 0.7 * th.randn(n_random, policy.network.n_params)
    # Push right (action 1) when pole angle + angular velocity > 0: layout W (4 x 2) row-major, then b (2).
    controller = th.zeros(policy.network.n_params)
    w = controller[:8].view(4, 2)
    w[2] = th.tensor([-1.0, 1.0])
    w[3] = th.tensor([-1.0, 1.0])
    return th.cat([weights[:2], controller[None], weights[2:]])


@pytest.mark.parametrize(("n_slots", "n_episodes"), [(1, 1), (3, 2), (4, 1)])
def test_discrete_returns_equal_plain_rollout(
    fixed_reset_vec: Callable, fixed_reset_env: Callable, n_slots: int, n_episodes: int
) -> None:
    venv = fixed_reset_vec("CartPole-v1", n_slots)
    policy = CEMPolicy(venv.observation_space, venv.action_space)
    weights = cartpole_candidates(policy, n_random=6)

    result = evaluate_population(venv, policy, weights, n_episodes=n_episodes)

    reference = [plain_rollout(fixed_reset_env("CartPole-v1"), policy, w, n_episodes) for w in weights]
    expected_returns = np.array([r["return"] for r in reference])
    np.testing.assert_array_equal(result.returns, expected_returns)
    np.testing.assert_array_equal(result.episode_lengths, [r["length"] for r in reference])
    assert result.completed
    assert expected_returns[2] == 500.0  # the controller survives until truncation
    assert len(set(expected_returns.tolist())) >= 4  # the candidates do differ


def test_box_returns_equal_plain_rollout(fixed_reset_vec: Callable, fixed_reset_env: Callable) -> None:
    venv = fixed_reset_vec("Pendulum-v1", 3)
    policy = CEMPolicy(venv.observation_space, venv.action_space, net_arch=[8])
    th.manual_seed(2)
    weights = th.randn(4, policy.network.n_params)

    result = evaluate_population(venv, policy, weights, n_episodes=2)

    reference = [plain_rollout(fixed_reset_env("Pendulum-v1"), policy, w, 2) for w in weights]
    # Exact once the rewards are rounded to float32 as the VecEnv's reward buffer does ...
    np.testing.assert_array_equal(result.returns, [r["return"] for r in reference])
    np.testing.assert_array_equal(result.episode_lengths, np.full(4, 200.0))
    # ... and against the env's float64 rewards the rounding (~1e-7 relative per step) is the only difference.
    np.testing.assert_allclose(result.returns, [r["return64"] for r in reference], rtol=1e-6)
    assert np.ptp(result.returns) > 1.0


def sort_rows(array: np.ndarray) -> np.ndarray:
    return array[np.lexsort(array.T[::-1])]


def test_recorded_steps_match_plain_rollout(fixed_reset_vec: Callable, fixed_reset_env: Callable) -> None:
    venv = fixed_reset_vec("CartPole-v1", 3)
    policy = CEMPolicy(venv.observation_space, venv.action_space)
    weights = cartpole_candidates(policy, n_random=4)

    result = evaluate_population(venv, policy, weights, n_episodes=2, record=True)

    assert result.observations is not None and result.actions is not None and result.step_candidates is not None
    assert len(result.observations) == len(result.actions) == len(result.step_candidates)
    for candidate, w in enumerate(weights):
        reference = plain_rollout(fixed_reset_env("CartPole-v1"), policy, w, 2)
        mine = result.step_candidates == candidate
        assert mine.sum() == 2 * reference["length"]
        # Both episodes start identically, so the order of interleaved steps does not matter for the multiset.
        np.testing.assert_array_equal(sort_rows(result.observations[mine]), sort_rows(reference["observations"]))
        with th.no_grad():
            outputs = policy.network.forward(w[None], policy.obs_to_features(result.observations[mine])[None])[0]
        th.testing.assert_close(result.actions[th.as_tensor(mine)], outputs.argmax(dim=-1))  # greedy candidates


def test_slots_run_candidates_in_parallel(fixed_reset_vec: Callable) -> None:
    """One VecEnv step advances every busy slot: the step count is about total length / slots, not the total."""
    n_slots = 4
    venv = fixed_reset_vec("CartPole-v1", n_slots)
    policy = CEMPolicy(venv.observation_space, venv.action_space)
    th.manual_seed(3)
    weights = 0.5 * th.randn(12, policy.network.n_params)
    n_steps = 0

    def hook(new_obs: np.ndarray, rewards: np.ndarray, dones: np.ndarray, infos: list, counted: np.ndarray) -> bool:
        nonlocal n_steps
        n_steps += 1
        assert new_obs.shape == (n_slots, 4) and rewards.shape == dones.shape == (n_slots,) and len(infos) == n_slots
        return True

    result = evaluate_population(venv, policy, weights, step_hook=hook)
    total = int(result.episode_lengths.sum())
    longest = int(result.episode_lengths.max())
    assert n_steps * n_slots >= total
    assert n_steps <= total / n_slots + longest
    assert n_steps < total / 2


def test_step_hook_false_stops_evaluation(cartpole_vec: Callable) -> None:
    venv = cartpole_vec(n_envs=2)
    policy = CEMPolicy(venv.observation_space, venv.action_space)
    calls = 0

    def hook(*_: object) -> bool:
        nonlocal calls
        calls += 1
        return calls < 5

    result = evaluate_population(venv, policy, th.zeros(6, policy.network.n_params), step_hook=hook)
    assert calls == 5
    assert not result.completed


def test_evaluation_resets_slots_left_mid_episode(fixed_reset_vec: Callable, fixed_reset_env: Callable) -> None:
    """A population stopped early leaves slots mid-episode; the next population must not continue those episodes."""
    venv = fixed_reset_vec("CartPole-v1", 2)
    policy = CEMPolicy(venv.observation_space, venv.action_space)
    weights = cartpole_candidates(policy, n_random=3)
    evaluate_population(venv, policy, weights[2:3].repeat(2, 1), step_hook=lambda *_: False)
    for _ in range(7):  # move the slots well into an episode
        venv.step(np.array([0, 1]))

    result = evaluate_population(venv, policy, weights)

    expected = [plain_rollout(fixed_reset_env("CartPole-v1"), policy, w, 1)["return"] for w in weights]
    np.testing.assert_array_equal(result.returns, expected)


def test_subprocess_vec_env_gives_the_same_returns(fixed_reset_env: Callable) -> None:
    """The evaluator only uses the VecEnv interface: SubprocVecEnv (multi-core) gives the DummyVecEnv's results."""
    env_fns = [lambda: fixed_reset_env("CartPole-v1")] * 3
    dummy, subproc = DummyVecEnv(env_fns), SubprocVecEnv(env_fns, start_method="fork")
    try:
        policy = CEMPolicy(dummy.observation_space, dummy.action_space)
        weights = cartpole_candidates(policy, n_random=5)
        expected = evaluate_population(dummy, policy, weights, n_episodes=2, record=True)
        result = evaluate_population(subproc, policy, weights, n_episodes=2, record=True)
    finally:
        subproc.close()
    np.testing.assert_array_equal(result.returns, expected.returns)
    np.testing.assert_array_equal(result.observations, expected.observations)
    np.testing.assert_array_equal(result.step_candidates, expected.step_candidates)


class SubclassedDummyVecEnv(DummyVecEnv):
    """A DummyVecEnv subclass: the evaluator steps it through ``VecEnv.step``, as it would any VecEnv."""


def test_plain_dummy_vec_env_steps_as_vec_env_step_does(fixed_reset_env: Callable) -> None:
    """
    The evaluator steps a plain DummyVecEnv without SB3's deep copies: every step the hook sees (observations,
    rewards, dones, infos with Monitor's episode records, ``terminal_observation`` and ``TimeLimit.truncated``), the
    recorded steps and the VecEnv's own buffers afterwards equal those of ``VecEnv.step``.
    """
    env_fns = [lambda: Monitor(fixed_reset_env("CartPole-v1"))] * 3
    plain, subclassed = DummyVecEnv(env_fns), SubclassedDummyVecEnv(env_fns)
    assert vec_env_step(subclassed) == subclassed.step and vec_env_step(plain) != plain.step
    policy = CEMPolicy(plain.observation_space, plain.action_space)
    weights = cartpole_candidates(policy, n_random=5)  # candidate 2 is truncated at 500 steps

    def run(venv: DummyVecEnv) -> tuple[Any, list[tuple[Any, ...]]]:
        steps: list[tuple[Any, ...]] = []

        def hook(new_obs: np.ndarray, rewards: np.ndarray, dones: np.ndarray, infos: list, counted: np.ndarray) -> bool:
            # Monitor's "t" is wall time; every other entry must match.
            infos = [{key: value for key, value in info.items() if key != "episode"} | episode(info) for info in infos]
            steps.append((new_obs, rewards, dones, infos, counted))
            return True

        return evaluate_population(venv, policy, weights, n_episodes=2, record=True, step_hook=hook), steps

    def episode(info: dict) -> dict:
        return {"episode": {k: v for k, v in info["episode"].items() if k != "t"}} if "episode" in info else {}

    (expected, expected_steps), (result, steps) = run(subclassed), run(plain)
    np.testing.assert_array_equal(result.returns, expected.returns)
    np.testing.assert_array_equal(result.observations, expected.observations)
    assert len(steps) == len(expected_steps) > 500
    for step, expected_step in zip(steps, expected_steps, strict=True):
        for value, expected_value in zip(step[:3] + step[4:], expected_step[:3] + expected_step[4:], strict=True):
            np.testing.assert_array_equal(value, expected_value)
            assert value.dtype == expected_value.dtype
        for info, expected_info in zip(step[3], expected_step[3], strict=True):
            assert info.keys() == expected_info.keys()
            for key in info:
                np.testing.assert_array_equal(info[key], expected_info[key])
    assert any(info["TimeLimit.truncated"] for step in steps for info in step[3])
    for buffer in ("buf_rews", "buf_dones"):
        np.testing.assert_array_equal(getattr(plain, buffer), getattr(subclassed, buffer))
    np.testing.assert_array_equal(plain.buf_obs[None], subclassed.buf_obs[None])
    action = np.array([0, 1, 1])
    for value, expected_value in zip(plain.step(action)[:3], subclassed.step(action)[:3], strict=True):
        np.testing.assert_array_equal(value, expected_value)


def test_stochastic_discrete_actions_sample(cartpole_vec: Callable) -> None:
    """``deterministic=False`` samples from the softmax: identical candidates then get different returns."""
    venv = cartpole_vec(n_envs=4)
    policy = CEMPolicy(venv.observation_space, venv.action_space)
    th.manual_seed(0)
    weights = th.zeros(16, policy.network.n_params)  # uniform softmax: a random policy
    greedy = evaluate_population(venv, policy, weights, deterministic=True).returns
    sampled = evaluate_population(venv, policy, weights, deterministic=False).returns
    # argmax of equal logits always pushes left: short episodes of nearly equal length
    assert greedy.max() <= 12
    assert sampled.max() > greedy.max()


# --------------------------------------------------------------------------------------------------------------
# Idle slots and VecNormalize
# --------------------------------------------------------------------------------------------------------------


def test_idle_slot_episodes_are_not_counted(fixed_reset_vec: Callable) -> None:
    """
    3 slots, 5 candidates, the third a 500-step controller: the other two slots run out of candidates early and
    play short idle episodes (with the last candidate's weights) until it ends. The hook sees them as not counted.
    """
    venv = fixed_reset_vec("CartPole-v1", 3)
    policy = CEMPolicy(venv.observation_space, venv.action_space)
    weights = cartpole_candidates(policy, n_random=4)
    all_dones, counted_dones = 0, 0

    def hook(new_obs: np.ndarray, rewards: np.ndarray, dones: np.ndarray, infos: list, counted: np.ndarray) -> bool:
        nonlocal all_dones, counted_dones
        all_dones += int(dones.sum())
        counted_dones += int((dones & counted).sum())
        return True

    result = evaluate_population(venv, policy, weights, step_hook=hook)
    assert result.episode_lengths[2] == 500 and result.episode_lengths.max() == 500
    assert counted_dones == 5
    assert all_dones > 5 + 10  # idle episodes did happen (~20-step episodes during ~480 idle steps)


def test_cem_statistics_skip_idle_slot_episodes(fixed_reset_env: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    """``_episode_num`` and ``ep_info_buffer`` hold the population's episodes, not the idle slots' ones."""
    venv = DummyVecEnv([lambda: Monitor(fixed_reset_env("CartPole-v1"))] * 3)
    model = CEM("MlpPolicy", venv, population_size=5, elite_frac=0.4, seed=0)
    weights = cartpole_candidates(model.policy, n_random=4)
    monkeypatch.setattr(model.policy, "sample_weights", lambda n_samples: weights)
    returns = []
    monkeypatch.setattr(model, "train", lambda weights, result: returns.append(result.returns))
    model.learn(1)  # one population
    assert model._episode_num == 5
    assert sorted(info["r"] for info in model.ep_info_buffer) == sorted(returns[0])


def test_returns_under_vec_normalize_are_the_env_returns(fixed_reset_vec: Callable, fixed_reset_env: Callable) -> None:
    """Normalised rewards change scale as VecNormalize's statistics move: candidates are ranked on the env's rewards."""
    venv = VecNormalize(fixed_reset_vec("CartPole-v1", 3), norm_obs=False, norm_reward=True)
    policy = CEMPolicy(venv.observation_space, venv.action_space)
    weights = cartpole_candidates(policy, n_random=5)
    result = evaluate_population(venv, policy, weights)
    expected = [plain_rollout(fixed_reset_env("CartPole-v1"), policy, w, 1)["return"] for w in weights]
    np.testing.assert_array_equal(result.returns, expected)


def test_vec_normalize_original_observations_are_recorded(fixed_reset_vec: Callable) -> None:
    """With observation normalisation, the recorded steps also hold the raw observations the statistics apply to."""
    venv = VecNormalize(fixed_reset_vec("CartPole-v1", 3), training=False, norm_reward=False)
    venv.obs_rms.mean[:] = [0.1, -0.2, 0.05, 0.3]
    venv.obs_rms.var[:] = [4.0, 0.25, 1.0, 9.0]
    policy = CEMPolicy(venv.observation_space, venv.action_space)
    result = evaluate_population(venv, policy, cartpole_candidates(policy, n_random=3), record=True)
    assert result.observations is not None and result.original_observations is not None
    assert result.original_observations.shape == result.observations.shape
    np.testing.assert_allclose(result.observations, venv.normalize_obs(result.original_observations), rtol=1e-6)
    assert not np.allclose(result.observations, result.original_observations)
    # Without VecNormalize there is nothing else to record.
    plain = evaluate_population(fixed_reset_vec("CartPole-v1", 2), policy, th.zeros(2, 10), record=True)
    assert plain.original_observations is None
