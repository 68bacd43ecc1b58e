"""GPU backend of `tasks.cluster.ClusterBackend`: Dask GPU workers (LocalCUDACluster or a GPU scheduler), one
GPU each. DBSCAN++ and the k-distance knee run on the torch engine (tasks.cluster.engine) with the rows split
across the workers, each block on its worker's GPU (the CPU where the worker has none; tasks.cluster.spread).
KMeans is cuML's where RAPIDS is installed, else Lloyd iterations on the torch engine over the same blocks
(tasks.cluster.lloyd); the silhouette and exact DBSCAN are cuML's where installed, else as in the CPU backend.
GPU libraries are imported inside the jobs, so this module imports on any machine.

Inputs leave the flow process's host memory for the workers, and reach a GPU's device memory only on a worker;
every result is copied back to host memory before it is returned. The agreement check runs on a worker's CPU."""

from __future__ import annotations

import importlib.util
import math

import numpy as np

from tasks.cluster.backend import KMeansFit
from tasks.cluster.dbscan import (
    DensitySettings, agreement_on_subsample, agreement_subsample, exact_record, settled_grid,
)
from tasks.cluster.lloyd import spread_kmeans
from tasks.cluster.spread import Engine, SpreadRows, spread_grid, spread_kth


def rapids_installed() -> bool:
    """cuML (the rapids extra) imports here."""
    return importlib.util.find_spec("cuml") is not None


def _numpy(array) -> np.ndarray:
    """A host copy of a CuPy / cuDF / NumPy result."""
    if hasattr(array, "to_numpy"):
        return array.to_numpy()
    return array.get() if hasattr(array, "get") else np.asarray(array)


def _grid_job(X: np.ndarray, cells: list[tuple[float, int]], settings: DensitySettings) -> list[tuple[np.ndarray, dict]]:
    """On the worker that runs it: the DBSCAN grid with the torch engine's passes over X on its GPU."""
    from tasks.cluster.engine import TorchPasses, engine_device, on_device

    with on_device(settings.threads):
        return settled_grid(X, cells, settings, TorchPasses(engine_device(gpu=True), seed=settings.seed))


def _silhouette_job(X: np.ndarray, labels: np.ndarray) -> float:
    """On the worker that runs it: X and the labels copied to its GPU, cuML's silhouette score there; without
    RAPIDS, scikit-learn's on its CPU."""
    if not rapids_installed():
        from sklearn.metrics import silhouette_score

        return float(silhouette_score(X, labels))
    import cupy as cp
    from cuml.metrics.cluster import silhouette_score

    return float(silhouette_score(cp.asarray(X), cp.asarray(labels)))


class GpuBackend:
    """The torch engine's DBSCAN++ and knee on every worker's GPU, a block of the rows each; cuML's multi-GPU
    KMeans and exact DBSCAN over the client's workers where RAPIDS is installed."""

    name = "torch engine (and cuML where installed) on Dask GPU workers"

    def __init__(self, client, dbscan_batch_mb: int = 2048) -> None:
        self.client = client
        self.workers = max(1, len(client.nthreads()))  # scheduler_info() lists at most 5 workers
        self.dbscan_batch_mb = dbscan_batch_mb
        self._blocks = SpreadRows(client)

    def _distributed(self, X: np.ndarray):
        """X as a Dask array of CuPy blocks, persisted on the workers: float32 rows cut into one block per worker
        in the flow process, each block sent to a worker and copied to that worker's GPU, where it stays."""
        import cupy as cp
        import dask.array as da

        rows = math.ceil(len(X) / self.workers)
        blocks = da.from_array(np.ascontiguousarray(X, dtype=np.float32), chunks=(rows, X.shape[1]))
        return self.client.persist(blocks.map_blocks(cp.asarray, dtype=np.float32))

    def _engine(self, seed: int = 0) -> Engine:
        return Engine(torch=True, seed=seed)

    def _one(self, job, *args):
        """`job(*args)` as one task on a worker the scheduler picks (where its scattered inputs are, as a rule);
        its result comes back to the flow process."""
        return self.client.submit(job, *args, pure=False).result()

    def kmeans(self, X, ks, seed):
        """X persisted as one block per worker's GPU, once for every k; cuML's multi-GPU KMeans fits each k on all
        the workers' GPUs together, and predicts each block's labels on its GPU. The labels are gathered to the
        flow process (as one CuPy array where the blocks are CuPy) and copied to host memory, as are the centres.
        Without RAPIDS, X split into one block per worker and every k fitted side by side by the torch engine's
        Lloyd iterations on the workers' GPUs (`spread_kmeans`)."""
        if not rapids_installed():
            return spread_kmeans(self._blocks(X), ks, seed, self._engine(seed))
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
        `dbscan_batch_mb`, the labels copied back to host memory. Beyond the exact rows, DBSCAN++ with X split into
        one block per worker, the torch engine's passes on each worker's GPU (`spread_grid`). Up to them without
        RAPIDS, X is sent to one worker and the grid runs there (`_grid_job`): exact scikit-learn DBSCAN where it
        fits the memory budget, DBSCAN++ with the torch engine's passes on its GPU where not."""
        if len(X) > settings.exact_rows:
            return spread_grid(self._blocks(X), cells, settings, self._engine(settings.seed))
        if not rapids_installed():
            return self._one(_grid_job, self.client.scatter(X, hash=False), list(cells), settings)
        from cuml.dask.cluster import DBSCAN

        data = np.ascontiguousarray(X, dtype=np.float32)
        return [
            (_numpy(DBSCAN(client=self.client, eps=eps, min_samples=min_samples,
                           max_mbytes_per_batch=self.dbscan_batch_mb).fit_predict(data, out_dtype="int64"))
             .astype(np.int64), exact_record("cuML"))
            for eps, min_samples in cells
        ]

    def dbscan_agreement(self, X, cell, settings):
        """The subsample of X sent to one worker; exact DBSCAN (scikit-learn) and DBSCAN++ run there on the CPU."""
        return self._one(agreement_on_subsample, agreement_subsample(X, settings), len(X), cell, settings)

    def kth_neighbour_distance(self, queries, X, k):
        """X split into one block per worker, the queries sent to every worker, each block's candidates found by
        the torch engine on its GPU and ranked in the flow process (`spread_kth`)."""
        return spread_kth(self._blocks(X), queries, k, self._engine())

    def silhouette(self, X, labels):
        """X sent to one worker, the labels with the task, the score computed there (`_silhouette_job`)."""
        return self._one(_silhouette_job, self.client.scatter(X, hash=False), labels)
