#!/usr/bin/env bash
# Reproduce the SyncDraw-MM experiments with t2vkit's own commands: prepare the data, train the
# stage-1 autoencoder, align text with it (the paper's method and baselines), train the diffusion
# sampler, then evaluate everything into one Markdown table.
#
#   PRESET=quick examples/reproduce_syncdraw.sh     # a 2-core CPU (hours)
#   PRESET=paper examples/reproduce_syncdraw.sh     # the paper's sizes and schedules (a GPU)
#
# Every run resumes where it stopped: rerunning the script continues unfinished runs and skips
# finished ones. Variables: PRESET, MNIST (IDX folder), DATA, RUNS, ALIGNERS, DEVICE.
set -euo pipefail

PRESET=${PRESET:-quick}
MNIST=${MNIST:-../shared/data/mnist}
DATA=${DATA:-data/syncdraw}
RUNS=${RUNS:-runs/syncdraw-$PRESET}
ALIGNERS=${ALIGNERS:-progressive clip direct}
DEVICE=${DEVICE:-auto}

train() {  # train OUT ARGS...: start the run, or continue it if OUT already holds one
  local out=$1
  shift
  if [ -f "$out/config.json" ]; then
    t2vkit train --preset "$PRESET" --device "$DEVICE" --out "$out" --resume "$@"
  else
    t2vkit train --preset "$PRESET" --device "$DEVICE" --out "$out" "$@"
  fi
}

t2vkit data prepare syncdraw-mm --mnist "$MNIST" --out "$DATA"

train "$RUNS/wae3d" --stage video --dataset "$DATA" --decoder wae3d
for aligner in $ALIGNERS; do
  train "$RUNS/$aligner" --stage align --dataset "$DATA" --video "$RUNS/wae3d" --aligner "$aligner"
done
train "$RUNS/diffusion-pixel" --stage diffusion --dataset "$DATA"

mkdir -p "$RUNS/eval"
t2vkit evaluate "$RUNS/wae3d" --dataset "$DATA" --json "$RUNS/eval/wae3d.json" --markdown "$RUNS/eval/wae3d.md"
for run in $ALIGNERS diffusion-pixel; do
  t2vkit evaluate "$RUNS/$run" --dataset "$DATA" --num-per-prompt 8 --latent-run "$RUNS/wae3d" \
    --json "$RUNS/eval/$run.json" --markdown "$RUNS/eval/$run.md"
done
cat "$RUNS"/eval/*.md
