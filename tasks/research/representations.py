"""Representations side by side: the ResNet embedding, the pooled map and the per-map statistics of the same rows,
each clustered as the run clusters (KMeans at the run's k, DBSCAN at its own knee), each clustering's agreement
with what a row is (head, layer, pattern), how well each recovers which head made a map (k-nearest-neighbour
accuracy, cross-validated so that a feature's maps never sit on both sides), and how the representations'
clusterings agree with one another.

The comparison runs on one seeded choice of at most `rows` of the sample's rows (`compared_rows`), the same rows
for every representation: the clusterings and the neighbour searches are quadratic in rows (the neighbour search
runs in scikit-learn's chunks of queries, never all pairs at once)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import GroupKFold
from sklearn.neighbors import KNeighborsClassifier

from tasks.cluster import RefitSettings, fit_reducer, refit_clusterings, seeded_rows
from tasks.research.statistics import bootstrap_interval, column_means, feature_codes

REPRESENTATIONS = ("embedding", "pooled", "statistics")
NEIGHBOURS = 10  # neighbours whose majority head is a map's predicted head
FOLDS = 5  # feature-grouped cross-validation folds
KNN = "knn"  # the `clustering` of the accuracy rows of the table
CHANCE = "chance"  # the `representation` of the row holding the accuracy of always guessing the commonest head


@dataclass(frozen=True)
class RepresentationSettings:
    """At most `rows` seeded rows compared (`compared_rows`); `refit`: the run's clusterings; `bootstrap`
    resamples of features behind each interval."""

    rows: int
    refit: RefitSettings
    bootstrap: int
    seed: int


@dataclass(frozen=True)
class Comparison:
    """The long table (representation, clustering, against, metric, value, low, high), each representation's
    head accuracy as (estimate, low, high), the chance accuracy and the rows compared."""

    table: pd.DataFrame
    accuracy: dict[str, tuple[float, float, float]]
    chance: float
    rows: int


def compared_rows(n: int, settings: RepresentationSettings) -> np.ndarray:
    """The rows compared: a seeded choice of at most `settings.rows` of n, sorted."""
    return seeded_rows(n, settings.rows, settings.seed)


def comparable(X: np.ndarray, components: int, seed: int) -> np.ndarray:
    """A descriptor reduced as the embedding is: standardised, then PCA to `components` where wider (float32). An
    undefined value (a statistic with nothing to average, NaN) takes its column's mean, 0 where none is defined."""
    X = np.asarray(X, np.float64)
    if np.isnan(X).any():
        X = np.where(np.isnan(X), np.nan_to_num(column_means(X)), X)
    if X.shape[1] > components:
        return fit_reducer(X, components, True, seed).transform(X)
    scale = X.std(axis=0)
    return ((X - X.mean(axis=0)) / np.where(scale == 0, 1.0, scale)).astype(np.float32)


def neighbour_hits(X: np.ndarray, head: np.ndarray, feature_id: np.ndarray, neighbours: int = NEIGHBOURS,
                   folds: int = FOLDS) -> np.ndarray:
    """Whether each row's head is the majority head of its `neighbours` nearest rows among the other folds'
    (GroupKFold by feature: a feature's rows all in one fold)."""
    hits = np.zeros(len(X), bool)
    splits = GroupKFold(n_splits=min(folds, len(np.unique(feature_id))))
    for train, test in splits.split(X, head, feature_id):
        model = KNeighborsClassifier(n_neighbors=min(neighbours, len(train)), algorithm="brute").fit(X[train],
                                                                                                       head[train])
        hits[test] = model.predict(X[test]) == head[test]
    return hits


def head_accuracy(hits: np.ndarray, feature_id: np.ndarray, resamples: int, seed: int) -> tuple[float, float, float]:
    """The share of hits, with its feature-bootstrap interval (estimate, low, high)."""
    estimate, low, high = bootstrap_interval(lambda w: hits @ w / w.sum(), feature_codes(feature_id), resamples, seed)
    return float(estimate), float(low), float(high)


def _scores(truth: np.ndarray, values: np.ndarray) -> dict[str, float]:
    return {"nmi": normalized_mutual_info_score(truth, values), "ari": adjusted_rand_score(truth, values)}


def compare_representations(representations: dict[str, np.ndarray], references: dict[str, np.ndarray],
                            feature_id: np.ndarray, settings: RepresentationSettings) -> Comparison:
    """The comparison of `representations` (name -> rows x columns, each already in its comparison space: see
    `comparable`), row for row with `references` (name -> a label per row; 'head' must be one) and `feature_id`:
    the rows compared, see `compared_rows`."""
    head = references["head"]
    records, clusterings, accuracy = [], {}, {}
    for name, X in representations.items():
        clusterings[name] = refit_clusterings(X, settings.refit)
        for clustering, labels in clusterings[name].items():
            for against, truth in references.items():
                records += [(name, clustering, against, metric, value, np.nan, np.nan)
                            for metric, value in _scores(truth, labels).items()]
        accuracy[name] = head_accuracy(neighbour_hits(X, head, feature_id), feature_id, settings.bootstrap, settings.seed)
        records.append((name, KNN, "head", "accuracy", *accuracy[name]))
    chance = float(np.bincount(head).max() / len(head))
    records.append((CHANCE, KNN, "head", "accuracy", chance, np.nan, np.nan))
    for a, b in combinations(clusterings, 2):
        records += [(a, clustering, b, "nmi", normalized_mutual_info_score(labels, clusterings[b][clustering]),
                     np.nan, np.nan) for clustering, labels in clusterings[a].items()]
    table = pd.DataFrame(records, columns=["representation", "clustering", "against", "metric", "value", "low", "high"])
    return Comparison(table, accuracy, chance, len(head))
