"""DBSCAN and the k-distance knee at dataset scale, with memory bounded by chunks.

Methods: exact DBSCAN (scikit-learn) while its estimated memory, every point's eps-neighbourhood, fits the
budget; beyond it DBSCAN++ (Jang & Jiang 2019, "DBSCAN++: Towards fast and scalable density clustering", uniform
sampling): a seeded uniform sample of rows, each core when at least min_samples rows of all of X lie within eps
(DBSCAN's own density), cores within eps connected into clusters, every row labelled by its nearest core when
that core is within eps, else noise (-1); the k-distance curve (the knee that picks eps) from a seeded sample of
query rows against all rows, so that eps means the same on the sample and on the full data.

Distances come from chunk x chunk blocks: one float32 matrix product of rows centred on the data's mean gives
||a||^2 + ||b||^2 - 2ab; a pair within the product's rounding bound of a radius is decided again in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeVar

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from threadpoolctl import threadpool_limits

CHUNK_ROWS = 1024
MIN_CORE_SAMPLE = 20_000
ESTIMATE_ROWS = 1_000  # seeded rows whose eps-neighbourhoods estimate the mean neighbourhood size
NEIGHBOUR_BYTES = 32  # exact DBSCAN, per neighbour: an int64 index and a float64 distance, in growing vectors
POINT_BYTES = 100  # exact DBSCAN, per point: the numpy array object holding its neighbours
BLOCK_BYTES = 128  # DBSCAN++, per element of a chunk x chunk block: distances, masks, pending core links
ROW_BYTES = 64  # DBSCAN++, per row of X: its nearest sampled row, the distance, the label and its renumbering
CORE_BYTES = 64  # DBSCAN++, per sampled row besides its copies: index, count, core flag, component, graph
KTH_SPARE = 8  # candidates beyond k re-ranked in float64, so a float32 near-tie cannot change the k-th
_EPS32 = float(np.finfo(np.float32).eps)
T = TypeVar("T")


def in_threads(jobs: Sequence[Callable[[], T]], threads: int) -> list[T]:
    """Each job's result, in order: with threads > 1 the jobs run on that many threads, one BLAS thread each
    (numpy's loops and BLAS release the GIL, so the threads share the cores)."""
    if threads <= 1 or len(jobs) <= 1:
        return [job() for job in jobs]
    with threadpool_limits(limits=1), ThreadPoolExecutor(min(threads, len(jobs))) as pool:
        return list(pool.map(lambda job: job(), jobs))


def row_ranges(n: int, chunk_rows: int, parts: int) -> list[tuple[int, int]]:
    """At most `parts` consecutive (start, stop) ranges covering n rows, split at chunk boundaries."""
    chunks = -(-n // chunk_rows)
    step = max(1, -(-chunks // max(1, parts))) * chunk_rows
    return [(start, min(n, start + step)) for start in range(0, n, step)] or [(0, n)]


class _Chunk(NamedTuple):
    start: int
    rows: np.ndarray  # the rows as given
    sq: np.ndarray  # float64 squared norms about the origin
    aug: np.ndarray  # float32 [x, |x|^2, 1] on the block's row side, [-2x, 1, |x|^2] on its column side


def _chunks(X: np.ndarray, origin: np.ndarray, chunk_rows: int, columns: bool,
            subset: np.ndarray | None = None) -> Iterator[_Chunk]:
    for start in range(0, len(X) if subset is None else len(subset), chunk_rows):
        rows = X[start:start + chunk_rows] if subset is None else X[subset[start:start + chunk_rows]]
        x = rows.astype(np.float64) - origin
        sq = np.einsum("ij,ij->i", x, x)
        aug = np.empty((len(x), x.shape[1] + 2), np.float32)
        aug[:, :-2] = -2 * x if columns else x
        aug[:, -2], aug[:, -1] = (1, sq) if columns else (sq, 1)
        yield _Chunk(start, rows, sq, aug)


def _blocks(A: np.ndarray, B: np.ndarray, chunk_rows: int, upper: bool = False, subset: np.ndarray | None = None,
            keep_b: bool = True) -> Iterator[tuple[_Chunk, _Chunk, np.ndarray]]:
    """(a, b, float32 squared distances) for each chunk a of A (or of A[subset]) and b of B, with `upper` only b
    from a's start on; B's chunks are prepared once when `keep_b` (4 (d + 2) bytes a row of B)."""
    origin = np.mean(B, axis=0, dtype=np.float64)
    kept = list(_chunks(B, origin, chunk_rows, columns=True)) if keep_b else None
    for a in _chunks(A, origin, chunk_rows, columns=False, subset=subset):
        for b in kept if keep_b else _chunks(B, origin, chunk_rows, columns=True):
            if not upper or b.start >= a.start:
                yield a, b, a.aug @ b.aug.T


def exact_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 squared distance between a[i] and b[i]."""
    diff = a.astype(np.float64) - b
    return np.einsum("ij,ij->i", diff, diff)


def _within(a: _Chunk, b: _Chunk, d2: np.ndarray, r2: float) -> np.ndarray:
    """The boolean block d2 <= r2, float64-exact: pairs inside the rounding bound (a product of d + 2 terms,
    inputs, norms and r2 rounded to float32) are recomputed."""
    tol = (2 * a.rows.shape[1] + 16) * _EPS32 * (a.sq.max() + b.sq.max()) + 2 * _EPS32 * r2
    inside = d2 <= np.float32(r2 - tol)
    unsure = np.flatnonzero(inside != (d2 <= np.float32(r2 + tol)))
    if unsure.size:
        i, j = np.divmod(unsure, inside.shape[1])
        inside.flat[unsure] = exact_sq(a.rows[i], b.rows[j]) <= r2
    return inside


def _track_nearest(a: _Chunk, b: _Chunk, d2: np.ndarray, best: np.ndarray, nearest: np.ndarray) -> None:
    """Running nearest column (float32 ranking) of each row of the block."""
    rows = slice(a.start, a.start + len(a.rows))
    j = d2.argmin(axis=1)
    v = d2[np.arange(len(j)), j]
    closer = v < best[rows]
    best[rows] = np.where(closer, v, best[rows])
    nearest[rows] = np.where(closer, b.start + j, nearest[rows])


def counts_and_nearest(queries: np.ndarray, data: np.ndarray, radii: Sequence[float], chunk_rows: int,
                       nearest: bool = False, threads: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Counts of data rows within each radius of each query and, with `nearest`, each data row's nearest query:
    one pass over blocks of data rows x query columns, the data rows split between `threads` threads."""
    parts = in_threads([partial(_counts_part, queries, data[start:stop], radii, chunk_rows, nearest)
                        for start, stop in row_ranges(len(data), chunk_rows, threads)], threads)
    counts = np.sum([part[0] for part in parts], axis=0)
    return counts, np.concatenate([part[1] for part in parts]) if nearest else None


def _counts_part(queries: np.ndarray, data: np.ndarray, radii: Sequence[float], chunk_rows: int,
                 nearest: bool) -> tuple[np.ndarray, np.ndarray | None]:
    r2 = np.square(np.asarray(radii, np.float64))
    counts = np.zeros((len(queries), len(r2)), np.int64)
    closest = (np.full(len(data), np.inf, np.float32), np.zeros(len(data), np.int64)) if nearest else None
    for a, b, d2 in _blocks(data, queries, chunk_rows):
        for k, r in enumerate(r2):
            counts[b.start:b.start + len(b.rows), k] += np.add.reduce(
                _within(a, b, d2, r).view(np.uint8), axis=0, dtype=np.int32)
        if closest:
            _track_nearest(a, b, d2, *closest)
    return counts, closest[1] if closest else None


def neighbour_counts(queries: np.ndarray, data: np.ndarray, radii: Sequence[float],
                     chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """(len(queries), len(radii)) int64: rows of data within each radius (<=) of each query, the query itself
    included when it is in data, as DBSCAN counts. One pass over chunk x chunk blocks serves every radius."""
    return counts_and_nearest(queries, data, radii, chunk_rows)[0]


def kth_neighbour_distances(queries: np.ndarray, data: np.ndarray, k: int,
                            chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Exact distance from each query to its k-th nearest row of data (itself first when it is in data), as
    NearestNeighbors(n_neighbors=k).fit(data).kneighbors(queries)[0][:, -1]: a running set of the nearest
    candidates per query, chunk by chunk, re-ranked in float64 at the end."""
    if not 1 <= k <= len(data):
        raise ValueError(f"k-distance: k={k} must be between 1 and the {len(data):,} rows of data")
    keep = min(k + KTH_SPARE, len(data))
    vals, idx = np.full((len(queries), keep), np.inf, np.float32), np.zeros((len(queries), keep), np.int64)
    for a, b, d2 in _blocks(queries, data, chunk_rows, keep_b=False):
        local = np.flatnonzero((d2 < vals[a.start:a.start + len(a.rows)].max(axis=1, keepdims=True)).any(axis=1))
        rows = a.start + local  # the rows with a candidate closer than their current keep-th
        columns = np.broadcast_to(b.start + np.arange(len(b.rows)), d2.shape)
        v = np.concatenate([vals[rows], d2[local]], axis=1)
        i = np.concatenate([idx[rows], columns[local]], axis=1)
        top = np.argpartition(v, keep - 1, axis=1)[:, :keep]
        vals[rows], idx[rows] = np.take_along_axis(v, top, 1), np.take_along_axis(i, top, 1)
    return kth_exact(queries, data, idx, k, chunk_rows)


def kth_exact(queries: np.ndarray, data: np.ndarray, idx: np.ndarray, k: int, chunk_rows: int) -> np.ndarray:
    out = np.empty(len(queries))
    step = max(1, chunk_rows * chunk_rows // (idx.shape[1] * queries.shape[1]))
    for s in range(0, len(queries), step):
        diff = data[idx[s:s + step]] - queries[s:s + step, None, :].astype(np.float64)
        out[s:s + step] = np.partition(np.einsum("ijk,ijk->ij", diff, diff), k - 1, axis=1)[:, k - 1]
    return np.sqrt(out)


def seeded_rows(n: int, size: int, seed: int) -> np.ndarray:
    """A seeded uniform choice of min(size, n) row indices, sorted."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))


class DensityPasses(Protocol):
    """The passes over X that DBSCAN++ makes (rows of X named by index): numpy on chunks here, torch on a device
    in tasks.cluster.engine."""

    threads: int  # cells labelled side by side

    def counts(self, X: np.ndarray, queries: np.ndarray, radii: Sequence[float], nearest: bool = False
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """counts_and_nearest of the rows `queries` against X."""

    def components(self, X: np.ndarray, cores: np.ndarray, eps: float) -> np.ndarray:
        """Connected-component label of each core row, cores within eps linked."""

    def nearest(self, X: np.ndarray, rows: np.ndarray, targets: np.ndarray, eps: float) -> np.ndarray:
        """Each row's nearest target row (a position in `targets`) where one lies within eps."""


@dataclass(frozen=True)
class NumpyPasses:
    """The passes on numpy, chunk x chunk blocks, the counting pass on `threads` threads."""

    chunk_rows: int = CHUNK_ROWS
    threads: int = 1

    def counts(self, X, queries, radii, nearest=False):
        return counts_and_nearest(X[queries], X, radii, self.chunk_rows, nearest, self.threads)

    def components(self, X, cores, eps):
        return _core_components(X[cores], eps, self.chunk_rows)

    def nearest(self, X, rows, targets, eps):
        best, to_target = np.full(rows.size, np.inf, np.float32), np.zeros(rows.size, np.int64)
        for a, b, d2 in _blocks(X, X[targets], self.chunk_rows, subset=rows):
            _track_nearest(a, b, d2, best, to_target)
        return to_target


def dbscan_plus_plus(X: np.ndarray, eps: float, min_samples: int, core_sample: int, seed: int,
                     chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """DBSCAN++ labels (int64, noise -1, clusters 0..c-1 by decreasing size, ties by smallest row): a seeded
    uniform sample of `core_sample` rows, core when at least min_samples rows of X lie within eps. With
    core_sample >= len(X) it is DBSCAN's partition, except that a border point within eps of cores of two
    clusters joins its nearest core's cluster (scikit-learn gives it to the first cluster that reaches it)."""
    sample = seeded_rows(len(X), core_sample, seed)
    counts, nearest = counts_and_nearest(X[sample], X, [eps], chunk_rows, nearest=True)
    return labels_from_cores(X, sample, counts[:, 0] >= min_samples, nearest, eps, NumpyPasses(chunk_rows))


def labels_from_cores(X: np.ndarray, sample: np.ndarray, core: np.ndarray, nearest: np.ndarray, eps: float,
                      passes: DensityPasses) -> np.ndarray:
    """Each row's nearest sampled row's component if that row is a core within eps; if it is not a core, the
    nearest core's (searched for those rows only) if within eps; else noise. Nearest in float32, within in float64."""
    labels = np.full(len(X), -1, np.int64)
    if not core.any():
        return labels
    cores = sample[core]
    comp = np.full(len(sample), -1, np.int64)
    comp[core] = passes.components(X, cores, eps)
    close = _within_rows(X, np.arange(len(X)), sample[nearest], eps, CHUNK_ROWS)
    labels[close] = comp[nearest[close]]
    redo = np.flatnonzero(close & (labels < 0))
    if redo.size:
        to_core = passes.nearest(X, redo, cores, eps)
        reached = _within_rows(X, redo, cores[to_core], eps, CHUNK_ROWS)
        labels[redo[reached]] = comp[core][to_core[reached]]
    return by_size(labels)


def _within_rows(X: np.ndarray, rows: np.ndarray, targets: np.ndarray, eps: float, chunk_rows: int) -> np.ndarray:
    """Whether X[rows[i]] lies within eps (float64) of X[targets[i]], chunk by chunk."""
    return np.concatenate([exact_sq(X[rows[s:s + chunk_rows]], X[targets[s:s + chunk_rows]]) <= eps * eps
                           for s in range(0, len(rows), chunk_rows)])


def _core_components(C: np.ndarray, eps: float, chunk_rows: int) -> np.ndarray:
    """Connected-component label of each core, cores within eps linked: links between different current
    components are held for at most chunk_rows^2 pairs, then merged."""
    comp, pending, held = np.arange(len(C), dtype=np.int32), [], 0
    for a, b, d2 in _blocks(C, C, chunk_rows, upper=True):
        ca, cb = comp[a.start:a.start + len(a.rows)], comp[b.start:b.start + len(b.rows)]
        link = _within(a, b, d2, eps * eps)
        link &= ca[:, None] != cb[None, :]
        i, j = np.divmod(np.flatnonzero(link), link.shape[1])
        pending.append((ca[i], cb[j]))
        held += i.size
        if held >= chunk_rows * chunk_rows:
            comp, pending, held = merge(comp, pending), [], 0
    return merge(comp, pending) if pending else comp


def merge(comp: np.ndarray, pending: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    a, b = (np.concatenate(side) for side in zip(*pending))
    graph = coo_matrix((np.ones(a.size, bool), (a, b)), shape=(len(comp), len(comp)))
    return connected_components(graph, directed=False)[1][comp]


def by_size(labels: np.ndarray) -> np.ndarray:
    """Clusters renumbered 0..c-1 by decreasing size, ties by smallest row index; noise stays -1."""
    ids, first, sizes = np.unique(labels, return_index=True, return_counts=True)
    keep = ids >= 0
    lookup = np.full(labels.max(initial=-1) + 2, -1, np.int64)
    lookup[ids[keep][np.lexsort((first[keep], -sizes[keep]))] + 1] = np.arange(keep.sum())
    return lookup[labels + 1]


