"""The learning curve: its area (AUC), what accuracy the label budget will buy, and what a
target will cost.

The loop records a run's AUC and forecast in results.json after every round, and the reports
read them back, so both live here, below the loop, not in the reports' package.

An active-learning run spends labels round by round; before paying for more, the question is
whether the curve is still climbing. We fit the saturating inverse power law
acc(n) = a − b·n^(−c) (Figueroa et al. 2012, "Predicting sample size required for classification
performance") and extrapolate it. A curve has few points, so every number comes with a residual
bootstrap interval, and `backtest` checks how well the first half of a curve predicted the rest.
A forecast is advice: when it cannot be made, the functions return None instead of raising.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PARAMETERS = 3  # a, b, c: a fit needs at least this many points
LOWER = (0.0, 0.0, 0.01)  # a ∈ [0, 1], b ≥ 0 (the curve rises), c ∈ [0.01, 3]
UPPER = (1.0, np.inf, 3.0)


def auc(n_labeled: Sequence[float], accuracy: Sequence[float]) -> float:
    """Trapezoid area under accuracy vs labels, over the span of the labels axis.

    A flat curve at 0.7 has AUC 0.7; a single point is its own accuracy.
    """
    x, y = np.asarray(n_labeled, dtype=float), np.asarray(accuracy, dtype=float)
    if len(x) == 1:
        return float(y[0])
    span = x[-1] - x[0]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0) / span)


@dataclass(frozen=True)
class Curve:
    """The fitted law acc(n) = a − b·n^(−c): `a` is the accuracy it saturates at."""

    a: float
    b: float
    c: float

    def __call__(self, n: float | np.ndarray) -> float | np.ndarray:
        return self.a - self.b * np.power(n, -self.c)

    def labels_for(self, target: float) -> float | None:
        """Labels n at which the curve reaches `target`: n = (b / (a − target))^(1/c).

        None when the curve never gets there (target ≥ a), or only at a count beyond any float.
        """
        if target >= self.a:
            return None
        try:
            return (self.b / (self.a - target)) ** (1 / self.c)
        except OverflowError:
            return None


@dataclass(frozen=True)
class Forecast:
    """A fitted curve read at the budget and at the target, with 95 % bootstrap intervals.

    `points` is how many curve points the fit rests on; `draws` how many bootstrap refits
    succeeded. The label interval covers only the draws that reach the target at all;
    `reachable_share` says how many those were (None, like the label fields, without a target).
    """

    curve: Curve
    points: int
    budget: int
    at_budget: float
    at_budget_interval: tuple[float, float]
    target: float | None
    labels_for_target: float | None
    labels_interval: tuple[float, float] | None
    reachable_share: float | None
    draws: int

    def to_dict(self) -> dict[str, object]:
        """Plain rounded numbers for results.json."""

        def labels(x: float | None) -> float | None:
            return None if x is None else round(x, 1)

        return {
            "a": round(self.curve.a, 6), "b": round(self.curve.b, 6), "c": round(self.curve.c, 6),
            "points": self.points, "budget": self.budget, "at_budget": round(self.at_budget, 4),
            "at_budget_interval": [round(x, 4) for x in self.at_budget_interval],
            "target": self.target, "labels_for_target": labels(self.labels_for_target),
            "labels_interval": None if self.labels_interval is None
            else [labels(x) for x in self.labels_interval],
            "reachable_share": None if self.reachable_share is None
            else round(self.reachable_share, 3),
            "draws": self.draws,
        }


@dataclass(frozen=True)
class Backtest:
    """A curve fitted on the first `fitted_on` points, set against the points it did not see.

    Errors are absolute, in accuracy units (0–1) like the input.
    """

    curve: Curve
    fitted_on: int
    n: tuple[float, ...]
    actual: tuple[float, ...]
    predicted: tuple[float, ...]
    mean_abs_error: float
    max_abs_error: float


def fit(n: Sequence[float] | np.ndarray, accuracy: Sequence[float] | np.ndarray) -> Curve | None:
    """Least-squares fit of the power law; None with too few points or when it does not converge.

    The law is undefined at n ≤ 0, so such a point also gives None rather than a crash.
    """
    from scipy.optimize import OptimizeWarning, curve_fit  # here: `star status` starts fast

    x, y = np.asarray(n, dtype=float), np.asarray(accuracy, dtype=float)
    if len(x) < PARAMETERS or np.any(x <= 0):
        return None
    top = float(y.max())
    start = (top, max(top - float(y[0]), 0.0) * x[0] ** 0.5, 0.5)  # passes the first point
    with warnings.catch_warnings():  # a flat curve leaves c undetermined: no covariance, fine
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            params, _ = curve_fit(lambda labels, a, b, c: Curve(a, b, c)(labels), x, y, p0=start,
                                  bounds=(LOWER, UPPER))
        except RuntimeError:
            return None
    return Curve(*(float(p) for p in params))


def _interval(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def forecast(n: Sequence[float], accuracy: Sequence[float], *, budget: int,
             target: float | None, rng: np.random.Generator, draws: int = 200) -> Forecast | None:
    """Fit the curve, read it at `budget` (and `target`), and bootstrap 95 % percentile intervals.

    With a handful of points, resampling the points themselves would drop whole stretches of
    the curve, so we resample residuals: each draw adds residuals drawn with replacement to the
    fitted values, clips to [0, 1] and refits. Least-squares residuals understate the noise by
    the parameters they absorbed, so they are first scaled by sqrt(m / (m − 3)) for m points.
    None with 3 points or fewer (three parameters pass through three points exactly and leave no
    residual to measure the noise by: the interval would have zero width), or when the curve or
    every refit fails.
    """
    x, y = np.asarray(n, dtype=float), np.asarray(accuracy, dtype=float)
    m = len(x)
    curve = fit(x, y) if m > PARAMETERS else None
    if curve is None:
        return None
    fitted = curve(x)
    residuals = (y - fitted) * math.sqrt(m / (m - PARAMETERS))
    refits = (fit(x, np.clip(fitted + rng.choice(residuals, size=m), 0.0, 1.0))
              for _ in range(draws))
    curves = [c for c in refits if c is not None]
    if not curves:
        return None
    needed, labels_interval, share = None, None, None
    if target is not None:
        needed = curve.labels_for(target)
        reachable = [v for c in curves if (v := c.labels_for(target)) is not None]
        share = len(reachable) / len(curves)
        labels_interval = _interval(reachable) if reachable else None
    return Forecast(curve=curve, points=m, budget=budget, at_budget=float(curve(budget)),
                    at_budget_interval=_interval([float(c(budget)) for c in curves]),
                    target=target, labels_for_target=needed, labels_interval=labels_interval,
                    reachable_share=share, draws=len(curves))


def backtest(n: Sequence[float], accuracy: Sequence[float]) -> Backtest | None:
    """Fit on the first half of the points (at least 3) and predict the rest.

    This is the honest check of a forecast: it extrapolates exactly as `forecast` would, but
    to points that are already known. None with fewer than 4 points or when the fit fails.
    """
    x, y = np.asarray(n, dtype=float), np.asarray(accuracy, dtype=float)
    if len(x) < PARAMETERS + 1:
        return None
    k = max(PARAMETERS, math.ceil(len(x) / 2))
    curve = fit(x[:k], y[:k])
    if curve is None:
        return None
    predicted = np.asarray(curve(x[k:]))
    errors = np.abs(predicted - y[k:])
    return Backtest(curve=curve, fitted_on=k, n=tuple(x[k:].tolist()),
                    actual=tuple(y[k:].tolist()), predicted=tuple(predicted.tolist()),
                    mean_abs_error=float(errors.mean()), max_abs_error=float(errors.max()))


def _count(labels: float) -> str:
    return f"{labels:.0f}" if labels < 1e6 else f"{labels:.0e}"


def describe(forecast: dict[str, Any]) -> str:
    """One line for the status output, from `Forecast.to_dict()` as results.json keeps it,
    naming how many points the forecast rests on."""
    f = forecast
    lo, hi = f["at_budget_interval"]
    text = (f"forecast from {f['points']} points: {f['at_budget']:.3f} at {f['budget']} labels "
            f"(95 % {lo:.3f}–{hi:.3f})")
    if f["target"] is None:
        return text
    reached = f"reached in {100 * (f['reachable_share'] or 0.0):.0f} % of draws"
    if f["labels_for_target"] is None:
        return f"{text}; {f['target']:g} beyond the fitted curve ({reached})"
    spread = "" if f["labels_interval"] is None else \
        f"95 % {_count(f['labels_interval'][0])}–{_count(f['labels_interval'][1])}; "
    return f"{text}; {f['target']:g} needs ~{_count(f['labels_for_target'])} labels ({spread}{reached})"
