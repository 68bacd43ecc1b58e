"""The GPU check of the clustering backend, sized for one short run on a lent GPU machine (no Prefect there):
writes a synthetic dataset in the real format (bench/synthetic.py, float16) to local disk, loads every row and
its PCA projection once (on the first backend's workers), then clusters every row with the GPU backend on a
LocalCUDACluster (one worker per GPU) and with the CPU backend on a LocalCluster of that machine's cores; prints
the seconds of each stage side by side, the peak GPU memory (every GPU, sampled), DBSCAN's adjusted Rand index
against the planted groups and each stage projected linearly to 18,999,936 rows; writes the same as JSON.

    python bench/gpu_cluster.py --rows 3000000                     # on the GPU machine (bench/gpu_cluster.sh)
    python bench/gpu_cluster.py --rows 20000 --dim 256 --cpu-only   # a try on a CPU
"""
from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path

from sklearn.metrics import adjusted_rand_score
from synthetic import HEADS, LAYERS, planted_groups, write_synthetic

from tasks.cluster import CpuBackend, GpuBackend, MemoryBudget, SampleSpec, load_sample, run_clustering
from tasks.cluster.clusterings import Clustering
from tasks.compute import dask_cluster
from tasks.config import ClusterConfig
from tasks.storage import Location, dataset_record, readable_manifests

FULL_ROWS = 18_999_936


class GpuMemory:
    """The largest memory in use on any GPU while the block runs, sampled every 0.2 s through NVML (0 without)."""

    def __enter__(self) -> GpuMemory:
        self.peak, self.running, self.handles = 0, True, []
        try:
            import pynvml

            pynvml.nvmlInit()
            self.used = lambda handle: pynvml.nvmlDeviceGetMemoryInfo(handle).used
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # no NVML: no GPU to read
            pass
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while self.running and self.handles:
            self.peak = max([self.peak] + [self.used(handle) for handle in self.handles])
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()


def cluster_every_row(config: ClusterConfig, backend_kind: str, sample=None) -> tuple:
    """(sample, run, seconds, peak GPU bytes): the sample loaded here where not given, then every row clustered
    on `backend_kind`'s local Dask cluster."""
    dataset = Location.at(config.dataset, config.credentials)
    record = dataset_record(dataset)
    with GpuMemory() as memory, dask_cluster(None, backend_kind) as compute, \
            tempfile.TemporaryDirectory() as keys:
        print(f"compute: {compute.description}", flush=True)
        budget = MemoryBudget.of(config.compute.memory_budget, len(compute.client.nthreads()) + 1)
        backend = GpuBackend(compute.client) if compute.gpu else CpuBackend(compute.client)
        if sample is None:
            manifests, unreadable = readable_manifests(dataset, record, config.shards, config.on_bad_shard)
            sample = load_sample(compute.client, dataset, manifests, SampleSpec.of(config.sampling, config.seed),
                                 config.pca, config.standardize, record.encoder.dim, budget, Path(keys),
                                 config.on_bad_shard, unreadable)
        started = time.perf_counter()
        run = run_clustering(backend, sample, config, budget)
        seconds = time.perf_counter() - started
    return sample, run, seconds, memory.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--cpu-only", action="store_true", help="the CPU backend only (a try without a GPU)")
    parser.add_argument("--work", default=None, help="folder for the dataset (default: a temporary one)")
    parser.add_argument("--json", default="bench/results/gpu_cluster.json")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-gpu-cluster-"))
    features = math.ceil(args.rows / (args.shards * LAYERS * HEADS))
    started = time.perf_counter()
    write_synthetic(str(work / "dataset"), args.shards, features, args.dim, "float16")
    written = time.perf_counter() - started
    config = ClusterConfig(dataset=str(work / "dataset"), out=str(work / "clusters"), exemplars=0, sample="all")
    results, sample = {}, None
    for kind in ["cpu"] if args.cpu_only else ["gpu", "cpu"]:
        started = time.perf_counter()
        sample, run, seconds, peak = cluster_every_row(config, kind, sample)
        keys = sample.rows
        planted = planted_groups(keys["feature_id"].to_numpy(), keys["layer"].to_numpy(), keys["head"].to_numpy())
        results[kind] = {
            "rows": len(keys), "clustering_seconds": round(seconds, 1),
            "stages": {k: round(v, 1) for k, v in {**(sample.seconds if not results else {}), **run.seconds}.items()},
            "peak_gpu_gb": round(peak / 2**30, 2),
            "dbscan_ari_vs_planted": round(float(adjusted_rand_score(planted, run.labels[Clustering.DBSCAN])), 4),
            "dbscan_method": run.params[Clustering.DBSCAN].get("method"),
        }
        print(f"{kind}: {json.dumps(results[kind])} ({time.perf_counter() - started:.0f} s with loading)", flush=True)
    rows = next(iter(results.values()))["rows"]
    print(f"{os.cpu_count()} cores; {rows:,} rows of {args.dim} float16 written in {written:.0f} s")
    stages = list(dict.fromkeys(s for r in results.values() for s in r["stages"]))
    print(f"{'stage':<32}" + "".join(f"{kind + ' s':>10}" for kind in results)
          + (f"{'cpu/gpu':>9}" if len(results) > 1 else "") + "".join(f"{kind + ' @19M':>11}" for kind in results))
    for stage in [*stages, "clustering_seconds"]:
        times = [r["stages"].get(stage, 0.0) if stage in stages else r[stage] for r in results.values()]
        ratio = f"{times[1] / times[0]:>9.2f}" if len(times) > 1 and times[0] else ""
        print(f"{stage:<32}" + "".join(f"{t:>10.1f}" for t in times) + ratio
              + "".join(f"{t * FULL_ROWS / rows / 60:>10.1f}m" for t in times))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"rows": rows, "dim": args.dim, "write_seconds": round(written, 1),
                                           "results": results}, indent=2))


if __name__ == "__main__":
    main()
