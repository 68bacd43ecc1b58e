"""The CPU backend: scikit-learn and the chunked density methods as jobs on the Dask workers.

The workers are processes, each started with one BLAS and OpenMP thread (on this machine, or an existing
scheduler's), or, for small local inputs, threads of the flow process (tasks.compute). Inputs are sent to the workers from the flow process's host memory;
results come back there as NumPy arrays. Nothing runs on a GPU."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tasks.cluster.dbscan import agreement_on_subsample, settled_grid
from tasks.cluster.density import kth_neighbour_distances
from tasks.cluster.kmeans import kmeans_fit


def _silhouette_job(X: np.ndarray, labels: np.ndarray) -> float:
    """scikit-learn's silhouette score, on the worker that runs the job, with that worker's threads."""
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(X, labels))


def with_threads(threads: int, job, *args):
    """`job(*args)` with `threads` BLAS and OpenMP threads (Dask starts its workers with one)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return job(*args)


class CpuBackend:
    """scikit-learn and the chunked density methods on the Dask workers: independent fits (k values) run side by
    side, one per worker thread; a job that shares one pass between its parts (the DBSCAN grid) runs on one worker
    with as many threads as the cluster has cores."""

    name = "scikit-learn on Dask CPU workers"

    def __init__(self, client) -> None:
        self.client = client
        self.workers = max(1, len(client.nthreads()))
        self.cores = max(1, sum(client.nthreads().values()))

    def _shared(self, X: np.ndarray):
        """X sent from the flow process to every worker (broadcast), once for all the jobs that read it."""
        return self.client.scatter(X, broadcast=True, hash=False)

    def _one(self, job, *args):
        """`job(*args)` as one task on a worker the scheduler picks; its result comes back to the flow process."""
        return self.client.submit(job, *args, pure=False).result()

    def kmeans(self, X, ks, seed):
        """A single fit runs in the flow process on X as it is, with every core's BLAS and OpenMP threads; several
        fits send X to every worker and run side by side, one task per k on one worker thread each, their labels
        and centres gathered back to the flow process."""
        if len(ks) == 1:
            return [kmeans_fit(X, ks[0], seed)]
        data = self._shared(X)
        return self.client.gather([self.client.submit(kmeans_fit, data, k, seed, pure=False) for k in ks])

    def dbscan(self, X, cells, settings):
        """The whole grid in one task on one worker (X sent to every worker), which shares one neighbour-counting
        pass between its cells and runs that pass and the cells on one thread per core of the cluster; the labels
        come back to the flow process."""
        settings = replace(settings, threads=self.cores)
        return self._one(with_threads, self.cores, settled_grid, self._shared(X), list(cells), settings)

    def dbscan_agreement(self, X, cell, settings):
        """One task on one worker (X sent to every worker): exact DBSCAN and DBSCAN++ on a subsample, with one
        thread per core of the cluster; the record comes back to the flow process."""
        return self._one(with_threads, self.cores, agreement_on_subsample, self._shared(X), cell, settings)

    def kth_neighbour_distance(self, queries, X, k):
        """X sent to every worker, the queries cut into one part per worker and sent with its task; each part runs
        on a worker thread, the distances concatenated in the flow process."""
        data = self._shared(X)
        parts = np.array_split(queries, self.workers)
        return np.concatenate(self.client.gather([
            self.client.submit(kth_neighbour_distances, part, data, k, pure=False) for part in parts]))

    def silhouette(self, X, labels):
        """One task on one worker thread (X sent to every worker, the labels with the task); the score comes back."""
        return self._one(_silhouette_job, self._shared(X), labels)
