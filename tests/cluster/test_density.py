"""Density clustering at scale: exact neighbour counts and k-distances, DBSCAN++ against scikit-learn's DBSCAN,
the memory budget's choice of method, and the peak memory of DBSCAN++ on data where exact DBSCAN cannot fit."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from tasks.cluster.dbscan import agreement, dbscan_grid_labels, dbscan_labels, estimate_neighbours, exact_dbscan_bytes
from tasks.cluster.density import (
    ESTIMATE_ROWS,
    counts_and_nearest,
    dbscan_plus_plus,
    kth_neighbour_distances,
    neighbour_counts,
    row_ranges,
)
from tasks.cluster.resources import MemoryBudgetError
from tasks.errors import InputError
from points import distances, lattice, planted_points

EPS, MIN_SAMPLES = 5.5, 10


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray]:
    X = planted_points(6000, 20, seed=0, satellites=12, noise=15)
    return X, DBSCAN(eps=EPS, min_samples=MIN_SAMPLES).fit_predict(X)


def test_neighbour_counts_equal_brute_force():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((2000, 12)).astype(np.float32)
    queries = np.concatenate([data[::5], 3 * rng.standard_normal((200, 12)).astype(np.float32)])
    radii = [2.5, 3.5, 4.5]
    expected = np.stack([(distances(queries, data) <= r).sum(axis=1) for r in radii], axis=1)
    counts = neighbour_counts(queries, data, radii, chunk_rows=128)
    assert counts.dtype == np.int64 and counts.shape == (len(queries), 3)
    np.testing.assert_array_equal(counts, expected)
    assert counts[:400].min() >= 1  # a query in data counts itself


@pytest.mark.parametrize("spacing, offset", [(0.1, 7.3), (1.0, 0.0)])
def test_neighbour_counts_decide_pairs_at_the_radius_in_float64(spacing, offset):
    # A lattice puts thousands of pairs at the radii: rounded either way by float32 products (0.1 apart), or
    # exactly at the radius (1 apart), which counts as within.
    points = lattice(10, spacing, offset)
    radii = [spacing, spacing * np.sqrt(2), 3 * spacing]
    expected = np.stack([(distances(points, points) <= r).sum(axis=1) for r in radii], axis=1)
    np.testing.assert_array_equal(neighbour_counts(points, points, radii, chunk_rows=300), expected)


@pytest.mark.parametrize("k", [1, 7, 40])
def test_kth_neighbour_distances_equal_sklearn(k):
    rng = np.random.default_rng(2)
    data = rng.standard_normal((2000, 12)).astype(np.float32)
    queries = np.concatenate([data[::7], 3 * rng.standard_normal((150, 12)).astype(np.float32)])
    got = kth_neighbour_distances(queries, data, k, chunk_rows=128)
    reference = NearestNeighbors(n_neighbors=k).fit(data).kneighbors(queries)[0][:, -1]
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, np.sort(distances(queries, data), axis=1)[:, k - 1], rtol=1e-12)
    if k == 1:
        assert np.all(got[: len(data[::7])] == 0)  # itself first


def test_kth_neighbour_distances_separate_near_duplicates():
    # Pairs 1e-3 apart among rows of norm ~30: float32 products cannot rank a row against its twin.
    rng = np.random.default_rng(3)
    rows = 10 * rng.standard_normal((300, 10))
    data = np.concatenate([rows, rows + 1e-3 * rng.standard_normal(rows.shape)]).astype(np.float32)
    for k in (1, 2):
        expected = np.sort(distances(data, data), axis=1)[:, k - 1]
        np.testing.assert_allclose(kth_neighbour_distances(data, data, k, chunk_rows=128), expected, rtol=1e-9)


def test_full_core_sample_reproduces_dbscan(planted):
    X, exact = planted
    labels = dbscan_plus_plus(X, EPS, MIN_SAMPLES, core_sample=len(X), seed=0, chunk_rows=512)
    assert labels.dtype == np.int64
    assert adjusted_rand_score(exact, labels) >= 0.99
    np.testing.assert_array_equal(labels < 0, exact < 0)  # noise: no core within eps, in both
    assert len(np.unique(labels[labels >= 0])) == 4


def test_tenth_core_sample_agrees_with_dbscan_and_is_deterministic(planted):
    X, exact = planted
    labels = dbscan_plus_plus(X, EPS, MIN_SAMPLES, core_sample=len(X) // 10, seed=3, chunk_rows=512)
    record = agreement(labels, exact)
    assert record["adjusted_rand"] >= 0.95
    assert abs(record["noise_share"]["approximate"] - record["noise_share"]["exact"]) <= 0.02
    sizes = np.bincount(labels[labels >= 0])
    assert sizes.min() > 0 and np.all(np.diff(sizes) <= 0)  # clusters 0..c-1 by decreasing size
    again = dbscan_plus_plus(X, EPS, MIN_SAMPLES, core_sample=len(X) // 10, seed=3, chunk_rows=512)
    np.testing.assert_array_equal(labels, again)


def test_equal_clusters_are_numbered_by_their_first_row_and_outliers_are_noise():
    rng = np.random.default_rng(4)
    group = lambda centre, size: centre + 0.01 * rng.standard_normal((size, 2))
    outliers = [[50.0, 50.0], [0.7, 0.0]]  # far away, and just beyond eps of the group at the origin
    X = np.concatenate([group(10.0, 5), outliers, group(0.0, 5), group(-10.0, 6)]).astype(np.float32)
    labels = dbscan_plus_plus(X, eps=0.5, min_samples=3, core_sample=len(X), seed=0)
    np.testing.assert_array_equal(labels, [1] * 5 + [-1, -1] + [2] * 5 + [0] * 6)


def test_core_links_merged_on_the_last_block():
    X = np.array([[0, 0], [0, 0.1], [5, 5], [5, 5.1]], np.float32)  # the last block's links fill the buffer
    np.testing.assert_array_equal(dbscan_plus_plus(X, 0.5, 2, core_sample=4, seed=0, chunk_rows=2), [0, 0, 1, 1])


def test_budget_picks_exact_or_dbscan_plus_plus(planted):
    X, exact = planted
    row = X.itemsize * X.shape[1]
    labels, record = dbscan_labels(X, EPS, MIN_SAMPLES, budget_bytes=2**40, seed=0)
    assert record["method"] == "exact" and record["core_sample"] is None
    assert adjusted_rand_score(exact, labels) == 1.0 and np.array_equal(labels < 0, exact < 0)
    assert record["mean_neighbours"] == estimate_neighbours(X, EPS, ESTIMATE_ROWS, seed=0)

    budget = 64 * 2**20
    approx, small = dbscan_labels(X, EPS, MIN_SAMPLES, budget_bytes=budget, seed=0, chunk_rows=512)
    assert exact_dbscan_bytes(small["mean_neighbours"], len(X), row) > budget  # the exact method cannot fit
    assert small["method"] == "dbscan++" and small["core_sample"] == len(X)  # at least min(n, 20,000) rows
    assert small["estimated_bytes"] <= budget
    assert adjusted_rand_score(labels, approx) >= 0.95


def test_budget_too_small_for_the_minimum_core_sample_fails_in_one_line(planted):
    X, _ = planted
    with pytest.raises(MemoryBudgetError) as raised:
        dbscan_labels(X, EPS, MIN_SAMPLES, budget_bytes=1_000_000, seed=0)
    message = str(raised.value)
    assert isinstance(raised.value, InputError) and "\n" not in message
    assert "DBSCAN" in message and "6,000 rows" in message and "1,000,000" in message
    assert "--memory-budget" in message


def test_dbscan_plus_plus_memory_is_bounded_by_its_chunks():
    rng = np.random.default_rng(5)
    n, chunk_rows, core_sample = 60_000, 512, 3_000
    X = rng.standard_normal((n, 50)).astype(np.float32)  # one dense blob: every row is every row's neighbour
    eps = 12.0
    # Bound: 64 float64 chunk x chunk blocks, 64 bytes per row of X, 4 KiB per sampled core.
    bound = 64 * 8 * chunk_rows**2 + 64 * n + 4096 * core_sample
    tracemalloc.start()
    try:
        labels = dbscan_plus_plus(X, eps, 10, core_sample=core_sample, seed=0, chunk_rows=chunk_rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.all(labels == 0)
    assert peak < bound
    mean = estimate_neighbours(X, eps, sample_rows=200, seed=0)
    assert mean > 0.9 * n
    assert exact_dbscan_bytes(mean, n, X.itemsize * 50) > 100 * bound  # exact DBSCAN: over a hundred times more


def test_grid_equals_cell_by_cell(planted):
    X, _ = planted
    cells = [(EPS, MIN_SAMPLES), (EPS, 40), (5.0, MIN_SAMPLES)]
    row = X.itemsize * X.shape[1]
    budget = exact_dbscan_bytes(estimate_neighbours(X, 5.0, ESTIMATE_ROWS, 0), len(X), row) + 1  # 5.0 fits exactly
    grid = dbscan_grid_labels(X, cells, budget_bytes=budget, seed=0, chunk_rows=512)
    assert [record["method"] for _, record in grid] == ["dbscan++", "dbscan++", "exact"]
    for (eps, min_samples), (labels, record) in zip(cells, grid):
        single, single_record = dbscan_labels(X, eps, min_samples, budget_bytes=budget, seed=0, chunk_rows=512)
        np.testing.assert_array_equal(labels, single)
        assert {**record, "estimated_bytes": None} == {**single_record, "estimated_bytes": None}
        assert record["estimated_bytes"] >= single_record["estimated_bytes"]  # the grid keeps every cell's labels


def test_threads_split_the_work_without_changing_a_result(planted):
    X, _ = planted
    cells = [(EPS, MIN_SAMPLES), (EPS, 40), (5.0, MIN_SAMPLES)]
    one = dbscan_grid_labels(X, cells, budget_bytes=2**30, seed=0, chunk_rows=512, exact_rows=1000)
    two = dbscan_grid_labels(X, cells, budget_bytes=2**30, seed=0, chunk_rows=512, exact_rows=1000, threads=2)
    assert [record["method"] for _, record in two] == ["dbscan++"] * 3
    for (labels, _), (threaded, _) in zip(one, two):
        np.testing.assert_array_equal(threaded, labels)
    queries = X[::7]
    counts, nearest = counts_and_nearest(queries, X, [4.0, EPS], chunk_rows=512, nearest=True, threads=3)
    expected = distances(queries, X)
    np.testing.assert_array_equal(counts, np.stack([(expected <= r).sum(axis=1) for r in (4.0, EPS)], axis=1))
    np.testing.assert_array_equal(nearest, expected.argmin(axis=0))


@pytest.mark.parametrize("n, chunk_rows, parts", [(0, 8, 2), (5, 8, 3), (100, 8, 3), (100, 10, 10), (64, 8, 16)])
def test_row_ranges_cover_the_rows_at_chunk_boundaries(n, chunk_rows, parts):
    ranges = row_ranges(n, chunk_rows, parts)
    assert 1 <= len(ranges) <= max(1, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(stop == start for (_, stop), (start, _) in zip(ranges, ranges[1:]))
    assert all(start % chunk_rows == 0 for start, _ in ranges)


def test_agreement_reports_rand_index_noise_and_clusters():
    exact = np.array([0, 0, 1, 1, -1, -1])
    record = agreement(np.array([1, 1, 0, 0, -1, 2]), exact)
    assert record["noise_share"] == {"approximate": 1 / 6, "exact": 2 / 6}
    assert record["clusters"] == {"approximate": 3, "exact": 2}
    assert record["adjusted_rand"] == adjusted_rand_score(exact, [1, 1, 0, 0, -1, 2])
    assert agreement(exact, exact)["adjusted_rand"] == 1.0
