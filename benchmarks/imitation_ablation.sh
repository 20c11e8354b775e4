#!/usr/bin/env bash
# The CEM-AH ablation of issue 9 through benchmarks.imitation: defaults (no discriminator), the paper's full method
# (with the discriminator) and no pre-training (adversarial only); 3 seeds, equal env-step budgets per env. Resumable: finished (config, env, seed) files are skipped. Two chains, one per core.
# Usage: bash benchmarks/imitation_ablation.sh [OUT]   (default docs/benchmarks/imitation/ablation)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/benchmarks/imitation/ablation}"
python="${PYTHON:-.venv/bin/python}"
run() {  # run CONFIG ENV STEPS [PARAMS...]
  local config=$1 env=$2 steps=$3
  shift 3
  PYTHONPATH=. "$python" -m benchmarks.imitation --env "$env" --steps "$steps" --seeds 0 1 2 --config "$config" \
    --out "$out" --params "$@"
}
chain_one() {
  run defaults Walker2DBulletEnv-v0 225000
  run full Walker2DBulletEnv-v0 225000 use_discriminator=True
  run defaults CartPole-v1 150000
  run full CartPole-v1 150000 use_discriminator=True
  run defaults ReacherBulletEnv-v0 500000
  run full ReacherBulletEnv-v0 500000 use_discriminator=True
  run no_pretrain CartPole-v1 150000 use_discriminator=True pretrain=False
}
chain_two() {
  run defaults AntBulletEnv-v0 200000
  run full AntBulletEnv-v0 200000 use_discriminator=True
  run no_pretrain Walker2DBulletEnv-v0 225000 use_discriminator=True pretrain=False
  run no_pretrain AntBulletEnv-v0 200000 use_discriminator=True pretrain=False
  run no_pretrain ReacherBulletEnv-v0 500000 use_discriminator=True pretrain=False
}
chain_one > "$out.chain1.log" 2>&1 &
chain_two > "$out.chain2.log" 2>&1 &
wait
