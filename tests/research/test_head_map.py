"""The map of the heads on planted distances: the Mantel test tells matched matrices from independent ones, MDS
and the hierarchical clustering recover planted blocks, the per-head means and the JS mean are as computed by
hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from sklearn.metrics import adjusted_rand_score

from tasks.research.head_map import head_groups, head_map, head_means, layout, mantel, mean_js

PERMUTATIONS = 999


def _random_distances(n: int, seed: int) -> np.ndarray:
    return squareform(pdist(np.random.default_rng(seed).normal(size=(n, 5))))


def _blocks(blocks: int = 3, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(distances, block of each head): heads near their block's centre, blocks far apart."""
    rng = np.random.default_rng(seed)
    block = np.repeat(np.arange(blocks), size)
    points = rng.normal(scale=10, size=(blocks, 4))[block] + rng.normal(scale=0.5, size=(len(block), 4))
    return squareform(pdist(points)), block


def test_mantel_p_is_small_for_a_noisy_monotone_transform_and_large_for_independent_matrices():
    a = _random_distances(24, 0)
    noise = squareform(np.random.default_rng(1).normal(scale=0.05, size=24 * 23 // 2))
    rho, p = mantel(a, np.log1p(a) + noise, PERMUTATIONS, 0)
    assert rho > 0.9 and p == pytest.approx(1 / (PERMUTATIONS + 1))
    rho, p = mantel(a, _random_distances(24, 2), PERMUTATIONS, 0)
    assert abs(rho) < 0.2 and p > 0.05


def test_mantel_matches_scipys_spearman_and_is_seeded():
    from scipy.stats import spearmanr

    a, b = _random_distances(12, 3), _random_distances(12, 4)
    upper = np.triu_indices(12, 1)
    assert mantel(a, b, 99, 0)[0] == pytest.approx(spearmanr(a[upper], b[upper]).statistic)
    assert mantel(a, b, 99, 5) == mantel(a, b, 99, 5)


def test_mds_and_the_hierarchical_clustering_recover_planted_blocks():
    distances, block = _blocks()
    assert adjusted_rand_score(block, head_groups(distances, 3)) == 1.0
    xy = layout(distances, 0)
    within = np.mean([np.linalg.norm(xy[block == b] - xy[block == b].mean(0), axis=1).mean() for b in range(3)])
    centres = np.array([xy[block == b].mean(0) for b in range(3)])
    assert within * 5 < pdist(centres).min()


def test_head_means_and_the_mean_js():
    values = np.arange(12, dtype=np.float16).reshape(6, 2)
    slot = np.array([0, 1, 0, 1, 2, 2])
    assert np.array_equal(head_means(values, slot, 4)[:3], [[2, 3], [4, 5], [9, 10]])
    assert np.isnan(head_means(values, slot, 4)[3]).all()
    summed = np.array([[0.2, 1.0], [3.0, 0.0]])
    assert np.array_equal(mean_js(summed, 2), [[0.0, 1.0], [1.0, 0.0]])


def test_the_map_table_layout_and_groups_against_dominant_clusters():
    distances, block = _blocks(blocks=3, size=4)
    embedding = distances * 2 + 1 - np.eye(12)
    result = head_map({"js": distances, "embedding": embedding}, {"dbscan": block, "kmeans": np.zeros(12, int)},
                      heads=4, permutations=PERMUTATIONS, seed=0)
    assert len(result.distances) == 12 * 11 // 2 and result.distances["pooled"].isna().all()
    first = result.distances.iloc[0]
    assert (first["layer_a"], first["head_a"], first["layer_b"], first["head_b"]) == (0, 0, 0, 1)
    assert first["js"] == distances[0, 1] and first["embedding"] == embedding[0, 1]
    row = result.agreement.iloc[0]
    assert (row["first"], row["second"]) == ("js", "embedding") and row["spearman"] == pytest.approx(1.0)
    assert result.source == "js" and list(result.layout["layer"]) == list(block)  # heads 4 a layer: a block a layer
    assert list(result.groups["clustering"]) == ["dbscan"]  # one dominant kmeans cluster: no groups to compare
    assert result.groups.iloc[0]["ari"] == 1.0 and "map_group_dbscan" in result.layout
