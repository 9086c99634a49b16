"""Per-class numbers of a round: which classes the model gets right, and which the batches hold.

On a skewed pool, accuracy hides a rare class: a model that never answers it loses only that
class's few test examples. Recall per class, balanced accuracy and macro-F1 weigh every class
alike, so they show whether a strategy found the rare class; the labels a batch holds against
the pool's show whether it looked for it (random draws each class at its pool share). Pure
functions of labels and counts, so the loop, the report and the tests share them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

CURVE_METRICS = {"accuracy": "accuracy", "macro_f1": "macro-F1"}
"""What learning curves, AUC and Table 1 can be computed on: a key of every round in
results.json -> how figures and tables name it."""


def _counts(predictions: Sequence[str], golds: Sequence[str | None], label: str
            ) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one class."""
    pairs = list(zip(predictions, golds, strict=True))
    hits = sum(p == label and g == label for p, g in pairs)
    return (hits, sum(p == label for p, _ in pairs) - hits,
            sum(g == label for _, g in pairs) - hits)


def class_recall(predictions: Sequence[str], golds: Sequence[str | None],
                 labels: Sequence[str]) -> dict[str, float | None]:
    """label -> the share of its test examples answered with it; None for a class the test
    set lacks (no example to get right). An answer outside `labels` is wrong for its gold."""
    recall: dict[str, float | None] = {}
    for label in labels:
        hits, _, misses = _counts(predictions, golds, label)
        recall[label] = hits / (hits + misses) if hits + misses else None
    return recall


def balanced_accuracy(predictions: Sequence[str], golds: Sequence[str | None],
                      labels: Sequence[str]) -> float:
    """The mean recall over the classes the test set holds (as scikit-learn's
    `balanced_accuracy_score`): chance level is 1/classes however skewed the test set."""
    known = [r for r in class_recall(predictions, golds, labels).values() if r is not None]
    return sum(known) / len(known)


def macro_f1(predictions: Sequence[str], golds: Sequence[str | None],
             labels: Sequence[str]) -> float:
    """The mean F1 over the classes that occur in the golds or the predictions.

    F1 = 2·TP / (2·TP + FP + FN), which is 2PR / (P + R) and 0 when TP = 0 (scikit-learn's
    `f1_score(average="macro", zero_division=0)` over the labels present). A class absent from
    both counts for nothing; a class the test set lacks but the model answers counts with F1 0,
    so answering a class that is not there is penalised; a class never answered has F1 0.
    """
    scores = []
    for label in labels:
        hits, false, misses = _counts(predictions, golds, label)
        if hits + false + misses:
            scores.append(2 * hits / (2 * hits + false + misses))
    return sum(scores) / len(scores)


def class_metrics(predictions: Sequence[str], golds: Sequence[str | None],
                  labels: Sequence[str]) -> dict[str, object]:
    """A round's `macro_f1`, `balanced_accuracy` and `class_recall` (label -> recall), as
    results.json keeps them; all None without labels (a generative task) or golds."""
    if not labels or not golds or None in golds:
        return {"macro_f1": None, "balanced_accuracy": None, "class_recall": None}
    return {"macro_f1": macro_f1(predictions, golds, labels),
            "balanced_accuracy": balanced_accuracy(predictions, golds, labels),
            "class_recall": class_recall(predictions, golds, labels)}


def batch_against_pool(batch: Mapping[str, int], pool: Mapping[str, int] | None
                       ) -> dict[str, tuple[float, float | None]]:
    """label -> (its share of the batch, its share of the pool the batch came from), over the
    labels of either; the pool's share is what random selection would take on average, None
    when the pool's labels are unknown (people label only what they are shown)."""
    size, pool_size = sum(batch.values()), sum((pool or {}).values())
    labels = sorted(set(batch) | set(pool or {}))
    return {label: (batch.get(label, 0) / size,
                    None if pool is None else pool.get(label, 0) / pool_size)
            for label in labels}


LOPSIDED = 0.5
"""Labels are lopsided when their rarest class holds under this share of an even split."""


def rarest_class(counts: Mapping[str, int], labels: Sequence[str]) -> tuple[str, int] | None:
    """The rarest class of `labels` and its count when the labels so far are lopsided: under
    `LOPSIDED` × n / classes (a class with no label counts 0); None when they are not. Then an
    unweighted loss lets the common classes outvote it, and on SST-2 with 10 % negatives random's
    adapters fell below the untrained prompt (docs/label-savings)."""
    n = sum(counts.get(label, 0) for label in labels)
    label = min(labels, key=lambda name: counts.get(name, 0))
    return (label, counts.get(label, 0)) if counts.get(label, 0) < LOPSIDED * n / len(labels) \
        else None
