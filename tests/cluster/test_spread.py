"""The rows split across the workers of a real Dask cluster: the DBSCAN++ grid and the knee equal the
single-process passes row for row, and each worker holds only its own block of the rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from tasks.cluster import density
from tasks.cluster.cpu import CpuBackend
from tasks.cluster.dbscan import DensitySettings, dbscan_grid_labels
from tasks.cluster.spread import Engine, RowBlocks, spread_grid, spread_kth
from tasks.compute.clusters import dask_cluster
from points import planted_points

CELLS = [(4.0, 5), (5.5, 10), (5.5, 40), (7.0, 10)]
WORKERS = 3


@pytest.fixture(scope="module")
def planted() -> np.ndarray:
    return planted_points(4000, 20, seed=1, satellites=30, noise=35)


@pytest.fixture(scope="module")
def client():
    with dask_cluster(backend="cpu", n_workers=WORKERS, processes=False) as compute:
        yield compute.client


def _held_rows(client) -> dict[str, int]:
    """The rows of the largest 2-d array each worker holds."""
    return client.run(lambda dask_worker: max(
        (len(v) for v in dask_worker.data.values() if isinstance(v, np.ndarray) and v.ndim == 2), default=0))


def test_blocks_cover_the_rows_once_one_block_per_worker(client, planted):
    X = planted
    blocks = RowBlocks.scatter(client, X)
    assert len(set(blocks.workers)) == WORKERS and blocks.starts[0] == 0
    assert sorted(_held_rows(client).values()) == sorted(len(X[s:e]) for s, e in zip(
        blocks.starts, blocks.starts[1:] + [len(X)]))
    rows = np.array([0, 1, blocks.starts[1] - 1, blocks.starts[1], blocks.starts[2] + 5, len(X) - 1])
    np.testing.assert_array_equal(blocks.take(rows), X[rows])


def test_the_spread_grid_equals_the_single_process_grid(client, planted):
    X = planted
    settings = DensitySettings(budget_bytes=2**30, exact_rows=100, core_sample=1500, seed=0)
    expected = dbscan_grid_labels(X, CELLS, 2**30, seed=0, exact_rows=100, most_cores=1500)
    got = spread_grid(RowBlocks.scatter(client, X), CELLS, settings, Engine(threads=1))
    for (labels, record), (want, want_record) in zip(got, expected):
        np.testing.assert_array_equal(labels, want)
        assert record == want_record
    assert len({record["core_sample"] for _, record in got}) == 1 and got[0][1]["method"] == "dbscan++"
    assert max(len(np.unique(labels)) for labels, _ in got) > 3  # the cells find the planted groups


@pytest.mark.parametrize("k", [1, 10, 1500])
def test_the_spread_knee_is_the_exact_kth_distance(client, planted, k):
    X = planted[:3000]  # three blocks of 1000 rows: k=1500 needs candidates from more than one block
    queries = np.concatenate([X[::7], 3 * np.random.default_rng(2).standard_normal((50, 20)).astype(np.float32)])
    got = spread_kth(RowBlocks.scatter(client, X), queries, k, Engine())
    np.testing.assert_array_equal(got, density.kth_neighbour_distances(queries, X, k))
    reference = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(queries)[0][:, -1]
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5)


def test_the_knee_refuses_k_beyond_the_rows(client):
    with pytest.raises(ValueError, match="k=11 must be between 1 and the 10 rows"):
        spread_kth(RowBlocks.scatter(client, np.zeros((10, 2), np.float32)), np.zeros((1, 2), np.float32), 11,
                   Engine())


def test_fewer_rows_than_workers_make_fewer_blocks(client):
    X = np.arange(4, dtype=np.float32).reshape(2, 2)
    blocks = RowBlocks.scatter(client, X)
    assert len(blocks.parts) == 2
    np.testing.assert_array_equal(spread_kth(blocks, X, 2, Engine()), [np.sqrt(8)] * 2)


def test_the_cpu_backend_spreads_the_grid_and_no_worker_holds_every_row(client, planted):
    X = planted
    backend = CpuBackend(client)
    settings = DensitySettings(budget_bytes=2**30, exact_rows=100, core_sample=1500, seed=0)
    kth = backend.kth_neighbour_distance(X[:40], X, 10)
    grid = backend.dbscan(X, CELLS[:2], settings)
    assert max(_held_rows(client).values()) < len(X)  # blocks, the core sample and the queries; never X
    assert sorted(len(set(who)) for who in client.who_has(backend._blocks(X).parts).values()) == [1] * WORKERS
    np.testing.assert_array_equal(kth, density.kth_neighbour_distances(X[:40], X, 10))
    for (labels, _), (want, _) in zip(grid, dbscan_grid_labels(X, CELLS[:2], 2**30, seed=0, exact_rows=100,
                                                                most_cores=1500)):
        np.testing.assert_array_equal(labels, want)
