"""Batch rules against hand-worked picks: k-center's farthest-point order and ties, BADGE's first
pick, forced picks and D² sampling (checked against an explicit-embedding reference), the
Gumbel-top-k draws' limits and frequencies, and BADGE's memory at SmolLM2 scale."""

from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np
import pytest

from star.active.diversity import badge, gradient_distances, kcenter_greedy, stochastic_top_k


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


RULES = {
    "kcenter": lambda n, k: kcenter_greedy(np.arange(n, dtype=float)[:, None], k, first=0),
    "badge": lambda n, k: badge(np.full((n, 2), 0.5), np.ones((n, 3)), k, rng=rng()),
    "stochastic": lambda n, k: stochastic_top_k(np.ones(n), k, rng=rng()),
}


@pytest.mark.parametrize("rule", RULES)
def test_k_zero_is_empty_and_k_above_n_is_refused(rule):
    picks = RULES[rule](4, 0)
    assert picks.shape == (0,) and picks.dtype.kind == "i"
    assert sorted(RULES[rule](4, 4)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="cannot pick 5 of 4"):
        RULES[rule](4, 5)


# k-center


def test_kcenter_picks_the_farthest_point_each_time():
    points = np.array([0, 1, 2, 10, 11])[:, None]
    # From 0: 11 is farthest. Nearest distances then 0,1,2,1,0: point 2. Then 0,1,0,1,0: a tie
    # of 1 and 10, the lower index (1) wins, and 10 comes last.
    assert kcenter_greedy(points, 5, first=0).tolist() == [0, 4, 2, 1, 3]
    # From 10: 0 is farthest; nearest then 0,1,2,0,1: point 2; then 0,1,0,0,1: 1 before 11.
    assert kcenter_greedy(points, 5, first=3).tolist() == [3, 0, 2, 1, 4]
    assert kcenter_greedy(points, 2, first=0).tolist() == [0, 4]


def test_kcenter_breaks_ties_by_lowest_index_in_2d():
    # (3, 4) and (-4, 3) are both 5 from the origin: index 1 first. Then (-4, 3) is still 5
    # from its nearest pick (7.07 from (3, 4)) and (1, 0) only 1.
    points = np.array([[0, 0], [3, 4], [-4, 3], [1, 0]])
    assert kcenter_greedy(points, 4, first=0).tolist() == [0, 1, 2, 3]


def test_kcenter_never_repeats_a_pick_among_duplicates():
    assert kcenter_greedy(np.zeros((3, 1)), 3, first=1).tolist() == [1, 0, 2]
    points = np.array([[0], [5], [0], [5]])
    assert kcenter_greedy(points, 4, first=0).tolist() == [0, 1, 2, 3]


def test_kcenter_computes_in_float64():
    # Squared distances of 1e20 overflow float32 to inf, which would tie 1e20 and 3e20.
    points = np.array([[0], [1e20], [3e20]], dtype=np.float32)
    assert kcenter_greedy(points, 3, first=0).tolist() == [0, 2, 1]


def test_kcenter_refuses_bad_arguments():
    with pytest.raises(ValueError, match="first=5"):
        kcenter_greedy(np.zeros((3, 2)), 2, first=5)
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        kcenter_greedy(np.zeros(3), 2, first=0)


# BADGE

# a = p − onehot(argmax p); all values dyadic, so every distance below is exact.
# g0 = (−1/8, 1/8)·1, g1 = (−3/8, 3/8)·1, g2 = (−1/2, 1/2)·1/2 (argmax tie -> label 0)
THREE_PROBS = np.array([[0.875, 0.125], [0.625, 0.375], [0.5, 0.5]])
THREE_HIDDEN = np.array([[1.0], [1.0], [0.5]])


def gradient_factor(probs: np.ndarray) -> np.ndarray:
    return probs - np.eye(probs.shape[1])[probs.argmax(axis=1)]


def test_badge_starts_with_the_longest_gradient():
    # ||g||² = 1/32, 9/32, 1/8: example 1 whatever the seed.
    for seed in range(5):
        assert badge(THREE_PROBS, THREE_HIDDEN, 1, rng=rng(seed)).tolist() == [1]


