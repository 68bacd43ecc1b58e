"""The report's tables: labels joined to their keys, cluster sizes, per-cluster means, layer x head shares."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.cluster.labels import cluster_sizes
from tasks.cluster.sample import KEYS, Sample


def labels_frame(sample: Sample, labels: dict[str, np.ndarray]) -> pd.DataFrame:
    """The sample's keys with one label column per clustering, row for row."""
    frame = sample.rows[list(KEYS)].copy()
    for name, values in labels.items():
        frame[name] = values
    return frame


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


def layer_head_share(rows: pd.DataFrame, labels: np.ndarray, cluster: int, layers: int, heads: int) -> np.ndarray:
    """Fraction of the rows at each (layer, head) that fall in `cluster`, shape (layers, heads)."""
    total = np.zeros((layers, heads))
    inside = np.zeros((layers, heads))
    np.add.at(total, (rows["layer"].to_numpy(), rows["head"].to_numpy()), 1)
    chosen = labels == cluster
    np.add.at(inside, (rows["layer"].to_numpy()[chosen], rows["head"].to_numpy()[chosen]), 1)
    return np.divide(inside, total, out=np.zeros_like(inside), where=total > 0)
