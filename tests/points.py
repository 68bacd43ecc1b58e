"""Point sets the density tests share: planted groups, a lattice whose pairs sit exactly at round radii, and
float64 brute-force distances to check against."""

from __future__ import annotations

import numpy as np


def planted_points(n: int, dims: int, seed: int, satellites: float, noise: float) -> np.ndarray:
    """A dense blob of 80% of rows, three tight satellites (5% each) `satellites` away along the first axes,
    uniform noise (5%) in [-noise, noise]; float32, rows shuffled."""
    rng = np.random.default_rng(seed)
    sizes = [int(0.8 * n), int(0.05 * n), int(0.05 * n), int(0.05 * n)]
    parts = [rng.standard_normal((sizes[0], dims))]
    for axis, size in enumerate(sizes[1:]):
        parts.append(satellites * np.eye(dims)[axis] + 0.3 * rng.standard_normal((size, dims)))
    parts.append(rng.uniform(-noise, noise, (n - sum(sizes), dims)))
    return np.concatenate(parts).astype(np.float32)[rng.permutation(n)]


def lattice(side: int, spacing: float, offset: float) -> np.ndarray:
    """A side^3 cubic lattice, `spacing` apart, shifted by `offset`; float32."""
    return (spacing * np.indices((side, side, side)).reshape(3, -1).T + offset).astype(np.float32)


def distances(queries: np.ndarray, data: np.ndarray) -> np.ndarray:
    """float64 distance of every query to every row of data."""
    diff = queries[:, None, :].astype(np.float64) - data[None, :, :]
    return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
