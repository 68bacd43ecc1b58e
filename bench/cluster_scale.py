"""Clustering at the dataset's scale: writes synthetic datasets in the real format (bench/synthetic.py: one
dense cluster, satellites, noise) and runs the cluster flow on each, printing per stage the seconds, the peak
memory of the flow process and of every Dask worker, the bytes read against the bytes selected, and how time
grows with rows. Several sizes in one run, side by side.

    python bench/cluster_scale.py --rows 112320,1123200                 # the original's 1,123,200-row sample
    python bench/cluster_scale.py --rows 3000000 --sample all --dtype float16
    python bench/cluster_scale.py --rows 864000 --shards 4 --features-per-shard 300   # large shards, 300 read
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
from sklearn.metrics import adjusted_rand_score
from synthetic import HEADS, LAYERS, planted_groups, write_synthetic

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a loaded 2-core machine
from flows.cluster import cluster  # noqa: E402
from tasks.cluster.clusterings import Clustering  # noqa: E402
from tasks.config import ClusterConfig  # noqa: E402

GB = 2**30
FULL_ROWS = 18_999_936  # SQuAD v2 train through BERT-base: 131,944 features x 144 heads


class TreeMemory:
    """Peak resident memory of this process, of each child process (the Dask workers), and of all together,
    sampled every 0.2 s over a `with` block; also every worker process seen (a restart shows as a new one)."""

    def __enter__(self) -> TreeMemory:
        self.me, self.running = psutil.Process(), True
        self.peak_self = self.peak_total = 0
        self.peak_children: dict[int, int] = {}
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            try:
                mine = self.me.memory_info().rss
                children = {c.pid: c.memory_info().rss for c in self.me.children(recursive=True)
                            if "spawn_main" in " ".join(c.cmdline())}  # Dask's worker processes
            except psutil.Error:
                continue
            self.peak_self = max(self.peak_self, mine)
            for pid, rss in children.items():
                self.peak_children[pid] = max(self.peak_children.get(pid, 0), rss)
            self.peak_total = max(self.peak_total, mine + sum(children.values()))
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()


def run_size(rows: int, args: argparse.Namespace, work: Path) -> dict:
    features = math.ceil(rows / (args.shards * LAYERS * HEADS))
    dataset = work / f"dataset-{rows}"
    started = time.perf_counter()
    write_synthetic(str(dataset), args.shards, features, args.dim, args.dtype, seed=args.seed)
    written = time.perf_counter() - started
    config = ClusterConfig(dataset=str(dataset), out=str(work / f"clusters-{rows}"), n_workers=args.workers,
                           backend="cpu", exemplars=0, sample=args.sample, features_per_shard=args.features_per_shard,
                           memory_budget=args.memory_budget, seed=args.seed)
    with TreeMemory() as memory:
        started = time.perf_counter()
        result = cluster(config)
        seconds = time.perf_counter() - started
    summary = result["summary"]
    shutil.rmtree(dataset, ignore_errors=True)
    labels = pd.read_parquet(Path(config.out) / "labels.parquet", columns=["feature_id", "layer", "head", Clustering.DBSCAN])
    planted = planted_groups(labels["feature_id"].to_numpy(), labels["layer"].to_numpy(), labels["head"].to_numpy(),
                             args.seed)
    return {
        "rows_in_dataset": args.shards * features * LAYERS * HEADS, "rows_clustered": summary["rows"],
        "write_seconds": round(written, 1), "flow_seconds": round(seconds, 1), "stages": summary["seconds"],
        "peak_flow_gb": round(memory.peak_self / GB, 2),
        "peak_workers_gb": sorted(round(v / GB, 2) for v in memory.peak_children.values()),
        "worker_processes_seen": len(memory.peak_children), "peak_all_gb": round(memory.peak_total / GB, 2),
        "bytes_read_gb": round(summary["bytes_read"] / GB, 3), "bytes_selected_gb": round(summary["bytes_selected"] / GB, 3),
        "dbscan": summary["clusterings"][Clustering.DBSCAN], "kmeans_k": summary["chosen_k"],
        "dbscan_ari_vs_planted": round(float(adjusted_rand_score(planted, labels[Clustering.DBSCAN])), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="112320,1123200", help="comma-separated dataset sizes, in rows")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--shards", type=int, default=26)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    parser.add_argument("--sample", default="first", choices=["first", "random", "all"])
    parser.add_argument("--features-per-shard", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-budget", type=float, default=None, help="GB a process (default: the flow's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for the datasets (default: a temporary one)")
    parser.add_argument("--json", default="bench/results/cluster_scale.json")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-cluster-"))
    results = {int(rows): run_size(int(rows), args, work) for rows in args.rows.split(",")}
    print(f"{os.cpu_count()} cores, {psutil.virtual_memory().total / GB:.0f} GB; dim {args.dim} {args.dtype}, "
          f"{args.shards} shards, sample {args.sample}, features a shard {args.features_per_shard or 'all'}")
    stages = list(dict.fromkeys(s for r in results.values() for s in r["stages"]))
    print(f"{'rows':>10} {'flow s':>8} " + " ".join(f"{s[:14]:>14}" for s in stages)
          + f" {'flow GB':>8} {'workers GB':>16} {'all GB':>7} {'read/selected GB':>17} {'DBSCAN':>9}"
          + f" {'ARI planted':>11}")
    for rows, r in results.items():
        print(f"{r['rows_clustered']:>10,} {r['flow_seconds']:>8.1f} "
              + " ".join(f"{r['stages'].get(s, 0):>14.1f}" for s in stages)
              + f" {r['peak_flow_gb']:>8.2f} {str(r['peak_workers_gb']):>16} {r['peak_all_gb']:>7.2f}"
              + f" {r['bytes_read_gb']:>8.2f}/{r['bytes_selected_gb']:<8.2f} {r['dbscan']['method']:>9}"
              + f" {r['dbscan_ari_vs_planted']:>11.3f}")
    sizes = sorted(results)
    for small, large in zip(sizes, sizes[1:]):
        a, b = results[small], results[large]
        exponent = math.log(b["flow_seconds"] / a["flow_seconds"]) / math.log(b["rows_clustered"] / a["rows_clustered"])
        print(f"time grows as rows^{exponent:.2f} from {a['rows_clustered']:,} to {b['rows_clustered']:,} rows")
    if args.sample == "all":
        largest = results[sizes[-1]]
        scale = FULL_ROWS / largest["rows_clustered"]
        print(f"projected to {FULL_ROWS:,} rows, every stage linear in rows (the samples it fits on are fixed): "
              f"{largest['flow_seconds'] * scale / 3600:.1f} h, the flow's memory {largest['peak_flow_gb'] * scale:.0f} GB"
              f" and all processes' {largest['peak_all_gb'] * scale:.0f} GB at most")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
