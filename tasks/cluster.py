"""Clustering of attention-map embeddings: PCA, KMeans with a k search, DBSCAN with an eps x min_samples
grid, re-clustering of the largest cluster.

One interface (`ClusterBackend`), two backends: scikit-learn jobs spread over Dask CPU workers (here) and
cuML's Dask estimators on GPU workers (`tasks.cluster_gpu`). The orchestration functions below take a backend
and plain NumPy arrays, and return plain results: labels always stay in the row order they were given."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from tasks.config import ClusterConfig
from tasks.sample import Sample

NOISE = -1
PCA_POWER_ITERATIONS = 4  # randomized PCA: enough for the leading components of low-rank embeddings
KMEANS_SEED_ROWS = 20_000  # k-means++ seeds on at most this many rows (seeding cost grows with n x k)
K_RULE = "k with the highest silhouette score on the sample (ties: the smaller k)"


@dataclass
class KMeansFit:
    k: int
    labels: np.ndarray  # int64 (n,)
    centres: np.ndarray  # (k, d)


class ClusterBackend(Protocol):
    name: str

    def reduce(self, parts: list, part_rows: list[int], n_components: int, standardize: bool, seed: int,
               fit_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """PCA projection (n, n_components) of the vectors held on the workers as `parts` (optionally
        standardised first), and the explained variance ratio of each component."""

    def kmeans(self, X: np.ndarray, ks: Sequence[int], seed: int) -> list[KMeansFit]:
        """One KMeans fit per k (run side by side where the backend can)."""

    def dbscan(self, X: np.ndarray, cells: Sequence[tuple[float, int]]) -> list[np.ndarray]:
        """DBSCAN labels (noise = -1) for each (eps, min_samples) cell."""

    def kth_neighbour_distance(self, X: np.ndarray, k: int) -> np.ndarray:
        """Distance of every point to its k-th nearest neighbour (itself counted first, as DBSCAN counts)."""

    def silhouette(self, X: np.ndarray, labels: np.ndarray) -> float:
        """Silhouette score of the points."""


# Jobs that run on the Dask CPU workers: module-level so that they pickle by reference.

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


def _distances(X: np.ndarray, labels: np.ndarray, centres: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Euclidean distance of each point to its centre, in float64, a chunk of rows at a time."""
    return np.concatenate([
        np.linalg.norm(X[i:i + chunk].astype(np.float64) - centres[labels[i:i + chunk]], axis=1)
        for i in range(0, len(X), chunk)
    ])


