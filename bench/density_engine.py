"""The every-row DBSCAN grid (DBSCAN++, 20,000 cores, the default 15 cells around the knee) with this checkout's
passes against a previous revision's (`--baseline`, loaded from git), with `--workers N` the grid as the flow
runs it (the CPU backend, the rows split across N Dask worker processes, tasks.cluster.spread; the time includes
sending the rows) and with `--torch` the torch engine's passes on the CPU, side by side in one run on each row count, on bench/synthetic.py's planted rows mapped to 50 dimensions
as PCA would; prints seconds, the ratios, whether every cell's labels are identical, and the grid's time
projected to 18,999,936 rows (a fixed part and a part linear in rows, fitted to the two largest row counts).

    python bench/density_engine.py 300000 1123200 --workers 2
    python bench/density_engine.py 100000 --baseline a42ff92 --torch
"""
import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from synthetic import HEADS, LATENT, LAYERS, _latent

from tasks.cluster.cpu import CpuBackend
from tasks.cluster.dbscan import DensitySettings, dbscan_grid_labels
from tasks.cluster.density import kth_neighbour_distances, seeded_rows
from tasks.cluster.engine import TorchPasses, on_device
from tasks.cluster.run import suggest_eps
from tasks.compute.clusters import dask_cluster

FULL_ROWS = 18_999_936
BASELINE = "a42ff92"  # the numpy passes before the fused kernels and the shared core links


def planted(rows: int, dim: int = 2048, seed: int = 0) -> np.ndarray:
    points = _latent(np.arange(-(-rows // (LAYERS * HEADS))), np.random.default_rng([seed, 0]), seed)[:rows]
    basis, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(50, LATENT)))
    noise = np.random.default_rng(seed + 1).normal(size=(len(points), 50)) * 0.05
    return (points @ (basis.T * np.sqrt(dim / LATENT)) + noise).astype(np.float32)


def baseline_grid(revision: str):
    """dbscan_grid_labels of `revision`: its tasks/cluster/density.py and dbscan.py from git, imported as a
    package of their own beside this checkout's."""
    folder = Path(tempfile.mkdtemp()) / "baseline_cluster"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name in ("density", "dbscan"):
        text = subprocess.run(["git", "show", f"{revision}:tasks/cluster/{name}.py"], check=True,
                              capture_output=True, text=True).stdout
        (folder / f"{name}.py").write_text(text.replace("tasks.cluster.density", "baseline_cluster.density"))
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module("baseline_cluster.dbscan").dbscan_grid_labels


def compare(rows: int, runs: dict, seconds: dict[str, list[float]], args, backend: CpuBackend) -> None:
    """Each run's grid on `rows` planted rows, timed; prints the line comparing them."""
    cores = os.cpu_count()
    X = planted(rows)
    eps = suggest_eps(kth_neighbour_distances(X[seeded_rows(rows, 2_000, 0)], X, 10))
    cells = [(round(eps * f, 6), m) for f in (0.5, 0.75, 1.0, 1.25, 1.5) for m in (5, 10, 20)]
    labels = {}
    for name, grid in runs.items():
        started = time.perf_counter()
        labels[name] = grid(X, cells, 2**34, 0, exact_rows=10_000, most_cores=20_000, threads=cores)
        seconds[name].append(time.perf_counter() - started)
    if args.torch:
        started = time.perf_counter()
        with on_device(cores):
            labels["torch engine"] = dbscan_grid_labels(X, cells, 2**34, 0, exact_rows=10_000, most_cores=20_000,
                                                        passes=TorchPasses(torch.device("cpu"), seed=0))
        seconds["torch engine"].append(time.perf_counter() - started)
    if args.workers:
        started = time.perf_counter()
        labels[f"{args.workers} workers"] = backend.dbscan(X, cells, DensitySettings(2**34, 10_000, 20_000, 0))
        seconds[f"{args.workers} workers"].append(time.perf_counter() - started)
    old = seconds["baseline"][-1]
    line = ", ".join(f"{name} {times[-1]:.1f} s ({old / times[-1]:.2f}x)" for name, times in seconds.items())
    same = all(all(np.array_equal(a[0], b[0]) for a, b in zip(labels["baseline"], other))
               for other in labels.values())
    print(f"{rows:,} rows: {line}; labels identical in all {len(cells)} cells: {same}", flush=True)


def project(rows: list[int], seconds: dict[str, list[float]]) -> None:
    """Each run's time at FULL_ROWS from a fixed part and a part linear in rows, fitted to the two largest counts."""
    (n0, n1) = rows[-2:]
    for name, times in seconds.items():
        slope = (times[-1] - times[-2]) / (n1 - n0)
        projected = times[-1] + slope * (FULL_ROWS - n1)
        print(f"{name}: {slope * 1e6:.1f} s per million rows, projected {projected / 3600:.2f} h at "
              f"{FULL_ROWS:,} rows", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="*", type=int, default=[100_000])
    parser.add_argument("--baseline", default=BASELINE, help="git revision whose passes run beside this checkout's")
    parser.add_argument("--torch", action="store_true", help="also the torch engine's passes on the CPU")
    parser.add_argument("--workers", type=int, default=0, help="also the CPU backend's grid, rows split across "
                        "this many Dask worker processes")
    args = parser.parse_args()
    runs = {"baseline": baseline_grid(args.baseline), "this checkout": dbscan_grid_labels}
    print(f"{os.cpu_count()} cores; baseline {args.baseline}", flush=True)
    extra = [*(["torch engine"] if args.torch else []), *([f"{args.workers} workers"] if args.workers else [])]
    seconds: dict[str, list[float]] = {name: [] for name in [*runs, *extra]}
    with dask_cluster(backend="cpu", n_workers=max(1, args.workers)) as compute:
        for rows in args.rows:
            compare(rows, runs, seconds, args, CpuBackend(compute.client))
    if len(args.rows) > 1:
        project(args.rows, seconds)


if __name__ == "__main__":
    main()
