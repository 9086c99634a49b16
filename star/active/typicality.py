"""Typicality and TypiClust (Hacohen et al. 2022, "Active learning on a budget"): label-free
picks for the cold start.

With a few labels, the most uncertain examples are the worst ones to buy: a model that knows
little is unsure about outliers, and the labels it gets teach it about them. What a small
budget needs is coverage of the pool's dense regions. TypiClust clusters the pool (k-means of
the base model's hidden state at the answer position) into |labeled| + step clusters and takes,
from each of the largest clusters that hold no labeled example, its most typical example:
typicality(x) = 1 / mean distance from x to its k nearest neighbours in the cluster (dense is
typical). As in the reference code (avihu111/TypiClust), the states are scaled to unit length
(`unit_rows`), clusters are capped at 500, a cluster of fewer than 6 examples (an outlier's) is
visited only after every larger one (the reference code drops it), and typicality averages over
min(20, m // 2) neighbours in a cluster of m. Departures: the distances are the paper's
(Euclidean; the code's are squared), the cap and the two sizes are settings, and a cluster's
next most typical example is taken without recomputing typicality.

Pure numpy functions; every random draw (k-means++ seeds, the order of equal-sized clusters)
comes from the generator passed in. No n×n or n×clusters matrix is ever built: distances come
in blocks of `BLOCK` numbers. Measured on a synthetic 10^5 × 576 float32 pool (220 MiB, 40
skewed Gaussian modes, rows of length 1, one BLAS thread, tracemalloc): 16 clusters (a warm
start) 9 s and 328 MiB on top of the pool, 144 clusters (128 labels + 16) 30 s and 253 MiB;
220 MiB of each is the centred copy of the pool, the rest mostly copies of the largest cluster.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

NEIGHBOURS = 20
"""k of typicality (the paper's); a cluster of m < 2k examples uses m // 2 (the reference
code's rule: in a small cluster, density among half of it)."""
MAX_CLUSTERS = 500
"""The reference code's cap on the clusters: k-means costs n·clusters·d a step."""
MIN_CLUSTER_SIZE = 6
"""Clusters with fewer examples (labeled or not) are visited last and score 0 in the mix: a
k-means cluster that small is an outlier or two, and one pick from each cluster would buy
every outlier. The reference code drops clusters of 5 or fewer."""
KMEANS_STEPS = 100
"""Lloyd steps at most; k-means stops earlier once no example changes cluster."""
BLOCK = 1 << 22
"""Numbers in one block of distances (16 MB in float32): rows of the pool are taken this many
at a time, so memory does not grow with the pool."""
TYPICALITY_EPS = 1e-5
"""Added to the mean distance (as in the reference code): an example alone in its cluster,
or with k exact copies, has mean distance 0 and a finite typicality of 1/eps."""


def _rows(width: int) -> int:
    """Rows of a block whose rows hold `width` numbers each."""
    return max(1, BLOCK // max(width, 1))


def mean_neighbour_distance(points: np.ndarray, k: int) -> np.ndarray:
    """Mean Euclidean distance [m] from each point to its k nearest other points ([m, d] in).

    Distances come from ||a||² + ||b||² − 2a·b, a block of rows at a time ([rows, m], never
    [m, m]), after centring the points on their mean: the distances do not change, but the
    norms shrink to the cluster's own scale, so float32 loses little to the subtraction.
    Squared distances below 0 (rounding) count as 0; a point is not its own neighbour, a copy
    of it is (at distance 0)."""
    points = np.asarray(points)
    m = len(points)
    if not 0 < k < m:
        raise ValueError(f"cannot average the {k} nearest of {m - 1} other points")
    centred = points - points.mean(axis=0)
    norms = np.einsum("ij,ij->i", centred, centred)
    means = np.empty(m)
    step = _rows(m)
    for start in range(0, m, step):
        stop = min(start + step, m)
        squared = centred[start:stop] @ centred.T  # [rows, m]
        squared *= -2.0
        squared += norms[None, :]
        squared += norms[start:stop, None]
        np.maximum(squared, 0.0, out=squared)
        squared[np.arange(stop - start), np.arange(start, stop)] = np.inf  # itself
        nearest = np.partition(squared, k - 1, axis=1)[:, :k]
        means[start:stop] = np.sqrt(nearest).mean(axis=1)
    return means


def typicality(points: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """1 / (mean distance to the min(k, m // 2) nearest other points + eps), [m] of [m, d]."""
    m = len(points)
    if m == 1:
        return np.array([1.0 / TYPICALITY_EPS])
    return 1.0 / (mean_neighbour_distance(points, min(k, m // 2)) + TYPICALITY_EPS)


def unit_rows(states: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays 0), float32: TypiClust's distances are
    between directions, as the reference code's normalised features, so a few hidden-state
    dimensions of large magnitude do not decide the clusters alone."""
    states = np.asarray(states, dtype=np.float32)
    norms = np.linalg.norm(states, axis=1, keepdims=True)
    return states / np.where(norms > 0, norms, 1.0)


def _squared_distance_to(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """||x − centre||² [n], a block of rows at a time."""
    out = np.empty(len(points))
    step = _rows(points.shape[1])
    for start in range(0, len(points), step):
        offsets = points[start:start + step] - centre
        out[start:start + step] = np.einsum("ij,ij->i", offsets, offsets)
    return out


def kmeans_plus_plus(points: np.ndarray, count: int, *, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds (Arthur & Vassilvitskii 2007), [count, d] float64: the first a uniform
    draw, each next one drawn ∝ its squared distance to the nearest seed so far. When every
    point sits on a seed (fewer distinct points than seeds) the draw is uniform again; the
    duplicate seed's cluster then stays empty."""
    n = len(points)
    chosen = [int(rng.integers(n))]
    nearest = _squared_distance_to(points, points[chosen[0]])
    for _ in range(1, count):
        total = nearest.sum()
        chosen.append(int(rng.choice(n, p=nearest / total)) if total > 0 else int(rng.integers(n)))
        np.minimum(nearest, _squared_distance_to(points, points[chosen[-1]]), out=nearest)
    return points[chosen].astype(np.float64)


def _assign(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's nearest centre [n] (ties: the lower index), and the sum of each centre's
    points [clusters, d] (float64), in one pass over blocks of rows. Nearest is largest
    x·c − ||c||²/2, which drops the ||x||² every centre shares."""
    flat = centres.astype(points.dtype)
    half_norms = 0.5 * np.einsum("ij,ij->i", flat, flat)
    assignment = np.empty(len(points), dtype=np.intp)
    sums = np.zeros(centres.shape)
    step = _rows(max(len(centres), points.shape[1]))
    for start in range(0, len(points), step):
        block = points[start:start + step]
        closeness = block @ flat.T  # [rows, clusters]
        closeness -= half_norms
        nearest = np.argmax(closeness, axis=1)
        assignment[start:start + step] = nearest
        one_hot = np.zeros_like(closeness)
        one_hot[np.arange(len(block)), nearest] = 1.0
        sums += one_hot.T @ block
    return assignment, sums


def kmeans(points: np.ndarray, count: int, *, rng: np.random.Generator,
           steps: int = KMEANS_STEPS) -> np.ndarray:
    """Lloyd's k-means from k-means++ seeds: the cluster [n] (0 … count − 1) of each of the
    points [n, d]. Stops when no point changes cluster, or after `steps`. A cluster that
    empties keeps its centre and stays empty (size 0)."""
    points = np.asarray(points)
    if points.ndim != 2 or not 0 < count <= len(points):
        raise ValueError(f"cannot cut {points.shape} points into {count} clusters")
    centres = kmeans_plus_plus(points, count, rng=rng)
    assignment = np.full(len(points), -1, dtype=np.intp)
    for _ in range(steps):
        new, sums = _assign(points, centres)
        if np.array_equal(new, assignment):
            break
        assignment = new
        sizes = np.bincount(assignment, minlength=count)
        held = sizes > 0
        centres[held] = sums[held] / sizes[held, None]
    return assignment


@dataclass(frozen=True)
class Clusters:
    """The pool cut into k-means clusters, and each example's typicality within its own."""

    count: int
    assignment: np.ndarray
    """[n]: each example's cluster."""
    typicality: np.ndarray
    """[n]: an unlabeled example's typicality among its cluster's unlabeled examples (labeled
    ones are left out, as in the reference code); 0 for a labeled example."""
    min_size: int = 0
    """Clusters of fewer examples are visited last by `typiclust` and score 0 in
    `typical_scores` (`MIN_CLUSTER_SIZE`)."""

    def small(self) -> np.ndarray:
        """[count] bool: the clusters under `min_size`."""
        return np.bincount(self.assignment, minlength=self.count) < self.min_size


def cluster_pool(hidden: np.ndarray, labeled: np.ndarray, step: int, *, rng: np.random.Generator,
                 neighbours: int = NEIGHBOURS, max_clusters: int = MAX_CLUSTERS,
                 min_size: int = MIN_CLUSTER_SIZE) -> Clusters:
    """k-means of the pool's hidden states [n, d] into |labeled| + step clusters (at most
    `max_clusters`, at most n), and the typicality of every unlabeled example in its cluster.
    labeled: [n] bool, the examples with a label. The states are centred on their mean first,
    which moves no distance but keeps float32's x·c − ||c||²/2 from losing the clusters to a
    large common offset."""
    hidden, labeled = np.asarray(hidden), np.asarray(labeled, dtype=bool)
    if labeled.shape != (len(hidden),):
        raise ValueError(f"labeled must be a mask [{len(hidden)}], got shape {labeled.shape}")
    if not 0 < step <= int((~labeled).sum()):
        raise ValueError(f"cannot pick {step} of {int((~labeled).sum())} unlabeled examples")
    count = min(int(labeled.sum()) + step, max_clusters, len(hidden))
    hidden = hidden - hidden.mean(axis=0)
    assignment = kmeans(hidden, count, rng=rng)
    values = np.zeros(len(hidden))
    for members in _members(assignment, count, labeled):
        if len(members):
            values[members] = typicality(hidden[members], neighbours)
    return Clusters(count, assignment, values, min_size)


def _members(assignment: np.ndarray, count: int, labeled: np.ndarray) -> list[np.ndarray]:
    """Each cluster's unlabeled examples, in pool order."""
    free = np.flatnonzero(~labeled)
    order = free[np.argsort(assignment[free], kind="stable")]
    return np.split(order, np.cumsum(np.bincount(assignment[free], minlength=count))[:-1])


def typiclust(clusters: Clusters, labeled: np.ndarray, step: int, *,
              rng: np.random.Generator) -> np.ndarray:
    """TypiClust's `step` picks (pool positions, in pick order): the most typical unlabeled
    example of each cluster, visiting first the clusters with the fewest labeled examples
    (none, when there are |labeled| + step clusters), among those the largest, equal sizes in
    an order drawn by `rng`. With fewer clusters than picks (the cluster cap), the visits go
    round again, taking each cluster's next most typical example. Clusters under
    `clusters.min_size` are visited, the same way, only once the others have no example left.
    """
    labeled = np.asarray(labeled, dtype=bool)
    sizes = np.bincount(clusters.assignment, minlength=clusters.count)
    held = np.bincount(clusters.assignment[labeled], minlength=clusters.count)
    order = np.lexsort((rng.permutation(clusters.count), -sizes, held))  # last key first
    members = _members(clusters.assignment, clusters.count, labeled)
    small = clusters.small()
    visits = itertools.chain.from_iterable(
        _round_robin([members[c][np.argsort(-clusters.typicality[members[c]], kind="stable")]
                      for c in order if small[c] == last])
        for last in (False, True))
    return np.fromiter(itertools.islice(visits, step), dtype=np.intp, count=step)


def _round_robin(queues: list[np.ndarray]) -> Iterator[int]:
    """The queues' first items in queue order, then their second items, and so on."""
    longest = max((len(queue) for queue in queues), default=0)
    return (queue[visit] for visit in range(longest) for queue in queues if visit < len(queue))


def typical_scores(clusters: Clusters, labeled: np.ndarray) -> np.ndarray:
    """Typicality as a per-example score [n] for the λ(t) mix with uncertainty: an example's
    typicality over its cluster's highest (1 for the cluster's most typical), 0 in a cluster
    that holds a labeled example or is under `clusters.min_size` (and for labeled examples).

    Why per cluster: typicality is density, and density differs between clusters; raw values
    would fill a batch from the densest cluster, the redundancy TypiClust exists to avoid. So
    every uncovered cluster's best example scores 1, and top-k of the mix at λ ≈ 1 takes one
    typical example from each of many uncovered clusters, the tuned model's uncertainty
    deciding between them. Covered clusters score 0: their region is already labeled (past the
    cluster cap, once all are covered, the mix is the tuned model's uncertainty alone)."""
    labeled = np.asarray(labeled, dtype=bool)
    covered = np.bincount(clusters.assignment[labeled], minlength=clusters.count) > 0
    covered |= clusters.small()
    best = np.zeros(clusters.count)
    np.maximum.at(best, clusters.assignment, clusters.typicality)
    scores = np.zeros(len(clusters.assignment))
    uncovered = ~covered[clusters.assignment] & ~labeled
    scores[uncovered] = clusters.typicality[uncovered] / best[clusters.assignment[uncovered]]
    return scores
