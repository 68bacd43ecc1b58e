"""Stability: each clustering re-fitted on feature-bootstrap resamples and compared with the full-sample one
(adjusted Rand index over the rows it labelled)."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import DBSCAN, KMeans
from sklearn.metrics import adjusted_rand_score

from tasks.cluster import nearest_centre
from tasks.research.statistics import LEVEL, bootstrap_weights, feature_codes


def _summary(scores: list[float]) -> dict:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return {"ari": float(np.mean(scores)), "low": float(low), "high": float(high), "resamples": len(scores)}


def kmeans_stability(X: np.ndarray, labels: np.ndarray, feature_id: np.ndarray, k: int, resamples: int, seed: int,
                     max_rows: int) -> dict:
    """KMeans with k clusters re-fitted (weighted by how often each feature was drawn, on at most `max_rows`
    drawn rows) on each resample of the rows that `labels` labels (>= 0); every such row then gets its nearest
    new centre, compared with `labels`."""
    rows = np.flatnonzero(labels >= 0)
    rng, scores = np.random.default_rng(seed), []
    for weights in bootstrap_weights(feature_codes(feature_id[rows]), resamples, seed):
        drawn = np.flatnonzero(weights > 0)
        if len(drawn) > max_rows:
            drawn = np.sort(rng.choice(drawn, max_rows, replace=False))
        model = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(X[rows[drawn]], sample_weight=weights[drawn])
        scores.append(adjusted_rand_score(labels[rows], nearest_centre(X[rows], model.cluster_centers_)))
    return _summary(scores)


def dbscan_stability(X: np.ndarray, labels: np.ndarray, feature_id: np.ndarray, eps: float, min_samples: int,
                     resamples: int, seed: int) -> dict:
    """Exact DBSCAN re-run on each resample (a drawn feature's rows weighted by its draws, as scikit-learn's
    sample_weight counts them towards density), compared with `labels` over the drawn rows."""
    scores = []
    for weights in bootstrap_weights(feature_codes(feature_id), resamples, seed):
        drawn = np.flatnonzero(weights > 0)
        refit = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(X[drawn], sample_weight=weights[drawn])
        scores.append(adjusted_rand_score(labels[drawn], refit))
    return _summary(scores)
