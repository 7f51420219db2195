#!/usr/bin/env bash
# Reproduce the paper's claim (54% fewer parameters, WER no worse than dense) at our scale, on the
# embedded corpus, with every baseline, then write the report (report.md / report.csv / pareto.png).
#
#   scripts/reproduce.sh                      # 3 seeds, the sweep_small recipe (400 steps per run)
#   SEEDS=1 STEPS=400 scripts/reproduce.sh    # one seed: a quicker, noisier look
#   OUT=outputs/repro EXPERIMENT=quickstart STEPS=1000 scripts/reproduce.sh   # the 1000-step recipe
#
# Every run uses the same recipe, data and step budget. Order (later steps read earlier outputs):
#   1 dense, standard dropout   2 adaptive dropout at ALPHAS (middle one = "about half")
#   3 dense, same size as (2)'s compacted model, from scratch   4 dense, uniform widths, same size
#   5 magnitude structured pruning of (1) to (2)'s per-site counts + fine-tune
#   6 L0 hard-concrete gates   7 ablations: adaptive dropout at each application point alone
# Matched baselines (3-5) follow the middle alpha's run of the same seed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-1,2,3}
STEPS=${STEPS:-400}
EXPERIMENT=${EXPERIMENT:-sweep_small}
ALPHAS=${ALPHAS:-1e-6,2e-6,4e-6}
L0_ALPHA=${L0_ALPHA:-1e-4}
FINETUNE_STEPS=${FINETUNE_STEPS:-$((STEPS / 2))}
OUT=${OUT:-outputs/reproduce}
MID_ALPHA=$(echo "$ALPHAS" | cut -d, -f2)
common=("experiment=$EXPERIMENT" "trainer.max_steps=$STEPS" "callbacks.progress_bar=null")

start=$(date +%s)
run() { echo "[reproduce] $*" >&2; "$PY" scripts/train.py "$@"; }

run -m "${common[@]}" dropout=standard "seed=$SEEDS" "hydra.sweep.dir=$OUT/dense"
run -m "${common[@]}" dropout=adaptive "pruning.alpha=$ALPHAS" "seed=$SEEDS" "hydra.sweep.dir=$OUT/adaptive"
run -m "${common[@]}" dropout=hard_concrete "pruning.alpha=$L0_ALPHA" "seed=$SEEDS" "hydra.sweep.dir=$OUT/l0"
run -m "${common[@]}" dropout=adaptive_ffn,adaptive_attention,adaptive_conv "pruning.alpha=$MID_ALPHA" "seed=$SEEDS" \
  "hydra.sweep.dir=$OUT/ablations"

# Baselines matched, seed by seed, to the middle-alpha adaptive run.
IFS=, read -r -a seeds <<<"$SEEDS"
for seed in "${seeds[@]}"; do
  pruned=$("$PY" -c "import json,pathlib,sys
for d in sorted(pathlib.Path('$OUT/adaptive').iterdir()):
    cfg = d / '.hydra' / 'overrides.yaml'
    if cfg.exists() and 'pruning.alpha=$MID_ALPHA' in cfg.read_text() and 'seed=$seed' in cfg.read_text():
        print(d); break")
  dense=$("$PY" -c "import pathlib
for d in sorted(pathlib.Path('$OUT/dense').iterdir()):
    cfg = d / '.hydra' / 'overrides.yaml'
    if cfg.exists() and 'seed=$seed' in cfg.read_text():
        print(d); break")
  run "experiment=[$EXPERIMENT,dense_same_size]" "${common[@]:1}" "widths_from=$pruned/export" "seed=$seed" \
    "hydra.run.dir=$OUT/baselines/dense_same_size_seed$seed"
  run "experiment=[$EXPERIMENT,dense_uniform]" "${common[@]:1}" "params_from=$pruned/export" "seed=$seed" \
    "hydra.run.dir=$OUT/baselines/dense_uniform_seed$seed"
  run "experiment=[$EXPERIMENT,magnitude_finetune]" "callbacks.progress_bar=null" "trainer.max_steps=$FINETUNE_STEPS" \
    "init_from=$dense" "counts_from=$pruned/export" "seed=$seed" "hydra.run.dir=$OUT/baselines/magnitude_seed$seed"
done

"$PY" scripts/report.py "sweep_dir=$OUT" "out_dir=$OUT/report"
echo "[reproduce] done in $(( ($(date +%s) - start) / 60 )) min: $OUT/report/report.md" >&2
