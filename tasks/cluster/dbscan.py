"""Which DBSCAN runs: exact scikit-learn DBSCAN while every point's eps-neighbourhood fits the memory budget
(and the rows are few enough), DBSCAN++ (tasks.cluster.density) beyond; a grid of cells sharing one pass; and
the approximate method's agreement with the exact one where both can run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score

from tasks.cluster.density import (
    BLOCK_BYTES,
    CHUNK_ROWS,
    CORE_BYTES,
    LINK_BYTES,
    ESTIMATE_ROWS,
    MIN_CORE_SAMPLE,
    NEIGHBOUR_BYTES,
    POINT_BYTES,
    ROW_BYTES,
    by_size,
    DensityPasses,
    NumpyPasses,
    dbscan_plus_plus,
    neighbour_counts,
    sampled_labels,
    seeded_rows,
)
from tasks.cluster.resources import MemoryBudgetError



class DbscanMethod(StrEnum):
    """How a DBSCAN cell ran: every neighbourhood counted (`EXACT`), or DBSCAN++ on a seeded core sample."""

    EXACT = "exact"
    SAMPLED = "dbscan++"


def exact_record(implementation: str | None = None, **details) -> dict:
    """The record of a cell that ran exactly; `implementation` names a library other than scikit-learn."""
    named = {} if implementation in (None, "scikit-learn") else {"implementation": implementation}
    return {"method": DbscanMethod.EXACT, "core_sample": None, **named, **details}

@dataclass(frozen=True)
class DensitySettings:
    """How DBSCAN runs at scale: exactly up to `exact_rows` rows while its neighbourhoods fit `budget_bytes`,
    else DBSCAN++ with a seeded core sample of at most `core_sample` rows, its passes on `threads` threads."""

    budget_bytes: int
    exact_rows: int
    core_sample: int
    seed: int
    threads: int = 1


def exact_dbscan_bytes(mean_neighbours: float, n: int, row_bytes: int = 0) -> int:
    """Memory of scikit-learn's DBSCAN on n rows: every point's eps-neighbourhood (NEIGHBOUR_BYTES a neighbour)
    and a numpy array object per point, plus X itself when `row_bytes` (bytes of one row of X) is given."""
    return int(n * (NEIGHBOUR_BYTES * mean_neighbours + POINT_BYTES + row_bytes))


def estimate_neighbours(X: np.ndarray, eps: float, sample_rows: int, seed: int) -> float:
    """Mean eps-neighbourhood size (itself included) of a seeded sample of rows, counted against all of X."""
    return float(neighbour_counts(X[seeded_rows(len(X), sample_rows, seed)], X, [eps]).mean())


def core_sample_size(shape: tuple[int, int], row: int, budget_bytes: int, radii: int, cells: int, threads: int,
                     chunk_rows: int, exact_bytes: int, most: int | None) -> tuple[int, int]:
    """(core sample, estimated bytes): the largest sample, up to `most`, whose DBSCAN++ working memory over rows of
    `shape` (`row` bytes each) fits, with `threads` blocks and cells' per-row arrays at once, every cell's labels
    and core links kept."""
    n, dim = shape
    fixed = n * (row + ROW_BYTES * threads + 8 * cells) + BLOCK_BYTES * chunk_rows * chunk_rows * threads
    per_core = row + 4 * (dim + 2) * threads + CORE_BYTES + 8 * radii * threads + LINK_BYTES * cells
    least = min(n, MIN_CORE_SAMPLE, most or n)
    size = min(n, most or n, max(0, budget_bytes - fixed) // per_core)
    if size < least:
        raise MemoryBudgetError(
            f"DBSCAN: {n:,} rows need an estimated {fixed + least * per_core:,} bytes even as DBSCAN++ with "
            f"{least:,} core rows (exact DBSCAN: {exact_bytes:,}), above the memory budget of {budget_bytes:,}"
            " bytes; raise --memory-budget or lower the sample")
    return int(size), int(fixed + size * per_core)


def sampled_record(core_sample: int, estimated_bytes: int) -> dict:
    """The record of a cell that ran as DBSCAN++ (its "mean_neighbours" added per cell)."""
    return {"method": DbscanMethod.SAMPLED, "core_sample": int(core_sample), "estimated_bytes": int(estimated_bytes)}


def dbscan_labels(X: np.ndarray, eps: float, min_samples: int, budget_bytes: int, seed: int,
                  chunk_rows: int = CHUNK_ROWS) -> tuple[np.ndarray, dict]:
    """DBSCAN labels (clusters 0..c-1 by decreasing size, noise -1) and a record {"method", "core_sample",
    "estimated_bytes" (of the method run), "mean_neighbours"}. Exact scikit-learn DBSCAN when exact_dbscan_bytes
    (mean neighbourhood of ESTIMATE_ROWS seeded rows) fits budget_bytes; else DBSCAN++ with the largest core
    sample s (at least min(n, MIN_CORE_SAMPLE), else MemoryBudgetError) whose working memory fits, for n rows of
    d columns, `row` bytes each: n (row + ROW_BYTES + 8) + s (row + 4 (d + 2) + CORE_BYTES + 8 + LINK_BYTES)
    + BLOCK_BYTES chunk_rows^2. That memory barely grows with s; the time grows as s * n distance evaluations."""
    return dbscan_grid_labels(X, [(eps, min_samples)], budget_bytes, seed, chunk_rows)[0]


def dbscan_grid_labels(X: np.ndarray, cells: Sequence[tuple[float, int]], budget_bytes: int, seed: int,
                       chunk_rows: int = CHUNK_ROWS, exact_rows: int | None = None, most_cores: int | None = None,
                       threads: int = 1, passes: DensityPasses | None = None) -> list[tuple[np.ndarray, dict]]:
    """dbscan_labels for every (eps, min_samples) cell, sharing work: one estimate pass for all eps; one core
    sample and one pass counting its neighbourhoods for every eps that needs DBSCAN++ and finding each row's
    nearest sampled row (min_samples only picks the cores; each eps adds 8 bytes to a core's memory); exact
    scikit-learn DBSCAN for cells that fit (and only up to `exact_rows` rows, where given), one after another;
    at most `most_cores` rows in the core sample, where given (its time grows as core sample x rows). The
    counting pass and the DBSCAN++ cells run on `threads` threads; the passes over X are numpy's, or `passes`."""
    passes = passes or NumpyPasses(chunk_rows, threads)
    cells = [(float(eps), int(min_samples)) for eps, min_samples in cells]
    n, radii = len(X), sorted({eps for eps, _ in cells})
    mean = dict(zip(radii, passes.counts(X[seeded_rows(n, ESTIMATE_ROWS, seed)], X, radii)[0].mean(axis=0)))
    exact = {eps: exact_dbscan_bytes(mean[eps], n, X.itemsize * X.shape[1]) for eps in radii}
    too_many = exact_rows is not None and n > exact_rows
    wide = [eps for eps in radii if too_many or exact[eps] > budget_bytes]
    if not wide:
        return [_exact_cell(X, eps, min_samples, exact, mean) for eps, min_samples in cells]
    size, need = core_sample_size(X.shape, X.itemsize * X.shape[1], budget_bytes, len(wide), len(cells), threads,
                                  chunk_rows, max(exact[e] for e in wide), most_cores)
    record = sampled_record(size, need)
    approximate = iter(sampled_labels(X, seeded_rows(n, size, seed), [cell for cell in cells if cell[0] in wide],
                                      passes))
    return [(next(approximate), {**record, "mean_neighbours": float(mean[eps])}) if eps in wide
            else _exact_cell(X, eps, min_samples, exact, mean) for eps, min_samples in cells]


def _exact_cell(X: np.ndarray, eps: float, min_samples: int, exact: dict, mean: dict) -> tuple[np.ndarray, dict]:
    labels = by_size(DBSCAN(eps=eps, min_samples=min_samples).fit_predict(X))
    return labels, exact_record(estimated_bytes=exact[eps], mean_neighbours=float(mean[eps]))


def agreement(approximate: np.ndarray, exact: np.ndarray) -> dict:
    """Adjusted Rand index of two labelings, and each one's noise share and number of clusters."""
    return {"adjusted_rand": float(adjusted_rand_score(exact, approximate)),
            "noise_share": {"approximate": float(np.mean(approximate < 0)), "exact": float(np.mean(exact < 0))},
            "clusters": {"approximate": int(np.unique(approximate[approximate >= 0]).size),
                         "exact": int(np.unique(exact[exact >= 0]).size)}}


def settled_grid(X: np.ndarray, cells: Sequence[tuple[float, int]], settings: DensitySettings,
                 passes: DensityPasses | None = None) -> list[tuple[np.ndarray, dict]]:
    """dbscan_grid_labels under `settings` (numpy's passes, or `passes`)."""
    return dbscan_grid_labels(X, cells, settings.budget_bytes, settings.seed, exact_rows=settings.exact_rows,
                              most_cores=settings.core_sample, threads=settings.threads, passes=passes)


def agreement_subsample(X: np.ndarray, settings: DensitySettings) -> np.ndarray:
    """The seeded min(n, exact_rows) rows of X on which DBSCAN++ is compared with exact DBSCAN."""
    return X[seeded_rows(len(X), settings.exact_rows, settings.seed + 1)]


def agreement_on_subsample(sub: np.ndarray, n: int, cell: tuple[float, int], settings: DensitySettings) -> dict:
    """DBSCAN++ against exact DBSCAN on the subsample `sub` of a run's n rows (`agreement_subsample`), with the
    core sample in the same proportion to the rows as in the full run: the agreement record plus the rows and core
    sample."""
    cores = max(1, round(len(sub) * min(settings.core_sample, n) / n))
    eps, min_samples = cell
    exact = by_size(DBSCAN(eps=eps, min_samples=min_samples).fit_predict(sub))
    approximate = dbscan_plus_plus(sub, eps, min_samples, cores, settings.seed)
    return {**agreement(approximate, exact), "rows": int(len(sub)), "core_sample": int(cores)}
