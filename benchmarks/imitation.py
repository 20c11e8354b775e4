"""Does CEM-AH act as well as the guide it imitates? Test returns of the guide and the generated policies.

Trains CEM-AH on one env for a budget of env steps, then evaluates on the same seeded episodes (episode
``e`` of every policy starts from ``reset(seed=eval_seed + e)``):

- ``guide``: the guiding CEM's mean policy (what :class:`sb3_cemah.CEM` returns);
- ``guide_sampled``: the guide tested as the paper tests CEM (Sec. 4.1): one weight vector drawn from its Gaussian
  per test episode (draw ``e`` plays episode ``e``; the draws from a generator seeded with ``eval_seed``);
- ``elite_k``: each elite of the last iteration alone (``elite_0`` the best on its training episode), and
  ``elite_ensemble``: the elites combined as the ensemble combines its members (what a perfect imitation gives);
- ``ensemble``: ``model.predict`` (the K generated policies acting together, as users and rl-zoo3 see it);
- ``member_k``: each of the first ``MEMBERS_TESTED`` generated policies of the fixed ensemble alone;
- ``ensemble_draw_d``: ensembles of K policies generated from other noise draws (``d = 1 .. DRAWS``), and
  ``ensemble_k{LARGE_ENSEMBLE}``: one of ``LARGE_ENSEMBLE`` policies: how much the ensemble's return owes to which K
  noise vectors it was given, and what more members would give.

One row per (config, env, seed) is added to the study's table ``--out``/results.jsonl.gz (runs already there are
skipped: resumable), and the summary of every row is printed and written to ``--out``/README.md (without ``--env``,
only that: the README's table regenerates from the committed data). Example::

    python -m benchmarks.imitation --env Walker2DBulletEnv-v0 --steps 225000 --seeds 0 1 \
        --config adversarial --params adversarial_steps=10
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fcntl
import pathlib
import time
from collections.abc import Callable, Container, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

import sb3_cemah  # noqa: F401  (registers the maze)
from benchmarks.common import (
    CEM_ENV_SETTINGS,
    command_line,
    fill_readme,
    machine_description,
    markdown_table,
    quiet_native_stdout,
    read_table,
    set_torch_threads,
    write_table,
)
from sb3_cemah import CEMAH
from sb3_cemah.cemah.policies import ENSEMBLE_METHODS
from sb3_cemah.common.population import PopulationResult

ActFn = Callable[[np.ndarray], np.ndarray]
#: A study's results: one compressed table in its folder.
RESULTS_TABLE = "results.jsonl.gz"
# Other noise draws of the ensemble evaluated per run, and the size of one larger ensemble.
DRAWS = 4
LARGE_ENSEMBLE = 100
# Members tested alone: a sample of the fixed ensemble (all 100 of the default would cost 100 test runs per seed).
MEMBERS_TESTED = 10


def seeded_returns(
    env_id: str, act: ActFn, n_policies: int, n_episodes: int, eval_seed: int, one_episode_each: bool = False
) -> np.ndarray:
    """
    Run ``n_episodes`` seeded episodes of each of ``n_policies`` policies, all envs stepping together.

    :param act: Maps observations ``(n_policies * n_episodes, *obs_shape)`` (slot ``p * n_episodes + e`` is
        policy ``p``'s episode ``e``) to env actions for every slot.
    :param one_episode_each: ``n_episodes`` is 1 and policy ``p`` plays episode ``p`` (seed ``eval_seed + p``).
    :return: Undiscounted returns, shape ``(n_policies, n_episodes)``.
    """
    with quiet_native_stdout():
        envs = [gym.make(env_id) for _ in range(n_policies * n_episodes)]
    episode_of_slot = range(len(envs)) if one_episode_each else [slot % n_episodes for slot in range(len(envs))]
    obs = np.stack([env.reset(seed=eval_seed + episode)[0] for episode, env in zip(episode_of_slot, envs, strict=True)])
    returns = np.zeros(len(envs))
    running = np.ones(len(envs), dtype=bool)
    while running.any():
        actions = act(obs)
        for slot in np.flatnonzero(running):
            obs[slot], reward, terminated, truncated, _ = envs[slot].step(actions[slot])
            returns[slot] += float(reward)
            running[slot] = not (terminated or truncated)
    for env in envs:
        env.close()
    return returns.reshape(n_policies, n_episodes)


def flat_policies_actor(model: CEMAH, weights: th.Tensor, n_episodes: int, deterministic: bool) -> ActFn:
    """Actions of flat-weight policies ``(n_policies, n_params)``, each on its ``n_episodes`` slots."""
    policy = model.policy
    layers = policy.network.unflatten(weights.repeat_interleave(n_episodes, dim=0))

    def act(obs: np.ndarray) -> np.ndarray:
        with th.no_grad():
            outputs = policy.network.forward_layers(layers, policy.obs_to_features(obs).unsqueeze(1)).squeeze(1)
            return policy.actions_to_env(policy.outputs_to_actions(outputs, deterministic))

    return act


def ensemble_actor(model: CEMAH, weights: th.Tensor, deterministic: bool) -> ActFn:
    """Actions of the ensemble's combination (``policy.combined_outputs``) of flat-weight policies ``(n, n_params)``."""
    policy = model.policy

    def act(obs: np.ndarray) -> np.ndarray:
        with th.no_grad():
            combined = policy.combined_outputs(weights, policy.obs_to_features(obs))
            if not policy.is_discrete:
                return policy.actions_to_env(combined)
            actions = combined.argmax(dim=-1) if deterministic else th.distributions.Categorical(probs=combined).sample()
            return policy.actions_to_env(actions)

    return act


def draw_returns(
    model: CEMAH, env_id: str, n_episodes: int, eval_seed: int, deterministic: bool = True
) -> dict[str, list[float]]:
    """
    Returns of ensembles generated from other noise than the fixed one, combined as ``predict`` combines its
    members: ``DRAWS`` ensembles of ``ensemble_size`` policies (noise seeds 1 .. DRAWS) and one of ``LARGE_ENSEMBLE``.
    """
    policy = model.policy
    sizes = {f"ensemble_draw_{draw}": (draw, policy.ensemble_size) for draw in range(1, DRAWS + 1)}
    sizes[f"ensemble_k{LARGE_ENSEMBLE}"] = (0, LARGE_ENSEMBLE)
    returns = {}
    for name, (draw, size) in sizes.items():
        with th.no_grad():
            noise = policy.hypernetwork.sample_noise(size, th.Generator(device=policy.device).manual_seed(draw))
            weights = policy.hypernetwork(noise)
        act = ensemble_actor(model, weights, deterministic)
        returns[name] = seeded_returns(env_id, act, 1, n_episodes, eval_seed)[0].tolist()
    return returns


def evaluate(model: CEMAH, env_id: str, last_population: tuple[th.Tensor, PopulationResult], args: argparse.Namespace) -> dict:
    """
    Returns on the same seeded episodes of the guide, each elite of the last iteration (``elite_0`` the best on
    its training episode), the elites acting as an ensemble (what perfect imitation would give), the ensemble
    and each of its members.
    """
    weights, result = last_population
    members = model.policy.fixed_ensemble_weights()[:MEMBERS_TESTED]
    elites = weights[th.as_tensor(model.elite_indices(result), device=weights.device)]
    flat = th.cat([model.policy.mean[None], elites, members])
    flat_returns = seeded_returns(
        env_id, flat_policies_actor(model, flat, args.episodes, args.deterministic), len(flat), args.episodes, args.eval_seed
    )
    names = ["guide", *(f"elite_{k}" for k in range(len(elites))), *(f"member_{k}" for k in range(len(members)))]
    returns = {name: row.tolist() for name, row in zip(names, flat_returns, strict=True)}
    returns["guide_sampled"] = sampled_guide_returns(model, env_id, args.episodes, args.eval_seed, args.deterministic)
    elite_ensemble = ensemble_actor(model, elites, args.deterministic)
    returns["elite_ensemble"] = seeded_returns(env_id, elite_ensemble, 1, args.episodes, args.eval_seed)[0].tolist()
    returns["ensemble"] = ensemble_returns(model, env_id, args.episodes, args.eval_seed, args.deterministic)
    returns.update(combination_returns(model, env_id, args.episodes, args.eval_seed, args.deterministic))
    returns.update(draw_returns(model, env_id, args.episodes, args.eval_seed, args.deterministic))
    return returns


def combination_returns(
    model: CEMAH, env_id: str, n_episodes: int, eval_seed: int, deterministic: bool = True, skip: Container[str] = ()
) -> dict[str, list[float]]:
    """
    ``ensemble_{method}``: returns of ``model.predict`` with each ensemble combination for the model's action space
    (those named in ``skip`` left out), on the seeded episodes; the configured combination is restored.
    """
    policy = model.policy
    configured = policy.ensemble_method
    returns = {}
    for method in ENSEMBLE_METHODS if policy.is_discrete else ENSEMBLE_METHODS[:1]:
        if f"ensemble_{method}" not in skip:
            policy.ensemble_method = method
            returns[f"ensemble_{method}"] = ensemble_returns(model, env_id, n_episodes, eval_seed, deterministic)
    policy.ensemble_method = configured
    return returns


def ensemble_returns(model: CEMAH, env_id: str, n_episodes: int, eval_seed: int, deterministic: bool = True) -> list[float]:
    """Returns of ``model.predict`` (the ensemble, as users and rl-zoo3 see it) on the seeded episodes."""
    act: ActFn = lambda obs: model.predict(obs, deterministic=deterministic)[0]  # noqa: E731
    return seeded_returns(env_id, act, 1, n_episodes, eval_seed)[0].tolist()


def sampled_guide_returns(
    model: CEMAH, env_id: str, n_episodes: int, eval_seed: int, deterministic: bool = True
) -> list[float]:
    """Returns of the guide tested as the paper tests CEM: one weight vector drawn from its Gaussian per episode."""
    draws = model.policy.sample_weights(n_episodes, th.Generator().manual_seed(eval_seed))
    act = flat_policies_actor(model, draws, 1, deterministic)
    return seeded_returns(env_id, act, n_episodes, 1, eval_seed, one_episode_each=True)[:, 0].tolist()


def guide_returns(model: CEMAH, env_id: str, n_episodes: int, eval_seed: int, deterministic: bool = True) -> list[float]:
    """Returns of the guiding CEM's mean policy (the CEM run of the same seed) on the seeded episodes."""
    act = flat_policies_actor(model, model.policy.mean[None], n_episodes, deterministic)
    return seeded_returns(env_id, act, 1, n_episodes, eval_seed)[0].tolist()


def run(env_id: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one CEM-AH model and evaluate it; also times the rollouts and the training steps."""
    settings: dict[str, Any] = {"population_size": 100, "elite_frac": 0.1, "policy_kwargs": {"net_arch": []}}
    settings.update(CEM_ENV_SETTINGS.get(env_id, {}))
    settings.update(args.params)
    with quiet_native_stdout():
        env = make_vec_env(env_id, n_envs=args.n_envs, seed=seed)
    model = CEMAH("MlpPolicy", env, seed=seed, **settings)
    last_population: list[tuple[th.Tensor, PopulationResult]] = []
    train_seconds: list[float] = []
    train = model.train

    generated_elite_fracs: list[float] = []

    def timed_train(weights: th.Tensor, result: PopulationResult) -> None:
        start = time.perf_counter()
        train(weights, result)
        train_seconds.append(time.perf_counter() - start)
        if "train/generated_elite_frac" in model.logger.name_to_value:
            generated_elite_fracs.append(model.logger.name_to_value["train/generated_elite_frac"])
        last_population[:] = [(weights, result)]

    model.train = timed_train  # type: ignore[method-assign]
    start = time.perf_counter()
    model.learn(args.steps)
    learn_seconds = time.perf_counter() - start
    returns = evaluate(model, env_id, last_population[0], args)
    # Kept (git-ignored) so that other test-time combinations can be evaluated without training again.
    name = args.out / "models" / result_key(args.config, env_id, seed)
    model.save(name)
    model.save_elite_buffer(name.with_name(name.name + "_buffer"))
    return {
        "config": args.config,
        "env": env_id,
        "seed": seed,
        "steps": model.num_timesteps,
        "iterations": model.n_iterations,
        "params": {key: repr(value) for key, value in args.params.items()},
        "deterministic": args.deterministic,
        "learn_seconds": learn_seconds,
        "train_seconds": float(np.sum(train_seconds)),
        "last_elite_return_mean": float(np.sort(last_population[0][1].returns)[-model.n_elite :].mean()),
        # The closed loop (generated_candidates): the share of each iteration's elites that the hypernetwork generated.
        "generated_elite_fracs": generated_elite_fracs,
        "returns": returns,
    }


def summary_rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per result: the mean return of each policy kind over the seeded episodes."""
    rows = []
    for result in sorted(results, key=lambda r: (r["env"], r["config"], r["seed"])):
        means = {name: float(np.mean(values)) for name, values in result["returns"].items()}
        members = [value for name, value in means.items() if name.startswith("member_")]
        elites = [value for name, value in means.items() if name.startswith("elite_") and name != "elite_ensemble"]
        # Files written before the elites were all evaluated hold the best one only, as best_elite.
        best_elite = means.get("best_elite", means.get("elite_0", float("nan")))
        rows.append(
            [
                result["env"],
                result["config"],
                result["seed"],
                result["iterations"],
                f"{means['guide']:.1f}",
                f"{means['guide_sampled']:.1f}" if "guide_sampled" in means else "-",
                f"{best_elite:.1f}",
                f"{np.median(elites):.1f} / {means['elite_ensemble']:.1f}" if elites else "-",
                f"{means['ensemble']:.1f}",
                _draws_cell(means),
                f"{np.median(members):.1f} [{min(members):.1f}, {max(members):.1f}]",
                _methods_cell(means),
                f"{result['train_seconds'] / max(result['learn_seconds'] - result['train_seconds'], 1e-9):.2f}",
            ]
        )
    return rows


CONFIG_HEADERS = [
    "env",
    "config",
    "seeds",
    "guide (mean policy)",
    "guide sampled per episode (the paper's CEM test)",
    "ensemble",
    "ensemble / guide",
    "ensemble / guide sampled",
    "generated share of the elites",
]


def config_rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per env and config: the mean over seeds of each policy's mean test return, and their ratios."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["env"], result["config"]), []).append(result)
    rows = []
    for (env, config), group in sorted(groups.items()):

        def mean_of(name: str, group: list[dict[str, Any]] = group) -> float:
            values = [np.mean(r["returns"][name]) for r in group if name in r["returns"]]
            return float(np.mean(values)) if len(values) == len(group) else float("nan")

        guide, sampled, ensemble = mean_of("guide"), mean_of("guide_sampled"), mean_of("ensemble")
        shares = [np.mean(r["generated_elite_fracs"]) for r in group if r.get("generated_elite_fracs")]
        rows.append(
            [
                env,
                config,
                " ".join(str(r["seed"]) for r in sorted(group, key=lambda r: r["seed"])),
                f"{guide:.1f}",
                f"{sampled:.1f}",
                f"{ensemble:.1f}",
                f"{ensemble / guide:.2f}" if guide > 0 else "-",
                f"{ensemble / sampled:.2f}" if sampled > 0 else "-",
                f"{np.mean(shares):.2f}" if shares else "-",
            ]
        )
    return rows


def _methods_cell(means: dict[str, float]) -> str:
    """The ensemble's return by combination (``-`` for one the run was evaluated before it existed)."""
    methods = ENSEMBLE_METHODS if "ensemble_softmax_sum" in means else ENSEMBLE_METHODS[:1]
    return " / ".join(f"{means[f'ensemble_{method}']:.1f}" if f"ensemble_{method}" in means else "-" for method in methods)


def _draws_cell(means: dict[str, float]) -> str:
    """The ensembles of other noise draws, and the large one (``-`` in files written before they were measured)."""
    draws = [value for name, value in means.items() if name.startswith("ensemble_draw_")]
    if not draws:
        return "-"
    return f"{np.median(draws):.1f} [{min(draws):.1f}, {max(draws):.1f}] / {means[f'ensemble_k{LARGE_ENSEMBLE}']:.1f}"


def add_missing_returns(out: pathlib.Path, args: argparse.Namespace) -> None:
    """
    Add to every result in ``out`` whose saved model is kept what it was written without: the other-draw
    ensembles (:func:`draw_returns`) and the ensemble combinations added to :data:`ENSEMBLE_METHODS` since.
    """
    table = read_table(out / RESULTS_TABLE)
    for key, result in table.items():
        model_path = out / "models" / f"{key}.zip"
        if not model_path.exists():
            continue
        model = CEMAH.load(model_path, device="cpu")
        # As the run was tested (files written before the field existed were tested with greedy actions).
        deterministic = result.get("deterministic", True)
        episodes = (result["env"], args.episodes, args.eval_seed, deterministic)
        added = combination_returns(model, *episodes, skip=result["returns"])
        if "ensemble_draw_1" not in result["returns"]:
            added.update(draw_returns(model, *episodes))
        if not added:
            continue
        result["returns"].update(added)
        result.setdefault("later_commands", []).append(command_line("benchmarks.imitation"))
        write_table(out / RESULTS_TABLE, table)
        print(f"{key}: added {', '.join(added)}", flush=True)


HEADERS = [
    "env",
    "config",
    "seed",
    "iterations",
    "guide",
    "guide sampled per episode",
    "best elite",
    "elites median / elites as an ensemble",
    "ensemble",
    f"other draws median [min, max] / K={LARGE_ENSEMBLE}",
    "members median [min, max]",
    f"ensemble by method (Box: mean; discrete: {' / '.join(ENSEMBLE_METHODS)})",
    "train / rollout time",
]


@contextlib.contextmanager
def table_lock(out: pathlib.Path) -> Iterator[None]:
    """Hold the study's lock file while its table is read and rewritten."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_results(out: pathlib.Path) -> list[dict[str, Any]]:
    """The results of the study ``out`` (its table: one row per config, env and seed), in key order."""
    table = read_table(out / RESULTS_TABLE)
    return [table[key] for key in sorted(table)]


def result_key(config: str, env_id: str, seed: int) -> str:
    """The name of one run in a study's table (and of its kept model in ``models/``)."""
    return f"{config}_{env_id.replace('/', '-')}_{seed}"


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs, values as Python literals (``adversarial_steps=10``, ``policy_kwargs={...}``)."""
    params = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        params[key] = ast.literal_eval(value)
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", nargs="+", default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="Training budget in env steps.")
    parser.add_argument("--config", default="defaults", help="Name of this setting in the results.")
    parser.add_argument("--params", nargs="*", default=[], help="CEMAH keyword arguments as key=value.")
    parser.add_argument("--n-envs", type=int, default=8, help="VecEnv slots for training.")
    parser.add_argument("--episodes", type=int, default=10, help="Seeded test episodes per policy.")
    parser.add_argument("--eval-seed", type=int, default=1000)
    parser.add_argument(
        "--add-missing",
        "--add-draws",
        dest="add_missing",
        action="store_true",
        help="Add the other-draw ensembles and newer ensemble combinations to the results in --out whose model is kept"
        " (after training --env, if given).",
    )
    parser.add_argument("--stochastic", dest="deterministic", action="store_false", help="Sample discrete actions.")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("docs/benchmarks/imitation"))
    args = parser.parse_args()
    if args.env and args.steps is None:
        parser.error("--steps is required with --env (without --env, the README is rewritten from the table)")
    args.params = parse_params(args.params)
    set_torch_threads(1)
    with quiet_native_stdout():
        import pybullet_envs_gymnasium  # noqa: F401  (registers the PyBullet ids)
    for env_id in args.env:
        for seed in args.seeds:
            key = result_key(args.config, env_id, seed)
            table = read_table(args.out / RESULTS_TABLE)
            if key in table:
                continue
            result = run(env_id, seed, args)
            result["key"] = key
            result["command"] = command_line("benchmarks.imitation")
            result["machine"] = machine_description()
            with table_lock(args.out):  # one run per core may share the study's table
                table = read_table(args.out / RESULTS_TABLE)
                table[key] = result
                write_table(args.out / RESULTS_TABLE, table)
            print(markdown_table(HEADERS, summary_rows([result])), flush=True)
    if args.add_missing:
        add_missing_returns(args.out, args)
    results = load_results(args.out)
    summary = markdown_table(HEADERS, summary_rows(results))
    by_config = markdown_table(CONFIG_HEADERS, config_rows(results))
    print(summary)
    print(by_config)
    fill_readme(args.out / "README.md", "CEM-AH imitation diagnostic", {"results": summary, "by_config": by_config})


if __name__ == "__main__":
    main()
