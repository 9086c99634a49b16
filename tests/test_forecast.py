"""Learning-curve forecast on curves whose answers are known by hand."""

import json

import numpy as np
import pytest

from star.active.learning_curve import Curve, backtest, describe, fit, forecast

N = np.arange(16, 161, 16)  # 16, 32, ..., 160: ten rounds of 16 labels
TRUE = Curve(a=0.9, b=0.8, c=0.5)
EXACT = 0.9 - 0.8 / np.sqrt(N)


def test_fit_recovers_the_curve_it_was_given():
    curve = fit(N, EXACT)
    assert curve is not None
    assert (curve.a, curve.b, curve.c) == pytest.approx((0.9, 0.8, 0.5), abs=1e-4)
    # 0.9 − 0.8 / sqrt(320) = 0.9 − 0.8 / 17.8885 = 0.855279
    assert curve(320) == pytest.approx(0.855279, abs=1e-4)


def test_labels_for_by_hand():
    assert TRUE.labels_for(0.8) == pytest.approx(64.0)  # (0.8 / 0.1)^2
    assert TRUE.labels_for(0.9) is None
    assert TRUE.labels_for(0.95) is None
    # (0.8 / 0.0001)^100 = 8000^100 ≈ 1e390: beyond any float, as good as never
    assert Curve(a=0.9, b=0.8, c=0.01).labels_for(0.8999) is None


def test_too_few_points_or_no_labels_give_no_fit():
    assert fit([16, 32], [0.5, 0.6]) is None
    rng = np.random.default_rng(0)
    assert forecast([16, 32], [0.5, 0.6], budget=100, target=0.8, rng=rng) is None
    assert fit([0, 16, 32], [0.3, 0.5, 0.6]) is None  # the law is undefined at n = 0


def test_three_points_fit_but_give_no_forecast():
    """Three points fix a, b and c exactly: no residual is left to bootstrap, and an interval of
    zero width would claim a certainty the curve does not have."""
    n, accuracy = [16, 32, 48], [0.5, 0.6, 0.64]
    assert fit(n, accuracy) is not None
    assert forecast(n, accuracy, budget=100, target=0.8, rng=np.random.default_rng(0)) is None
    assert forecast([*n, 64], [*accuracy, 0.67], budget=100, target=0.8,
                    rng=np.random.default_rng(0), draws=20) is not None


def test_exact_curve_gives_a_zero_width_interval():
    result = forecast(N, EXACT, budget=320, target=0.85, rng=np.random.default_rng(0), draws=20)
    assert result is not None
    assert result.points == 10 and result.draws == 20
    # least squares on exact points: parameters to ~1e-10 (seen under every OpenBLAS kernel),
    # so 1e-6 is far above the fit's error and far below any real change of the curve
    assert result.at_budget == pytest.approx(0.9 - 0.8 / np.sqrt(320), abs=1e-6)
    lo, hi = result.at_budget_interval
    assert hi - lo == pytest.approx(0.0, abs=1e-6)
    assert result.labels_for_target == pytest.approx(256.0, rel=1e-4)  # (0.8 / 0.05)^2
    assert result.labels_interval == pytest.approx((256.0, 256.0), rel=1e-4)
    assert result.reachable_share == 1.0


def noisy(seed: int) -> np.ndarray:
    return EXACT + np.random.default_rng(seed).normal(0.0, 0.01, len(N))


def test_interval_contains_the_truth_and_is_reproducible():
    def run(seed: int):
        return forecast(N, noisy(1), budget=320, target=0.85, rng=np.random.default_rng(seed),
                        draws=100)

    result = run(1)
    assert result is not None
    lo, hi = result.at_budget_interval
    assert lo < TRUE(320) < hi
    assert hi - lo > 0.01  # the noise shows in the interval
    low, high = result.labels_interval
    assert low < 256 < high
    assert 0.5 < result.reachable_share <= 1.0
    assert run(1) == result
    other = run(2)
    assert other.at_budget == result.at_budget  # the fit itself draws nothing
    assert other.at_budget_interval != result.at_budget_interval


def test_flat_curve_forecasts_its_level_and_never_the_target():
    flat = [0.7] * len(N)
    result = forecast(N, flat, budget=320, target=0.8, rng=np.random.default_rng(0), draws=20)
    assert result is not None
    assert result.at_budget == pytest.approx(0.7, abs=1e-6)
    assert result.labels_for_target is None and result.labels_interval is None
    assert result.reachable_share == 0.0
    assert describe(result.to_dict()) == ("forecast from 10 points: 0.700 at 320 labels (95 % 0.700–0.700); "
                                "0.8 beyond the fitted curve (reached in 0 % of draws)")


def test_without_target_only_the_budget_is_forecast():
    result = forecast(N, EXACT, budget=320, target=None, rng=np.random.default_rng(0), draws=5)
    assert result is not None
    assert result.labels_for_target is None and result.labels_interval is None
    assert result.reachable_share is None
    assert describe(result.to_dict()) == "forecast from 10 points: 0.855 at 320 labels (95 % 0.855–0.855)"


def test_describe_and_to_dict_of_an_exact_curve():
    result = forecast(N, EXACT, budget=320, target=0.85, rng=np.random.default_rng(0), draws=5)
    assert describe(result.to_dict()) == ("forecast from 10 points: 0.855 at 320 labels (95 % 0.855–0.855); "
                                "0.85 needs ~256 labels (95 % 256–256; reached in 100 % of draws)")
    data = json.loads(json.dumps(result.to_dict()))
    assert data == {"a": 0.9, "b": 0.8, "c": 0.5, "points": 10, "budget": 320, "at_budget": 0.8553,
                    "at_budget_interval": [0.8553, 0.8553], "target": 0.85,
                    "labels_for_target": 256.0, "labels_interval": [256.0, 256.0],
                    "reachable_share": 1.0, "draws": 5}


def test_backtest_on_an_exact_curve_has_no_error():
    result = backtest(N, EXACT)
    assert result is not None
    assert result.fitted_on == 5 and result.n == (96.0, 112.0, 128.0, 144.0, 160.0)
    assert result.mean_abs_error == pytest.approx(0.0, abs=1e-6)
    assert result.max_abs_error == pytest.approx(0.0, abs=1e-6)


def test_backtest_of_a_curve_that_flattens_after_the_first_half():
    # first half on TRUE, then a plateau at 0.80: the fit on the first half predicts TRUE there,
    # 0.9 − 0.8 / sqrt(n) = 0.818350, 0.824408, 0.829289, 0.833333, 0.836754 for n = 96 … 160
    accuracy = [*EXACT[:5], 0.80, 0.80, 0.80, 0.80, 0.80]
    result = backtest(N, accuracy)
    assert result is not None
    assert result.predicted == pytest.approx([0.818350, 0.824408, 0.829289, 0.833333, 0.836754],
                                             abs=1e-4)
    assert result.actual == (0.80,) * 5
    # errors 0.018350 + 0.024408 + 0.029289 + 0.033333 + 0.036754 = 0.142134, over 5
    assert result.mean_abs_error == pytest.approx(0.028427, abs=1e-4)
    assert result.max_abs_error == pytest.approx(0.036754, abs=1e-4)


def test_backtest_fits_on_at_least_three_points():
    assert backtest(N[:3], EXACT[:3]) is None
    result = backtest(N[:4], EXACT[:4])
    assert result is not None and result.fitted_on == 3 and result.n == (64.0,)
    assert result.predicted == pytest.approx([0.8], abs=1e-4)  # 0.9 − 0.8 / 8
