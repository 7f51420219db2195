#!/usr/bin/env bash
# Reproduce the paper's claim (54% fewer parameters, WER no worse than dense) at our scale, on the
# embedded corpus, with every baseline, then write the report (report.md / report.csv / pareto.png).
#
#   scripts/reproduce.sh                      # 3 seeds, the sweep_small recipe (400 steps per run)
#   SEEDS=1 STEPS=400 scripts/reproduce.sh    # one seed: a quicker, noisier look
#   SWEEP_SEEDS=1 scripts/reproduce.sh        # 3 seeds for the key comparison (dense, adaptive at the
#                                             # middle alpha, dense of the same size), 1 for the rest
#   OUT=outputs/repro EXPERIMENT=quickstart STEPS=1000 scripts/reproduce.sh   # the 1000-step recipe
#
# Every run uses the same recipe, data and step budget. Order (later steps read earlier outputs):
#   1 dense, standard dropout   2 adaptive dropout at ALPHAS (middle one = "about half")
#   3 dense, same size as (2)'s compacted model, from scratch   4 dense, uniform widths, same size
#   5 magnitude structured pruning of (1) to (2)'s per-site counts + fine-tune
#   6 L0 hard-concrete gates   7 ablations: adaptive dropout at each application point alone
# Matched baselines (3-5) follow the middle alpha's run of the same seed. SEEDS covers the key
# comparison (1, 2 at the middle alpha, 3); SWEEP_SEEDS (default: SEEDS) everything else.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-1,2,3}
SWEEP_SEEDS=${SWEEP_SEEDS:-$SEEDS}
STEPS=${STEPS:-400}
EXPERIMENT=${EXPERIMENT:-sweep_small}
ALPHAS=${ALPHAS:-1e-6,2e-6,4e-6}
L0_ALPHA=${L0_ALPHA:-3e-4}   # expected-L0 gradient per gate ~ 0.09·alpha: similar pull to adaptive at 2e-6
FINETUNE_STEPS=${FINETUNE_STEPS:-$((STEPS / 2))}
OUT=${OUT:-outputs/reproduce}
MID_ALPHA=$(echo "$ALPHAS" | cut -d, -f2)
OTHER_ALPHAS=$(echo "$ALPHAS" | cut -d, -f1,3)
# EXTRA: more overrides for every run, e.g. EXTRA="model/encoder=tiny" STEPS=4 for a smoke test
read -r -a extra <<<"${EXTRA:-}"
common=("experiment=$EXPERIMENT" "trainer.max_steps=$STEPS" "callbacks.progress_bar=null" "${extra[@]}")

start=$(date +%s)
run() { echo "[reproduce] $*" >&2; "$PY" scripts/train.py "$@"; }

run -m "${common[@]}" dropout=standard "seed=$SEEDS" "hydra.sweep.dir=$OUT/dense"
run -m "${common[@]}" dropout=adaptive "pruning.alpha=$MID_ALPHA" "seed=$SEEDS" "hydra.sweep.dir=$OUT/adaptive"
run -m "${common[@]}" dropout=adaptive "pruning.alpha=$OTHER_ALPHAS" "seed=$SWEEP_SEEDS" "hydra.sweep.dir=$OUT/adaptive_sweep"
run -m "${common[@]}" dropout=hard_concrete "pruning.alpha=$L0_ALPHA" "seed=$SWEEP_SEEDS" "hydra.sweep.dir=$OUT/l0"
run -m "${common[@]}" dropout=adaptive_ffn,adaptive_attention,adaptive_conv "pruning.alpha=$MID_ALPHA" \
  "seed=$SWEEP_SEEDS" "hydra.sweep.dir=$OUT/ablations"

# Baselines matched, seed by seed, to the middle-alpha adaptive run.
find_run() {  # find_run <sweep dir> <override that must appear> ... -> the first job dir with all of them
  "$PY" - "$@" <<'PYEOF'
import pathlib, sys
root, wanted = pathlib.Path(sys.argv[1]), sys.argv[2:]
for job in sorted(p for p in root.iterdir() if (p / ".hydra" / "overrides.yaml").exists()):
    lines = [line.strip("- \n") for line in (job / ".hydra" / "overrides.yaml").read_text().splitlines()]
    if all(w in lines for w in wanted):
        print(job)
        break
else:
    sys.exit(f"no run under {root} with {wanted}")
PYEOF
}
IFS=, read -r -a seeds <<<"$SEEDS"
IFS=, read -r -a sweep_seeds <<<"$SWEEP_SEEDS"
for seed in "${seeds[@]}"; do
  pruned=$(find_run "$OUT/adaptive" "seed=$seed")
  run "experiment=[$EXPERIMENT,dense_same_size]" "${common[@]:1}" "widths_from=$pruned/export" "seed=$seed" \
    "hydra.run.dir=$OUT/baselines/dense_same_size_seed$seed"
done
for seed in "${sweep_seeds[@]}"; do
  pruned=$(find_run "$OUT/adaptive" "seed=$seed")
  dense=$(find_run "$OUT/dense" "seed=$seed")
  run "experiment=[$EXPERIMENT,dense_uniform]" "${common[@]:1}" "params_from=$pruned/export" "seed=$seed" \
    "hydra.run.dir=$OUT/baselines/dense_uniform_seed$seed"
  run "experiment=[$EXPERIMENT,magnitude_finetune]" "callbacks.progress_bar=null" "${extra[@]}" "trainer.max_steps=$FINETUNE_STEPS" \
    "init_from=$dense" "counts_from=$pruned/export" "seed=$seed" "hydra.run.dir=$OUT/baselines/magnitude_seed$seed"
done

"$PY" scripts/report.py "sweep_dir=$OUT" "out_dir=$OUT/report"
echo "[reproduce] done in $(( ($(date +%s) - start) / 60 )) min: $OUT/report/report.md" >&2
