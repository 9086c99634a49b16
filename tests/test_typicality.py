"""TypiClust (Hacohen et al. 2022): typicality, the seeded k-means, the picks and the score the
λ(t) mix reads, checked by hand on point sets small enough to work out on paper; then the
strategies and config keys that use them."""

from __future__ import annotations

import numpy as np
import pytest

from star.active import typicality as typ
from star.active.strategies import acquisition_scores, get_strategy, select_top
from star.active.typicality import (
    TYPICALITY_EPS,
    Clusters,
    cluster_pool,
    kmeans,
    mean_neighbour_distance,
    typical_scores,
    typicality,
    typiclust,
    unit_rows,
)
from star.config import load_config
from star.errors import ConfigError
from star.tools.cli import main

LINE = np.array([[0.0], [1.0], [3.0], [7.0]])
TWO_GROUPS = np.array([[0.0], [1.0], [2.5], [4.0], [6.0],  # A: 0-4, five examples
                       [100.0], [101.0], [102.5], [104.0]])  # B: 5-8, four
"""With k = 2, A's mean distances are 1.75, 1.25, 1.5, 1.75, 2.75 (most typical: 1, then 2)
and B's 1.75, 1.25, 1.5, 2.25 (most typical: 6, then 7)."""
NONE = np.zeros(len(TWO_GROUPS), dtype=bool)


def inverse(distances: list[float]) -> list[float]:
    return [1.0 / (d + TYPICALITY_EPS) for d in distances]


def mask(*labeled: int) -> np.ndarray:
    out = NONE.copy()
    out[list(labeled)] = True
    return out


@pytest.fixture(params=[typ.BLOCK, 1], ids=["one block", "a row a block"])
def block(request, monkeypatch):
    """Every result must be the same whether the distances come in one block or row by row."""
    monkeypatch.setattr(typ, "BLOCK", request.param)


def test_mean_neighbour_distance_by_hand(block):
    # 0: {1, 3} -> 2; 1: {1, 2} -> 1.5; 3: {2, 3} -> 2.5; 7: {4, 6} -> 5 (itself not counted)
    assert mean_neighbour_distance(LINE, 1) == pytest.approx([1, 1, 2, 4])
    assert mean_neighbour_distance(LINE, 2) == pytest.approx([2, 1.5, 2.5, 5])
    assert mean_neighbour_distance(LINE, 3) == pytest.approx([11 / 3, 3, 3, 17 / 3])
    # Euclidean, not squared: (0,0)-(3,4) is 5
    triangle = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]], dtype=np.float32)
    assert mean_neighbour_distance(triangle, 2) == pytest.approx([7.5, 5, 7.5])
    # a copy of a point is a neighbour at distance 0
    assert mean_neighbour_distance(np.array([[2.0], [2.0], [5.0]]), 1) == pytest.approx([0, 0, 3])
    with pytest.raises(ValueError, match="nearest of 3 other points"):
        mean_neighbour_distance(LINE, 4)


def test_typicality_uses_fewer_neighbours_in_a_small_cluster():
    assert typicality(LINE, 2) == pytest.approx(inverse([2, 1.5, 2.5, 5]))
    assert typicality(LINE) == pytest.approx(inverse([2, 1.5, 2.5, 5]))  # k = 20 -> 4 // 2
    assert typicality(LINE[:3]) == pytest.approx(inverse([1, 1, 2]))  # 3 // 2 = 1
    assert typicality(np.array([[4.0, 2.0]])) == pytest.approx([1 / TYPICALITY_EPS])


def test_kmeans_finds_two_obvious_clusters_and_replays(block):
    for seed in range(5):
        assignment = kmeans(TWO_GROUPS, 2, rng=np.random.default_rng(seed))
        assert len(set(assignment[:5])) == 1 and len(set(assignment[5:])) == 1
        assert assignment[0] != assignment[5]
        again = kmeans(TWO_GROUPS, 2, rng=np.random.default_rng(seed))
        assert np.array_equal(assignment, again)


def test_a_duplicate_seed_leaves_an_empty_cluster():
    """Three seeds for two distinct values: one seed repeats, its cluster stays empty."""
    points = np.array([[0.0], [0.0], [0.0], [5.0]])
    for seed in range(5):
        sizes = np.bincount(kmeans(points, 3, rng=np.random.default_rng(seed)), minlength=3)
        assert sorted(sizes) == [0, 1, 3]


