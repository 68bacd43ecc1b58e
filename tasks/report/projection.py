"""A 2-D projection of sampled rows for the explorer: UMAP where umap-learn is installed (the `umap` extra), else
the PCA plane (the first two components the rows are already projected on)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

Method = Literal["auto", "umap", "pca"]


@dataclass(frozen=True)
class Projection:
    xy: np.ndarray  # (rows, 2) float32
    method: str  # "umap" or "pca"
    note: str  # how it was made, for the page


def _umap_module():
    """umap-learn's module, or None where it is missing (an unrelated or leftover `umap` has no UMAP)."""
    try:
        module = importlib.import_module("umap")
    except ImportError:
        return None
    return module if hasattr(module, "UMAP") else None


def project(reduced: np.ndarray, seed: int, method: Method = "auto") -> Projection:
    """The rows' PCA coordinates `reduced` in two dimensions: UMAP (seeded) with method 'umap', or with 'auto'
    where umap-learn imports and there are enough rows for its neighbourhoods; else the first two components."""
    umap = None if method == "pca" else _umap_module()
    if method == "umap" and umap is None:
        raise ImportError("umap-learn is not installed: pip install 'squad-attention-atlas[umap]'")
    neighbours = min(15, len(reduced) - 1)
    if umap is not None and neighbours >= 2:
        xy = umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed).fit_transform(reduced)
        return Projection(np.asarray(xy, np.float32), "umap",
                          f"UMAP of the {reduced.shape[1]} PCA components ({neighbours} neighbours, seed {seed})")
    why = "" if method == "pca" else " (umap-learn is not installed)" if umap is None else " (too few rows for UMAP)"
    return Projection(np.asarray(reduced[:, :2], np.float32), "pca", f"the first two PCA components{why}")
