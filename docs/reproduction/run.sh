#!/usr/bin/env bash
# Regenerates the reproduction study in docs/reproduction/ (issue 3) on 2 CPU cores.
# Runs go to $STUDY_RUNS/<task>/<strategy>/seed<k> (default runs/study); every command resumes
# where it stopped, so the script can be stopped and started again.
# Needs the shared data in ../shared/data (set the presets' task.data_dir for your own copy).
set -euo pipefail
cd "$(dirname "$0")/../.."
STAR=.venv/bin/star
RUNS=${STUDY_RUNS:-runs/study}
MAIN=random,me,pe,me-star,pe-star
ABLATIONS=me+dynamic,me+dynamic+mc,me+dynamic+l2,pe+dynamic,pe+dynamic+mc,pe+dynamic+l2

$STAR compare configs/cpu-sst2.yaml --strategies $MAIN --seeds 0,1,2 --out $RUNS/sst2
$STAR compare configs/cpu-obqa.yaml --strategies $MAIN --seeds 0,1,2 --out $RUNS/obqa
$STAR compare configs/cpu-boolq.yaml --strategies $MAIN --seeds 0,1,2 --out $RUNS/boolq

for task in sst2 boolq; do
  $STAR probe confidence --run $RUNS/$task/me/seed0 --shots 4 \
    --out docs/reproduction/probes/$task-confidence
  $STAR probe entropy $RUNS/$task/me/seed0 --top 200 \
    --out docs/reproduction/probes/$task-entropy
done

# Two seeds for the ablations: a third (~25 min more on 2 cores) did not fit the session.
$STAR compare configs/cpu-sst2.yaml --strategies $ABLATIONS --seeds 0,1 --out $RUNS/sst2

$STAR report $RUNS --out docs/reproduction --title "STAR reproduction study (2 CPU cores)"