def test_gradient_distances_by_hand():
    # From g1: g0 differs by (1/4, −1/4) -> 1/8; g2 = (−1/4, 1/4) differs by (1/8, −1/8) -> 1/32.
    distances = gradient_distances(gradient_factor(THREE_PROBS), THREE_HIDDEN, 1)
    assert distances.tolist() == [0.125, 0.0, 0.03125]


def test_badge_draws_the_second_pick_in_proportion_to_squared_distance():
    # D² = 1/8 and 1/32 -> example 0 with probability 0.8 (0.67 if it were ∝ D).
    draws = 4000
    second = [badge(THREE_PROBS, THREE_HIDDEN, 2, rng=rng(seed))[1] for seed in range(draws)]
    assert 0.77 <= second.count(0) / draws <= 0.83


def test_badge_forced_picks_and_duplicates():
    # Examples 0, 1 and 3 are one point, g = (1/4, −1/4)·2, ||g||² = 1/2; example 2 is
    # g = (−1/4, 1/4), ||g||² = 1/8. The first pick is 0 (lowest of the tie), the only nonzero D²
    # is then example 2's, and after it all D² are 0, so 1 and 3 follow in index order.
    probs = np.array([[0.25, 0.75], [0.25, 0.75], [0.75, 0.25], [0.25, 0.75]])
    hidden = np.array([[2.0], [2.0], [1.0], [2.0]])
    for seed in range(20):
        assert badge(probs, hidden, 4, rng=rng(seed)).tolist() == [0, 2, 1, 3]


