"""
The sensitivity grid (the paper's Figure 6): its runs, their rl-zoo3 ``-params``, and its report on fake run folders.

No training: the ``-params`` are checked against the algorithms' constructors as rl-zoo3 would pass them.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rl_zoo3")
pytest.importorskip("matplotlib")

from benchmarks.suite import protocol, results, sensitivity, store
from benchmarks.suite.run import main as run_main
from sb3_cemah.zoo import ZOO_KEYS, constructor_parameters

SUITE = protocol.SENSITIVITY
# rl-zoo3's own keys of a yml entry (not constructor arguments) that a variant may set.


def _variant_runs() -> list[protocol.RunSpec]:
    return protocol.expand(SUITE)


def test_grid_runs_are_unique_and_have_their_own_folders() -> None:
    runs = _variant_runs()
    per_cell = {(env, algo): sum(1 for r in runs if (r.env, r.algo) == (env, algo)) for env, algo in SUITE.variants or {}}
    # CEM-AH: 3 x 3 x 2 policies, defaults and three ablations; the others 3 x 3.
    assert per_cell == {
        ("maze", "cemah"): 22,
        ("reacher", "cemah"): 22,
        ("maze", "dqn"): 9,
        ("maze", "ddpg"): 9,
        ("reacher", "ddpg"): 9,
        ("maze", "a2c"): 9,
        ("reacher", "a2c"): 9,
    }
    assert len(runs) == 89
    assert len({run.run_id for run in runs}) == len(runs)
    assert len({run.run_dir(Path("/r")) for run in runs}) == len(runs)
    assert all(run.run_id == f"sensitivity/{run.env}/{run.algo}/{run.variant}/seed0" for run in runs)
    # Interleaved: an interrupted grid has runs of every method.
    assert [run.algo for run in runs[:4]] == ["cemah", "a2c", "ddpg", "dqn"]


def test_other_suites_keep_their_run_ids() -> None:
    quick = protocol.expand(protocol.QUICK)
    assert "quick/maze/cemah/seed0" in {run.run_id for run in quick}
    # Only the closed-loop arm has a variant and -params; the yml entries' runs keep theirs.
    plain = [run for run in quick if run.variant != protocol.ENSEMBLE_MEAN_ARM.name]
    assert all(run.variant is None and not run.params for run in plain)
    assert all("-params" not in run.zoo_args(Path("zoo")) for run in plain)
    # The committed results are still found, each a run of the suite (ant and walker with 5 seeds: `--seeds`).
    found = store.load("quick")
    assert found
    ids = {run.run_id for run in protocol.expand(protocol.QUICK, seeds=range(5))}
    assert {f"quick/{r['run_id']}" for r in found} <= ids


def test_variant_zoo_args_carry_its_params() -> None:
    by_id = {run.run_id: run for run in _variant_runs()}
    run = by_id["sensitivity/maze/cemah/lr1e-3_batch50_3layer/seed0"]
    args = run.zoo_args(Path("zoo"))
    assert args[args.index("-params") + 1 :] == [
        "learning_rate:1e-3",
        "batch_size:50",
        "n_noise_samples:50",
        # The maze's other policy keyword argument is repeated: rl-zoo3 replaces the whole policy_kwargs.
        "policy_kwargs:dict(net_arch=[100], standardize_obs=True)",
    ]
    assert "-conf" in args
    reacher = by_id["sensitivity/reacher/cemah/lr5e-3_batch1000_2layer/seed0"].zoo_args(Path("zoo"))
    expected = ["learning_rate:5e-3", "batch_size:1000", "policy_kwargs:dict(net_arch=[])"]
    assert reacher[reacher.index("-params") + 1 :] == expected
    assert "-params" not in by_id["sensitivity/maze/cemah/defaults/seed0"].zoo_args(Path("zoo"))
    a2c = by_id["sensitivity/reacher/a2c/lr1e-4_nsteps1000/seed0"].zoo_args(Path("zoo"))
    assert a2c[a2c.index("-params") + 1 :] == ["learning_rate:1e-4", "n_steps:1000"]


def _parse_params(params: tuple[str, ...]) -> dict[str, Any]:
    """What rl-zoo3's ``train`` makes of ``-params``."""
    from rl_zoo3.utils import StoreDict

    parser = argparse.ArgumentParser()
    parser.add_argument("-params", nargs="+", action=StoreDict, default={})
    return dict(parser.parse_args(["-params", *params] if params else []).params)


