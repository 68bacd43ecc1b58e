"""The names of the clusterings a run makes, as its labels, centres and parameters, summary.json, the tables and
the report name them: KMeans at the chosen k, DBSCAN, and each level of re-clustering the largest cluster."""

from __future__ import annotations

from enum import StrEnum


class Clustering(StrEnum):
    """The two clusterings of every run; the re-clusterings are named by `reclustered`."""

    KMEANS = "kmeans"
    DBSCAN = "dbscan"


def reclustered(depth: int) -> str:
    """The name of re-clustering level `depth`: 1 re-clusters the largest KMeans cluster, 2 the largest of those."""
    return f"{Clustering.KMEANS}_r{depth}"


def is_kmeans(name: str) -> bool:
    """Whether a clustering is a KMeans fit: the chosen k or a re-clustering."""
    return name == Clustering.KMEANS or name.startswith(f"{Clustering.KMEANS}_r")
