#!/usr/bin/env bash
# The controls that show adaptive dropout prunes by importance (issue: "prune by importance, not by
# optimiser noise"), at the default pruning settings, then their report (controls.md / controls.json):
#
#   scripts/importance_controls.sh                         # the quickstart recipe, JOBS=2 runs at a time
#   OUT=outputs/controls_tiny EXTRA="model/encoder=tiny trainer.max_steps=8 trainer.val_check_interval=4" \
#     ALPHAS=0,1e-6 TARGETS=0.5 CONV_SEEDS=1 scripts/importance_controls.sh   # a smoke test
#
# Runs (one directory each under $OUT; a finished run is kept, an interrupted one resumes):
#   alpha<α>          the alpha sweep (ALPHAS; DEFAULT_ALPHA among them): the size must follow alpha
#   noise_seed<k>     DEFAULT_ALPHA again with another dropout-noise seed: the same units must be pruned
#   dense_same_size   dense, the per-layer widths of alpha<DEFAULT_ALPHA>, from scratch
#   dense_uniform     dense, uniform widths of the same total, from scratch
#   target<t>         pruning.target_params=<t> (TARGETS): the budget alone must reach the size
#   conv_<pos>_seed<s> adaptive dropout at the LConv site only, mask at <pos> = input | output (CONV_SEEDS)
#   random_units<k>   alpha<DEFAULT_ALPHA>'s checkpoint with its keep logits permuted within each site (the same
#                     counts and eval scales on random units; RANDOM_DRAWS of them), scored greedily on SUBSET
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/controls}
SEED=${SEED:-$($PY -c "import yaml; print(yaml.safe_load(open('conf/train.yaml'))['seed'])")}  # the default run's
ALPHAS=${ALPHAS:-0,3e-7,1e-6,4e-6}
# the alpha of conf/pruning/default.yaml, spelled as in ALPHAS (its runs are the default's)
DEFAULT_ALPHA=${DEFAULT_ALPHA:-$($PY -c "
import sys, yaml
default = float(yaml.safe_load(open('conf/pruning/default.yaml'))['alpha'])
match = [a for a in sys.argv[1].split(',') if float(a) == default]
sys.exit(f'ALPHAS={sys.argv[1]} lacks the default alpha {default:g}: add it') if not match else print(match[0])
" "$ALPHAS")}
NOISE_SEED=${NOISE_SEED:-7}
TARGETS=${TARGETS:-0.6,0.4}
CONV_SEEDS=${CONV_SEEDS:-$SEED}
RANDOM_DRAWS=${RANDOM_DRAWS:-3}
SUBSET=${SUBSET:-test-clean}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
read -r -a extra <<<"${EXTRA:-}"
IFS=, read -r -a alphas <<<"$ALPHAS"
IFS=, read -r -a targets <<<"$TARGETS"
IFS=, read -r -a conv_seeds <<<"$CONV_SEEDS"
common=("threads=$THREADS" "callbacks.progress_bar=null" "seed=$SEED" "${extra[@]}")

start=$(date +%s)
train() {  # train <run dir> <overrides...>: skip a finished run, resume an interrupted one
  local dir=$1 resume=()
  shift
  if [[ -f $dir/results.json ]]; then
    echo "[controls] kept (already finished): $dir" >&2
    return
  fi
  [[ -f $dir/checkpoints/last.ckpt ]] && resume=("ckpt_path=$dir/checkpoints/last.ckpt")
  mkdir -p "$(dirname "$dir")"
  echo "[controls] $dir: $*" >&2
  "$PY" scripts/train.py "${common[@]}" "$@" "${resume[@]}" "hydra.run.dir=$dir" >"$dir.log" 2>&1 ||
    { echo "[controls] FAILED: $dir (see $dir.log)" >&2; return 1; }
}
submit() {  # run `train "$@"` in the background, at most JOBS at a time
  while (($(jobs -rp | wc -l) >= JOBS)); do wait -n || true; done
  train "$@" &
}

for alpha in "${alphas[@]}"; do
  submit "$OUT/alpha$alpha" "pruning.alpha=$alpha"
done
submit "$OUT/noise_seed$NOISE_SEED" "pruning.alpha=$DEFAULT_ALPHA" "noise_seed=$NOISE_SEED"
for target in "${targets[@]}"; do
  submit "$OUT/target$target" "pruning.target_params=$target"
done
for seed in "${conv_seeds[@]}"; do
  for position in input output; do
    submit "$OUT/conv_${position}_seed$seed" dropout=adaptive_conv "pruning.alpha=$DEFAULT_ALPHA" \
      "model.net.encoder.conv_mask_position=$position" "seed=$seed"
  done
done
wait
source_run=$OUT/alpha$DEFAULT_ALPHA
[[ -f $source_run/results.json ]] || { echo "[controls] $source_run did not finish" >&2; exit 1; }
for k in $(seq 1 "$RANDOM_DRAWS"); do
  draw=$OUT/random_units$k
  [[ -f $draw/results.json ]] && continue
  rm -rf "$draw"
  "$PY" scripts/permute_units.py "checkpoint=$source_run/checkpoints/last.ckpt" "out=$draw/last.ckpt" "seed=$k" &&
    "$PY" scripts/evaluate.py "model_path=$draw/last.ckpt" decoding=ctc_greedy "data.eval_subsets=[$SUBSET]" \
      "threads=$THREADS" "out_dir=$draw" >"$draw.log" 2>&1 || { echo "[controls] FAILED: $draw (see $draw.log)" >&2; exit 1; }
done
submit "$OUT/dense_same_size" experiment=dense_same_size "widths_from=$source_run/export"
submit "$OUT/dense_uniform" experiment=dense_uniform "params_from=$source_run/export"
wait

"$PY" scripts/importance_report.py "sweep_dir=$OUT" "subset=$SUBSET"
echo "[controls] done in $((($(date +%s) - start) / 60)) min: $OUT/controls.md" >&2
