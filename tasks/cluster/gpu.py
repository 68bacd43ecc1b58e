"""cuML backend of `tasks.cluster.ClusterBackend`: Dask GPU workers (LocalCUDACluster or a GPU scheduler).
GPU libraries are imported inside the methods, so this module imports on any machine."""

from __future__ import annotations

import math

import numpy as np

from tasks.cluster.backend import KMeansFit


def _numpy(array) -> np.ndarray:
    """A host copy of a CuPy / cuDF / NumPy result."""
    if hasattr(array, "to_numpy"):
        return array.to_numpy()
    return array.get() if hasattr(array, "get") else np.asarray(array)


def _kth_distance_job(X: np.ndarray, k: int) -> np.ndarray:
    import cupy as cp
    from cuml.neighbors import NearestNeighbors

    points = cp.asarray(X)
    distances, _ = NearestNeighbors(n_neighbors=k).fit(points).kneighbors(points)
    return _numpy(distances[:, -1])


def _silhouette_job(X: np.ndarray, labels: np.ndarray) -> float:
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
        """X as a Dask array of CuPy blocks, one block per worker, persisted on the workers."""
        import cupy as cp
        import dask.array as da

        rows = math.ceil(len(X) / self.workers)
        blocks = da.from_array(np.ascontiguousarray(X, dtype=np.float32), chunks=(rows, X.shape[1]))
        return self.client.persist(blocks.map_blocks(cp.asarray, dtype=np.float32))

    def _one(self, job, *args):
        return self.client.submit(job, *args, pure=False).result()

    def reduce(self, parts, part_rows, n_components, standardize, seed, fit_rows):
        """cuML's multi-GPU PCA, fitted on every row (`fit_rows` is for the CPU backend), the parts moved to
        the GPUs where they lie."""
        import cupy as cp
        import dask
        import dask.array as da
        from cuml.dask.decomposition import PCA

        dim = self.client.submit(np.shape, parts[0]).result()[1]
        on_gpu = self.client.map(cp.asarray, parts, pure=False)
        data = da.concatenate([
            da.from_delayed(dask.delayed(part), shape=(rows, dim), dtype=np.float32, meta=cp.empty((0, dim), np.float32))
            for part, rows in zip(on_gpu, part_rows)
        ]).rechunk((math.ceil(sum(part_rows) / self.workers), dim))
        if standardize:
            std = data.std(axis=0)
            data = (data - data.mean(axis=0)) / da.where(std == 0, 1, std)
        pca = PCA(client=self.client, n_components=n_components)
        reduced = pca.fit_transform(self.client.persist(data)).compute()
        return _numpy(reduced).astype(np.float32), _numpy(pca.explained_variance_ratio_)

    def kmeans(self, X, ks, seed):
        from cuml.dask.cluster import KMeans

        data = self._distributed(X)
        fits = []
        for k in ks:
            model = KMeans(client=self.client, n_clusters=k, random_state=seed).fit(data)
            labels = _numpy(model.predict(data).compute()).astype(np.int64)
            fits.append(KMeansFit(k, labels, _numpy(model.cluster_centers_)))
        return fits

    def dbscan(self, X, cells):
        from cuml.dask.cluster import DBSCAN

        data = np.ascontiguousarray(X, dtype=np.float32)  # cuML's DBSCAN copies the whole input to each worker
        return [
            _numpy(DBSCAN(client=self.client, eps=eps, min_samples=min_samples,
                          max_mbytes_per_batch=self.dbscan_batch_mb).fit_predict(data, out_dtype="int64"))
            .astype(np.int64)
            for eps, min_samples in cells
        ]

    def kth_neighbour_distance(self, X, k):
        return self._one(_kth_distance_job, self.client.scatter(X, hash=False), k)

    def silhouette(self, X, labels):
        return self._one(_silhouette_job, self.client.scatter(X, hash=False), labels)
