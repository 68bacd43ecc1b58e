"""The DBSCAN grid (DBSCAN++, 20,000 cores, the default 15 cells) on every core against one thread, on
synthetic rows shaped like the demo's 50-d projection; the labels must be identical.

    python bench/density_threads.py 216000
"""
import os
import sys
import time

import numpy as np

from tasks.cluster.dbscan import dbscan_grid_labels

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 216_000
rng = np.random.default_rng(0)
group = rng.integers(0, 7, rows)
centres = rng.normal(size=(7, 16)) * 6.0
centres[0] = 0
points = centres[group] + rng.normal(size=(rows, 16)) * np.where(group == 0, 1.0, 0.4)[:, None]
X = (points @ rng.normal(size=(16, 50)) / 4 + rng.normal(size=(rows, 50)) * 0.05).astype(np.float32)
cells = [(5.5 * f, m) for f in (0.5, 0.75, 1, 1.25, 1.5) for m in (5, 10, 20)]
cores = os.cpu_count()
results, seconds = {}, {}
for threads in (cores, 1):
    started = time.perf_counter()
    results[threads] = dbscan_grid_labels(X, cells, 2**34, 0, exact_rows=10_000, most_cores=20_000, threads=threads)
    seconds[threads] = time.perf_counter() - started
    print(f"{rows:,} rows, {threads} threads: {seconds[threads]:.1f} s", flush=True)
same = all((a[0] == b[0]).all() for a, b in zip(results[1], results[cores]))
print(f"{cores} threads {seconds[1] / seconds[cores]:.2f}x faster than 1; labels identical: {same}")
