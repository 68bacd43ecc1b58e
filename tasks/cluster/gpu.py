"""cuML backend of `tasks.cluster.ClusterBackend`: Dask GPU workers (LocalCUDACluster or a GPU scheduler), one
GPU each. GPU libraries are imported inside the methods, so this module imports on any machine.

Inputs leave the flow process's host memory for the workers, and reach a GPU's device memory only on a worker
(CuPy arrays); every result is copied back to host memory before it is returned. DBSCAN++ and the agreement check
run on a worker's CPU, as in the CPU backend."""

from __future__ import annotations

import math

import numpy as np

from tasks.cluster.backend import KMeansFit
from tasks.cluster.dbscan import agreement_on_subsample, exact_record, settled_grid


def _numpy(array) -> np.ndarray:
    """A host copy of a CuPy / cuDF / NumPy result."""
    if hasattr(array, "to_numpy"):
        return array.to_numpy()
    return array.get() if hasattr(array, "get") else np.asarray(array)


def _kth_distance_job(queries: np.ndarray, X: np.ndarray, k: int) -> np.ndarray:
    """On the worker that runs it: X and the queries copied to its GPU, cuML's exact nearest neighbours there, the
    k-th distances copied back to host memory."""
    import cupy as cp
    from cuml.neighbors import NearestNeighbors

    distances, _ = NearestNeighbors(n_neighbors=k).fit(cp.asarray(X)).kneighbors(cp.asarray(queries))
    return _numpy(distances[:, -1])


def _silhouette_job(X: np.ndarray, labels: np.ndarray) -> float:
    """On the worker that runs it: X and the labels copied to its GPU, cuML's silhouette score there."""
    import cupy as cp
    from cuml.metrics.cluster import silhouette_score

    return float(silhouette_score(cp.asarray(X), cp.asarray(labels)))


class GpuBackend:
    """cuML's multi-GPU PCA, KMeans and DBSCAN over the client's workers; single-GPU jobs on one worker."""

    name = "cuML on Dask GPU workers"

    def __init__(self, client, dbscan_batch_mb: int = 2048) -> None:
        self.client = client
        self.workers = max(1, len(client.nthreads()))  # scheduler_info() lists at most 5 workers
        self.dbscan_batch_mb = dbscan_batch_mb

    def _distributed(self, X: np.ndarray):
        """X as a Dask array of CuPy blocks, persisted on the workers: float32 rows cut into one block per worker
        in the flow process, each block sent to a worker and copied to that worker's GPU, where it stays."""
        import cupy as cp
        import dask.array as da

        rows = math.ceil(len(X) / self.workers)
        blocks = da.from_array(np.ascontiguousarray(X, dtype=np.float32), chunks=(rows, X.shape[1]))
        return self.client.persist(blocks.map_blocks(cp.asarray, dtype=np.float32))

    def _one(self, job, *args):
        """`job(*args)` as one task on a worker the scheduler picks (where its scattered inputs are, as a rule);
        its result comes back to the flow process."""
        return self.client.submit(job, *args, pure=False).result()

    def kmeans(self, X, ks, seed):
        """X persisted as one block per worker's GPU, once for every k; cuML's multi-GPU KMeans fits each k on all
        the workers' GPUs together, and predicts each block's labels on its GPU. The labels are gathered to the
        flow process (as one CuPy array where the blocks are CuPy) and copied to host memory, as are the centres."""
        from cuml.dask.cluster import KMeans

        data = self._distributed(X)
        fits = []
        for k in ks:
            model = KMeans(client=self.client, n_clusters=k, random_state=seed).fit(data)
            labels = _numpy(model.predict(data).compute()).astype(np.int64)
            fits.append(KMeansFit(k, labels, _numpy(model.cluster_centers_)))
        return fits

    def dbscan(self, X, cells, settings):
        """cuML's multi-GPU DBSCAN where the rows fit the exact method: the float32 rows, in host memory, copied
        whole to every worker and its GPU, each GPU labelling its share of the rows in batches of at most
        `dbscan_batch_mb`, the labels copied back to host memory. Beyond, X is sent to one worker and the density
        module's DBSCAN++ runs there on the CPU, on `settings.threads` threads: the CPU backend's method."""
        if len(X) > settings.exact_rows:
            return self._one(settled_grid, self.client.scatter(X, hash=False), list(cells), settings)
        from cuml.dask.cluster import DBSCAN

        data = np.ascontiguousarray(X, dtype=np.float32)
        return [
            (_numpy(DBSCAN(client=self.client, eps=eps, min_samples=min_samples,
                           max_mbytes_per_batch=self.dbscan_batch_mb).fit_predict(data, out_dtype="int64"))
             .astype(np.int64), exact_record("cuML"))
            for eps, min_samples in cells
        ]

    def dbscan_agreement(self, X, cell, settings):
        """X sent to one worker; exact DBSCAN (scikit-learn) and DBSCAN++ on a subsample run there on the CPU."""
        return self._one(agreement_on_subsample, self.client.scatter(X, hash=False), cell, settings)

    def kth_neighbour_distance(self, queries, X, k):
        """The queries and X sent to the workers, the job on one worker's GPU (`_kth_distance_job`)."""
        return self._one(_kth_distance_job, self.client.scatter(queries, hash=False),
                         self.client.scatter(X, hash=False), k)

    def silhouette(self, X, labels):
        """X sent to one worker, the labels with the task, the score computed on its GPU (`_silhouette_job`)."""
        return self._one(_silhouette_job, self.client.scatter(X, hash=False), labels)
