"""A run's two clusterings fitted again on other rows or another representation of them, in the calling process:
KMeans at a given k and DBSCAN at the knee of its own k-distance curve, with the run's min_samples and density
settings (exact while it fits, else DBSCAN++), as the run makes them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.cluster.clusterings import Clustering
from tasks.cluster.dbscan import DensitySettings, dbscan_grid_labels
from tasks.cluster.density import kth_neighbour_distances
from tasks.cluster.kmeans import capped_rows, kmeans_fit
from tasks.cluster.labels import nearest_centre
from tasks.cluster.run import suggest_eps


@dataclass(frozen=True)
class RefitSettings:
    """The run's settings a refit repeats: its k, min_samples, knee sample, density settings and KMeans cap."""

    k: int
    min_samples: int
    knee_sample: int
    density: DensitySettings
    kmeans_rows: int


def refit_clusterings(X: np.ndarray, settings: RefitSettings) -> dict[str, np.ndarray]:
    """KMeans (fitted on at most `kmeans_rows` seeded rows, every row then given its nearest centre) and DBSCAN
    at the knee of X's own k-distance curve (`knee_sample` seeded queries against all rows), by clustering name."""
    n, seed = len(X), settings.density.seed
    if n > settings.kmeans_rows:
        kmeans = nearest_centre(X, kmeans_fit(X[capped_rows(n, settings.kmeans_rows, seed)], settings.k, seed).centres)
    else:
        kmeans = kmeans_fit(X, settings.k, seed).labels
    queries = np.sort(np.random.RandomState(seed).permutation(n)[:settings.knee_sample])
    eps = suggest_eps(kth_neighbour_distances(X[queries], X, min(settings.min_samples, n)))
    density = settings.density
    dbscan = dbscan_grid_labels(X, [(eps, settings.min_samples)], density.budget_bytes, seed,
                                exact_rows=density.exact_rows, most_cores=density.core_sample,
                                threads=density.threads)[0][0]
    return {Clustering.KMEANS: kmeans, Clustering.DBSCAN: dbscan}
