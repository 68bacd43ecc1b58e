"""KMeans fitted in the calling process: scikit-learn, seeded, with k-means++ seeding bounded on large inputs;
and the seeded rows a fit capped at `max_rows` runs on. The CPU backend runs these fits on its Dask workers;
compare fits its joint clustering with them."""

from __future__ import annotations

import numpy as np

from tasks.cluster.backend import KMeansFit

KMEANS_SEED_ROWS = 20_000  # k-means++ seeds on at most this many rows (seeding cost grows with n x k)


def kmeans_fit(X: np.ndarray, k: int, seed: int, seed_rows: int = KMEANS_SEED_ROWS) -> KMeansFit:
    """scikit-learn KMeans (Lloyd, one run) on this process's threads. Up to `seed_rows` rows it is exactly
    KMeans(random_state=seed); above, k-means++ picks its seeds among a seeded choice of `seed_rows` rows, and
    Lloyd runs on all rows."""
    from sklearn.cluster import KMeans, kmeans_plusplus

    init: str | np.ndarray = "k-means++"
    if len(X) > seed_rows:
        rows = np.random.RandomState(seed).choice(len(X), seed_rows, replace=False)
        init = kmeans_plusplus(X[rows], k, random_state=seed)[0]
    model = KMeans(n_clusters=k, init=init, random_state=seed, n_init=1).fit(X)
    return KMeansFit(k, model.labels_.astype(np.int64), model.cluster_centers_)


def capped_rows(n: int, max_rows: int, seed: int) -> np.ndarray:
    """The rows, sorted, of a seeded choice of `max_rows` of n rows: what a KMeans capped at `max_rows` fits on
    (every row is then labelled by its nearest centre)."""
    return np.sort(np.random.RandomState(seed).choice(n, max_rows, replace=False))
