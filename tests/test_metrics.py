"""AUC and RIPL of known curves."""

import pytest

from star.active.learning_curve import auc
from star.results.metrics import mean_std, ripl


def test_flat_curve_auc_is_its_value():
    assert auc([100, 200, 300, 500], [0.7] * 4) == pytest.approx(0.7)


def test_auc_of_uneven_curve_by_hand():
    # trapezoids: 100*(0.5+0.6)/2 = 55, 200*(0.6+0.8)/2 = 140; span 300
    assert auc([100, 200, 400], [0.5, 0.6, 0.8]) == pytest.approx(195 / 300)


def test_single_point_auc():
    assert auc([50], [0.4]) == 0.4


def test_ripl_by_hand():
    assert ripl(0.65, 0.6) == pytest.approx(0.125)
    assert ripl(0.55, 0.6) == pytest.approx(-0.125)
    assert ripl(0.6, 0.6) == 0.0


def test_ripl_matches_the_papers_table_1():
    # OpenBookQA, ME w/ STAR against RANDOM: AUC 66.17 vs 63.44 gives RIPL 7.47 %.
    assert 100 * ripl(0.6617, 0.6344) == pytest.approx(7.47, abs=0.01)


def test_mean_std():
    mean, std = mean_std([1.0, 2.0, 3.0])
    assert (mean, std) == (2.0, pytest.approx(1.0))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_ece_by_hand():
    from star.results.metrics import expected_calibration_error

    # bins of width 1/15: 0.95 and 0.99 share the last bin, 0.55 and 0.5 share bin 7
    confidence = [0.95, 0.99, 0.55, 0.5]
    correct = [True, False, True, True]
    last = abs(0.5 - 0.97)   # accuracy 1/2, confidence 0.97
    middle = abs(1.0 - 0.525)
    assert expected_calibration_error(confidence, correct) == pytest.approx((2 * last + 2 * middle) / 4)
    assert expected_calibration_error([1.0, 1.0], [True, True]) == 0.0


def test_brier_by_hand():
    from star.results.metrics import brier_score

    assert brier_score([0.9, 0.6], [True, False]) == pytest.approx((0.01 + 0.36) / 2)


def test_reliability_bins():
    from star.results.metrics import reliability_bins

    bins = reliability_bins([0.95, 0.99, 0.1], [True, False, False])
    assert [(b["count"], b["accuracy"]) for b in bins] == [(1, 0.0), (2, 0.5)]
    assert bins[1]["confidence"] == pytest.approx(0.97)


def test_correlation_matrix():
    from star.results.metrics import correlation_matrix

    m = correlation_matrix([[1, 2, 3], [2, 4, 6], [3, 2, 1]])
    assert m.ravel().tolist() == pytest.approx([1, 1, -1, 1, 1, -1, -1, -1, 1])
