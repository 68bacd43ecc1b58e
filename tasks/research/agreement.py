"""How the clusterings line up with what is known of each row: head identity, layer, pattern class."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from tasks.research.heads import slots
from tasks.research.roles import PATTERNS, RoleRules, has_patterns, pattern_codes


def row_references(rows: pd.DataFrame, statistics: list[str], heads: int, rules: RoleRules) -> dict[str, np.ndarray]:
    """What each row is, as labels: its head, its layer, and its pattern class where the dataset has the
    statistics it needs."""
    references = {"head": slots(rows, heads), "layer": rows["layer"].to_numpy(np.int64)}
    if has_patterns(statistics):
        references["pattern"] = pattern_codes(rows[statistics], rules)
    return references


def agreement_table(labels: dict[str, np.ndarray], references: dict[str, np.ndarray]) -> pd.DataFrame:
    """NMI and ARI of every clustering against every reference labelling (noise counts as one more label)."""
    return pd.DataFrame([{"clustering": name, "against": ref, "nmi": normalized_mutual_info_score(truth, values),
                          "ari": adjusted_rand_score(truth, values)}
                         for name, values in labels.items() for ref, truth in references.items()])


def clusters_by_pattern(labels: dict[str, np.ndarray], patterns: np.ndarray) -> pd.DataFrame:
    """Long table: clustering, cluster, pattern, rows, share of the cluster's rows."""
    parts = []
    for name, values in labels.items():
        frame = pd.DataFrame({"cluster": values, "pattern": np.asarray(PATTERNS)[patterns]})
        counts = frame.value_counts().rename("rows").reset_index()
        counts["share"] = counts["rows"] / counts.groupby("cluster")["rows"].transform("sum")
        parts.append(counts.assign(clustering=name))
    return pd.concat(parts, ignore_index=True)[["clustering", "cluster", "pattern", "rows", "share"]].sort_values(
        ["clustering", "cluster", "rows"], ascending=[True, True, False], ignore_index=True)
