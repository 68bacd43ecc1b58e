"""Resampling: feature-level bootstrap intervals, permutation tests of a difference of means, and the
Benjamini-Hochberg correction; permutations a chunk at a time, shared by the paired swap tests."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import numpy as np

LEVEL = 0.95
PERMUTATION_CHUNK = 100  # permutations evaluated together, in one matrix product


def feature_codes(feature_ids: np.ndarray) -> np.ndarray:
    """Each row's feature as 0..F-1."""
    return np.unique(feature_ids, return_inverse=True)[1]


def bootstrap_weights(codes: np.ndarray, resamples: int, seed: int):
    """For each resample, each row's weight: how many times its feature was drawn (features drawn with
    replacement, as many as there are)."""
    rng = np.random.default_rng(seed)
    features = int(codes.max()) + 1 if len(codes) else 0
    for _ in range(resamples):
        yield np.bincount(rng.integers(0, features, features), minlength=features)[codes].astype(np.float64)


def bootstrap_interval(statistic: Callable[[np.ndarray], np.ndarray | float], codes: np.ndarray, resamples: int,
                       seed: int, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, low, high): `statistic` of row weights (all ones for the estimate) and its percentile
    interval over feature-bootstrap resamples; NaN resamples (a statistic with nothing to average) are left out."""
    estimate = np.asarray(statistic(np.ones(len(codes))), np.float64)
    draws = np.array([statistic(w) for w in bootstrap_weights(codes, resamples, seed)], np.float64)
    tail = (1 - level) / 2 * 100
    with warnings.catch_warnings():  # a column with no defined resample gets NaN bounds, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(draws, [tail, 100 - tail], axis=0) if len(draws) else (estimate, estimate)
    return estimate, np.asarray(low), np.asarray(high)


def column_means(values: np.ndarray) -> np.ndarray:
    """Each column's mean over its defined (non-NaN) values; NaN, without a warning, where none is defined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=0)


def permutation_chunks(permutations: int) -> Iterator[int]:
    """How many permutations each chunk evaluates: PERMUTATION_CHUNK, the rest in the last."""
    for start in range(0, permutations, PERMUTATION_CHUNK):
        yield min(PERMUTATION_CHUNK, permutations - start)


def swap_signs(pairs: int, permutations: int, seed: int) -> Iterator[np.ndarray]:
    """Seeded swaps of paired rows, a chunk of permutations at a time: (chunk, pairs) of +1 (the pair kept) or
    -1 (its two rows swapped)."""
    rng = np.random.default_rng(seed)
    for count in permutation_chunks(permutations):
        yield rng.choice([-1.0, 1.0], size=(count, pairs))


def permutation_pvalues(values: np.ndarray, groups: np.ndarray, permutations: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(difference, two-sided p) per column of `values` (rows x tests, NaN where missing): mean of the rows in
    `groups` (bool per row) minus the mean of the others, and its permutation p-value, (1 + extreme) /
    (1 + permutations), the same permutations for every column."""
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)

    def difference(inside: np.ndarray) -> np.ndarray:  # inside: (perms, rows) float
        a_sum, a_n = inside @ filled, inside @ present
        b_sum, b_n = filled.sum(0) - a_sum, present.sum(0) - a_n
        with np.errstate(invalid="ignore", divide="ignore"):
            return a_sum / a_n - b_sum / b_n

    observed = difference(groups[None].astype(np.float64))[0]
    rng = np.random.default_rng(seed)
    extreme = np.zeros(values.shape[1])
    for count in permutation_chunks(permutations):
        shuffled = np.array([rng.permutation(groups) for _ in range(count)], np.float64)
        extreme += (np.abs(difference(shuffled)) >= np.abs(observed) - 1e-12).sum(0)
    p = (1 + extreme) / (1 + permutations)
    return observed, np.where(np.isnan(observed), np.nan, p)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), NaN kept."""
    q = np.full(len(p), np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    ranked = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(1, np.minimum.accumulate(ranked[::-1])[::-1])
    return q


def normalised_entropy(counts: np.ndarray, axis: int = -1) -> np.ndarray:
    """Entropy of each distribution of (weighted) counts along `axis`, divided by log of its length: 0 when one
    value takes all, 1 when all are equal; NaN for an empty distribution."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / total
        h = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=axis)
        return np.where(total.squeeze(axis) > 0, h / np.log(max(2, counts.shape[axis])), np.nan)
