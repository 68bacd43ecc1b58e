"""Fused loops over one block of float32 squared distances (numba, compiled on first use and cached): the counts of
every radius in one pass of vector compares, and the core links of every cell in one pass, where numpy makes
several passes per radius and cell.

Each element's rounding bound is its own: v = d2[i, j] is surely within radius k when v + cols[j] <= lo[k] -
rows[i], surely beyond when v - cols[j] > hi[k] + rows[i] (`rows` and `cols` the rows' and columns' slack, from
their squared norms); in between, its (i, j, k) comes back for the float64 re-check."""

from __future__ import annotations

import numba
import numpy as np

_OPTIONS = {"cache": True, "nogil": True, "boundscheck": False}


@numba.njit(**_OPTIONS)
def tally_block(d2: np.ndarray, lo: np.ndarray, hi: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                counts: np.ndarray, col0: int, band: np.ndarray) -> int:
    """counts[k, col0 + j] += the block's rows surely within radius k of column j, for every radius k in one pass
    of vector compares; each undecided (i, j, k) into `band`. Returns the band's size, more than len(band) where
    it did not fit (band_block then reads it again; the counts are complete either way)."""
    held = 0
    for i in range(d2.shape[0]):
        row = d2[i]
        for k in range(lo.shape[0]):
            low, high = np.float32(lo[k] - rows[i]), np.float32(hi[k] + rows[i])
            out = counts[k, col0:col0 + row.shape[0]]
            unsure = 0
            for j in range(row.shape[0]):
                below = row[j] + cols[j] <= low
                out[j] += below
                unsure += (row[j] - cols[j] <= high) ^ below
            if unsure:
                held = _band_row(row, cols, low, high, i, k, 0, band, held)
    return held


@numba.njit(**_OPTIONS)
def _band_row(row: np.ndarray, cols: np.ndarray, low: np.float32, high: np.float32, i: int, k: int, first: int,
              band: np.ndarray, held: int) -> int:
    for j in range(first, row.shape[0]):
        if row[j] + cols[j] > low and row[j] - cols[j] <= high:
            if held < band.shape[0]:
                band[held, 0], band[held, 1], band[held, 2] = i, j, k
            held += 1
    return held


@numba.njit(**_OPTIONS)
def band_block(d2: np.ndarray, lo: np.ndarray, hi: np.ndarray, rows: np.ndarray, cols: np.ndarray, upper: bool,
               band: np.ndarray) -> None:
    """Every undecided (i, j, k) of the block (with `upper`, only j > i), as tally_block and link_block find
    them, into `band`, sized to fit."""
    held = 0
    for i in range(d2.shape[0]):
        for k in range(lo.shape[0]):
            low, high = np.float32(lo[k] - rows[i]), np.float32(hi[k] + rows[i])
            held = _band_row(d2[i], cols, low, high, i, k, i + 1 if upper else 0, band, held)


@numba.njit(**_OPTIONS)
def _root(parent: np.ndarray, cell: int, i: int) -> int:
    while parent[cell, i] != i:
        parent[cell, i] = parent[cell, parent[cell, i]]
        i = parent[cell, i]
    return i


@numba.njit(**_OPTIONS)
def _join(parent: np.ndarray, cell: int, a: int, b: int) -> None:
    ra, rb = _root(parent, cell, a), _root(parent, cell, b)
    if ra != rb:
        parent[cell, max(ra, rb)] = min(ra, rb)


@numba.njit(**_OPTIONS)
def link_block(d2: np.ndarray, lo: np.ndarray, hi: np.ndarray, rows: np.ndarray, cols: np.ndarray,
               parent: np.ndarray, core: np.ndarray, radius: np.ndarray, row0: int, col0: int, upper: bool,
               band: np.ndarray) -> int:
    """Core links of one block of sampled rows for every cell at once: cell c's forest `parent[c]` joins rows
    row0 + i and col0 + j (positions in the sample) where both are cores of c (`core[c]`) and d2[i, j] is surely
    within c's radius (index radius[c] of lo / hi). With `upper`, only j > i of a diagonal block. Undecided
    (i, j, k) as in tally_block: into `band`, their count returned."""
    radii = lo.shape[0]
    held = 0
    for i in range(d2.shape[0]):
        row, top = d2[i], np.float32(hi[radii - 1] + rows[i])
        for j in range(i + 1 if upper else 0, row.shape[0]):
            if row[j] - cols[j] > top:
                continue
            for k in range(radii):
                if row[j] + cols[j] <= np.float32(lo[k] - rows[i]):
                    for c in range(parent.shape[0]):
                        if radius[c] >= k and core[c, row0 + i] and core[c, col0 + j]:
                            _join(parent, c, row0 + i, col0 + j)
                    break
                if row[j] - cols[j] <= np.float32(hi[k] + rows[i]):
                    if held < band.shape[0]:
                        band[held, 0], band[held, 1], band[held, 2] = i, j, k
                    held += 1
    return held


@numba.njit(**_OPTIONS)
def link_pairs(parent: np.ndarray, core: np.ndarray, radius: np.ndarray, a: np.ndarray, b: np.ndarray,
               k: np.ndarray) -> None:
    """Rows a[p] and b[p] joined in the cells of radius index exactly k[p] where both are cores (band pairs found
    within that radius in float64; a larger radius took them as sure, or has them in the band too)."""
    for p in range(a.shape[0]):
        for c in range(parent.shape[0]):
            if radius[c] == k[p] and core[c, a[p]] and core[c, b[p]]:
                _join(parent, c, a[p], b[p])


@numba.njit(**_OPTIONS)
def roots(parent: np.ndarray) -> np.ndarray:
    """Each row's root in each cell's forest."""
    out = np.empty_like(parent)
    for c in range(parent.shape[0]):
        for i in range(parent.shape[1]):
            out[c, i] = _root(parent, c, i)
    return out


@numba.njit(**_OPTIONS)
def keep_nearest(d2: np.ndarray, col0: int, vals: np.ndarray, idx: np.ndarray) -> None:
    """Each row's vals.shape[1] smallest distances so far (unordered) and their columns: a value of the block below
    the row's largest kept replaces it (column col0 + j). A vector count first skips the rows with none."""
    keep = vals.shape[1]
    for i in range(d2.shape[0]):
        row, kept, at = d2[i], vals[i], idx[i]
        worst_at = np.argmax(kept)
        worst = kept[worst_at]
        below = 0
        for j in range(row.shape[0]):
            below += row[j] < worst
        if not below:
            continue
        for j in range(row.shape[0]):
            if row[j] < worst:
                kept[worst_at], at[worst_at] = row[j], col0 + j
                worst_at = np.argmax(kept)
                worst = kept[worst_at]
