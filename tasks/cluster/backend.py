"""The interface every clustering backend implements (CPU: scikit-learn on Dask workers; GPU: cuML).

Every method takes NumPy arrays in host memory of the flow process (the process holding the Dask client) and
returns NumPy arrays in host memory there, or plain records; each implementation's docstrings say where the data
goes in between and where the work runs (the flow process, which Dask worker, how many threads, which GPU)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tasks.cluster.dbscan import DensitySettings


@dataclass
class KMeansFit:
    """One KMeans fit, in host memory: its k, each row's cluster and the centres."""

    k: int
    labels: np.ndarray  # int64 (n,)
    centres: np.ndarray  # (k, d)


class ClusterBackend(Protocol):
    """Clustering on a Dask client's workers: host arrays in, host arrays out."""

    name: str

    def kmeans(self, X: np.ndarray, ks: Sequence[int], seed: int) -> list[KMeansFit]:
        """One KMeans fit per k over every row of X (run side by side where the backend can)."""

    def dbscan(self, X: np.ndarray, cells: Sequence[tuple[float, int]], settings: DensitySettings
               ) -> list[tuple[np.ndarray, dict]]:
        """DBSCAN labels (noise = -1) for each (eps, min_samples) cell, with the record of the method that ran."""

    def dbscan_agreement(self, X: np.ndarray, cell: tuple[float, int], settings: DensitySettings) -> dict:
        """How DBSCAN++ at the run's core-sample ratio agrees with exact DBSCAN, on a seeded subsample of X
        small enough for the exact method."""

    def kth_neighbour_distance(self, queries: np.ndarray, X: np.ndarray, k: int) -> np.ndarray:
        """Distance of each query row to its k-th nearest row of X (itself counted first, as DBSCAN counts)."""

    def silhouette(self, X: np.ndarray, labels: np.ndarray) -> float:
        """Silhouette score of the points."""
