"""The torch engine on the CPU device against the numpy passes and scikit-learn: identical counts, nearest rows,
k-th distances and DBSCAN++ labels, pairs at the radii decided in float64, far blocks skipped; the GPU backend on a
real Dask cluster with the engine on the CPU standing in for CUDA (rows split across its workers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from tasks.cluster import density
from tasks.cluster.dbscan import DensitySettings, dbscan_grid_labels
from tasks.cluster.kmeans import kmeans_fit
from tasks.cluster.engine import (
    Pairs, Points, Side, TorchPasses, core_components, counts_and_nearest, kth_candidates, on_device,
)
from points import distances, lattice, planted_points

CPU = torch.device("cpu")
CELLS = [(4.0, 5), (5.5, 10), (5.5, 40), (7.0, 10)]


@pytest.fixture(scope="module")
def planted() -> np.ndarray:
    return planted_points(5000, 20, seed=0, satellites=30, noise=35)


def test_counts_and_nearest_equal_the_numpy_pass(planted):
    X = planted
    queries = density.seeded_rows(len(X), 1500, 1)
    radii = [5.5, 4.0, 7.0]  # unsorted on purpose
    expected, nearest = density.counts_and_nearest(X[queries], X, radii, 256, nearest=True)
    points = Points(X, CPU)
    counts, got = counts_and_nearest(points, Points(X[queries], CPU, points.origin), radii, 256, nearest=True)
    np.testing.assert_array_equal(counts, expected)
    near = density.exact_sq(X, X[queries[nearest]]) <= 49.0  # rows with a query within the largest radius
    np.testing.assert_array_equal(got[near], nearest[near])


def test_blocks_beyond_the_largest_radius_are_skipped_without_changing_a_count():
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.standard_normal((1024, 8)), 100 + rng.standard_normal((1024, 8))]).astype(np.float32)
    X = X[rng.permutation(len(X))]
    points = Points(X, CPU)
    rows = points.order(np.arange(len(X)), 0)
    pairs = Pairs(np.array([9.0]), Side(points, rows, 128, False), Side(points, rows, 128, True))
    assert pairs.near.mean() < 0.6  # the two groups' blocks are 100 apart
    counts, _ = counts_and_nearest(points, points, [3.0], 128)
    np.testing.assert_array_equal(counts, density.neighbour_counts(X, X, [3.0], 128))


@pytest.mark.parametrize("spacing, offset", [(0.1, 7.3), (1.0, 0.0)])
def test_pairs_at_the_radius_are_decided_in_float64(spacing, offset):
    grid = lattice(10, spacing, offset)
    radii = [spacing, spacing * np.sqrt(2), 3 * spacing]
    expected = np.stack([(distances(grid, grid) <= r).sum(axis=1) for r in radii], axis=1)
    points = Points(grid, CPU)
    counts, _ = counts_and_nearest(points, points, radii, 300)
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(density.neighbour_counts(grid, grid, radii, 300), expected)
    # the same components as the numpy pass (all radii in one), every link decided in float64
    shared = density.NumpyPasses(300).components(grid, [np.ones(len(grid), bool)] * len(radii), radii)
    for eps, expected in zip(radii, shared):
        assert adjusted_rand_score(expected, core_components(points, eps, 300)) == 1.0


@pytest.mark.parametrize("k", [1, 10])
def test_kth_distances_equal_numpy_and_sklearn(planted, k):
    X = planted
    queries = np.concatenate([X[::9], 3 * np.random.default_rng(2).standard_normal((100, 20)).astype(np.float32)])
    got = density.kth_of(kth_candidates(Points(X, CPU), queries, k, 512), k)
    np.testing.assert_array_equal(got, density.kth_neighbour_distances(queries, X, k, 512))
    reference = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(queries)[0][:, -1]
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5)  # sklearn: float32 rounding


def test_grid_labels_equal_the_numpy_engine_cell_by_cell(planted):
    X = planted
    numpy = dbscan_grid_labels(X, CELLS, 2**30, seed=0, chunk_rows=512, exact_rows=100, most_cores=1500)
    with on_device(2):
        torch_grid = dbscan_grid_labels(X, CELLS, 2**30, seed=0, chunk_rows=512, exact_rows=100, most_cores=1500,
                                        passes=TorchPasses(CPU, 512))
    for (expected, record), (labels, torch_record) in zip(numpy, torch_grid):
        assert record["method"] == "dbscan++" and torch_record["core_sample"] == 1500
        np.testing.assert_array_equal(labels, expected)


def test_full_core_sample_is_exact_dbscan(planted):
    X = planted
    grid = dbscan_grid_labels(X, CELLS[:2], 2**30, seed=0, exact_rows=100, passes=TorchPasses(CPU, 512))
    for (eps, min_samples), (labels, record) in zip(CELLS[:2], grid):
        assert record["core_sample"] == len(X)
        exact = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(X)
        np.testing.assert_array_equal(labels < 0, exact < 0)
        assert adjusted_rand_score(exact, labels) >= 0.99  # border rows join their nearest core's cluster


def test_gpu_backend_runs_the_engine_on_a_dask_cluster_without_cuda_or_rapids(planted):
    from tasks.cluster.gpu import GpuBackend, rapids_installed
    from tasks.compute.clusters import dask_cluster

    assert not rapids_installed() and not torch.cuda.is_available()
    X = planted
    settings = DensitySettings(budget_bytes=2**30, exact_rows=100, core_sample=1500, seed=0)
    with dask_cluster(backend="cpu", n_workers=2, processes=False) as compute:
        gpu = GpuBackend(compute.client)
        grid = gpu.dbscan(X, CELLS, settings)
        kth = gpu.kth_neighbour_distance(X[:50], X, 10)
        fits = gpu.kmeans(X, [2, 4], seed=0)
    numpy = dbscan_grid_labels(X, CELLS, 2**30, seed=0, exact_rows=100, most_cores=1500)
    for (labels, record), (expected, _) in zip(grid, numpy):
        assert record["method"] == "dbscan++"
        np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(kth, density.kth_neighbour_distances(X[:50], X, 10))
    assert [fit.k for fit in fits] == [2, 4] and all(len(np.unique(fit.labels)) == fit.k for fit in fits)
    for fit in fits:  # the torch engine's Lloyd iterations over the blocks: scikit-learn's partition
        assert adjusted_rand_score(kmeans_fit(X, fit.k, seed=0).labels, fit.labels) >= 0.99
