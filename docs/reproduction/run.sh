#!/usr/bin/env bash
# Regenerates the reproduction study in docs/reproduction/ (issues 3 and 15) on 2 CPU cores.
# Runs go to $STUDY_RUNS/<task>/<strategy>/seed<k> (default runs/study15); every command resumes
# where it stopped, so the script can be stopped and started again (one process at a time).
# Needs the shared data in ../shared/data (set the presets' task.data_dir for your own copy).
#
# SST-2 is the task the 135M model learns, so it carries the study. Its setup, chosen so that
# STAR's mechanism can act and the pool is not exhausted:
#   warm start 16, 16 labels a round, budget 144: rounds 0-8, so λ(t) = 1 - 0.1(t+1) (the
#   paper's schedule) falls from 0.9 in round 1 to 0.2 in round 8, the last;
#   pool 720 = 5 x the budget: the last round picks 16 of the 592 still unlabeled;
#   test 200, fp32 throughout (the same numbers on a machine with fast bf16).
# The smallest setup meeting both conditions, which leaves the time for five seeds.
set -euo pipefail
cd "$(dirname "$0")/../.."
STAR=(.venv/bin/python -m star)  # the star package of this checkout, also from a worktree
RUNS=${STUDY_RUNS:-runs/study15}
MAIN=random,me,pe,me-star,pe-star
SST2=(configs/cpu-sst2.yaml --set loop.budget=144 --set loop.pool_size=720
      --set model.dtype=float32)

# Seed by seed, so that every finished seed adds a complete set of pairs.
for seed in 0 1 2 3 4; do
  "${STAR[@]}" compare "${SST2[@]}" --strategies $MAIN --seeds $seed --out $RUNS/sst2
done

"${STAR[@]}" report $RUNS --out docs/reproduction --title "STAR reproduction study (2 CPU cores)"
