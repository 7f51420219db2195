#!/usr/bin/env bash
# The claim protocol: can adaptive dropout remove >= 50 % of a Conformer's parameters and be no worse
# (the paper: better by ~1 % WER) than the dense model, in a regime where the dense model over-fits?
# experiment=claim (conf/experiment/claim.yaml) is the regime; this script trains every arm with SEEDS
# seeds, tunes the LM weight on dev per arm, and writes the report (scripts/claim_report.py):
#
#   scripts/claim.sh                          # 2 CPU cores: JOBS=2 runs at a time, one thread each
#   JOBS=8 THREADS=2 EXTRA=trainer=gpu scripts/claim.sh   # one GPU machine with 16 cores
#   OUT=/tmp/claim_smoke EXTRA="model/encoder=tiny trainer.max_steps=12 trainer.val_check_interval=6" \
#     STEPS=12 SEEDS=1,2 DROPOUT_RATES=0.2 LM_WEIGHTS=1.0 scripts/claim.sh   # a smoke test
#
# Arms, one directory each, $OUT/<arm>/seed<N> (a finished run is kept, an interrupted one resumes; rerun the
# script to continue; delete a directory to redo it):
#   dense             standard dropout 0.1 (sites, residual, attention), STEPS steps
#   dense_drop<r>     the same at rate r (DROPOUT_RATES, first seed only): the best rate on dev-clean becomes
#   dense_tuned         the tuned dense arm (all seeds; = dense when 0.1 is best)
#   adaptive          adaptive dropout, the default pruning settings
#   adaptive_strong   adaptive dropout, alpha x STRONG
#   dense_same_size   dense with adaptive's per-layer widths (same seed), from scratch
#   dense_uniform     dense with uniform widths of adaptive's total, from scratch
#   magnitude         dense's checkpoint at 2/3 of STEPS, magnitude-pruned to adaptive's per-site counts,
#                     fine-tuned for the last 1/3 (the same compute as one run)
#   l0                L0 hard-concrete gates driven to adaptive's size (pruning.target_params)
# then dev_lm<w>/ under the first seed of each arm: dev-clean with LM weight w (LM_WEIGHTS), and lm<best>/
# under every seed: the test subsets with the arm's best weight (<arm>/lm_weight.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/claim}
SEEDS=${SEEDS:-1,2,3}
STEPS=${STEPS:-$($PY -c "import yaml; print(yaml.safe_load(open('conf/experiment/claim.yaml'))['trainer']['max_steps'])")}
DROPOUT_RATES=${DROPOUT_RATES:-0.2,0.3}
STRONG=${STRONG:-4}
LM_WEIGHTS=${LM_WEIGHTS:-0.5,1.0,2.0}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
read -r -a extra <<<"${EXTRA:-}"
IFS=, read -r -a seeds <<<"$SEEDS"
IFS=, read -r -a rates <<<"$DROPOUT_RATES"
IFS=, read -r -a weights <<<"$LM_WEIGHTS"
first=${seeds[0]}
common=("threads=$THREADS" "callbacks.progress_bar=null" "${extra[@]}")
alpha=$($PY -c "import yaml; print(yaml.safe_load(open('conf/pruning/default.yaml'))['alpha'])")
strong_alpha=$($PY -c "print(${alpha} * ${STRONG})")
two_thirds=$((STEPS * 2 / 3))
one_third=$((STEPS - two_thirds))

start=$(date +%s)
log() { echo "[claim $(($(date +%s) - start))s] $*" >&2; }
train() {  # train <run dir> <overrides...>: skip a finished run, resume an interrupted one
  local dir=$1 resume=()
  shift
  if [[ -f $dir/results.json ]]; then log "kept: $dir"; return; fi
  [[ -f $dir/checkpoints/last.ckpt ]] && resume=("ckpt_path=$dir/checkpoints/last.ckpt")
  mkdir -p "$(dirname "$dir")"
  log "train $dir: $*"
  "$PY" scripts/train.py "${common[@]}" "$@" "${resume[@]}" "hydra.run.dir=$dir" >"$dir.log" 2>&1 ||
    { log "FAILED $dir (see $dir.log)"; return 1; }
}
evaluate() {  # evaluate <run dir> <lm weight> <subsets> <name>: the run's last checkpoint with that LM weight
  local run=$1 weight=$2 subsets=$3 out=$1/$4
  if [[ -f $out/results.json ]] && "$PY" -c "import json,sys; r=json.load(open('$out/results.json'));
sys.exit(0 if set('$subsets'.strip('[]').split(',')) <= set(r['cer']) else 1)"; then return; fi
  log "evaluate $run: lm_weight=$weight on $subsets"
  "$PY" scripts/evaluate.py "model_path=$run/checkpoints/last.ckpt" "data.eval_subsets=$subsets" decoding=ctc \
    "decoding.default.lm_weight=$weight" "threads=$THREADS" "out_dir=$out" >"$out.log" 2>&1 ||
    { log "FAILED evaluate $out (see $out.log)"; return 1; }
}
submit() {  # run "$@" in the background, at most JOBS at a time
  while (($(jobs -rp | wc -l) >= JOBS)); do wait -n || true; done
  "$@" &
}
params_of() { "$PY" -c "import json; print(json.load(open('$1/results.json'))['params']['compacted_total'])"; }

