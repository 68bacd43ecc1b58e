"""DBSCAN and the k-distance knee at dataset scale, with memory bounded by chunks.

Methods: exact DBSCAN (scikit-learn) while its estimated memory, every point's eps-neighbourhood, fits the
budget; beyond it DBSCAN++ (Jang & Jiang 2019, "DBSCAN++: Towards fast and scalable density clustering", uniform
sampling): a seeded uniform sample of rows, each core when at least min_samples rows of all of X lie within eps
(DBSCAN's own density), cores within eps connected into clusters, every row labelled by its nearest core when
that core is within eps, else noise (-1); the k-distance curve (the knee that picks eps) from a seeded sample of
query rows against all rows, so that eps means the same on the sample and on the full data.

Distances come from chunk x chunk blocks (tasks.cluster.distances), read once each by fused loops
(tasks.cluster.kernels); a pair within the product's rounding bound of a radius is decided again in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeVar

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from threadpoolctl import threadpool_limits

from tasks.cluster.distances import distance_blocks, exact_sq, radius_bounds, track_nearest, undecided
from tasks.cluster.kernels import keep_nearest, link_block, link_pairs, roots, tally_block

CHUNK_ROWS = 1024
MIN_CORE_SAMPLE = 20_000
ESTIMATE_ROWS = 1_000  # seeded rows whose eps-neighbourhoods estimate the mean neighbourhood size
NEIGHBOUR_BYTES = 32  # exact DBSCAN, per neighbour: an int64 index and a float64 distance, in growing vectors
POINT_BYTES = 100  # exact DBSCAN, per point: the numpy array object holding its neighbours
BLOCK_BYTES = 128  # DBSCAN++, per element of a chunk x chunk block: distances, masks, pending core links
ROW_BYTES = 64  # DBSCAN++, per row of X: its nearest sampled row, the distance, the label and its renumbering
CORE_BYTES = 64  # DBSCAN++, per sampled row besides its copies: index, count, core flag, component, graph
LINK_BYTES = 17  # DBSCAN++, per sampled row and cell: its core flag, union-find parent and root
BAND_ROWS = 4096  # float32-band elements a block's pass holds before it reads the block again
KTH_SPARE = 8  # candidates beyond k re-ranked in float64, so a float32 near-tie cannot change the k-th
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
    order = np.argsort(np.asarray(radii, np.float64), kind="stable")
    r2 = np.square(np.asarray(radii, np.float64))[order]
    counts = np.zeros((len(r2), len(queries)), np.int32)  # at most the rows of one part
    closest = (np.full(len(data), np.inf, np.float32), np.zeros(len(data), np.int64)) if nearest else None
    band, (lo, hi) = np.empty((BAND_ROWS, 3), np.int64), radius_bounds(r2)
    for a, b, d2 in distance_blocks(data, queries, chunk_rows):
        held = tally_block(d2, lo, hi, a.slack, b.slack, counts, b.start, band)
        i, j, k = undecided(d2, lo, hi, a, b, band, held).T
        within = exact_sq(a.rows[i], b.rows[j]) <= r2[k]
        np.add.at(counts, (k[within], b.start + j[within]), 1)
        if closest:
            track_nearest(a, b, d2, *closest)
    result = np.empty((len(queries), len(r2)), np.int64)
    result[:, order] = counts.T
    return result, closest[1] if closest else None


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
    return kth_of(kth_candidates(queries, data, k, chunk_rows), k)


def kth_candidates(queries: np.ndarray, data: np.ndarray, k: int, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """The float64 squared distances from each query to its nearest min(k + KTH_SPARE, len(data)) rows of data by
    float32 ranking: enough candidates that the float64 k-th among them is the exact k-th (`kth_of`), also when
    several blocks of data each give theirs."""
    keep = min(k + KTH_SPARE, len(data))
    vals, idx = np.full((len(queries), keep), np.inf, np.float32), np.zeros((len(queries), keep), np.int64)
    for a, b, d2 in distance_blocks(queries, data, chunk_rows, keep_b=False):
        keep_nearest(d2, b.start, vals[a.start:a.start + len(a.rows)], idx[a.start:a.start + len(a.rows)])
    return candidate_sq(queries, data, idx, chunk_rows)


def candidate_sq(queries: np.ndarray, data: np.ndarray, idx: np.ndarray, chunk_rows: int) -> np.ndarray:
    """float64 squared distance from each query i to the rows data[idx[i]], a few queries at a time."""
    out = np.empty(idx.shape)
    step = max(1, chunk_rows * chunk_rows // (max(1, idx.shape[1]) * queries.shape[1]))
    for s in range(0, len(queries), step):
        diff = data[idx[s:s + step]] - queries[s:s + step, None, :].astype(np.float64)
        out[s:s + step] = np.einsum("ijk,ijk->ij", diff, diff)
    return out


def kth_of(candidates: np.ndarray, k: int) -> np.ndarray:
    """The distance of each query's k-th nearest candidate (columns: float64 squared distances, in any order)."""
    return np.sqrt(np.partition(candidates, k - 1, axis=1)[:, k - 1])