def inertia(X: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> float:
    """Sum of squared distances of points to their cluster's centre."""
    return float((_distances(X, labels, centres) ** 2).sum())


def mean_distance(X: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> float:
    return float(_distances(X, labels, centres).mean())


def k_search(backend: ClusterBackend, X: np.ndarray, ks: Sequence[int], seed: int, silhouette_sample: int
             ) -> tuple[pd.DataFrame, dict[int, KMeansFit], int]:
    """KMeans over a k range: inertia, mean distance to centre and sampled silhouette per k, and the k chosen
    by K_RULE."""
    fits = {fit.k: fit for fit in backend.kmeans(X, ks, seed)}
    # The rows scikit-learn's silhouette_score(sample_size=..., random_state=seed) would draw.
    rows = np.random.RandomState(seed).permutation(len(X))[:silhouette_sample]
    table = pd.DataFrame([
        {"k": k, "inertia": inertia(X, fit.labels, fit.centres),
         "mean_distance": mean_distance(X, fit.labels, fit.centres),
         "silhouette": backend.silhouette(X[rows], fit.labels[rows])
         if len(np.unique(fit.labels[rows])) > 1 else float("nan")}
        for k, fit in sorted(fits.items())
    ])
    best = table.loc[table["silhouette"].idxmax()] if table["silhouette"].notna().any() else table.iloc[0]
    return table, fits, int(best["k"])


def suggest_eps(kth_distances: np.ndarray) -> float:
    """The knee of the sorted k-distance curve: the point farthest from the chord joining its ends."""
    curve = np.sort(kth_distances)
    if len(curve) < 3 or curve[-1] == curve[0]:
        return float(curve[-1]) if curve[-1] > 0 else 1.0
    x = np.linspace(0.0, 1.0, len(curve))
    y = (curve - curve[0]) / (curve[-1] - curve[0])
    return float(curve[int(np.argmax(x - y))])


def cluster_sizes(labels: np.ndarray) -> dict[int, int]:
    """Rows per label, largest first (noise included under -1)."""
    values, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return {int(values[i]): int(counts[i]) for i in order}


def dbscan_grid(backend: ClusterBackend, X: np.ndarray, eps_values: Sequence[float],
                min_samples_values: Sequence[int]) -> tuple[pd.DataFrame, dict[tuple[float, int], np.ndarray]]:
    """DBSCAN for every (eps, min_samples) cell: clusters, noise and cluster sizes per cell."""
    cells = [(float(e), int(m)) for e in eps_values for m in min_samples_values]
    results = dict(zip(cells, backend.dbscan(X, cells)))
    rows = []
    for (eps, min_samples), labels in results.items():
        sizes = {c: n for c, n in cluster_sizes(labels).items() if c != NOISE}
        noise = int((labels == NOISE).sum())
        rows.append({"eps": eps, "min_samples": min_samples, "clusters": len(sizes), "noise": noise,
                     "noise_fraction": noise / len(labels), "largest": max(sizes.values(), default=0),
                     "sizes": json.dumps(list(sizes.values()))})
    return pd.DataFrame(rows), results


def recluster_largest(backend: ClusterBackend, X: np.ndarray, labels: np.ndarray, k: int, depth: int, seed: int
                      ) -> list[KMeansFit]:
    """Re-clusters the largest cluster with KMeans(k), then the largest of those, `depth` times. Each level's
    labels cover all rows: rows outside the re-clustered cluster get -1."""
    levels = []
    for _ in range(depth):
        sizes = {c: n for c, n in cluster_sizes(labels).items() if c != NOISE}
        if not sizes:
            break
        rows = np.flatnonzero(labels == next(iter(sizes)))
        if len(rows) <= k:
            break
        fit = backend.kmeans(X[rows], [k], seed)[0]
        labels = np.full(len(X), NOISE, dtype=np.int64)
        labels[rows] = fit.labels
        levels.append(KMeansFit(k, labels, fit.centres))
    return levels


def centres_of(X: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Mean point of each cluster (noise and unassigned rows excluded)."""
    return {c: X[labels == c].mean(axis=0) for c in np.unique(labels) if c != NOISE}


def nearest_to_centre(X: np.ndarray, labels: np.ndarray, per_cluster: int) -> dict[int, np.ndarray]:
    """Row indices of the `per_cluster` rows nearest their cluster's centre, per cluster."""
    nearest = {}
    for c, centre in centres_of(X, labels).items():
        rows = np.flatnonzero(labels == c)
        order = np.argsort(np.linalg.norm(X[rows] - centre, axis=1), kind="stable")
        nearest[c] = rows[order[:per_cluster]]
    return nearest


@dataclass
class ClusteringRun:
    """Everything the clustering computes, in the order of the sample's rows."""

    explained_variance: np.ndarray
    k_table: pd.DataFrame
    chosen_k: int
    kth_distances: np.ndarray
    suggested_eps: float
    grid: pd.DataFrame
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    centres: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict[str, dict] = field(default_factory=dict)


def run_clustering(backend: ClusterBackend, sample: Sample, cfg: ClusterConfig) -> tuple[np.ndarray, ClusteringRun]:
    """PCA, k search and KMeans, k-distance and DBSCAN grid, DBSCAN, re-clustering: the reduced vectors
    (the space every clustering ran in) and the results."""
    n = len(sample.rows)
    components = min(cfg.pca_components, n, sample.dim, cfg.pca_fit_rows)
    reduced, ratio = backend.reduce(sample.parts, sample.part_rows, components, cfg.standardize, cfg.seed,
                                    cfg.pca_fit_rows)
    ks = [k for k in range(cfg.k_min, cfg.k_max + 1) if k < n]
    if not ks:
        raise ValueError(f"k search: no k in {cfg.k_min}..{cfg.k_max} below the {n} sampled rows")
    k_table, fits, chosen = k_search(backend, reduced, ks, cfg.seed, cfg.silhouette_sample)
    k = cfg.k or chosen
    kmeans = fits[k] if k in fits else backend.kmeans(reduced, [k], cfg.seed)[0]

    kth = backend.kth_neighbour_distance(reduced, min(cfg.min_samples, n))
    suggested = suggest_eps(kth)
    eps_values = cfg.eps_grid or [round(suggested * f, 6) for f in (0.5, 0.75, 1.0, 1.25, 1.5)]
    grid, grid_labels = dbscan_grid(backend, reduced, eps_values, cfg.min_samples_grid)
    eps = cfg.eps or round(suggested, 6)
    cell = (float(eps), cfg.min_samples)
    dbscan = grid_labels[cell] if cell in grid_labels else backend.dbscan(reduced, [cell])[0]

    run = ClusteringRun(ratio, k_table, chosen, kth, suggested, grid)
    run.labels["kmeans"], run.centres["kmeans"] = kmeans.labels, kmeans.centres
    run.params["kmeans"] = {"k": k, "chosen_by": "config" if cfg.k else K_RULE}
    run.labels["dbscan"] = dbscan
    run.params["dbscan"] = {"eps": eps, "min_samples": cfg.min_samples,
                            "eps_from": "config" if cfg.eps else "knee of the k-distance curve"}
    for depth, level in enumerate(recluster_largest(backend, reduced, kmeans.labels, cfg.recluster_k,
                                                    cfg.recluster_depth, cfg.seed), start=1):
        name = f"kmeans_r{depth}"
        run.labels[name], run.centres[name] = level.labels, level.centres
        run.params[name] = {"k": cfg.recluster_k, "of": "largest cluster of " + ("kmeans" if depth == 1 else f"kmeans_r{depth - 1}")}
    return reduced, run
