"""The interface every clustering backend implements (CPU: scikit-learn on Dask workers; GPU: cuML)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


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
