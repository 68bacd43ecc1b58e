"""The heads table: one row per (layer, head) with its share of each clustering's clusters, its consistency,
its statistics, role labels and QA measures; the long table of every head's share in every cluster, and one
cluster's share of each head as a layer x head grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.research.roles import (
    PATTERNS,
    RoleRules,
    available_roles,
    head_roles,
    map_roles,
)
from tasks.research.statistics import (
    benjamini_hochberg,
    bootstrap_interval,
    feature_codes,
    normalised_entropy,
    permutation_pvalues,
)


@dataclass(frozen=True)
class Resampling:
    """How many resamples back the intervals and tests, and their seed."""

    bootstrap: int = 200
    permutations: int = 10_000
    seed: int = 0


def slots(rows: pd.DataFrame, heads: int) -> np.ndarray:
    """Each row's head as one index, layer * heads + head."""
    return rows["layer"].to_numpy(np.int64) * heads + rows["head"].to_numpy(np.int64)


def head_cluster_cells(slot: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the cluster labels in column order, noise -1 first when present; each row's (head, cluster) cell, an
    index into a (heads, clusters) table laid out flat)."""
    ids, codes = np.unique(labels, return_inverse=True)
    return ids, slot * len(ids) + codes


def _counts(cells: np.ndarray, n_slots: int, clusters: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(cells, weights=weights, minlength=n_slots * clusters).reshape(n_slots, clusters)


def head_cluster_counts(slot: np.ndarray, labels: np.ndarray, n_slots: int) -> tuple[np.ndarray, np.ndarray]:
    """(the cluster labels in column order, noise -1 first when present; each head's rows in each cluster, a
    (heads, clusters) table)."""
    ids, cells = head_cluster_cells(slot, labels)
    return ids, _counts(cells, n_slots, len(ids))


def cluster_share_grid(rows: pd.DataFrame, labels: np.ndarray, cluster: int, layers: int, heads: int) -> np.ndarray:
    """Share of each head's rows that fall in `cluster`, shape (layers, heads); 0 for a head without rows."""
    ids, counts = head_cluster_counts(slots(rows, heads), labels, layers * heads)
    inside, total = counts[:, ids == cluster].sum(axis=1), counts.sum(axis=1)
    return np.divide(inside, total, out=np.zeros(len(total)), where=total > 0).reshape(layers, heads)


def consistency(counts: np.ndarray) -> np.ndarray:
    """1 minus the normalised entropy of each head's spread over the clusters (rows of `counts`)."""
    return 1 - normalised_entropy(counts, axis=1)


def head_clusters_table(rows: pd.DataFrame, labels: dict[str, np.ndarray], layers: int, heads: int) -> pd.DataFrame:
    """Long table: layer, head, clustering, cluster, rows, share (of the head's rows), one row per non-empty cell."""
    slot, parts = slots(rows, heads), []
    for name, values in labels.items():
        ids, counts = head_cluster_counts(slot, values, layers * heads)
        s, c = np.nonzero(counts)
        parts.append(pd.DataFrame({"layer": s // heads, "head": s % heads, "clustering": name, "cluster": ids[c],
                                   "rows": counts[s, c].astype(np.int64),
                                   "share": counts[s, c] / counts.sum(axis=1)[s]}))
    return pd.concat(parts, ignore_index=True)


def _by_head(values: pd.DataFrame, slot: np.ndarray, n_slots: int, how: str) -> pd.DataFrame:
    return values.groupby(slot).agg(how).reindex(range(n_slots))


def heads_table(rows: pd.DataFrame, labels: dict[str, np.ndarray], statistics: list[str], layers: int, heads: int,
                rules: RoleRules, resampling: Resampling, answerable: np.ndarray | None = None,
                qa_statistic: str = "cls_mass", patterns: np.ndarray | None = None) -> pd.DataFrame:
    """One row per (layer, head): rows; mean_ and std_ of each statistic; share_ of its maps meeting each role
    rule; roles (Clark's rule on the mean masses); pattern (its most common Kovaleva class) and pattern_share;
    per clustering: dominant_, dominant_share_, consistency_ with its bootstrap interval (_low, _high); with
    `answerable` (a bool per row, NaN-free): qa_difference (mean `qa_statistic` over answerable rows minus
    unanswerable), its permutation p-value and the Benjamini-Hochberg q-value over the heads. `patterns`: each
    row's pattern code (roles.pattern_codes), None where the dataset lacks the statistics the patterns need."""
    n_slots, slot = layers * heads, slots(rows, heads)
    table = pd.DataFrame({"layer": np.arange(n_slots) // heads, "head": np.arange(n_slots) % heads,
                          "rows": np.bincount(slot, minlength=n_slots)})
    stats = rows[statistics].astype(np.float32)  # as stored
    means, spreads = _by_head(stats, slot, n_slots, "mean"), _by_head(stats, slot, n_slots, "std")
    table = table.join(means.add_prefix("mean_")).join(spreads.add_prefix("std_"))
    if available_roles(statistics):
        shares = _by_head(map_roles(stats, rules).astype(np.float32), slot, n_slots, "mean")
        table = table.join(shares.add_prefix("share_"))
        table["roles"] = head_roles(means, rules)
    if patterns is not None:
        counts = np.bincount(slot * len(PATTERNS) + patterns,
                             minlength=n_slots * len(PATTERNS)).reshape(n_slots, len(PATTERNS))
        table["pattern"] = np.asarray(PATTERNS)[counts.argmax(axis=1)]
        table["pattern_share"] = counts.max(axis=1) / np.maximum(1, counts.sum(axis=1))
    codes = feature_codes(rows["feature_id"].to_numpy())
    for name, values in labels.items():
        ids, cells = head_cluster_cells(slot, values)
        counts = _counts(cells, n_slots, len(ids))
        table[f"dominant_{name}"] = ids[counts.argmax(axis=1)]
        table[f"dominant_share_{name}"] = counts.max(axis=1) / np.maximum(1, counts.sum(axis=1))
        estimate, low, high = bootstrap_interval(
            lambda w, cells=cells, k=len(ids): consistency(_counts(cells, n_slots, k, w)), codes,
            resampling.bootstrap, resampling.seed)
        table[f"consistency_{name}"], table[f"consistency_{name}_low"], table[f"consistency_{name}_high"] = (
            estimate, low, high)
    if answerable is not None and qa_statistic in statistics:
        grid = np.full((int(codes.max()) + 1, n_slots), np.nan)
        grid[codes, slot] = rows[qa_statistic].to_numpy(np.float64)
        per_feature = np.zeros(len(grid), bool)
        per_feature[codes] = answerable
        difference, p = permutation_pvalues(grid, per_feature, resampling.permutations, resampling.seed)
        table["qa_difference"], table["qa_p"], table["qa_q"] = difference, p, benjamini_hochberg(p)
    return table
