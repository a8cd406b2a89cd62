#!/usr/bin/env bash
# The LM-pruning study of docs/results.md ("Pruning a Mamba-2 language model's states"), run
# with the programs a user runs, on the byte-level pydocs Mamba-2 LM (CPython's own prose).
#   bash experiments/lm_pydocs/run.sh [RUN_DIR] [extra make-train ARGS]
# Each step is skipped when its output exists, so a rerun resumes. On 2 idle CPU cores:
# ~25 min training, ~15 min sweep, ~25 min pruned models and fine-tuning, ~3 min decode.
set -euo pipefail
RUN=${1:-runs/pydocs-long}
TRAIN_ARGS=${2:-}
PY=${PY:-.venv/bin/python}
log() { echo "[$(date +%T)] $*"; }

# 1. The dense LM: the pydocs config's model (4 layers, D 128, N 32), 3000 steps, no pruning.
if [ ! -f "$RUN/summary.json" ]; then
  log "train $RUN"
  make train TASK=pydocs MODEL=mamba2 PRESET=long WORKDIR="$RUN" ARGS="$TRAIN_ARGS"
fi

# 2. One-shot curves, no fine-tuning: every 10%, every method (sweeps.lm.DEFAULT_METHODS:
#    calibrated / gramian global and uniform, calibrated sequential and measured,
#    magnitude, random x 3).
if [ ! -f "$RUN/sweep-lm/points.json" ]; then
  log "sweep"
  make sweep WORKDIR="$RUN"
fi

# 3. Pruned models at 50% and 70%, val and test: LAST's allocation (one threshold over
#    layer-normalized calibrated scores) and GHOST's procedure (uniform, sequential).
# 4. Recovery: 300 steps of distillation on the dense model's logits against 300 steps of
#    plain fine-tuning on the text, both at 3e-4, from the same globally pruned model.
prune() {  # OUT ARGS...
  local out="$RUN/pruned/$1"
  shift
  if [ ! -f "$out/prune_report.json" ]; then
    log "prune -> $out"
    "$PY" -m last_nnx.cli.prune --workdir "$RUN" --eval_splits val,test --out "$out" "$@"
  fi
}
for ratio in 0.5 0.7; do
  prune "global-$ratio" --ratio $ratio --criterion calibrated/global
  prune "ghost-$ratio" --ratio $ratio --criterion calibrated/uniform/seq
  prune "measured-$ratio" --ratio $ratio --criterion calibrated/measured
  for target in logits text; do
    prune "global-$ratio-$target" --ratio $ratio --criterion calibrated/global \
      --finetune_steps 300 --finetune_target $target
  done
done
# How far can it go within 2% of the dense val perplexity?
prune "max-drop-2" --max_drop 2 --criterion calibrated/global/seq
prune "max-drop-2-measured" --max_drop 2 --criterion calibrated/measured

# 5. Decode speed of the compacted models (their ragged per-layer N) against dense.
if [ ! -f "$RUN/bench/results.json" ]; then
  log "decode bench"
  "$PY" -m last_nnx.bench --out "$RUN/bench" --sections lm_pruned --decode_steps 64 \
    --lm_checkpoints "$RUN,$RUN/pruned/global-0.5,$RUN/pruned/ghost-0.5,$RUN/pruned/measured-0.5,$RUN/pruned/global-0.7,$RUN/pruned/ghost-0.7,$RUN/pruned/measured-0.7"
fi
log "done: $RUN/sweep-lm/report.md, $RUN/pruned/*/prune_report.json, $RUN/bench/results.md"
