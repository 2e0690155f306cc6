#!/usr/bin/env bash
# Ablations of the default reading on a reduced budget (docs/FINDINGS.md section 8): 12,800 training
# samples, a 2,000-image validation split, the first 2,000 test images, seed 0, one thread; each run
# changes one thing from the default. Then: python -m astdp.report outputs/ablations
# Usage: scripts/ablations.sh [data root] [name ...]   (no names: all of them, one after the other)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-../shared/data}; shift || true
RUNS=(  # name=overrides, in the order they run
  "default="
  "unsupervised=learner=unsupervised"
  "no_bounds=model.bounds=null"
  "nudged_inputs=model.input_clamp=nudge"
  "sigmoid4_box=model.activation=sigmoid4_box"
  "lateral=depth.lateral=true"
  "no_fake_targets=model.fake_target.enabled=false"
  "constant_rate=learner.schedule=constant"
  "hidden_rate_x2=learner.layer_alpha=[1,2,1]"
  "batch_32=data.batch_size=32"
  "h512x2=depth=h512x2"
  "unbounded_reading=model=astdp_unbounded depth.lateral=null learner.alpha=4e-4 learner.steps=80 learner.free_steps=40"
)
declare -A OVERRIDES=()
ALL=()
for run in "${RUNS[@]}"; do OVERRIDES[${run%%=*}]=${run#*=}; ALL+=("${run%%=*}"); done
NAMES=("$@"); [ ${#NAMES[@]} -eq 0 ] && NAMES=("${ALL[@]}")
for name in "${NAMES[@]}"; do
  [ -v "OVERRIDES[$name]" ] || { echo "error: unknown ablation '$name'; known: ${ALL[*]}" >&2; exit 2; }
done
for name in "${NAMES[@]}"; do
  python train.py data.root="$ROOT" data.n_train=14800 data.val_size=2000 data.n_test=2000 logger=csv threads=1 \
    trainer.val_check_interval=25 hydra.run.dir="outputs/ablations/$name" tags="[ablation,$name]" ${OVERRIDES[$name]} \
    | tail -n 1 || echo "$name: failed (its error is above)"
done
