"""The report's tables: labels joined to their keys, cluster sizes, per-cluster means."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from tasks.cluster import Sample, cluster_sizes


def label_parts(sample: Sample, labels: dict[str, np.ndarray]) -> Iterator[tuple[int, pa.Table]]:
    """(shard, table) for each shard read: its rows' keys (feature, question, span, layer, head) with one label
    column per clustering, row for row; the keys are read a shard at a time."""
    start = 0
    for shard, rows, keys in zip(sample.part_shards, sample.part_rows, sample.key_tables()):
        for name, values in labels.items():
            keys = keys.append_column(name, pa.array(values[start:start + rows]))
        start += rows
        yield shard, keys


def sizes_table(labels: np.ndarray) -> pd.DataFrame:
    sizes = cluster_sizes(labels)
    return pd.DataFrame({"cluster": list(sizes), "rows": list(sizes.values()),
                         "fraction": np.array(list(sizes.values())) / len(labels)})


def per_cluster_means(rows: pd.DataFrame, labels: np.ndarray, statistics: list[str]) -> pd.DataFrame:
    """Per cluster: rows, mean layer, mean head and the mean of each per-head statistic, largest first."""
    frame = rows[["layer", "head", *statistics]].astype(float).assign(cluster=labels)
    table = frame.groupby("cluster").mean().add_prefix("mean_")
    table.insert(0, "rows", frame.groupby("cluster").size())
    return table.sort_values("rows", ascending=False, kind="stable").reset_index()

