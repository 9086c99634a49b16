#!/usr/bin/env bash
# Does another training recipe take the training seed's noise out of a round? Section 2.10.
# Retrains round 7 (128 labels) of two skewed-pool runs whose last round collapsed, under the
# study's recipe (`star noise` in the run folder itself, 6 training seeds) and under two other
# recipes (a copy of the run folder with train.lr and train.epochs changed, 5 seeds each).
# Needs the study's run folders (run.sh); about 25 minutes on 2 cores. Records land in
# recipe-check/ (each copy's config.yaml and noise.json; its labels are the run's own).
set -euo pipefail
cd "$(dirname "$0")/../.."
STAR=(.venv/bin/python -m star)  # the star package of this checkout, also from a worktree
RUNS=$(realpath -m "${STUDY_RUNS:-runs/savings}")/savings-sst2-skewed/balance
CHECK=$(realpath -m "${CHECK_RUNS:-runs/recipe-check}")
DOCS=docs/label-savings/recipe-check
for run in random/seed4 me+balanced/seed8; do
    "${STAR[@]}" noise "$RUNS/$run" --train-seeds 6
    for recipe in "lr2e-4 0.0002 3" "lr2e-4-ep6 0.0002 6"; do
        read -r name lr epochs <<< "$recipe"
        copy=$CHECK/$(echo "$run" | tr '/+' '-_')-$name
        if [ ! -e "$copy/config.yaml" ]; then
            mkdir -p "$copy"
            cp "$RUNS/$run/config.yaml" "$RUNS/$run/labels.jsonl" "$RUNS/$run/results.json" "$copy/"
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
        "${STAR[@]}" noise "$copy" --train-seeds 5
        mkdir -p "$DOCS/${copy##*/}/rounds/7"
        cp "$copy/config.yaml" "$DOCS/${copy##*/}/"
        cp "$copy/rounds/7/noise.json" "$DOCS/${copy##*/}/rounds/7/"
    done
done
