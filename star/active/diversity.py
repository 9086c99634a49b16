"""Batch rules: which k examples of the unlabeled pool a round sends to the annotators.

Taking the k most uncertain examples (the paper's rule) tends to fill a batch with near-copies
of one hard case: each says the same thing to the model, so most of the batch's labels are
wasted. The rules here spread a batch out, geometrically (k-center, BADGE), by sampling in
proportion to the score (power, softmax), or across the classes the model predicts (balanced),
so that a class it rarely predicts is not left out. They are pure numpy functions; every random
draw comes from the `np.random.Generator` passed in (the loop derives one per round, see
`star.seeding.numpy_rng`), so a resumed run picks the same batch again.
"""

from __future__ import annotations

import numpy as np

BATCH_RULES = ("top", "kcenter", "badge", "power", "softmax", "balanced")
"""How a round's batch is picked from the pool.

top: the k highest scores, the paper's rule; cheap, but blind to redundancy within a batch.
kcenter: greedy k-center on embeddings (Sener & Savarese 2018) among the most uncertain
    candidates (`selection.candidates` × k), from the highest score; the labeled examples are
    not counted as centres, so a pick may sit near one.
badge: k-means++ seeding on gradient embeddings (Ash et al. 2020); a gradient embedding is long
    when the model is unsure and points where the example would move the last layer, so the
    batch is both uncertain and diverse.
power, softmax: k draws without replacement with probability ∝ score^β or ∝ exp(β·score)
    (Kirsch et al. 2022); a cheap way to break up clusters of near-equal top scores.
balanced: the classes the model predicts take turns, the rarest in the pool first, each taking
    its highest score left; on a skewed pool, uncertainty alone may never reach a rare class.
"""

LABEL_RULES = ("badge", "balanced")
"""The rules that read the label distribution, which only choice tasks have."""

POWER_FLOOR = 1e-12
"""The weight a zero score gets in `power` mode: a zero-score example may be drawn, rarely,
and its log-weight stays finite."""

STOCHASTIC_MODES = ("power", "softmax")

DISTANCE_NOISE = 1e-10
"""Below this fraction of ||g_i||² + ||g_j||², a factorised squared distance is float noise.

The factorisation subtracts numbers of that size, leaving an error of about 1e-15 of it (either
sign) even between identical examples. With the floor, a pick and its copies are exactly 0 from
it, so `badge` never draws them, and once only copies are left its duplicate fallback applies."""


def _check_k(k: int, n: int) -> None:
    if not 0 <= k <= n:
        raise ValueError(f"cannot pick {k} of {n} candidates")


def kcenter_greedy(embeddings: np.ndarray, k: int, *, first: int) -> np.ndarray:
    """Greedy k-center: indices [k] in pick order, starting with `first`.

    Each pick is the point farthest from its nearest chosen point (ties -> lowest index), which
    2-approximates the batch whose coverage radius of the pool is smallest. Only the running
    nearest distance per point is kept, so a step costs O(n·d) and no n×n matrix is built.
    Distances are compared squared: the order is the same and no square roots are needed.
    embeddings: [n, d].
    """
    points = np.asarray(embeddings, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"embeddings must be [n, d], got shape {points.shape}")
    _check_k(k, len(points))
    if k == 0:
        return np.empty(0, dtype=np.intp)
    if not 0 <= first < len(points):
        raise ValueError(f"first={first} is not an index of {len(points)} points")
    picks = [first]
    nearest = np.full(len(points), np.inf)
    for _ in range(1, k):
        offsets = points - points[picks[-1]]
        np.minimum(nearest, np.einsum("ij,ij->i", offsets, offsets), out=nearest)
        nearest[picks[-1]] = -np.inf  # never again, even when every other point is a duplicate
        picks.append(int(np.argmax(nearest)))
    return np.array(picks, dtype=np.intp)


def gradient_distances(a: np.ndarray, h: np.ndarray, centre: int) -> np.ndarray:
    """Squared distances ||g_i − g_centre||² [n] between gradient embeddings g_i = a_i ⊗ h_i.

    ||a_i ⊗ h_i − a_j ⊗ h_j||² = ||a_i||²·||h_i||² + ||a_j||²·||h_j||² − 2·(a_i·a_j)·(h_i·h_j),
    so the [n, C·d] embeddings are never formed: O(n·(C+d)) time and memory.
    a: [n, C], h: [n, d]. Values at float-noise level (`DISTANCE_NOISE`), negatives included,
    become exactly 0.
    """
    norms = np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", h, h)
    squared = norms + norms[centre] - 2.0 * (a @ a[centre]) * (h @ h[centre])
    return np.where(squared > DISTANCE_NOISE * (norms + norms[centre]), squared, 0.0)


