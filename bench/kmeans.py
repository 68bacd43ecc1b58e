"""KMeans benchmark: the project's CPU path against scikit-learn KMeans on the full-dimensional float64 data
(the original's method), side by side in one run, on the same synthetic embeddings.

Both inertias are measured in the full space: for the project's labels, each cluster's centre is the mean of
its rows in the original 2048 dimensions.

    python bench/kmeans.py                    # 288,000 x 2048, k = 30 (about 10 GB of memory)
    python bench/kmeans.py --rows 20000       # a quick look
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from tasks.cluster.cpu import CpuBackend
from tasks.compute.clusters import dask_cluster
from tasks.cluster.reducer import fit_reducer
from tasks.config import ClusterConfig

LATENT = 128  # embeddings of attention maps are low-rank: most variance lies in a small subspace


def synthetic_part(rows: int, dim: int, clusters: int, part_seed: int, seed: int) -> np.ndarray:
    """Rows drawn around `clusters` centres in a LATENT-d subspace of R^dim, plus small isotropic noise."""
    shared = np.random.default_rng(seed)
    basis = np.linalg.qr(shared.normal(size=(dim, LATENT)))[0].T
    centres = shared.normal(size=(clusters, LATENT))
    rng = np.random.default_rng([seed, part_seed])
    latent = centres[rng.integers(clusters, size=rows)] + rng.normal(scale=0.8, size=(rows, LATENT))
    return (latent @ basis + rng.normal(scale=0.05, size=(rows, dim))).astype(np.float32)


def _sums(part: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sums = np.zeros((k, part.shape[1]))
    np.add.at(sums, labels, part)
    return sums, np.bincount(labels, minlength=k)


def _squared_distance(part: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> float:
    return float(((part.astype(np.float64) - centres[labels]) ** 2).sum())


def full_space_inertia(client, parts: list, labels: list[np.ndarray], k: int) -> float:
    """Inertia in the original space of a labelling, centres being the full-space means of each cluster."""
    sums = client.gather(client.map(_sums, parts, labels, [k] * len(parts)))
    centres = sum(s for s, _ in sums) / np.maximum(sum(c for _, c in sums), 1)[:, None]
    shared = client.scatter(centres, broadcast=True, hash=False)
    return sum(client.gather(client.map(_squared_distance, parts, labels, [shared] * len(parts))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=288_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--fit-rows", type=int, default=ClusterConfig().pca.pca_fit_rows)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="bench/results/kmeans.json", help="where the JSON record goes")
    args = parser.parse_args()

    with dask_cluster(backend="cpu") as compute:
        client = compute.client
        sizes = [len(a) for a in np.array_split(np.arange(args.rows), args.parts)]
        parts = client.map(synthetic_part, sizes, [args.dim] * args.parts, [args.k] * args.parts,
                           range(args.parts), [args.seed] * args.parts, pure=False)
        full = np.concatenate(client.gather(parts)).astype(np.float64)  # the original's input, not timed

        started = time.perf_counter()
        reference = KMeans(n_clusters=args.k, random_state=args.seed).fit(full)
        reference_seconds = time.perf_counter() - started
        del full

        backend = CpuBackend(client)
        started = time.perf_counter()
        chosen = np.sort(np.random.RandomState(args.seed).choice(args.rows, args.fit_rows, replace=False))
        starts = np.cumsum([0, *sizes])
        picks = [chosen[(chosen >= a) & (chosen < b)] - a for a, b in zip(starts[:-1], starts[1:])]
        reducer = fit_reducer(np.concatenate(client.gather(client.map(np.take, parts, picks, [0] * len(parts)))),
                              args.components, False, args.seed)
        reduced = np.concatenate(client.gather(client.map(reducer.transform, parts)))
        ratio = reducer.explained_variance_ratio
        fit = backend.kmeans(reduced, [args.k], args.seed)[0]
        ours_seconds = time.perf_counter() - started

        ours_labels = np.split(fit.labels, np.cumsum(sizes)[:-1])
        ours_inertia = full_space_inertia(client, parts, ours_labels, args.k)
        reference_labels = np.split(reference.labels_, np.cumsum(sizes)[:-1])
        reference_inertia = full_space_inertia(client, parts, reference_labels, args.k)

    result = {
        "rows": args.rows, "dim": args.dim, "k": args.k, "compute": compute.description,
        "reference": {"method": "sklearn KMeans, float64, full dimension, n_init='auto'",
                      "seconds": round(reference_seconds, 2), "inertia": reference_inertia,
                      "sklearn_inertia": float(reference.inertia_), "iterations": int(reference.n_iter_)},
        "ours": {"method": f"PCA({args.components}) fitted on {args.fit_rows} rows, projected on the workers, "
                           "then sklearn KMeans float32", "seconds": round(ours_seconds, 2),
                 "inertia": ours_inertia, "pca_variance_kept": round(float(ratio.sum()), 4)},
        "speedup": round(reference_seconds / ours_seconds, 1),
        "inertia_difference": round((ours_inertia - reference_inertia) / reference_inertia, 5),
        "adjusted_rand_index": round(float(adjusted_rand_score(reference.labels_, fit.labels)), 4),
    }
    print(f"{'':10} {'seconds':>9} {'inertia (full space)':>22}")
    print(f"{'sklearn':10} {reference_seconds:9.2f} {reference_inertia:22.6g}")
    print(f"{'ours':10} {ours_seconds:9.2f} {ours_inertia:22.6g}")
    print(f"speedup {result['speedup']}x, inertia difference {result['inertia_difference']:+.3%}, "
          f"ARI {result['adjusted_rand_index']}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
