#!/usr/bin/env bash
# Train, evaluate and package the default model that t2vkit ships (t2vkit/default_model/, described in
# docs/default-model.md), with t2vkit's own commands and the recipe in examples/default_model.toml:
# a wae3d stage-1 autoencoder, then the prior sampler over its latent vector, both with the minilm encoder.
#
#   examples/train_default_model.sh            # about 3 hours on a 2-core CPU (stage 1: about 2.5 hours at 20 clips/s)
#
# Variables: MNIST (IDX folder), DATA, RUNS, DEVICE, STEPS (stage-1 steps). Runs resume where they stopped.
set -euo pipefail

MNIST=${MNIST:-../shared/data/mnist}
DATA=${DATA:-data/syncdraw}
RUNS=${RUNS:-runs/default}
DEVICE=${DEVICE:-auto}
STEPS=${STEPS:-11500}
RECIPE=$(dirname "$0")/default_model.toml

train() {  # train OUT ARGS...: start the run, or continue it if OUT already holds one
  local out=$1
  shift
  local resume=()
  [ -f "$out/config.json" ] && resume=(--resume)
  t2vkit train --preset quick --config "$RECIPE" --device "$DEVICE" --out "$out" "${resume[@]}" "$@"
}

t2vkit data prepare syncdraw-mm --mnist "$MNIST" --out "$DATA"
train "$RUNS/wae3d" --stage video --dataset "$DATA" --decoder wae3d --max-steps "$STEPS"
train "$RUNS/prior" --stage diffusion --sampler prior --dataset "$DATA" --video "$RUNS/wae3d"

mkdir -p "$RUNS/eval"
t2vkit evaluate "$RUNS/wae3d" "$RUNS/prior" --dataset "$DATA" --num-per-prompt 8 --latent-run "$RUNS/wae3d" --cfg 3 \
  --json "$RUNS/eval/reports.json" --markdown "$RUNS/eval/table.md"
python "$(dirname "$0")/package_default_model.py" "$RUNS/prior" --cfg 3  # see docs/default-model.md
