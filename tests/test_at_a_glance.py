"""The label-savings README's at-a-glance table (docs/label-savings/at_a_glance.py): its
verdict reads the two intervals and the goal as the README says, on hand-made comparisons."""

import importlib.util
from pathlib import Path

import pytest

from star.results.significance import Paired

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "label-savings" / "at_a_glance.py"
_spec = importlib.util.spec_from_file_location("at_a_glance", SCRIPT)
at_a_glance = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(at_a_glance)


def diff(low: float, high: float, seeds: int = 10) -> Paired:
    return Paired(seeds=list(range(seeds)), differences=[], mean=(low + high) / 2, low=low,
                  high=high, p_value=0.5, seeds_for_power=None)


@pytest.mark.parametrize(("f1", "accuracy", "said"), [
    ((-0.05, 0.03), (-0.04, 0.03), "not shown"),
    ((-0.10, -0.01), (-0.08, -0.02), "**below random**"),
    ((0.01, 0.10), (0.001, 0.05), "**above random**"),
    ((-0.08, -0.003), (-0.05, 0.05), "below random on macro-F1, level on accuracy"),
    ((-0.02, 0.05), (0.01, 0.04), "level on macro-F1, above random on accuracy"),
    ((-0.10, 0.0), (-0.10, -0.0001), "level on macro-F1, below random on accuracy"),  # 0 is level
])
def test_the_verdict_reads_each_interval_against_zero(f1, accuracy, said):
    assert at_a_glance.verdict(diff(*f1), diff(*accuracy), None) == said


@pytest.mark.parametrize(("mean", "low", "not_reached", "met"), [
    (0.30, 0.01, 0, True),    # 30 % fewer labels, interval above 0: the goal
    (0.2999, 0.01, 0, False),  # under 30 %
    (0.40, 0.0, 0, False),    # the interval reaches 0
    (0.40, None, 0, False),   # one seed: no interval
    (0.40, 0.1, 1, False),    # a seed never reached random's final value: an upper bound
])
def test_the_goal_needs_thirty_percent_and_an_interval_above_zero(mean, low, not_reached, met):
    saved = {"beyond_random": {"mean": mean, "low": low, "high": None if low is None else 0.6},
             "labels_saved": {"not_reached": not_reached}}
    said = at_a_glance.verdict(diff(0.01, 0.1), diff(0.01, 0.1), saved)
    assert said.endswith("; **goal met**") is met


def test_the_readme_shows_the_finished_trec6_block_as_the_records_give_it():
    """TREC-6's seven strategies finished: their rows, computed from the committed records,
    stand in the study's README word for word (a figure typed by hand would not)."""
    records = SCRIPT.parent / "runs" / "savings-trec6" / "balance"
    if not records.is_dir():
        pytest.skip("the study's records are not in this checkout")
    rows = at_a_glance.setting_rows("TREC-6", records, [])
    readme = (SCRIPT.parent / "README.md").read_text()
    assert len(rows) == 6
    for row in rows:
        assert row in readme


def test_no_interval_is_not_shown():
    one_seed = Paired(seeds=[0], differences=[0.1], mean=0.1, low=None, high=None, p_value=None,
                      seeds_for_power=None)
    assert at_a_glance.verdict(one_seed, None, None) == "not shown"
    assert at_a_glance._difference(one_seed) == "–"
    assert at_a_glance._difference(diff(-0.0533, 0.0379)) == "−0.77 (−5.33 to +3.79, 0.500)"


def row(strategy: str, f1: tuple[float, float], accuracy: tuple[float, float] = (-0.01, 0.01),
        seeds: int = 10) -> "at_a_glance.Row":
    return at_a_glance.Row(strategy, diff(*f1, seeds), diff(*accuracy, seeds), None, 0.1)


def settings(*auto_f1: tuple[float, float], **extra: list) -> dict:
    """The rule's four settings, auto's final macro-F1 interval in each, in RULE_SETTINGS order;
    `extra` adds rows by setting index (`s0=[...]`)."""
    return {name: [row("auto", f1), *extra.get(f"s{i}", [])]
            for i, (name, f1) in enumerate(zip(at_a_glance.RULE_SETTINGS, auto_f1, strict=True))}


def default_of(found: dict) -> str:
    return at_a_glance.default_strategy(found)


LEVEL, BEHIND, AHEAD = (-0.05, 0.03), (-0.06, 0.02), (-0.02, 0.06)  # means −1, −2, +2 points


def test_the_rule_waits_for_auto_at_ten_seeds_everywhere():
    four = settings(LEVEL, LEVEL, LEVEL, LEVEL)
    assert default_of(four).startswith("rule ")
    four["TREC-6"] = [row("auto", LEVEL, seeds=9)]
    assert default_of(four) == ("pending: auto has 10 paired seeds in 3 of the rule's 4 settings "
                                "(not yet: TREC-6)")
    del four["balanced SST-2"]
    assert "in 2 of" in default_of(four)


def test_rule_one_takes_a_strategy_shown_above_random_somewhere_and_below_nowhere():
    shown = row("me+balanced", (0.01, 0.09))
    assert default_of(settings(LEVEL, LEVEL, LEVEL, LEVEL, s1=[shown])) == (
        "rule 1: me+balanced (shown above random in a setting, below it in none)")
    below_elsewhere = row("me+balanced", (-0.09, -0.01))
    assert default_of(settings(LEVEL, LEVEL, LEVEL, LEVEL, s1=[shown], s2=[below_elsewhere])) \
        .startswith("rule 3")
    too_few_seeds = row("me+balanced", (0.01, 0.09), seeds=6)
    assert default_of(settings(LEVEL, LEVEL, LEVEL, LEVEL, s1=[too_few_seeds])).startswith("rule 3")
    above_on_accuracy_only = row("me", (-0.01, 0.09), accuracy=(0.01, 0.09))
    assert default_of(settings(AHEAD, AHEAD, LEVEL, LEVEL, s0=[above_on_accuracy_only])) \
        .startswith("rule 4")


def test_rule_two_turns_to_random_where_auto_is_shown_below_it_on_either_metric():
    assert default_of(settings(AHEAD, AHEAD, AHEAD, (-0.09, -0.01))) == (
        "rule 2: random (auto shown below random in balanced SST-2)")
    below_on_accuracy = settings(AHEAD, AHEAD, AHEAD, AHEAD)
    below_on_accuracy["rare SST-2"] = [row("auto", AHEAD, accuracy=(-0.05, -0.001))]
    assert default_of(below_on_accuracy) == "rule 2: random (auto shown below random in rare SST-2)"


def test_rules_three_and_four_count_the_settings_where_auto_trails_random():
    assert default_of(settings(BEHIND, LEVEL, BEHIND, AHEAD)) == (
        "rule 3: random (auto shown below random nowhere, its mean below random's in 3 of 4 "
        "settings)")
    assert default_of(settings(BEHIND, AHEAD, BEHIND, AHEAD)) == (
        "rule 4: auto (shown below random nowhere, its mean below random's in 2 of 4 settings)")