def random_case(seed: int, n: int = 12, labels: int = 3, width: int = 4):
    generator = rng(seed)
    logits = generator.normal(size=(n, labels)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, generator.normal(size=(n, width))


def explicit_embeddings(probs: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    a = gradient_factor(probs)
    return (a[:, :, None] * hidden[:, None, :]).reshape(len(probs), -1)


def test_factorised_distances_equal_explicit_ones():
    probs, hidden = random_case(1)
    g = explicit_embeddings(probs, hidden)
    for centre in (0, 5, 11):
        explicit = ((g - g[centre]) ** 2).sum(axis=1)
        factorised = gradient_distances(gradient_factor(probs), hidden, centre)
        np.testing.assert_allclose(factorised, explicit, rtol=1e-12, atol=1e-14)


def test_duplicates_are_exactly_zero_apart_at_realistic_width():
    # With C = 64 and d = 576 the factorisation leaves ~1e-15 relative noise of either sign;
    # the module must report an example's distance to itself and to its copies as exactly 0.
    for seed in range(10):
        probs, hidden = random_case(seed, n=6, labels=64, width=576)
        probs[3], hidden[3] = probs[0], hidden[0]
        for centre in (0, 1, 3):
            distances = gradient_distances(gradient_factor(probs), hidden, centre)
            assert (distances >= 0).all() and distances[centre] == 0.0
            assert centre == 1 or distances[0] == distances[3] == 0.0


def test_badge_falls_back_on_duplicates_at_realistic_width():
    # Examples 0, 2, 4 are copies of X, examples 1, 3 copies of Y, whose gradient is 3x longer:
    # Y's first copy (1) starts, a copy of X is drawn (the three share one D²), and then every
    # D² is 0, so the remaining copies follow in index order.
    probs, hidden = random_case(5, n=2, labels=64, width=576)
    lengths = np.linalg.norm(gradient_factor(probs), axis=1) * np.linalg.norm(hidden, axis=1)
    hidden[1] *= 3 * lengths[0] / lengths[1]
    rows = [0, 1, 0, 1, 0]
    seconds = set()
    for seed in range(10):
        first, second, *rest = badge(probs[rows], hidden[rows], 5, rng=rng(seed)).tolist()
        assert first == 1 and second in (0, 2, 4)
        assert rest == sorted({0, 2, 3, 4} - {second})
        seconds.add(second)
    assert seconds == {0, 2, 4}


def naive_badge(probs: np.ndarray, hidden: np.ndarray, k: int,
                generator: np.random.Generator) -> list[int]:
    """BADGE on the explicit [n, C·d] embeddings, drawing with the same calls as the module."""
    g = explicit_embeddings(probs, hidden)
    picks = [int(np.argmax((g**2).sum(axis=1)))]
    while len(picks) < k:
        squared = np.min([((g - g[c]) ** 2).sum(axis=1) for c in picks], axis=0)
        squared[picks] = 0.0
        picks.append(int(generator.choice(len(g), p=squared / squared.sum())))
    return picks


def test_badge_equals_the_explicit_reference_draw_for_draw():
    for seed in range(5):
        probs, hidden = random_case(seed)
        expected = naive_badge(probs, hidden, 8, rng(100 + seed))
        assert badge(probs, hidden, 8, rng=rng(100 + seed)).tolist() == expected


def test_badge_is_reproducible_and_seed_dependent():
    probs, hidden = random_case(3, n=30)
    runs = {seed: badge(probs, hidden, 10, rng=rng(seed)).tolist() for seed in range(6)}
    assert badge(probs, hidden, 10, rng=rng(2)).tolist() == runs[2]
    assert all(len(set(picks)) == 10 for picks in runs.values())
    assert len({tuple(picks) for picks in runs.values()}) > 1


def test_badge_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="must agree on n"):
        badge(np.full((3, 2), 0.5), np.ones((4, 5)), 1, rng=rng())


def test_badge_memory_stays_far_below_the_explicit_embeddings():
    n, labels, width, k = 10_000, 64, 576, 16  # SmolLM2's hidden size
    generator = rng(7)
    logits = generator.standard_normal((n, labels), dtype=np.float32) * 3
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    hidden = generator.standard_normal((n, width), dtype=np.float32)
    explicit = n * labels * width * 8
    tracemalloc.start()
    start = time.perf_counter()
    try:
        picks = badge(probs, hidden, k, rng=rng(0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - start
    print(f"\nBADGE n={n} C={labels} d={width} k={k}: peak {peak / 2**20:.1f} MiB "
          f"({peak / explicit:.2%} of the explicit {explicit / 2**30:.2f} GiB), {seconds:.2f} s")
    assert len(set(picks.tolist())) == k
    assert peak < 0.1 * explicit


# stochastic top-k


def test_softmax_with_huge_beta_is_plain_top_k():
    scores = rng(0).permutation(np.linspace(0.0, 1.0, 50))
    for seed in range(5):
        picks = stochastic_top_k(scores, 10, rng=rng(seed), mode="softmax", beta=1e6)
        assert picks.tolist() == np.argsort(-scores)[:10].tolist()


def test_power_picks_the_only_nonzero_score_first():
    scores = np.array([0.0, 0.0, 5.0, 0.0, 0.0])
    for seed in range(20):
        picks = stochastic_top_k(scores, 3, rng=rng(seed), mode="power")
        assert picks[0] == 2 and len(set(picks.tolist())) == 3


def test_picks_are_in_descending_perturbed_order():
    scores = np.array([0.5, 2.0, 1.0, 0.0, 3.0])
    gumbel = rng(4).gumbel(size=5)
    for mode, log_weights in (("power", 2 * np.log(np.maximum(scores, 1e-12))),
                              ("softmax", 2 * scores)):
        expected = np.argsort(-(log_weights + gumbel))[:4].tolist()
        assert stochastic_top_k(scores, 4, rng=rng(4), mode=mode, beta=2.0).tolist() == expected


def test_same_seed_same_picks():
    scores = rng(1).random(40)
    runs = [stochastic_top_k(scores, 8, rng=rng(seed), mode="softmax", beta=3.0).tolist()
            for seed in (9, 9, 10)]
    assert runs[0] == runs[1] != runs[2]


@pytest.mark.parametrize(("mode", "scores"),
                         [("power", [3.0, 1.0]), ("softmax", [math.log(3), 0.0])])
def test_first_pick_frequencies_follow_the_weights(mode, scores):
    draws = 4000
    first = sum(stochastic_top_k(np.array(scores), 1, rng=rng(seed), mode=mode)[0] == 0
                for seed in range(draws))
    assert 0.72 <= first / draws <= 0.78


def test_stochastic_refuses_bad_modes_and_negative_powers():
    with pytest.raises(ValueError, match="unknown mode 'top'; allowed: power, softmax"):
        stochastic_top_k(np.ones(3), 1, rng=rng(), mode="top")
    with pytest.raises(ValueError, match="scores >= 0"):
        stochastic_top_k(np.array([1.0, -0.5]), 1, rng=rng(), mode="power")
