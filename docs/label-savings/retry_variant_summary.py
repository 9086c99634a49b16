"""The retry variant of section 2.12, read back from the records: skewed random and me under
`train.retries: 2` (`retry`) against the same seeds' one-draw runs (`balance`).

Printed: per recipe, me − random at the last round (macro-F1 and accuracy, paired by seed:
mean, 95 % t-interval, p, the SD of the differences), each strategy's retries − one draw, how
many rounds trained again or handed out the base model, and the rule `docs/plan.md` set before
the numbers: the retries' paired SD of me − random's final macro-F1 at most half the one-draw
runs'. Seeds are those both sides of a comparison have, so it runs on a block still going.

    .venv/bin/python docs/label-savings/retry_variant_summary.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from star.active.prompt_guard import BASE
from star.active.refit import handed_out
from star.results.significance import paired

POOL = Path(__file__).parent / "runs" / "savings-sst2-skewed"
RECIPES = {"one draw": POOL / "balance", "retries 2": POOL / "retry"}
METRICS = {"macro_f1": "final macro-F1", "accuracy": "final accuracy"}


def last_rounds(folder: Path) -> dict[int, dict]:
    """seed -> the last round of each finished run (8 rounds) below `folder`."""
    found = {}
    for path in sorted(folder.glob("seed*/results.json")):
        rounds = json.loads(path.read_text())["rounds"]
        if len(rounds) == 8:
            found[int(path.parent.name.removeprefix("seed"))] = rounds
    return found


def row(name: str, first: dict[int, float], second: dict[int, float]) -> tuple[str, float | None]:
    """One table row of first − second in points, and the SD of the differences."""
    result = paired(first, second)
    if result is None or result.low is None:
        return f"| {name} | – | – | – | – | {0 if result is None else 1} |", None
    sd = statistics.stdev(result.differences) * 100
    return (f"| {name} | {100 * result.mean:+.2f} | {100 * result.low:+.2f} to "
            f"{100 * result.high:+.2f} | {result.p_value:.3f} | {sd:.2f} | {len(result.seeds)} |",
            sd)


def main() -> None:
    runs = {(recipe, strategy): last_rounds(folder / strategy)
            for recipe, folder in RECIPES.items() for strategy in ("random", "me")}
    print("| paired by seed, points | mean | 95 % CI | p | SD | seeds |")
    print("|---|---|---|---|---|---|")
    spread = {}
    for key, shown in METRICS.items():
        final = {run: {seed: rounds[-1][key] for seed, rounds in found.items()}
                 for run, found in runs.items()}
        for recipe in RECIPES:
            line, sd = row(f"me − random, {shown}, {recipe}", final[(recipe, "me")],
                           final[(recipe, "random")])
            print(line)
            spread[(key, recipe)] = sd
        for strategy in ("random", "me"):
            print(row(f"{strategy}: retries − one draw, {shown}",
                      final[("retries 2", strategy)], final[("one draw", strategy)])[0])
    for strategy in ("random", "me"):
        found = runs[("retries 2", strategy)]
        rounds = [entry for seed_rounds in found.values() for entry in seed_rounds]
        retried = sum(len((entry.get("fit") or {}).get("draws", [])) > 1 for entry in rounds)
        base = sum(entry.get("fit") is not None
                   and handed_out(None, entry["fit"]) == BASE for entry in rounds)
        print(f"{strategy} under retries: {len(found)} runs, {len(rounds)} rounds, {retried} "
              f"trained again, {base} handed out the base model for want of a fitting draw")
    one, retries = spread[("macro_f1", "one draw")], spread[("macro_f1", "retries 2")]
    if one is not None and retries is not None:
        seeds = min(len(runs[("retries 2", strategy)]) for strategy in ("random", "me"))
        verdict = "holds" if retries <= one / 2 else "fails"
        print(f"rule (retries' SD at most half the one-draw runs'): {retries:.2f} against "
              f"{one:.2f}: {verdict}" + ("" if seeds >= 10 else
                                         f" so far ({seeds} of 10 seeds: no verdict yet)"))


if __name__ == "__main__":
    main()
