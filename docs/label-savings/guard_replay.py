"""The prompt guard's check replayed on recorded rounds past its reach (`guard.max_labels`).

The study's guard checks rounds up to 32 labels. On the 2 % pool (README 2.14) adapters kept
past that scored below the prompt on the test set, and this asks whether the guard, had it
reached those rounds, would have handed out the base model there. For each round given, the
run's labels of rounds 0..k are checked as the loop checks them (`Experiment.guard`: the
rarest class's minimum, else the k-fold recipe against the base model, with the round's seeds),
with `guard.max_labels` lifted; the rest of the run's config is its own. The check uses only the
labels; the test-set scores printed beside it are the run's record. One JSON line per round:

    PYTHONPATH=. .venv/bin/python docs/label-savings/guard_replay.py check RUN [ROUND ...]
        [--short-class base|score_the_rest]

(`--short-class`: a round with a class under `guard.min_per_class` labels handed out the base
model unchecked, the study's guard, or checked on the classes with enough; default: the run's.)

It runs the model (about a minute a check at 64-128 labels on 2 cores): never beside another
model process. Under `guard.select_with: trained` and `train.init: fresh` what a round hands
out changes nothing after it (the adapter the round trained picks the next batch, and every
round trains from the initial adapter), so a run with the guard at every round is the recorded
run with each round the replay hands to the base model scored as the prompt. `summary` reads
the replays and the records (no model) and prints, per strategy, the final macro-F1 under the
study's guard and under the guard at every round, each against the prompt, paired by seed:

    PYTHONPATH=. .venv/bin/python docs/label-savings/guard_replay.py summary RECORDS REPLAYS

`rounds` prints README 2.14's per-round tables from the records (no model): for each round of
each run, the rarest class's labels, the model handed out (B: the base model, T: the round's
adapter) and its test macro-F1:

    PYTHONPATH=. .venv/bin/python docs/label-savings/guard_replay.py rounds RECORDS STRATEGY ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from star.active.loop import Experiment
from star.active.prompt_guard import BASE
from star.active.refit import handed_out
from star.active.runfolder import complete_rounds
from star.config import load_config
from star.results.significance import paired
from star.tools.labels import open_run


def check(run: Path, rounds: list[int], short_class: str | None = None) -> None:
    """Print the guard's check of each of `rounds` of `run`, its reach lifted, and its
    `guard.short_class` set where one is given (else the run's own)."""
    folder = open_run(run)
    results = folder.read_results()
    done = complete_rounds(results)
    with folder.lock():  # as `star noise`: a run still going in the folder refuses
        experiment = Experiment(load_config(folder.config_path), folder.root)
        experiment.results = results
        guard = experiment.config.guard.model_copy(update={
            "max_labels": None,
            "short_class": short_class or experiment.config.guard.short_class})
        experiment.config = experiment.config.model_copy(update={"guard": guard})
        for k in rounds or [len(done) - 1]:
            guard_check = experiment.guard(k, experiment.back_to_round(k))
            print(json.dumps({
                "run": str(run), "round": k, "counts": done[k]["label_counts"],
                "short_class": guard.short_class,
                "guard": guard_check.to_dict(), "test_accuracy": done[k]["accuracy"],
                "test_macro_f1": done[k].get("macro_f1"),
                "zero_shot_accuracy": results["baselines"]["zero_shot"]}), flush=True)


def finished_runs(folder: Path) -> dict[int, list[dict]]:
    """Seed -> the complete rounds of each run in `folder`'s seed<N> folders, in seed order."""
    runs = {int(path.parent.name.removeprefix("seed")): complete_rounds(json.loads(path.read_text()))
            for path in folder.glob("seed*/results.json")}
    return dict(sorted(runs.items()))


def gave_base(record: dict) -> bool:
    """Whether the round handed out the base model (the guard's or the fit check's choice)."""
    return handed_out(record.get("guard"), record.get("fit")) == BASE


def guarded_final(rounds: list[dict], chosen: dict[int, str], zero_shot: float) -> float:
    """The last round's macro-F1 had the guard checked every round: the prompt's where the
    round handed out its adapter and the replay chose the base model."""
    last = rounds[-1]
    if gave_base(last):
        return last["macro_f1"]
    if last["round"] not in chosen:
        raise SystemExit(f"round {last['round']} has no replay: run `check` on it first")
    return zero_shot if chosen[last["round"]] == BASE else last["macro_f1"]


def summary(records: Path, replays: Path) -> None:
    """Per strategy: final macro-F1 under the study's guard and the guard at every round. The
    prompt's score is that of a round that handed out the base model (one test set a run)."""
    chosen: dict[tuple[str, str], dict[int, str]] = {}
    for line in replays.read_text().splitlines():
        row = json.loads(line)
        run = Path(row["run"])
        chosen.setdefault((run.parent.name, run.name), {})[row["round"]] = row["guard"]["chosen"]
    replayed = {name for name, _ in chosen}  # the strategies whose runs were replayed
    for strategy in sorted(p for p in records.iterdir() if p.is_dir() and p.name in replayed):
        study, guarded, prompt = {}, {}, {}
        for seed, rounds in finished_runs(strategy).items():
            zero_shot = next(r["macro_f1"] for r in rounds if gave_base(r))
            study[seed], prompt[seed] = rounds[-1]["macro_f1"], zero_shot
            guarded[seed] = guarded_final(
                rounds, chosen.get((strategy.name, f"seed{seed}"), {}), zero_shot)
        for name, values in (("study's guard", study), ("guard every round", guarded)):
            diff = paired(values, prompt)
            if diff is None:
                continue
            interval = "" if diff.low is None else \
                f" ({100 * diff.low:+.2f} to {100 * diff.high:+.2f}, p {diff.p_value:.3f})"
            print(f"{strategy.name}, {name}: {len(diff.seeds)} seeds, final macro-F1 "
                  f"{100 * sum(values.values()) / len(values):.2f}, − prompt "
                  f"{100 * diff.mean:+.2f}{interval}")


def rounds_table(records: Path, strategies: list[str]) -> None:
    """Print a Markdown table, one row a run: per round the rarest class's labels (fewest over
    all the runs' last rounds), B or T for the model handed out, and its test macro-F1."""
    done = {(name, seed): rounds for name in strategies
            for seed, rounds in finished_runs(records / name).items()}
    if not done:
        raise SystemExit(f"no finished run of {', '.join(strategies)} under {records}")
    totals: dict[str, int] = {}
    for rounds in done.values():
        for label, count in rounds[-1]["label_counts"].items():
            totals[label] = totals.get(label, 0) + count
    rare = min(totals, key=totals.__getitem__)
    sizes = [sum(r["label_counts"].values()) for r in next(iter(done.values()))]
    print("| run | " + " | ".join(map(str, sizes)) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    for (name, seed), rounds in done.items():
        cells = [f"{r['label_counts'].get(rare, 0)} {'B' if gave_base(r) else 'T'} "
                 f"{100 * r['macro_f1']:.1f}" for r in rounds]
        print(f"| {name} {seed} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("check", help="replay the guard on rounds of a run (runs the model)")
    one.add_argument("run", type=Path, help="a finished run folder")
    one.add_argument("rounds", type=int, nargs="*", help="rounds to check (default: the last)")
    one.add_argument("--short-class", choices=["base", "score_the_rest"],
                     help="guard.short_class for the replay (default: the run's own)")
    many = commands.add_parser("summary", help="the variant's finals from the replays")
    many.add_argument("records", type=Path,
                      help="a setting's finished runs, e.g. docs/label-savings/runs/savings-sst2-rare")
    many.add_argument("replays", type=Path, help="the JSON lines `check` printed")
    table = commands.add_parser("rounds", help="README 2.14's per-round table from the records")
    table.add_argument("records", type=Path, help="a setting's finished runs")
    table.add_argument("strategies", nargs="+", help="its strategies' folders, in the table's order")
    args = parser.parse_args(argv)
    if args.command == "check":
        check(args.run, args.rounds, args.short_class)
    elif args.command == "summary":
        summary(args.records, args.replays)
    else:
        rounds_table(args.records, args.strategies)


if __name__ == "__main__":
    main()
