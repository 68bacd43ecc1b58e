"""Float32 distance blocks and their float64 decisions: chunks of rows prepared once (centred, augmented, with
each row's share of the rounding bound), chunk x chunk blocks of squared distances from one float32 matrix
product, each row's nearest column, and the pairs a block's fused loop left for the float64 re-check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from tasks.cluster.kernels import band_block

EPS32 = float(np.finfo(np.float32).eps)


def rounding_slack(sq: np.ndarray | float, dim: int) -> np.ndarray | float:
    """A row's share of the rounding bound of its float32 products with others (`sq`: its squared norm about the
    origin; a product of dim + 2 terms, inputs and norms rounded to float32): |float32 - exact| of a pair's
    squared distance is at most the sum of the two rows' shares."""
    return (2 * dim + 16) * EPS32 * sq


class Chunk(NamedTuple):
    """Consecutive rows of one side of a block product, prepared for it."""

    start: int
    rows: np.ndarray  # the rows as given
    sq: np.ndarray  # float64 squared norms about the origin
    aug: np.ndarray  # float32 [x, |x|^2, 1] on the block's row side, [-2x, 1, |x|^2] on its column side
    slack: np.ndarray  # float32: each row's share of the rounding bound of its products (tasks.cluster.kernels)


def chunks(X: np.ndarray, origin: np.ndarray, chunk_rows: int, columns: bool,
           subset: np.ndarray | None = None) -> Iterator[Chunk]:
    """X's rows (or X[subset]'s) by `chunk_rows`, about `origin`, for the row side of products or the column side."""
    for start in range(0, len(X) if subset is None else len(subset), chunk_rows):
        rows = X[start:start + chunk_rows] if subset is None else X[subset[start:start + chunk_rows]]
        x = rows.astype(np.float64) - origin
        sq = np.einsum("ij,ij->i", x, x)
        aug = np.empty((len(x), x.shape[1] + 2), np.float32)
        aug[:, :-2] = -2 * x if columns else x
        aug[:, -2], aug[:, -1] = (1, sq) if columns else (sq, 1)
        yield Chunk(start, rows, sq, aug, rounding_slack(sq, x.shape[1]).astype(np.float32))


def distance_blocks(A: np.ndarray, B: np.ndarray, chunk_rows: int, upper: bool = False,
                    subset: np.ndarray | None = None, keep_b: bool = True) -> Iterator[tuple[Chunk, Chunk, np.ndarray]]:
    """(a, b, float32 squared distances) for each chunk a of A (or of A[subset]) and b of B, with `upper` only b
    from a's start on. The chunks of one side are prepared once and kept (4 (d + 2) bytes a row): B's, or with
    `keep_b` false A's (B's then prepared one at a time, B's chunks in the outer loop). Each block is written over
    the previous one (one buffer: no allocation a block, which costs page faults where malloc hands large blocks
    back to the system at once, as in Dask's worker processes), so a block is read before the next."""
    origin = np.mean(B, axis=0, dtype=np.float64)
    buffer = np.empty(chunk_rows * chunk_rows, np.float32)
    if keep_b:
        kept = list(chunks(B, origin, chunk_rows, columns=True))
        pairs = ((a, b) for a in chunks(A, origin, chunk_rows, columns=False, subset=subset) for b in kept)
    else:
        kept = list(chunks(A, origin, chunk_rows, columns=False, subset=subset))
        pairs = ((a, b) for b in chunks(B, origin, chunk_rows, columns=True) for a in kept)
    for a, b in pairs:
        if not upper or b.start >= a.start:
            out = buffer[:len(a.rows) * len(b.rows)].reshape(len(a.rows), len(b.rows))
            yield a, b, np.matmul(a.aug, b.aug.T, out=out)


def exact_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 squared distance between a[i] and b[i]."""
    diff = a.astype(np.float64) - b
    return np.einsum("ij,ij->i", diff, diff)


def track_nearest(a: Chunk, b: Chunk, d2: np.ndarray, best: np.ndarray, nearest: np.ndarray) -> None:
    """Running nearest column (float32 ranking) of each row of the block."""
    rows = slice(a.start, a.start + len(a.rows))
    j = d2.argmin(axis=1)
    v = d2[np.arange(len(j)), j]
    closer = v < best[rows]
    best[rows] = np.where(closer, v, best[rows])
    nearest[rows] = np.where(closer, b.start + j, nearest[rows])


def radius_bounds(r2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of the squared radii for the kernels: r2 less and more its float32 rounding, with margin."""
    return r2 * (1 - 4 * EPS32), r2 * (1 + 4 * EPS32)


def undecided(d2: np.ndarray, lo: np.ndarray, hi: np.ndarray, a: Chunk, b: Chunk, band: np.ndarray,
              held: int, upper: bool = False) -> np.ndarray:
    """The (row, column, radius) triples a kernel left undecided (with `upper`, of j > i only): `band`'s first
    `held`, or read again where they did not fit."""
    if held <= len(band):
        return band[:held]
    found = np.empty((held, 3), np.int64)
    band_block(d2, lo, hi, a.slack, b.slack, upper, found)
    return found
