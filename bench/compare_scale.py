"""Comparing two datasets at the dataset's scale: writes a synthetic dataset A in the real format
(bench/synthetic.py) and a dataset B of the same features with a seeded change planted in some heads (their
rows moved in the latent space, their statistics raised), then runs the comparison's stages as flows/compare.py
does, printing per stage the seconds and the peak memory of the process, the bytes read, how time and memory grow
with rows, a projection to the full train set, and whether exactly the planted heads were flagged.

    python bench/compare_scale.py --rows 112320,1123200                   # the original's 1,123,200-row sample
    python bench/compare_scale.py --rows 1123200 --features-per-shard 30  # a sampled comparison of the same pair
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from cluster_scale import FULL_ROWS, GB, TreeMemory
from synthetic import HEADS, LAYERS, STATISTIC_SHIFT, STATISTICS, write_synthetic

from tasks.cluster.resources import MemoryBudget
from tasks.cluster.sample import SampleSpec
from tasks.compare.alignment import open_pair
from tasks.compare.explorer import diff_explorer
from tasks.compare.findings import compare_findings
from tasks.compare.outputs import write_compare_outputs
from tasks.compare.paired import read_pairs
from tasks.compare.report import compare_sections
from tasks.compare.summary import summarise
from tasks.compare.tables import compare_rows
from tasks.config import CompareConfig

STAGES = ("read and project", "measures", "report and explorer")


def planted_slots(count: int, seed: int) -> list[int]:
    """The seeded head slots (layer * HEADS + head) whose change dataset B plants."""
    return sorted(int(s) for s in np.random.default_rng([seed, 2]).choice(LAYERS * HEADS, count, replace=False))


def ensure_pair(work: Path, rows: int, args: argparse.Namespace, planted: list[int]) -> tuple[Path, Path, float]:
    """Datasets A and B of `rows` rows under `work` (reused where a kept run wrote them); the seconds written."""
    features = math.ceil(rows / (args.shards * LAYERS * HEADS))
    a, b, started = work / f"a-{rows}", work / f"b-{rows}", time.perf_counter()
    for path, variant, shifted in ((a, 0, []), (b, 1, planted)):
        done = path.with_name(path.name + ".complete")
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            write_synthetic(str(path), args.shards, features, args.dim, args.dtype, args.seed, variant=variant,
                            shifted=shifted)
            done.touch()
    return a, b, time.perf_counter() - started


def run_size(rows: int, args: argparse.Namespace, work: Path) -> dict:
    planted = planted_slots(args.planted, args.seed)
    a, b, written = ensure_pair(work, rows, args, planted)
    config = CompareConfig(a=str(a), b=str(b), out=str(work / f"compare-{rows}"), sample=args.sample,
                           features_per_shard=args.features_per_shard, seed=args.seed, explorer_maps=0,
                           memory_budget=args.memory_budget)
    seconds, peaks, above, held, baseline = {}, {}, {}, {}, psutil.Process().memory_info().rss
    pair = open_pair(config.a, config.b, config.credentials, config.shards)

    def stage(name: str, work, *arguments):
        held[name] = round((psutil.Process().memory_info().rss - baseline) / GB, 3)
        with TreeMemory() as memory:
            started = time.perf_counter()
            result = work(*arguments)
            seconds[name] = round(time.perf_counter() - started, 2)
        peaks[name] = round(memory.peak_self / GB, 2)
        above[name] = round((memory.peak_self - baseline) / GB, 3)
        return result

    spec = SampleSpec.of(config.sampling, config.seed)
    paired = stage(STAGES[0], read_pairs, pair, spec, config.pca, MemoryBudget.of(config.memory_budget, 1))
    comparison = stage(STAGES[1], compare_rows, paired, pair.statistics, pair.layers, pair.heads, config)

    def report() -> list:
        findings = compare_findings(comparison, config)
        summary = summarise(config, spec, pair, paired, comparison, findings, seconds)
        explorer = diff_explorer(config, pair, paired, comparison, None)
        write_compare_outputs(Path(config.out), comparison, summary,
                              compare_sections(comparison, findings, pair.statistics, config), explorer)
        return findings

    findings = stage(STAGES[2], report)
    heads = comparison.heads
    flagged = [int(s) for s in np.flatnonzero(heads["changed"])]
    deltas = heads[[f"delta_{s}" for s in STATISTICS]].to_numpy()
    expected = np.where(np.isin(np.arange(len(heads)), planted), STATISTIC_SHIFT, 0.0)[:, None]
    stored = sum(f.stat().st_size for p in (a, b) for f in p.rglob("*.parquet"))
    if not args.work:
        shutil.rmtree(work / f"compare-{rows}", ignore_errors=True)
    return {
        "rows_in_dataset": pair.manifests_a[0].rows * len(pair.manifests_a), "rows_compared": len(paired),
        "features_compared": int(comparison.grid.values.shape[0]), "write_seconds": round(written, 1),
        "seconds": seconds, "total_seconds": round(sum(seconds.values()), 1),
        "peak_gb": peaks, "peak_all_gb": max(peaks.values()), "baseline_gb": round(baseline / GB, 2),
        "above_baseline_gb": above, "above_all_gb": max(above.values()), "held_before_gb": held,
        "bytes_read_gb": round(paired.bytes_read / GB, 3), "bytes_stored_gb": round(stored / GB, 3),
        "planted": planted, "changed": flagged, "migrated": [int(s) for s in np.flatnonzero(heads["migrated"])],
        "exactly_planted_changed": flagged == planted,
        "largest_statistic_error": round(float(np.nanmax(np.abs(deltas - expected))), 4),
        "findings": [f.text for f in findings],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def growth(results: dict, key) -> list[tuple[int, int, float]]:
    """(smaller rows, larger rows, exponent x of key ~ rows^x) between consecutive sizes."""
    sizes = sorted(results)
    return [(a, b, math.log(key(results[b]) / key(results[a])) / math.log(results[b]["rows_compared"]
                                                                           / results[a]["rows_compared"]))
            for a, b in zip(sizes, sizes[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="112320,1123200", help="comma-separated dataset sizes, in rows")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--shards", type=int, default=26)
    parser.add_argument("--dtype", default="float16", choices=["float32", "float16"])
    parser.add_argument("--sample", default="first", choices=["first", "random", "all"])
    parser.add_argument("--features-per-shard", type=int, default=None)
    parser.add_argument("--planted", type=int, default=12, help="heads whose change dataset B plants")
    parser.add_argument("--memory-budget", type=float, default=None, help="GB (default: the flow's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for the datasets, kept and reused (default: a "
                                                     "temporary one, removed)")
    parser.add_argument("--json", default="bench/results/compare_scale.json")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-compare-"))
    try:
        results = {int(rows): run_size(int(rows), args, work) for rows in args.rows.split(",")}
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{os.cpu_count()} cores, {psutil.virtual_memory().total / GB:.0f} GB; dim {args.dim} {args.dtype}, "
          f"{args.shards} shards, sample {args.sample}, features a shard {args.features_per_shard or 'all'}")
    print("per stage: seconds, and the process's peak above its memory before the stages (GB)")
    print(f"{'rows':>10} {'of':>10} " + " ".join(f"{s[:19]:>19}" for s in STAGES) + f" {'total s':>8}"
          + f" {'peak GB':>8} {'above':>6} {'read/stored GB':>15} {'planted':>7} {'changed':>7} {'migrated':>8}"
          + f" {'exact':>5} {'load':>5}")
    for r in results.values():
        print(f"{r['rows_compared']:>10,} {r['rows_in_dataset']:>10,} "
              + " ".join(f"{r['seconds'][s]:>10.1f} {r['above_baseline_gb'][s]:>8.3f}" for s in STAGES)
              + f" {r['total_seconds']:>8.1f} {r['peak_all_gb']:>8.2f} {r['above_all_gb']:>6.2f}"
              + f" {r['bytes_read_gb']:>7.2f}/{r['bytes_stored_gb']:<7.2f} {len(r['planted']):>7} {len(r['changed']):>7}"
              + f" {len(r['migrated']):>8} {str(r['exactly_planted_changed']):>5}"
              + f" {r['load_average'][0]:>5.2f}")
    for small, large, x in growth(results, lambda r: r["total_seconds"]):
        memory = growth({small: results[small], large: results[large]}, lambda r: r["above_all_gb"])[0][2]
        stages = ", ".join(f"{s} rows^{growth({small: results[small], large: results[large]}, lambda r: r['seconds'][s])[0][2]:.2f}"
                           for s in STAGES)
        print(f"from {small:,} to {large:,} rows: time grows as rows^{x:.2f} ({stages}), memory above "
              f"the start as rows^{memory:.2f}")
    if len(results) > 1:
        small, large = (results[size] for size in sorted(results)[-2:])
        added = FULL_ROWS - large["rows_compared"]

        def projected(key) -> float:  # the growth per row between the two largest sizes, carried on
            return key(large) + added * (key(large) - key(small)) / (large["rows_compared"] - small["rows_compared"])

        print(f"projected to {FULL_ROWS:,} rows a dataset, growing per row as between the two largest sizes: "
              f"{projected(lambda r: r['total_seconds']) / 3600:.1f} h, memory above the start "
              f"{max(projected(lambda r: r['above_baseline_gb'][s]) for s in STAGES):.0f} GB (its largest stage)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
