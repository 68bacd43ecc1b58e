"""The CPU backend: scikit-learn and the chunked density methods as jobs on the Dask workers.

The workers are processes, each started with one BLAS and OpenMP thread (on this machine, or an existing
scheduler's), or, for small local inputs, threads of the flow process (tasks.compute). Inputs are sent to the workers from the flow process's host memory;
results come back there as NumPy arrays. Nothing runs on a GPU."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tasks.cluster.dbscan import agreement_on_subsample, agreement_subsample, settled_grid
from tasks.cluster.kmeans import kmeans_fit
from tasks.cluster.spread import Engine, SpreadRows, spread_grid, spread_kth


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
    side, one per worker thread; the DBSCAN++ grid and the knee run with the rows split across the workers, one
    block each (tasks.cluster.spread); a job that needs all the rows at once runs on one worker with as many
    threads as the cluster has cores."""

    name = "scikit-learn on Dask CPU workers"

    def __init__(self, client) -> None:
        self.client = client
        self.workers = max(1, len(client.nthreads()))
        self.cores = max(1, sum(client.nthreads().values()))
        self._blocks = SpreadRows(client)

    def _engine(self, seed: int = 0) -> Engine:
        return Engine(threads=max(1, self.cores // self.workers), seed=seed)

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
        """Beyond the exact rows, DBSCAN++ with X split into one block per worker (`spread_grid`), each worker's
        passes on its threads; up to them, the whole grid in one task on one worker (X sent to every worker), on
        one thread per core of the cluster. The labels come back to the flow process."""
        if len(X) > settings.exact_rows:
            return spread_grid(self._blocks(X), cells, settings, self._engine(settings.seed))
        settings = replace(settings, threads=self.cores)
        return self._one(with_threads, self.cores, settled_grid, self._shared(X), list(cells), settings)

    def dbscan_agreement(self, X, cell, settings):
        """One task on one worker, with the subsample of X sent to it: exact DBSCAN and DBSCAN++ there, with one
        thread per core of the cluster; the record comes back to the flow process."""
        return self._one(with_threads, self.cores, agreement_on_subsample, agreement_subsample(X, settings), len(X),
                         cell, settings)

    def kth_neighbour_distance(self, queries, X, k):
        """X split into one block per worker, the queries sent to every worker; each block's candidates come back
        to the flow process, where they are ranked (`spread_kth`)."""
        return spread_kth(self._blocks(X), queries, k, self._engine())

    def silhouette(self, X, labels):
        """One task on one worker thread (X sent to every worker, the labels with the task); the score comes back."""
        return self._one(_silhouette_job, self._shared(X), labels)
