"""The README's table "The study so far at a glance", computed from the records alone.

For each setting's records (`runs/<setting>/…`, as `run.sh` copies them), every strategy
against random of the same setup, paired by seed, at the last round (128 labels): the
difference in macro-F1 and in accuracy with its 95 % t-interval and p (`significance.paired`,
as `star report` computes them), and the labels saved on macro-F1 beyond what random's own
bumpy curve is credited, with its 95 % bootstrap interval (`summary.savings_of`, as the
report's "beyond random's own" column). The verdict reads the two intervals: below or above
random where an interval excludes 0, "not shown" where both include it; "goal met" where the
labels saved beyond random's own average ≥ 30 % with the interval above 0 (issue 34's goal).
A block still running shows its seeds so far. Under the table, the default strategy that
docs/plan.md's rule (set before auto's numbers) picks from these rows, or what it still waits for.

    .venv/bin/python docs/label-savings/at_a_glance.py [--records docs/label-savings/runs]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

from star.active.runfolder import complete_rounds
from star.results.significance import Paired, paired
from star.results.summary import collect_runs, savings_of

SETTINGS = {  # name in the table -> (records folder, config keys compared as strategies)
    "skewed SST-2, one draw": ("savings-sst2-skewed/balance", []),
    "skewed SST-2, retries": ("savings-sst2-skewed/retry", ["uncertainty.schedule"]),
    "rare SST-2": ("savings-sst2-rare", []),
    "TREC-6": ("savings-trec6/balance", []),
    "balanced SST-2": ("savings-sst2", ["train.balance"]),
}
GOAL = 0.30
"""Issue 34's goal: random's final macro-F1 reached with 30 % fewer labels."""
RULE_SETTINGS = ("skewed SST-2, retries", "rare SST-2", "TREC-6", "balanced SST-2")
"""The settings docs/plan.md's default-strategy rule reads (the one-draw skewed block gave way
to retries)."""
RULE_SEEDS = 10
"""Paired seeds the rule waits for (auto's, everywhere) and that a strategy shown above random
needs to become the default (the evidence a default rests on)."""


class Row(NamedTuple):
    """One strategy against random of the same setup, at the last round."""

    strategy: str
    f1: Paired | None
    accuracy: Paired | None
    saved: dict | None
    """`savings_of`'s entry for the strategy (labels saved on macro-F1)."""
    own: float
    """random's own labels saved (its bumpy curve's credit), a fraction."""


def _finals(runs: list[dict], metric: str) -> dict[str, dict[int, float]]:
    """strategy -> seed -> the last round's `metric`."""
    found: dict[str, dict[int, float]] = {}
    for run in runs:
        found.setdefault(run["strategy"], {})[run["seed"]] = complete_rounds(run)[-1][metric]
    return found


def _signed(value: float, digits: int) -> str:
    """Points with their sign, the minus as the README prints it (U+2212)."""
    return f"{100 * value:+.{digits}f}".replace("-", "\N{MINUS SIGN}")


def _difference(result: Paired | None) -> str:
    if result is None or result.low is None:
        return "–"
    p = "< 0.001" if result.p_value < 0.001 else f"{result.p_value:.3f}"
    return f"{_signed(result.mean, 2)} ({_signed(result.low, 2)} to {_signed(result.high, 2)}, {p})"


def _side(result: Paired | None) -> int:
    """-1 below random, +1 above, 0 not shown (or no interval)."""
    if result is None or result.low is None:
        return 0
    return -1 if result.high < 0 else 1 if result.low > 0 else 0


def verdict(f1: Paired | None, accuracy: Paired | None, saved: dict | None) -> str:
    """What the intervals say, macro-F1 (the issue's metric) first; the goal is met only where
    every seed reached random's final value (else the saving is an upper bound). `saved` is a
    `savings_of` entry."""
    words = {-1: "below random", 1: "above random", 0: "level"}
    f1_side, accuracy_side = _side(f1), _side(accuracy)
    if f1_side == accuracy_side:
        said = "not shown" if f1_side == 0 else f"**{words[f1_side]}**"
    else:
        said = f"{words[f1_side]} on macro-F1, {words[accuracy_side]} on accuracy"
    beyond = saved and saved["beyond_random"]
    if beyond and not saved["labels_saved"]["not_reached"] and beyond["mean"] >= GOAL \
            and beyond["low"] is not None and beyond["low"] > 0:
        said += "; **goal met**"
    return said


def _saved(entry: dict | None) -> str:
    beyond = entry and entry["beyond_random"]
    if not beyond or beyond["mean"] is None:
        return "–"
    bound = "≤ " if entry["labels_saved"]["not_reached"] else ""
    interval = ("" if beyond["low"] is None
                else f" ({_signed(beyond['low'], 1)} to {_signed(beyond['high'], 1)})")
    return f"{bound}{_signed(beyond['mean'], 1)}{interval}"


def comparisons(folder: Path, switches: list[str]) -> list[Row]:
    """Each strategy of one setting's records against random, per setup."""
    runs = collect_runs(folder, switches)
    found = []
    for setup in sorted({run["setup"] for run in runs}):
        mine = [run for run in runs if run["setup"] == setup]
        f1, accuracy = _finals(mine, "macro_f1"), _finals(mine, "accuracy")
        savings = savings_of(mine, "macro_f1")
        if "random" not in f1:
            continue
        own = savings[(setup, "random")]["labels_saved"]["mean"]
        found += [Row(strategy, paired(f1[strategy], f1["random"]),
                      paired(accuracy[strategy], accuracy["random"]),
                      savings.get((setup, strategy)), own)
                  for strategy in sorted(set(f1) - {"random"})]
    return found


def _seeds(result: Paired | None) -> int:
    return len(result.seeds) if result else 0


def row_line(name: str, row: Row) -> str:
    """The table row of `row` in setting `name`."""
    return (f"| {name} | {row.strategy} | {_seeds(row.f1)} | {_difference(row.f1)} | "
            f"{_difference(row.accuracy)} | {_saved(row.saved)} | {100 * row.own:.1f} | "
            f"{verdict(row.f1, row.accuracy, row.saved)} |")


def setting_rows(name: str, folder: Path, switches: list[str]) -> list[str]:
    """The table rows of one setting: each strategy against random, per setup."""
    return [row_line(name, row) for row in comparisons(folder, switches)]


def default_strategy(settings: dict[str, list[Row]]) -> str:
    """docs/plan.md's default-strategy rule, applied to the rows of `RULE_SETTINGS`, on final
    macro-F1 against random (95 % t-interval), in its order:
    1. a strategy shown above random in a setting (at `RULE_SEEDS` seeds) and below it in none
       becomes the default;
    2. else, auto shown below random in any setting, on macro-F1 or accuracy: `random`;
    3. else, auto's mean below random's in at least three of the four settings: `random` (as
       good, at less than half the cost);
    4. else `auto` stays.
    Until auto has `RULE_SEEDS` paired seeds in every setting, says what it waits for."""
    auto = {name: next((row for row in settings.get(name, []) if row.strategy == "auto"), None)
            for name in RULE_SETTINGS}
    waiting = [name for name, row in auto.items() if row is None or _seeds(row.f1) < RULE_SEEDS]
    if waiting:
        return (f"pending: auto has {RULE_SEEDS} paired seeds in {len(RULE_SETTINGS) - len(waiting)} "
                f"of the rule's {len(RULE_SETTINGS)} settings (not yet: {', '.join(waiting)})")
    rows = [row for name in RULE_SETTINGS for row in settings.get(name, [])]
    above = {row.strategy for row in rows if _side(row.f1) == 1 and _seeds(row.f1) >= RULE_SEEDS}
    below = {row.strategy for row in rows if _side(row.f1) == -1}
    if winners := sorted(above - below):
        return (f"rule 1: {' or '.join(winners)} (shown above random in a setting, "
                "below it in none)")
    if shown := [name for name, row in auto.items()
                 if -1 in (_side(row.f1), _side(row.accuracy))]:
        return f"rule 2: random (auto shown below random in {', '.join(shown)})"
    behind = [name for name, row in auto.items() if row.f1.mean < 0]
    if len(behind) >= 3:
        return (f"rule 3: random (auto shown below random nowhere, its mean below random's in "
                f"{len(behind)} of {len(RULE_SETTINGS)} settings)")
    return (f"rule 4: auto (shown below random nowhere, its mean below random's in "
            f"{len(behind)} of {len(RULE_SETTINGS)} settings)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, default=Path(__file__).parent / "runs",
                        help="the study's records (default: runs/ beside this script)")
    records = parser.parse_args(argv).records
    print("| setting | strategy | seeds | Δ final macro-F1 (95 % CI, p) | Δ final accuracy "
          "(95 % CI, p) | labels saved beyond random's own, % | random's own, % | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    settings = {name: comparisons(records / folder, switches)
                for name, (folder, switches) in SETTINGS.items() if (records / folder).is_dir()}
    for name, rows in settings.items():
        for row in rows:
            print(row_line(name, row))
    print(f"\nThe default strategy by docs/plan.md's rule: {default_strategy(settings)}.")


if __name__ == "__main__":
    main()
