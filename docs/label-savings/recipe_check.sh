#!/usr/bin/env bash
# Does another training recipe take the training seed's noise out of a round? Section 2.10.
# Retrains round 7 (128 labels) of skewed-pool runs under the study's recipe (`star noise` in
# the run folder itself) and under other recipes (a copy of the run folder with train.lr and
# train.epochs changed; its labels are the run's own). Both retrain under the same training
# seeds (`star noise` derives them from the run's seed), so a label set's retrains pair.
# 1. Two runs whose last round collapsed: the study's recipe under 6 training seeds, lr 2e-4
#    for 3 and for 6 epochs under 5 (about 25 minutes on 2 cores).
# 2. All 20 runs of random and me: the study's recipe and lr 2e-4 for 6 epochs, each under 2
#    training seeds (72 minutes measured).
# Needs the study's run folders (run.sh). Records: the run folders' noise.json into the
# study's records (as run.sh's record() copies them), each copy's config.yaml and noise.json
# into recipe-check/.
set -euo pipefail
cd "$(dirname "$0")/../.."
STAR=(.venv/bin/python -m star)  # the star package of this checkout, also from a worktree
STUDY=$(realpath -m "${STUDY_RUNS:-runs/savings}")
POOL=savings-sst2-skewed/balance
CHECK=$(realpath -m "${CHECK_RUNS:-runs/recipe-check}")
DOCS=docs/label-savings

# study RUN SEEDS: round 7 of RUN (below $POOL) retrained under the study's own recipe.
study() {
    "${STAR[@]}" noise "$STUDY/$POOL/$1" --train-seeds "$2"
    mkdir -p "$DOCS/runs/$POOL/$1/rounds/7"
    cp "$STUDY/$POOL/$1/rounds/7/noise.json" "$DOCS/runs/$POOL/$1/rounds/7/"
}

# recipe RUN NAME LR EPOCHS SEEDS: round 7 of RUN retrained in a copy under lr LR, EPOCHS epochs.
recipe() {
    local run=$1 name=$2 lr=$3 epochs=$4 seeds=$5
    local copy
    copy=$CHECK/$(echo "$run" | tr '/+' '-_')-$name
    if [ ! -e "$copy/config.yaml" ]; then
        mkdir -p "$copy"
        cp "$STUDY/$POOL/$run/config.yaml" "$STUDY/$POOL/$run/labels.jsonl" \
            "$STUDY/$POOL/$run/results.json" "$copy/"
        .venv/bin/python - "$copy/config.yaml" "$lr" "$epochs" <<'EOF'
import sys
from pathlib import Path
import yaml
from star.config import config_text, set_dotted
from star.files import write_text_atomic
path, lr, epochs = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
tree = yaml.safe_load(path.read_text(encoding="utf-8"))  # as saved: no key added or resolved
set_dotted(tree, "train.lr", lr)
set_dotted(tree, "train.epochs", epochs)
write_text_atomic(path, config_text(tree))
EOF
    fi
    mkdir -p "$copy/rounds/7"  # where the run kept round 7's predictions, and noise.json goes
    "${STAR[@]}" noise "$copy" --train-seeds "$seeds"
    mkdir -p "$DOCS/recipe-check/${copy##*/}/rounds/7"
    cp "$copy/config.yaml" "$DOCS/recipe-check/${copy##*/}/"
    cp "$copy/rounds/7/noise.json" "$DOCS/recipe-check/${copy##*/}/rounds/7/"
}

for run in random/seed4 me+balanced/seed8; do
    study "$run" 6
    recipe "$run" lr2e-4 0.0002 3 5
    recipe "$run" lr2e-4-ep6 0.0002 6 5
done

for seed in 0 1 2 3 4 5 6 7 8 9; do
    for strategy in random me; do
        study "$strategy/seed$seed" 2
        recipe "$strategy/seed$seed" lr2e-4-ep6 0.0002 6 2
    done
done
