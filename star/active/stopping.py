"""When to stop labeling: signals that more labels have stopped changing the model, and a
forecast of what more labels would buy.

Stabilizing predictions (Bloodgood & Vijay-Shanker 2009): predictions on a fixed set that no
longer change mean new labels no longer change the model; Cohen's κ between consecutive
rounds, averaged over the last 3 round pairs, at 0.99 or more is the signal. Beside it, two
signals of Zhu et al. (2008) on the same set: the share of predictions that changed, and the
overall uncertainty (mean 1 − confidence); and, for strategies with a measure, the overall
uncertainty of the unlabeled pool (mean μ_f when a batch is chosen). The fixed set is the test
set when there is one (its labels are not read), else a sample of the pool. No labels are read
by any signal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

STOP_KAPPA = 0.99
STOP_WINDOW = 3


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float:
    """Cohen's κ of two labelings of the same items: (p_o − p_e) / (1 − p_e); 1.0 when both
    give one and the same label throughout (p_e = 1)."""
    if len(first) != len(second) or not first:
        raise ValueError("κ needs two labelings of the same, non-empty list of items")
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    counts_a, counts_b = Counter(first), Counter(second)
    expected = sum(counts_a[label] * counts_b[label] for label in counts_a) / n**2
    if expected == 1.0:
        return 1.0
    return (observed - expected) / (1.0 - expected)


def stop_advised(kappas: Sequence[float | None]) -> bool:
    """True once the last `STOP_WINDOW` κ values all exist and average at least `STOP_KAPPA`."""
    window = list(kappas[-STOP_WINDOW:])
    return (len(window) == STOP_WINDOW and None not in window
            and sum(window) / STOP_WINDOW >= STOP_KAPPA)


def stability(previous: Sequence[str] | None, current: Sequence[str],
              confidence: Sequence[float]) -> dict[str, float | None]:
    """One round's signals on the fixed set: κ with the last round's predictions, the share of
    predictions that changed, and the overall uncertainty, mean(1 − confidence).

    κ is None when both rounds answer one and the same label for every example: it is 0/0
    there, and a model that answers one label has collapsed rather than settled, so it must
    not count towards the advice to stop."""
    uncertainty = float(1.0 - np.mean(confidence)) if len(confidence) else None
    if previous is None:
        return {"agreement": None, "changed": None, "uncertainty": uncertainty}
    changed = sum(a != b for a, b in zip(previous, current, strict=True)) / len(current)
    collapsed = len(set(previous) | set(current)) == 1
    return {"agreement": None if collapsed else cohen_kappa(previous, current),
            "changed": changed, "uncertainty": uncertainty}


def stopping_summary(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The signals as of the last round, for results.json, the status and the report."""
    kappas = [r.get("agreement") for r in rounds]
    window = [k for k in kappas[-STOP_WINDOW:] if k is not None]
    last = rounds[-1] if rounds else {}
    return {"kappa_window": (sum(window) / len(window)) if len(window) == STOP_WINDOW else None,
            "stop_advised": stop_advised(kappas), "changed": last.get("changed"),
            "uncertainty": last.get("uncertainty"),
            "pool_uncertainty": [r.get("pool_uncertainty") for r in rounds]}
