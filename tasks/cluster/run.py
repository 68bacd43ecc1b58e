"""The clustering run: PCA, the k search and KMeans, the k-distance knee and the DBSCAN grid, DBSCAN,
re-clustering of the largest cluster. Plain arrays in, plain results out, in the sample's row order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tasks.cluster.backend import ClusterBackend, KMeansFit
from tasks.cluster.labels import NOISE, cluster_sizes, inertia, mean_distance
from tasks.cluster.sample import Sample
from tasks.config import ClusterConfig

K_RULE = "k with the highest silhouette score on the sample (ties: the smaller k)"


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
