"""The measures' arrays over all paired rows stay bounded by chunks: the joint KMeans and the displacement never
copy the rows of both datasets whole, and give what the stacked computation gives."""

from __future__ import annotations

import tracemalloc

import numpy as np

from tasks.cluster.kmeans import kmeans_fit
from tasks.cluster.run import kmeans_fits
from tasks.compare.migration import joint_labels
from tasks.compare.shift import displacement


class _Backend:
    def kmeans(self, X: np.ndarray, ks: list[int], seed: int) -> list:
        return [kmeans_fit(X, k, seed) for k in ks]


def _peak(work) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _rows(n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, dim)).astype(np.float32)
    return a, a + rng.normal(scale=0.5, size=(n, dim)).astype(np.float32)


def test_joint_kmeans_over_more_rows_than_it_fits_on_never_stacks_both_datasets():
    a, b = _rows(300_000, 16)
    (labels_a, labels_b), peak = _peak(lambda: joint_labels(a, b, 4, 0, 2_000))
    assert peak < a.nbytes + b.nbytes  # what stacking the two would take
    stacked = kmeans_fits(_Backend(), np.vstack([a, b]), [4], 0, 2_000)[0].labels
    assert np.array_equal(np.concatenate([labels_a, labels_b]), stacked)


def test_joint_kmeans_under_its_cap_fits_every_row_of_both():
    a, b = _rows(500, 4)
    labels = np.concatenate(joint_labels(a, b, 3, 0, 1_000))
    assert np.array_equal(labels, kmeans_fit(np.vstack([a, b]), 3, 0).labels)


def test_displacement_is_computed_a_chunk_of_rows_at_a_time():
    a, b = _rows(600_000, 16)
    distances, peak = _peak(lambda: displacement(a, b))
    assert peak < a.nbytes  # the float64 difference of all rows would take twice that
    assert np.allclose(distances, np.linalg.norm(b.astype(np.float64) - a, axis=1))
    assert displacement(a[:0], b[:0]).shape == (0,)
