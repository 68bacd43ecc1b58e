"""How far each head moved between the two datasets: the cosine distance of its mean embeddings, and the energy
distance between its rows of A and of B (PCA space) with a permutation p-value that swaps A and B within
features (under no change, a feature's two rows are exchangeable)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from tasks.cluster import slot_uniform
from tasks.research import swap_signs


def cosine_distance(mean_a: np.ndarray, mean_b: np.ndarray) -> np.ndarray:
    """1 minus the cosine similarity of each row pair (heads' mean embeddings); NaN for a head without rows."""
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = (mean_a * mean_b).sum(1) / (np.linalg.norm(mean_a, axis=1) * np.linalg.norm(mean_b, axis=1))
    return 1 - cosine


def per_head_rows(feature_id: np.ndarray, slot: np.ndarray, n_slots: int, most: int, seed: int) -> list[np.ndarray]:
    """For each slot, the indices of at most `most` of its rows, a seeded choice by feature (the same features
    whatever the row order or shards)."""
    order = np.lexsort((slot_uniform(feature_id, slot, seed), slot))
    starts = np.searchsorted(slot[order], np.arange(n_slots + 1))
    return [order[starts[s]:min(starts[s + 1], starts[s] + most)] for s in range(n_slots)]


def energy_test(a: np.ndarray, b: np.ndarray, permutations: int, seed: int) -> tuple[float, float]:
    """(energy distance, p-value) between paired rows a[i], b[i]: 2 E|a - b'| - E|a - a'| - E|b - b'| over all
    pairs of rows, and (1 + permutations at least as large) / (1 + permutations), each permutation swapping a[i]
    and b[i] for a random half of i."""
    n = len(a)
    if n < 2:
        return float("nan"), float("nan")
    distances = cdist(np.vstack([a, b]).astype(np.float64), np.vstack([a, b]).astype(np.float64))

    def energy(v: np.ndarray) -> np.ndarray:  # v: (perms, 2n) of +1 on group A, -1 on group B
        return -np.einsum("pi,pi->p", v @ distances, v) / n ** 2

    observed = float(energy(np.hstack([np.ones(n), -np.ones(n)])[None])[0])
    tolerance = 1e-9 * (abs(observed) + distances.mean())
    extreme = 0
    for signs in swap_signs(n, permutations, seed):  # +1 / -1 per pair on the A half, the opposite on the B half
        drawn = energy(np.hstack([signs, -signs]))
        extreme += int((drawn >= observed - tolerance).sum())
    return observed, (1 + extreme) / (1 + permutations)


def energy_tests(reduced_a: np.ndarray, reduced_b: np.ndarray, rows: list[np.ndarray], permutations: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """energy_test on each head's chosen rows: (energy distances, p-values), one per slot."""
    results = np.array([energy_test(reduced_a[r], reduced_b[r], permutations, seed) for r in rows]).reshape(-1, 2)
    return results[:, 0], results[:, 1]


def displacement(reduced_a: np.ndarray, reduced_b: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Each row's distance between its A and B projections, a chunk of rows at a time."""
    return np.concatenate([np.linalg.norm(reduced_b[i:i + chunk].astype(np.float64) - reduced_a[i:i + chunk], axis=1)
                           for i in range(0, max(len(reduced_a), 1), chunk)])
