"""PCA fitted on a seeded sample of rows and applied wherever rows are read: plain arrays, so that a Dask worker
projects each row group as soon as it reads it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

PCA_POWER_ITERATIONS = 4  # randomized PCA: enough for the leading components of low-rank embeddings


@dataclass(frozen=True)
class Reducer:
    """x -> ((x - centre) / scale) @ components.T, in float32; scale is 1 unless standardised."""

    centre: np.ndarray  # (dim,)
    scale: np.ndarray  # (dim,)
    components: np.ndarray  # (n_components, dim)
    explained_variance_ratio: np.ndarray  # (n_components,)

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        return (((vectors - self.centre) / self.scale) @ self.components.T).astype(np.float32)


def capped_components(requested: int, rows: int, dim: int) -> int:
    """`requested` components, or as many as a PCA of `rows` vectors of `dim` dimensions has, where fewer; a cap
    is said in one log line."""
    n = min(requested, rows, dim)
    if n < requested:
        log.warning("--pca-components %d capped at %d: a PCA fitted on %d rows of %d dimensions has at most %d "
                    "components", requested, n, rows, dim, n)
    return n


def fit_reducer(vectors: np.ndarray, n_components: int, standardize: bool, seed: int) -> Reducer:
    """scikit-learn's randomized PCA on `vectors` (standardised first where asked), as a Reducer."""
    from sklearn.decomposition import PCA

    vectors = vectors.astype(np.float64)
    mean = vectors.mean(axis=0)
    scale = vectors.std(axis=0) if standardize else np.ones(vectors.shape[1])
    scale = np.where(scale == 0, 1.0, scale)
    pca = PCA(n_components=n_components, svd_solver="randomized", iterated_power=PCA_POWER_ITERATIONS,
              random_state=seed).fit((vectors - mean) / scale)
    centre = mean + pca.mean_ * scale  # PCA centres the scaled data again: fold both into one centre
    return Reducer(centre.astype(np.float32), scale.astype(np.float32), pca.components_.astype(np.float32),
                   pca.explained_variance_ratio_)