def seeded_rows(n: int, size: int, seed: int) -> np.ndarray:
    """A seeded uniform choice of min(size, n) row indices, sorted."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))


class DensityPasses(Protocol):
    """The passes over rows that DBSCAN++ makes: numpy and fused loops on chunks here, torch on a device in
    tasks.cluster.engine. Each pass takes the rows themselves, so that X may be one worker's block of rows."""

    threads: int  # cells labelled side by side

    def counts(self, queries: np.ndarray, X: np.ndarray, radii: Sequence[float], nearest: bool = False
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """counts_and_nearest of the rows `queries` against the rows X."""

    def components(self, S: np.ndarray, cores: Sequence[np.ndarray], radii: Sequence[float]) -> list[np.ndarray]:
        """For each cell, the connected-component label of each of its cores (the rows S[cores[c]], cores within
        radii[c] linked)."""

    def nearest(self, rows: np.ndarray, targets: np.ndarray, eps: float) -> np.ndarray:
        """Each row's nearest target (a position in `targets`) where one lies within eps."""

    def kth_candidates(self, queries: np.ndarray, X: np.ndarray, k: int) -> np.ndarray:
        """kth_candidates of the queries among the rows X (the knee's pass)."""


@dataclass(frozen=True)
class NumpyPasses:
    """The passes on chunk x chunk blocks (float32 products by BLAS, fused loops over each block), the counting
    pass on `threads` threads."""

    chunk_rows: int = CHUNK_ROWS
    threads: int = 1

    def counts(self, queries, X, radii, nearest=False):
        return counts_and_nearest(queries, X, radii, self.chunk_rows, nearest, self.threads)

    def components(self, S, cores, radii):
        return grid_components(S, cores, radii, self.chunk_rows)

    def nearest(self, rows, targets, eps):
        best, to_target = np.full(len(rows), np.inf, np.float32), np.zeros(len(rows), np.int64)
        for a, b, d2 in distance_blocks(rows, targets, self.chunk_rows):
            track_nearest(a, b, d2, best, to_target)
        return to_target

    def kth_candidates(self, queries, X, k):
        return kth_candidates(queries, X, k, self.chunk_rows)


def dbscan_plus_plus(X: np.ndarray, eps: float, min_samples: int, core_sample: int, seed: int,
                     chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """DBSCAN++ labels (int64, noise -1, clusters 0..c-1 by decreasing size, ties by smallest row): a seeded
    uniform sample of `core_sample` rows, core when at least min_samples rows of X lie within eps. With
    core_sample >= len(X) it is DBSCAN's partition, except that a border point within eps of cores of two
    clusters joins its nearest core's cluster (scikit-learn gives it to the first cluster that reaches it)."""
    return sampled_labels(X, seeded_rows(len(X), core_sample, seed), [(eps, min_samples)], NumpyPasses(chunk_rows))[0]


def sampled_labels(X: np.ndarray, sample: np.ndarray, cells: Sequence[tuple[float, int]], passes: DensityPasses
                   ) -> list[np.ndarray]:
    """DBSCAN++ labels of each (eps, min_samples) cell from one core sample: one pass counting the sampled rows'
    neighbourhoods for every eps and finding each row's nearest sampled row, one pass linking the cores of every
    cell, then every row labelled (`block_labels`) and the clusters numbered by size."""
    S = X[sample]
    table, position = passes.counts(S, X, sorted({eps for eps, _ in cells}), nearest=True)
    linked = core_links(S, table, cells, passes)
    return [by_size(labels) for labels in block_labels(X, S, position, cells, linked, passes)]


class CoreLinks(NamedTuple):
    """Each cell's cores (a mask over the sampled rows) and each core's connected component."""

    cores: list[np.ndarray]
    components: list[np.ndarray]


def core_links(S: np.ndarray, table: np.ndarray, cells: Sequence[tuple[float, int]], passes: DensityPasses
               ) -> CoreLinks:
    """The cores of every cell (sampled rows with at least min_samples rows within eps: `table` holds each sampled
    row's counts, one column per radius in increasing order) and their components, in one linking pass."""
    counts = dict(zip(sorted({eps for eps, _ in cells}), table.T))
    cores = [counts[eps] >= min_samples for eps, min_samples in cells]
    return CoreLinks(cores, passes.components(S, cores, [eps for eps, _ in cells]))


def block_labels(X: np.ndarray, S: np.ndarray, position: np.ndarray, cells: Sequence[tuple[float, int]],
                 linked: CoreLinks, passes: DensityPasses) -> list[np.ndarray]:
    """Each cell's component (or -1) of every row of X, from each row's nearest sampled row (`position` in S): one
    float64 distance to it serves every cell; the cells labelled on passes.threads. The components are not yet
    numbered by size (`by_size`), so that blocks of rows can be labelled apart and joined."""
    sq = _exact_rows(X, S, position, CHUNK_ROWS)
    return in_threads([partial(labels_from_cores, X, S, core, comp, position, sq, eps, passes)
                       for (eps, _), core, comp in zip(cells, *linked)], passes.threads)


def labels_from_cores(X: np.ndarray, S: np.ndarray, core: np.ndarray, components: np.ndarray, position: np.ndarray,
                      sq: np.ndarray, eps: float, passes: DensityPasses) -> np.ndarray:
    """Each row's nearest sampled row's component (`components`, one per core) if that row is a core within eps
    (`sq`: the float64 squared distance to it); if it is not a core, the nearest core's (searched for those rows
    only) if within eps; else noise. Nearest in float32, within in float64."""
    labels = np.full(len(X), -1, np.int64)
    if not core.any():
        return labels
    cores = S[core]
    comp = np.full(len(S), -1, np.int64)
    comp[core] = components
    close = sq <= eps * eps
    labels[close] = comp[position[close]]
    redo = np.flatnonzero(close & (labels < 0))
    if redo.size:
        far = X[redo]
        to_core = passes.nearest(far, cores, eps)
        reached = _exact_rows(far, cores, to_core, CHUNK_ROWS) <= eps * eps
        labels[redo[reached]] = components[to_core[reached]]
    return labels


def _exact_rows(A: np.ndarray, B: np.ndarray, index: np.ndarray, chunk_rows: int) -> np.ndarray:
    """float64 squared distance of A[i] to B[index[i]], chunk by chunk (B[index] is never held whole)."""
    return np.concatenate([exact_sq(A[s:s + chunk_rows], B[index[s:s + chunk_rows]])
                           for s in range(0, len(A), chunk_rows)] or [np.empty(0)])


def grid_components(S: np.ndarray, cores: Sequence[np.ndarray], radii: Sequence[float],
                    chunk_rows: int = CHUNK_ROWS) -> list[np.ndarray]:
    """For each cell c, the connected-component label of each of its cores (S[cores[c]]), cores within
    radii[c] (float64) linked: one pass over the blocks of sampled rows that are a core of any cell serves every
    cell, each cell's links joined in its own union-find forest."""
    if not cores:
        return []
    core = np.stack(cores)
    anywhere = np.flatnonzero(core.any(axis=0))
    if not anywhere.size:
        return [np.empty(0, np.int64) for _ in cores]
    r2, radius = np.unique(np.square(np.asarray(radii, np.float64)), return_inverse=True)
    parent = np.tile(np.arange(len(anywhere)), (len(core), 1))
    own, band = np.ascontiguousarray(core[:, anywhere]), np.empty((BAND_ROWS, 3), np.int64)
    C, (lo, hi) = S[anywhere], radius_bounds(r2)
    for a, b, d2 in distance_blocks(C, C, chunk_rows, upper=True):
        diagonal = a.start == b.start
        held = link_block(d2, lo, hi, a.slack, b.slack, parent, own, radius, a.start, b.start, diagonal, band)
        i, j, k = undecided(d2, lo, hi, a, b, band, held, diagonal).T
        keep = exact_sq(a.rows[i], b.rows[j]) <= r2[k]
        link_pairs(parent, own, radius, a.start + i[keep], b.start + j[keep], k[keep])
    root = roots(parent)
    return [root[c][own[c]] for c in range(len(core))]


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


