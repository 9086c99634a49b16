"""Does `train.retries` catch the collapsed rounds of the skewed pool, and leave healthy ones
alone? (section 2.12)

Each ROUND (a run folder and a round number) is trained again as the run trained it (its
seed, labels and initial adapter: the first draw replays the run's round exactly, section
2.11), now with `train.retries` (default 2): the first draw's score on its own labels against
the base model's decides whether the round trains again. Where it does, the kept draw's test
accuracy is measured; where it does not, the round is the run's, whose test accuracy the
records hold; where no draw fits, the round hands out the base model, whose test accuracy is
the run's zero-shot one. Writes the findings to --out (JSON, one entry a round, resumable),
prints one line a round, then the rounds that collapsed (the run's accuracy under 56 %, about
one class's share of the balanced test set) and those that did not. About 20-60 s a round on
2 cores, twice that where it retries; with no ROUND, only the summary of --out.

    .venv/bin/python docs/label-savings/retry_check.py --out docs/label-savings/retry-check.json \\
        runs/savings/savings-sst2-skewed/balance/random/seed4:7 ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from star.active.loop import Experiment
from star.active.prompt_guard import BASE, TUNED
from star.active.refit import handed_out
from star.active.runfolder import complete_rounds
from star.config import load_config, set_dotted
from star.files import write_text_atomic
from star.tools.labels import open_run


def check_round(run: Path, k: int, retries: int) -> dict:
    """Round k of `run` trained again under `retries`: the fit check and the test accuracy of
    the adapter it keeps (the run's own where the first draw is kept)."""
    folder = open_run(run)
    experiment = Experiment(load_config(folder.config_path), folder.root)
    tree = experiment.config.model_dump()
    set_dotted(tree, "train.retries", retries)
    experiment.config = type(experiment.config).model_validate(tree)
    rounds = complete_rounds(folder.read_results())
    experiment.labeled = [i for entry in rounds[: k + 1] for i in entry["selected_ids"]]
    labels = {i: answer.value for i, answer in folder.journal.in_force(experiment.labeled).items()}
    _, check = experiment.train(k, labels)
    assert check is not None
    accuracy = (rounds[k]["accuracy"] if not check.retried else
                float(np.mean([p.correct for p in experiment.predict(experiment.test)])))
    return {"run": str(run), "round": k, "labels": len(experiment.labeled),
            "run_accuracy": rounds[k]["accuracy"], "kept_accuracy": accuracy,
            "zero_shot": folder.read_results()["baselines"]["zero_shot"],
            "guard": rounds[k]["guard"], **check.to_dict()}


def handed_accuracy(entry: dict) -> float:
    """The test accuracy of what the round hands out under retries: the kept draw's, or the
    base model's (zero-shot) where no draw fits its labels or the run's prompt guard chose it."""
    tuned = handed_out(entry["guard"], entry) == TUNED
    return entry["kept_accuracy"] if tuned else entry["zero_shot"]


def summary(entries: list[dict]) -> str:
    lines = []
    for name, group in (("collapsed (run < 56 %)", [e for e in entries if e["run_accuracy"] < .56]),
                        ("partial (56-62 %)", [e for e in entries
                                               if .56 <= e["run_accuracy"] < .62]),
                        ("healthy (>= 62 %)", [e for e in entries if e["run_accuracy"] >= .62])):
        if not group:
            continue
        retried = sum(len(e["draws"]) > 1 for e in group)
        base = sum(handed_out(None, e) == BASE for e in group)  # for want of a fitting draw
        before = np.mean([e["run_accuracy"] for e in group])
        after = np.mean([handed_accuracy(e) for e in group])
        lines.append(f"{name}: {len(group)} rounds, {retried} trained again, {base} hand out the "
                     f"base model; mean test accuracy {100 * before:.2f} -> {100 * after:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rounds", nargs="*", help="RUN:ROUND")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--retries", type=int, default=2)
    args = parser.parse_args()
    done = json.loads(args.out.read_text()) if args.out.exists() else []
    for spec in args.rounds:
        run, k = spec.rsplit(":", 1)
        if any(entry["run"] == run and entry["round"] == int(k) for entry in done):
            continue
        entry = check_round(Path(run), int(k), args.retries)
        done.append(entry)
        write_text_atomic(args.out, json.dumps(done, indent=1) + "\n")
        draws = ", ".join(f"{100 * d:.1f}" for d in entry["draws"])
        print(f"{run} round {k} ({entry['labels']} labels): run {100 * entry['run_accuracy']:.2f}"
              f" -> handed out {100 * handed_accuracy(entry):.2f}; fit {draws} against the base "
              f"model's {100 * entry['base']:.1f}", flush=True)
    print(summary(done))


if __name__ == "__main__":
    main()
