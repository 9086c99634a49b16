"""Labels saved, the deficiency and the noise budget, on curves and run folders made by hand."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from star.active.learning_curve import auc
from star.active.runfolder import RunFolder
from star.results.savings import (
    Z95,
    binomial_se,
    bootstrap_interval,
    deficiency,
    labels_needed,
    labels_saved,
    pooled_sd,
)
from star.results.significance import detectable_difference, seeds_for_power
from star.results.summary import collect_runs, detectable_rows, noise_rows, summarize
from star.results.tables import (
    comparisons_table,
    noise_tables,
    per_seed_table,
    results_table,
    savings_tables,
)
from star.seeding import numpy_rng
from star.tools.cli import main
from star.tools.compare import saved_text
from tests.test_report_setups import make_run

N = [10, 20, 30]


def test_a_curve_crossing_between_two_rounds_is_interpolated():
    # 0.8 lies between 0.7 (20 labels) and 0.9 (30): 20 + (0.8 − 0.7) / (0.9 − 0.7) · 10 = 25
    assert labels_needed(N, [0.6, 0.7, 0.9], 0.8) == pytest.approx(25.0)
    saving = labels_saved(N, [0.6, 0.7, 0.9], N, [0.5, 0.6, 0.8])
    assert saving.reached and saving.saved == pytest.approx(1 - 25 / 30)


def test_the_first_crossing_counts_and_a_curve_may_start_above_the_target():
    # up to 0.85 at 20, down to 0.7 at 30: first reached at 10 + 0.2 / 0.25 · 10 = 18
    assert labels_needed(N, [0.6, 0.85, 0.7], 0.8) == pytest.approx(18.0)
    assert labels_needed(N, [0.8, 0.9, 0.9], 0.75) == 10.0  # nothing before the first round


def test_identical_curves_save_nothing():
    saving = labels_saved(N, [0.6, 0.7, 0.8], N, [0.6, 0.7, 0.8])
    assert saving.needed == 30.0 and saving.saved == 0.0


def test_a_strategy_that_never_reaches_randoms_final_accuracy_is_counted_at_its_budget():
    saving = labels_saved(N, [0.5, 0.6, 0.65], N, [0.5, 0.6, 0.7])
    assert not saving.reached and saving.needed is None
    assert saving.saved == 0.0  # its own budget, 30, over random's 30: an upper bound
    shorter = labels_saved([10, 20], [0.5, 0.6], N, [0.5, 0.6, 0.7])
    assert shorter.saved == pytest.approx(1 - 20 / 30)


def test_deficiency_by_hand():
    # reference 0.9. The strategy's gaps 0.3, 0.1, 0: area 10·0.4/2 + 10·0.1/2 = 2.5; random's
    # gaps 0.3, 0.2, 0.1: 10·0.5/2 + 10·0.3/2 = 4
    assert deficiency(N, [0.6, 0.8, 0.9], N, [0.6, 0.7, 0.8], 0.9) == pytest.approx(2.5 / 4)
    assert deficiency(N, [0.6, 0.7, 0.8], N, [0.6, 0.7, 0.8], 0.9) == pytest.approx(1.0)
    assert deficiency(N, [0.6, 0.7, 0.8], N, [0.9, 0.9, 0.9], 0.9) is None  # random at the top


def test_bootstrap_interval_of_two_seeds_spans_them():
    # resampled means of (0.1, 0.3): 0.1, 0.2, 0.3 with probability 1/4, 1/2, 1/4
    assert bootstrap_interval([0.1, 0.3], numpy_rng(0, 0, "bootstrap")) == pytest.approx((0.1, 0.3))
    assert bootstrap_interval([0.2, 0.2, 0.2], numpy_rng(0, 0, "bootstrap")) == pytest.approx(
        (0.2, 0.2))
    assert bootstrap_interval([0.4], numpy_rng(0, 0, "bootstrap")) is None  # one seed: none
    values = [0.0, 0.1, 0.5, 0.2, 0.3]
    low, high = bootstrap_interval(values, numpy_rng(0, 0, "bootstrap"))
    assert low < np.mean(values) < high
    assert (low, high) == bootstrap_interval(values, numpy_rng(0, 0, "bootstrap"))  # seeded


def test_test_set_error_and_pooled_spread_by_hand():
    # the example: 200 test examples at 80 %: ±5.5 points
    assert binomial_se(0.8, 200) == pytest.approx(math.sqrt(0.16 / 200))
    assert Z95 * binomial_se(0.8, 200) == pytest.approx(0.0554, abs=1e-4)
    # squares about each group's mean: 1 + 1 and 4 + 4; one degree of freedom each
    assert pooled_sd([[1, 3], [10, 14], [5]]) == pytest.approx(math.sqrt(10 / 2))
    assert pooled_sd([[5], [6]]) is None


def test_detectable_difference_inverts_seeds_for_power():
    for n in (2, 3, 5, 10):
        d = detectable_difference(0.02, n)
        assert seeds_for_power(1.001 * d, 0.02) <= n < seeds_for_power(0.999 * d, 0.02)
    assert detectable_difference(0.02, 1) is None
    assert detectable_difference(0.0, 5) == 0.0


def hand_runs(root: Path, seeds: tuple[int, ...] = (0, 1)) -> Path:
    """random and me on SST-2, 10/20/30 labels, 200 test examples. Seed 0: random 0.6 0.7 0.8,
    me 0.6 0.85 0.9; seed 1: random 0.5 0.7 0.75, me 0.5 0.6 0.7 (never reaches 0.75)."""
    curves = {("random", 0): [0.6, 0.7, 0.8], ("me", 0): [0.6, 0.85, 0.9],
              ("random", 1): [0.5, 0.7, 0.75], ("me", 1): [0.5, 0.6, 0.7]}
    for (strategy, seed), accuracy in curves.items():
        if seed not in seeds:
            continue
        config = {"strategy": strategy, "seed": seed, "task": {"name": "sst2"},
                  "loop": {"budget": 30}}
        rounds = [{"round": k, "n_labeled": n, "accuracy": a, "selected_ids": []}
                  for k, (n, a) in enumerate(zip(N, accuracy, strict=True))]
        make_run(root / strategy / f"seed{seed}", config, rounds, auc=auc(N, accuracy),
                 test_size=200, baselines={"chance": 0.5, "majority": 0.5, "zero_shot": 0.55})
    return root


def test_summary_counts_labels_saved_and_deficiency_per_seed(tmp_path):
    summary = summarize(collect_runs(hand_runs(tmp_path / "runs")))
    me = summary["SST-2"]["me"]["savings"]
    # seed 0: random's final 0.8, reached at 10 + 0.2/0.25 · 10 = 18 labels: 1 − 18/30 = 0.4;
    # seed 1: 0.75 never reached, counted at 30 labels: 0
    assert [s["needed"] for s in me["per_seed"]] == pytest.approx([18.0, None])
    assert [s["saved"] for s in me["per_seed"]] == pytest.approx([0.4, 0.0])
    assert me["labels_saved"] == pytest.approx(
        {"mean": 0.2, "low": 0.0, "high": 0.4, "seeds": 2, "not_reached": 1, "random_fell": 0})
    # deficiency. Seed 0, reference 0.9 (me's best): me's gaps 0.3 0.05 0 -> 2.0; random's
    # 0.3 0.2 0.1 -> 4.0. Seed 1, reference 0.75 (random's best): me's 0.25 0.15 0.05 -> 3.0;
    # random's 0.25 0.05 0 -> 1.75
    assert [s["deficiency"] for s in me["per_seed"]] == pytest.approx([0.5, 3.0 / 1.75])
    assert me["deficiency"]["mean"] == pytest.approx((0.5 + 3.0 / 1.75) / 2)
    random = summary["SST-2"]["random"]["savings"]["labels_saved"]
    assert (random["mean"], random["not_reached"]) == (0.0, 0)  # both rise to their last round
    table = results_table(summary)
    assert table.columns[-1] == "SST-2 labels saved"
    cells = {row[0].text: row[-1].text for row in table.rows}
    assert cells["me"] == "≤ 20.0 (0.0 to 40.0), n.r. 1/2"
    assert cells["random"] == "0.0 (0.0 to 0.0)" and cells["chance"] == "–"


def test_one_seed_has_a_saving_and_no_interval(tmp_path):
    summary = summarize(collect_runs(hand_runs(tmp_path / "runs", seeds=(0,))))
    saved = summary["SST-2"]["me"]["savings"]["labels_saved"]
    assert saved == pytest.approx({"mean": 0.4, "low": None, "high": None, "seeds": 1,
                                   "not_reached": 0, "random_fell": 0})
    overall, each = savings_tables(summary)
    me = next(row for row in overall.rows if row[1].text == "me")
    # random's own curve first reaches its final 0.8 at its last round: 40 − 0 beyond it
    assert [cell.text for cell in me[2:]] == ["1", "40.0", "0/1", "40.0", "0/1", "0.50"]
    assert [cell.text for cell in each.rows[-1][3:]] == [
        "60.00", "80.00", "30", "18.0", "40.0", "40.0", "90.00", "0.50"]
    random = next(row for row in each.rows if row[1].text == "random")
    assert random[8].text == "–"  # random's saving beyond its own is no number


def falling_runs(root: Path) -> Path:
    """A skewed pool's picture on 10/20/30 labels: random's macro-F1 falls on seed 0 (0.7 0.6
    0.5), rises on seed 1 (0.5 0.55 0.6) and ends where it started on seed 2 (0.6 0.7 0.6),
    while its accuracy rises on all three; me's macro-F1 0.7 0.55 0.65, 0.7 0.65 0.4 and 0.6
    0.5 0.5 (never reaching random's 0.6 after its first round)."""
    curves = {("random", 0): ([0.6, 0.7, 0.8], [0.7, 0.6, 0.5]),
              ("me", 0): ([0.6, 0.62, 0.64], [0.7, 0.55, 0.65]),
              ("random", 1): ([0.6, 0.7, 0.8], [0.5, 0.55, 0.6]),
              ("me", 1): ([0.6, 0.62, 0.64], [0.7, 0.65, 0.4]),
              ("random", 2): ([0.6, 0.7, 0.8], [0.6, 0.7, 0.6]),
              ("me", 2): ([0.6, 0.62, 0.64], [0.6, 0.5, 0.5])}
    for (strategy, seed), (accuracy, f1) in curves.items():
        config = {"strategy": strategy, "seed": seed, "task": {"name": "sst2"},
                  "loop": {"budget": 30}}
        rounds = [{"round": k, "n_labeled": n, "accuracy": a, "macro_f1": f, "selected_ids": []}
                  for k, (n, a, f) in enumerate(zip(N, accuracy, f1, strict=True))]
        make_run(root / strategy / f"seed{seed}", config, rounds, auc=auc(N, accuracy),
                 test_size=200)
    return root


def test_labels_saved_on_macro_f1_and_beyond_randoms_own(tmp_path):
    runs = collect_runs(falling_runs(tmp_path / "runs"))
    me = summarize(runs, metric="macro_f1")["SST-2"]["me"]["savings"]
    assert me["metric"] == "macro_f1"
    # seed 0: random's final 0.5, met at 10 labels by random itself (1 − 10/30) and by me;
    # seed 1: random's final 0.6, met by random at its last round (0 saved), by me at 10
    # seed 2: random's final 0.6 is its first value (2/3 saved); me starts there too (2/3)
    assert [s["target"] for s in me["per_seed"]] == pytest.approx([0.5, 0.6, 0.6])
    assert [s["random_start"] for s in me["per_seed"]] == pytest.approx([0.7, 0.5, 0.6])
    assert [s["needed"] for s in me["per_seed"]] == pytest.approx([10.0, 10.0, 10.0])
    assert [s["beyond_random"] for s in me["per_seed"]] == pytest.approx([0.0, 2 / 3, 0.0])
    assert me["beyond_random"]["mean"] == pytest.approx(2 / 9)
    # seed 0 ends below its 0.7 start, seed 2 at its 0.6 start: neither gained from its labels
    assert me["labels_saved"]["random_fell"] == 2
    random = summarize(runs, metric="macro_f1")["SST-2"]["random"]["savings"]
    assert random["beyond_random"] is None
    assert [s["saved"] for s in random["per_seed"]] == pytest.approx([2 / 3, 0.0, 2 / 3])
    # on accuracy random rises to 0.8 and me never gets there: the metric is the curve's
    on_accuracy = summarize(runs)["SST-2"]["me"]["savings"]
    assert on_accuracy["labels_saved"]["not_reached"] == 3
    assert on_accuracy["labels_saved"]["random_fell"] == 0
    overall, each = savings_tables(summarize(runs, metric="macro_f1"))
    assert "macro-F1" in overall.title and "random's final macro-F1" in each.columns
    row = next(row for row in overall.rows if row[1].text == "me")
    assert [cell.text for cell in row[5:7]] == ["22.2 (0.0 to 66.7)", "2/3"]
    # not reached on any seed: the saving beyond random's own is an upper bound too
    row = next(row for row in savings_tables(summarize(runs))[0].rows if row[1].text == "me")
    assert row[5].text.startswith("≤ ")


def test_the_last_rounds_value_is_compared_by_seed(tmp_path):
    summary = summarize(collect_runs(falling_runs(tmp_path / "runs")), metric="macro_f1")
    entries = summary["SST-2"]
    assert entries["me"]["final_per_seed"] == pytest.approx([0.65, 0.4, 0.5])
    assert entries["random"]["final_per_seed"] == pytest.approx([0.5, 0.6, 0.6])
    table = comparisons_table(summary, metric="final")
    assert table.name == "comparisons_final" and "last round's macro-F1" in table.title
    [row] = table.rows  # me − random: +0.15, −0.2 and −0.1 by seed
    assert (row[1].text, row[2].text, row[3].text) == ("me − random", "3", "-5.00")
    seeds = per_seed_table(summary)
    assert seeds.columns[6] == "last-round macro-F1"
    assert [r[6].text for r in seeds.rows if r[1].text == "me"] == ["65.00", "40.00", "50.00"]
    assert table.columns[3] == "Δ final macro-F1" and "the first ends higher" in table.note


def test_noise_budget_by_hand(tmp_path):
    root = hand_runs(tmp_path / "runs")
    RunFolder(root / "me" / "seed0").write_noise(1, {"retrains": [
        {"training_seed": 1, "accuracy": 0.8}, {"training_seed": 2, "accuracy": 0.9},
        {"training_seed": 3, "accuracy": 0.85}]})
    RunFolder(root / "random" / "seed0").write_noise(1, {"retrains": [
        {"training_seed": 1, "accuracy": 0.7}, {"training_seed": 2, "accuracy": 0.74}]})
    runs = collect_runs(root)
    rows = {row["n_labeled"]: row for row in noise_rows(runs)}
    # 10 labels: all four runs at 0.6, 0.5, 0.6, 0.5; within each strategy a variance of 0.005
    assert rows[10]["accuracy"] == pytest.approx(0.55)
    assert rows[10]["test_se"] == pytest.approx(math.sqrt(0.55 * 0.45 / 200))
    assert rows[10]["test_half_width"] == pytest.approx(1.96 * math.sqrt(0.55 * 0.45 / 200),
                                                        rel=1e-4)
    assert rows[10]["seed_sd"] == pytest.approx(math.sqrt(0.005))
    assert (rows[10]["train_sd"], rows[10]["train_runs"]) == (None, 0)
    # 20 labels: random 0.7, 0.7 (no spread), me 0.85, 0.6 (squares 2 · 0.125²): sqrt(0.03125/2)
    assert rows[20]["seed_sd"] == pytest.approx(0.125)
    # retrains: me's squares 0.05² · 2 over 2 df, random's 0.02² · 2 over 1 df
    assert rows[20]["train_sd"] == pytest.approx(math.sqrt((0.005 + 0.0008) / 3))
    assert rows[20]["train_runs"] == 2
    (detect,) = detectable_rows(summarize(runs))
    # AUC differences me − random: 0.8 − 0.7 and 0.6 − 0.6625; their SD 0.1625 / √2
    assert detect["difference_sd"] == pytest.approx(0.1625 / math.sqrt(2))
    assert detect["seeds"] == 2
    assert detect["detectable"] == pytest.approx(detectable_difference(0.1625 / math.sqrt(2), 2))
    budget, detectable = noise_tables(noise_rows(runs), [detect])
    assert [cell.text for cell in budget.rows[1]] == [
        "SST-2", "20", "71.25", "200", "3.20", "6.27", "2", "12.50", "4.40", "2"]
    assert detectable.rows[0][1].text == "2"


def test_report_and_compare_line_show_labels_saved(tmp_path):
    root = hand_runs(tmp_path / "runs")
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out)]) == 0
    table1 = list(csv.reader((out / "table1_main.csv").open()))
    assert table1[0][-1] == "SST-2 labels saved"
    assert dict((row[0], row[-1]) for row in table1[1:])["me"] == "20.0"
    each = list(csv.reader((out / "labels_saved_per_seed.csv").open()))
    assert [row[6] for row in each[1:] if row[1] == "me"] == ["18.0", "not reached"]
    assert (out / "noise_budget.csv").exists() and (out / "noise_detectable.csv").exists()
    assert "## Noise budget" in (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["SST-2"]["me"]["savings"]["labels_saved"]["not_reached"] == 1
    runs = {(r["strategy"], r["seed"]): r for r in collect_runs(root)}
    assert saved_text(runs[("me", 0)], root / "random" / "seed0") == (
        ", labels saved vs random on accuracy 40.0 %")
    assert saved_text(runs[("me", 1)], root / "random" / "seed1") == (
        ", random's final accuracy not reached")
    assert saved_text(runs[("me", 0)], root / "random" / "seed7") == ""  # random not run
