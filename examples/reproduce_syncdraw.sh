#!/usr/bin/env bash
# Reproduce the SyncDraw-MM experiments with t2vkit's own commands: prepare the data, train the
# stage-1 autoencoder, align text with it (the paper's method and baselines), train the diffusion
# sampler (pixel space) and the prior (wae3d's latent), then evaluate everything into one Markdown
# table and draw the latent spaces.
#
#   PRESET=quick examples/reproduce_syncdraw.sh     # a 2-core CPU (hours)
#   PRESET=paper examples/reproduce_syncdraw.sh     # the paper's sizes and schedules (a GPU)
#
# Every run resumes where it stopped: rerunning the script continues unfinished runs and skips
# finished ones. Variables: PRESET, MNIST (IDX folder), DATA, RUNS, ALIGNERS, DEVICE, and for
# FVD/KVD I3D (a Kinetics-400 I3D .safetensors; without it those columns are listed as skipped).
set -euo pipefail

PRESET=${PRESET:-quick}
MNIST=${MNIST:-../shared/data/mnist}
DATA=${DATA:-data/syncdraw}
RUNS=${RUNS:-runs/syncdraw-$PRESET}
ALIGNERS=${ALIGNERS:-progressive clip direct}
DEVICE=${DEVICE:-auto}
I3D=${I3D:-${T2VKIT_I3D:-../shared/data/weights/i3d_kinetics400.safetensors}}
[ -f "$I3D" ] && export T2VKIT_I3D=$I3D

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
# The prior over wae3d's latent vector: a small MLP, so large batches and many epochs.
train "$RUNS/prior" --stage diffusion --sampler prior --dataset "$DATA" --video "$RUNS/wae3d" \
  --set train.batch_size=256 --set train.epochs=100 --set train.lr=5e-4 --set train.ema_decay=0.999

mkdir -p "$RUNS/eval"
EVAL_DEVICE=$DEVICE  # evaluate and latents take cpu or cuda
[ "$DEVICE" = auto ] && EVAL_DEVICE=$(python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
runs=("$RUNS/wae3d")
for run in $ALIGNERS diffusion-pixel prior; do runs+=("$RUNS/$run"); done
# One table, the paper's Tables 1-2 side by side: the stage-1 row, then the text-to-video rows.
t2vkit evaluate "${runs[@]}" --dataset "$DATA" --device "$EVAL_DEVICE" --num-per-prompt 8 --latent-run "$RUNS/wae3d" \
  --json "$RUNS/eval/reports.json" --markdown "$RUNS/eval/table.md"
for aligner in $ALIGNERS; do
  t2vkit latents "$RUNS/$aligner" --dataset "$DATA" --out "$RUNS/latents/$aligner" --device "$EVAL_DEVICE"
done

cat "$RUNS/eval/table.md"