def _zoo_entry(run: protocol.RunSpec) -> dict[str, Any]:
    """The yml entry rl-zoo3 reads for the run (``-conf``, or its own file), before ``-params``."""
    import rl_zoo3
    import yaml

    conf = run.conf_file()
    if conf is None:
        conf = Path(rl_zoo3.__file__).parent / "hyperparams" / f"{run.algo}.yml"
    return dict(yaml.safe_load(conf.read_text())[run.env_id])


@pytest.mark.parametrize("run", _variant_runs(), ids=lambda run: run.run_id)
def test_variant_params_fit_the_constructor(run: protocol.RunSpec) -> None:
    from rl_zoo3 import ALGOS

    params = _parse_params(run.params)
    assert len(params) == len(run.params), "a key given twice"
    cls = ALGOS[run.algo]
    unknown = set(params) - ZOO_KEYS - constructor_parameters(cls)
    assert not unknown, f"{unknown} are not arguments of {cls.__name__}"
    entry = {**_zoo_entry(run), **params}
    policy_kwargs = entry.get("policy_kwargs", {})
    policy_kwargs = eval(policy_kwargs) if isinstance(policy_kwargs, str) else policy_kwargs  # as rl-zoo3 does
    assert not set(policy_kwargs) - constructor_parameters(cls.policy_aliases[entry["policy"]])
    if run.variant != "defaults":
        assert params, "a variant without -params would repeat the defaults"
    if "learning_rate" in params:
        assert params["learning_rate"] in (1e-3, 5e-3, 1e-4)
    if run.algo == "cemah":
        # CEMAH refuses a batch smaller than its generated policies per step (the constructor's defaults where unset).
        defaults = {name: parameter.default for name, parameter in inspect.signature(cls).parameters.items()}
        setting = {**defaults, **entry}
        assert setting["batch_size"] >= setting["n_noise_samples"]
        if "policy_kwargs" in params:
            yml_entry = protocol.hyperparams("cemah", run.env_id)
            assert yml_entry is not None and run.variant is not None
            yml_kwargs = eval(yml_entry["policy_kwargs"])
            assert set(policy_kwargs) == set(yml_kwargs)
            assert policy_kwargs["net_arch"] == ([] if run.variant.endswith("2layer") else [protocol.HIDDEN_UNITS])


