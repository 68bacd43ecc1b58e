"""The DBSCAN grid (DBSCAN++, the default 15 cells around the knee) with numpy's passes against the torch engine's
on the CPU, side by side in one run, on bench/synthetic.py's planted rows mapped to 50 dimensions as PCA would;
prints seconds, the ratio and whether every cell's labels are identical.

    python bench/density_engine.py 100000 300000
"""
import os
import sys
import time

import numpy as np
import torch
from synthetic import HEADS, LATENT, LAYERS, _latent

from tasks.cluster.dbscan import dbscan_grid_labels
from tasks.cluster.density import kth_neighbour_distances, seeded_rows
from tasks.cluster.engine import TorchPasses, on_device
from tasks.cluster.run import suggest_eps


def planted(rows: int, dim: int = 2048, seed: int = 0) -> np.ndarray:
    points = _latent(np.arange(-(-rows // (LAYERS * HEADS))), np.random.default_rng([seed, 0]), seed)[:rows]
    basis, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(50, LATENT)))
    noise = np.random.default_rng(seed + 1).normal(size=(len(points), 50)) * 0.05
    return (points @ (basis.T * np.sqrt(dim / LATENT)) + noise).astype(np.float32)


cores = os.cpu_count()
for rows in [int(a) for a in sys.argv[1:]] or [100_000]:
    X = planted(rows)
    eps = suggest_eps(kth_neighbour_distances(X[seeded_rows(rows, 2_000, 0)], X, 10))
    cells = [(round(eps * f, 6), m) for f in (0.5, 0.75, 1.0, 1.25, 1.5) for m in (5, 10, 20)]
    args = (X, cells, 2**34, 0)
    started = time.perf_counter()
    old = dbscan_grid_labels(*args, exact_rows=10_000, most_cores=20_000, threads=cores)
    numpy_s = time.perf_counter() - started
    started = time.perf_counter()
    with on_device(cores):
        new = dbscan_grid_labels(*args, exact_rows=10_000, most_cores=20_000,
                                 passes=TorchPasses(torch.device("cpu"), seed=0))
    torch_s = time.perf_counter() - started
    same = all(np.array_equal(a[0], b[0]) for a, b in zip(old, new))
    print(f"{rows:,} rows, {cores} cores: numpy {numpy_s:.1f} s, torch engine {torch_s:.1f} s, "
          f"torch/numpy {torch_s / numpy_s:.2f}; labels identical in all {len(cells)} cells: {same}", flush=True)
