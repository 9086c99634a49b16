"""Per-class metrics and batch label shares against hand-computed values; the report's class
tables and `--metric macro_f1` on run folders made by hand (no model)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from star.active.classes import (
    balanced_accuracy,
    batch_against_pool,
    class_metrics,
    class_recall,
    macro_f1,
    rarest_class,
)
from star.active.learning_curve import auc
from star.results.summary import batch_label_rows, batch_shares, class_rows, collect_runs, summarize
from star.tools.cli import main
from tests.test_report_setups import make_run

LABELS = ["a", "b", "c", "d", "e"]
# a: 4 test examples, 3 right, and one c answered a: TP 3, FP 1, FN 1 -> F1 6/8, recall 3/4
# b: 2 test examples, 1 right, one a answered b:    TP 1, FP 1, FN 1 -> F1 2/4, recall 1/2
# c: 1 test example, never answered:                 TP 0, FP 0, FN 1 -> F1 0,   recall 0
# d: no test example, answered once:                 TP 0, FP 1, FN 0 -> F1 0,   recall None
# e: in neither: left out of macro-F1 and balanced accuracy
GOLDS = ["a", "a", "a", "a", "b", "b", "c"]
ANSWERS = ["a", "a", "a", "b", "b", "d", "a"]


def test_class_recall_by_hand():
    assert class_recall(ANSWERS, GOLDS, LABELS) == {"a": 0.75, "b": 0.5, "c": 0.0, "d": None,
                                                     "e": None}


def test_macro_f1_counts_the_classes_in_golds_or_answers():
    # (0.75 + 0.5 + 0 + 0) / 4: d (answered, absent from the test set) counts with F1 0, e not;
    # leaving d out would give 1.25 / 3, counting e 1.25 / 5
    assert macro_f1(ANSWERS, GOLDS, LABELS) == pytest.approx(0.3125)


def test_balanced_accuracy_is_the_mean_recall_over_the_test_sets_classes():
    # (0.75 + 0.5 + 0) / 3; d and e have no test example, so no recall
    assert balanced_accuracy(ANSWERS, GOLDS, LABELS) == pytest.approx(1.25 / 3)


def test_a_perfect_classifier_scores_one_and_a_class_outside_the_test_set_is_left_out():
    golds = ["a", "b", "b", "c"]
    metrics = class_metrics(golds, golds, ["a", "b", "c", "d"])
    assert metrics == {"macro_f1": 1.0, "balanced_accuracy": 1.0,
                       "class_recall": {"a": 1.0, "b": 1.0, "c": 1.0, "d": None}}


def test_a_model_answering_one_class_gets_chance_balanced_accuracy():
    """Accuracy 0.9 on a 90/10 test set by always answering the common class."""
    golds = ["a"] * 9 + ["b"]
    answers = ["a"] * 10
    assert balanced_accuracy(answers, golds, ["a", "b"]) == pytest.approx(0.5)
    # a: TP 9, FP 1 -> F1 18/19; b: F1 0
    assert macro_f1(answers, golds, ["a", "b"]) == pytest.approx(9 / 19)


def test_generative_tasks_and_unlabeled_sets_have_no_class_metrics():
    empty = {"macro_f1": None, "balanced_accuracy": None, "class_recall": None}
    assert class_metrics(["12"], ["12"], []) == empty  # a generative task has no labels
    assert class_metrics(["a"], [None], ["a", "b"]) == empty


def test_batch_against_pool_by_hand():
    shares = batch_against_pool({"a": 3, "b": 1}, {"a": 90, "b": 6, "c": 4})
    assert shares == {"a": (0.75, 0.9), "b": (0.25, 0.06), "c": (0.0, 0.04)}
    assert batch_against_pool({"b": 2}, None) == {"b": (1.0, None)}


def test_batch_shares_weigh_each_round_by_its_batch_size():
    """Round 1: 4 picks, b 2 of them, from a pool with b at 10 %; round 2: 2 picks, b 1, from a
    pool with b at 5 %. Batches: b 3/6; pool, weighted 4:2: (4·0.10 + 2·0.05)/6 = 1/12."""
    rounds = [{"batch_label_counts": {"a": 2, "b": 2}, "pool_label_counts": {"a": 90, "b": 10}},
              {"batch_label_counts": {"a": 1, "b": 1}, "pool_label_counts": {"a": 95, "b": 5}}]
    shares = batch_shares(rounds)
    assert shares["b"] == pytest.approx((0.5, 1 / 12))
    assert shares["a"] == pytest.approx((0.5, (4 * 0.9 + 2 * 0.95) / 6))


def skewed_run(root: Path, strategy: str, seed: int, f1: list[float], **last: Any) -> None:
    """A finished two-round run (8 and 16 labels) with macro-F1 per round and, in its last
    round, the other per-class keys; accuracy 0.8 throughout."""
    config = {"strategy": strategy, "seed": seed, "task": {"name": "sst2"}, "loop": {"budget": 16}}
    rounds = [{"round": k, "n_labeled": 8 * (k + 1), "accuracy": 0.8, "macro_f1": value,
               "selected_ids": []} for k, value in enumerate(f1)]
    rounds[-1].update(last)
    make_run(root / strategy / f"seed{seed}", config, rounds, auc=0.8,
             baselines={"chance": 0.5, "majority": 0.5, "zero_shot": 0.6})


@pytest.fixture
def skewed(tmp_path: Path) -> Path:
    """random and me+balanced, two seeds each; macro-F1 AUCs: random 0.4, 0.5; me+balanced
    0.6, 0.7 (the mean of the two rounds)."""
    root = tmp_path / "runs"
    for strategy, seed, f1, recall, batch in (
            ("random", 0, [0.3, 0.5], {"0": 1.0, "1": 0.0}, {"0": 7, "1": 1}),
            ("random", 1, [0.4, 0.6], {"0": 0.9, "1": 0.2}, {"0": 8}),
            ("me+balanced", 0, [0.5, 0.7], {"0": 0.8, "1": 0.6}, {"0": 4, "1": 4}),
            ("me+balanced", 1, [0.6, 0.8], {"0": 0.7, "1": 0.8}, {"0": 5, "1": 3})):
        skewed_run(root, strategy, seed, f1, class_recall=recall, balanced_accuracy=0.5,
                   batch_label_counts=batch, pool_label_counts={"0": 90, "1": 10})
    return root


def test_summary_on_macro_f1(skewed):
    summary = summarize(collect_runs(skewed), "macro_f1")
    (entries,) = summary.values()
    balanced, random = entries["me+balanced"], entries["random"]
    assert balanced["auc_per_seed"] == pytest.approx([0.6, 0.7])
    assert random["auc_per_seed"] == pytest.approx([0.4, 0.5])
    # RIPL (0.6 − 0.4) / 0.6 and (0.7 − 0.5) / 0.5
    assert balanced["ripl_per_seed"] == pytest.approx([1 / 3, 0.4])
    # no zero-shot macro-F1: the curve starts at the first round, and there is no gain
    curve = balanced["curve"]
    assert set(curve) == {"n_labeled", "macro_f1_mean", "macro_f1_std"}
    assert curve["n_labeled"] == [8, 16]
    assert curve["macro_f1_mean"] == pytest.approx([0.55, 0.75])
    assert curve["macro_f1_std"] == pytest.approx([0.0707107] * 2, abs=1e-6)  # 0.1 / √2
    assert balanced["gain_mean"] is None and balanced["metric"] == "macro_f1"
    # on accuracy, as before: the recorded AUC, the zero-shot point first
    accuracy = summarize(collect_runs(skewed))
    assert next(iter(accuracy.values()))["random"]["curve"]["accuracy_mean"] == [0.6, 0.8, 0.8]


def test_a_run_without_the_metric_is_named_in_one_line(skewed, tmp_path, capsys):
    config = {"strategy": "me", "seed": 0, "task": {"name": "sst2"}, "loop": {"budget": 16}}
    rounds = [{"round": k, "n_labeled": 8 * (k + 1), "accuracy": 0.7, "selected_ids": []}
              for k in range(2)]
    make_run(skewed / "me" / "seed0", config, rounds, auc=auc([8, 16], [0.7, 0.7]))
    out = tmp_path / "report"
    assert main(["report", str(skewed), "--out", str(out), "--metric", "macro_f1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no macro_f1 in every round of 1 run(s)" in error
    assert str(skewed / "me" / "seed0") in error and "random" not in error
    assert not out.exists()  # nothing written before the check
    assert main(["report", str(skewed), "--out", str(out)]) == 0  # accuracy: every run has it


def test_report_on_macro_f1_with_the_class_tables(skewed, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(skewed), "--out", str(out), "--metric", "macro_f1"]) == 0
    table1 = list(csv.reader((out / "table1_main.csv").open()))
    # AUC and RIPL of macro-F1; no gain column or baseline rows: those are accuracies
    assert [row[:3] for row in table1] == [["Method", "SST-2 AUC", "SST-2 RIPL"],
                                           ["random", "45.0", "–"],
                                           ["me+balanced", "65.0", "36.6667"]]  # (1/3 + 0.4) / 2
    assert table1[0][-1] == "SST-2 labels saved"  # counted on macro-F1 too
    assert (out / "labels_saved.csv").exists()
    markdown = (out / "report.md").read_text()
    assert "The test split's macro-F1" in markdown and "On macro-F1: AUC, RIPL and labels saved" in markdown
    recall = list(csv.reader((out / "class_recall.csv").open()))
    assert recall[0] == ["Setup", "Method", "Seeds", "Labels", "accuracy", "balanced accuracy",
                         "macro-F1", "recall 0", "recall 1"]
    # last round, mean over the two seeds: macro-F1 (0.7 + 0.8) / 2, recall of 1 (0.6 + 0.8) / 2
    assert recall[2][1:] == ["me+balanced", "2", "16", "80.0", "50.0", "75.0", "75.0", "70.0"]
    assert recall[1][1:] == ["random", "2", "16", "80.0", "50.0", "55.0", "95.0", "10.0"]
    assert "| SST-2 | random | 2 | 16 | 80.0 | 50.0 | 55.0 | 95.0 | 10.0 |" in markdown
    batches = list(csv.reader((out / "batch_labels.csv").open()))
    assert batches[0] == ["Setup", "Method", "Seeds", "0 batch", "0 pool", "1 batch", "1 pool"]
    # random: 1 of 8, then 0 of 8 -> 6.25 % of the batches were label 1; the pool holds 10 %
    assert batches[1][1:] == ["random", "2", "93.75", "90.0", "6.25", "10.0"]
    # me+balanced: 4 of 8 and 3 of 8
    assert batches[2][1:] == ["me+balanced", "2", "56.25", "90.0", "43.75", "10.0"]


def test_class_rows_average_each_recall_over_the_seeds_that_have_it(skewed):
    rows = {row["strategy"]: row for row in class_rows(collect_runs(skewed))}
    assert rows["random"]["class_recall"] == pytest.approx({"0": 0.95, "1": 0.1})
    assert rows["random"]["macro_f1"] == pytest.approx(0.55)
    shares = {row["strategy"]: row["shares"] for row in batch_label_rows(collect_runs(skewed))}
    assert shares["me+balanced"]["1"] == pytest.approx((3.5 / 8, 0.1))


def test_compare_refuses_macro_f1_on_a_generative_task_before_any_run(tmp_path, capsys):
    out = tmp_path / "compare"
    assert main(["compare", "--metric", "macro_f1", "--set", "task.name=gsm8k",
                 "--out", str(out)]) == 2
    assert "--metric macro_f1 counts classes" in capsys.readouterr().err and not out.exists()


def test_lopsided_labels_name_their_rarest_class():
    """Lopsided: the rarest class under half an even split (n / classes / 2)."""
    labels = ["0", "1"]
    assert rarest_class({"0": 6, "1": 42}, labels) == ("0", 6)  # 6 < 12
    assert rarest_class({"0": 12, "1": 36}, labels) is None  # 12 is not under 12
    assert rarest_class({"0": 11, "1": 37}, labels) == ("0", 11)
    assert rarest_class({"1": 16}, labels) == ("0", 0)  # a class with no label is the rarest
    # three classes, 30 labels: an even split is 10, lopsided under 5
    assert rarest_class({"a": 5, "b": 10, "c": 15}, ["a", "b", "c"]) is None
    assert rarest_class({"a": 4, "b": 11, "c": 15}, ["a", "b", "c"]) == ("a", 4)
    assert rarest_class({}, labels) is None  # no labels yet: nothing is lopsided (0 < 0 is not)
