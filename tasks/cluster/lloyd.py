"""KMeans with the rows split across the workers (tasks.cluster.spread), in torch on each worker's device: the
k-means++ seeds of `kmeans_fit` (scikit-learn's, on the same seeded rows), then Lloyd iterations over every row
with every k of a search side by side. Each block assigns its rows to their nearest centre and sums them on its
device (float32 distances, float64 sums); the sums are joined here into the next centres, until each k's centres
move less than scikit-learn's tolerance. An empty cluster keeps its centre."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from tasks.cluster.backend import KMeansFit
from tasks.cluster.kmeans import KMEANS_SEED_ROWS
from tasks.cluster.spread import Engine, RowBlocks

MAX_ITER = 300  # scikit-learn's default
TOL = 1e-4  # of the mean variance of the seeding rows' columns, as scikit-learn's tol of the data's
STEP_ROWS = 1 << 16  # rows of a block whose distances to the centres are held at once
T = TypeVar("T")
_KEPT: dict[tuple[str, int], tuple[weakref.ref, object]] = {}


def kept(X: np.ndarray, kind: str, make: Callable[[], T]) -> T:
    """`make()` for the array X, made once and kept while X lives (a worker's block, between its tasks)."""
    key = (kind, id(X))
    held = _KEPT.get(key)
    if held is not None and held[0]() is X:
        return held[1]  # type: ignore[return-value]
    value = make()
    _KEPT[key] = (weakref.ref(X, lambda ref: _KEPT.pop(key) if _KEPT.get(key, (None,))[0] is ref else None), value)
    return value


def _nearest_chunks(x, c):
    """(rows, each row's nearest centre) of the device rows x, STEP_ROWS at a time, for the device centres c."""
    cc = (c * c).sum(dim=1)
    for start in range(0, len(x), STEP_ROWS):
        rows = x[start:start + STEP_ROWS]
        yield rows, (cc[None, :] - 2 * rows @ c.T).argmin(dim=1)


def _sums(x, c) -> tuple[np.ndarray, np.ndarray]:
    """The float64 sum and the count of the rows nearest each centre."""
    import torch

    sums = torch.zeros((len(c), x.shape[1]), dtype=torch.float64, device=x.device)
    counts = torch.zeros(len(c), dtype=torch.int64, device=x.device)
    for rows, nearest in _nearest_chunks(x, c):
        sums.index_add_(0, nearest, rows.double())
        counts += torch.bincount(nearest, minlength=len(c))
    return sums.cpu().numpy(), counts.cpu().numpy()


def _labels(x, c) -> np.ndarray:
    """Each row's nearest centre."""
    return np.concatenate([nearest.cpu().numpy() for _, nearest in _nearest_chunks(x, c)] or [np.zeros(0, int)])


def _on_device(X: np.ndarray, centres: list[np.ndarray], engine: Engine, job: Callable):
    """`job(rows, centres)` for each centre set, on the engine's device, the block's float32 copy kept there."""
    import torch

    with engine.device() as device:
        x = kept(X, f"rows on {device}", lambda: torch.from_numpy(np.ascontiguousarray(X, np.float32)).to(device))
        return [job(x, torch.from_numpy(np.asarray(C, np.float32)).to(device)) for C in centres]


def seeding_rows(n: int, seed: int, seed_rows: int = KMEANS_SEED_ROWS) -> np.ndarray:
    """The rows k-means++ picks its seeds among: `kmeans_fit`'s seeded choice above `seed_rows` rows, else all."""
    return np.random.RandomState(seed).choice(n, seed_rows, replace=False) if n > seed_rows else np.arange(n)


def spread_kmeans(blocks: RowBlocks, ks: Sequence[int], seed: int, engine: Engine, max_iter: int = MAX_ITER,
                  seed_rows: int = KMEANS_SEED_ROWS, tol: float = TOL) -> list[KMeansFit]:
    """KMeans for each k over every row of the blocks (see the module's docstring), with the labels of every row;
    a k stops when its centres' squared shift is at most `tol` times the seeding rows' mean column variance."""
    from sklearn.cluster import kmeans_plusplus

    rows = seeding_rows(blocks.shape[0], seed, seed_rows)
    order = np.argsort(rows)
    sample = np.empty((len(rows), blocks.shape[1]), np.float32)
    sample[order] = blocks.take(rows[order])
    tol *= float(np.mean(np.var(sample.astype(np.float64), axis=0)))
    centres = {k: kmeans_plusplus(sample, k, random_state=seed)[0].astype(np.float64) for k in ks}
    moving = list(ks)
    for _ in range(max_iter):
        if not moving:
            break
        parts = blocks.each(_on_device, blocks.shared([centres[k] for k in moving]), engine, _sums)
        for i, k in enumerate(list(moving)):
            sums, counts = (np.sum([part[i][j] for part in parts], axis=0) for j in (0, 1))
            new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres[k])
            shift, centres[k] = float(np.square(new - centres[k]).sum()), new
            if shift <= tol:
                moving.remove(k)
    labels = blocks.each(_on_device, blocks.shared([centres[k] for k in ks]), engine, _labels)
    return [KMeansFit(k, np.concatenate([part[i] for part in labels]).astype(np.int64), centres[k])
            for i, k in enumerate(ks)]
