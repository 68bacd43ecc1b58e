"""Clustering on a real Dask CPU cluster, each algorithm against scikit-learn run directly on the same data."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from sklearn.cluster import DBSCAN, KMeans
from sklearn.datasets import make_blobs
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from tasks.cluster.clusterings import Clustering, is_kmeans, reclustered
from tasks.cluster.cpu import CpuBackend
from tasks.compute.clusters import SMALL_INPUT_BYTES, dask_cluster, local_processes
from tasks.cluster.density import seeded_rows
from tasks.cluster.dbscan import DensitySettings
from tasks.compute.gpus import choose_backend
from tasks.cluster.kmeans import kmeans_fit
from tasks.cluster.labels import NOISE, inertia
from tasks.cluster.reducer import fit_reducer
from tasks.cluster.run import dbscan_grid, k_search, kmeans_fits, recluster_largest, suggest_eps
from tasks.cluster.sample import row_uniform, slot_uniform
from tasks.errors import InputError

EXACT = DensitySettings(budget_bytes=2**30, exact_rows=10_000, core_sample=1_000, seed=0)


def same_partition(labels: np.ndarray, expected: np.ndarray) -> bool:
    """The same clusters and the same noise, whatever the cluster numbers (ours are by decreasing size)."""
    return bool(((labels == NOISE) == (expected == NOISE)).all() and adjusted_rand_score(expected, labels) == 1.0)


@pytest.fixture(scope="module")
def backend():
    with dask_cluster(backend="cpu", n_workers=2) as compute:
        assert not compute.gpu and compute.description == "LocalCluster with 2 CPU workers"
        yield CpuBackend(compute.client)


def test_small_inputs_run_on_worker_threads_of_this_process_and_large_ones_on_worker_processes():
    assert not local_processes("auto", SMALL_INPUT_BYTES - 1) and local_processes("auto", SMALL_INPUT_BYTES)
    assert local_processes("processes", 0) and not local_processes("threads", 10 * SMALL_INPUT_BYTES)
    with dask_cluster(backend="cpu", n_workers=2, processes=False) as compute:
        assert compute.description == "LocalCluster with 2 CPU workers in this process"
        assert set(compute.client.run(os.getpid).values()) == {os.getpid()}
        fit = CpuBackend(compute.client).kmeans(np.eye(8, dtype=np.float32).repeat(5, axis=0), [2], seed=0)[0]
        assert fit.k == 2 and len(np.unique(fit.labels)) == 2


def test_worker_processes_leave_a_terminals_ctrl_c_to_the_run(backend):
    """A terminal's Ctrl-C (SIGINT to the process group) also reached the worker processes: each printed
    tracebacks while the run was stopping them. The run closes them itself (tests/test_signals.py)."""
    handlers = backend.client.run(signal.getsignal, signal.SIGINT)
    assert len(handlers) == 2 and set(handlers.values()) == {signal.SIG_IGN}


@pytest.fixture(scope="module")
def blobs():
    X, truth = make_blobs(n_samples=600, n_features=16, centers=4, cluster_std=1.0, random_state=3)
    return X.astype(np.float32), truth


def test_the_reducer_equals_scikit_learn_pca_on_the_same_rows(blobs):
    X, _ = blobs
    for standardize in (False, True):
        reducer = fit_reducer(X[:200], 5, standardize, seed=1)
        scaler = StandardScaler().fit(X[:200]) if standardize else None
        prepare = scaler.transform if scaler else (lambda a: a)
        reference = PCA(n_components=5, svd_solver="randomized", iterated_power=4, random_state=1).fit(prepare(X[:200]))
        np.testing.assert_allclose(reducer.transform(X), reference.transform(prepare(X)), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(reducer.explained_variance_ratio, reference.explained_variance_ratio_, rtol=1e-5)


def test_kmeans_equals_scikit_learn_for_the_same_seed(backend, blobs):
    X, _ = blobs
    for fit in backend.kmeans(X, [3, 5], seed=7):
        reference = KMeans(n_clusters=fit.k, random_state=7, n_init=1).fit(X)
        assert (fit.labels == reference.labels_).all()
        np.testing.assert_allclose(fit.centres, reference.cluster_centers_, rtol=1e-5)
        assert inertia(X, fit.labels, fit.centres) == pytest.approx(reference.inertia_, rel=1e-4)


def test_kmeans_on_many_rows_seeds_on_a_seeded_subsample(blobs):
    from sklearn.cluster import kmeans_plusplus

    X, truth = blobs
    fit = kmeans_fit(X, 4, seed=5, seed_rows=100)
    rows = np.random.RandomState(5).choice(len(X), 100, replace=False)
    reference = KMeans(n_clusters=4, init=kmeans_plusplus(X[rows], 4, random_state=5)[0], n_init=1).fit(X)
    assert (fit.labels == reference.labels_).all()
    assert adjusted_rand_score(truth, fit.labels) > 0.99
    full = KMeans(n_clusters=4, random_state=5, n_init=1).fit(X)
    assert inertia(X, fit.labels, fit.centres) == pytest.approx(full.inertia_, rel=0.01)


def test_dbscan_and_k_distance_equal_scikit_learn(backend, blobs):
    X, _ = blobs
    results = backend.dbscan(X, [(2.0, 5), (1.0, 10)], EXACT)
    assert same_partition(results[0][0], DBSCAN(eps=2.0, min_samples=5).fit_predict(X))
    assert same_partition(results[1][0], DBSCAN(eps=1.0, min_samples=10).fit_predict(X))
    assert results[0][1]["method"] == "exact"
    distances, _ = NearestNeighbors(n_neighbors=10).fit(X).kneighbors(X[:50])
    np.testing.assert_allclose(backend.kth_neighbour_distance(X[:50], X, 10), distances[:, -1], rtol=1e-5)


def test_k_search_records_every_k_and_chooses_by_silhouette(backend, blobs):
    X, truth = blobs
    table, fits, chosen = k_search(backend, X, range(2, 8), seed=0, silhouette_sample=300, max_rows=10_000)
    assert table["k"].tolist() == list(range(2, 8))
    rows = np.random.RandomState(0).permutation(len(X))[:300]
    for _, row in table.iterrows():
        labels = fits[int(row.k)].labels
        expected = silhouette_score(X, labels, sample_size=300, random_state=0)
        assert row.silhouette == pytest.approx(expected, rel=1e-5)
        assert row.silhouette == pytest.approx(silhouette_score(X[rows], labels[rows]), rel=1e-5)
    assert chosen == int(table.loc[table.silhouette.idxmax(), "k"]) == 4
    assert adjusted_rand_score(truth, fits[4].labels) > 0.99
    assert (np.diff(table["inertia"]) < 0).all()


def test_eps_suggestion_is_the_knee_of_the_curve():
    curve = np.concatenate([np.linspace(1.0, 1.2, 90), np.linspace(2.0, 10.0, 10)])
    assert suggest_eps(np.random.default_rng(0).permutation(curve)) == pytest.approx(1.2)


def test_dbscan_grid_is_complete_and_each_cell_matches_scikit_learn(backend, blobs):
    X, _ = blobs
    grid, cells = dbscan_grid(backend, X, [0.8, 1.5, 3.0], [5, 15], EXACT)
    assert len(grid) == 6 and set(zip(grid.eps, grid.min_samples)) == {(e, m) for e in (0.8, 1.5, 3.0) for m in (5, 15)}
    for _, row in grid.iterrows():
        expected = DBSCAN(eps=row.eps, min_samples=row.min_samples).fit_predict(X)
        assert row.clusters == len(set(expected) - {NOISE}) and row.noise == (expected == NOISE).sum()
        assert same_partition(cells[(row.eps, row.min_samples)][0], expected) and row.method == "exact"
        assert sum(__import__("json").loads(row.sizes)) + row.noise == len(X)


def test_recluster_largest_nests_and_equals_scikit_learn_on_the_subset(backend, blobs):
    X, _ = blobs
    top = backend.kmeans(X, [2], seed=0)[0].labels
    levels = recluster_largest(backend, X, top, k=3, depth=2, seed=0, max_rows=10_000)
    assert len(levels) == 2
    largest = np.bincount(top).argmax()
    inside = top == largest
    assert ((levels[0].labels != NOISE) == inside).all()
    expected = KMeans(n_clusters=3, random_state=0, n_init=1).fit(X[inside]).labels_
    assert (levels[0].labels[inside] == expected).all()
    second = np.bincount(levels[0].labels[inside]).argmax()
    assert ((levels[1].labels != NOISE) == (levels[0].labels == second)).all()


@pytest.mark.parametrize("backend_name, gpus, expected", [("auto", 0, False), ("auto", 2, True), ("cpu", 2, False),
                                                          ("gpu", 1, True)])
def test_backend_choice(backend_name, gpus, expected):
    assert choose_backend(backend_name, gpus) is expected


def test_gpu_backend_asked_for_without_gpu_is_an_error():
    with pytest.raises(InputError, match="--backend gpu: no GPU is visible, or the gpu extra is not installed"):
        choose_backend("gpu", 0)


def test_kmeans_above_its_row_cap_fits_a_seeded_subsample_and_labels_every_row(backend, blobs):
    X, truth = blobs
    capped = kmeans_fits(backend, X, [4], seed=0, max_rows=200)[0]
    rows = np.sort(np.random.RandomState(0).choice(len(X), 200, replace=False))
    reference = KMeans(n_clusters=4, random_state=0, n_init=1).fit(X[rows])
    np.testing.assert_allclose(capped.centres, reference.cluster_centers_, rtol=1e-5)
    assert (capped.labels == reference.predict(X)).all() and adjusted_rand_score(truth, capped.labels) > 0.99


def test_clustering_names_are_the_strings_summary_json_records():
    names = [Clustering.KMEANS, Clustering.DBSCAN, reclustered(1), reclustered(2)]
    assert names == ["kmeans", "dbscan", "kmeans_r1", "kmeans_r2"]
    assert is_kmeans(Clustering.KMEANS) and is_kmeans(reclustered(3)) and not is_kmeans(Clustering.DBSCAN)


def test_seeded_draws_follow_the_row_not_its_position():
    rng = np.random.default_rng(0)
    feature, layer, head = rng.integers(0, 10**6, 500), rng.integers(0, 24, 500), rng.integers(0, 16, 500)
    order, slot = rng.permutation(500), layer * 16 + head
    drawn = row_uniform(feature, layer, head, 3)
    assert ((drawn >= 0) & (drawn < 1)).all() and not np.array_equal(drawn, row_uniform(feature, layer, head, 4))
    assert np.array_equal(row_uniform(feature[order], layer[order], head[order], 3), drawn[order])
    assert np.array_equal(slot_uniform(feature[order], slot[order], 3), slot_uniform(feature, slot, 3)[order])


def test_one_seeded_row_choice_gives_what_the_report_and_compare_explorers_drew():
    for n, cap, seed in [(5, 10, 0), (10, 10, 1), (1000, 100, 3), (101, 50, 7)]:
        before = np.arange(n) if n <= cap else np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))
        np.testing.assert_array_equal(seeded_rows(n, cap, seed), before)