def test_cluster_pool_typicality_leaves_labeled_examples_out(block):
    rng = np.random.default_rng(0)
    clusters = cluster_pool(TWO_GROUPS, NONE, 2, rng=rng, neighbours=2)
    assert clusters.count == 2
    assert clusters.typicality == pytest.approx(inverse([1.75, 1.25, 1.5, 1.75, 2.75,
                                                         1.75, 1.25, 1.5, 2.25]))
    # 102.5 labeled: B's other three use 3 // 2 = 1 neighbour, 100 {1}, 101 {1}, 104 {3}; it
    # scores 0
    labeled = mask(7)
    clusters = cluster_pool(TWO_GROUPS, labeled, 1, rng=rng, neighbours=2)
    assert clusters.count == 2  # |labeled| + step
    assert clusters.typicality[5:] == pytest.approx([*inverse([1, 1]), 0, *inverse([3])])


def test_unit_rows_by_hand():
    rows = unit_rows(np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]]))
    assert rows.dtype == np.float32
    assert rows == pytest.approx(np.array([[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]]))


def test_clusters_survive_a_large_common_offset():
    """float32 k-means compares x·c − ||c||²/2: at an offset of 10⁶, ||c||² ~ 10¹² rounds away
    the 10⁴ that tells A from B, unless the states are centred first (no distance moves)."""
    offset = np.hstack([TWO_GROUPS, np.full((len(TWO_GROUPS), 1), 1e6)]).astype(np.float32)
    for seed in range(5):
        assignment = cluster_pool(offset, NONE, 2, rng=np.random.default_rng(seed)).assignment
        assert len(set(assignment[:5])) == 1 and len(set(assignment[5:])) == 1
        assert assignment[0] != assignment[5]


def test_small_clusters_come_last_and_score_0():
    """Clusters 0 and 1 hold 3 examples each, cluster 2 one (an outlier): under min_size 3 it
    is visited only once 0 and 1 have nothing left, even under the cluster cap, where the
    visits go round 0 and 1 again first; in the mix it scores 0."""
    assignment = np.array([0, 0, 0, 1, 1, 1, 2])
    values = np.array([1.0, 3, 2, 6, 4, 5, 9])
    none = np.zeros(7, dtype=bool)
    rng = np.random.default_rng(0)
    first = int(np.argmin(np.random.default_rng(0).permutation(3)[:2]))  # 0 and 1 tie on size
    big = [[1, 2, 0], [3, 5, 4]]
    picks = [big[first][0], big[1 - first][0], big[first][1], big[1 - first][1]]
    assert typiclust(Clusters(3, assignment, values, 3), none, 4, rng=rng).tolist() == picks
    everything = typiclust(Clusters(3, assignment, values, 3), none, 7,
                           rng=np.random.default_rng(0)).tolist()
    assert everything[-1] == 6
    assert typiclust(Clusters(3, assignment, values), none, 3,  # min_size 0: one visit each
                     rng=np.random.default_rng(0)).tolist() == [*picks[:2], 6]
    assert typical_scores(Clusters(3, assignment, values, 3), none) == \
        pytest.approx([1 / 3, 1, 2 / 3, 1, 4 / 6, 5 / 6, 0])
    assert typical_scores(Clusters(3, assignment, values), none)[6] == 1
    # a cluster's labeled examples count towards its size (as in the reference code): with
    # 1 and 4 labeled, cluster 1 still holds 3 and comes before the outlier
    labeled = np.array([False, True, False, False, True, False, False])
    picks = typiclust(Clusters(3, assignment, values, 3), labeled, 5,
                      rng=np.random.default_rng(0)).tolist()
    assert sorted(picks[:4]) == [0, 2, 3, 5] and picks[4] == 6


def test_typiclust_picks_the_most_typical_of_the_largest_clusters():
    clusters = cluster_pool(TWO_GROUPS, NONE, 2, rng=np.random.default_rng(1), neighbours=2)
    assert typiclust(clusters, NONE, 2, rng=np.random.default_rng(2)).tolist() == [1, 6]  # A first


def test_typiclust_skips_a_labeled_cluster():
    for labeled, pick in ((mask(1), 6), (mask(7), 1)):
        rng = np.random.default_rng(3)
        clusters = cluster_pool(TWO_GROUPS, labeled, 1, rng=rng, neighbours=2)
        assert typiclust(clusters, labeled, 1, rng=rng).tolist() == [pick]


