"""What makes a round of the skewed pool collapse (section 2.11): its labels, its initial
adapter, or its training draws (data order and dropout masks)?

Round K of a run is trained again in the run's own config, from its labels:
  replay     the run's own draws (its seed and initial adapter): the run's accuracy again?
  seeds      the run's initial adapter under other training seeds (`star noise`'s first ones)
  inits      the run's training seed from other initial adapters
  fit        after the replay, the adapter's answers on its own training labels, per class
             (--training-seed S: the replay and fit under training seed S instead of the run's)
and, with --weighted-mean, the class-balanced loss divided by the batch's summed weights
(PyTorch's weighted mean) instead of its response tokens (STAR's), the run's draws otherwise.
Writes nothing; prints one line a retrain. About 40 s a retrain at 128 labels on 2 cores.

    .venv/bin/python docs/label-savings/collapse_check.py \
        runs/savings/savings-sst2-skewed/balance/random/seed4 --round 7 --draws 3
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import star.model.training as training
from star.active.loop import Experiment
from star.active.runfolder import complete_rounds
from star.config import load_config
from star.seeding import derived_seed
from star.tools.labels import open_run
from star.tools.noise import initial_adapter, retrain

tokens_mean = training.answer_loss


def weighted_mean(loaded, items, *, tokens=None, weights=None):
    """The batch's loss divided by the summed weights of its response tokens (one process)."""
    if weights is None:
        return tokens_mean(loaded, items, tokens=tokens, weights=weights)
    summed = sum(w * len(item.response) for item, w in zip(items, weights, strict=True))
    return tokens_mean(loaded, items, tokens=summed, weights=weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--round", type=int, default=7)
    parser.add_argument("--draws", type=int, default=3, help="other seeds and other inits")
    parser.add_argument("--weighted-mean", action="store_true")
    parser.add_argument("--training-seed", type=int, help="replay under this seed instead")
    args = parser.parse_args()
    if args.weighted_mean:
        training.answer_loss = weighted_mean  # ShareLoss looks it up at each step
    folder = open_run(args.run)
    config = load_config(folder.config_path)
    experiment = Experiment(config, folder.root)
    experiment.results = folder.read_results()
    k, seed, run_init = args.round, config.seed, experiment.initial_adapter
    name = f"{args.run.parent.name}/{args.run.name} round {k}"
    print(f"{name}: the run's accuracy "
          f"{100 * complete_rounds(experiment.results)[k]['accuracy']:.2f}", flush=True)

    replay = retrain(experiment, k, run_init,
                     seed if args.training_seed is None else args.training_seed)["accuracy"]
    labels = {i: answer.value
              for i, answer in folder.journal.in_force(experiment.labeled).items()}
    examples = experiment.labeled_examples(labels)
    right = Counter((e.gold, bool(p.correct))
                    for e, p in zip(examples, experiment.predict(examples), strict=True))
    print(f"{name}: replay {100 * replay:.2f}; on its {len(examples)} training labels "
          + ", ".join(f"class {c}: {right[(c, True)]} of {right[(c, True)] + right[(c, False)]}"
                      " right" for c in sorted({g for g, _ in right})), flush=True)
    if args.weighted_mean or args.training_seed is not None:
        return
    for part in range(args.draws):
        other = derived_seed(seed, k, "noise_train", part=part)
        seeds = retrain(experiment, k, run_init, other)["accuracy"]
        inits = retrain(experiment, k, initial_adapter(
            experiment.loaded, derived_seed(other, 0, "lora_init")), seed)["accuracy"]
        print(f"{name}, draw {part + 1}: the run's init, another training seed "
              f"{100 * seeds:.2f}; the run's training seed, another init {100 * inits:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
