"""The fused block loops of the density passes (tasks.cluster.kernels through tasks.cluster.density): counts of
every radius and the core links of every cell in one pass each, pairs near a radius decided in float64, equal to
brute force also when a block's undecided pairs overflow their buffer and are read again."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.metrics import adjusted_rand_score

from tasks.cluster import density
from tasks.cluster.density import grid_components, neighbour_counts
from points import distances, lattice


@pytest.mark.parametrize("band_rows", [1, density.BAND_ROWS])
def test_counts_of_every_radius_equal_float64_even_when_the_band_overflows(monkeypatch, band_rows):
    # 0.1 apart, every lattice pair at a radius is rounded either way by float32 products: thousands undecided
    monkeypatch.setattr(density, "BAND_ROWS", band_rows)
    grid = lattice(8, 0.1, 7.3)
    radii = [0.3, 0.1, 0.1 * np.sqrt(2), 0.1 * np.sqrt(3)]  # unsorted on purpose
    expected = np.stack([(distances(grid, grid) <= r).sum(axis=1) for r in radii], axis=1)
    np.testing.assert_array_equal(neighbour_counts(grid, grid, radii, chunk_rows=200), expected)


def _components_by_brute_force(X: np.ndarray, rows: np.ndarray, eps: float) -> np.ndarray:
    graph = csr_matrix(distances(X[rows], X[rows]) <= eps)
    return connected_components(graph, directed=False)[1]


@pytest.mark.parametrize("band_rows", [1, density.BAND_ROWS])
def test_one_pass_links_the_cores_of_every_cell(monkeypatch, band_rows):
    monkeypatch.setattr(density, "BAND_ROWS", band_rows)
    rng = np.random.default_rng(3)
    grid = lattice(8, 0.1, 7.3)  # links exactly at the radii
    chains = np.cumsum(rng.uniform(0.05, 0.3, size=(300, 3)), axis=0) + 20  # joined or split by the radius
    X = np.concatenate([grid, chains]).astype(np.float32)
    sample = np.sort(rng.choice(len(X), 600, replace=False))
    radii = [0.1, 0.25, 0.1, 0.3 * np.sqrt(3)]
    cores = [rng.random(len(sample)) < share for share in (1.0, 0.7, 0.5, 0.9)]
    got = grid_components(X[sample], cores, radii, chunk_rows=128)
    assert len(got) == len(cores)
    for labels, core, eps in zip(got, cores, radii):
        assert labels.shape == (core.sum(),)
        expected = _components_by_brute_force(X, sample[core], eps)
        assert adjusted_rand_score(expected, labels) == 1.0
        assert len(np.unique(expected)) > 1  # the cells are not trivially one component


def test_no_cores_and_no_cells():
    X = np.zeros((5, 2), np.float32)
    assert grid_components(X[:5], [], []) == []
    (labels,) = grid_components(X[:5], [np.zeros(5, bool)], [1.0])
    assert labels.shape == (0,)
