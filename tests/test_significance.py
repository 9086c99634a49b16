"""Paired comparisons over seeds, checked against hand computations and textbook power tables."""

from __future__ import annotations

import math

import pytest

from star.results.significance import correlation, paired, seeds_for_power, unpaired
from star.results.tables import comparisons_table


def test_the_studys_me_minus_random_by_hand():
    """me − random on SST-2 in the first study: +0.38, +2.31, +1.25 points (issue 15)."""
    me = {0: 0.7038, 1: 0.7231, 2: 0.7125}
    random = {0: 0.70, 1: 0.70, 2: 0.70, 3: 0.9}  # seed 3 has no partner: left out
    result = paired(me, random)
    assert result.seeds == [0, 1, 2]
    assert result.differences == pytest.approx([0.0038, 0.0231, 0.0125])
    mean = (0.0038 + 0.0231 + 0.0125) / 3
    std = math.sqrt(sum((d - mean) ** 2 for d in (0.0038, 0.0231, 0.0125)) / 2)  # 0.009666
    half = 4.302653 * std / math.sqrt(3)  # t(0.975, 2 df)
    assert result.mean == pytest.approx(mean)
    assert (result.low, result.high) == pytest.approx((mean - half, mean + half), rel=1e-5)
    t = mean / (std / math.sqrt(3))  # 2.353
    assert result.p_value == pytest.approx(0.1429, abs=5e-4)  # two-sided, 2 df: 1 − t/√(t²+2)
    assert result.p_value == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-6)
    assert not result.significant
    # d = 1.359; power (non-central t, shift d·√n, n − 1 df, two-sided α = 0.05) is
    # 0.63 at 5 seeds, 0.76 at 6, 0.85 at 7
    assert result.seeds_for_power == 7
    assert (100 * result.low, 100 * result.high) == pytest.approx((-1.09, 3.71), abs=5e-3)


def test_power_matches_the_textbook_tables():
    """Paired t-test, α = 0.05 two-sided, power 0.8 (Cohen 1988; G*Power): d = 1 needs 10
    pairs, d = 0.5 needs 34."""
    assert seeds_for_power(1.0, 1.0) == 10
    assert seeds_for_power(-0.5, 1.0) == 34
    assert seeds_for_power(0.0, 1.0) is None
    assert seeds_for_power(1e-4, 1.0) is None  # beyond any number of seeds worth running
    assert seeds_for_power(0.3, 0.0) == 2


def test_power_of_a_large_effect_where_scipys_tail_gives_nan():
    """pe − random in the study: −14.09, −15.97, −13.91, −21.16 points (d = 4.82). At 3 seeds
    the shift is 8.34 against t(0.975, 2) = 4.303: power 0.968, so 3 seeds, not the 6 that a
    NaN from scipy's far lower tail once gave by passing over n = 3, 4 and 5."""
    differences = [-14.09, -15.97, -13.91, -21.16]
    mean = sum(differences) / 4
    std = math.sqrt(sum((d - mean) ** 2 for d in differences) / 3)
    assert seeds_for_power(mean, std) == 3


def test_one_seed_is_one_number():
    result = paired({0: 0.7}, {0: 0.6})
    assert result.mean == pytest.approx(0.1)
    assert (result.low, result.high, result.p_value, result.seeds_for_power) == (None,) * 4
    assert not result.significant
    assert paired({0: 0.7}, {1: 0.6}) is None


def test_a_constant_difference_is_significant():
    result = paired({0: 0.8, 1: 0.7, 2: 0.6}, {0: 0.7, 1: 0.6, 2: 0.5})
    assert result.p_value == 0.0 and result.significant
    assert result.low == pytest.approx(0.1) and result.high == pytest.approx(0.1)


def test_the_comparisons_table_pairs_by_seed_and_counts_its_tests():
    """Each strategy against random, then the named pair; the note says how many p-values
    were computed and what Bonferroni would ask of them."""
    def entry(aucs: list[float]) -> dict:
        return {"seeds": [0, 1, 2], "auc_per_seed": aucs}

    summary = {"SST-2": {"random": entry([0.70, 0.70, 0.70]), "me": entry([0.7038, 0.7231, 0.7125]),
                         "me-star": entry([0.71, 0.72, 0.73])}}
    summary["SST-2"]["pe"] = {**entry([0.60, 0.60, 0.60]), "curve": {"n_labeled": [0, 16, 32]}}
    summary["SST-2"]["margin"] = entry([0.65, 0.65, 0.65])  # a constant −5 points
    summary["SST-2"]["lc"] = entry([0.710, 0.7101, 0.7099])  # t = 0.01 / (1e-4 / √3) = 173
    table = comparisons_table(summary, [("me-star", "me"), ("bald", "me")])  # bald never ran
    assert [row[1].text for row in table.rows] == ["me − random", "me-star − random",
                                                   "lc − random", "margin − random",
                                                   "me-star − me"]
    # pe ran to other label counts (its curve says so, the others' says nothing): no pair
    assert table.rows[2][5].text == "3.3e-05"  # 2 df: p = 1 − t/√(t² + 2) ≈ 1/t²
    assert table.rows[3][5].text == "0" and table.rows[3][6].text == "significant"
    me = table.rows[0]
    assert (me[3].text, me[5].text, me[6].text, me[7].text) == ("+1.31", "0.143",
                                                                 "not significant", "7")
    assert table.rows[4][3].text == "+0.69"  # (0.0062 − 0.0031 + 0.0175) / 3 = 0.00687
    assert "any of these 5 tests falls below 0.05 could be as high as 25 %" in table.note
    assert "Bonferroni: p < 0.01 for all 5 together" in table.note


