#!/usr/bin/env bash
# The CEM-AH ablation through benchmarks.imitation: defaults (no discriminator), the paper's full method
# (with the discriminator) and no pre-training (adversarial only); 3 seeds, equal env-step budgets per env, on the
# five envs of the issue. Resumable: finished (config, env, seed) files are skipped. Two chains, one per core.
# Usage: bash benchmarks/imitation_ablation.sh [OUT]   (default docs/benchmarks/imitation/ablation)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/benchmarks/imitation/ablation}"
python="${PYTHON:-.venv/bin/python}"
run() {  # run CONFIG ENV STEPS [PARAMS...]
  local config=$1 env=$2 steps=$3 options=()
  shift 3
  # Greedy actions loop in the deterministic maze until the step cap (every policy scores -1000): it is tested, as
  # in the paper and rl-zoo3, with sampled actions.
  [[ $env == *Maze* ]] && options=(--stochastic)
  PYTHONPATH=. "$python" -m benchmarks.imitation --env "$env" --steps "$steps" --seeds 0 1 2 --config "$config" \
    --out "$out" "${options[@]}" --params "$@"
}
ablate() {  # ablate ENV STEPS: the three configs on one env
  run defaults "$1" "$2"
  run full "$1" "$2" adversarial_steps=10
  run no_pretrain "$1" "$2" adversarial_steps=10 pretrain_steps=0
}
chain_one() {
  ablate CartPole-v1 150000
  ablate Walker2DBulletEnv-v0 225000
  ablate ReacherBulletEnv-v0 500000
}
chain_two() {
  ablate AntBulletEnv-v0 200000
  ablate sb3_cemah/Maze-v0 500000
}
mkdir -p "$out"
chain_one > "$out/chain1.log" 2>&1 &
chain_two > "$out/chain2.log" 2>&1 &
wait
