"""The prompt guard's check replayed on recorded rounds past its reach (`guard.max_labels`).

The study's guard checks rounds up to 32 labels. On the 2 % pool (README 2.14) adapters kept
past that scored below the prompt on the test set, and this asks whether the guard, had it
reached those rounds, would have handed out the base model there. For each round given, the
run's labels of rounds 0..k are checked as the loop checks them (`Experiment.guard`: the
rarest class's minimum, else the k-fold recipe against the base model, with the round's seeds),
with `guard.max_labels` lifted; the rest of the run's config is its own. The check uses only the
labels; the test-set scores printed beside it are the run's record. One JSON line per round:

    PYTHONPATH=. .venv/bin/python docs/label-savings/guard_replay.py RUN ROUND [ROUND ...]

It runs the model (about a minute a check at 64-128 labels on 2 cores): never beside another
model process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from star.active.loop import Experiment
from star.active.runfolder import complete_rounds
from star.config import load_config
from star.tools.labels import open_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished run folder")
    parser.add_argument("rounds", type=int, nargs="+", help="rounds to check")
    args = parser.parse_args(argv)
    folder = open_run(args.run)
    results = folder.read_results()
    done = complete_rounds(results)
    experiment = Experiment(load_config(folder.config_path), folder.root)
    experiment.results = results
    guard = experiment.config.guard.model_copy(update={"max_labels": None})
    experiment.config = experiment.config.model_copy(update={"guard": guard})
    for k in args.rounds:
        experiment.labeled = [i for entry in done[: k + 1] for i in entry["selected_ids"]]
        labels = {i: answer.value for i, answer
                  in folder.journal.in_force(experiment.labeled).items()}
        check = experiment.guard(k, labels)
        print(json.dumps({"run": str(args.run), "round": k, "counts": done[k]["label_counts"],
                          "guard": check.to_dict(), "test_accuracy": done[k]["accuracy"],
                          "test_macro_f1": done[k].get("macro_f1"),
                          "zero_shot_accuracy": results["baselines"]["zero_shot"]}), flush=True)


if __name__ == "__main__":
    main()