# -- phase 1: the arms that depend on nothing ------------------------------------------------------------
periodic="+callbacks.at_two_thirds={_target_: lightning.pytorch.callbacks.ModelCheckpoint, \
dirpath: \${paths.output_dir}/checkpoints/two_thirds, every_n_train_steps: $two_thirds, save_top_k: -1, \
filename: 'step{step:06d}', auto_insert_metric_name: false}"
for seed in "${seeds[@]}"; do
  submit train "$OUT/dense/seed$seed" experiment=claim dropout=standard "seed=$seed" "$periodic"
  submit train "$OUT/adaptive/seed$seed" experiment=claim dropout=adaptive "seed=$seed"
  submit train "$OUT/adaptive_strong/seed$seed" experiment=claim dropout=adaptive "pruning.alpha=$strong_alpha" \
    "seed=$seed"
done
for rate in "${rates[@]}"; do
  submit train "$OUT/dense_drop$rate/seed$first" experiment=claim dropout=standard "dropout.strategy.drop_prob=$rate" \
    "model.net.encoder.dropout_rate=$rate" "model.net.encoder.attention_dropout=$rate" "seed=$first"
done
wait

# -- phase 2: the arms matched to adaptive (same seed) and the tuned dense arm ----------------------------
best_rate=$("$PY" - "$OUT" "$first" "${rates[@]}" <<'EOF'
import json, sys
out, seed, rates = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = {"0.1": f"{out}/dense/seed{seed}", **{r: f"{out}/dense_drop{r}/seed{seed}" for r in rates}}
dev = {r: json.load(open(f"{d}/results.json"))["cer_greedy"]["dev-clean"] for r, d in runs.items()}
print(min(dev, key=dev.get))
EOF
)
log "best dropout rate on dev-clean: $best_rate"
echo "$best_rate" >"$OUT/best_dropout_rate.txt"
for seed in "${seeds[@]}"; do
  source=$OUT/adaptive/seed$seed
  if [[ $best_rate != 0.1 ]]; then
    if [[ $seed == "$first" ]]; then
      mkdir -p "$OUT/dense_tuned" && ln -sfn "../dense_drop$best_rate/seed$first" "$OUT/dense_tuned/seed$seed"
    else
      submit train "$OUT/dense_tuned/seed$seed" experiment=claim dropout=standard \
        "dropout.strategy.drop_prob=$best_rate" "model.net.encoder.dropout_rate=$best_rate" \
        "model.net.encoder.attention_dropout=$best_rate" "seed=$seed"
    fi
  fi
  [[ -f $source/results.json ]] || { log "skip the matched arms of seed $seed: $source did not finish"; continue; }
  submit train "$OUT/dense_same_size/seed$seed" "experiment=[claim,dense_same_size]" "widths_from=$source/export" \
    "seed=$seed"
  submit train "$OUT/dense_uniform/seed$seed" "experiment=[claim,dense_uniform]" "params_from=$source/export" \
    "seed=$seed"
  submit train "$OUT/l0/seed$seed" experiment=claim dropout=hard_concrete "pruning.target_params=$(params_of "$source")" \
    "seed=$seed"
  init=$(ls "$OUT/dense/seed$seed/checkpoints/two_thirds/"*.ckpt 2>/dev/null | head -1 || true)
  [[ -n $init ]] || { log "skip magnitude seed $seed: no 2/3 checkpoint of $OUT/dense/seed$seed"; continue; }
  submit train "$OUT/magnitude/seed$seed" "experiment=[claim,magnitude_finetune]" "init_from=$init" \
    "counts_from=$source/export" "trainer.max_steps=$one_third" "trainer.val_check_interval=$one_third" \
    "seed=$seed"
done
wait

# -- phase 3: the LM weight per arm, on dev-clean (first seed), then the test subsets at that weight --------
arms=$(cd "$OUT" && ls -d */seed"$first" 2>/dev/null | cut -d/ -f1 | sort -u | tr '\n' ' ')
for arm in $arms; do
  for weight in "${weights[@]}"; do
    submit evaluate "$OUT/$arm/seed$first" "$weight" "[dev-clean]" "dev_lm$weight"
  done
done
wait
for arm in $arms; do
  best=$("$PY" - "$OUT/$arm/seed$first" "${weights[@]}" <<'EOF'
import json, sys
run, weights = sys.argv[1], sys.argv[2:]
dev = {w: json.load(open(f"{run}/dev_lm{w}/results.json"))["wer"]["dev-clean"] for w in weights}
print(min(dev, key=dev.get))
EOF
  )
  echo "$best" >"$OUT/$arm/lm_weight.txt"
  for seed in "${seeds[@]}"; do
    [[ -f $OUT/$arm/seed$seed/results.json ]] && submit evaluate "$OUT/$arm/seed$seed" "$best" "[test-clean,test-other]" "lm$best"
  done
done
wait

"$PY" scripts/claim_report.py "sweep_dir=$OUT"
log "done: $OUT/report/claim.md"