def test_typiclust_goes_round_again_under_the_cluster_cap():
    rng = np.random.default_rng(4)
    clusters = cluster_pool(TWO_GROUPS, NONE, 4, rng=rng, neighbours=2, max_clusters=2)
    assert clusters.count == 2
    assert typiclust(clusters, NONE, 4, rng=rng).tolist() == [1, 6, 2, 7]


def test_visiting_order_fewest_labeled_then_largest():
    clusters = Clusters(3, np.array([0, 0, 1, 1, 1, 2]), np.array([1.0, 2, 3, 1, 2, 5]))
    none = np.zeros(6, dtype=bool)
    assert typiclust(clusters, none, 3, rng=np.random.default_rng(0)).tolist() == [2, 1, 5]
    labeled = np.array([False, False, False, True, False, False])
    covered = Clusters(3, clusters.assignment, np.array([1.0, 2, 3, 0, 2, 5]))
    assert typiclust(covered, labeled, 3, rng=np.random.default_rng(0)).tolist() == [1, 5, 2]


def test_equal_sizes_are_ordered_by_the_generator():
    clusters = Clusters(2, np.array([0, 0, 1, 1]), np.array([1.0, 2, 4, 3]))
    picks = set()
    for seed in range(10):
        first = int(np.argmin(np.random.default_rng(seed).permutation(2)))
        pick = typiclust(clusters, np.zeros(4, dtype=bool), 1, rng=np.random.default_rng(seed))
        assert pick.tolist() == [[1, 2][first]]
        picks.add(int(pick[0]))
    assert picks == {1, 2}


def test_typical_scores_normalise_within_the_cluster_and_zero_covered_ones():
    clusters = Clusters(3, np.array([0, 0, 0, 1, 1, 2, 2]), np.array([1.0, 2, 4, 3, 6, 5, 0]))
    labeled = np.array([False] * 6 + [True])
    assert typical_scores(clusters, labeled) == pytest.approx([0.25, 0.5, 1, 0.5, 1, 0, 0])


def test_typicality_takes_the_base_slot_of_the_mix():
    """typiclust-me-star: λ·typical + (1 − λ)·μ_f, both min-max normalised over the pool."""
    strategy = get_strategy("typiclust-me-star")
    me_star = get_strategy("me-star")
    assert strategy.typical and not me_star.typical
    assert (strategy.measure, strategy.dynamic, strategy.mc_dropout, strategy.l2_on_b) == \
        (me_star.measure, me_star.dynamic, me_star.mc_dropout, me_star.l2_on_b)
    typical = np.array([0.25, 0.5, 1, 0.5, 1, 0])
    passes = np.array([[0.0, 1, 2, 3, 4, 5]])
    scores = acquisition_scores(strategy, passes, typical, weight=0.9)
    assert scores.score == pytest.approx([0.225, 0.47, 0.94, 0.51, 0.98, 0.1])
    assert select_top(scores.score, 2).tolist() == [4, 2]


def test_strategy_names():
    assert get_strategy("typiclust").measure is None and get_strategy("typiclust").typical
    assert get_strategy("typiclust-margin+dynamic+kcenter").rule == "kcenter"
    with pytest.raises(ConfigError, match="prefix typiclust-"):
        get_strategy("typiclust-me")  # no λ(t) mix to put typicality in


def test_warm_start_strategy_key():
    assert load_config(None).loop.warm_start_strategy == "random"
    for strategy in ("random", "me-star", "typiclust", "typiclust-me-star"):
        config = load_config(None, [f"strategy={strategy}", "loop.warm_start_strategy=typiclust"])
        assert config.loop.warm_start_strategy == "typiclust"
    with pytest.raises(ConfigError) as error:
        load_config(None, ["loop.warm_start_strategy=kmeans"])
    message = str(error.value)
    assert "loop.warm_start_strategy" in message and "'random' or 'typiclust'" in message
    assert "\n" not in message


def test_bad_warm_start_strategy_exits_2_with_one_line(tmp_path, capsys):
    code = main(["run", "--strategy", "random", "--out", str(tmp_path / "r"),
                 "--set", "loop.warm_start_strategy=kmeans"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "loop.warm_start_strategy" in err


def test_typical_mix_needs_a_weighted_mix():
    with pytest.raises(ConfigError, match=r"typiclust-me-star.*mix: weighted"):
        load_config(None, ["strategy=typiclust-me-star", "uncertainty.mix=subtract"])
