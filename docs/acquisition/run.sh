#!/usr/bin/env bash
# Regenerates the acquisition-function comparison in docs/acquisition/ (issue 13) on 2 CPU cores:
# SST-2 (configs/cpu-sst2.yaml), seeds 0, 1, 2, random against me, margin, bald and me with
# k-center and BADGE batches (about 2 hours), then the training-setting check at 16 and 32 labels.
# Runs go to $STUDY_RUNS (default runs/study13); every command resumes where it stopped.
# Needs the shared data in ../shared/data (set task.data_dir in the preset for your own copy).
set -euo pipefail
cd "$(dirname "$0")/../.."
STAR=.venv/bin/star
RUNS=${STUDY_RUNS:-runs/study13}

$STAR compare configs/cpu-sst2.yaml --strategies random,me,margin,bald,me+kcenter,me+badge \
  --seeds 0,1,2 --out $RUNS
$STAR report $RUNS --out docs/acquisition --title "Acquisition functions on SST-2 (2 CPU cores)"

# Tiny budgets: the preset's training (lr 5e-4, 3 epochs) against gentler settings, random
# selection, 16 and 32 labels (the preset's numbers at those points come from the runs above).
for setting in "lr=1e-4:epochs=3" "lr=5e-4:epochs=1"; do
  lr=${setting%%:*}; epochs=${setting##*:}
  $STAR compare configs/cpu-sst2.yaml --strategies random --seeds 0,1,2 \
    --set loop.budget=32 --set train.$lr --set train.$epochs \
    --out $RUNS-tiny/${lr#lr=}-${epochs#epochs=}
done