def badge(probs: np.ndarray, hidden: np.ndarray, k: int, *,
          rng: np.random.Generator) -> np.ndarray:
    """BADGE: k-means++ seeding on gradient embeddings; indices [k] in pick order.

    g_i = (p_i − onehot(argmax p_i)) ⊗ h_i is the last layer's gradient of the loss if the
    model's own guess were the label: its length measures uncertainty, its direction what the
    example would teach. The first pick is the longest g_i (ties -> lowest index); each next one
    is drawn ∝ D(i)², the squared distance to its nearest pick, so far-apart, long gradients are
    favoured without ruling anything out. When every unchosen D² is 0 (duplicates of picks),
    the lowest unchosen index is taken. Memory O(n·(C+d)): see `gradient_distances`.
    probs: [n, C] rows summing to 1; hidden: [n, d] last hidden states.
    """
    probs = np.asarray(probs, dtype=np.float64)
    hidden = np.asarray(hidden, dtype=np.float64)
    if probs.ndim != 2 or hidden.ndim != 2 or len(probs) != len(hidden):
        raise ValueError(f"probs [n, C] and hidden [n, d] must agree on n, got shapes "
                         f"{probs.shape} and {hidden.shape}")
    n = len(probs)
    _check_k(k, n)
    if k == 0:
        return np.empty(0, dtype=np.intp)
    a = probs.copy()
    a[np.arange(n), probs.argmax(axis=1)] -= 1.0
    lengths = np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", hidden, hidden)
    picks = [int(np.argmax(lengths))]
    chosen = np.zeros(n, dtype=bool)
    chosen[picks[0]] = True
    nearest = np.full(n, np.inf)
    for _ in range(1, k):
        np.minimum(nearest, gradient_distances(a, hidden, picks[-1]), out=nearest)
        total = nearest.sum()
        pick = int(rng.choice(n, p=nearest / total)) if total > 0 else int(np.argmin(chosen))
        picks.append(pick)
        chosen[pick] = True
    return np.array(picks, dtype=np.intp)


def stochastic_top_k(scores: np.ndarray, k: int, *, rng: np.random.Generator,
                     mode: str = "power", beta: float = 1.0) -> np.ndarray:
    """k indices drawn without replacement ∝ score^β (`power`) or ∝ exp(β·score) (`softmax`),
    in descending perturbed order.

    Uses the Gumbel-top-k trick: the top k of log-weight + Gumbel noise is such a draw, in one
    vectorised pass. β interpolates between uniform sampling (β = 0) and plain top-k (β → ∞).
    `power` needs scores ≥ 0; a zero score is floored at `POWER_FLOOR`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    _check_k(k, len(scores))
    if mode == "power":
        if (scores < 0).any():
            raise ValueError("power mode needs scores >= 0")
        log_weights = beta * np.log(np.maximum(scores, POWER_FLOOR))
    elif mode == "softmax":
        log_weights = beta * scores
    else:
        raise ValueError(f"unknown mode '{mode}'; allowed: {', '.join(STOCHASTIC_MODES)}")
    perturbed = log_weights + rng.gumbel(size=len(scores))
    return np.argsort(-perturbed, kind="stable")[:k]


def class_balanced(scores: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """k indices spread across the predicted classes, in pick order.

    An example's class is its most probable label. The classes take turns, the rarest in the
    pool's predicted counts first (equal counts: the earlier label), each taking its highest
    score not yet taken (equal scores: the lower index); a class with no example left sits out.
    So each class gets k // C picks or one more, the rarest ones the extra picks, unless it runs
    out. No random draw: the picks follow from scores and probs alone. Sorting, O(n log n).
    scores: [n]; probs: [n, C].
    """
    scores = np.asarray(scores, dtype=np.float64)
    probs = np.asarray(probs)
    if probs.ndim != 2 or len(probs) != len(scores):
        raise ValueError(f"scores [n] and probs [n, C] must agree on n, got shapes "
                         f"{scores.shape} and {probs.shape}")
    n = len(scores)
    _check_k(k, n)
    predicted = probs.argmax(axis=1)  # [n]
    counts = np.bincount(predicted, minlength=probs.shape[1])  # [C]
    rarity = np.argsort(np.argsort(counts, kind="stable"), kind="stable")[predicted]  # [n], 0: rarest
    queues = np.lexsort((-scores, rarity))  # class after class, rarest first; best score first
    rank = rarity[queues]
    turn = np.arange(n) - np.searchsorted(rank, rank)  # place in its class's queue
    return queues[np.lexsort((rank, turn))][:k]
