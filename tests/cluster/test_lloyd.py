"""KMeans with the rows split across the workers of a real Dask cluster (torch on the CPU device standing in for
each worker's GPU): the same partition as scikit-learn from the same seeds, a Lloyd fixed point, every k at once."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from tasks.cluster.kmeans import kmeans_fit
from tasks.cluster.labels import nearest_centre
from tasks.cluster.lloyd import kept, spread_kmeans
from tasks.cluster.spread import Engine, RowBlocks
from tasks.compute.clusters import dask_cluster


@pytest.fixture(scope="module")
def client():
    with dask_cluster(backend="cpu", n_workers=3, processes=False) as compute:
        yield compute.client


def _blobs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-20, 20, (6, 8))
    return (centres[rng.integers(0, 6, n)] + rng.standard_normal((n, 8))).astype(np.float32)


@pytest.mark.parametrize("seed_rows", [2_000, 50_000])  # seeds from a seeded choice of rows, or from every row
def test_the_partition_and_centres_are_scikit_learns_from_the_same_seeds(client, seed_rows):
    X = _blobs(6_000, seed=4)
    fits = spread_kmeans(RowBlocks.scatter(client, X), [3, 6], seed=7, engine=Engine(), seed_rows=seed_rows)
    for fit in fits:
        expected = kmeans_fit(X, fit.k, seed=7, seed_rows=seed_rows)
        assert adjusted_rand_score(expected.labels, fit.labels) == 1.0
        np.testing.assert_allclose(fit.centres, expected.centres, atol=1e-3)
    assert [fit.k for fit in fits] == [3, 6] and len(np.unique(fits[1].labels)) == 6


def test_every_row_is_labelled_by_its_nearest_centre_and_each_centre_is_its_rows_mean(client):
    X = np.random.default_rng(1).uniform(-1, 1, (5_000, 5)).astype(np.float32)  # no clusters to find
    (fit,) = spread_kmeans(RowBlocks.scatter(client, X), [12], seed=0, engine=Engine(), max_iter=1_000, tol=0)
    np.testing.assert_array_equal(fit.labels, nearest_centre(X, fit.centres))
    means = np.stack([X[fit.labels == c].mean(axis=0, dtype=np.float64) for c in range(12)])
    np.testing.assert_allclose(fit.centres, means, rtol=1e-9, atol=1e-9)  # a fixed point of Lloyd's iteration


def test_a_blocks_device_copy_is_kept_while_the_block_lives():
    X = np.ones((4, 2), np.float32)
    made = []
    first = kept(X, "copy", lambda: made.append(1) or X.copy())
    assert kept(X, "copy", lambda: made.append(1) or X.copy()) is first and made == [1]
    from tasks.cluster import lloyd

    del X
    gc.collect()
    assert not [key for key in lloyd._KEPT if key[0] == "copy"]  # dropped with its block
