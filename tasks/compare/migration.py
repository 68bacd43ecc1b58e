"""Cluster migration: the rows of both datasets clustered jointly (one KMeans over A and B), then for each head
which of its features changed cluster, and whether its share of each cluster changed beyond what swapping A and
B within features gives (a permutation p-value)."""

from __future__ import annotations

import numpy as np

from tasks.cluster import capped_rows, kmeans_fit, nearest_centre
from tasks.research import swap_signs


def joint_labels(reduced_a: np.ndarray, reduced_b: np.ndarray, k: int, seed: int, max_rows: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """KMeans over the rows of A and B together (fitted on at most `max_rows`, every row labelled by its nearest
    centre): (labels of A's rows, labels of B's rows), as tasks.cluster.run.kmeans_fits gives them on the rows of
    A then B. Above `max_rows` those are never stacked: the fit's rows are gathered, each side labelled a chunk of
    rows at a time."""
    n = len(reduced_a)
    if 2 * n <= max_rows:
        labels = kmeans_fit(np.vstack([reduced_a, reduced_b]), k, seed).labels
        return labels[:n], labels[n:]
    rows = capped_rows(2 * n, max_rows, seed)
    centres = kmeans_fit(np.vstack([reduced_a[rows[rows < n]], reduced_b[rows[rows >= n] - n]]), k, seed).centres
    return nearest_centre(reduced_a, centres), nearest_centre(reduced_b, centres)


def share_shift_test(labels_a: np.ndarray, labels_b: np.ndarray, k: int, permutations: int, seed: int
                     ) -> tuple[float, float]:
    """(total variation distance between the cluster shares of A's rows and of B's rows, paired row for row;
    its permutation p-value, each permutation swapping a random half of the pairs). No migrating row: (0, 1)."""
    moved = np.flatnonzero(labels_a != labels_b)
    if len(labels_a) == 0:
        return float("nan"), float("nan")
    if len(moved) == 0:
        return 0.0, 1.0
    change = np.zeros((len(moved), k))
    change[np.arange(len(moved)), labels_a[moved]] += 1
    change[np.arange(len(moved)), labels_b[moved]] -= 1
    observed = 0.5 * np.abs(change.sum(0)).sum() / len(labels_a)
    extreme = 0
    for signs in swap_signs(len(moved), permutations, seed):
        drawn = 0.5 * np.abs(signs @ change).sum(1) / len(labels_a)
        extreme += int((drawn >= observed - 1e-12).sum())
    return float(observed), (1 + extreme) / (1 + permutations)


def share_shift_tests(labels_a: np.ndarray, labels_b: np.ndarray, slot: np.ndarray, n_slots: int, k: int,
                      permutations: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """share_shift_test for each slot's rows: (distances, p-values)."""
    order = np.argsort(slot, kind="stable")
    starts = np.searchsorted(slot[order], np.arange(n_slots + 1))
    results = np.array([share_shift_test(labels_a[r], labels_b[r], k, permutations, seed)
                        for r in (order[starts[s]:starts[s + 1]] for s in range(n_slots))])
    return results[:, 0], results[:, 1]
