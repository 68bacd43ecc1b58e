"""The CPU backend: scikit-learn and the chunked density methods as jobs on the Dask workers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tasks.cluster.dbscan import agreement_on_subsample, settled_grid
from tasks.cluster.density import kth_neighbour_distances
from tasks.cluster.kmeans import kmeans_fit


def _silhouette_job(X: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(X, labels))


def with_threads(threads: int, job, *args):
    """`job(*args)` with `threads` BLAS and OpenMP threads (Dask starts its workers with one)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return job(*args)


class CpuBackend:
    """scikit-learn and the chunked density methods on the Dask workers: independent fits (k values, grid
    cells) run side by side."""

    name = "scikit-learn on Dask CPU workers"

    def __init__(self, client) -> None:
        self.client = client
        self.workers = max(1, len(client.nthreads()))
        self.cores = max(1, sum(client.nthreads().values()))

    def _shared(self, X: np.ndarray):
        return self.client.scatter(X, broadcast=True, hash=False)

    def _one(self, job, *args):
        return self.client.submit(job, *args, pure=False).result()

    def kmeans(self, X, ks, seed):
        """A single fit runs here with every core; several fits run side by side, one per worker."""
        if len(ks) == 1:
            return [kmeans_fit(X, ks[0], seed)]
        data = self._shared(X)
        return self.client.gather([self.client.submit(kmeans_fit, data, k, seed, pure=False) for k in ks])

    def dbscan(self, X, cells, settings):
        """The whole grid in one job, which shares one neighbour-counting pass between its cells and runs that
        pass and the cells on one thread per core of the cluster."""
        settings = replace(settings, threads=self.cores)
        return self._one(with_threads, self.cores, settled_grid, self._shared(X), list(cells), settings)

    def dbscan_agreement(self, X, cell, settings):
        return self._one(with_threads, self.cores, agreement_on_subsample, self._shared(X), cell, settings)

    def kth_neighbour_distance(self, queries, X, k):
        data = self._shared(X)
        parts = np.array_split(queries, self.workers)
        return np.concatenate(self.client.gather([
            self.client.submit(kth_neighbour_distances, part, data, k, pure=False) for part in parts]))

    def silhouette(self, X, labels):
        return self._one(_silhouette_job, self._shared(X), labels)
