"""The comparison's tables: one row per (layer, head) with every measure of change, and one row per layer with
the same measures aggregated; each mean with its feature-bootstrap interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.compare.grid import FeatureGrid
from tasks.compare.migration import joint_labels, share_shift_tests
from tasks.compare.paired import PairedRows
from tasks.compare.role_changes import head_means, pattern_changes, role_changes
from tasks.compare.shift import cosine_distance, displacement, energy_tests, per_head_rows
from tasks.config import CompareConfig
from tasks.research import benjamini_hochberg


@dataclass
class Comparison:
    """The tables, and what the findings and the report resample: the per-row grid of displacement, migration
    and statistic changes; each row's joint cluster in A and in B."""

    heads: pd.DataFrame
    layers: pd.DataFrame
    grid: FeatureGrid
    labels_a: np.ndarray
    labels_b: np.ndarray
    n_layers: int
    n_heads: int


def _with_intervals(table: pd.DataFrame, columns: tuple[str, ...], estimate: np.ndarray, low: np.ndarray,
                    high: np.ndarray) -> pd.DataFrame:
    for i, name in enumerate(columns):
        table[name], table[f"{name}_low"], table[f"{name}_high"] = estimate[:, i], low[:, i], high[:, i]
    return table


def _heads_table(rows: PairedRows, cfg: CompareConfig, n_layers: int, n_heads: int, grid: FeatureGrid,
                 labels: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
    n_slots = n_layers * n_heads
    table = pd.DataFrame({"layer": np.arange(n_slots) // n_heads, "head": np.arange(n_slots) % n_heads,
                          "rows": np.bincount(rows.slot, minlength=n_slots)})
    table["cosine_distance"] = cosine_distance(rows.mean_a, rows.mean_b)
    chosen = per_head_rows(rows.feature_id, rows.slot, n_slots, cfg.distance_rows, cfg.seed)
    table["energy_distance"], table["energy_p"] = energy_tests(rows.reduced_a, rows.reduced_b, chosen,
                                                               cfg.intervals.permutations, cfg.seed)
    table["energy_q"] = benjamini_hochberg(table["energy_p"].to_numpy())
    table["changed"] = table["energy_q"] < cfg.alpha
    table = _with_intervals(table, grid.columns,
                            *grid.group_means(np.arange(n_slots), n_slots, cfg.intervals.bootstrap, cfg.seed))
    table["cluster_shift"], table["cluster_shift_p"] = share_shift_tests(*labels, rows.slot, n_slots, cfg.k,
                                                                         cfg.intervals.permutations, cfg.seed)
    table["cluster_shift_q"] = benjamini_hochberg(table["cluster_shift_p"].to_numpy())
    table["migrated"] = table["cluster_shift_q"] < cfg.alpha
    means_a, means_b = (head_means(s, rows.slot, n_slots) for s in (rows.stats_a, rows.stats_b))
    table = table.join(role_changes(means_a, means_b, cfg.roles))
    table = table.join(pattern_changes(rows.stats_a, rows.stats_b, rows.slot, n_slots, cfg.roles))
    return table.join(means_a.add_prefix("mean_a_")).join(means_b.add_prefix("mean_b_"))


def _layers_table(heads: pd.DataFrame, grid: FeatureGrid, cfg: CompareConfig, n_layers: int, n_heads: int
                  ) -> pd.DataFrame:
    by_layer = heads.groupby("layer")
    table = pd.DataFrame({"layer": np.arange(n_layers), "heads": n_heads,
                          "changed_heads": by_layer["changed"].sum().to_numpy(),
                          "migrated_heads": by_layer["migrated"].sum().to_numpy(),
                          "cosine_distance": by_layer["cosine_distance"].mean().to_numpy(),
                          "energy_distance": by_layer["energy_distance"].mean().to_numpy(),
                          "cluster_shift": by_layer["cluster_shift"].mean().to_numpy()})
    for column in ("roles_gained", "roles_lost"):
        if column in heads:
            table[f"heads_with_{column}"] = by_layer[column].agg(lambda v: int((v != "").sum())).to_numpy()
    if "pattern_shift" in heads:
        table["pattern_shift"] = by_layer["pattern_shift"].mean().to_numpy()
    layer_of_slot = np.arange(n_layers * n_heads) // n_heads
    return _with_intervals(table, grid.columns,
                           *grid.group_means(layer_of_slot, n_layers, cfg.intervals.bootstrap, cfg.seed))


def compare_rows(rows: PairedRows, statistics: list[str], n_layers: int, n_heads: int, cfg: CompareConfig
                 ) -> Comparison:
    """Every measure of change per head and per layer."""
    labels = joint_labels(rows.reduced_a, rows.reduced_b, cfg.k, cfg.seed, cfg.kmeans_rows)
    values = np.column_stack([displacement(rows.reduced_a, rows.reduced_b), labels[0] != labels[1],
                              rows.stats_b.to_numpy(np.float64) - rows.stats_a.to_numpy(np.float64)])
    grid = FeatureGrid.of(rows.feature_id, rows.slot, n_layers * n_heads, values,
                          ["displacement", "migration", *(f"delta_{name}" for name in statistics)])
    heads = _heads_table(rows, cfg, n_layers, n_heads, grid, labels)
    return Comparison(heads, _layers_table(heads, grid, cfg, n_layers, n_heads), grid, *labels, n_layers, n_heads)
