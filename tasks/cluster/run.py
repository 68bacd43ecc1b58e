"""The clustering run: PCA, the k search and KMeans, the k-distance knee and the DBSCAN grid, DBSCAN,
re-clustering of the largest cluster. Plain arrays in, plain results out, in the sample's row order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tasks.cluster.backend import ClusterBackend, KMeansFit
from tasks.cluster.clusterings import Clustering, reclustered
from tasks.cluster.dbscan import DbscanMethod, DensitySettings
from tasks.cluster.kmeans import capped_rows
from tasks.cluster.labels import NOISE, cluster_sizes, inertia, mean_distance, nearest_centre
from tasks.cluster.resources import MemoryBudget, timed
from tasks.cluster.sample import Sample
from tasks.config import ClusterConfig
from tasks.errors import InputError

K_RULE = "k with the highest silhouette score on the sample (ties: the smaller k)"


def kmeans_fits(backend: ClusterBackend, X: np.ndarray, ks: Sequence[int], seed: int, max_rows: int
                ) -> list[KMeansFit]:
    """KMeans for each k over every row; above `max_rows` rows, fitted on a seeded choice of `max_rows` rows,
    then every row labelled by its nearest centre."""
    if len(X) <= max_rows:
        return backend.kmeans(X, ks, seed)
    rows = capped_rows(len(X), max_rows, seed)
    return [KMeansFit(fit.k, nearest_centre(X, fit.centres), fit.centres) for fit in backend.kmeans(X[rows], ks, seed)]


def k_search(backend: ClusterBackend, X: np.ndarray, ks: Sequence[int], seed: int, silhouette_sample: int,
             max_rows: int) -> tuple[pd.DataFrame, dict[int, KMeansFit], int]:
    """KMeans over a k range: inertia, mean distance to centre and sampled silhouette per k, and the k chosen
    by K_RULE."""
    fits = {fit.k: fit for fit in kmeans_fits(backend, X, ks, seed, max_rows)}
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
                min_samples_values: Sequence[int], settings: DensitySettings
                ) -> tuple[pd.DataFrame, dict[tuple[float, int], tuple[np.ndarray, dict]]]:
    """DBSCAN for every (eps, min_samples) cell: the method that ran, clusters, noise and sizes per cell."""
    cells = [(float(e), int(m)) for e in eps_values for m in min_samples_values]
    results = dict(zip(cells, backend.dbscan(X, cells, settings)))
    rows = []
    for (eps, min_samples), (labels, record) in results.items():
        sizes = {c: n for c, n in cluster_sizes(labels).items() if c != NOISE}
        noise = int((labels == NOISE).sum())
        rows.append({"eps": eps, "min_samples": min_samples, "method": record["method"],
                     "core_sample": record["core_sample"], "clusters": len(sizes), "noise": noise,
                     "noise_fraction": noise / len(labels), "largest": max(sizes.values(), default=0),
                     "sizes": json.dumps(list(sizes.values()))})
    return pd.DataFrame(rows), results


def recluster_largest(backend: ClusterBackend, X: np.ndarray, labels: np.ndarray, k: int, depth: int, seed: int,
                      max_rows: int) -> list[KMeansFit]:
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
        fit = kmeans_fits(backend, X[rows], [k], seed, max_rows)[0]
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
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each stage


def check_budget(n: int, dim: int, cfg: ClusterConfig, budget: MemoryBudget) -> None:
    """Fails at once where the reduced rows, KMeans' copies of them or the knee's query block cannot fit."""
    fitted = min(n, cfg.kmeans_rows)
    budget.check("KMeans", fitted, fitted * dim * 4 * 3 + n * 8 * 4, "lower --kmeans-rows")
    knee = min(n, cfg.density.knee_sample)
    budget.check("k-distance knee", knee, knee * (dim * 4 + 1024 * 8) + n * dim * 4, "lower --knee-sample")


def run_clustering(backend: ClusterBackend, sample: Sample, cfg: ClusterConfig, budget: MemoryBudget
                   ) -> ClusteringRun:
    """k search and KMeans, k-distance knee and DBSCAN grid, DBSCAN, re-clustering on the sample's PCA
    projection (`sample.reduced`, the space every clustering runs in)."""
    reduced, n = sample.reduced, len(sample.reduced)
    check_budget(n, reduced.shape[1], cfg, budget)
    ks = [k for k in range(cfg.k_min, cfg.k_max + 1) if k < n]
    if not ks:
        raise InputError(f"--k-min/--k-max: no k in {cfg.k_min}..{cfg.k_max} below the {n} sampled rows")
    if cfg.k is not None and cfg.k >= n:
        raise InputError(f"--k: {cfg.k} clusters need more than the {n} sampled rows")
    seconds: dict[str, float] = {}
    with timed(seconds, "k search"):
        k_table, fits, chosen = k_search(backend, reduced, ks, cfg.seed, cfg.silhouette_sample, cfg.kmeans_rows)
        k = cfg.k or chosen
        kmeans = fits[k] if k in fits else kmeans_fits(backend, reduced, [k], cfg.seed, cfg.kmeans_rows)[0]
    with timed(seconds, "k-distance knee"):
        queries = np.sort(np.random.RandomState(cfg.seed).permutation(n)[:cfg.density.knee_sample])
        kth = backend.kth_neighbour_distance(reduced[queries], reduced, min(cfg.density.min_samples, n))
        suggested = suggest_eps(kth)
    with timed(seconds, "DBSCAN grid"):
        eps_values = cfg.density.eps_grid or [round(suggested * f, 6) for f in (0.5, 0.75, 1.0, 1.25, 1.5)]
        settings = DensitySettings(budget.bytes, cfg.density.dbscan_exact_rows, cfg.density.dbscan_core_sample,
                                   cfg.seed)
        grid, cells = dbscan_grid(backend, reduced, eps_values, cfg.density.min_samples_grid, settings)
        eps = cfg.density.eps or round(suggested, 6)
        cell = (float(eps), cfg.density.min_samples)
        dbscan, record = cells[cell] if cell in cells else backend.dbscan(reduced, [cell], settings)[0]

    run = ClusteringRun(sample.reducer.explained_variance_ratio, k_table, chosen, kth, suggested, grid,
                        seconds=seconds)
    run.labels[Clustering.KMEANS], run.centres[Clustering.KMEANS] = kmeans.labels, kmeans.centres
    run.params[Clustering.KMEANS] = {"k": k, "chosen_by": "config" if cfg.k else K_RULE,
                                     "fitted_on": min(n, cfg.kmeans_rows)}
    run.labels[Clustering.DBSCAN] = dbscan
    run.params[Clustering.DBSCAN] = {"eps": eps, "min_samples": cfg.density.min_samples, "method": record["method"],
                                     "core_sample": record["core_sample"], "knee_sample": len(queries),
                                     "eps_from": "config" if cfg.density.eps else "knee of the k-distance curve"}
    if record["method"] == DbscanMethod.SAMPLED:
        with timed(seconds, "DBSCAN++ agreement with exact"):
            run.params[Clustering.DBSCAN]["agreement_with_exact"] = backend.dbscan_agreement(reduced, cell, settings)
    with timed(seconds, "re-clustering"):
        levels = recluster_largest(backend, reduced, kmeans.labels, cfg.recluster_k, cfg.recluster_depth, cfg.seed,
                                   cfg.kmeans_rows)
    for depth, level in enumerate(levels, start=1):
        name, parent = reclustered(depth), Clustering.KMEANS if depth == 1 else reclustered(depth - 1)
        run.labels[name], run.centres[name] = level.labels, level.centres
        run.params[name] = {"k": cfg.recluster_k, "of": f"largest cluster of {parent}"}
    return run
