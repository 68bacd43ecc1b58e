"""The research layer at the clustering's scale: run_study (heads table with bootstrap intervals and permutation
tests, agreement, the original's findings, stability re-fits) on synthetic rows shaped like the demo's (one
dominant cluster, satellites of a few heads, noise; bench/synthetic.py), printing per size the seconds and the
process's peak memory above what the inputs take, and how time grows with rows.

    python bench/study_scale.py --rows 112320,1123200
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import pandas as pd
import psutil
from cluster_scale import GB, TreeMemory
from synthetic import HEADS, LATENT, LAYERS, _latent, planted_groups

from tasks.cluster.clusterings import Clustering, reclustered
from tasks.cluster.dbscan import DbscanMethod
from tasks.extract.maps import STATISTICS
from tasks.research.heads import Resampling
from tasks.research.roles import RoleRules
from tasks.research.study import StudySettings, run_study


def inputs(rows: int, seed: int) -> tuple[pd.DataFrame, dict, dict, np.ndarray, pd.DataFrame]:
    """Rows (keys and every statistic), labels, their parameters, the PCA-like projection and the facts."""
    features = np.arange(math.ceil(rows / (LAYERS * HEADS)))
    rng = np.random.default_rng(seed)
    keys = np.stack(np.meshgrid(features, np.arange(LAYERS), np.arange(HEADS), indexing="ij"), -1).reshape(-1, 3)
    frame = pd.DataFrame({"feature_id": keys[:, 0], "layer": keys[:, 1].astype(np.int16),
                          "head": keys[:, 2].astype(np.int16)})
    for name in STATISTICS:
        frame[name] = rng.random(len(frame), dtype=np.float32) / 3
    group = planted_groups(keys[:, 0], keys[:, 1], keys[:, 2], seed)
    reduced = (_latent(features, rng, seed) @ rng.normal(size=(LATENT, 50))).astype(np.float32)
    kmeans = np.where(group > 0, 1, 0)
    kmeans_r1 = reclustered(1)
    labels = {Clustering.KMEANS: kmeans, Clustering.DBSCAN: group, kmeans_r1: np.where(kmeans == 0, keys[:, 0] % 4, -1)}
    params = {Clustering.KMEANS: {"k": 2}, Clustering.DBSCAN: {"method": DbscanMethod.SAMPLED}, kmeans_r1: {"k": 4}}
    facts = pd.DataFrame({"feature_id": features, "context": features // 4, "answerable": features % 3 != 0})
    return frame, labels, params, reduced, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="112320,1123200")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = StudySettings(RoleRules(), Resampling(), stability_resamples=10, kmeans_rows=1_200_000)
    print(f"{os.cpu_count()} cores, {psutil.virtual_memory().total / GB:.0f} GB; defaults: 200 bootstrap resamples, "
          "10,000 permutations, 10 stability re-fits")
    print(f"{'rows':>10} {'seconds':>8} {'inputs GB':>10} {'peak above inputs GB':>21} {'findings':>9}")
    results = {}
    for rows in (int(r) for r in args.rows.split(",")):
        frame, labels, params, reduced, facts = inputs(rows, args.seed)
        held = psutil.Process().memory_info().rss
        with TreeMemory() as memory:
            started = time.perf_counter()
            study = run_study(frame, labels, params, reduced, list(STATISTICS), LAYERS, HEADS, settings, facts)
            seconds = time.perf_counter() - started
        inputs_gb = (frame.memory_usage().sum() + reduced.nbytes + sum(v.nbytes for v in labels.values())) / GB
        results[len(frame)] = seconds
        print(f"{len(frame):>10,} {seconds:>8.1f} {inputs_gb:>10.2f} {(memory.peak_self - held) / GB:>21.2f}"
              f" {len(study.findings):>9}")
        del frame, labels, reduced, study
    sizes = sorted(results)
    for small, large in zip(sizes, sizes[1:]):
        exponent = math.log(results[large] / results[small]) / math.log(large / small)
        print(f"time grows as rows^{exponent:.2f} from {small:,} to {large:,} rows")


if __name__ == "__main__":
    main()