def test_the_last_rounds_ece_is_compared_by_seed_too(tmp_path):
    """ECE from a predictions file by hand, kept per seed in the summary and compared like AUC:
    a seed without predictions drops out of the pairs."""
    from star.active.runfolder import RunFolder
    from star.results.summary import calibration_at

    folder = RunFolder(tmp_path)
    folder.predictions_path(1).parent.mkdir(parents=True)
    folder.predictions_path(1).write_text(
        '{"confidence": 0.9, "correct": true}\n{"confidence": 0.6, "correct": false}\n')
    run = {"path": str(tmp_path)}
    ece, brier = calibration_at(run, {"round": 1, "accuracy": 0.5})
    assert ece == pytest.approx(0.5 * 0.1 + 0.5 * 0.6)  # two bins: |1 − 0.9|, |0 − 0.6|
    assert brier == pytest.approx((0.1 ** 2 + 0.6 ** 2) / 2)
    assert calibration_at(run, {"round": 1, "accuracy": None}) is None  # no test set
    assert calibration_at(run, {"round": 2, "accuracy": 0.5}) is None  # no predictions

    def entry(eces: list[float | None]) -> dict:
        return {"seeds": [0, 1, 2], "ece_last_per_seed": eces}

    summary = {"SST-2": {"random": entry([0.05, 0.06, 0.07]), "me": entry([0.08, None, 0.10])}}
    table = comparisons_table(summary, metric="ece_last")
    assert table.name == "comparisons_ece" and "ECE" in table.title
    [row] = table.rows
    assert (row[2].text, row[3].text, row[5].text) == ("2", "+3.00", "0")  # +3 on seeds 0, 2
    assert "below 0: the first is better calibrated" in table.note


def test_a_correlation_with_its_fisher_interval_by_hand():
    """x = 1..5, y = 2, 1, 4, 3, 5: deviations (−2, −1, 0, 1, 2) and (−1, −2, 1, 0, 2), so
    r = 8 / √(10 · 10) = 0.8; z = atanh 0.8 = 1.0986 ± 1.96 / √(5 − 3); t = 0.8 √(3 / 0.36)."""
    result = correlation([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert result.value == pytest.approx(0.8) and result.count == 5
    half = 1.959964 / math.sqrt(2)
    assert (result.low, result.high) == pytest.approx(
        (math.tanh(math.atanh(0.8) - half), math.tanh(math.atanh(0.8) + half)), abs=1e-6)
    assert (result.low, result.high) == pytest.approx((-0.2796, 0.9862), abs=1e-4)
    u = 0.8 * math.sqrt(3 / 0.36) / math.sqrt(3)  # t / √df; Student's t with 3 df in closed form
    assert result.p_value == pytest.approx(1 - 2 / math.pi * (math.atan(u) + u / (1 + u * u)),
                                           rel=1e-6)
    assert correlation([1, 2, 3, 4], [2, 4, 6, 8]).p_value == 0.0  # a perfect line
    with pytest.raises(ValueError, match="at least 4"):
        correlation([1, 2, 3], [1, 2, 3])


def test_welchs_difference_by_hand():
    """[1, 2, 3] against [2, 4, 6, 8]: means 2 and 5, variances 1 and 20/3, so the difference
    −3 has standard error √(1/3 + 5/3) = √2 and Welch–Satterthwaite df = 2² / ((1/3)²/2 +
    (5/3)²/3) = 4.0755; t(0.975, 4.0755 df) = 2.7563 (2.776 at 4 df); with t = 3 / √2 the
    two-sided p is the regularised incomplete beta I_{df / (df + t²)}(df / 2, 1 / 2) = 0.0999."""
    result = unpaired([1, 2, 3], [2, 4, 6, 8])
    assert result.value == pytest.approx(-3.0) and result.count == 7
    assert (result.low, result.high) == pytest.approx((-3 - 2.7563 * math.sqrt(2),
                                                       -3 + 2.7563 * math.sqrt(2)), abs=1e-3)
    assert result.p_value == pytest.approx(0.0999, abs=1e-4)
    with pytest.raises(ValueError, match="at least 2 values a side"):
        unpaired([1.0], [1.0, 2.0])
