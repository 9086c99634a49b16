"""The table of section 2.11: part 2 of recipe_check.sh, read back from its records.

Each of the 20 label sets (round 7, 128 labels, of skewed random's and me's ten runs) is
retrained under the study's recipe (lr 5e-4, 3 epochs) and under lr 2e-4 for 6 epochs, with
the same two training seeds. Printed, per recipe: the mean accuracy, the training seed's
spread within a label set (pooled SD), the retrains that collapse (below 65 %), and what ten
paired seeds of me against random show: on the mean of the draws, and what they can see when
each run is one such draw.

    .venv/bin/python docs/label-savings/recipe_check_summary.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from star.results.savings import pooled_sd
from star.results.significance import detectable_difference, paired

HERE = Path(__file__).parent
POOL = HERE / "runs" / "savings-sst2-skewed" / "balance"
RECIPES = {  # name -> folder of seed's round-7 noise record, for strategy
    "lr 5e-4, 3 epochs (the study's)": lambda strategy, seed: POOL / strategy / f"seed{seed}",
    "lr 2e-4, 6 epochs": lambda strategy, seed: (HERE / "recipe-check"
                                                  / f"{strategy}-seed{seed}-lr2e-4-ep6"),
}
STRATEGIES = ("random", "me")
SEEDS = range(10)
DRAWS = 2  # retrains a label set has under each recipe (a record may hold more: the first two)
COLLAPSE = 65.0


def retrains(folder: Path) -> list[float] | None:
    """The first `DRAWS` retrained accuracies (in %) of round 7, or None before they exist."""
    path = folder / "rounds" / "7" / "noise.json"
    if not path.exists():
        return None
    values = [100 * r["accuracy"] for r in json.loads(path.read_text())["retrains"]][:DRAWS]
    return values if len(values) == DRAWS else None


def main() -> None:
    sets = {(recipe, strategy, seed): retrains(where(strategy, seed))
            for recipe, where in RECIPES.items() for strategy in STRATEGIES for seed in SEEDS}
    done = [seed for seed in SEEDS if all(sets[(r, s, seed)] for r in RECIPES for s in STRATEGIES)]
    print(f"label-set seeds with every record: {done}\n")
    print("| recipe | strategy | mean | training-seed SD | between-set SD | below 65 % | lowest |")
    print("|---|---|---|---|---|---|---|")
    for recipe in RECIPES:
        for strategy in STRATEGIES:
            groups = [sets[(recipe, strategy, seed)] for seed in done]
            flat = [v for g in groups for v in g]
            print(f"| {recipe} | {strategy} | {statistics.mean(flat):.2f} | "
                  f"{pooled_sd(groups):.2f} | "
                  f"{statistics.stdev([statistics.mean(g) for g in groups]):.2f} | "
                  f"{sum(v < COLLAPSE for v in flat)} of {len(flat)} | {min(flat):.2f} |")
    means = {key: statistics.mean(values) for key, values in sets.items() if values}

    def interval_row(label: str, first: tuple[str, str], second: tuple[str, str]) -> None:
        """(recipe, strategy) − (recipe, strategy), each label set's mean of its draws."""
        diff = paired(*({seed: means[(*side, seed)] for seed in done} for side in (first, second)))
        print(f"| {label} | {diff.mean:+.2f} | {diff.low:+.2f} to {diff.high:+.2f} | "
              f"{diff.p_value:.3f} |")

    print("\n| comparison (paired by label set) | mean | 95 % CI | p |")
    print("|---|---|---|---|")
    first, second = RECIPES
    for strategy in STRATEGIES:
        interval_row(f"{strategy}: {second} − {first}", (second, strategy), (first, strategy))
    print("\n| me − random, the mean of the draws (paired by seed) | mean | 95 % CI | p |")
    print("|---|---|---|---|")
    for recipe in RECIPES:
        interval_row(recipe, (recipe, "me"), (recipe, "random"))
    print("\n| me − random, one draw a run (paired by seed) | mean | SD of the differences | "
          "10 seeds detect (80 % power) |")
    print("|---|---|---|---|")
    for recipe in RECIPES:
        for draw in range(DRAWS):
            rnd, me = ({seed: sets[(recipe, s, seed)][draw] for seed in done} for s in STRATEGIES)
            diff = paired(me, rnd)
            sd = statistics.stdev(diff.differences)
            print(f"| {recipe}, training seed {draw + 1} | {diff.mean:+.2f} | {sd:.2f} | "
                  f"{detectable_difference(sd, 10):.1f} |")


if __name__ == "__main__":
    main()
