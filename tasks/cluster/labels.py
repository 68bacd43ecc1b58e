"""Labels as clusters: sizes, centres, the rows nearest each centre, distances to centres."""

from __future__ import annotations

import numpy as np

NOISE = -1


def _distances(X: np.ndarray, labels: np.ndarray, centres: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Euclidean distance of each point to its centre, in float64, a chunk of rows at a time."""
    return np.concatenate([
        np.linalg.norm(X[i:i + chunk].astype(np.float64) - centres[labels[i:i + chunk]], axis=1)
        for i in range(0, len(X), chunk)
    ])


def nearest_centre(X: np.ndarray, centres: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Label of the nearest centre of each row (int64), a chunk of rows at a time."""
    squared = (centres.astype(np.float64) ** 2).sum(1)
    return np.concatenate([
        np.argmin(squared - 2 * X[i:i + chunk].astype(np.float64) @ centres.T.astype(np.float64), axis=1)
        for i in range(0, len(X), chunk)
    ]).astype(np.int64) if len(X) else np.zeros(0, np.int64)


def inertia(X: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> float:
    """Sum of squared distances of points to their cluster's centre."""
    return float((_distances(X, labels, centres) ** 2).sum())


def mean_distance(X: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> float:
    return float(_distances(X, labels, centres).mean())


def cluster_sizes(labels: np.ndarray) -> dict[int, int]:
    """Rows per label, largest first (noise included under -1)."""
    values, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return {int(values[i]): int(counts[i]) for i in order}


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