def test_dry_run_of_one_variant(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--suite", "sensitivity", "--env", "reacher", "--algos", "ddpg", "--variants", "lr1e-4_batch1000",
                     "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "1 runs" in out
    assert "--algo ddpg --env ReacherBulletEnv-v0" in out and "-params learning_rate:1e-4 batch_size:1000" in out
    with pytest.raises(SystemExit):
        run_main(["--suite", "sensitivity", "--variants", "no_such_variant", "--dry-run"])


def _fake_run(root: Path, run: protocol.RunSpec, final: float | None, status: str = "ok") -> None:
    """The files of a finished run that the report reads: ``result.json`` and ``eval.csv``."""
    run_dir = run.run_dir(root)
    run_dir.mkdir(parents=True)
    evals = [] if final is None else [{"env_steps": run.budget, "wall_s": 1.0, "mean_return": final, "std_return": 0.0}]
    result = {
        **dataclasses.asdict(run),
        "status": status,
        "stop_reason": "budget",
        "wall_s": 60.0,
        "metrics": {"env_steps": run.budget, "final_test_return": final, "train_episodes": 10},
    }
    (run_dir / results.RESULT_FILE).write_text(json.dumps(result))
    (run_dir / results.EVAL_CSV).write_text(
        "env_steps,wall_s,mean_return,std_return\n" + "".join(f"{r['env_steps']},1.0,{final},0.0\n" for r in evals)
    )


def test_report_from_fake_runs_finds_the_smallest_spread(tmp_path: Path) -> None:
    root, out = tmp_path / "results", tmp_path / "report"
    by_id = {run.run_id: run for run in _variant_runs()}
    finals = {
        # CEM-AH's 2-layer grid: range 2; DQN's: range 290; DDPG: one result, no spread.
        "maze/cemah/lr1e-3_batch50_2layer": 950.0,
        "maze/cemah/lr1e-3_batch100_2layer": 951.0,
        "maze/cemah/lr1e-4_batch1000_2layer": 952.0,
        "maze/cemah/discriminator": 900.0,
        "maze/dqn/lr1e-3_batch50": 700.0,
        "maze/dqn/lr5e-3_batch100": 990.0,
        "maze/ddpg/lr1e-3_batch50": 800.0,
        # CEM-AH alone on the reacher: its two policy sizes do not test the claim.
        "reacher/cemah/lr1e-3_batch50_2layer": 1.0,
        "reacher/cemah/lr1e-3_batch100_2layer": 2.0,
    }
    for name, final in finals.items():
        _fake_run(root, by_id[f"sensitivity/{name}/seed0"], final)
    _fake_run(root, by_id["sensitivity/maze/a2c/lr1e-3_nsteps50/seed0"], None, status="failed")
    # Started, not finished: not done yet.
    started = by_id["sensitivity/maze/cemah/defaults/seed0"].run_dir(root)
    results.raw_dir(started).mkdir(parents=True)

    blocks = sensitivity.build(root, out)
    claim = blocks["claim"]
    assert "- **maze**: smallest spread" in claim and "**CEM-AH 2-layer: lr x batch**, range 2.00" in claim
    assert "(CEM-AH the least sensitive) holds here on partial grids" in claim
    assert "cannot be judged yet: no other method's grid has results" in claim.split("- **reacher**")[1]
    # Normalised by the maze's score range (random policy to the 16-step optimum).
    random = json.loads(sensitivity.report.RANDOM_FILE.read_text())["maze"]["mean_return"]
    unit = protocol.ENVS["maze"].score_reference.value - random
    row = f"| CEM-AH | 2-layer: lr x batch | 3/9 | 951.00 [950.00, 952.00] | 2.00 | 0.82 | {2 / unit:.3f} |"
    assert row in blocks["spread"]
    assert "| CEM-AH | all variants | 4/22 |" in blocks["spread"]
    assert "| DQN | lr x batch | 2/9 | 845.00 [700.00, 990.00] | 290.00 |" in blocks["spread"]
    assert "| REINFORCE (A2C) | lr x n_steps | 0/9 | not run yet |" in blocks["spread"]
    assert "| DDPG | lr x batch | 1/9 | 800.00 | | |" in blocks["spread"]
    assert "Not done yet (79 runs)" in blocks["summary"]
    assert (
        "- maze / CEM-AH: `defaults`, `no_pretrain_discriminator`, `no_pretrain`, `lr1e-3_batch1000_2layer`,"
        in blocks["summary"]
    )
    assert "- reacher / CEM-AH: `defaults`," in blocks["summary"]
    assert "Failed (1; `--retry-failed` runs them again): `" in blocks["summary"]
    assert "| sensitivity/maze/cemah/defaults/seed0 | defaults | (yml entry) | not run yet |" in blocks["runs"]
    assert "| failed | failed |" in blocks["runs"]
    assert "89 runs, estimated" in blocks["cost"]
    assert (out / "plots" / "maze.png").stat().st_size > 10_000
    # A plot per env with results.
    assert (out / "plots" / "reacher.png").exists()

    # The command writes the README's blocks around its prose.
    (out / "README.md").write_text("# Title\n\nHand-written prose.\n")
    sensitivity.main(["--root", str(root), "--out", str(out)])
    text = (out / "README.md").read_text()
    assert "Hand-written prose." in text and "<!-- generated: claim -->" in text
