"""The original study's three findings as numbers, each with a feature-bootstrap confidence interval:
(1) DBSCAN leaves one dominant cluster of mostly early-layer heads, and noise is mostly late layers; (2) small
clusters hold one or a few heads over adjacent features that share a context; (3) re-clustering the largest
cluster gives satellite clusters with heads spread evenly."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from tasks.cluster import NOISE, cluster_sizes
from tasks.research.statistics import bootstrap_interval, column_means, normalised_entropy


class StudyFinding(StrEnum):
    """The keys of a clustering run's findings, as summary.json records them."""

    DOMINANT_CLUSTER = "dominant-cluster"
    SMALL_CLUSTERS = "small-clusters"
    SATELLITES = "satellites"
    CONSISTENCY = "consistency"
    ROLES = "roles"
    AGREEMENT = "agreement"
    QA_HEADS = "qa-heads"
    STABILITY = "stability"
    REPRESENTATIONS = "representations"
    HEAD_DISTANCES = "head-distances"
    IMPORTANCE_CONSISTENCY = "importance-consistency"
    IMPORTANCE_ROLES = "importance-roles"
    IMPORTANCE_DOMINANT = "importance-dominant"


class Finding(BaseModel):
    """One finding: its sentence, the number it rests on with its interval, and where the evidence is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str  # the value of the key enum of the stage that found it (StudyFinding, compare's CompareFinding)
    text: str
    value: float | None
    low: float | None
    high: float | None
    evidence: str


@dataclass(frozen=True)
class Rows:
    """What the findings need of each row: its feature, layer, head (as one slot) and, where the source is
    known, its context (article and paragraph) as an integer."""

    feature_id: np.ndarray
    layer: np.ndarray
    slot: np.ndarray
    n_slots: int
    context: np.ndarray | None = None

    @cached_property
    def _features(self) -> tuple[np.ndarray, np.ndarray]:
        return np.unique(self.feature_id, return_inverse=True)

    @property
    def features(self) -> np.ndarray:
        """The distinct feature ids, sorted."""
        return self._features[0]

    @property
    def codes(self) -> np.ndarray:
        """Each row's feature as an index into `features`."""
        return self._features[1]


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    total = weights.sum()
    return float(values @ weights / total) if total > 0 else float("nan")


def dominant_cluster(rows: Rows, labels: np.ndarray, resamples: int, seed: int) -> dict:
    """Finding 1's numbers, each (estimate, low, high): the largest cluster's share of rows and its mean layer,
    the noise's mean layer and how much deeper it is ("layer_gap"); NaN where there is no noise."""
    sizes = [c for c in cluster_sizes(labels) if c != NOISE]
    dominant = labels == sizes[0] if sizes else np.zeros(len(labels), bool)
    noise = labels == NOISE
    layer = rows.layer.astype(np.float64)

    def numbers(w: np.ndarray) -> np.ndarray:
        inside, outside = _weighted_mean(layer[dominant], w[dominant]), _weighted_mean(layer[noise], w[noise])
        return np.array([_weighted_mean(dominant, w), inside, outside, outside - inside])

    estimate, low, high = bootstrap_interval(numbers, rows.codes, resamples, seed)
    names = ["share", "layer", "noise_layer", "layer_gap"]
    return {name: (estimate[i], low[i], high[i]) for i, name in enumerate(names)}


def _small_cluster_numbers(rows: Rows, labels: np.ndarray, clusters: list[int], w: np.ndarray) -> np.ndarray:
    """(clusters, 3): per cluster the largest share of its (weighted) rows from one head, from one context (NaN
    without contexts) and the share of its member pairs that are adjacent features."""
    index = np.full(labels.max(initial=-1) + 2, -1)
    index[np.asarray(clusters) + 1] = np.arange(len(clusters))
    member = index[labels + 1]
    inside = member >= 0
    m, wi, k = member[inside], w[inside], len(clusters)

    def top_share(keys: np.ndarray, width: int) -> np.ndarray:
        counts = np.bincount(m * width + keys, weights=wi, minlength=k * width).reshape(k, width)
        with np.errstate(invalid="ignore"):
            return counts.max(axis=1) / counts.sum(axis=1)

    head = top_share(rows.slot[inside], rows.n_slots)
    context = (top_share(rows.context[inside], int(rows.context.max()) + 1) if rows.context is not None
               else np.full(k, np.nan))
    ids = rows.features
    per_feature = np.bincount(m * len(ids) + rows.codes[inside], weights=wi, minlength=k * len(ids)).reshape(k, len(ids))
    adjacent = np.diff(ids) == 1
    pairs = (per_feature[:, :-1] * per_feature[:, 1:])[:, adjacent].sum(axis=1)
    total = per_feature.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([head, context, pairs / (total * (total - 1) / 2)], axis=1)


def small_clusters(rows: Rows, labels: np.ndarray, most: int, resamples: int, seed: int
                   ) -> tuple[pd.DataFrame, dict]:
    """Finding 2: the table of the `most` largest clusters after the dominant one (rows, head share, context
    share, adjacent pair share), and the mean of each share over them as (estimate, low, high)."""
    sizes = {c: n for c, n in cluster_sizes(labels).items() if c != NOISE}
    clusters = [c for c, n in sizes.items() if n >= 2][1:most + 1]
    names = ["head_share", "context_share", "adjacent_pair_share"]
    if not clusters:
        return pd.DataFrame(columns=["cluster", "rows", *names]), {}
    table = pd.DataFrame(_small_cluster_numbers(rows, labels, clusters, np.ones(len(labels))), columns=names)
    table.insert(0, "rows", [sizes[c] for c in clusters])
    table.insert(0, "cluster", clusters)
    estimate, low, high = bootstrap_interval(
        lambda w: column_means(_small_cluster_numbers(rows, labels, clusters, w)), rows.codes, resamples, seed)
    return table, {name: (estimate[i], low[i], high[i]) for i, name in enumerate(names)}


def satellite_evenness(rows: Rows, satellites: np.ndarray, resamples: int, seed: int) -> tuple[int, tuple] | None:
    """Finding 3: (satellites, the mean over them of the normalised entropy of their heads as (estimate, low,
    high)); `satellites` labels the re-clustered rows 0..k-1, others -1."""
    inside = satellites >= 0
    k = int(satellites.max(initial=-1)) + 1
    if k == 0:
        return None

    def evenness(w: np.ndarray) -> float:
        counts = np.bincount(satellites[inside] * rows.n_slots + rows.slot[inside], weights=w[inside],
                             minlength=k * rows.n_slots).reshape(k, rows.n_slots)
        return float(column_means(normalised_entropy(counts, axis=1)))

    estimate, low, high = bootstrap_interval(evenness, rows.codes, resamples, seed)
    return k, (float(estimate), float(low), float(high))
