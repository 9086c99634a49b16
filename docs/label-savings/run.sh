#!/usr/bin/env bash
# Regenerates docs/label-savings (issues 33 and 34) on 2 CPU cores, one run at a time; every
# command resumes where it stopped (a finished run is read back, not rerun).
# Runs go to $STUDY_RUNS (default runs/savings); the study's data to runs/data.
# Needs the shared data in ../shared/data (and, for TREC-6, the files make_data.py names).
set -euo pipefail
cd "$(dirname "$0")/../.."
STAR=${STAR:-.venv/bin/star}
RUNS=${STUDY_RUNS:-runs/savings}
SEEDS=0,1,2,3,4,5,6,7,8,9
OUT=docs/label-savings

# 1. The small-budget recipe (issue 33): random selection, 16 and 32 labels, 10 seeds, the
#    whole SST-2 test set (872). Each training setting without the prompt guard, then the
#    default recipe with it.
sweep() {  # name, then --set overrides
    local name=$1; shift
    $STAR compare configs/savings-sst2.yaml --strategies random --seeds $SEEDS \
        --set loop.budget=32 --set guard.folds=0 "$@" --out "$RUNS/sweep/$name"
}
guarded() {  # name, then --set overrides: the same with the prompt guard (its defaults)
    local name=$1; shift
    $STAR compare configs/savings-sst2.yaml --strategies random --seeds $SEEDS \
        --set loop.budget=32 "$@" --out "$RUNS/sweep/$name"
}
sweep preset
guarded guard
sweep balance --set train.balance=classes
guarded balance-guard --set train.balance=classes
sweep lr2e-4 --set train.lr=2.0e-4

# The direction on another task: TREC-6 (six classes, skewed; make_data.py), 16 and 32 labels,
# the preset, the class-balanced loss, and each with the guard.
trec() {  # name, then --set overrides
    local name=$1; shift
    $STAR compare configs/savings-trec6.yaml --strategies random --seeds $SEEDS \
        --set loop.budget=32 "$@" --out "$RUNS/trec6-small/$name"
}
trec preset --set guard.folds=0
trec guard
trec balance --set guard.folds=0 --set train.balance=classes
trec balance-guard --set train.balance=classes

# 2. The noise budget: round 1 (32 labels) of three sweep runs retrained under 3 training seeds.
for seed in 0 1 2; do
    $STAR noise "$RUNS/sweep/preset/random/seed$seed" --round 1 --train-seeds 3
done

$STAR report "$RUNS/sweep" --out "$OUT/recipe" --title "Small budgets on SST-2: recipe and guard"
$STAR report "$RUNS/trec6-small" --out "$OUT/trec6-small" --title "Small budgets on TREC-6: recipe and guard"
