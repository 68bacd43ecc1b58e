"""The DBSCAN++ grid and the k-distance knee with the rows split across the Dask workers: each worker holds one
block of the rows and runs every pass over its own block, against the few rows all blocks need (the core sample,
the knee's queries), which are sent to each; only per-sample tables, per-row labels and per-query candidates come
back. Labels and distances equal the single-process passes' (tasks.cluster.dbscan, tasks.cluster.density)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from tasks.cluster.dbscan import DensitySettings, core_sample_size, exact_dbscan_bytes, sampled_record
from tasks.cluster.density import (
    CHUNK_ROWS, ESTIMATE_ROWS, CoreLinks, DensityPasses, NumpyPasses, block_labels, by_size, core_links, kth_of,
    seeded_rows,
)


@dataclass(frozen=True)
class Engine:
    """The passes a worker runs over its block: numpy's and the fused loops on `threads` threads, or with `torch`
    the torch engine on the worker's GPU (its CPU where it has none)."""

    torch: bool = False
    threads: int = 1
    seed: int = 0

    @contextmanager
    def passes(self) -> Iterator[DensityPasses]:
        if not self.torch:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=self.threads):
                yield NumpyPasses(CHUNK_ROWS, self.threads)
            return
        from tasks.cluster.engine import TorchPasses, engine_device, on_device

        with on_device(self.threads):
            yield TorchPasses(engine_device(gpu=True), seed=self.seed)

    @contextmanager
    def device(self):
        """The torch device of the worker's passes: its GPU with `torch` where it has one, else its CPU (with
        `threads` threads)."""
        from tasks.cluster.engine import engine_device, on_device

        with on_device(self.threads):
            yield engine_device(gpu=self.torch)


@dataclass
class RowBlocks:
    """The rows of X as one block per Dask worker, held there (`parts`: their futures, `workers`: where each is,
    `starts`: each block's first row)."""

    client: object
    parts: list
    workers: list[str]
    starts: list[int]
    shape: tuple[int, int]
    itemsize: int

    @classmethod
    def scatter(cls, client, X: np.ndarray) -> RowBlocks:
        """X cut into one block of consecutive rows per worker, each block sent from this process to its worker."""
        workers = sorted(client.nthreads())[:max(1, len(X))]
        pieces = np.array_split(X, len(workers))
        parts = [client.scatter(piece, workers=[worker], hash=False) for piece, worker in zip(pieces, workers)]
        starts = np.cumsum([0] + [len(piece) for piece in pieces[:-1]]).tolist()
        return cls(client, parts, workers, starts, X.shape, X.itemsize)

    def map(self, job, *args, along: list | None = None) -> list:
        """`job(block, *args)` on each block's worker (`job(block, along[i], *args)` for block i, where `along`
        gives one argument per block); the futures, in block order."""
        return [self.client.submit(job, part, *([] if along is None else [along[i]]), *args, workers=[worker],
                                   allow_other_workers=False, pure=False)
                for i, (part, worker) in enumerate(zip(self.parts, self.workers))]

    def each(self, job, *args, along: list | None = None) -> list:
        """The results of `map`, in block order, here."""
        return self.client.gather(self.map(job, *args, along=along))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows of X at the sorted indices `rows`, fetched from the blocks holding them."""
        by_block = np.split(rows, np.searchsorted(rows, self.starts[1:]))
        return np.concatenate(self.client.gather([
            self.client.submit(np.take, block, wanted - start, axis=0, workers=[worker], pure=False)
            for block, wanted, start, worker in zip(self.parts, by_block, self.starts, self.workers)]))

    def shared(self, data):
        """`data` sent once to every worker, for the jobs on all blocks."""
        return self.client.scatter(data, broadcast=True, hash=False)


class SpreadRows:
    """The last rows a backend split across its client's workers (`RowBlocks.scatter`), kept for every job that
    reads the same array."""

    def __init__(self, client) -> None:
        self.client = client
        self._last: tuple[np.ndarray, RowBlocks] | None = None

    def __call__(self, X: np.ndarray) -> RowBlocks:
        if self._last is None or self._last[0] is not X:
            self._last = X, RowBlocks.scatter(self.client, X)
        return self._last[1]


def _count_job(X: np.ndarray, queries: np.ndarray, radii: list[float], engine: Engine, nearest: bool
               ) -> tuple[np.ndarray, np.ndarray | None]:
    with engine.passes() as passes:
        return passes.counts(queries, X, radii, nearest)


def _link_job(S: np.ndarray, table: np.ndarray, cells: list[tuple[float, int]], engine: Engine) -> CoreLinks:
    with engine.passes() as passes:
        return core_links(S, table, cells, passes)


def _label_job(X: np.ndarray, counted: tuple[np.ndarray, np.ndarray], S: np.ndarray,
               cells: list[tuple[float, int]], linked: CoreLinks, engine: Engine) -> list[np.ndarray]:
    with engine.passes() as passes:
        return block_labels(X, S, counted[1], cells, linked, passes)


def _candidates_job(X: np.ndarray, queries: np.ndarray, k: int, engine: Engine) -> np.ndarray:
    with engine.passes() as passes:
        return passes.kth_candidates(queries, X, k)


def spread_grid(blocks: RowBlocks, cells: Sequence[tuple[float, int]], settings: DensitySettings, engine: Engine
                ) -> list[tuple[np.ndarray, dict]]:
    """DBSCAN++ labels and records of every (eps, min_samples) cell, as `dbscan_grid_labels` gives them beyond its
    exact rows: each block counts its rows within every eps of the estimate rows and then of the core sample (the
    counts summed here), one worker links the cores of every cell, each block labels its own rows; the labels
    come back here a block at a time, and the clusters are numbered by size over all rows."""
    cells = [(float(eps), int(min_samples)) for eps, min_samples in cells]
    (n, dim), radii, client = blocks.shape, sorted({eps for eps, _ in cells}), blocks.client
    estimate = blocks.shared(blocks.take(seeded_rows(n, ESTIMATE_ROWS, settings.seed)))
    counts = [part[0] for part in blocks.each(_count_job, estimate, radii, engine, False)]
    mean = dict(zip(radii, np.sum(counts, axis=0).mean(axis=0)))
    row = blocks.itemsize * dim
    size, need = core_sample_size(blocks.shape, row, settings.budget_bytes, len(radii), len(cells), engine.threads,
                                  CHUNK_ROWS, max(exact_dbscan_bytes(m, n, row) for m in mean.values()),
                                  settings.core_sample)
    S = blocks.shared(blocks.take(seeded_rows(n, size, settings.seed)))
    counted = blocks.map(_count_job, S, radii, engine, True)
    table = np.sum(client.gather(client.map(itemgetter(0), counted)), axis=0)
    linked = client.submit(_link_job, S, table, cells, engine, pure=False)
    parts = blocks.each(_label_job, S, cells, linked, engine, along=counted)
    record = sampled_record(size, need)
    return [(by_size(np.concatenate([part[c] for part in parts])), {**record, "mean_neighbours": float(mean[eps])})
            for c, (eps, _) in enumerate(cells)]


def spread_kth(blocks: RowBlocks, queries: np.ndarray, k: int, engine: Engine) -> np.ndarray:
    """tasks.cluster.density.kth_neighbour_distances against every row: each block's nearest candidates for every
    query, in float64, joined here and ranked."""
    if not 1 <= k <= blocks.shape[0]:
        raise ValueError(f"k-distance: k={k} must be between 1 and the {blocks.shape[0]:,} rows of data")
    return kth_of(np.concatenate(blocks.each(_candidates_job, blocks.shared(queries), k, engine), axis=1), k)
