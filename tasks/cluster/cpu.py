"""The CPU backend: scikit-learn jobs on the Dask workers; independent fits side by side, PCA projected where
the data lie."""

from __future__ import annotations

import numpy as np

from tasks.cluster.backend import KMeansFit

PCA_POWER_ITERATIONS = 4  # randomized PCA: enough for the leading components of low-rank embeddings


KMEANS_SEED_ROWS = 20_000  # k-means++ seeds on at most this many rows (seeding cost grows with n x k)


def fit_rows_of(part_rows: list[int], fit_rows: int, seed: int) -> list[np.ndarray]:
    """A seeded choice of at most `fit_rows` rows over all parts, as row indices within each part."""
    total = sum(part_rows)
    chosen = (np.arange(total) if fit_rows >= total
              else np.sort(np.random.RandomState(seed).choice(total, fit_rows, replace=False)))
    starts = np.cumsum([0, *part_rows])
    return [chosen[(chosen >= a) & (chosen < b)] - a for a, b in zip(starts[:-1], starts[1:])]


def fit_reducer(X: np.ndarray, n_components: int, standardize: bool, seed: int) -> tuple:
    """(scaler or None, PCA) fitted on X."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X) if standardize else None
    pca = PCA(n_components=n_components, svd_solver="randomized", iterated_power=PCA_POWER_ITERATIONS,
              random_state=seed).fit(scaler.transform(X) if scaler else X)
    return scaler, pca


def _take_job(part: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return part[rows]


def _transform_job(part: np.ndarray, reducer: tuple) -> np.ndarray:
    scaler, pca = reducer
    return pca.transform(scaler.transform(part) if scaler else part).astype(np.float32)


def kmeans_fit(X: np.ndarray, k: int, seed: int, seed_rows: int = KMEANS_SEED_ROWS) -> KMeansFit:
    """scikit-learn KMeans (Lloyd, one run). Up to `seed_rows` rows it is exactly KMeans(random_state=seed);
    above, k-means++ picks its seeds among a seeded choice of `seed_rows` rows, and Lloyd runs on all rows."""
    from sklearn.cluster import KMeans, kmeans_plusplus

    init: str | np.ndarray = "k-means++"
    if len(X) > seed_rows:
        rows = np.random.RandomState(seed).choice(len(X), seed_rows, replace=False)
        init = kmeans_plusplus(X[rows], k, random_state=seed)[0]
    model = KMeans(n_clusters=k, init=init, random_state=seed, n_init=1).fit(X)
    return KMeansFit(k, model.labels_.astype(np.int64), model.cluster_centers_)


def _dbscan_job(X: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    from sklearn.cluster import DBSCAN

    return DBSCAN(eps=eps, min_samples=min_samples).fit_predict(X).astype(np.int64)


def _kth_distance_job(X: np.ndarray, k: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    distances, _ = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(X)
    return distances[:, -1]


def _silhouette_job(X: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(X, labels))


class CpuBackend:
    """scikit-learn on the Dask workers: independent fits (k values, grid cells) run side by side, and PCA
    projects each part where it lies."""

    name = "scikit-learn on Dask CPU workers"

    def __init__(self, client) -> None:
        self.client = client

    def _shared(self, X: np.ndarray):
        return self.client.scatter(X, broadcast=True, hash=False)

    def _one(self, job, *args):
        return self.client.submit(job, *args, pure=False).result()

    def reduce(self, parts, part_rows, n_components, standardize, seed, fit_rows):
        """PCA fitted here on a seeded subsample of `fit_rows` rows, then applied to each part where it lies."""
        picks = self.client.map(_take_job, parts, fit_rows_of(part_rows, fit_rows, seed), pure=False)
        reducer = fit_reducer(np.concatenate(self.client.gather(picks)), n_components, standardize, seed)
        shared = self.client.scatter(reducer, broadcast=True, hash=False)
        reduced = self.client.gather(self.client.map(_transform_job, parts, [shared] * len(parts), pure=False))
        return np.concatenate(reduced), reducer[1].explained_variance_ratio_

    def kmeans(self, X, ks, seed):
        """A single fit runs here with every core; several fits run side by side, one per worker."""
        if len(ks) == 1:
            return [kmeans_fit(X, ks[0], seed)]
        data = self._shared(X)
        return self.client.gather([self.client.submit(kmeans_fit, data, k, seed, pure=False) for k in ks])

    def dbscan(self, X, cells):
        data = self._shared(X)
        return self.client.gather([self.client.submit(_dbscan_job, data, e, m, pure=False) for e, m in cells])

    def kth_neighbour_distance(self, X, k):
        return self._one(_kth_distance_job, self._shared(X), k)

    def silhouette(self, X, labels):
        return self._one(_silhouette_job, self._shared(X), labels)
